"""What every `derflex` command shares: the home and database it was given, and running a service
call in one transaction with its refusals shown as clear errors instead of tracebacks."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click

from server.config import ConfigError, Settings, from_env
from server.services.errors import ServiceError


class Context:
    def __init__(self, home: Path | None, database_url: str | None):
        self.home = home
        self.database_url = database_url

    def settings(self, **overrides: Any) -> Settings:
        try:
            return from_env(home=self.home, database_url=self.database_url, **overrides)
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from None


pass_ctx = click.make_pass_decorator(Context)


def run(ctx: Context, fn: Any) -> Any:
    """fn(session) in one transaction on the home's database; a service's refusal becomes a clear error."""
    database = prepare_quiet(ctx.settings())
    try:
        with database.transaction() as s:
            return fn(s)
    except ServiceError as exc:
        raise click.ClickException(exc.message) from None
    finally:
        database.dispose()


def prepare_quiet(settings: Settings) -> Any:
    """The database, migrated, without the first-run chatter of `serve`."""
    from server.db import migrate
    from server.db.session import Database

    database = Database(settings.db_url)
    try:
        migrate.upgrade(database.engine)
    except Exception as exc:
        raise click.ClickException(f"cannot open the database {settings.db_url}: {exc}") from None
    return database


def now() -> int:
    """The commands' clock (UTC seconds); tests set it."""
    return int(time.time())


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2))


def local_time(seconds: int | float, zone: Any) -> str:
    """HH:MM in `zone`."""
    from datetime import datetime, timezone

    return datetime.fromtimestamp(seconds, timezone.utc).astimezone(zone).strftime("%H:%M")


def local_span(start_iso: str, end_iso: str, zone: Any) -> str:
    """'16:00–18:00' in `zone` for two ISO-8601 times."""
    from datetime import datetime

    return "–".join(local_time(datetime.fromisoformat(t).timestamp(), zone) for t in (start_iso, end_iso))
