"""The BPP's business logic (server.services.bpp.actions) against a real database: programs as
catalog items, orders as enrollments, and every answer a valid v1.1.0 callback message.

Requests are built directly (server.beckn.context / envelope); `answer` runs one action in its
own transaction, like the pipeline does, wraps the message in its callback and validates it with
tests/beckn_schema.py when $BECKN_REFERENCE_DIR points at the official documents (the test
`test_the_official_schema_is_at_hand` skips, saying so, when it does not; the business checks run
either way). Refusals must carry the v1 code and path and leave the database as it was.

Timeline (as tests/services/test_publish.py): Monday 2026-11-30, window 16:00–18:00 New York =
21:00–23:00 UTC, published an hour before.
"""

from __future__ import annotations

import json
import math
import uuid
from datetime import datetime, timezone
from typing import Any

import pytest
from sqlalchemy import func, select

from server.beckn.context import Context, Location, callback_context
from server.beckn.envelope import Request, callback_body, error_object
from server.beckn.errors import BecknError, ErrorCode
from server.beckn.timefmt import parse_duration
from server.db import derp as der_store
from server.db import flex as store
from server.db.beckn import BecknOrder, BecknRating
from server.services.sep2 import edev
from server.services.flex import enrollments, grid_nodes, programs as flex, publishing
from server.services.bpp.actions import Provider, handle, order_status_message
from tests import beckn_schema
from tests.builders import lfdi, rated_battery

START = int(datetime(2026, 11, 30, 21, 0, tzinfo=timezone.utc).timestamp())
END = START + 7200
PUBLISH_AT = START - 3600
KEY = "2026-11-30"
SETUP = PUBLISH_AT - 86_400
BAP, OTHER_BAP = "bap.example.org", "other-bap.example.net"
PROVIDER = Provider(bpp_id="bpp.flex.example", bpp_uri="https://bpp.flex.example/beckn",
                    track_url="https://bpp.flex.example/admin/orders")

PEAK = {
    "name": "Peak Saver", "currency": "USD", "description": "Evening peak",
    "window": {"weekdays": ["mon", "tue", "wed", "thu", "fri"], "start": "16:00", "end": "18:00",
               "tz": "America/New_York"},
    "requested_kw": 6.0, "interval_s": 3600, "price_cap": 0.5,
    "incentive": {"kind": "pay_as_clear"}, "eligible_kinds": ["battery", "ev_charger"],
    "lead_time_s": 3600, "grid_node_ids": ["sub-1"],
}
HVAC = {
    "name": "Cool Homes", "currency": "USD", "description": "HVAC cycling",
    "window": {"weekdays": ["sat"], "start": "14:00", "end": "17:00", "tz": "America/New_York"},
    "requested_kw": 20.0, "price_cap": 0.3, "incentive": {"kind": "fixed", "rate_per_kwh": 0.2},
    "eligible_kinds": ["load"],
}
CURVE = [{"price": 0.10, "powerKW": 0.0}, {"price": 0.50, "powerKW": 5.0}]


def device(name: str, *, kind: str | None = None, node: str | None = "feeder-1", curve: Any = None,
           objectives: Any = None, fid: str | None = None) -> dict[str, Any]:
    """A DER fulfillment as docs/beckn.md describes it."""
    tags = [("lfdi", lfdi(name)), ("kind", kind), ("grid-node", node),
            ("bid-curve", None if curve is None else json.dumps(curve)),
            ("objectives", None if objectives is None else json.dumps(objectives))]
    f: dict[str, Any] = {"type": "DER", "tags": [{"descriptor": {"code": "der"}, "list": [
        {"descriptor": {"code": c}, "value": v} for c, v in tags if v is not None]}]}
    if fid is not None:
        f["id"] = fid
    return f


@pytest.fixture(scope="module")
def schema() -> beckn_schema.BecknSchema | None:
    try:
        return beckn_schema.load()
    except pytest.skip.Exception:
        return None


def test_the_official_schema_is_at_hand(schema: beckn_schema.BecknSchema | None) -> None:
    if schema is None:
        pytest.skip(f"{beckn_schema.REFERENCE_ENV} is not set (or jsonschema/PyYAML missing): the BPP's "
                    "messages in this module were NOT validated against the official v1.1.0 schema")
    # the checker itself: a wrong body is refused
    assert schema.errors("on_status", {"context": {"action": "on_status"}, "message": {"order": {"status": "DONE"}}})


@pytest.fixture
def world(database):  # noqa: ANN001, ANN201
    with database.transaction() as s:
        for name, parent in (("sub-1", None), ("feeder-1", "sub-1"), ("feeder-2", "sub-1"), ("other", None)):
            grid_nodes.put_grid_node(s, {"name": name, "parent": parent}, SETUP)
        devices = {}
        for name in ("battery-0", "battery-1", "battery-2", "load-0"):
            devices[name] = (rated_battery(s, lfdi(name), SETUP) if name.startswith("battery")
                             else edev.register_out_of_band(s, lfdi(name), SETUP).id)
        peak = flex.create_program(s, PEAK, SETUP)
        hvac = flex.create_program(s, HVAC, SETUP)
        gone = flex.create_program(s, {**HVAC, "name": "Old Program"}, SETUP)
        flex.cancel_program(s, gone["id"], SETUP)
    return {"peak": peak["id"], "peak_der": peak["der_program_id"], "hvac": hvac["id"], "gone": gone["id"],
            "devices": devices}


