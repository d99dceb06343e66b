"""A window's page while it runs: its phase (scheduled → active → completed → settled) and the kW
delivered so far, measured from the mirrored readings against the baselines before any settlement
(server.ui.live), then replaced by the settled figures.

The world is tests/builders' settled "Peak Saver" (3 batteries, baseline 3 kW each, 15-minute M&V
intervals, 16:00–18:00 EST): during the window they draw 1, 2 and 0 kW, so every measured interval
delivers 2 + 1 + 3 = 6 kW.
"""

from __future__ import annotations

import re
import time
from typing import Any

import pytest

from server.config import Settings
from server.services import accounts
from server.ui import live
from server.ui.app import create_ui_app
from tests import builders

BASE = "https://localhost"
PASSWORD = "correct horse battery"
LIVE = f"/live/programs/1/windows/{builders.KEY}"


class Clock:
    def __init__(self, t: int) -> None:
        self.t = t

    def __call__(self) -> float:
        return float(self.t)


@pytest.fixture
def world(database: Any, tmp_path: Any) -> Any:
    live.forget()
    w = builders.make_world(database)
    with database.transaction() as s:
        accounts.add_user(s, "otto", "operator", PASSWORD, int(time.time()))
    clock = Clock(builders.START - 600)
    app = create_ui_app(Settings(home=tmp_path), database, clock=clock)
    client = app.test_client()
    page = client.get("/login", base_url=BASE)
    token = re.search(r'name="login_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    client.post("/login", base_url=BASE, data={"login_token": token, "name": "otto", "password": PASSWORD})
    yield w, clock, client
    live.forget()


def test_scheduled_then_active_with_delivered_so_far_then_completed_then_settled(database: Any, world: Any) -> None:
    w, clock, client = world
    got = client.get(LIVE, base_url=BASE).get_json()
    assert got["phase"] == "scheduled" and got["chart"]["delivered"] is None and not got["settled"]
    assert "Cleared and published" in got["headline"]

    # an hour into the window, the first four 15-minute intervals' readings are in
    builders.mirror(database, w["lfdis"][0], builders.START, [1000] * 4, now=builders.START + 3600)
    builders.mirror(database, w["lfdis"][1], builders.START, [2000] * 4, now=builders.START + 3600)
    builders.mirror(database, w["lfdis"][2], builders.START, [0] * 4, now=builders.START + 3600)
    clock.t = builders.START + 3600 + 30
    got = client.get(LIVE, base_url=BASE).get_json()
    assert got["phase"] == "active" and got["running"]
    delivered = got["chart"]["delivered"]
    assert delivered["live"] is True
    assert delivered["delivered"] == [6.0, 6.0, 6.0, 6.0, None, None, None, None]
    assert len(delivered["times"]) == 8 and delivered["times"][0].startswith("2026-11-30T16:00")  # local wall time
    assert "6.0 kWh delivered so far against 6.0 kWh cleared in the 4 of 8 intervals" in got["headline"]
    page = client.get(f"/programs/1/windows/{builders.KEY}", base_url=BASE).text
    assert 'id="window-state" title="stored state: published">active<' in page and "Live: 6.0 kWh" in page
    assert 'id="open-settlement"' not in page

    # the rest arrive; the result is kept LIVE_SECONDS, then measured again
    for x, watts in zip(w["lfdis"], builders.EVENT_W):
        builders.mirror(database, x, builders.START + 3600, [watts] * 4, now=builders.END)
    clock.t = builders.END + 60
    assert client.get(LIVE, base_url=BASE).get_json()["chart"]["delivered"]["delivered"][4] is None  # kept
    live.forget()
    got = client.get(LIVE, base_url=BASE).get_json()
    assert got["phase"] == "completed" and not got["running"] and not got["settled"]
    assert got["chart"]["delivered"]["delivered"] == [6.0] * 8

    assert builders.settle(database, w) is not None
    clock.t = builders.SETTLED_AT
    got = client.get(LIVE, base_url=BASE).get_json()
    assert got["phase"] == "settled" and got["settled"] and got["chart"]["delivered"]["live"] is False
    assert got["headline"].startswith("Delivered 12.0 of 12.0 kWh asked; paid USD 2.56")
    assert 'id="open-settlement"' in client.get(f"/programs/1/windows/{builders.KEY}", base_url=BASE).text


def test_a_window_without_readings_shows_no_bars_and_a_cancelled_one_says_so(database: Any, world: Any) -> None:
    _w, clock, client = world
    clock.t = builders.START + 1800
    got = client.get(LIVE, base_url=BASE).get_json()
    assert got["phase"] == "active" and got["chart"]["delivered"] is None
    assert "first interval's readings" in got["headline"]
    page = client.get(f"/programs/1/windows/{builders.KEY}", base_url=BASE).text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    assert client.post(f"/programs/1/windows/{builders.KEY}/cancel", base_url=BASE,
                       data={"csrf_token": csrf}).status_code == 302
    got = client.get(LIVE, base_url=BASE).get_json()
    assert got["phase"] == "cancelled" and got["chart"]["delivered"] is None
