"""Beckn v2.0.0 end to end with real processes: a real `derflex serve` (its BPP at /beckn/v2, the
scheduler leading), our v2 BAP (der_sim.bap_v2) and its callback receiver (der_sim.bap_receiver
in v2 mode: it verifies our signatures and answers counter-signed Acks), over HTTP.

The story, in about 85 s: discover → select → init → confirm with a block bid on two batteries
(CAPACITY_CLEARED / CLEARING_PRICE checked against a brute-force clearing) → update: a third
battery opts in with a new bid (cleared again) → the scheduler publishes a one-minute window from
the meters' offers (each battery's setpoint is its share of the brute-force clearing; the BAP hears
an on_status) → the window's readings → settlement → the settled on_status pushed in pages of two
meters (BecknPageInfo) and pulled the same way by status: revenue flows that sum to zero and equal
the stored settlement to the minor unit.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select

from der_sim.bap import BapIdentity, registry_lookup
from der_sim.bap_receiver import CallbackReceiver
from der_sim.bap_v2 import BapV2, BapV2CallbackError, BapV2Client, cleared, performance, revenue_flows
from server.bootstrap import prepare
from server.config import from_env
from server.db import flex as store
from server.db import settlement as records
from server.services.bpp import keys as beckn_keys
from server.services.flex import programs as flex
from tests.builders import SPLIT, lfdi, mirror, rated_battery
from tests.e2e.conftest import free_port, start_server, stop_server
from tests.e2e.test_beckn_flow import _wait_port

pytestmark = pytest.mark.e2e

DAY = 86_400
BID = [([0.10, 0.26, 0.40], [1.5, 4.5, 3.0])]  # two batteries: 9 kW in three blocks
OPT_IN = [([0.10, 0.20, 0.35], [2.0, 3.0, 6.0])]  # three batteries: 11 kW


def brute_force(bid: list[tuple[list[float], list[float]]], requested: float, cap: float) -> tuple[float, float]:
    """(cleared kW, price) of one interval: the lowest block price whose blocks at or below it
    reach the request, the last block shared; short of it, all blocks under the cap at the cap."""
    prices, caps = bid[0]
    for p in sorted(set(prices)):
        if p <= cap and sum(q for bp, q in zip(prices, caps) if bp <= p) >= requested - 1e-12:
            return requested, p
    return sum(q for bp, q in zip(prices, caps) if bp <= cap), cap


def _until(what: str, check, seconds: float, poll: float = 0.25):  # noqa: ANN001, ANN202
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(poll)
    raise AssertionError(f"{what}: not within {seconds} s")


def test_v2_bap_from_discover_to_settled_revenue_flows(tmp_path: Path) -> None:
    beckn_port, receiver_port = free_port(), free_port()
    env = {"DERFLEX_BECKN_BIND": f"127.0.0.1:{beckn_port}", "DERFLEX_SCHEDULER": "true",
           "DERFLEX_SCHEDULER_RECONCILE_SECONDS": "1", "DERFLEX_BECKN_V2_PAGE_SIZE": "2",
           "DERFLEX_BECKN_V2_NETWORKS": "nfh.global/testnet-deg"}
    settings = from_env(env, home=tmp_path)
    db = prepare(settings, say=lambda _m: None)
    bpp_entry = beckn_keys.our_entry(settings, datetime.now(UTC))
    identity = BapIdentity.generate("bap.v2.e2e", f"http://127.0.0.1:{receiver_port}/bap")
    beckn_keys.add_to_file_registry(settings, identity.subscriber())
    lfdis = [lfdi(f"v2-e2e-{i}") for i in range(3)]
    with db.transaction() as s:
        devices = [rated_battery(s, x, int(time.time()) - DAY * 10) for x in lfdis]
    server = start_server(tmp_path, env=env)
    receiver = CallbackReceiver(settings.beckn_subscriber_id, registry_lookup([bpp_entry]), port=receiver_port,
                                path="/bap", v2_key=identity.signing_key).start()
    try:
        _wait_port(beckn_port)
        # a one-minute window starting in 14 s (published 5 s ahead), history on five earlier days
        start_dt = (datetime.now(UTC) + timedelta(seconds=14)).replace(microsecond=0)
        start, end = int(start_dt.timestamp()), int(start_dt.timestamp()) + 60
        program = {"name": "Flash Peak", "currency": "USD", "description": "v2 e2e",
                   "window": {"weekdays": list(range(7)), "start": start_dt.strftime("%H:%M:%S"),
                              "end": (start_dt + timedelta(seconds=60)).strftime("%H:%M:%S"), "tz": "UTC"},
                   "requested_kw": 6.0, "price_cap": 0.5, "incentive": {"kind": "pay_as_clear"},
                   "eligible_kinds": ["battery"], "lead_time_s": 5,
                   "measurement": {"interval_s": 60, "delay_s": 4, "resettle_days": 1, "split": SPLIT,
                                   "baseline": {"x": 3, "y": 3, "min_days": 3, "lookback_days": 10, "day_types": "any"}}}
        with db.transaction() as s:
            program_id = flex.create_program(s, program, start - 600)["id"]
        for x in lfdis:
            for back in range(1, 6):
                mirror(db, x, start - back * DAY - 600, [3000] * 11, step=60, now=start - 60)

        bap = BapV2(BapV2Client(identity, settings.beckn_subscriber_id, f"http://127.0.0.1:{beckn_port}/beckn/v2",
                                bpp_key=bpp_entry.signing_public_key), receiver, timeout=15)
        [catalog] = bap.discover("flash")
        [resource] = catalog["resources"]
        assert resource["id"] == f"program-{program_id}"
        need = resource["resourceAttributes"]
        period = (need["intervalPeriod"]["start"], need["intervalPeriod"]["duration"])
        enrolled = bap.enroll(program_id, lfdis[:2], seller="customer-ada", bid=BID, period=period, currency="USD")
        contract, txn = enrolled["contract"], enrolled["transaction_id"]
        assert [a["message"]["contract"]["status"]["code"] for a in enrolled["answers"].values()] == \
            ["DRAFT", "DRAFT", "ACTIVE"]
        assert cleared(contract) == [brute_force(BID, 6.0, 0.5)] == [(6.0, 0.26)]
        # opt-in by update: a third battery, a new bid for all three
        updated = bap.update(program_id, contract["id"], txn, seller="customer-ada", meters=lfdis, bid=OPT_IN,
                             period=period, currency="USD")
        assert cleared(updated) == [brute_force(OPT_IN, 6.0, 0.5)] == [(6.0, 0.35)]
        with pytest.raises(BapV2CallbackError) as err:  # more than the three batteries' 15 kW
            bap.update(program_id, contract["id"], txn, seller="customer-ada", bid=[([0.1], [16.0])], period=period,
                       currency="USD")
        assert err.value.code == "40002"
        assert bap.status(contract["id"], txn)["status"]["code"] == "ACTIVE"

        # the scheduler publishes from the meters' offers: 2 kW each (a third of the 6 kW cleared at 0.35)
        def published() -> bool:
            with db.transaction() as s:
                w = store.window(s, program_id, start_dt.date().isoformat())
                return w is not None and w.state == "published"
        _until("the window published", published, end - time.time())
        push = bap.wait_push(txn, timeout=10)
        assert push["message"]["contract"]["id"] == contract["id"]
        with db.transaction() as s:
            w = store.window(s, program_id, start_dt.date().isoformat())
            points = s.execute(select(store.Setpoint.device_id, store.Setpoint.reduction_kw, store.Setpoint.device_price)
                               .join(store.Clearing, store.Clearing.id == store.Setpoint.clearing_id)
                               .where(store.Clearing.window_id == w.id)).all()
        assert sorted(d for d, _, _ in points) == sorted(devices)
        assert all(abs(kw - 2.0) < 1e-6 and abs(price - 0.35) < 1e-9 for _, kw, price in points), points

        # the window: 1, 2 and 0 kW drawn against a 3 kW baseline; readings posted as it ends
        time.sleep(max(0.0, end - time.time()) + 0.2)
        for x, watts in zip(lfdis, (1000, 2000, 0)):
            mirror(db, x, start, [watts], step=60, now=end)

        def settled_pages() -> list[dict]:
            got = [c for c in receiver.callbacks if c.action == "on_status" and c.message
                   and revenue_flows(c.message["contract"])]
            return got if len(got) >= 2 else []
        pages = _until("the settled on_status pages", settled_pages, 25)
        infos = sorted((performance(c.message["contract"])[0]["pageInfo"] for c in pages), key=lambda i: i["sequence"])
        # the pages are pushed as separate callbacks: they may arrive in either order
        assert [(i["sequence"], i["isLast"], i["total"]) for i in infos] == [(0, False, 3), (1, True, 3)]
        pages = sorted(pages, key=lambda c: performance(c.message["contract"])[0]["pageInfo"]["sequence"])
        pushed_meters = [m["meterId"] for c in pages for m in performance(c.message["contract"])[0]["meters"]]
        assert sorted(pushed_meters) == sorted(lfdis)
        flows = revenue_flows(pages[0].message["contract"])
        assert sum(Decimal(str(f["value"])) for f in flows) == 0
        with db.transaction() as s:
            run = s.scalars(select(records.SettlementRun).order_by(records.SettlementRun.id.desc())).first()
            by_role: dict[str, int] = {}
            for row in records.device_rows(s, run.id):
                for f in json.loads(row.detail)["flows"]:
                    by_role[f["role"]] = by_role.get(f["role"], 0) + f["amount_minor"]
        assert {f["role"].upper(): int(Decimal(str(f["value"])) * 100) for f in flows if f["role"] != "buyer"} == \
            {k: v for k, v in by_role.items() if v}
        assert sum(by_role.values()) > 0
        # the same pages pulled by status (pageCursor)
        pulled = bap.status_pages(contract["id"], txn)
        assert [m["meterId"] for c in pulled for m in performance(c)[0]["meters"]] == pushed_meters
        assert all(revenue_flows(c) == flows for c in pulled)
        assert receiver.failures == []  # every callback was signed by the BPP and verified
    finally:
        receiver.stop()
        assert stop_server(server) == 0, server.log.read_text()
        db.dispose()
