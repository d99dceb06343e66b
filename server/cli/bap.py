"""`derflex bap …`: a Beckn app on the command line, for trying the BPP and enrolling customers.

The BAP's identity (key, subscriber id, callback address) lives in `<home>/var/bap-identity.json`
(0600), made by `bap init`, which also trusts it in this server's file registry. Every other
command starts a callback receiver at that address for as long as it runs, sends signed requests
to the BPP and prints what the callbacks said (der_sim.bap does the work).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click

from server.cli.context import Context, pass_ctx


def _identity_path(ctx: Context) -> Path:
    return ctx.settings().home / "var" / "bap-identity.json"


@click.group("bap")
def bap_group() -> None:
    """A Beckn app (BAP) to try the BPP with: search programs, enroll customers' devices."""


@bap_group.command("init")
@click.option("--subscriber-id", default="bap.derflex.local", show_default=True, help="Our id on the network.")
@click.option("--listen", default="127.0.0.1:8090", show_default=True, help="host:port of our callback receiver.")
@pass_ctx
def init(ctx: Context, subscriber_id: str, listen: str) -> None:
    """Make a BAP identity (a new Ed25519 key) and trust it in this server's file registry."""
    from der_sim.bap import BapIdentity
    from server.services.bpp import keys as beckn_keys

    identity = BapIdentity.generate(subscriber_id, f"http://{listen}/bap")
    path = _identity_path(ctx)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"subscriber_id": subscriber_id, "unique_key_id": identity.unique_key_id,
                   "private_key": identity.private_key_b64(), "bap_uri": identity.bap_uri}, f)
    beckn_keys.add_to_file_registry(ctx.settings(), identity.subscriber())
    click.echo(f"BAP {subscriber_id} (callbacks at {identity.bap_uri}) saved in {path} and trusted by this BPP")


def _bap(ctx: Context) -> Any:
    from datetime import datetime, timezone

    from der_sim.bap import Bap, BapClient, BapIdentity, registry_lookup
    from der_sim.bap_receiver import CallbackReceiver
    from server.services.bpp import keys as beckn_keys

    settings = ctx.settings()
    try:
        saved = json.loads(_identity_path(ctx).read_text())
    except FileNotFoundError:
        raise click.ClickException("no BAP identity yet: run `derflex bap init` first") from None
    identity = BapIdentity.from_b64(saved["subscriber_id"], saved["unique_key_id"], saved["private_key"],
                                    saved["bap_uri"])
    try:
        bpp = beckn_keys.our_entry(settings, datetime.now(timezone.utc))
    except FileNotFoundError:
        raise click.ClickException("this BPP has no signing key yet: start `derflex serve` once") from None
    host, _, port = identity.bap_uri.split("//", 1)[1].split("/", 1)[0].partition(":")
    receiver = CallbackReceiver(settings.beckn_subscriber_id, registry_lookup([bpp]), host=host, port=int(port),
                                path="/bap")
    client = BapClient(identity, settings.beckn_subscriber_id, settings.beckn_uri, domain=settings.beckn_domain,
                       key_lookup=registry_lookup([bpp]))
    return Bap(client, receiver, timeout=30), receiver


def _with_bap(ctx: Context, work: Any) -> Any:
    from der_sim.bap import BapError

    bap, receiver = _bap(ctx)
    try:
        receiver.start()
    except OSError as exc:
        raise click.ClickException(f"cannot listen for callbacks at {bap.client.identity.bap_uri}: {exc}") from None
    try:
        return work(bap)
    except BapError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        receiver.stop()


@bap_group.command("search")
@click.option("--text", help="Words in the program's name or description.")
@click.option("--kind", help="A device kind the program must accept (battery, ev_charger, pv, load).")
@click.option("--area", help="A grid node the program must serve.")
@pass_ctx
def search(ctx: Context, text: str | None, kind: str | None, area: str | None) -> None:
    """List the programs the BPP offers (its on_search catalog)."""
    found = _with_bap(ctx, lambda bap: bap.search(text=text, device_kind=kind, area_code=area))
    if not found["items"]:
        click.echo("no program matches", err=True)
    for item in found["items"]:
        p = item["program"]
        click.echo(f"{item['id']:12} {item['descriptor']['name']}: up to {item['price']['value']} "
                   f"{item['price']['currency']}/kWh, {p.get('requested-kw', '?')} kW wanted, "
                   f"devices: {p.get('eligible-kinds', '?')}")


@bap_group.command("enroll")
@click.argument("program_item")
@click.option("--customer", required=True, help="The customer's name (billing).")
@click.option("--email", help="The customer's e-mail.")
@click.option("--lfdi", "lfdis", multiple=True, required=True, help="A device's LFDI (repeat for more).")
@click.option("--kind", help="The devices' kind, when they have not reported it.")
@pass_ctx
def enroll(ctx: Context, program_item: str, customer: str, email: str | None, lfdis: tuple[str, ...],
           kind: str | None) -> None:
    """Enroll a customer's devices in PROGRAM_ITEM (e.g. program-1): select, init, confirm."""
    from der_sim.bap import Customer, DerDevice

    who = Customer(customer, email=email, devices=[DerDevice(lfdi, kind=kind) for lfdi in lfdis])
    order = _with_bap(ctx, lambda bap: bap.enroll(who, program_item))
    click.echo(f"order {order['order_id']} {order['status']} (transaction {order['transaction_id']}): "
               f"{len(order['fulfillments'])} device(s) enrolled")


@bap_group.command("status")
@click.argument("order_id")
@click.argument("transaction_id")
@pass_ctx
def status(ctx: Context, order_id: str, transaction_id: str) -> None:
    """Where an order's devices stand (ENROLLED, EVENT-SCHEDULED, EVENT-ACTIVE, CANCELLED)."""
    out = _with_bap(ctx, lambda bap: bap.status(order_id, transaction_id))
    order = out["message"]["order"]
    click.echo(f"order {order['id']}: {order.get('status')}")
    for f in order.get("fulfillments", []):
        click.echo(f"  {f['id']:50} {f.get('state', {}).get('descriptor', {}).get('code', '?')}")
