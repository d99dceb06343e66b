"""`derflex outbox …`: where the outbox's facts stand with each consumer, and dead letters replayed.

The same services as the admin API (server.services.outbox), straight on the database: no running
server is needed, and a replayed delivery is taken by whichever drainer runs next.
"""

from __future__ import annotations

import json
import time
from typing import Any

import click

from server.cli.context import Context, pass_ctx, run

STATES = ("pending", "delivered", "dead")


@click.group("outbox")
def outbox_group() -> None:
    """The outbox: facts (a window published, a settlement stored, a control created…) and their
    delivery to each consumer (`beckn`: the BAPs' on_status pushes).

    \b
    A delivery is pending (due, or waiting to be retried), delivered, or dead: its consumer failed
    on every retry (10 s, 100 s, 300 s, 30 min by default; DERFLEX_OUTBOX_RETRY_SECONDS), or — for
    `beckn` — the BAP did not take the on_status before that time was up. `replay` tries a dead
    letter again."""


def _echo_delivery(d: dict[str, Any]) -> None:
    f = d["fact"]
    when = f"next {d['next_attempt']}" if d["state"] == "pending" else f"at {d['delivered'] or d['updated']}"
    click.echo(f"{d['id']:>8}  {d['consumer']:<8} {d['state']:<9} {d['attempts']:>2} attempt(s)  "
               f"{f['kind']} {f['key']} (fact {f['id']}, {f['created']})  {when}")
    if d["last_error"]:
        click.echo(f"{'':>10}last error: {d['last_error']}")


@outbox_group.command("list")
@click.option("--state", type=click.Choice(STATES), help="Only deliveries in this state (dead: the dead letters).")
@click.option("--consumer", metavar="NAME", help="Only deliveries to this consumer, e.g. beckn.")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True, help="At most this many, newest first.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def list_cmd(ctx: Context, state: str | None, consumer: str | None, limit: int, as_json: bool) -> None:
    """Deliveries, newest first: consumer, state, attempts, the fact, and the last error."""
    from server.services import outbox

    page = run(ctx, lambda s: outbox.list_deliveries(s, state=state, consumer=consumer, limit=limit))
    if as_json:
        click.echo(json.dumps(page, indent=2))
        return
    for d in page["deliveries"]:
        _echo_delivery(d)
    shown = len(page["deliveries"])
    click.echo(f"{shown} of {page['all']} deliver{'y' if page['all'] == 1 else 'ies'}"
               + (f" ({state})" if state else ""), err=True)


@outbox_group.command("replay")
@click.argument("delivery_id", required=False, type=click.IntRange(1, 2**63 - 1))
@click.option("--all-dead", is_flag=True, help="Replay every dead letter (of --consumer, if given).")
@click.option("--consumer", metavar="NAME", help="With --all-dead: only this consumer's dead letters.")
@pass_ctx
def replay(ctx: Context, delivery_id: int | None, all_dead: bool, consumer: str | None) -> None:
    """Try a dead letter again: DELIVERY_ID (from `derflex outbox list --state dead`), or --all-dead.

    The delivery is due at once under a new idempotency key, so its consumer acts anew (for
    `beckn`: a fresh on_status to each order's BAP); the next drainer pass takes it."""
    from server.services import outbox

    if (delivery_id is None) == (not all_dead):
        raise click.UsageError("give either a DELIVERY_ID or --all-dead")
    if consumer and not all_dead:
        raise click.UsageError("--consumer goes with --all-dead")
    now = time.time()
    if all_dead:
        ids = run(ctx, lambda s: outbox.replay_dead(s, now, consumer=consumer))
        click.echo(f"{len(ids)} dead letter(s) due again" + (f": {', '.join(map(str, ids))}" if ids else ""))
        return
    view = run(ctx, lambda s: outbox.replay(s, delivery_id, now))
    click.echo(f"delivery {view['id']} to {view['consumer']} ({view['fact']['kind']} {view['fact']['key']}) "
               f"is due again (key {view['idempotency_key']})")


@outbox_group.command("stats")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def stats(ctx: Context, as_json: bool) -> None:
    """Deliveries per consumer: pending (retrying: failed before), delivered (retried: needed more
    than one attempt), dead."""
    from server.services import outbox

    counts = run(ctx, outbox.stats)
    if as_json:
        click.echo(json.dumps(counts, indent=2))
        return
    click.echo(f"{'consumer':<10} {'pending':>8} {'retrying':>9} {'delivered':>10} {'retried':>8} {'dead':>6}")
    for c in counts["consumers"]:
        click.echo(f"{c['consumer']:<10} {c['pending']:>8} {c['retrying']:>9} {c['delivered']:>10} "
                   f"{c['retried']:>8} {c['dead']:>6}")
    if not counts["consumers"]:
        click.echo("(nothing delivered yet)", err=True)