class Bpp:
    """Sends requests to `handle` the way the pipeline does (one transaction each) and checks every
    answer against the official schema of its callback."""

    def __init__(self, database, schema: beckn_schema.BecknSchema | None):  # noqa: ANN001
        self.database, self.schema = database, schema
        self.transaction_id = str(uuid.uuid4())

    def request(self, action: str, message: dict[str, Any] | None, now: int, bap: str = BAP,
                transaction_id: str | None = None) -> Request:
        ctx = Context(domain="deg:flex", location=Location(country_code="USA", city_code="std:212"),
                      action=action, version="1.1.0", bap_id=bap, bap_uri=f"https://{bap}/beckn",
                      bpp_id=PROVIDER.bpp_id, bpp_uri=PROVIDER.bpp_uri,
                      transaction_id=transaction_id or self.transaction_id, message_id=str(uuid.uuid4()),
                      timestamp=datetime.fromtimestamp(now, timezone.utc), ttl=parse_duration("PT30S"))
        return Request(ctx, message or {})

    def _check(self, request: Request, now: int, message: dict[str, Any] | None,
               error: dict[str, Any] | None = None) -> None:
        ctx = callback_context(request.context, now=datetime.fromtimestamp(now, timezone.utc),
                               bpp_id=PROVIDER.bpp_id, bpp_uri=PROVIDER.bpp_uri)
        body = json.loads(json.dumps(callback_body(ctx, message, error)))  # what travels
        if self.schema is not None and ctx.action != "on_aggregate":
            self.schema.validate(ctx.action, body)

    def __call__(self, action: str, message: dict[str, Any] | None = None, *, now: int = SETUP,
                 bap: str = BAP, transaction_id: str | None = None) -> dict[str, Any]:
        req = self.request(action, message, now, bap, transaction_id)
        with self.database.transaction() as s:
            out = handle(s, req, PROVIDER, now)
        self._check(req, now, out)
        return out

    def refused(self, action: str, message: dict[str, Any] | None, code: ErrorCode, path: str | None = None, *,
                now: int = SETUP, bap: str = BAP, transaction_id: str | None = None) -> BecknError:
        """The action fails with `code` (and `path`) and the database is exactly as before."""
        req = self.request(action, message, now, bap, transaction_id)
        before = snapshot(self.database)
        with self.database.transaction() as s:
            with pytest.raises(BecknError) as info:
                handle(s, req, PROVIDER, now)
        assert info.value.code == code, info.value
        if path is not None:
            assert info.value.path == path, info.value
        assert snapshot(self.database) == before
        if action not in ("rating",):  # on_rating requires a message even beside an error (schema)
            self._check(req, now, None, error_object(info.value.code, info.value.message, info.value.path))
        return info.value


def snapshot(database) -> dict[str, Any]:  # noqa: ANN001
    """What an action may change: orders, ratings, enrollments, memberships, events."""
    with database.transaction() as s:
        e, ev = store.Enrollment, der_store.DerEvent
        return {
            "orders": s.execute(select(BecknOrder.id, BecknOrder.state, BecknOrder.order)).all(),
            "ratings": s.scalar(select(func.count(BecknRating.id))),
            "enrollments": s.execute(select(e.id, e.device_id, e.state, e.offer, e.external_ref)).all(),
            "members": s.execute(select(der_store.ProgramMember.program_id, der_store.ProgramMember.device_id)).all(),
            "events": s.execute(select(ev.mrid, ev.cancelled_at)).all(),
        }


@pytest.fixture
def bpp(database, schema):  # noqa: ANN001, ANN201
    return Bpp(database, schema)


def items_of(answer: dict[str, Any]) -> list[str]:
    return [i["id"] for i in answer["catalog"]["providers"][0]["items"]]


def states(order: dict[str, Any]) -> dict[str, str]:
    return {f["id"]: f["state"]["descriptor"]["code"] for f in order["fulfillments"]}


def der_tag(f: dict[str, Any], code: str) -> str | None:
    return next((t["value"] for t in f["tags"][0]["list"] if t["descriptor"]["code"] == code), None)


def enrollment_states(database, program: int) -> dict[int, tuple[str, str, str | None]]:  # noqa: ANN001
    with database.transaction() as s:
        return {e.device_id: (e.state, e.source, e.external_ref) for e in store.enrollments(s, program)}


def members(database, der_program: int) -> list[int]:  # noqa: ANN001
    with database.transaction() as s:
        return der_store.member_ids(s, der_program)


def live_events(database, der_program: int) -> dict[int, int]:  # noqa: ANN001
    """device -> number of uncancelled events in the DERProgram."""
    with database.transaction() as s:
        ev = der_store.DerEvent
        rows = s.execute(select(ev.device_id, func.count()).where(ev.program_id == der_program, ev.cancelled_at.is_(None))
                         .group_by(ev.device_id)).all()
    return dict(rows)


# ------------------------------------------------------------------------------------- search


