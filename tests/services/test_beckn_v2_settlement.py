"""A v2 contract's bid curve all the way down: confirm → the meters' offers (Enroll / ChangeOffer) →
the scheduler's clearing → the DERControls the devices read → settlement → the on_status pushes
the outbox queues for the contract (at publish and once settled).

Two contracts bid into the builders' "Peak Saver" (6 kW per hour, cap 0.50 USD): A on two 5 kW
batteries, B on a battery whose discharge is set to 2.5 kW. Every cleared figure is compared with
an independent brute-force clearing of the contracts' blocks written here (lowest block price
where the blocks at or below it reach the request; the blocks at that price shared pro rata), and
each meter's setpoint with its share of its contract (its discharge limit over the contract's).
The settled on_status is compared with the stored settlement rows to the minor unit.

The actions run through server.services.bpp.v2contracts.handle (what the worker runs) at chosen
times; the HTTP path is covered by tests/api/test_beckn_v2.py and tests/e2e/test_beckn_v2_flow.py.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from lxml import etree
from sqlalchemy import select

from der_sim.bap_v2 import cleared, contract_message, performance, revenue_flows
from programs.settlement import exponent
from server.beckn_v2 import envelope
from server.beckn_v2.context import context_from_json
from server.beckn_v2.errors import V2Error
from server.db import beckn as beckn_store
from server.db import flex as store
from server.db import settlement as records
from server.jobs.outbox import OutboxDrainer
from server.scope import Scope
from server.sep2 import codec
from server.sep2.der import ActivePower, DERSettings
from server.sep2.paging import Page
from server.services.bpp import v2contracts
from server.services.bpp.provider import Provider
from server.services.bpp.pushes import BecknPushes
from server.services.flex import programs as flex, publishing, settlement, windows
from server.services.sep2 import der, derp
from server.services.sep2.der import DER_ID
from tests.builders import DAY, END, EVENT_W, KEY, PROGRAM, PUBLISH_AT, START, lfdi, mirror, rated_battery

PROVIDER = Provider(bpp_id="bpp.flex.example", bpp_uri="https://bpp.flex.example/beckn")
BAP, BAP_URI = "bap.v2.example", "https://bap.v2.example/beckn"
CONFIRM_AT = PUBLISH_AT - 3 * DAY
PERIOD = ("2026-11-30T21:00:00Z", "PT1H")
BID_A = [([0.10, 0.26, 0.40], [1.5, 4.5, 3.0]), ([0.10, 0.30], [2.0, 6.0])]
BID_B = [([0.26], [2.0]), ([0.20], [1.0])]
NS = "{urn:ieee:std:2030.5:ns}"


def flat(pairs: list[tuple[float, float]]) -> list[float]:
    return [x for pair in pairs for x in pair]


def brute_force(bids: dict[str, list[tuple[list[float], list[float]]]], requested: float,
                cap: float) -> list[tuple[dict[str, float], float]]:
    """Per interval: each contract's cleared kW and the price, from the blocks alone."""
    n = len(next(iter(bids.values())))
    out = []
    for k in range(n):
        blocks = [(p, q, who) for who, bid in bids.items() for p, q in zip(*bid[k]) if p <= cap]
        price, share = cap, {who: 0.0 for who in bids}
        for p in sorted({b[0] for b in blocks}):
            below = sum(q for bp, q, _ in blocks if bp < p)
            at = sum(q for bp, q, _ in blocks if bp == p)
            if below + at >= requested - 1e-12:
                fraction = (requested - below) / at
                for bp, q, who in blocks:
                    share[who] += q if bp < p else q * fraction if bp == p else 0.0
                price = p
                break
        else:  # short of the request: everything at or below the cap, at the cap
            for _, q, who in blocks:
                share[who] += q
        out.append((share, price))
    return out


def call(database, action: str, message: dict[str, Any], now: int, txn: str) -> dict[str, Any]:  # noqa: ANN001
    ctx = {"version": "2.0.0", "action": action, "bapId": BAP, "bapUri": BAP_URI, "bppId": PROVIDER.bpp_id,
           "bppUri": PROVIDER.v2_uri, "transactionId": txn, "messageId": str(uuid.uuid4()),
           "timestamp": datetime.fromtimestamp(now, UTC).isoformat().replace("+00:00", "Z")}
    request = envelope.Request(context_from_json(ctx, action=action), message)
    with database.transaction() as s:
        return v2contracts.handle(s, request, PROVIDER, now)


