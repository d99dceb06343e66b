"""The `derflex` command: serve, database, operator (admin) and PKI commands.

Operator commands work on the database directly (the same services the admin API calls), so
they need no running server. Every setting can also come from a `DERFLEX_<NAME>` variable.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click

from server.cli.context import Context, pass_ctx, run
from server.config import Settings




@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="DERFLEX_HOME",
    help="Folder for the database (var/), dev PKI (certs/) and admin token. Default: current folder.",
)
@click.option(
    "--database-url",
    envvar="DERFLEX_DATABASE_URL",
    help="SQLAlchemy URL, e.g. postgresql://user@127.0.0.1:5432/derflex. Default: SQLite in <home>/var.",
)
@click.pass_context
def main(ctx: click.Context, home: Path | None, database_url: str | None) -> None:
    """derflex — an IEEE 2030.5 DER server with demand-flexibility programs.

    Start with `derflex serve --demo-devices 2`: it prepares a database and a development PKI on
    first run and serves 2030.5 over TLS 1.2 (ECDHE-ECDSA-AES128-CCM8) with client certificates.
    """
    ctx.obj = Context(home, database_url)


def _prepare(settings: Settings) -> Any:
    from server.bootstrap import prepare

    try:
        return prepare(settings, say=lambda m: click.echo(f"derflex: {m}", err=True))
    except Exception as exc:  # first-run failures: say what and where, not a traceback
        raise click.ClickException(f"could not prepare {settings.db_url}: {exc}") from None


@main.command()
@click.option("--bind", help="Address:port to listen on. Default 127.0.0.1:8443.")
@click.option("--workers", type=click.IntRange(1, 64), help="Worker processes (default 1).")
@click.option("--threads", type=click.IntRange(1, 512), help="Threads per worker (default 8).")
@click.option(
    "--allow-gcm/--ccm8-only",
    default=None,
    help="Also offer ECDHE-ECDSA-AES128-GCM-SHA256 for tools that cannot do CCM8 (not strict 2030.5).",
)
@click.option(
    "--proxy-mode",
    is_flag=True,
    default=None,
    help="Plain HTTP behind a TLS-terminating proxy that forwards the client certificate in a "
    "header (DERFLEX_PROXY_CERT_HEADER), trusted only from DERFLEX_TRUSTED_PROXIES.",
)
@click.option("--timezone", help="IANA zone served at /tm, e.g. America/Los_Angeles. Default UTC.")
@click.option(
    "--demo-devices",
    type=click.IntRange(0, 10_000),
    default=0,
    show_default=True,
    help="Issue and pre-register this many demo devices (certs/devices/demo-N), PIN 111115.",
)
@click.option("--access-log", is_flag=True, help="Log every request to standard output.")
@pass_ctx
def serve(
    ctx: Context,
    bind: str | None,
    workers: int | None,
    threads: int | None,
    allow_gcm: bool | None,
    proxy_mode: bool | None,
    timezone: str | None,
    demo_devices: int,
    access_log: bool,
) -> None:
    """Serve IEEE 2030.5 over mutually authenticated TLS (or behind a proxy)."""
    from server.bootstrap import ensure_demo_devices, tls_files
    from server.serve import run

    settings = ctx.settings(
        bind=bind,
        workers=workers,
        threads=threads,
        tls_allow_gcm=allow_gcm,
        proxy_mode=proxy_mode,
        timezone=timezone,
    )
    db = _prepare(settings)
    for cred in ensure_demo_devices(settings, db, demo_devices):
        click.echo(f"demo device {cred.name}: LFDI {cred.lfdi} SFDI {cred.sfdi} cert {cred.cert_path}")
    db.dispose()
    files = tls_files(settings)
    scheme = "http" if settings.proxy_mode else "https"
    click.echo(f"derflex: serving 2030.5 at {scheme}://{settings.bind}/dcap", err=True)
    if not settings.proxy_mode:
        ciphers = "CCM8 + GCM" if settings.tls_allow_gcm else "CCM8 only"
        click.echo(f"derflex: TLS 1.2, {ciphers}; clients verified against {files.trust}", err=True)
        if demo_devices:
            click.echo(
                "derflex: try  curl --cacert {t} --cert {c} --key {k} --ciphers "
                "ECDHE-ECDSA-AES128-CCM8 --tls-max 1.2 https://{b}/dcap".format(
                    t=files.trust,
                    c=cred.cert_path,
                    k=cred.key_path,
                    b=settings.bind.replace("127.0.0.1", "localhost"),
                ),
                err=True,
            )
    run(settings, access_log=access_log)


@main.group()
def db() -> None:
    """Database schema (Alembic migrations)."""


@db.command("upgrade")
@pass_ctx
def db_upgrade(ctx: Context) -> None:
    """Create or migrate the schema to the newest revision (the server also does this on start)."""
    from server.db import migrate

    database = _prepare(ctx.settings())
    click.echo(f"schema at {migrate.current_revision(database.engine)}")


@db.command("current")
@pass_ctx
def db_current(ctx: Context) -> None:
    """Print the schema revision of the database and the newest one this version knows."""
    from server.db import migrate
    from server.db.session import Database

    database = Database(ctx.settings().db_url)
    click.echo(f"current: {migrate.current_revision(database.engine)}  head: {migrate.head_revision()}")


@main.group("admin")
def admin_group() -> None:
    """Operator tasks: register devices out of band, aggregators, poll rates, admin tokens."""




@admin_group.command("token")
@click.option("--name", default="cli", show_default=True, help="A label to recognise the token by.")
@pass_ctx
def admin_token(ctx: Context, name: str) -> None:
    """Create an admin API token and print it (it is shown only once)."""
    from server.services import tokens

    token = run(ctx, lambda s: tokens.create_token(s, name, int(time.time())))
    click.echo(token)


@admin_group.command("register")
@click.argument("lfdi")
@click.option("--pin", type=int, help="Registration PIN the device checks (5 digits + check digit).")
@click.option("--aggregator", "aggregator_lfdi", help="LFDI of the aggregator that manages it.")
@click.option("--label", help="A name for people.")
@click.option("--post-rate", type=click.IntRange(1), help="Seconds between the device's posts.")
@pass_ctx
def admin_register(ctx: Context, lfdi: str, **options: Any) -> None:
    """Register a device out of band by its LFDI."""
    from server.services.sep2 import devices

    body = {"lfdi": lfdi, **{k: v for k, v in options.items() if v is not None}}
    view = run(ctx, lambda s: devices.register_device(s, body, int(time.time())))
    click.echo(json.dumps(view, indent=2))


@admin_group.command("devices")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def admin_devices(ctx: Context, limit: int, as_json: bool) -> None:
    """List registered devices."""
    from server.services.sep2 import devices

    result = run(ctx, lambda s: devices.list_devices(s, 0, limit))
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(f"{result['all']} device(s)")
    for d in result["devices"]:
        agg = f" via {d['aggregator_lfdi'][:8]}…" if d["aggregator_lfdi"] else ""
        click.echo(f"  {d['id']:>6}  {d['lfdi']}  sfdi {d['sfdi']:<13} {d['label'] or ''}{agg}")


@admin_group.command("aggregator")
@click.argument("lfdi")
@click.argument("name")
@pass_ctx
def admin_aggregator(ctx: Context, lfdi: str, name: str) -> None:
    """Let the certificate with this LFDI register and manage other devices."""
    from server.services.sep2 import devices

    view = run(ctx, lambda s: devices.add_aggregator(s, lfdi, name, int(time.time())))
    click.echo(f"aggregator {view['name']}: {view['lfdi']}")


@admin_group.command("poll-rate")
@click.argument("resource", required=False)
@click.argument("seconds", type=click.IntRange(1), required=False)
@pass_ctx
def admin_poll_rate(ctx: Context, resource: str | None, seconds: int | None) -> None:
    """Show poll rates, or set RESOURCE's pollRate to SECONDS (running servers follow at once)."""
    from server.services.sep2 import devices

    if resource is not None and seconds is None:
        raise click.UsageError("give both RESOURCE and SECONDS, or neither to list")
    if resource is not None:
        run(ctx, lambda s: devices.set_poll_rate(s, resource, seconds))
    rates = run(ctx, lambda s: devices.poll_rates(s, ctx.settings().poll_rate))
    for name, value in rates.items():
        click.echo(f"{name:<6} {value} s")