def test_the_catalog_is_built_once_per_change_counter_and_window_horizon(world, bpp, database, monkeypatch) -> None:  # noqa: ANN001
    """Searches reuse one catalog while nothing it shows changed (#17 item 4): a change of a program
    through derflex, or a listed window ending, gives the next search a new one."""
    from server.services.bpp import catalog

    built: list[int] = []
    programs = catalog.store.programs
    monkeypatch.setattr(catalog.store, "programs", lambda s, **kw: built.append(1) or programs(s, **kw))
    peak, hvac = f"program-{world['peak']}", f"program-{world['hvac']}"

    def stops(answer: dict[str, Any]) -> list[str]:
        return [st["id"] for f in answer["catalog"]["providers"][0]["fulfillments"] for st in f.get("stops", [])]

    first = bpp("search", {"intent": {}}, now=SETUP)
    assert items_of(first) == [peak, hvac] and KEY in stops(first) and len(built) == 1
    assert items_of(bpp("search", {"intent": {"descriptor": {"name": "hvac"}}}, now=SETUP + 60)) == [hvac]
    assert KEY in stops(bpp("search", {"intent": {}}, now=SETUP + 120))
    assert len(built) == 1  # three searches, one catalog
    assert KEY in stops(bpp("search", {"intent": {}}, now=END - 1))  # (later windows entered the week: rebuilt)
    before = len(built)
    assert KEY in stops(bpp("search", {"intent": {}}, now=END - 1)) and len(built) == before
    assert KEY not in stops(bpp("search", {"intent": {}}, now=END))  # the window ended: built again
    assert len(built) == before + 1
    with database.transaction() as s:
        flex.cancel_program(s, world["hvac"], END)
    assert items_of(bpp("search", {"intent": {}}, now=END + 1)) == [peak]  # the counter moved
    assert len(built) == before + 2
    with database.transaction() as s:  # inside a transaction that changed programs: never the cached one
        flex.create_program(s, {**HVAC, "name": "Brand New"}, END + 2)
        answer = catalog.search(s, {"intent": {}}, PROVIDER, END + 2)
        assert len(items_of(answer)) == 2
    assert len(items_of(bpp("search", {"intent": {}}, now=END + 3))) == 2


def test_search_lists_active_programs_and_filters(world, bpp) -> None:  # noqa: ANN001
    peak, hvac = f"program-{world['peak']}", f"program-{world['hvac']}"
    every = bpp("search", {"intent": {}})
    assert items_of(every) == [peak, hvac]  # the cancelled program is not offered
    provider = every["catalog"]["providers"][0]
    assert provider["id"] == PROVIDER.bpp_id
    item = provider["items"][0]
    assert item["descriptor"] == {"name": "Peak Saver", "code": "demand-flexibility", "short_desc": "Evening peak"}
    assert item["price"] == {"currency": "USD", "value": "0.5"}
    assert item["category_ids"] == ["demand-flexibility"] and item["fulfillment_ids"] == [f"window-{world['peak']}"]
    tags = {t["descriptor"]["code"]: t["value"] for t in item["tags"][0]["list"]}
    assert item["tags"][0]["descriptor"]["code"] == "program"
    assert tags == {"requested-kw": "6", "price-floor": "0", "incentive": "pay_as_clear", "lead-time-s": "3600",
                    "eligible-kinds": "battery,ev_charger", "grid-nodes": "sub-1",
                    "bid-curve-format": '[{"price": p, "powerKW": kw}, …]'}
    window = provider["fulfillments"][0]
    assert window["id"] == f"window-{world['peak']}" and window["type"] == "PEAK-WINDOW"
    assert {t["descriptor"]["code"]: t["value"] for t in window["tags"][0]["list"]} == {
        "weekdays": "mon,tue,wed,thu,fri", "start": "16:00", "end": "18:00", "tz": "America/New_York"}
    assert window["stops"][0] == {"id": KEY, "time": {"range": {"start": "2026-11-30T21:00:00.000Z",
                                                                 "end": "2026-11-30T23:00:00.000Z"}}}

    def search(**intent: Any) -> list[str]:
        return items_of(bpp("search", {"intent": intent}))

    assert search(descriptor={"name": "SAVER"}) == [peak]
    assert search(descriptor={"name": "hvac"}) == [hvac]  # the description counts too
    assert search(descriptor={"name": "nothing like it"}) == []
    assert search(category={"descriptor": {"code": "demand-flexibility"}}) == [peak, hvac]
    assert search(category={"descriptor": {"code": "ev-charging"}}) == []

    def kind(k: str) -> dict[str, Any]:
        return {"tags": [{"descriptor": {"code": "der"}, "list": [{"descriptor": {"code": "device-kind"}, "value": k}]}]}

    assert search(fulfillment=kind("battery")) == [peak]
    assert search(fulfillment=kind("load")) == [hvac]
    assert search(fulfillment=kind("pv")) == []

    def area(code: str) -> dict[str, Any]:
        return {"stops": [{"location": {"area_code": code}}]}

    assert search(fulfillment=area("feeder-1")) == [peak, hvac]  # behind sub-1; HVAC serves everywhere
    assert search(fulfillment=area("sub-1")) == [peak, hvac]
    assert search(fulfillment=area("other")) == [hvac]
    assert search(fulfillment=area("unknown-node")) == [hvac]
    assert search(fulfillment={**area("other"), **kind("battery")}, descriptor={"name": "peak"}) == []
    assert search(provider={"id": "someone-else"}) == []
    bpp.refused("search", {"intent": {"fulfillment": kind("fridge")}}, ErrorCode.INVALID_REQUEST,
                "message.intent.fulfillment.tags[0].list[0].value")


# ------------------------------------------------------------------------------ select, init