def confirm(database, world: dict[str, Any], meters: list[str], bid: Any, now: int = CONFIRM_AT) -> tuple[str, str, dict]:  # noqa: ANN001
    txn = str(uuid.uuid4())
    msg = contract_message(world["program"], meters=meters, seller=f"customer-{txn[:4]}", period=PERIOD)
    cid = call(database, "init", msg, now, txn)["contract"]["id"]
    msg = contract_message(world["program"], meters=meters, seller=f"customer-{txn[:4]}", bid=bid, contract_id=cid,
                           period=PERIOD)
    return cid, txn, call(database, "confirm", msg, now, txn)["contract"]


@pytest.fixture
def world(database):  # noqa: ANN001, ANN201
    now = PUBLISH_AT - 10 * DAY
    lfdis = [lfdi(f"v2-settle-{i}") for i in range(3)]
    with database.transaction() as s:
        devices = [rated_battery(s, x, now) for x in lfdis]
        der.put(s, Scope.operator(), devices[2], DER_ID, DERSettings(
            modes_enabled="00000080", set_grad_w=100, set_max_w=ActivePower(multiplier=0, value=5000),
            set_max_charge_rate_w=ActivePower(multiplier=0, value=5000),
            set_max_discharge_rate_w=ActivePower(multiplier=0, value=2500), updated_time=0), now)
        program = flex.create_program(s, PROGRAM, now)
    return {"program": program["id"], "der_program": program["der_program_id"], "devices": devices, "lfdis": lfdis}


def setpoints(database, world: dict[str, Any]) -> dict[tuple[int, int], tuple[float, float, str]]:  # noqa: ANN001
    """(device, interval) → (reduction kW, price, event mRID) of the window's latest revision."""
    with database.transaction() as s:
        w = store.window(s, world["program"], KEY)
        rows = s.execute(select(store.Clearing.interval_index, store.Setpoint).join(
            store.Setpoint, store.Setpoint.clearing_id == store.Clearing.id).where(
            store.Clearing.window_id == w.id, store.Clearing.revision == w.revision)).all()
    return {(sp.device_id, k): (sp.reduction_kw, sp.device_price, sp.event_mrid) for k, sp in rows}


def test_a_confirmed_bid_is_what_the_scheduler_clears_publishes_and_settles(world, database, sep2_schema) -> None:  # noqa: ANN001
    a_meters, b_meters = world["lfdis"][:2], [f"did:web:meters.example:{world['lfdis'][2]}"]
    cid_a, txn_a, a = confirm(database, world, a_meters, BID_A)
    # A alone: its own blocks clear the request
    assert flat(cleared(a)) == pytest.approx(flat([(s["a"], p) for s, p in brute_force({"a": BID_A}, 6.0, 0.5)]), abs=1e-6)
    assert flat(cleared(a)) == pytest.approx(flat([(6.0, 0.26), (6.0, 0.30)]), abs=1e-6)
    with database.transaction() as s:
        offers = {e.device_id: json.loads(e.offer) for e in s.scalars(select(store.Enrollment).where(
            store.Enrollment.external_ref == cid_a))}
    # each 5 kW battery offers half of every block, one power curve per interval, from idle
    assert offers[world["devices"][0]] == offers[world["devices"][1]] == {"intervals": [
        [[0.10, 0.0], [0.10, 0.75], [0.26, 0.75], [0.26, 3.0], [0.40, 3.0], [0.40, 4.5]],
        [[0.10, 0.0], [0.10, 1.0], [0.30, 1.0], [0.30, 4.0]]]}
    cid_b, txn_b, b = confirm(database, world, b_meters, BID_B)
    both = brute_force({"a": BID_A, "b": BID_B}, 6.0, 0.5)
    assert flat(cleared(b)) == pytest.approx(flat([(s["b"], p) for s, p in both]), abs=1e-6)
    assert cleared(b)[1] == pytest.approx((1.0, 0.30))

    # the scheduler publishes the window from the same offers
    for x in world["lfdis"]:
        for back in range(1, 6):
            mirror(database, x, START - back * DAY - 3600, [3000] * 12)
    with database.transaction() as s:
        windows.plan_windows(s, PUBLISH_AT - DAY, 7 * DAY)
    assert publishing.run_window(database, world["program"], KEY, PUBLISH_AT)["devices"] == 3
    got = setpoints(database, world)
    limits = {world["devices"][0]: ("a", 0.5), world["devices"][1]: ("a", 0.5), world["devices"][2]: ("b", 1.0)}
    for k, (share, price) in enumerate(both):
        for device, (who, part) in limits.items():
            reduction, device_price, _ = got[(device, k)]
            assert reduction == pytest.approx(share[who] * part, abs=1e-6), (device, k)
            assert device_price == pytest.approx(price)
    # … and each device reads its setpoint as a DERControl: opModFixedW in hundredths of % of its discharge limit
    for device, (who, part) in limits.items():
        with database.transaction() as s:
            doc = codec.render(derp.control_list(s, Scope.operator(), device, world["der_program"], Page(0, 10),
                                                 PUBLISH_AT).model)
        sep2_schema(doc)
        tree = etree.fromstring(doc)
        fixed = {int(c.findtext(f"{NS}interval/{NS}start")): int(c.findtext(f"{NS}DERControlBase/{NS}opModFixedW"))
                 for c in tree.iter(f"{NS}DERControl")}
        limit_kw = 2.5 if who == "b" else 5.0
        for k, (share, _) in enumerate(both):
            assert fixed[START + 3600 * k] == round(share[who] * part / limit_kw * 10_000), (device, k)

    # an update replaces A's bid: the meters' offers change (ChangeOffer) and the window re-clears
    new_a = [([0.45], [6.0]), ([0.45], [6.0])]
    contract = call(database, "update", contract_message(world["program"], meters=None, seller="x", bid=new_a,
                                                         contract_id=cid_a, period=PERIOD), PUBLISH_AT + 60, txn_a)["contract"]
    after = brute_force({"a": new_a, "b": BID_B}, 6.0, 0.5)
    assert flat(cleared(contract)) == pytest.approx(flat([(s["a"], p) for s, p in after]), abs=1e-6)
    assert publishing.run_window(database, world["program"], KEY, PUBLISH_AT + 120)["action"] == "republish"
    got = setpoints(database, world)
    for k, (share, price) in enumerate(after):
        assert got[(world["devices"][0], k)][:2] == pytest.approx((share["a"] / 2, price), abs=1e-6)
        assert got[(world["devices"][2], k)][:2] == pytest.approx((share["b"], price), abs=1e-6)

    # a bid beyond what the meters can do is refused, naming the interval; nothing changes
    with pytest.raises(V2Error) as err:
        call(database, "update", contract_message(world["program"], meters=None, seller="x", bid=[([0.1], [10.5])] * 2,
                                                  contract_id=cid_a, period=PERIOD), PUBLISH_AT + 180, txn_a)
    assert err.value.code == "40002" and err.value.path.endswith("commitmentAttributes.intervals[0]")
    assert "10 kW at most" in err.value.message



