"""A settled window reaches the order's BAP: an unsolicited on_status whose quote is the settled
amount broken down by revenue flow, the prosumer's payout, and the seed's revenueFlows — valid
v1.1.0, summing exactly; a status request shows the same; orders with no device in the window
hear nothing."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal

from sqlalchemy import select

from server.db import flex as store
from server.db.beckn import BecknOrder, BecknOutbox
from server.jobs.outbox import OutboxDrainer
from server.services.bpp.pushes import BecknPushes
from server.services.flex import settlement, publishing
from server.services.bpp.actions import order_status_message
from tests.services.test_beckn_actions import (  # noqa: F401 - fixtures
    CURVE,
    KEY,
    PROVIDER,
    PUBLISH_AT,
    START,
    END,
    _order,
    bpp,
    device,
    lfdi,
    schema,
    world,
)
from tests.builders import mirror

DAY = 86_400


def _confirm(bpp, world, names):  # noqa: ANN001, ANN202
    bpp.transaction_id = str(uuid.uuid4())
    bpp("init", _order(world, [device(n, curve=CURVE) for n in names]))
    return bpp("confirm", _order(world, [device(n, curve=CURVE) for n in names]))["order"]["id"]


def _drain(database, now: float) -> int:  # noqa: ANN001
    """What the outbox drainer does at `now`: every due fact handed to the Beckn consumer; how many."""
    return OutboxDrainer(database, [BecknPushes(PROVIDER, retry_for_s=3600)], clock=lambda: now).drain()


def _settlement_pushes(database) -> list[str]:  # noqa: ANN001
    """The orders told of a settlement (on_status with a "settlement" tag group), in order."""
    with database.transaction() as s:
        bodies = [json.loads(b) for b in s.scalars(select(BecknOutbox.body).where(BecknOutbox.action == "on_status")
                                                    .order_by(BecknOutbox.id))]
    return [b["message"]["order"]["id"] for b in bodies
            if any(g["descriptor"]["code"] == "settlement" for g in b["message"]["order"].get("tags") or [])]


def test_a_settled_window_is_pushed_with_its_quote_and_revenue_flows(world, bpp, database) -> None:  # noqa: ANN001
    order_id = _confirm(bpp, world, ["battery-0", "battery-1"])
    publishing.run_window(database, world["peak"], KEY, PUBLISH_AT)  # 2 batteries share 6 kW: 3 kW each
    assert _drain(database, PUBLISH_AT + 1) == 1  # the publish's on_status goes out first
    for name, event_w in (("battery-0", 0), ("battery-1", 1000)):
        for back in range(1, 8):  # a week of 3 kW at those hours (five weekdays: a short history)
            mirror(database, lfdi(name), START - back * DAY, [3000] * 8)
        mirror(database, lfdi(name), START, [event_w] * 8, now=END)
    out = settlement.settle_window(database, world["peak"], KEY, END + 900)
    assert out["settlement"]["methods"] == {"x_of_y_short": 2}
    gross = out["settlement"]["gross_minor"]
    assert gross > 0
    with database.transaction() as s:
        before = s.scalar(select(BecknOutbox.id).order_by(BecknOutbox.id.desc()).limit(1)) or 0
    assert _drain(database, END + 901) == 1  # the settlement's fact: one on_status per order in it
    with database.transaction() as s:
        [box] = s.scalars(select(BecknOutbox).where(BecknOutbox.id > before)).all()
        body = json.loads(box.body)
        order_row = s.get(BecknOrder, order_id)
        asked = order_status_message(s, order_row, PROVIDER, END + 902)
    assert (box.action, body["context"]["action"]) == ("on_status", "on_status")
    if bpp.schema is not None:
        bpp.schema.validate("on_status", body)
    order = body["message"]["order"]
    quote = order["quote"]
    assert quote["price"] == {"currency": "USD", "value": str(Decimal(gross).scaleb(-2))}
    parts = [Decimal(b["price"]["value"]) for b in quote["breakup"]]
    assert sum(parts) == Decimal(quote["price"]["value"])  # the breakup adds up exactly
    assert [b["title"] for b in quote["breakup"]][:3] == [
        "Flexibility delivered (to the customer)", "Wheeling charges", "Platform fee"]
    assert order["payments"][0]["params"]["amount"] == quote["breakup"][0]["price"]["value"]
    tags = {g["descriptor"]["code"]: {t["descriptor"]["code"]: t["value"] for t in g["list"]} for g in order["tags"]}
    assert tags["settlement"]["window"] == KEY and tags["settlement"]["version"] == "1"
    assert tags["settlement"]["devices"] == "2" and tags["settlement"]["reason"] == "scheduled"
    # 3 kW asked of each for 2 h; delivered 3 and 2 kW: 6 + 4 = 10 of 12 kWh, all credited
    assert (tags["settlement"]["cleared-kwh"], tags["settlement"]["delivered-kwh"],
            tags["settlement"]["credited-kwh"]) == ("12", "10", "10")
    flows = json.loads(tags["revenue-flows"]["revenue-flows"])
    assert {f["party"]["role"] for f in flows} == {"SELLER", "GRID_OPERATOR", "AGGREGATOR", "GOVERNMENT"}
    assert sum(Decimal(f["amount"]) for f in flows) == Decimal(quote["price"]["value"])
    with database.transaction() as s:
        customers = set(s.scalars(select(store.Enrollment.customer).where(store.Enrollment.external_ref == order_id)))
    assert {f["party"]["era"] for f in flows if f["party"]["role"] == "SELLER"} == customers
    assert asked == body["message"]  # a status request answers the same


def test_orders_without_a_device_in_the_window_hear_nothing(world, bpp, database) -> None:  # noqa: ANN001
    first = _confirm(bpp, world, ["battery-0"])
    publishing.run_window(database, world["peak"], KEY, PUBLISH_AT)
    _drain(database, PUBLISH_AT + 1)
    late = _confirm(bpp, world, ["battery-1"])  # enrolled after the publish: not in this window
    mirror(database, lfdi("battery-0"), START, [0] * 8, now=END)
    settlement.settle_window(database, world["peak"], KEY, END + 900)
    assert _drain(database, END + 901) == 1 and _settlement_pushes(database) == [first]
    with database.transaction() as s:
        view = order_status_message(s, s.get(BecknOrder, late), PROVIDER, END + 902)["order"]
    assert "tags" not in view and view["quote"]["breakup"][0]["title"].endswith("one window")
    assert _drain(database, END + 86_400) == 0  # no other window was settled: nothing else to tell


def test_an_operator_settlement_through_the_admin_api_is_pushed_too(world, bpp, database, operator,  # noqa: ANN001
                                                                    monkeypatch) -> None:
    import server.api.admin_flex as views

    monkeypatch.setattr(views, "now", lambda: END + 900)  # the admin API's clock: after the window
    order_id = _confirm(bpp, world, ["battery-0"])
    publishing.run_window(database, world["peak"], KEY, PUBLISH_AT)
    _drain(database, PUBLISH_AT + 1)
    mirror(database, lfdi("battery-0"), START, [0] * 8, now=END)
    with database.transaction() as s:
        before = s.scalar(select(BecknOutbox.id).order_by(BecknOutbox.id.desc()).limit(1)) or 0
    resp = operator("POST", f"/flex/programs/{world['peak']}/windows/{KEY}/settle")
    assert resp.status_code == 200 and resp.get_json()["reason"] == "operator"
    assert _drain(database, END + 901) == 1
    with database.transaction() as s:
        boxes = s.scalars(select(BecknOutbox).where(BecknOutbox.id > before)).all()
        assert [(b.action, json.loads(b.body)["message"]["order"]["id"]) for b in boxes] == [("on_status", order_id)]
    # settling again with the same inputs changes nothing and tells nobody again
    assert operator("POST", f"/flex/programs/{world['peak']}/windows/{KEY}/settle").get_json()["unchanged"] is True
    assert _drain(database, END + 902) == 0
    with database.transaction() as s:
        assert len(s.scalars(select(BecknOutbox).where(BecknOutbox.id > before)).all()) == 1
