"""Settlement: every current statement (per window), one window's statement with its devices,
revenue flows and versions, an enrollment's statements, and the CSV and PNG downloads
(server.services.flex.reports reads what settlement stored; nothing is measured again)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from flask import Blueprint, Response, render_template, request

from server.db import dashboard
from server.db import flex as flex_store
from server.db import settlement as records
from server.services.flex import plots, reports
from server.ui.context import ui
from server.ui.paging import page

bp = Blueprint("settlement", __name__)
_WINDOW = "/programs/<int(max=2147483647):program_id>/windows/<string(maxlength=32):key>/settlement"
_ENROLLMENT = "/programs/<int(max=2147483647):program_id>/enrollments/<int(max=2147483647):enrollment_id>/settlement"


def _version() -> int | None:
    raw = request.args.get("version", "")
    return int(raw) if raw.isascii() and raw.isdigit() and 0 < len(raw) < 10 and int(raw) > 0 else None


@bp.get("/settlement")
def statements() -> str:
    p = page()
    with ui().db.transaction() as s:
        total, rows = dashboard.settlement_page(s, p.start, p.size)
    items = []
    for run, key, start, program_id, name in rows:
        summary = json.loads(run.summary)
        items.append({"program_id": program_id, "program": name, "key": key, "start": start, "version": run.version,
                      "reason": run.reason, "devices": summary.get("devices"), "currency": run.currency,
                      "paid": reports.major(summary.get("total_minor", 0), run.currency),
                      "requested_kwh": summary.get("requested_kwh"), "delivered_kwh": summary.get("delivered_kwh")})
    return render_template("settlement.html", items=items, page=p.of(total))


ROLES = {"SELLER": "customers (flexibility delivered)", "GRID_OPERATOR": "grid operator (wheeling)",
         "AGGREGATOR": "platform / aggregator fee", "GOVERNMENT": "tax", "BUYER": "buyer"}


def _changes(session: Any, program_id: int, key: str, versions: list[dict[str, Any]], currency: str
             ) -> list[dict[str, Any]]:
    """Each version of the window with what changed from the one before (the run's stored
    `changes`: delivered kWh and money, before → after), in major units."""
    w = flex_store.window(session, program_id, key)
    stored = {r.version: json.loads(r.summary).get("changes") for r in (records.runs(session, w.id) if w else [])}
    out = []
    for v in versions:
        ch = stored.get(v["version"]) or {}
        what = []
        if ch.get("delivered_kwh"):
            a, b = ch["delivered_kwh"]
            what.append(f"delivered {a} → {b} kWh")
        for name, label in (("gross_minor", "gross"), ("total_minor", "paid in all")):
            if ch.get(name):
                a, b = ch[name]
                what.append(f"{label} {reports.major(a, currency)} → {reports.major(b, currency)}")
        out.append({**v, "changes": "; ".join(what) if what else ("first settlement" if v["version"] == 1 else "—")})
    return out


@bp.get(_WINDOW)
def statement(program_id: int, key: str) -> str:
    p = page(size=50)
    with ui().db.transaction() as s:
        report = reports.window_report(s, program_id, key, version=_version(), start=p.start, limit=p.size)
        versions = _changes(s, program_id, key, report["versions"], report["currency"])
        zone = reports.program_zone(s, program_id)
    for d in report["devices"]["rows"]:
        d["paid"] = reports.major(d["total_minor"], report["currency"])
    for v in versions:
        for name in ("created", "superseded"):
            v[name + "_local"] = _local(v.get(name), zone)
    return render_template("statement.html", r=report, s=report["summary"], versions=versions, roles=ROLES,
                           page=p.of(report["devices"]["all"]), program_id=program_id, key=key, version=_version())


def _local(iso: str | None, zone: Any) -> str:
    if not iso:
        return "—"
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone(zone).strftime("%d %b %Y %H:%M %Z")


@bp.get(_WINDOW + ".csv")
def statement_csv(program_id: int, key: str) -> Response:
    with ui().db.transaction() as s:
        text = reports.window_csv(s, program_id, key, version=_version())
    return Response(text, mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="settlement-{program_id}-{key}.csv"'})


@bp.get(_WINDOW + ".png")
def statement_png(program_id: int, key: str) -> Response:
    with ui().db.transaction() as s:
        args = reports.window_plot_args(s, program_id, key, _version())
    return Response(plots.delivery_png(**args), mimetype="image/png")


@bp.get(_ENROLLMENT)
def enrollment(program_id: int, enrollment_id: int) -> Any:
    with ui().db.transaction() as s:
        report = reports.enrollment_report(s, program_id, enrollment_id)
    for w in report["windows"]:
        w["paid"] = reports.major(w["total_minor"], w["currency"])
        w["gross"] = reports.major(w["gross_minor"], w["currency"])
    return render_template("enrollment_statement.html", r=report, roles=ROLES, program_id=program_id,
                           enrollment_id=enrollment_id)


@bp.get(_ENROLLMENT + ".csv")
def enrollment_csv(program_id: int, enrollment_id: int) -> Response:
    with ui().db.transaction() as s:
        text = reports.enrollment_csv(s, program_id, enrollment_id)
    return Response(text, mimetype="text/csv", headers={
        "Content-Disposition": f'attachment; filename="settlement-{program_id}-enrollment-{enrollment_id}.csv"'})