# ------------------------------------------------------------------------------ pushes, settled


@pytest.fixture(scope="module")
def v2_schema():  # noqa: ANN201
    from tests.api.test_beckn_v2 import V2Schema, _reference

    pytest.importorskip("jsonschema")
    pytest.importorskip("yaml")
    return V2Schema(_reference())


def drain(database, now: float) -> list[dict[str, Any]]:  # noqa: ANN001
    """What the outbox drainer queues at `now` for the BAPs (the bodies of the new beckn_outbox rows)."""
    with database.transaction() as s:
        before = s.scalar(select(beckn_store.BecknOutbox.id).order_by(beckn_store.BecknOutbox.id.desc()).limit(1)) or 0
    OutboxDrainer(database, [BecknPushes(PROVIDER, retry_for_s=3600)], clock=lambda: now).drain()
    with database.transaction() as s:
        rows = s.scalars(select(beckn_store.BecknOutbox).where(beckn_store.BecknOutbox.id > before)
                         .order_by(beckn_store.BecknOutbox.id)).all()
        return [{"url": r.url, "action": r.action, **json.loads(r.body)} for r in rows]


def test_the_outbox_pushes_v2_contracts_their_window_and_their_settlement(world, database, v2_schema) -> None:  # noqa: ANN001
    cid_a, txn_a, _ = confirm(database, world, world["lfdis"][:2], BID_A)
    cid_b, txn_b, _ = confirm(database, world, world["lfdis"][2:], BID_B)
    for x in world["lfdis"]:  # five earlier days of 3 kW: a 3 kW baseline
        for back in range(1, 6):
            mirror(database, x, START - back * DAY - 3600, [3000] * 12)
    with database.transaction() as s:
        windows.plan_windows(s, PUBLISH_AT - DAY, 7 * DAY)
    publishing.run_window(database, world["program"], KEY, PUBLISH_AT)
    published = drain(database, PUBLISH_AT + 1)
    assert sorted(b["message"]["contract"]["id"] for b in published) == sorted([cid_a, cid_b])
    for body in published:  # unsolicited v2 on_status in the contract's transaction, to its BAP
        ctx = body["context"]
        assert (body["action"], body["url"], ctx["action"], ctx["version"]) == (
            "on_status", f"{BAP_URI}/on_status", "on_status", "2.0.0")
        assert ctx["transactionId"] == {cid_a: txn_a, cid_b: txn_b}[body["message"]["contract"]["id"]]
        uuid.UUID(ctx["messageId"])
        assert v2_schema.errors("on_status", body) == [], body
        assert "performance" not in body["message"]["contract"]  # nothing settled yet
    for x, w in zip(world["lfdis"], EVENT_W):  # during the window: 1, 2 and 0 kW
        mirror(database, x, START, [w] * 8, now=END)
    out = settlement.settle_window(database, world["program"], KEY, END + 600)
    gross = out["settlement"]["gross_minor"]
    settled = {b["message"]["contract"]["id"]: b for b in drain(database, END + 601)}
    assert set(settled) == {cid_a, cid_b}
    with database.transaction() as s:
        run = s.scalars(select(records.SettlementRun).order_by(records.SettlementRun.id.desc())).first()
        rows = records.device_rows(s, run.id)
        by_contract: dict[str, dict[str, int]] = {}
        for r in rows:
            enr = s.get(store.Enrollment, r.enrollment_id)
            for f in json.loads(r.detail)["flows"]:
                roles = by_contract.setdefault(enr.external_ref, {})
                roles[f["role"]] = roles.get(f["role"], 0) + f["amount_minor"]
    assert sum(sum(v.values()) for v in by_contract.values()) == gross > 0
    unit = Decimal(1).scaleb(-exponent("USD"))
    for cid, body in settled.items():
        assert v2_schema.errors("on_status", body) == [], body
        contract = body["message"]["contract"]
        flows = revenue_flows(contract)
        assert sum(Decimal(str(f["value"])) for f in flows) == 0  # DEGContract: they sum to zero
        minor = {f["role"].upper(): int(Decimal(str(f["value"])) / unit) for f in flows if f["role"] != "buyer"}
        assert minor == {k: v for k, v in by_contract[cid].items() if v}  # our settlement, to the minor unit
        buyer = [f for f in flows if f["role"] == "buyer"]
        assert len(buyer) == 1 and int(Decimal(str(buyer[0]["value"])) / unit) == -sum(by_contract[cid].values())
        [perf] = performance(contract)
        meters = {m["meterId"]: m["telemetry"] for m in perf["meters"]}
        mine = world["lfdis"][:2] if cid == cid_a else world["lfdis"][2:]
        assert set(meters) == set(mine)
        for x in mine:
            usage = [iv["payloads"] for iv in meters[x]["intervals"]]
            w = EVENT_W[world["lfdis"].index(x)]
            assert [p["values"][0] for ps in usage for p in ps if p["type"] == "USAGE"] == [w / 1000] * 8
            assert [p["values"][0] for ps in usage for p in ps if p["type"] == "BASELINE"] == [3.0] * 8
        assert contract["settlements"][0]["status"] == "COMPLETE"
    # a status request answers what was pushed
    with database.transaction() as s:
        asked = v2contracts.status_message(s, s.get(beckn_store.BecknOrder, cid_a), PROVIDER, END + 602)
    assert revenue_flows(asked["contract"]) == revenue_flows(settled[cid_a]["message"]["contract"])


