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