def _order(world, devices: list[dict[str, Any]] | None = None, *, kw: float | None = 3.0,  # noqa: ANN001
           billing: dict[str, Any] | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {"id": f"program-{world['peak']}"}
    if kw is not None:
        item["quantity"] = {"selected": {"measure": {"value": kw, "unit": "kW"}}}
    order: dict[str, Any] = {"provider": {"id": PROVIDER.bpp_id}, "items": [item]}
    if devices is not None:
        order["billing"] = billing or {"name": "Ada Lovelace", "email": "ada@example.org", "phone": "+1-555-0100"}
        order["fulfillments"] = devices
    return {"order": order}


def test_select_quotes_the_capacity_at_the_price_cap(world, bpp) -> None:  # noqa: ANN001
    out = bpp("select", _order(world, kw=3.0))["order"]
    # 3 kW x 2 h x 0.50 USD/kWh
    assert out["quote"]["price"] == {"currency": "USD", "value": "3"}
    assert out["quote"]["breakup"][0]["price"] == out["quote"]["price"]
    assert out["items"][0]["quantity"] == {"selected": {"measure": {"value": "3", "unit": "kW"}}}
    assert out["fulfillments"][0]["id"] == f"window-{world['peak']}"
    per_kw = bpp("select", _order(world, kw=None))["order"]["quote"]["price"]
    assert per_kw["value"] == "1"
    fixed = bpp("select", {"order": {"items": [{"id": f"program-{world['hvac']}", "quantity": {
        "selected": {"measure": {"value": "2.5", "unit": "kW"}}}}]}})["order"]["quote"]["price"]
    assert fixed["value"] == "1.5"  # 2.5 kW x 3 h x the fixed 0.20
    bpp.refused("select", _order(world, kw=7.0), ErrorCode.QUANTITY_UNAVAILABLE,
                "message.order.items[0].quantity.selected.measure.value")
    bpp.refused("select", _order(world, kw=-1.0), ErrorCode.INVALID_REQUEST)
    bpp.refused("select", {"order": {"items": [{"id": "program-999"}]}}, ErrorCode.ITEM_NOT_FOUND,
                "message.order.items[0].id")
    bpp.refused("select", {"order": {"items": [{"id": f"program-{world['gone']}"}]}}, ErrorCode.ITEM_NOT_FOUND)
    bpp.refused("select", {"order": {"items": [{"id": "fridge-1"}]}}, ErrorCode.ITEM_NOT_FOUND)
    bpp.refused("select", {"order": {"provider": {"id": "nope"}, "items": [{"id": f"program-{world['peak']}"}]}},
                ErrorCode.PROVIDER_NOT_FOUND, "message.order.provider.id")
    bpp.refused("select", {"order": "cart"}, ErrorCode.INVALID_REQUEST, "message.order")


def test_init_checks_every_device_now_and_stores_nothing_when_one_fails(world, bpp, database) -> None:  # noqa: ANN001
    good = device("battery-0", curve=CURVE)
    cases = [
        ([good, device("never-registered")], ErrorCode.FULFILLMENT_UNAVAILABLE, "message.order.fulfillments[1]"),
        ([good, device("battery-1", kind="pv")], ErrorCode.FULFILLMENT_UNAVAILABLE, "message.order.fulfillments[1]"),
        ([device("load-0", kind="load")], ErrorCode.FULFILLMENT_UNAVAILABLE, "message.order.fulfillments[0]"),
        ([device("load-0")], ErrorCode.FULFILLMENT_UNAVAILABLE, "message.order.fulfillments[0]"),  # kind unknown
        ([device("battery-1", node="other")], ErrorCode.FULFILLMENT_UNAVAILABLE, "message.order.fulfillments[0]"),
        ([device("battery-1", node=None)], ErrorCode.FULFILLMENT_UNAVAILABLE, "message.order.fulfillments[0]"),
        # power must not fall as the price rises; and 50 kW is beyond the battery's 5 kW
        ([good, device("battery-1", curve=[{"price": 0.1, "powerKW": 2}, {"price": 0.2, "powerKW": 1}])],
         ErrorCode.INVALID_REQUEST, "message.order.fulfillments[1].tags[0].list[2].value"),
        ([device("battery-1", curve=[{"price": 0.1, "powerKW": 0}, {"price": 0.2, "powerKW": 50}])],
         ErrorCode.INVALID_REQUEST, "message.order.fulfillments[0].tags[0].list[2].value"),
        ([device("battery-1", objectives={"reduceKW": -3, "minPricePerKWh": 0.2})],
         ErrorCode.INVALID_REQUEST, "message.order.fulfillments[0].tags[0].list[2].value"),
        ([device("battery-1", curve="not json")], ErrorCode.INVALID_REQUEST, None),
        ([{"type": "DER", "tags": [{"descriptor": {"code": "der"}, "list": [
            {"descriptor": {"code": "lfdi"}, "value": "12AB"}]}]}], ErrorCode.INVALID_REQUEST,
         "message.order.fulfillments[0].tags[0].list[0].value"),
        ([{"type": "DER", "tags": [{"descriptor": {"code": "der"}, "list": [
            {"descriptor": {"code": "lfdi"}, "value": lfdi("battery-1")},
            {"descriptor": {"code": "bidCurve"}, "value": "[]"}]}]}], ErrorCode.INVALID_REQUEST,
         "message.order.fulfillments[0].tags[0].list[1].descriptor.code"),
        ([good, good], ErrorCode.INVALID_REQUEST, None),
        ([device("battery-1", kind="toaster")], ErrorCode.INVALID_REQUEST, None),
        ([], ErrorCode.INVALID_REQUEST, "message.order.fulfillments"),
    ]
    for devices, code, path in cases:
        bpp.refused("init", _order(world, devices), code, path)
    bpp.refused("init", _order(world, [good], billing={"email": "x@example.org"}), ErrorCode.INVALID_REQUEST,
                "message.order.billing.name")
    bpp.refused("init", {"order": {"items": [{"id": "program-999"}], "billing": {"name": "A"},
                                   "fulfillments": [good]}}, ErrorCode.ITEM_NOT_FOUND)
    with database.transaction() as s:
        assert s.scalar(select(func.count(BecknOrder.id))) == 0
        assert s.scalar(select(func.count(store.Enrollment.id))) == 0


def test_an_operator_enrolled_device_is_unavailable(world, bpp, database) -> None:  # noqa: ANN001
    with database.transaction() as s:
        enrollments.enroll(s, world["peak"], {"lfdi": lfdi("battery-1"), "customer": "op", "grid_node": "feeder-2"}, SETUP)
    err = bpp.refused("init", _order(world, [device("battery-1")]), ErrorCode.FULFILLMENT_UNAVAILABLE,
                      "message.order.fulfillments[0]")
    assert "enrolled" in err.message


# ----------------------------------------------------------------------------- the whole walk


def test_an_order_from_init_to_cancel(world, bpp, database) -> None:  # noqa: ANN001
    peak, der_program, devs = world["peak"], world["peak_der"], world["devices"]
    b0, b1, b2 = (f"der-{lfdi(f'battery-{i}')}" for i in range(3))

    # init: a draft with a new id, nothing enrolled yet
    inited = bpp("init", _order(world, [device("battery-0", curve=CURVE), device("battery-1")]))["order"]
    order_id = inited["id"]
    assert len(order_id) == 32 and inited["type"] == "DRAFT" and "status" not in inited
    assert [f["id"] for f in inited["fulfillments"]] == [b0, b1]
    assert all("state" not in f for f in inited["fulfillments"])
    assert inited["payments"][0]["collected_by"] == "BPP" and inited["payments"][0]["type"] == "POST-FULFILLMENT"
    assert inited["cancellation_terms"][0]["reason_required"] is True
    assert inited["billing"]["name"] == "Ada Lovelace"
    assert json.loads(der_tag(inited["fulfillments"][0], "bid-curve")) == CURVE
    assert enrollment_states(database, peak) == {} and members(database, der_program) == []
    # init again in the same transaction: the same draft, updated
    again = bpp("init", _order(world, [device("battery-0", curve=CURVE), device("battery-1")],
                               billing={"name": "Ada King"}))["order"]
    assert again["id"] == order_id and again["billing"] == {"name": "Ada King"}

    # a status of another BAP, or of an unknown id: not found
    bpp.refused("status", {"order_id": order_id}, ErrorCode.ORDER_NOT_FOUND, "message.order_id", bap=OTHER_BAP)
    # confirm (without the id, as the BAP of docs/beckn.md does): every device enrolled
    confirmed = bpp("confirm", _order(world, [device("battery-0", curve=CURVE), device("battery-1")],
                                      billing={"name": "Ada King"}))["order"]
    assert confirmed["id"] == order_id and confirmed["status"] == "ACTIVE" and "type" not in confirmed
    assert states(confirmed) == {b0: "ENROLLED", b1: "ENROLLED"}
    assert enrollment_states(database, peak) == {devs["battery-0"]: ("active", "beckn", order_id),
                                          devs["battery-1"]: ("active", "beckn", order_id)}
    assert members(database, der_program) == sorted([devs["battery-0"], devs["battery-1"]])
    with database.transaction() as s:
        offer = store.enrollment_of(s, peak, devs["battery-0"]).offer
        assert json.loads(offer) == {"power": CURVE}
    # a repeated confirm answers the order again and changes nothing
    before = snapshot(database)
    assert bpp("confirm", {"order": {"id": order_id}})["order"]["status"] == "ACTIVE"
    assert snapshot(database)["enrollments"] == before["enrollments"]
    # an init naming an active order cannot reopen it
    bpp.refused("init", {"order": {**_order(world, [device("battery-2")])["order"], "id": order_id}},
                ErrorCode.BUSINESS_ERROR)

    # status: enrolled; once the window is published, an event is scheduled; in it, active
    assert states(bpp("status", {"order_id": order_id}, now=SETUP + 60)["order"]) == {b0: "ENROLLED", b1: "ENROLLED"}
    published = publishing.run_window(database, peak, KEY, PUBLISH_AT)
    assert published is not None and published["devices"] == 2
    scheduled = bpp("status", {"order_id": order_id}, now=PUBLISH_AT + 1)["order"]
    assert states(scheduled) == {b0: "EVENT-SCHEDULED", b1: "EVENT-SCHEDULED"}
    assert scheduled["fulfillments"][0]["stops"][0]["time"]["range"]["start"] == "2026-11-30T21:00:00.000Z"
    assert states(bpp("status", {"order_id": order_id}, now=START + 1)["order"]) == {
        b0: "EVENT-ACTIVE", b1: "EVENT-ACTIVE"}
    with database.transaction() as s:  # the unsolicited push shows the same
        row = s.get(BecknOrder, order_id)
        pushed = order_status_message(s, row, PROVIDER, PUBLISH_AT + 1)
    assert pushed == {"order": scheduled}
    if bpp.schema is not None:
        bpp.schema.validate("on_status", {"context": {"action": "on_status"}, "message": pushed})
    # what the publish's outbox fact makes the Beckn consumer do: one on_status per active order,
    # in the order's transaction with a new message_id, to the BAP's callback URL
    from server.db.beckn import BecknOutbox
    from server.jobs.outbox import OutboxDrainer
    from server.services.bpp.pushes import BecknPushes

    drainer = OutboxDrainer(database, [BecknPushes(PROVIDER, retry_for_s=3600)], clock=lambda: PUBLISH_AT + 1)
    assert drainer.drain() == 1
    with database.transaction() as s:
        (push,) = s.scalars(select(BecknOutbox).where(BecknOutbox.action == "on_status")).all()
        ctx = json.loads(push.body)["context"]
        order_tx = json.loads(s.get(BecknOrder, order_id).context)["transaction_id"]
        assert push.url.endswith("/on_status") and push.state == "pending"
        assert ctx["transaction_id"] == order_tx and ctx["message_id"] != json.loads(s.get(BecknOrder, order_id).context)["message_id"]
        assert json.loads(push.body)["message"] == {"order": scheduled}

    # update: an unknown target; then opt battery-0 out of the published window
    bpp.refused("update", {"update_target": "order.billing", "order": {"id": order_id}},
                ErrorCode.INVALID_UPDATE_TARGET, "message.update_target", now=PUBLISH_AT + 5)
    bpp.refused("update", {"update_target": "order.fulfillments.opt-out", "order": {
        "id": order_id, "fulfillments": [{"id": "der-nope"}]}}, ErrorCode.INVALID_REQUEST,
        "message.order.fulfillments[0].id", now=PUBLISH_AT + 5)
    assert live_events(database, der_program) == {devs["battery-0"]: 2, devs["battery-1"]: 2}
    opted = bpp("update", {"update_target": "order.fulfillments.opt-out", "order": {
        "id": order_id, "fulfillments": [{"id": b0}]}}, now=PUBLISH_AT + 10)["order"]
    assert states(opted) == {b0: "ENROLLED", b1: "EVENT-SCHEDULED"}
    assert live_events(database, der_program) == {devs["battery-1"]: 2}
    assert enrollment_states(database, peak)[devs["battery-0"]][0] == "active"  # it stays enrolled
    with database.transaction() as s:  # the opted-out controls are told of, as any cancellation is
        from server.db.outbox import OutboxFact

        told = [json.loads(f.payload) for f in s.scalars(select(OutboxFact).where(OutboxFact.kind == "control.cancelled"))]
    assert sorted((t["device_id"], t["reason"]) for t in told) == [(devs["battery-0"], "cancelled")] * 2

    # update: replace the set — battery-1 leaves (its events are cancelled), battery-2 joins,
    # battery-0 offers a new curve
    new_curve = [{"price": 0.10, "powerKW": 0.0}, {"price": 0.30, "powerKW": 4.0}]
    bpp.refused("update", {"update_target": "order.fulfillments", "order": {"id": order_id, "fulfillments": [
        device("battery-0", curve=new_curve), device("battery-2", kind="pv")]}},
        ErrorCode.FULFILLMENT_UNAVAILABLE, "message.order.fulfillments[1]", now=PUBLISH_AT + 20)
    updated = bpp("update", {"update_target": "order.fulfillments", "order": {"id": order_id, "fulfillments": [
        device("battery-0", curve=new_curve), device("battery-2")]}}, now=PUBLISH_AT + 20)["order"]
    assert [f["id"] for f in updated["fulfillments"]] == [b0, b2]
    assert states(updated) == {b0: "ENROLLED", b2: "ENROLLED"}
    assert enrollment_states(database, peak) == {devs["battery-0"]: ("active", "beckn", order_id),
                                          devs["battery-1"]: ("cancelled", "beckn", order_id),
                                          devs["battery-2"]: ("active", "beckn", order_id)}
    assert live_events(database, der_program) == {}  # battery-1's events were cancelled when it left
    assert members(database, der_program) == sorted([devs["battery-0"], devs["battery-2"]])
    with database.transaction() as s:
        assert json.loads(store.enrollment_of(s, peak, devs["battery-0"]).offer) == {"power": new_curve}
    # the scheduler clears again before the start (inputs changed): both devices get events
    again = publishing.run_window(database, peak, KEY, PUBLISH_AT + 30)
    assert again is not None and again["devices"] == 2
    assert states(bpp("status", {"order_id": order_id}, now=PUBLISH_AT + 40)["order"]) == {
        b0: "EVENT-SCHEDULED", b2: "EVENT-SCHEDULED"}

    # track and support
    tracking = bpp("track", {"order_id": order_id}, now=PUBLISH_AT + 50)["tracking"]
    assert tracking == {"id": order_id, "url": f"{PROVIDER.track_url}/{order_id}", "status": "active"}
    bpp.refused("track", {"order_id": order_id}, ErrorCode.ORDER_NOT_FOUND, bap=OTHER_BAP)
    sup = bpp("support", {"support": {"ref_id": order_id}})["support"]
    assert sup == {"ref_id": order_id, "phone": PROVIDER.support_phone, "email": PROVIDER.support_email,
                   "url": f"{PROVIDER.track_url}/{order_id}"}
    assert bpp("support", {"support": {"ref_id": order_id}}, bap=OTHER_BAP)["support"]["url"] == PROVIDER.track_url

    # another BAP can neither update nor cancel it
    bpp.refused("update", {"update_target": "order.fulfillments", "order": {"id": order_id, "fulfillments": [
        device("battery-0")]}}, ErrorCode.ORDER_NOT_FOUND, "message.order.id", bap=OTHER_BAP, now=PUBLISH_AT + 55)
    bpp.refused("cancel", {"order_id": order_id, "cancellation_reason_id": "1"}, ErrorCode.ORDER_NOT_FOUND,
                bap=OTHER_BAP, now=PUBLISH_AT + 55)

    # cancel: a reason that is not one of ours; then every device leaves, its future events cancelled
    bpp.refused("cancel", {"order_id": order_id, "cancellation_reason_id": "9"},
                ErrorCode.INVALID_CANCELLATION_REASON, "message.cancellation_reason_id", now=PUBLISH_AT + 60)
    bpp.refused("cancel", {"order_id": order_id}, ErrorCode.INVALID_CANCELLATION_REASON, now=PUBLISH_AT + 60)
    assert set(live_events(database, der_program)) == {devs["battery-0"], devs["battery-2"]}
    cancelled = bpp("cancel", {"order_id": order_id, "cancellation_reason_id": "2"}, now=PUBLISH_AT + 60)["order"]
    assert cancelled["status"] == "CANCELLED"
    assert cancelled["cancellation"]["reason"]["id"] == "2" and cancelled["cancellation"]["cancelled_by"] == "CONSUMER"
    assert set(states(cancelled).values()) == {"CANCELLED"}
    assert {d: e[0] for d, e in enrollment_states(database, peak).items()} == {
        devs["battery-0"]: "cancelled", devs["battery-1"]: "cancelled", devs["battery-2"]: "cancelled"}
    assert live_events(database, der_program) == {} and members(database, der_program) == []
    with database.transaction() as s:  # cancelled, never deleted
        ev = der_store.DerEvent
        assert s.scalar(select(func.count()).where(ev.program_id == der_program, ev.cancelled_at.is_not(None))) == 8
    bpp.refused("cancel", {"order_id": order_id, "cancellation_reason_id": "1"}, ErrorCode.CANCELLATION_NOT_POSSIBLE,
                now=PUBLISH_AT + 70)
    bpp.refused("update", {"update_target": "order.fulfillments", "order": {"id": order_id, "fulfillments": [
        device("battery-0")]}}, ErrorCode.UPDATION_NOT_POSSIBLE, now=PUBLISH_AT + 70)
    assert bpp("track", {"order_id": order_id}, now=PUBLISH_AT + 70)["tracking"]["status"] == "inactive"

    # rating: the order and one of its fulfillments, 0…5; another BAP cannot rate them
    assert bpp("rating", {"ratings": [{"id": order_id, "rating_category": "Order", "value": "4"},
                                      {"id": b0, "rating_category": "Fulfillment", "value": 4.5}]}) == {}
    bpp.refused("rating", {"ratings": [{"id": order_id, "rating_category": "Order", "value": "6"}]},
                ErrorCode.INVALID_RATING_VALUE, "message.ratings[0].value")
    bpp.refused("rating", {"ratings": [{"id": order_id, "rating_category": "Order", "value": "great"}]},
                ErrorCode.INVALID_RATING_VALUE)
    bpp.refused("rating", {"ratings": [{"id": order_id, "rating_category": "Order", "value": -1}]},
                ErrorCode.INVALID_RATING_VALUE)
    bpp.refused("rating", {"ratings": [{"id": "no-such-order", "rating_category": "Order", "value": "3"}]},
                ErrorCode.ENTITY_TO_RATE_NOT_FOUND, "message.ratings[0].id")
    bpp.refused("rating", {"ratings": [{"id": b0, "rating_category": "Fulfillment", "value": "3"}]},
                ErrorCode.ENTITY_TO_RATE_NOT_FOUND, bap=OTHER_BAP)
    bpp.refused("rating", {"ratings": [{"id": order_id, "rating_category": "Order", "value": "3"}]},
                ErrorCode.ENTITY_TO_RATE_NOT_FOUND, bap=OTHER_BAP)
    bpp.refused("rating", {"ratings": [{"id": order_id, "rating_category": "Agent", "value": "3"}]},
                ErrorCode.UNSUPPORTED_RATING_CATEGORY)
    with database.transaction() as s:
        rows = s.execute(select(BecknRating.bap_id, BecknRating.ref_id, BecknRating.category, BecknRating.value)
                         .order_by(BecknRating.id)).all()
    assert [tuple(r) for r in rows] == [(BAP, order_id, "Order", 4.0), (BAP, b0, "Fulfillment", 4.5)]


def test_opting_out_needs_a_published_window_and_a_new_order_can_take_a_cancelled_device(world, bpp, database) -> None:  # noqa: ANN001
    tx1, tx2 = str(uuid.uuid4()), str(uuid.uuid4())
    bpp("init", _order(world, [device("battery-0")]), transaction_id=tx1)
    first = bpp("confirm", _order(world, [device("battery-0")]), transaction_id=tx1)["order"]["id"]
    bpp.refused("update", {"update_target": "fulfillments.opt-out", "order": {
        "id": first, "fulfillments": [{"id": f"der-{lfdi('battery-0')}"}]}}, ErrorCode.UPDATION_NOT_POSSIBLE)
    # a draft can be cancelled too (nothing was enrolled); a draft cannot be updated
    bpp("init", _order(world, [device("battery-1")]), transaction_id=tx2)
    with database.transaction() as s:
        draft = s.scalars(select(BecknOrder).where(BecknOrder.transaction_id == tx2)).one().id
    bpp.refused("update", {"update_target": "order.fulfillments", "order": {"id": draft, "fulfillments": [
        device("battery-1")]}}, ErrorCode.UPDATION_NOT_POSSIBLE)
    assert bpp("cancel", {"order_id": draft, "cancellation_reason_id": "1"})["order"]["status"] == "CANCELLED"
    bpp.refused("confirm", {"order": {"id": draft}}, ErrorCode.BUSINESS_ERROR)
    # the first order is cancelled; a new order in a new transaction enrolls the same device again
    bpp("cancel", {"order_id": first, "cancellation_reason_id": "3"}, now=SETUP + 10)
    tx3 = str(uuid.uuid4())
    bpp("init", _order(world, [device("battery-0", fid="my-battery")]), transaction_id=tx3, now=SETUP + 20)
    second = bpp("confirm", {"order": {}}, transaction_id=tx3, now=SETUP + 20)["order"]
    assert second["id"] != first and states(second) == {"my-battery": "ENROLLED"}
    assert enrollment_states(database, world["peak"])[world["devices"]["battery-0"]] == ("active", "beckn", second["id"])
    # the old order still reads as cancelled
    assert states(bpp("status", {"order_id": first}, now=SETUP + 30)["order"]) == {f"der-{lfdi('battery-0')}": "CANCELLED"}
    bpp.refused("confirm", {"order": {}}, ErrorCode.ORDER_NOT_FOUND, transaction_id=str(uuid.uuid4()))


# ------------------------------------------------------------------------------ meta, aggregate


def test_meta_lists(world, bpp) -> None:  # noqa: ANN001
    assert bpp("get_rating_categories") == {"rating_categories": ["Order", "Fulfillment"]}
    reasons = bpp("get_cancellation_reasons")["cancellation_reasons"]
    assert [r["id"] for r in reasons] == ["1", "2", "3"]
    assert reasons[0]["descriptor"]["code"] == "customer-request"


def test_aggregate_clears_the_seed_example_exactly(bpp) -> None:  # noqa: ANN001
    request = {"aggregationRequest": {
        "participants": [
            {"era": "ev-battery-002", "bidCurve": [{"price": 0.08, "powerKW": -11}, {"price": 0.10, "powerKW": -5}]},
            {"era": "transformer-zone-5", "locationalPriceAdder": {"adder": 0.01}},
        ],
        "requestedKW": 3, "aggregationType": "MARKET_CLEARING",
        "timeWindow": {"start": "2024-12-15T14:00:00Z", "end": "2024-12-15T16:00:00Z"},
    }}
    result = bpp("aggregate", request)["aggregationResult"]
    assert result["clearingPrice"] == pytest.approx(0.09)
    assert result["clearingQuantityKW"] == pytest.approx(3.0) and result["feasible"] is True
    assert [s["era"] for s in result["setpoints"]] == ["ev-battery-002"]
    assert result["setpoints"][0]["setpointKW"] == pytest.approx(-8.0)
    assert result["timestamp"] == "2024-12-15T14:00:00.000Z"
    # many participants: the reductions sum exactly to the quantity
    many = {"aggregationRequest": {"requestedKW": 7.3, "participants": [
        {"era": f"d{i}", "bidCurve": [{"price": 0.05 + 0.01 * (i % 7), "powerKW": -3 - i % 4},
                                      {"price": 0.2 + 0.01 * (i % 5), "powerKW": 1 + i % 3}]} for i in range(40)]}}
    res = bpp("aggregate", many)["aggregationResult"]
    red = [s["reductionKW"] for s in res["setpoints"]]
    assert math.fsum(red) == res["clearingQuantityKW"] and res["clearingQuantityKW"] == pytest.approx(7.3, abs=1e-9)
    assert all(s["setpointKW"] == pytest.approx(s["baselineKW"] + s["reductionKW"]) for s in res["setpoints"])
    # without requestedKW: everything offered up to the cap
    all_in = bpp("aggregate", {"aggregationRequest": {"participants": request["aggregationRequest"]["participants"],
                                                       "priceCap": 0.09}})["aggregationResult"]
    assert all_in["clearingQuantityKW"] == pytest.approx(3.0) and all_in["setpoints"][0]["setpointKW"] == pytest.approx(-8.0)
    infeasible = bpp("aggregate", {"aggregationRequest": {**request["aggregationRequest"], "requestedKW": 10}})
    assert infeasible["aggregationResult"]["feasible"] is False
    assert infeasible["aggregationResult"]["setpoints"][0]["setpointKW"] == pytest.approx(-5.0)
    bpp.refused("aggregate", {"aggregationRequest": {"participants": [
        {"era": "x", "bidCurve": [{"price": 0.1, "powerKW": 2}, {"price": 0.2, "powerKW": 1}]}]}},
        ErrorCode.INVALID_REQUEST, "message.aggregationRequest.participants[0].bidCurve")
    bpp.refused("aggregate", {"aggregationRequest": {"participants": []}}, ErrorCode.INVALID_REQUEST)
    bpp.refused("aggregate", {}, ErrorCode.INVALID_REQUEST, "message.aggregationRequest")
