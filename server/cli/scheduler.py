"""`derflex scheduler`: the flexibility scheduler as a process of its own (`derflex serve` runs one
in each worker), with the outbox drainer beside it."""

from __future__ import annotations
import time
import click
from server.cli.context import Context, pass_ctx, prepare_quiet


@click.command("scheduler")
@click.option("--once", is_flag=True, help="Plan, publish and settle what is due now, drain the outbox, then exit (no election).")
@click.option("--reconcile-seconds", type=click.FloatRange(1, 3600), default=30.0, show_default=True,
              help="How often the leader re-plans and checks for changed inputs.")
@pass_ctx
def scheduler(ctx: Context, once: bool, reconcile_seconds: float) -> None:
    """Run the flexibility scheduler: publish each program window's controls at its lead time.

    Several may run against one database: exactly one leads (a PostgreSQL advisory lock, or an
    SQLite lease), and another takes over when it stops. `derflex serve` runs one in-process.
    With the BPP on (DERFLEX_BECKN_BIND), it also drains the outbox: the orders' BAPs hear of
    publishes and settlements (`derflex outbox` shows where that stands)."""
    import logging

    from server.jobs.scheduler import FlexScheduler

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)  # schema checks are not the operator's news
    database = prepare_quiet(ctx.settings())
    settings = ctx.settings()
    from server.config import ConfigError
    from server.bootstrap import tls_files
    from server.jobs.outbox import drainer_for

    try:  # as in `derflex serve`: the outbox's facts reach the orders' BAPs when the BPP is on
        drainer = drainer_for(settings, database, tls=None if once else tls_files(settings))
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    sched = FlexScheduler(database, reconcile_seconds=reconcile_seconds)
    try:
        if once:
            for outcome in sched.reconcile():
                click.echo(outcome.get("summary", outcome))
            if drainer is not None:
                drainer.drain()
            return
        sched.start()
        if drainer is not None:
            drainer.start()
        click.echo(f"derflex: scheduler {sched.holder} running; Ctrl-C to stop", err=True)
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        if drainer is not None:
            drainer.stop()
        sched.stop()
        database.dispose()
