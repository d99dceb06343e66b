"""The dashboard's app factory, its sign-in, sessions and CSRF check.

Every page but the sign-in needs a session: a cookie `__Host-derflex-ui` (HttpOnly, Secure,
SameSite=Strict, path /) holding 32 random bytes whose SHA-256 names a row of ui_sessions. Every
POST must carry the session's CSRF token (`csrf_token` form field or `X-CSRF-Token` header); the
sign-in form carries a token of its own, matched against a second cookie (double submit). A
refused request changes nothing: the check runs before the view.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import Blueprint, Flask, Response, abort, g, make_response, redirect, render_template, request, send_file, url_for

from server.config import Settings
from server.db.session import Database
from server.services import accounts
from server.services.errors import ServiceError
from server.ui.context import Ui, local_time, now, ui

COOKIE = "__Host-derflex-ui"
LOGIN_COOKIE = "__Host-derflex-login"

bp = Blueprint("auth", __name__)


def _remote() -> str:
    return request.remote_addr or "unknown"


def _cookie(resp: Response, name: str, value: str, max_age: int | None) -> None:
    resp.set_cookie(name, value, max_age=max_age, path="/", secure=True, httponly=True, samesite="Strict")


def _authenticate() -> Any:
    """before_request: the session for every view but sign-in and static files; CSRF on every POST."""
    g.user = None
    if request.endpoint in ("auth.login", "auth.favicon", "static", "auth.vendor"):
        return None
    token = request.cookies.get(COOKIE)
    if token:
        with ui().db.transaction() as s:
            g.user = accounts.signed_in(s, token, now())
    if g.user is None:
        if request.method == "GET" and not request.path.startswith("/live/"):
            return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
        abort(401, "sign in first")
    if request.method == "POST":
        sent = request.form.get("csrf_token") or request.headers.get("X-CSRF-Token") or ""
        if not hmac.compare_digest(sent.encode(), g.user.csrf.encode()):
            abort(403, "the form's CSRF token is missing or wrong: reload the page and try again")
    return None


def _headers(resp: Response) -> Response:
    resp.headers["Content-Security-Policy"] = (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
    resp.headers["X-Frame-Options"] = "DENY"
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Referrer-Policy"] = "no-referrer"
    resp.headers["Strict-Transport-Security"] = "max-age=31536000"
    if request.endpoint not in ("static", "auth.vendor"):
        resp.headers["Cache-Control"] = "no-store"
    return resp


def _safe_next(target: str | None) -> str:
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    error = None
    status = 200
    if request.method == "POST":
        sent, kept = request.form.get("login_token", ""), request.cookies.get(LOGIN_COOKIE, "")
        if not kept or not hmac.compare_digest(sent.encode(), kept.encode()):
            error, status = "The sign-in form expired; try again.", 403
        else:
            name, password = request.form.get("name", ""), request.form.get("password", "")
            try:
                with ui().db.transaction() as s:
                    done = accounts.sign_in(s, name, password, _remote(), now())
            except accounts.TooManyAttempts:
                done, error, status = None, "Too many failed sign-ins: wait five minutes and try again.", 429
            if done is not None:
                token, _who = done
                resp = redirect(_safe_next(request.args.get("next")))
                _cookie(resp, COOKIE, token, accounts.SESSION_SECONDS)
                resp.delete_cookie(LOGIN_COOKIE, path="/", secure=True, httponly=True, samesite="Strict")
                return resp
            if error is None:
                error, status = "Wrong name or password.", 401
    # one token per browser while its sign-in cookie lives: a second tab (or the browser's own
    # request for /favicon.ico) must not make the form in the first one stale
    kept = request.cookies.get(LOGIN_COOKIE, "")
    login_token = kept if 40 <= len(kept) <= 64 and kept.replace("-", "").replace("_", "").isalnum() else secrets.token_urlsafe(32)
    resp = make_response(render_template("login.html", error=error, login_token=login_token), status)
    _cookie(resp, LOGIN_COOKIE, login_token, 3600)
    return resp


@bp.post("/logout")
def logout() -> Response:
    token = request.cookies.get(COOKIE, "")
    with ui().db.transaction() as s:
        accounts.sign_out(s, token)
    resp = redirect(url_for("auth.login"))
    resp.delete_cookie(COOKIE, path="/", secure=True, httponly=True, samesite="Strict")
    return resp


@bp.get("/favicon.ico")
def favicon() -> Response:
    return Response(status=204)


@bp.get("/vendor/plotly.min.js")
def vendor() -> Response:
    """plotly.js as the installed plotly package ships it (nothing copied into the repository, no CDN)."""
    import plotly

    path = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    return send_file(path, mimetype="text/javascript", max_age=86_400)


def _error(exc: Any) -> tuple[str, int]:
    code = getattr(exc, "code", 500) or 500
    return render_template("error.html", code=code, message=getattr(exc, "description", str(exc))), code


def _service_error(exc: ServiceError) -> tuple[str, int]:
    """A refused read or write (not found, invalid, conflict): its page, nothing changed."""
    return render_template("error.html", code=exc.status, message=exc.message), exc.status


def create_ui_app(settings: Settings, db: Database | None = None, *, clock: Callable[[], float] = time.time) -> Flask:
    """The dashboard's app (its own listener: server.ui.listener)."""
    from server.ui import pages_beckn, pages_fleet, pages_overview, pages_programs, pages_settlement

    here = Path(__file__).parent
    app = Flask("derflex.ui", template_folder=str(here / "templates"), static_folder=str(here / "static"),
                static_url_path="/static")
    app.config["MAX_CONTENT_LENGTH"] = 256 * 1024
    app.extensions["derflex.ui"] = Ui(settings, db or Database(settings.db_url), clock)
    app.before_request(_authenticate)
    app.after_request(_headers)
    for code in (400, 401, 403, 404, 405, 409, 413, 429, 500):
        app.register_error_handler(code, _error)
    app.register_error_handler(ServiceError, _service_error)
    app.jinja_env.filters["local"] = local_time
    app.jinja_env.globals["csrf"] = lambda: g.user.csrf if g.get("user") else ""
    for blueprint in (bp, pages_overview.bp, pages_programs.bp, pages_fleet.bp, pages_settlement.bp, pages_beckn.bp):
        app.register_blueprint(blueprint)
    return app
