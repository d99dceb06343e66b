"""Programs: the list, authoring and editing as a form, a program's windows and enrollments, one
window (clearing, setpoints and responses, requested vs cleared vs delivered), dry-run and cancel.
Writes are the flexibility context's commands (server.services.flex.commands), each recorded in
the audit log in the same transaction."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from flask import Blueprint, abort, g, jsonify, redirect, render_template, request, url_for

from programs.model import Program
from server.db import dashboard
from server.db import flex as flex_store
from server.services import accounts
from server.services.errors import NotFound, ServiceError
from server.services.flex import commands, dry_run as dry_runs, handlers, reports
from server.services.flex.command_errors import CommandError
from server.services.flex.stored import program_of, program_row
from server.services.flex.windows import window_result
from server.ui import forms, live
from server.ui.context import local_time, now, require, ui
from server.ui.paging import page

bp = Blueprint("programs", __name__)
_PROGRAM = "/programs/<int(max=2147483647):program_id>"
_WINDOW = _PROGRAM + "/windows/<string(maxlength=32):key>"
RESPONSES = {1: "received", 2: "started", 3: "completed", 4: "opted out", 5: "opted out", 6: "cancelled",
             7: "superseded", 8: "partially opted out", 9: "partially completed", 10: "opted out", 11: "not applicable",
             12: "no event", 13: "event expired", 252: "rejected (expired)", 253: "rejected (invalid)",
             254: "rejected (unsupported)", 255: "rejected (malformed)"}


def briefs(s: Any, rows: Any, t: int) -> list[dict[str, Any]]:
    """Programs as their brief view (as flex.programs' ProgramResult.view(brief=True)): enrollments
    per state counted in SQL for the whole page at once, the next three windows of each."""
    counts = dashboard.enrollment_counts(s, [row.id for row in rows])
    return [{"id": row.id, "name": row.name, "state": row.state, "version": row.version,
             "der_program_id": row.der_program_id, "enrollments": counts.get(row.id, {}),
             "next_windows": [window_result(w).view() for w in flex_store.windows(s, row.id, since_end=t, limit=3)]}
            for row in rows]


@bp.get("/programs")
def list_programs() -> str:
    p = page()
    with ui().db.transaction() as s:
        total, rows = dashboard.programs_page(s, p.start, p.size)
        items = briefs(s, rows, now())
    return render_template("programs.html", programs=items, page=p.of(total))


def _form_page(program_id: int | None, values: dict[str, Any], errors: dict[str, list[str]], status: int = 200
               ) -> tuple[str, int]:
    return render_template("program_form.html", sections=forms.SECTIONS, values=values, errors=errors,
                           program_id=program_id), status


def _preview(program: Program | None) -> list[str]:
    """The next occurrences of the window rule (local and UTC), so DST shifts can be seen."""
    if program is None:
        return []
    from server.services.flex.windows import occurrences

    out = []
    for w in occurrences(program, now(), 21 * 86_400)[:6]:
        local = w.start.astimezone(program.window.zone)
        out.append(f"{local:%a %d %b %Y %H:%M %Z} → {w.end.astimezone(program.window.zone):%H:%M %Z} "
                   f"(UTC {w.start:%H:%M}–{w.end:%H:%M})")
    return out


@bp.get("/programs/new")
@require("operator")
def new_program() -> tuple[str, int]:
    values = {f.name: ([] if f.kind == "checks" else False if f.kind == "bool" else "") for f in forms.FIELDS.values()}
    values.update(forms.DEFAULTS)
    return _form_page(None, values, {})


def _refused(exc: CommandError) -> dict[str, list[str]]:
    name = exc.field or ""
    if name not in forms.FIELDS:
        name = next((f for f in forms.FIELDS if exc.field and f.startswith(exc.field)), "")
    message = exc.message.split(": ", 2)[-1] if name else exc.message
    return {name: [message]}


@bp.post("/programs/new")
@require("operator")
def create_program() -> Any:
    data, program, errors = forms.check(request.form)
    if program is None:
        return _form_page(None, forms.values_posted(request.form), errors, 400)
    try:
        with ui().db.transaction() as s:
            view = handlers.execute(s, commands.AuthorProgram(program), now()).view()
            accounts.record(s, g.user, "program.create", f"program {view['id']} {view['name']}", None,
                            view["program"], now())
    except CommandError as exc:
        return _form_page(None, forms.values_posted(request.form), _refused(exc), 400)
    return redirect(url_for("programs.show_program", program_id=view["id"]))


@bp.get(f"{_PROGRAM}/edit")
@require("operator")
def edit_program(program_id: int) -> tuple[str, int]:
    with ui().db.transaction() as s:
        row = program_row(s, program_id)
    return _form_page(program_id, forms.values_of(json.loads(row.spec)), {})


@bp.post(f"{_PROGRAM}/edit")
@require("operator")
def update_program(program_id: int) -> Any:
    data, program, errors = forms.check(request.form)
    if program is None:
        return _form_page(program_id, forms.values_posted(request.form), errors, 400)
    try:
        with ui().db.transaction() as s:
            before = json.loads(program_row(s, program_id).spec)
            after = program.to_dict()
            changes = {k: v for k, v in after.items() if before.get(k) != v}
            if before.get("envelope") is not None and "envelope" not in after:
                changes["envelope"] = None  # the envelope emptied: a reduction program again
            if changes:
                view = handlers.execute(s, commands.UpdateProgram(program_id, changes), now()).view()
                accounts.record(s, g.user, "program.update", f"program {program_id} {view['name']}",
                                {k: before.get(k) for k in changes}, changes, now())
    except CommandError as exc:
        return _form_page(program_id, forms.values_posted(request.form), _refused(exc), 400)
    return redirect(url_for("programs.show_program", program_id=program_id))


@bp.post(f"{_PROGRAM}/cancel")
@require("operator")
def cancel_program(program_id: int) -> Any:
    with ui().db.transaction() as s:
        before = program_row(s, program_id).state
        view = handlers.execute(s, commands.CancelProgram(program_id), now()).view()
        accounts.record(s, g.user, "program.cancel", f"program {program_id} {view['name']}", {"state": before},
                        {"state": view["state"]}, now())
    return redirect(url_for("programs.show_program", program_id=program_id))


@bp.get(_PROGRAM)
def show_program(program_id: int) -> str:
    past = request.args.get("past") == "1"
    wp, ep = page("w"), page("e", 25)
    with ui().db.transaction() as s:
        row = program_row(s, program_id)
        program = program_of(row)
        view = {**briefs(s, [row], now())[0], "program": json.loads(row.spec)}
        total, windows = dashboard.windows_page(s, program_id, wp.start, wp.size, since_end=None if past else now())
        clearings = {w.id: flex_store.clearings(s, w.id, w.revision) for w in windows if w.revision}
        etotal, enrollments = dashboard.enrollments_page(s, program_id, ep.start, ep.size)
        states = dashboard.window_states(s, program_id)
    return render_template("program.html", p=view, program=program, tz=program.window.tz, windows=windows,
                           clearings=clearings, wpage=wp.of(total), enrollments=enrollments, epage=ep.of(etotal),
                           past=past, states=states, preview=_preview(program))


def _window_data(s: Any, program_id: int, key: str) -> dict[str, Any]:
    row = program_row(s, program_id)
    program = program_of(row)
    w = flex_store.window(s, program_id, key)
    if w is None:
        raise NotFound(f"program {program_id} has no window {key!r}")
    clearings = list(flex_store.clearings(s, w.id, w.revision)) if w.revision else []
    delivered, settled, t = None, False, now()
    try:
        args = reports.window_plot_args(s, program_id, key)
        delivered = {"times": [t.isoformat() for t in args["times"]], "requested": args["requested_kw"],
                     "cleared": args["cleared_kw"], "delivered": args["delivered_kw"],
                     "headline": f"Delivered {args['delivered_kwh']:.1f} of {args['requested_kwh']:.1f} kWh asked; "
                                 f"paid {args['currency']} {args['paid']} for {args['credited_kwh']:.1f} kWh",
                     "live": False}
        settled = True
    except ServiceError:  # not settled yet: what the readings show so far, while it runs and until it settles
        delivered = live.delivered_so_far(s, row, program, w, t)
    return {"row": row, "program": program, "w": w, "clearings": clearings, "delivered": delivered,
            "settled": settled, "phase": live.phase(w, t, settled)}


def _wall(seconds: float, zone: Any) -> str:
    """A time as wall-clock text in the program's zone (the chart's axis is the program's local time)."""
    return datetime.fromtimestamp(seconds, timezone.utc).astimezone(zone).strftime("%Y-%m-%dT%H:%M:%S")


def _chart(d: dict[str, Any]) -> dict[str, Any]:
    """Requested vs cleared (steps per clearing interval) and delivered (bars per M&V interval, once
    settled), on the program's local time."""
    cl, zone = d["clearings"], d["program"].window.zone
    delivered = d["delivered"]
    if delivered is not None:
        delivered = {**delivered, "times": [_wall(datetime.fromisoformat(t).timestamp(), zone) for t in delivered["times"]]}
    return {
        "intervals": {"edges": [_wall(c.start, zone) for c in cl] + ([_wall(cl[-1].end, zone)] if cl else []),
                      "requested": [c.requested_kw for c in cl], "cleared": [c.quantity_kw for c in cl],
                      "price": [c.price for c in cl]},
        "delivered": delivered, "tz": d["program"].window.tz,
    }


def _headline(d: dict[str, Any]) -> str:
    w = d["w"]
    if d["delivered"]:
        return str(d["delivered"]["headline"])
    if not d["clearings"]:
        return f"Not cleared yet: the window publishes at {local_time(w.publish_at, d['program'].window.tz, '%H:%M %Z')}."
    if d["phase"] == "scheduled":
        return "Cleared and published; delivered appears here while the window runs, from the devices' mirrored readings."
    if d["phase"] == "active":
        return "Running: delivered appears as the first interval's readings arrive."
    return "Delivered appears once readings of the window arrive; the window is paid on its settlement."


@bp.get(_WINDOW)
def show_window(program_id: int, key: str) -> str:
    sp = page("s", 25)
    interval = request.args.get("interval", "0")
    with ui().db.transaction() as s:
        d = _window_data(s, program_id, key)
        chosen = next((c for c in d["clearings"] if str(c.interval_index) == interval), None) or (
            d["clearings"][0] if d["clearings"] else None)
        total, setpoints = dashboard.setpoints_page(s, chosen.id, sp.start, sp.size) if chosen else (0, [])
    nodes = json.loads(chosen.nodes) if chosen is not None and chosen.nodes else None
    return render_template("window.html", now=now(), d=d, headline=_headline(d), w=d["w"], program=d["program"], program_id=program_id, chosen=chosen,
                           setpoints=setpoints, spage=sp.of(total), nodes=nodes, responses=RESPONSES,
                           chart=_chart(d), tz=d["program"].window.tz)


@bp.get("/live" + _WINDOW)
def live_window(program_id: int, key: str) -> Any:
    """What the window page updates while it is open (short polling): state and the chart's data."""
    with ui().db.transaction() as s:
        d = _window_data(s, program_id, key)
    w = d["w"]
    return jsonify({"state": w.state, "phase": d["phase"], "revision": w.revision, "note": w.note, "chart": _chart(d),
                    "now": now(), "running": w.start <= now() < w.end, "settled": d["settled"],
                    "headline": _headline(d)})


@bp.post(f"{_WINDOW}/cancel")
@require("operator")
def cancel_window(program_id: int, key: str) -> Any:
    with ui().db.transaction() as s:
        w = flex_store.window(s, program_id, key)
        before = None if w is None else w.state
        view = handlers.execute(s, commands.parse_cancel_window(program_id, key), now()).view()
        accounts.record(s, g.user, "window.cancel", f"program {program_id} window {key}", {"state": before},
                        {"state": view["state"], "note": view["note"]}, now())
    return redirect(url_for("programs.show_window", program_id=program_id, key=key))


@bp.get(f"{_WINDOW}/dry-run")
@require("operator")
def dry_run(program_id: int, key: str) -> str:
    """Clear the window now with the fleet as it is, writing nothing: the supply curve, the clearing
    point and the setpoints it would give."""
    with ui().db.transaction() as s:
        result = dry_runs.dry_run(s, program_id, key, now())
        prices, quantities = result.curve_points(200)
        view = result.view(top=25)
    if not view["intervals"]:
        abort(404)
    curve = {"prices": [float(p) for p in prices], "quantities": [float(q) for q in quantities],
             "points": [{"price": iv.get("price"), "quantity": iv.get("quantity_kw"), "requested": iv["requested_kw"],
                         "start": _wall(datetime.fromisoformat(iv["start"]).timestamp(), result.program.window.zone)[11:16]}
                        for iv in view["intervals"]],
             "cap": result.program.price_cap, "currency": result.program.currency}
    zone = result.program.window.zone
    for iv in view["intervals"]:
        iv["local"] = _wall(datetime.fromisoformat(iv["start"]).timestamp(), zone).replace("T", " ")[:16]
    return render_template("dry_run.html", view=view, curve=curve, program_id=program_id, key=key,
                           program=result.program)
