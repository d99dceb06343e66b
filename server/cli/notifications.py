"""`derflex notifications …`: 2030.5 subscriptions and the notifications sent for them.

The same services as the admin API (server.services.sep2.notifications), straight on the
database: no running server is needed; a replayed notification is sent by the running server's
notifier at its next pass.
"""

from __future__ import annotations

import json
import time
from typing import Any

import click

from server.cli.context import Context, pass_ctx, run

STATES = ("pending", "delivered", "dead")


@click.group("notifications")
def notifications_group() -> None:
    """2030.5 notifications: what subscribers asked for, and what was sent to them.

    \b
    A notification is pending (due, or waiting to be retried), delivered (its receiver answered
    2xx), or dead: its receiver failed on every retry (10 s, 100 s, 300 s, 30 min by default;
    DERFLEX_OUTBOX_RETRY_SECONDS) or its address is not allowed (DERFLEX_NOTIFICATION_ALLOW).
    `replay` sends a dead one again."""


def _echo(n: dict[str, Any]) -> None:
    when = f"next {n['next_attempt']}" if n["state"] == "pending" else f"at {n['delivered'] or n['created']}"
    click.echo(f"{n['id']:>8}  {n['state']:<9} {n['attempts']:>2} attempt(s)  sub {n['subscription_id']:<6} "
               f"{n['uri']}  ({n['key']}, {n['bytes']} bytes)  {when}")
    if n["last_error"]:
        click.echo(f"{'':>10}last error: {n['last_error']}")


@notifications_group.command("list")
@click.option("--state", type=click.Choice(STATES), help="Only notifications in this state (dead: the dead letters).")
@click.option("--receiver", metavar="URL", help="Only those to this receiver, e.g. https://head-end.example:443.")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True, help="At most this many, newest first.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def list_cmd(ctx: Context, state: str | None, receiver: str | None, limit: int, as_json: bool) -> None:
    """Notifications, newest first: state, attempts, where to, and the last error."""
    from server.services.sep2 import notifications

    page = run(ctx, lambda s: notifications.list_notifications(s, state=state, receiver=receiver, limit=limit))
    if as_json:
        click.echo(json.dumps(page, indent=2))
        return
    for n in page["notifications"]:
        _echo(n)
    click.echo(f"{len(page['notifications'])} of {page['all']} notification(s)" + (f" ({state})" if state else ""),
               err=True)


@notifications_group.command("stats")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def stats(ctx: Context, as_json: bool) -> None:
    """Per receiver: pending (retrying: failed before), delivered (retried: needed more than one
    attempt), dead."""
    from server.services.sep2 import notifications

    counts = run(ctx, notifications.stats)
    if as_json:
        click.echo(json.dumps(counts, indent=2))
        return
    click.echo(f"{'receiver':<40} {'pending':>8} {'retrying':>9} {'delivered':>10} {'retried':>8} {'dead':>6}")
    for c in [*counts["receivers"], {"receiver": "(all)", **counts["total"]}]:
        click.echo(f"{c['receiver'][:40]:<40} {c['pending']:>8} {c['retrying']:>9} {c['delivered']:>10} "
                   f"{c['retried']:>8} {c['dead']:>6}")


@notifications_group.command("replay")
@click.argument("notification_id", required=False, type=click.IntRange(1, 2**63 - 1))
@click.option("--all-dead", is_flag=True, help="Replay every dead notification.")
@pass_ctx
def replay(ctx: Context, notification_id: int | None, all_dead: bool) -> None:
    """Send a dead notification again: NOTIFICATION_ID (from `list --state dead`), or --all-dead."""
    from server.services.sep2 import notifications

    if (notification_id is None) == (not all_dead):
        raise click.UsageError("give either a NOTIFICATION_ID or --all-dead")
    ids = run(ctx, lambda s: notifications.replay(s, notification_id, time.time()))
    click.echo(f"{len(ids)} notification(s) due again" + (f": {', '.join(map(str, ids))}" if ids else ""))


@notifications_group.command("subscriptions")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def subscriptions(ctx: Context, limit: int, as_json: bool) -> None:
    """Every subscription: under which EndDevice, by whom (LFDI), to what, notified where."""
    from server.services.sep2 import notifications

    page = run(ctx, lambda s: notifications.list_subscriptions(s, limit=limit))
    if as_json:
        click.echo(json.dumps(page, indent=2))
        return
    for sub in page["subscriptions"]:
        click.echo(f"{sub['id']:>6}  edev {sub['device_id']:<6} {sub['resource']:<32} -> {sub['notification_uri']}  "
                   f"(by {sub['subscriber_lfdi'][:12]}…, limit {sub['limit']})")
    click.echo(f"{len(page['subscriptions'])} of {page['all']} subscription(s)", err=True)
