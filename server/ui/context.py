"""What every view of the dashboard shares: the app's `Ui` (settings, database, clock), the
signed-in user's role check and local-time formatting."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from functools import wraps
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from flask import abort, current_app, g

from server.config import Settings
from server.db.session import Database

F = TypeVar("F", bound=Callable[..., Any])


class Ui:
    """What the dashboard's views share: settings, the database, the clock."""

    def __init__(self, settings: Settings, db: Database, clock: Callable[[], float] = time.time):
        self.settings = settings
        self.db = db
        self.clock = clock

    def now(self) -> int:
        return int(self.clock())


def ui() -> Ui:
    return current_app.extensions["derflex.ui"]  # type: ignore[no-any-return]


def now() -> int:
    return ui().now()


def require(role: str) -> Callable[[F], F]:
    """A view only users of `role` or above may run (403 for the others)."""
    def deco(view: F) -> F:
        @wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            if not g.user.may(role):
                abort(403, f"this needs the {role} role; you are {g.user.role}")
            return view(*args, **kwargs)
        return wrapped  # type: ignore[return-value]
    return deco


def local_time(seconds: float | None, zone: str | None = None, fmt: str = "%a %d %b %Y %H:%M %Z") -> str:
    if seconds is None:
        return "—"
    tz = ZoneInfo(zone) if zone else ZoneInfo(ui().settings.timezone)
    return datetime.fromtimestamp(seconds, tz).strftime(fmt)


