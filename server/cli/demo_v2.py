"""`derflex demo --beckn 2.0`: the demo's story (server.cli.demo) with the customers enrolled over
Beckn v2.0.0 LTS by our v2 BAP (der_sim.bap_v2), as the DEG demand-flexibility devkits do it.

What changes against the v1.1.0 demo, step by step:

5. the BAP `discover`s the catalog at the BPP's `/beckn/v2` (the program as the Resource
   `program-{id}`, a DemandFlexNeed, and the Offer `offer-program-{id}`, a DemandFlexBuyOffer,
   pay-as-clear); every customer's contract goes select → init → confirm, each request signed
   (BECKN-006) and each Ack's counter-signature verified, the confirm carrying the device's bid as
   the devkit's block bid (commitmentAttributes TimeSeries: OFFER_PRICE / CAPACITY_OFFERED per
   interval of the window; `bid_blocks` turns the device's bid curve into four blocks under it);
   on_confirm answers ACTIVE with CAPACITY_CLEARED / CLEARING_PRICE;
6. the scheduler clears every contract's meters with the rest of the market and publishes; the
   devices obey (2030.5, as before);
7. after settlement the BAP hears the settled on_status of each contract, pushed through the
   outbox: DemandFlexPerformance per meter and the DEGContract revenue flows (our settlement in
   minor units, a buyer flow making them sum to zero);
8. the summary adds what went over v2: contracts, what on_confirm cleared, the settled pushes
   received and their revenue flows against the stored settlement.
"""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import click

BLOCKS = 4  # blocks per interval in a customer's bid
#: the DEG EnergyResource type each simulated device is declared as (energyResources[].type): a
#: controllable load reports DERType 0, so the BPP learns its kind from this
RESOURCE_TYPES = {"battery": "BESS", "ev_charger": "EV_CHARGER", "load": "CONTROLLABLE_LOAD", "pv": "SOLAR_PV"}


def bid_blocks(curve: list[tuple[float, float]], intervals: int, blocks: int = BLOCKS
               ) -> list[tuple[list[float], list[float]]] | None:
    """A device's bid curve ((price, kW) points, der_sim.fleet.offers: linear from the price floor to
    the cap) as a v2 block bid, the same for each of `intervals`: `blocks` equal blocks of the
    reduction it offers, block k at the curve's price where it reaches k/blocks of it (so the
    blocks never offer more than the curve at any price). None when it offers nothing."""
    if len(curve) < 2:
        return None
    (p0, kw0), (p1, kw1) = curve[0], curve[-1]
    total = abs(kw1 - kw0)
    size = math.floor(total / blocks * 1000) / 1000  # rounded down: never above the device's rating
    if size <= 0:
        return None
    prices = [round(p0 + (p1 - p0) * k / blocks, 4) for k in range(1, blocks + 1)]
    return [(list(prices), [size] * blocks) for _ in range(intervals)]


def _say(text: str) -> None:
    click.echo(text)