def test_an_interval_offer_is_checked_per_interval_and_names_the_point() -> None:
    from server.services.flex.command_errors import CommandError
    from server.services.flex.offers import parse_offer

    good = parse_offer({"intervals": [[[0.1, 0.0], [0.2, 1.0]], [[0.1, 0.0], [0.3, 2.0]]]})
    assert good is not None and len(good.curves()) == 2 and good.intervals[1][1] == (0.3, 2.0)
    for bad, field in [({"intervals": []}, "offer.intervals"),
                       ({"intervals": [[[0.1, 0.0]], "x"]}, "offer.intervals[1]"),
                       ({"intervals": [[[0.1, 0.0], [0.2, -1.0]]]}, "offer.intervals[0][1]"),
                       ({"intervals": [[[0.1, 0.0]], [[0.1, -2.0]]]}, "offer.intervals[1]")]:
        with pytest.raises(CommandError) as err:
            parse_offer(bad)
        assert err.value.field == field, (bad, err.value.field, err.value.message)


def test_performance_comes_in_pages_pulled_by_cursor_and_pushed_in_sequence(world, database, v2_schema) -> None:  # noqa: ANN001
    import dataclasses

    from server.services.bpp import v2pipeline

    cid, txn, _ = confirm(database, world, world["lfdis"], [([0.10], [6.0])] * 2)
    for x in world["lfdis"]:
        for back in range(1, 6):
            mirror(database, x, START - back * DAY - 3600, [3000] * 12)
    with database.transaction() as s:
        windows.plan_windows(s, PUBLISH_AT - DAY, 7 * DAY)
    publishing.run_window(database, world["program"], KEY, PUBLISH_AT)
    for x in world["lfdis"]:
        mirror(database, x, START, [1000] * 8, now=END)
    settlement.settle_window(database, world["program"], KEY, END + 600)
    paged = dataclasses.replace(PROVIDER, v2_page_size=2)
    seen, cursor = [], None
    while True:  # pull: status with context.tags pagination/pageCursor until nextCursor is null
        tags = None if cursor is None else [{"descriptor": {"code": "pagination"},
                                             "list": [{"descriptor": {"code": "pageCursor"}, "value": cursor}]}]
        ctx = {"version": "2.0.0", "action": "status", "bapId": BAP, "bapUri": BAP_URI, "bppId": PROVIDER.bpp_id,
               "transactionId": txn, "messageId": str(uuid.uuid4()), "timestamp": "2026-11-30T23:20:00Z",
               **({"tags": tags} if tags else {})}
        request = envelope.Request(context_from_json(ctx, action="status"), {"contract": {"id": cid}})
        with database.transaction() as s:
            contract = v2contracts.handle(s, request, paged, END + 700)["contract"]
        [perf] = performance(contract)
        info = perf["pageInfo"]
        assert info["sequence"] == len(seen) // 2 and info["total"] == 3 and info["pageSize"] == 2
        seen += [m["meterId"] for m in perf["meters"]]
        cursor = info["nextCursor"]
        assert info["isLast"] == (cursor is None)
        if cursor is None:
            break
    assert sorted(seen) == sorted(world["lfdis"])
    with pytest.raises(V2Error) as err:  # a cursor that is not ours
        ctx["tags"] = [{"descriptor": {"code": "pagination"}, "list": [{"descriptor": {"code": "pageCursor"}, "value": "x9"}]}]
        with database.transaction() as s:
            v2contracts.handle(s, envelope.Request(context_from_json(ctx, action="status"), {"contract": {"id": cid}}),
                               paged, END + 700)
    assert err.value.path == "context.tags"
    # push: one on_status per page, in sequence, isLast on the last
    with database.transaction() as s:
        before = s.scalar(select(beckn_store.BecknOutbox.id).order_by(beckn_store.BecknOutbox.id.desc()).limit(1)) or 0
        first = v2pipeline.push_contract_status(s, s.get(beckn_store.BecknOrder, cid), paged, END + 800)
        bodies = [json.loads(b) for b in s.scalars(select(beckn_store.BecknOutbox.body).where(
            beckn_store.BecknOutbox.id > before).order_by(beckn_store.BecknOutbox.id))]
    assert [b["message"]["contract"]["performance"][0]["performanceAttributes"]["pageInfo"]["sequence"]
            for b in bodies] == [0, 1]
    assert bodies[0]["context"]["messageId"] == first != bodies[1]["context"]["messageId"]
    for b in bodies:
        assert v2_schema.errors("on_status", b) == [], b


