"""Settlement and device pages against tests/builders' settled "Peak Saver" (3 batteries, USD 2.56
paid: per device 104, 48 and 104 cents, each 104 split 63 seller / 21 grid / 10 aggregator / 10 tax),
read through the dashboard: the statement's revenue flows and versions (with what changed when
late readings re-settle it), an enrollment's statements rendered (not JSON), and a device's
metered load against its baseline."""

from __future__ import annotations

import json
import re
import time
from html import unescape
from typing import Any

import pytest

from server.config import Settings
from server.services import accounts
from server.ui.app import create_ui_app
from tests import builders

BASE = "https://localhost"
PASSWORD = "correct horse battery"
STATEMENT = f"/programs/1/windows/{builders.KEY}/settlement"


@pytest.fixture
def settled(database: Any, tmp_path: Any) -> Any:
    w = builders.make_world(database)
    builders.deliver(database, w)
    assert builders.settle(database, w) is not None
    with database.transaction() as s:
        accounts.add_user(s, "vera", "viewer", PASSWORD, int(time.time()))
    app = create_ui_app(Settings(home=tmp_path), database, clock=lambda: float(builders.SETTLED_AT + 60))
    client = app.test_client()
    page = client.get("/login", base_url=BASE)
    token = re.search(r'name="login_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    client.post("/login", base_url=BASE, data={"login_token": token, "name": "vera", "password": PASSWORD})
    return w, client


def _table(html: str, table_id: str) -> list[list[str]]:
    body = re.search(rf'<table id="{table_id}".*?<tbody>(.*?)</tbody>', html, re.S).group(1)  # type: ignore[union-attr]
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S)
    return [[unescape(re.sub(r"<[^>]+>", "", c)).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", r, re.S)]
            for r in rows]


def test_the_statement_shows_revenue_flows_by_party_and_versions_with_what_changed(database: Any, settled: Any) -> None:
    w, client = settled
    html = client.get(STATEMENT, base_url=BASE).text
    flows = _table(html, "revenue-flows")
    cents: dict[str, int] = {}
    for _party, role, _what, amount in flows:
        currency, value = amount.split()
        assert currency == "USD"
        cents[role] = cents.get(role, 0) + round(float(value) * 100)
    # 256 cents: each device's money split tax 1/9 inclusive, grid 20 %, aggregator 10 % (FLOWS_104 for 104)
    assert set(cents) == {"customers (flexibility delivered)", "grid operator (wheeling)", "platform / aggregator fee",
                          "tax"}
    assert sum(cents.values()) == 256 and cents["customers (flexibility delivered)"] > cents["tax"] > 0
    assert all(row[0] for row in flows)  # every flow names its party
    devices = _table(html, "statement-devices")
    assert sorted(row[5] for row in devices) == ["USD 0.48", "USD 1.04", "USD 1.04"]
    assert sorted(row[4] for row in devices) == ["100 %", "100 %", "50 %"]
    (v1,) = _table(html, "versions")
    assert v1[0].startswith("1") and "current" in v1[0] and v1[1] == "scheduled" and v1[4] == "first settlement"

    # battery 2's last hour is re-posted at 3 kW (no reduction): a late reading changes the figures
    builders.mirror(database, w["lfdis"][2], builders.START + 3600, [3000] * 4, now=builders.SETTLED_AT + 3600)
    assert builders.settle(database, w, now=builders.SETTLED_AT + 3600) is not None
    html = client.get(STATEMENT, base_url=BASE).text
    v1, v2 = _table(html, "versions")
    assert "current" not in v1[0] and v1[3] != "—" and "current" in v2[0] and v2[1] == "late readings"
    assert "delivered 12.0 → 9.0 kWh" in v2[4] and "paid in all 2.56 → 2.04" in v2[4]
    old = client.get(STATEMENT + "?version=1", base_url=BASE).text
    assert "superseded" in old and "USD 2.56" in old


def test_an_enrollments_statements_are_a_page_not_json(settled: Any) -> None:
    w, client = settled
    html = client.get(f"/programs/1/enrollments/{w['enrollments'][1]}/settlement", base_url=BASE).text
    assert "<pre" not in html and '"windows"' not in html
    (row,) = _table(html, "enrollment-windows")
    assert row[1].startswith("1") and row[3] == "2.000" and row[4] == "50 %" and row[6] == "USD 0.48"
    assert "customer-1" in html and "Windows settled" in html


def test_a_devices_page_charts_its_metered_load_against_its_baseline(settled: Any) -> None:
    w, client = settled
    html = client.get(f"/devices/{w['devices'][0]}", base_url=BASE).text
    data = json.loads(unescape(re.search(r'<script type="application/json" id="load-data">(.*?)</script>', html,
                                         re.S).group(1)))  # type: ignore[union-attr]
    assert data["actual"] == [1.0] * 8 and data["adjusted"] == [3.0] * 8 and data["target"] == [1.0] * 8
    assert data["times"][0] == "2026-11-30T16:00:00" and data["edges"][-1] == "2026-11-30T18:00:00"
    assert data["tz"] == "America/New_York" and data["key"] == f"1:{builders.KEY}"
    assert "4.000 kWh credited" in html and "100 % of what it was asked" in html
    other = client.get(f"/devices/{w['devices'][2]}?window=1:{builders.KEY}", base_url=BASE).text
    assert '"actual": [0.0, 0.0' in other and '"target": [1.0' in other  # 3 kW baseline, 2 kW asked


# ------------------------------------------------------------------ Beckn v2 contracts, grid nodes, envelopes

from server.db import beckn as beckn_store  # noqa: E402
from server.db import flex as flex_store  # noqa: E402
from server.services.flex import grid_nodes  # noqa: E402
from server.services.flex import programs as flex_programs  # noqa: E402
from tests.services.test_beckn_v2_settlement import BAP, BAP_URI, BID_A, CONFIRM_AT, confirm  # noqa: E402
from tests.ui.test_app import FORM, csrf_of, sign_in  # noqa: E402


@pytest.fixture
def ui_app(database: Any, tmp_path: Any) -> Any:
    with database.transaction() as s:
        for name, role in (("vera", "viewer"), ("otto", "operator")):
            accounts.add_user(s, name, role, PASSWORD, int(time.time()))
    return create_ui_app(Settings(home=tmp_path), database)


def test_the_beckn_page_shows_v2_contracts_with_meters_and_cleared_bid_beside_v1_orders(database: Any, ui_app: Any
                                                                                       ) -> None:
    now = builders.PUBLISH_AT - 10 * builders.DAY
    lfdis = [builders.lfdi(f"ui-v2-{i}") for i in range(2)]
    with database.transaction() as s:
        for x in lfdis:
            builders.rated_battery(s, x, now)
        program = flex_programs.create_program(s, builders.PROGRAM, now)
    cid, _, _ = confirm(database, {"program": program["id"], "lfdis": lfdis}, lfdis, BID_A)
    with database.transaction() as s:  # a v1 order of the same BAP, as the v1 BPP stores one
        s.add(beckn_store.BecknOrder(id="v1-order-1", bap_id=BAP, bap_uri=BAP_URI, transaction_id="t-1",
                                     program_id=program["id"], state="active", order="{}", context="{}",
                                     created_time=CONFIRM_AT, updated_time=CONFIRM_AT - 1))
    client = sign_in(ui_app, "vera")
    rows = _table(client.get("/beckn", base_url=BASE).text, "orders")
    assert [r[:7] for r in rows] == [
        [cid, "v2.0.0", BAP, builders.PROGRAM["name"], "active", "2", "6 kW at 0.26/kWh; 6 kW at 0.3/kWh"],
        ["v1-order-1", "v1.1.0", BAP, builders.PROGRAM["name"], "active", "0", "—"]]
    # paged on the server (pages of 10 at least): a second page is empty
    rows = _table(client.get("/beckn?opage=2&osize=10", base_url=BASE).text, "orders")
    assert rows == [["No orders or contracts."]]


def _nodes(database: Any) -> dict[str, dict[str, Any]]:
    with database.transaction() as s:
        return {n["name"]: n for n in grid_nodes.list_grid_nodes(s)}


NODE = {"name": "feeder-1", "parent": "", "load_percent": "40", "adder_per_percent": "0.001",
        "congestion_multiplier": "", "max_forward_kw": "", "max_reverse_kw": "", "current_load_kw": ""}


def test_an_operator_creates_changes_and_deletes_grid_nodes_with_errors_beside_their_fields(database: Any,
                                                                                             ui_app: Any) -> None:
    otto = sign_in(ui_app, "otto")
    assert 'id="new-node"' in otto.get("/grid-nodes", base_url=BASE).text
    assert otto.post("/grid-nodes/edit", base_url=BASE, data={**NODE, "csrf_token": csrf_of(otto)}).status_code == 302
    child = {**NODE, "name": "tx-7", "parent": "feeder-1", "max_forward_kw": "250", "current_load_kw": "100"}
    assert otto.post("/grid-nodes/edit", base_url=BASE, data={**child, "csrf_token": csrf_of(otto)}).status_code == 302
    nodes = _nodes(database)
    assert nodes["feeder-1"]["parent"] is None and nodes["feeder-1"]["load_percent"] == 40.0
    assert nodes["feeder-1"]["congestion_multiplier"] == 1.0  # empty: the default
    assert nodes["tx-7"]["parent"] == "feeder-1" and nodes["tx-7"]["max_forward_kw"] == 250.0
    assert nodes["tx-7"]["path_adder"] == pytest.approx(2 * 40 * 0.001)
    rows = _table(otto.get("/grid-nodes", base_url=BASE).text, "grid-nodes")
    assert [r[0] for r in rows] == ["feeder-1", "└ tx-7"] and rows[1][5] == "250.0"

    # mistakes: not a number; a flow limit without the load now; an unknown parent; a second "new" one
    for data, field in (({**child, "load_percent": "forty"}, "load_percent"),
                        ({**child, "name": "tx-8", "current_load_kw": ""}, "current_load_kw"),
                        ({**child, "name": "tx-9", "parent": "nowhere"}, "parent"),
                        ({**child, "load_percent": "-1", "existing": "1"}, "load_percent"),
                        (NODE, "name")):
        resp = otto.post("/grid-nodes/edit", base_url=BASE, data={**data, "csrf_token": csrf_of(otto)})
        assert resp.status_code in (400, 409), (field, resp.status_code)
        assert re.findall(r'id="error-([^"]+)"', resp.text) == [field], (data, resp.text[-2000:])
    assert _nodes(database) == nodes  # nothing changed

    form = otto.get("/grid-nodes/edit?name=tx-7", base_url=BASE).text
    assert 'value="250.0"' in form and "<option selected>feeder-1</option>" in form and 'id="delete-node"' in form
    changed = {**child, "existing": "1", "max_forward_kw": "", "adder_per_percent": "0.002", "parent": ""}
    assert otto.post("/grid-nodes/edit", base_url=BASE, data={**changed, "csrf_token": csrf_of(otto)}).status_code == 302
    tx = _nodes(database)["tx-7"]
    assert tx["parent"] is None and tx["max_forward_kw"] is None and tx["adder_per_percent"] == 0.002
    changed["parent"] = "feeder-1"
    assert otto.post("/grid-nodes/edit", base_url=BASE, data={**changed, "csrf_token": csrf_of(otto)}).status_code == 302

    # a node with a child cannot go: said beside its name
    resp = otto.post("/grid-nodes/delete", base_url=BASE, data={"name": "feeder-1", "csrf_token": csrf_of(otto)})
    assert resp.status_code == 409 and "has child nodes" in resp.text and 'id="error-name"' in resp.text
    for name in ("tx-7", "feeder-1"):
        resp = otto.post("/grid-nodes/delete", base_url=BASE, data={"name": name, "csrf_token": csrf_of(otto)})
        assert resp.status_code == 302
    assert _nodes(database) == {}
    assert otto.post("/grid-nodes/delete", base_url=BASE,
                     data={"name": "tx-7", "csrf_token": csrf_of(otto)}).status_code == 404

    with database.transaction() as s:
        entries = accounts.audit_page(s, 0, 50)["entries"]
    actions = sorted((e["action"], e["target"]) for e in entries)
    assert actions == sorted([("grid_node.create", "grid node feeder-1"), ("grid_node.create", "grid node tx-7"),
                              ("grid_node.update", "grid node tx-7"), ("grid_node.update", "grid node tx-7"),
                              ("grid_node.delete", "grid node tx-7"), ("grid_node.delete", "grid node feeder-1")])
    update = next(e for e in entries if e["action"] == "grid_node.update" and e["after"]["parent"] is None)
    assert update["before"]["max_forward_kw"] == 250.0 and update["after"]["max_forward_kw"] is None
    assert next(e for e in entries if e["action"] == "grid_node.delete")["after"] is None


def test_a_viewer_cannot_edit_grid_nodes_nor_without_the_csrf_token(database: Any, ui_app: Any) -> None:
    otto = sign_in(ui_app, "otto")
    assert otto.post("/grid-nodes/edit", base_url=BASE, data={**NODE, "csrf_token": csrf_of(otto)}).status_code == 302
    before = _nodes(database)
    vera = sign_in(ui_app, "vera")
    token = csrf_of(vera)
    page = vera.get("/grid-nodes", base_url=BASE).text
    assert "feeder-1" in page and 'id="new-node"' not in page and "/grid-nodes/edit?name=" not in page
    assert vera.get("/grid-nodes/edit", base_url=BASE).status_code == 403
    assert vera.post("/grid-nodes/edit", base_url=BASE, data={**NODE, "load_percent": "90", "existing": "1",
                                                               "csrf_token": token}).status_code == 403
    assert vera.post("/grid-nodes/delete", base_url=BASE, data={"name": "feeder-1", "csrf_token": token}).status_code == 403
    assert otto.post("/grid-nodes/delete", base_url=BASE, data={"name": "feeder-1", "csrf_token": "wrong"}).status_code == 403
    assert otto.post("/grid-nodes/edit", base_url=BASE, data={**NODE, "name": "x"}).status_code == 403
    assert _nodes(database) == before


ENVELOPE = {**FORM, "name": "Export envelope", "requested_kw": "", "envelope.export_limit_kw": "1.5",
            "incentive.kind": "fixed", "incentive.rate_per_kwh": "0.12", "incentive.under_delivery_per_kwh": "0.3"}


def test_the_program_form_authors_an_envelope_program_with_errors_beside_their_fields(database: Any,
                                                                                      ui_app: Any) -> None:
    otto = sign_in(ui_app, "otto")
    form = otto.get("/programs/new", base_url=BASE).text
    assert 'name="envelope.export_limit_kw"' in form and 'name="envelope.import_limit_kw"' in form
    for data, fields in (({**ENVELOPE, "incentive.kind": "pay_as_clear"}, {"incentive.kind"}),
                         ({**ENVELOPE, "requested_kw": "5"}, {"requested_kw"}),
                         ({**ENVELOPE, "envelope.export_limit_kw": "-1"}, {"envelope.export_limit_kw"}),
                         ({**ENVELOPE, "envelope.import_limit_kw": "lots"}, {"envelope.import_limit_kw"}),
                         ({**ENVELOPE, "envelope.export_limit_kw": ""}, {"requested_kw"})):  # no envelope, no reduction
        resp = otto.post("/programs/new", base_url=BASE, data={**data, "csrf_token": csrf_of(otto)})
        assert resp.status_code == 400
        assert set(re.findall(r'id="error-([^"]+)"', resp.text)) == fields, data
    with database.transaction() as s:
        assert flex_store.programs(s) == []

    resp = otto.post("/programs/new", base_url=BASE, data={**ENVELOPE, "requested_kw": "0", "csrf_token": csrf_of(otto)})
    assert resp.status_code == 302
    with database.transaction() as s:
        (row,) = flex_store.programs(s)
        spec = json.loads(row.spec)
    assert spec["envelope"] == {"export_limit_kw": 1.5, "import_limit_kw": None} and spec["requested_kw"] == 0.0
    assert spec["incentive"] == {"kind": "fixed", "rate_per_kwh": 0.12, "under_delivery_per_kwh": 0.3}
    shown = otto.get(resp.headers["Location"], base_url=BASE).text
    assert "export at most 1.5 kW, import at most unlimited" in unescape(shown)

    edit = otto.get(resp.headers["Location"] + "/edit", base_url=BASE).text
    assert 'name="envelope.export_limit_kw" value="1.5"' in edit and 'name="envelope.import_limit_kw" value=""' in edit
    both = {**ENVELOPE, "envelope.import_limit_kw": "4", "requested_kw": "0"}
    assert otto.post(resp.headers["Location"] + "/edit", base_url=BASE,
                     data={**both, "csrf_token": csrf_of(otto)}).status_code == 302
    with database.transaction() as s:
        assert json.loads(flex_store.programs(s)[0].spec)["envelope"] == {"export_limit_kw": 1.5, "import_limit_kw": 4.0}
    # emptied: a reduction program again
    plain = {**FORM, "name": "Export envelope"}
    assert otto.post(resp.headers["Location"] + "/edit", base_url=BASE,
                     data={**plain, "csrf_token": csrf_of(otto)}).status_code == 302
    with database.transaction() as s:
        spec = json.loads(flex_store.programs(s)[0].spec)
    assert "envelope" not in spec and spec["requested_kw"] == 50.0 and spec["incentive"]["kind"] == "pay_as_clear"
    audit = otto.get("/audit", base_url=BASE).text
    assert audit.count("program.update") == 2