class BecknV2Enrollment:
    """What the demo does differently over Beckn v2.0.0 (module docstring): mixed into the demo
    (server.cli.demo.V2Demo) before its `Demo`, whose state (settings, fleet, ports, program) and
    steps it uses. Failures raise click.ClickException (the demo's DemoError is one)."""

    settings: Any
    fleet: Any
    receiver: Any
    program_id: int
    receiver_port: int
    beckn_port: int
    minutes: int
    n: int
    orders: list[dict[str, Any]]

    enroll_label = "the BAP enrolls {n} customers over Beckn v2.0.0 (discover, select/init/confirm with bid curves)"
    enroll_seconds = 0.75  # per customer: three signed round trips, the confirm clearing the market

    def enroll(self) -> None:
        from der_sim.bap import BapIdentity, registry_lookup
        from der_sim.bap_receiver import CallbackReceiver
        from der_sim.bap_v2 import BapV2, BapV2Client, cleared
        from der_sim.fleet import progress_printer
        from server.services.bpp import keys as beckn_keys

        ours = beckn_keys.our_entry(self.settings, datetime.now(timezone.utc))
        identity = BapIdentity.generate("bap.demo.local", f"http://127.0.0.1:{self.receiver_port}/bap")
        beckn_keys.add_to_file_registry(self.settings, identity.subscriber())
        self.receiver = CallbackReceiver(self.settings.beckn_subscriber_id, registry_lookup([ours]),
                                         port=self.receiver_port, path="/bap", v2_key=identity.signing_key).start()
        client = BapV2Client(identity, self.settings.beckn_subscriber_id,
                             f"http://127.0.0.1:{self.beckn_port}/beckn/v2", bpp_key=ours.signing_public_key, ttl_s=30)
        self.bap = BapV2(client, self.receiver, timeout=30)
        catalogs = self.bap.discover("Peak Saver")
        resource = next((r for c in catalogs for r in c.get("resources") or []
                         if r["id"] == f"program-{self.program_id}"), None)
        if resource is None:
            raise click.ClickException("derflex demo: the v2 discover found no \"Peak Saver\" resource in the catalog")
        need = resource["resourceAttributes"]
        offer = next(o for c in catalogs for o in c.get("offers") or [] if o["id"] == f"offer-program-{self.program_id}")
        buyer = next(i["inputs"] for i in offer["offerAttributes"]["inputs"] if i["role"] == "buyer")
        period = (need["intervalPeriod"]["start"], need["intervalPeriod"]["duration"])
        _say(f"  discover: resource {resource['id']} (DemandFlexNeed, {len(need['intervals'])} intervals of "
             f"{period[1]} from {period[0]}), offer offer-program-{self.program_id} (DemandFlexBuyOffer, pay-as-clear)")
        offers = self.fleet.offers(self.minutes * 60, 0.0, float(buyer["priceCap"]))  # the offer's cap
        show = progress_printer()
        done = [0]

        def one(i: int) -> dict[str, Any]:
            device, curve = self.fleet.devices[i], offers[i]
            bid = bid_blocks(curve, len(need["intervals"]))
            try:
                got = self.bap.enroll(self.program_id, [device.agent.lfdi], seller=f"customer-{i + 1}", bid=bid,
                                      period=period, currency="INR",
                                      resource_types={device.agent.lfdi: RESOURCE_TYPES[device.kind]})
                out = {"ok": True, "customer": f"Customer {i + 1}", "transaction_id": got["transaction_id"],
                       "contract": got["contract"], "bid": bid, "cleared": cleared(got["contract"])}
            except Exception as exc:  # reported below, with the customer
                out = {"ok": False, "customer": f"Customer {i + 1}", "error": str(exc)}
            done[0] += 1
            show("contracts confirmed", done[0], self.n)
            return out

        with ThreadPoolExecutor(max_workers=4) as pool:
            results = list(pool.map(one, range(self.n)))
        failed = [r for r in results if not r["ok"]]
        if failed:
            raise click.ClickException(f"derflex demo: {len(failed)} of {len(results)} v2 contracts failed, e.g. "
                            f"{failed[0]['customer']}: {failed[0]['error']}")
        self.orders = results
        states = {r["contract"]["status"]["code"] for r in results}
        bids = sum(1 for r in results if r["bid"])
        rest = len(results) - bids
        _say(f"  {len(results)} contracts {'/'.join(sorted(states))}, {bids} with a block bid ({BLOCKS} blocks per "
             f"interval)" + (f", {rest} on their devices' default curves (nothing to offer now)" if rest else ""))

    def hear_settlement(self) -> None:
        """Every contract's settled on_status (pushed through the outbox), its revenue flows."""
        from der_sim.bap_v2 import revenue_flows

        self.settled_pushes: dict[str, list[dict[str, Any]]] = {}
        deadline = time.monotonic() + 30
        for r in self.orders:
            try:
                push = self.bap.wait_push(r["transaction_id"], timeout=max(0.1, deadline - time.monotonic()),
                                          until=lambda m: bool(revenue_flows(m.get("contract") or {})))
                self.settled_pushes[r["contract"]["id"]] = revenue_flows(push["message"]["contract"])
            except Exception as exc:  # the settlement is stored either way; say what the BAP saw
                _say(f"  (the BAP did not see the settled on_status of {r['customer']} in time: {exc})")
                break
        if self.settled_pushes:
            cid, flows = next(iter(self.settled_pushes.items()))
            seller = sum(Decimal(str(f["value"])) for f in flows if f["role"].upper() == "SELLER")
            _say(f"  the BAP received the settled on_status of {len(self.settled_pushes)} contract(s) (signed, "
                 f"counter-signed Acks); contract {cid[:8]}…: {len(flows)} revenue flows, ₹{seller} to the customer, "
                 f"sum {sum(Decimal(str(f['value'])) for f in flows)}")

    def summary(self, report: dict[str, Any]) -> None:
        super().summary(report)  # type: ignore[misc]  # the Demo's
        s_ = report.get("summary", report)
        prices = sorted({p for r in self.orders for _, p in r["cleared"][:1]})
        pushed = [Decimal(str(f["value"])) for flows in self.settled_pushes.values() for f in flows
                  if f["role"].upper() == "SELLER"]
        stored = sum(f["amount_minor"] for f in s_["flows"] if f["role"] == "SELLER") / Decimal(100)
        _say(f"  over Beckn v2.0.0 LTS: {len(self.orders)} contracts by discover → select → init → confirm "
             "with block bids; each on_confirm carried CAPACITY_CLEARED / CLEARING_PRICE of the market as it "
             "stood then" + (f" (₹{prices[0]:g}–{prices[-1]:g}/kWh)" if prices else "")
             + "; the scheduler cleared them all together when it published")
        _say(f"  settled on_status pushed to {len(self.settled_pushes)} of {len(self.orders)} contracts: "
             f"₹{sum(pushed)} to customers in their DEGContract revenue flows (stored settlement: ₹{stored:.2f})")
        if len(self.settled_pushes) == len(self.orders) and sum(pushed) != stored:
            raise click.ClickException(f"derflex demo: the v2 revenue flows (₹{sum(pushed)}) do not match the settlement "
                            f"(₹{stored:.2f})")