@admin_group.command("post-rate")
@click.argument("device_id", type=int)
@click.argument("seconds", type=click.IntRange(1))
@pass_ctx
def admin_post_rate(ctx: Context, device_id: int, seconds: int) -> None:
    """Set a device's postRate (seconds between its meter-reading posts)."""
    from server.services.sep2 import devices

    run(ctx, lambda s: devices.set_post_rate(s, device_id, seconds, int(time.time())))
    click.echo(f"device {device_id}: postRate {seconds} s")


def _add_subcommands() -> None:
    from server.cli.bap import bap_group
    from server.cli.beckn import beckn_group
    from server.cli.demo import demo
    from server.cli.pki import pki
    from server.cli.flex import flex_group
    from server.cli.scheduler import scheduler
    from server.cli.notifications import notifications_group
    from server.cli.outbox import outbox_group
    from server.cli.der_programs import der_program, event, fsa_group, program_alias

    main.add_command(bap_group)
    main.add_command(beckn_group)
    main.add_command(demo)
    main.add_command(flex_group)
    main.add_command(scheduler)
    main.add_command(outbox_group)
    main.add_command(notifications_group)
    main.add_command(pki)
    main.add_command(der_program)
    main.add_command(fsa_group)
    main.add_command(program_alias)
    main.add_command(event)

    from server.cli.ui import ui_group

    main.add_command(ui_group)  # derflex ui user add|passwd|role|disable|list

    from server.cli.curves import curve, log_events

    der_program.add_command(curve)  # derflex der-program curve …
    admin_group.add_command(log_events)  # derflex admin log-events DEVICE_ID

    from server.cli.access import client_group, connection_points_list, device_group

    admin_group.add_command(device_group)  # derflex admin device remove|connection-point
    admin_group.add_command(client_group)  # derflex admin client revoke|restore|list
    admin_group.add_command(connection_points_list)  # derflex admin connection-points


_add_subcommands()

