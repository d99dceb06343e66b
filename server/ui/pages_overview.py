"""The overview (programs with their next windows, fleet status, alerts), the audit log and the
list of users."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, render_template

from server.db import dashboard
from server.services import accounts
from server.ui.context import now, require, ui
from server.ui.pages_programs import briefs
from server.ui.paging import page

bp = Blueprint("overview", __name__)
ALERT_DAYS = 7


def _status(s: Any) -> dict[str, Any]:
    settings = ui().settings
    t = now()
    return {"fleet": dashboard.fleet_status(s, t, 2 * settings.poll_rate),
            "next": dashboard.next_windows(s, t, 10),
            "alerts": dashboard.alerts(s, t, t - ALERT_DAYS * 86_400, 10), "now": t}


@bp.get("/")
def overview() -> str:
    p = page(size=20)
    with ui().db.transaction() as s:
        total, rows = dashboard.programs_page(s, p.start, p.size)
        items = briefs(s, rows, now())
        status = _status(s)
    return render_template("overview.html", programs=items, page=p.of(total), **status)


@bp.get("/live/overview")
def live_overview() -> str:
    """The overview's changing parts as an HTML fragment (short polling, no page reload)."""
    with ui().db.transaction() as s:
        status = _status(s)
    return render_template("_overview_live.html", **status)


@bp.get("/audit")
def audit() -> str:
    p = page()
    with ui().db.transaction() as s:
        found = accounts.audit_page(s, p.start, p.size)
    return render_template("audit.html", entries=found["entries"], page=p.of(found["all"]))


@bp.get("/users")
@require("admin")
def users() -> str:
    with ui().db.transaction() as s:
        found = accounts.list_users(s)
    return render_template("users.html", users=found)
