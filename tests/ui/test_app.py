"""The dashboard app through Flask's test client (HTTPS base URL, as the cookies are Secure): sign-in
and its limit, sessions, CSRF, roles, the program form's errors beside their fields, the audit log."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest

from server.config import Settings, from_env
from server.db import flex as flex_store
from server.services import accounts
from server.ui.app import COOKIE, create_ui_app

BASE = "https://localhost"
PASSWORD = "correct horse battery"
FORM = {"name": "Evening peak", "currency": "USD", "window.weekdays": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
        "window.start": "17:00", "window.end": "20:00", "window.tz": "America/New_York", "requested_kw": "50",
        "interval_s": "900", "price_cap": "0.5", "incentive.kind": "pay_as_clear", "eligible_kinds": ["battery"]}


@pytest.fixture
def app(database: Any, tmp_path: Any) -> Any:
    with database.transaction() as s:
        for name, role in (("vera", "viewer"), ("otto", "operator"), ("ada", "admin")):
            accounts.add_user(s, name, role, PASSWORD, int(time.time()))
    return create_ui_app(Settings(home=tmp_path), database)


def sign_in(app: Any, name: str, password: str = PASSWORD) -> Any:
    client = app.test_client()
    page = client.get("/login", base_url=BASE)
    token = re.search(r'name="login_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    client.post("/login", base_url=BASE, data={"login_token": token, "name": name, "password": password})
    return client


def csrf_of(client: Any, path: str = "/programs") -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', client.get(path, base_url=BASE).text).group(1)  # type: ignore[union-attr]


def programs(database: Any) -> list[str]:
    with database.transaction() as s:
        return [p.name for p in flex_store.programs(s)]


def test_every_page_but_the_sign_in_needs_a_session(app: Any) -> None:
    client = app.test_client()
    for path in ("/", "/programs", "/programs/new", "/devices", "/settlement", "/beckn", "/audit", "/grid-nodes"):
        resp = client.get(path, base_url=BASE)
        assert resp.status_code == 302 and resp.headers["Location"].startswith("/login"), path
    assert client.get("/live/overview", base_url=BASE).status_code == 401
    assert client.get("/login", base_url=BASE).status_code == 200


def test_a_session_cookie_is_secure_httponly_and_strict(app: Any) -> None:
    client = app.test_client()
    page = client.get("/login", base_url=BASE)
    token = re.search(r'name="login_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    resp = client.post("/login", base_url=BASE, data={"login_token": token, "name": "otto", "password": PASSWORD})
    assert resp.status_code == 302
    cookie = next(h for h in resp.headers.getlist("Set-Cookie") if h.startswith(COOKIE + "="))
    for flag in ("Secure", "HttpOnly", "SameSite=Strict", "Path=/"):
        assert flag in cookie
    assert client.get("/", base_url=BASE).status_code == 200
    assert "default-src 'self'" in client.get("/", base_url=BASE).headers["Content-Security-Policy"]


def test_passwords_are_scrypt_hashes_with_their_own_salt(database: Any) -> None:
    a, b = accounts.hash_password(PASSWORD), accounts.hash_password(PASSWORD)
    assert a != b and a.startswith("scrypt$16384$8$1$") and PASSWORD not in a
    assert accounts.verify_password(PASSWORD, a) and not accounts.verify_password(PASSWORD + "x", a)


def test_a_wrong_password_and_the_sign_in_limit(app: Any) -> None:
    for _ in range(accounts.MAX_FAILURES):
        client = sign_in(app, "otto", "wrong password!")
        assert client.get("/", base_url=BASE).status_code == 302  # not signed in
    client = app.test_client()
    page = client.get("/login", base_url=BASE)
    token = re.search(r'name="login_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    resp = client.post("/login", base_url=BASE, data={"login_token": token, "name": "otto", "password": PASSWORD})
    assert resp.status_code == 429  # even the right password waits now
    assert client.get("/", base_url=BASE).status_code == 302


def test_a_sign_in_without_its_form_token_is_refused(app: Any) -> None:
    client = app.test_client()
    resp = client.post("/login", base_url=BASE, data={"name": "otto", "password": PASSWORD})
    assert resp.status_code == 403 and COOKIE not in resp.headers.get("Set-Cookie", "")


def test_a_program_with_a_mistake_is_shown_again_with_the_error_beside_its_field(app: Any, database: Any) -> None:
    client = sign_in(app, "otto")
    resp = client.post("/programs/new", base_url=BASE, data={**FORM, "requested_kw": "-5", "price_floor": "0.9",
                                                               "csrf_token": csrf_of(client)})
    assert resp.status_code == 400
    assert set(re.findall(r'id="error-([^"]+)"', resp.text)) == {"requested_kw", "price_floor"}
    assert 'value="-5"' in resp.text  # what was typed stays
    assert programs(database) == []
    resp = client.post("/programs/new", base_url=BASE, data={**FORM, "csrf_token": csrf_of(client)})
    assert resp.status_code == 302
    assert programs(database) == ["Evening peak"]
    program_page = client.get(resp.headers["Location"], base_url=BASE).text
    assert len(re.findall(r'/windows/\d{4}-\d\d-\d\d"', program_page)) >= 5  # a week of windows, planned
    audit = client.get("/audit", base_url=BASE).text
    assert "program.create" in audit and "otto" in audit and "Evening peak" in audit


def test_edit_changes_what_was_changed_and_the_audit_shows_before_and_after(app: Any, database: Any) -> None:
    client = sign_in(app, "otto")
    location = client.post("/programs/new", base_url=BASE, data={**FORM, "csrf_token": csrf_of(client)}).headers["Location"]
    form = client.get(location + "/edit", base_url=BASE).text
    assert 'value="Evening peak"' in form and 'value="50"' in form
    resp = client.post(location + "/edit", base_url=BASE, data={**FORM, "requested_kw": "80",
                                                                  "csrf_token": csrf_of(client)})
    assert resp.status_code == 302
    with database.transaction() as s:
        assert '"requested_kw": 80.0' in flex_store.programs(s)[0].spec
    audit = client.get("/audit", base_url=BASE).text
    assert "program.update" in audit and "50.0" in audit and "80.0" in audit


def test_a_viewer_cannot_change_anything(app: Any, database: Any) -> None:
    otto = sign_in(app, "otto")
    location = otto.post("/programs/new", base_url=BASE, data={**FORM, "csrf_token": csrf_of(otto)}).headers["Location"]
    vera = sign_in(app, "vera")
    token = csrf_of(vera)
    assert vera.get("/programs/new", base_url=BASE).status_code == 403
    assert vera.post("/programs/new", base_url=BASE, data={**FORM, "name": "Other", "csrf_token": token}).status_code == 403
    assert vera.post(location + "/cancel", base_url=BASE, data={"csrf_token": token}).status_code == 403
    assert vera.post(location + "/edit", base_url=BASE, data={**FORM, "requested_kw": "1", "csrf_token": token}).status_code == 403
    assert "Cancel program" not in vera.get(location, base_url=BASE).text
    assert vera.get("/users", base_url=BASE).status_code == 403
    with database.transaction() as s:
        (row,) = flex_store.programs(s)
        assert row.state == "active" and row.version == 1
    assert programs(database) == ["Evening peak"]


def test_without_a_session_or_with_a_wrong_csrf_token_nothing_changes(app: Any, database: Any) -> None:
    otto = sign_in(app, "otto")
    location = otto.post("/programs/new", base_url=BASE, data={**FORM, "csrf_token": csrf_of(otto)}).headers["Location"]
    anonymous = app.test_client()
    assert anonymous.post(location + "/cancel", base_url=BASE, data={"csrf_token": csrf_of(otto)}).status_code == 401
    assert otto.post(location + "/cancel", base_url=BASE, data={"csrf_token": "not-the-token"}).status_code == 403
    assert otto.post(location + "/cancel", base_url=BASE).status_code == 403
    with database.transaction() as s:
        assert flex_store.programs(s)[0].state == "active"
    assert otto.post(location + "/cancel", base_url=BASE, data={"csrf_token": csrf_of(otto)}).status_code == 302
    with database.transaction() as s:
        assert flex_store.programs(s)[0].state == "cancelled"


def test_signing_out_ends_the_session(app: Any) -> None:
    client = sign_in(app, "ada")
    assert client.get("/users", base_url=BASE).status_code == 200
    assert client.post("/logout", base_url=BASE, data={"csrf_token": csrf_of(client)}).status_code == 302
    assert client.get("/", base_url=BASE).status_code == 302


def test_unknown_things_are_a_404_page_not_a_500(app: Any) -> None:
    client = sign_in(app, "otto")
    assert client.get("/programs/999", base_url=BASE).status_code == 404
    assert client.get("/programs/999/windows/2026-01-01", base_url=BASE).status_code == 404
    assert client.get("/devices/999", base_url=BASE).status_code == 404
    assert client.get("/programs/999/windows/2026-01-01/settlement", base_url=BASE).status_code == 404


@pytest.mark.parametrize(("raw", "bind"), [("", ""), ("off", ""), ("127.0.0.1:9444", "127.0.0.1:9444")])
def test_ui_bind_setting(raw: str, bind: str) -> None:
    assert from_env({"DERFLEX_UI_BIND": raw}).ui_bind == bind
    assert from_env({}).ui_bind == "127.0.0.1:8444"


def test_cli_adds_a_user_from_stdin(tmp_path: Any) -> None:
    from click.testing import CliRunner

    from server.cli import main

    runner = CliRunner()
    home = ["--home", str(tmp_path)]
    done = runner.invoke(main, [*home, "ui", "user", "add", "olga", "--role", "operator", "--password-stdin"],
                         input=PASSWORD + "\n")
    assert done.exit_code == 0, done.output
    short = runner.invoke(main, [*home, "ui", "user", "add", "pat", "--password-stdin"], input="short\n")
    assert short.exit_code != 0 and "password" in short.output
    listed = runner.invoke(main, [*home, "ui", "user", "list"])
    assert "olga" in listed.output and "operator" in listed.output and "pat" not in listed.output