def test_derflex_beckn_orders_shows_v2_contracts_beside_v1_orders(world, database, settings) -> None:  # noqa: ANN001
    from click.testing import CliRunner

    from server.cli import main

    cid, _, _ = confirm(database, world, world["lfdis"][:2], BID_A)
    with database.transaction() as s:  # a v1 order of the same BAP, as the v1 BPP stores one
        s.add(beckn_store.BecknOrder(id="v1-order-1", bap_id=BAP, bap_uri=BAP_URI, transaction_id="t-1",
                                     program_id=world["program"], state="active", order="{}", context="{}",
                                     created_time=CONFIRM_AT, updated_time=CONFIRM_AT - 1))
    env = {"DERFLEX_DATABASE_URL": database.url}
    out = CliRunner().invoke(main, ["--home", str(settings.home), "beckn", "orders", "--json"], env=env)
    assert out.exit_code == 0, out.output
    rows = json.loads(out.output)
    assert [(r["id"], r["version"], r["state"], r["meters"]) for r in rows] == [
        (cid, "2.0.0", "active", 2), ("v1-order-1", "1.1.0", "active", 0)]
    assert [(c["kw"], c["price"]) for c in rows[0]["cleared"]] == [(6.0, 0.26), (6.0, 0.30)]
    text = CliRunner().invoke(main, ["--home", str(settings.home), "beckn", "orders"], env=env).output
    assert f"{cid}  v2.0.0" in text and "cleared 6 kW at 0.26; 6 kW at 0.3" in text
