"""A short window watched live in a real browser: scheduled → active (delivered bars appearing from
the devices' mirrored readings, before any settlement) → completed.

A real `derflex serve` (scheduler on, reconciling every 2 s, pollRate 5 s, its dashboard on a free
port) and two simulated batteries of der_sim (their own certificates, mutual TLS, a week of history
for their baselines, then live readings every 15 s posted every 5 s). A two-minute window with
one-minute M&V intervals starts 16 s after its program is made and publishes 10 s ahead; the
window page polls every 5 s. Its first minute's readings are in at most 20 s after that minute
(15-s readings, posted every 5 s), so the first delivered bar appears while the window is still
active. About 2.5 minutes, most of it
the window's real clock (marked slow). DERFLEX_UI_SCREENSHOTS=DIR keeps the screenshots.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import pytest

from tests.e2e.conftest import RunningServer, free_port, start_server, stop_server
from tests.ui.test_browser import CHROMEDRIVER, CHROMIUM, PASSWORD, _all, _by, _missing, _wait, shoot, sign_in

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
WINDOW_S = 120
LEAD_S = 10
PRICE_CAP = 0.5


def _listening(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            assert time.monotonic() < deadline, f"nothing listens on {port}"
            time.sleep(0.2)


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    reason = _missing()
    if reason:
        pytest.skip(reason)
    from der_sim.agent import AgentConfig
    from der_sim.fleet import Fleet, certificates, make_devices
    from server.bootstrap import tls_files
    from server.config import Settings
    from server.db.session import Database
    from server.pki import DevPKI
    from server.services import accounts
    from server.services.flex import enrollments, programs as flex

    home = tmp_path_factory.mktemp("live")
    ui_port = free_port()
    server: RunningServer = start_server(home, env={
        "DERFLEX_UI_BIND": f"127.0.0.1:{ui_port}", "DERFLEX_BECKN_BIND": "", "DERFLEX_SCHEDULER": "true",
        "DERFLEX_SCHEDULER_RECONCILE_SECONDS": "2", "DERFLEX_POLL_RATE": "5", "DERFLEX_TIMEZONE": "UTC"})
    settings = Settings(home=home)
    db = Database(settings.db_url)
    fleet = None
    try:
        devices = make_devices(2, seed=3, mix={"battery": 1.0}, prefix="live")
        creds = certificates(DevPKI(settings.certs_dir), devices)
        config = AgentConfig(poll_rate=5, post_rate=5, interval_s=15, time_sync_s=60, pin=None)
        fleet = Fleet(devices, creds, "127.0.0.1", server.port, tls_files(settings).trust, config=config, seed=3,
                      workers=2)
        assert fleet.backfill(7, 900) > 0  # registers each device and posts its history (the baselines)
        offers = fleet.offers(WINDOW_S, 0.0, PRICE_CAP)
        at_cap = sum(max(kw for _, kw in c) - min(kw for _, kw in c) for c in offers if c)
        now = time.time()
        # the fleet starts, the browser signs in and opens the page during the lead (readings are
        # averaged into the M&V minutes by their overlap, so the start need not be on a reading's)
        start = int(now) + LEAD_S + 6
        end = start + WINDOW_S
        hms = lambda t: datetime.fromtimestamp(t, timezone.utc).strftime("%H:%M:%S")  # noqa: E731
        program = {
            "name": "Live peak", "currency": "USD", "requested_kw": max(1.0, round(0.5 * at_cap, 1)),
            "window": {"weekdays": list(range(7)), "start": hms(start), "end": hms(end), "tz": "UTC"},
            "interval_s": 60, "price_cap": PRICE_CAP, "incentive": {"kind": "pay_as_clear"},
            "eligible_kinds": ["battery"], "lead_time_s": LEAD_S,
            "measurement": {"interval_s": 60, "delay_s": 30, "resettle_days": 1,
                            "baseline": {"x": 3, "y": 5, "min_days": 3, "lookback_days": 8, "day_types": "any"}},
        }
        t = int(now)
        with db.transaction() as s:
            made = flex.create_program(s, program, t)
            for i, (d, curve) in enumerate(zip(fleet.devices, offers)):
                body: dict[str, Any] = {"lfdi": d.agent.lfdi, "customer": f"home {i + 1}", "kind": d.kind}
                if curve:
                    body["offer"] = {"power": [[round(p, 4), round(kw, 3)] for p, kw in curve]}
                enrollments.enroll(s, made["id"], body, t)
            accounts.add_user(s, "otto", "operator", PASSWORD, t)
        fleet.start()
        assert fleet.wait_registered(30) == 2, fleet.phases()
        _listening(ui_port, 30)
        key = datetime.fromtimestamp(start, timezone.utc).date().isoformat()
        yield {"base": f"https://127.0.0.1:{ui_port}", "program": made["id"], "key": key, "start": start,
               "end": end, "server": server}
    finally:
        if fleet is not None:
            fleet.stop()
        db.dispose()
        assert stop_server(server) == 0, server.log.read_text()


@pytest.fixture(scope="module")
def browser(running: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                 "--ignore-certificate-errors", "--window-size=1400,1000",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def _live(driver: Any, url: str) -> dict[str, Any]:
    return json.loads(driver.execute_async_script("""
        const [url, done] = arguments;
        fetch(url, {credentials: 'same-origin'}).then(r => r.text()).then(done).catch(e => done(String(e)));""", url))


def test_a_short_window_goes_scheduled_active_completed_with_delivered_bars_appearing(browser: Any, running: Any
                                                                                       ) -> None:
    base, start, end = running["base"], running["start"], running["end"]
    path = f"/programs/{running['program']}/windows/{running['key']}"
    sign_in(browser, base, "otto")
    browser.get(base + path)
    assert time.time() < start, "the window started before the page was opened"

    def state() -> str:  # the page reloads itself once when the window is cleared (its tables)
        found = _all(browser, "#window-state")
        try:
            return str(found[0].text) if found else ""
        except Exception:  # replaced while read
            return ""

    assert state() == "scheduled", _by(browser, "main").text[:400]
    shoot(browser, "window-scheduled")

    _wait(lambda: state() == "active", timeout=start - time.time() + 15)
    assert time.time() < end
    _wait(lambda: _all(browser, "#intervals tbody tr"), timeout=5)  # published: cleared (the page reloaded once)
    assert _by(browser, "#window-revision").text == "1"
    assert not _all(browser, "#delivery-chart .barlayer .point")  # nothing measured yet

    # the first minute's readings: bars while the window still runs
    _wait(lambda: _all(browser, "#delivery-chart .barlayer .point"), timeout=end - time.time())
    assert state() == "active" and time.time() < end
    headline = _by(browser, "#headline").text
    assert headline.startswith("Live:") and "intervals measured" in headline, headline
    data = _live(browser, f"/live{path}")
    delivered = data["chart"]["delivered"]
    assert data["phase"] == "active" and delivered["live"] and not data["settled"]
    assert delivered["delivered"][0] is not None and delivered["delivered"][-1] is None  # the last minute is to come
    shoot(browser, "window-live")

    _wait(lambda: state() == "completed", timeout=end - time.time() + 15)
    assert len(_all(browser, "#delivery-chart .barlayer .point")) >= 1
    data = _live(browser, f"/live{path}")
    assert data["phase"] == "completed" and not data["settled"] and data["chart"]["delivered"]["live"]
    shoot(browser, "window-completed")
