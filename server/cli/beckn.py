"""`derflex beckn …`: the BPP's identity on a Beckn network and the BAPs it trusts.

`keys` prints the registry entry to register for our signing key (made on first run);
`trust` adds BAP entries to the embedded file registry (the default when no registry URL is set);
`outbox` shows where callbacks stand; `orders` the BAPs' v1 orders and v2 contracts; `catalog`
what was last published to the v2 catalog service (and `--publish` publishes now).
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone

import click

from server.cli.context import Context, pass_ctx, prepare_quiet


@click.group("beckn")
def beckn_group() -> None:
    """The Beckn BPP facade: our keys, trusted BAPs, callbacks."""


@beckn_group.command("keys")
@pass_ctx
def keys(ctx: Context) -> None:
    """Print our registry entry (subscriber id, key id, public signing key, callback URI).

    Register it with the network's registry, or give it to a BAP that uses a file registry.
    The private key stays in <home>/var/beckn-signing.key (made on the first start)."""
    from server.bootstrap import prepare
    from server.beckn.registry import subscriber_json
    from server.services.bpp import keys as beckn_keys

    settings = ctx.settings()
    if not settings.beckn_bind:
        raise click.ClickException("the Beckn facade is switched off (DERFLEX_BECKN_BIND is empty)")
    prepare(settings, say=lambda m: click.echo(m, err=True)).dispose()
    entry = beckn_keys.our_entry(settings, datetime.now(timezone.utc))
    click.echo(json.dumps(subscriber_json(entry), indent=2))


@beckn_group.command("trust")
@click.argument("source", type=click.File("r"))
@pass_ctx
def trust(ctx: Context, source: click.utils.LazyFile) -> None:
    """Add BAP entries (v1 Subscription objects: a JSON object, a list, or {"subscribers": [...]})
    from SOURCE ('-' for standard input) to the file registry <home>/var/beckn-registry.json."""
    from server.beckn.registry import RegistryError, parse_subscribers
    from server.services.bpp import keys as beckn_keys

    settings = ctx.settings()
    try:
        doc = json.load(source)
        entries = parse_subscribers([doc] if isinstance(doc, dict) and "subscribers" not in doc else doc)
    except (ValueError, RegistryError) as exc:
        raise click.ClickException(f"{getattr(source, 'name', 'SOURCE')}: {exc}") from None
    for entry in entries:
        beckn_keys.add_to_file_registry(settings, entry)
        click.echo(f"trusted {entry.type} {entry.subscriber_id} key {entry.unique_key_id}")


@beckn_group.command("outbox")
@pass_ctx
def outbox(ctx: Context) -> None:
    """Callbacks by state: pending (being retried), delivered, expired (the BAP never took them),
    unanswered (sent whole, no answer: not sent again, docs/beckn.md "Delivery")."""
    from server.services.bpp import pipeline as beckn

    db = prepare_quiet(ctx.settings())
    try:
        counts = beckn.pending_counts(db)
    finally:
        db.dispose()
    for state in ("pending", "delivered", "expired", "unanswered"):
        click.echo(f"{state:10} {counts.get(state, 0)}")
    if not counts:
        click.echo("(no callbacks yet)", err=True)
    sys.stdout.flush()


@beckn_group.command("orders")
@click.option("--limit", default=100, show_default=True, help="At most this many, newest first.")
@click.option("--json", "as_json", is_flag=True, help="As JSON (with each v2 contract's cleared bid).")
@pass_ctx
def orders(ctx: Context, limit: int, as_json: bool) -> None:
    """The BAPs' orders (Beckn v1.1.0) and contracts (v2.0.0): version, BAP, program, state, meters."""
    from server.services.bpp import v2contracts

    db = prepare_quiet(ctx.settings())
    try:
        with db.transaction() as s:
            rows = v2contracts.agreements(s, limit=max(1, min(limit, 10_000)))
    finally:
        db.dispose()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        cleared = "; ".join(f"{c['kw']:g} kW at {c['price']:g}" for c in r.get("cleared") or [])
        click.echo(f"{r['id']}  v{r['version']:5}  {r['state']:9}  program {r['program']}  {r['meters']} meters  "
                   f"{r['bap']}" + (f"  cleared {cleared}" if cleared else ""))
    if not rows:
        click.echo("(no orders or contracts yet)", err=True)


@beckn_group.command("catalog")
@click.option("--publish", is_flag=True, help="Queue a catalog/publish of the catalog as it stands now.")
@click.option("--json", "as_json", is_flag=True, help="As JSON.")
@pass_ctx
def catalog(ctx: Context, publish: bool, as_json: bool) -> None:
    """What was last published to the Beckn v2 catalog service (DERFLEX_BECKN_CATALOG_URL) and when:
    the newest catalog/publish queued (pending, delivered, expired, unanswered or superseded) and the
    newest the service took, with the programs each carried. Programs authored, changed or
    cancelled are published by themselves (through the outbox); --publish sends one now."""
    import os
    import time

    from server.jobs.outbox import schedule_from
    from server.services.bpp import catalog_publish
    from server.services.bpp.provider import Provider
    from server.services.errors import ServiceError

    settings = ctx.settings()
    db = prepare_quiet(settings)
    try:
        with db.transaction() as s:
            if publish:
                try:
                    catalog_publish.publish_now(s, Provider.of(settings), settings.beckn_catalog_url, time.time(),
                                                retry_for_s=sum(schedule_from(os.environ)))
                except ServiceError as exc:
                    raise click.ClickException(str(exc)) from None
            view = catalog_publish.published(s, settings.beckn_catalog_url)
    finally:
        db.dispose()
    if as_json:
        click.echo(json.dumps(view, indent=2))
        return
    click.echo(f"catalog service: {view['publish_url'] or '(none: DERFLEX_BECKN_CATALOG_URL is empty)'}")
    for label, row in (("last queued", view["last"]), ("last delivered", view["last_delivered"])):
        if row is None:
            click.echo(f"{label:15} (none)")
            continue
        when = row["delivered"] if label == "last delivered" else row["queued"]
        programs = ", ".join(row["resources"]) or "no programs"
        extra = f"  ({row['last_error']})" if row["last_error"] and row["state"] != "delivered" else ""
        click.echo(f"{label:15} {when}  {row['state']:10} {row['attempts']} attempt(s)  message {row['message_id']}  "
                   f"{programs}{extra}")
