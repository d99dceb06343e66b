"""The dashboard in a real browser: Debian's chromium driven by chromedriver (installed by
`make browser`, .ci/install-browser), against a real `derflex serve` with its dashboard listener.

The world: the settled "Peak Saver" program of tests/builders (3 batteries, window 2026-11-30
published, delivered and settled), an operator and a viewer. Set DERFLEX_UI_SCREENSHOTS=DIR to
keep a screenshot of every page (docs/ui/*.png are made that way).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import builders
from tests.e2e.conftest import RunningServer, free_port, start_server, stop_server

pytestmark = pytest.mark.e2e
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
PASSWORD = "correct horse battery"
GOOD = {"name": "Evening peak", "window.start": "17:00", "window.end": "20:00", "window.tz": "America/New_York",
        "requested_kw": "40", "interval_s": "1800", "price_cap": "0.5"}


def _missing() -> str | None:
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            return f"{path} is not installed (make browser installs Debian's chromium and chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    return None


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, str]]:
    reason = _missing()
    if reason:
        pytest.skip(reason)
    from server.config import Settings
    from server.db.session import Database
    from server.services import accounts

    home = tmp_path_factory.mktemp("ui")
    ui_port = free_port()
    server = start_server(home, env={"DERFLEX_UI_BIND": f"127.0.0.1:{ui_port}", "DERFLEX_BECKN_BIND": "",
                                     "DERFLEX_SCHEDULER": "false", "DERFLEX_TIMEZONE": "America/New_York"})
    db = Database(Settings(home=home).db_url)
    try:
        world = builders.make_world(db)
        builders.deliver(db, world)
        assert builders.settle(db, world) is not None
        with db.transaction() as s:
            accounts.add_user(s, "otto", "operator", PASSWORD, int(time.time()))
            accounts.add_user(s, "vera", "viewer", PASSWORD, int(time.time()))
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", ui_port), timeout=0.5).close()
                break
            except OSError:
                assert time.monotonic() < deadline, server.log.read_text()
                time.sleep(0.2)
        yield server, f"https://127.0.0.1:{ui_port}"
    finally:
        db.dispose()
        assert stop_server(server) == 0, server.log.read_text()


@pytest.fixture(scope="module")
def browser(dashboard: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--ignore-certificate-errors",  # the dev PKI's server certificate
                 "--window-size=1400,1000", f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def _wait(predicate: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def _by(driver: Any, css: str) -> Any:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, css)


def _all(driver: Any, css: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, css)


def sign_in(driver: Any, base: str, name: str) -> None:
    driver.delete_all_cookies()
    driver.get(base + "/login")
    _by(driver, "input[name=name]").send_keys(name)
    _by(driver, "input[name=password]").send_keys(PASSWORD)
    _by(driver, "form button[type=submit]").click()
    try:
        _wait(lambda: _all(driver, "header.top"))
    except AssertionError:
        raise AssertionError(f"not signed in at {driver.current_url}: {_by(driver, 'main').text[:300]}") from None


def fetch(driver: Any, method: str, url: str, body: str | None = None) -> dict[str, Any]:
    """A request from the page itself (its cookies, same origin), as a form post would send it."""
    return driver.execute_async_script("""
        const [method, url, body, done] = arguments;
        fetch(url, {method, credentials: 'same-origin', redirect: 'manual',
                    headers: {'Content-Type': 'application/x-www-form-urlencoded'}, body})
          .then(async r => done({status: r.status, type: r.type, text: await r.text()}))
          .catch(e => done({status: -1, text: String(e)}));""", method, url, body)


def shoot(driver: Any, name: str) -> None:
    where = os.environ.get("DERFLEX_UI_SCREENSHOTS")
    if where:
        Path(where).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(where) / f"{name}.png"))


def test_sign_in_shows_the_overview(browser: Any, dashboard: Any) -> None:
    _server, base = dashboard
    browser.delete_all_cookies()
    browser.get(base + "/programs")
    assert "/login" in browser.current_url  # no anonymous page but the sign-in
    shoot(browser, "login")
    sign_in(browser, base, "otto")
    browser.get(base + "/")
    assert "Peak Saver" in _by(browser, "main").text
    assert "devices registered" in _by(browser, "#live-overview").text
    shoot(browser, "overview")


def test_author_a_program_with_a_mistake_fix_it_and_see_its_windows(browser: Any, dashboard: Any) -> None:
    from selenium.webdriver.support.ui import Select

    _server, base = dashboard
    sign_in(browser, base, "otto")
    browser.get(base + "/programs")
    _by(browser, "#new-program").click()
    for name, value in GOOD.items():
        field = _by(browser, f"[name='{name}']")
        field.clear()
        field.send_keys(value if name != "requested_kw" else "-40")  # the mistake
    Select(_by(browser, "[name='incentive.kind']")).select_by_visible_text("pay_as_clear")
    for day in ("sat", "sun"):
        _by(browser, f"input[name='window.weekdays'][value='{day}']").click()
    _by(browser, "#save-program").click()
    error = _wait(lambda: _all(browser, "#error-requested_kw"))[0]
    assert "greater than 0" in error.text
    field = _by(browser, ".field[data-field='requested_kw']")
    assert "has-error" in field.get_attribute("class") and error.location["y"] >= field.location["y"]
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", field)
    shoot(browser, "program-form-error")
    kw = _by(browser, "[name='requested_kw']")
    assert kw.get_attribute("value") == "-40"
    kw.clear()
    kw.send_keys("40")
    _by(browser, "#save-program").click()
    _wait(lambda: "/programs/" in browser.current_url and not browser.current_url.endswith("/new"))
    assert "Evening peak" in _by(browser, "h1").text
    rows = _all(browser, "#windows tbody tr a")
    assert len(rows) >= 5  # the coming week, every day
    assert all(r.text.count("-") == 2 for r in rows)
    shoot(browser, "program")
    browser.get(base + "/audit")
    assert "program.create" in _by(browser, "#audit").text and "otto" in _by(browser, "#audit").text
    shoot(browser, "audit")


def test_a_window_its_delivery_a_dry_run_and_its_settlement_csv(browser: Any, dashboard: Any) -> None:
    _server, base = dashboard
    sign_in(browser, base, "otto")
    browser.get(base + "/programs")
    browser.find_element("link text", "Peak Saver").click()
    browser.find_element("link text", "include past").click()
    browser.find_element("link text", builders.KEY).click()
    _wait(lambda: _all(browser, "#delivery-chart .main-svg"))  # plotly drew it
    assert _all(browser, "#delivery-chart .barlayer .point")  # delivered bars
    assert "Delivered 12.0 of 12.0 kWh" in _by(browser, "#headline").text
    assert len(_all(browser, "#setpoints tbody tr")) == 3
    shoot(browser, "window")
    _by(browser, "#dry-run").click()
    _wait(lambda: _all(browser, "#supply-chart .main-svg"))
    assert "Nothing was stored" in _by(browser, "#dry-run-note").text
    assert "0.2600" in _by(browser, "#dry-run-intervals").text  # the 6 kW request clears at 0.26 again
    shoot(browser, "dry-run")
    browser.back()
    _by(browser, "#open-settlement").click()
    _wait(lambda: _all(browser, "#download-csv"))
    assert "USD 2.56" in _by(browser, "#paid").text
    shoot(browser, "settlement-statement")
    csv = fetch(browser, "GET", _by(browser, "#download-csv").get_attribute("href"))
    assert csv["status"] == 200
    lines = csv["text"].strip().splitlines()
    assert len(lines) > 3 and "amount_minor" in lines[0]


def _program_state(dashboard: Any) -> list[tuple[str, str, int]]:
    from server.config import Settings
    from server.db import flex as flex_store
    from server.db.session import Database

    server, _base = dashboard
    db = Database(Settings(home=server.home).db_url)
    try:
        with db.transaction() as s:
            return [(p.name, p.state, p.version) for p in flex_store.programs(s)]
    finally:
        db.dispose()


def test_a_viewer_cannot_change_anything(browser: Any, dashboard: Any) -> None:
    _server, base = dashboard
    before = _program_state(dashboard)
    sign_in(browser, base, "vera")
    browser.get(base + "/programs")
    assert not _all(browser, "#new-program")
    browser.get(base + "/programs/1")
    assert not _all(browser, "#edit-program") and "Cancel program" not in _by(browser, "main").text
    browser.get(base + f"/programs/1/windows/{builders.KEY}")
    assert not _all(browser, "#dry-run") and not _all(browser, "#cancel-window")
    browser.get(base + "/programs/new")
    assert "operator role" in _by(browser, "#error-message").text
    csrf = _by(browser, "input[name=csrf_token]").get_attribute("value")  # the viewer's own, valid token
    assert fetch(browser, "POST", "/programs/1/cancel", f"csrf_token={csrf}")["status"] == 403
    assert fetch(browser, "POST", f"/programs/1/windows/{builders.KEY}/cancel", f"csrf_token={csrf}")["status"] == 403
    assert _program_state(dashboard) == before


def test_without_a_session_or_with_a_wrong_csrf_token_nothing_changes(browser: Any, dashboard: Any) -> None:
    _server, base = dashboard
    before = _program_state(dashboard)
    sign_in(browser, base, "otto")
    browser.get(base + "/programs/1")
    assert fetch(browser, "POST", "/programs/1/cancel", "csrf_token=forged")["status"] == 403
    assert fetch(browser, "POST", "/programs/1/cancel", "")["status"] == 403
    browser.delete_all_cookies()
    assert fetch(browser, "POST", "/programs/1/cancel", "csrf_token=forged")["status"] == 401
    assert _program_state(dashboard) == before
    assert ("Peak Saver", "active", 1) in before


def test_every_page_renders(browser: Any, dashboard: Any) -> None:
    _server, base = dashboard
    sign_in(browser, base, "otto")
    for name, path in (("programs", "/programs"), ("grid-nodes", "/grid-nodes"), ("devices", "/devices"),
                       ("device", "/devices/1"), ("settlement", "/settlement"), ("beckn", "/beckn")):
        browser.get(base + path)
        assert not _all(browser, "#error-message"), (path, _by(browser, "main").text[:500])
        assert _by(browser, "h1").text
        shoot(browser, name)
    browser.get(base + "/devices?kind=battery&program=1&status=silent")  # enrolled; no DER status reported yet
    assert len(_all(browser, "#devices tbody tr a")) == 3
    browser.get(base + "/devices?status=seen")
    assert not _all(browser, "#devices tbody tr a")



def test_grid_nodes_edited_in_the_browser_and_v2_contracts_on_the_beckn_page(browser: Any, dashboard: Any) -> None:
    """Last in the module: it adds grid nodes and a Beckn v2 contract (two more batteries) to the world."""
    from selenium.webdriver.support.ui import Select

    from server.config import Settings
    from server.db.session import Database
    from tests.services.test_beckn_v2_settlement import BID_A, confirm

    server, base = dashboard
    sign_in(browser, base, "otto")
    for node in ({"name": "feeder-1", "load_percent": "40", "adder_per_percent": "0.001"},
                 {"name": "tx-7", "parent": "feeder-1", "load_percent": "70", "adder_per_percent": "0.002",
                  "max_forward_kw": "250"}):  # a flow limit without the load now: the mistake
        browser.get(base + "/grid-nodes")
        _by(browser, "#new-node").click()
        for name, value in node.items():
            if name == "parent":
                Select(_by(browser, "[name='parent']")).select_by_visible_text(value)
                continue
            field = _by(browser, f"[name='{name}']")
            field.clear()
            field.send_keys(value)
        _by(browser, "#save-node").click()
    error = _wait(lambda: _all(browser, "#error-current_load_kw"))[0]
    assert "current" in error.text and "has-error" in _by(browser, ".field[data-field='current_load_kw']").get_attribute("class")
    assert _by(browser, "[name='max_forward_kw']").get_attribute("value") == "250"
    shoot(browser, "grid-node-form-error")
    _by(browser, "[name='current_load_kw']").send_keys("180")
    _by(browser, "#save-node").click()
    _wait(lambda: browser.current_url.endswith("/grid-nodes"))
    rows = [r.text for r in _all(browser, "#grid-nodes tbody tr")]
    assert rows[0].startswith("feeder-1") and rows[1].startswith("└ tx-7") and "250" in rows[1]
    shoot(browser, "grid-nodes")

    db = Database(Settings(home=server.home).db_url)
    try:
        with db.transaction() as s:
            lfdis = [builders.lfdi(f"ui-v2-{i}") for i in range(2)]
            for x in lfdis:
                builders.rated_battery(s, x, builders.PUBLISH_AT - 10 * builders.DAY)
        cid, _, _ = confirm(db, {"program": 1, "lfdis": lfdis}, lfdis, BID_A)
    finally:
        db.dispose()
    browser.get(base + "/beckn")
    row = next(r.text for r in _all(browser, "#orders tbody tr") if cid in r.text)
    assert "v2.0.0" in row and "active" in row and " kW at " in row
    shoot(browser, "beckn")


def test_an_envelope_program_authored_with_a_mistake_and_fixed(browser: Any, dashboard: Any) -> None:
    from selenium.webdriver.support.ui import Select

    _server, base = dashboard
    sign_in(browser, base, "otto")
    browser.get(base + "/programs/new")
    values = {**GOOD, "name": "Export envelope", "requested_kw": "", "envelope.export_limit_kw": "1.5",
              "incentive.rate_per_kwh": "0.12"}
    for name, value in values.items():
        field = _by(browser, f"[name='{name}']")
        field.clear()
        field.send_keys(value)
    Select(_by(browser, "[name='incentive.kind']")).select_by_visible_text("pay_as_clear")  # the mistake
    _by(browser, "#save-program").click()
    error = _wait(lambda: _all(browser, "[id='error-incentive.kind']"))[0]
    assert "fixed" in error.text and _by(browser, "[name='envelope.export_limit_kw']").get_attribute("value") == "1.5"
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", error)
    shoot(browser, "program-form-envelope-error")
    Select(_by(browser, "[name='incentive.kind']")).select_by_visible_text("fixed")
    _by(browser, "#save-program").click()
    _wait(lambda: "/programs/" in browser.current_url and not browser.current_url.endswith("/new"))
    assert "export at most 1.5 kW" in _by(browser, "#envelope").text
