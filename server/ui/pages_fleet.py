"""Grid nodes (the tree with adders, flow limits and the last clearing's node prices; operators
create, change and delete them through the PutGridNode / DeleteGridNode commands, each recorded in
the audit log) and devices (search and filter, one device's ratings, DER status, enrollments,
events and responses)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from flask import Blueprint, g, redirect, render_template, request, url_for

from programs.kinds import DeviceKind
from server.db import dashboard
from server.services import accounts
from server.services.sep2 import devices as device_service
from server.services.flex import commands, grid_nodes, handlers, reports
from server.services.flex.command_errors import CommandConflict, CommandError, CommandNotFound
from server.ui.context import now, require, ui
from server.ui.pages_programs import RESPONSES
from server.ui.paging import page

bp = Blueprint("fleet", __name__)


def _tree(nodes: list[dict[str, Any]]) -> list[tuple[int, dict[str, Any]]]:
    """The nodes in tree order with their depth."""
    children: dict[str | None, list[dict[str, Any]]] = {}
    for n in nodes:
        children.setdefault(n.get("parent"), []).append(n)
    out: list[tuple[int, dict[str, Any]]] = []

    def walk(parent: str | None, depth: int) -> None:
        for n in sorted(children.get(parent, []), key=lambda n: n["name"]):
            out.append((depth, n))
            walk(n["name"], depth + 1)

    walk(None, 0)
    return out


@bp.get("/grid-nodes")
def grid() -> str:
    with ui().db.transaction() as s:
        nodes = grid_nodes.list_grid_nodes(s)
        last = dashboard.latest_clearing_nodes(s)
    prices = {}
    if last:
        data = json.loads(last["clearing"].nodes)
        prices = {k: v for k, v in (data.items() if isinstance(data, dict) else [])}
    return render_template("grid.html", tree=_tree(nodes), last=last, prices=prices)


NODE_FIELDS = (  # (name, label, help, required for a new node: else its default applies)
    ("load_percent", "Load %", "How loaded the node is now (0 or more); its price adder grows with it.", "0"),
    ("adder_per_percent", "Adder per % load", "Price adder per kWh for each % of load (0 or more).", "0"),
    ("congestion_multiplier", "Congestion ×", "Multiplies the node's adder (0 or more; default 1).", "1"),
    ("max_forward_kw", "Forward limit (kW)", "The most its devices may deliver together; empty: no limit.", ""),
    ("max_reverse_kw", "Reverse limit (kW)", "The most flow the other way; empty: no limit.", ""),
    ("current_load_kw", "Load now (kW)", "Needed with a flow limit; empty: unknown.", ""),
)
_OPTIONAL = {"max_forward_kw", "max_reverse_kw", "current_load_kw"}


def _node_form(values: dict[str, Any], errors: dict[str, list[str]], existing: bool, status: int = 200
               ) -> tuple[str, int]:
    with ui().db.transaction() as s:
        parents = sorted(n["name"] for n in grid_nodes.list_grid_nodes(s) if n["name"] != values.get("name"))
    return render_template("grid_node_form.html", values=values, errors=errors, existing=existing,
                           fields=NODE_FIELDS, parents=parents), status


def _node_of(s: Any, name: str) -> dict[str, Any] | None:
    return next((n for n in grid_nodes.list_grid_nodes(s) if n["name"] == name), None)


@bp.get("/grid-nodes/edit")
@require("operator")
def edit_node() -> tuple[str, int]:
    """The form for a new node, or (?name=) for changing one."""
    name = (request.args.get("name") or "")[:64]
    if not name:
        return _node_form({"name": "", "parent": "", **{f: d for f, _l, _h, d in NODE_FIELDS}}, {}, False)
    with ui().db.transaction() as s:
        node = _node_of(s, name)
    if node is None:
        return _node_form({"name": name, "parent": ""}, {"name": [f"no grid node {name!r}"]}, False, 404)
    values = {k: "" if node.get(k) is None else str(node[k]) for k in ("name", "parent", *(f[0] for f in NODE_FIELDS))}
    return _node_form(values, {}, True)


def _node_body(form: Any) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """The posted node as PutGridNode's JSON form (commands.parse_put_grid_node): empty numbers keep
    their value (a new node: the default), an empty limit or load is none, an empty parent makes a
    top-level node; and what is not even a number."""
    body: dict[str, Any] = {"name": (form.get("name") or "").strip(), "parent": (form.get("parent") or "").strip() or None}
    errors: dict[str, list[str]] = {}
    for name, _label, _help, _default in NODE_FIELDS:
        raw = (form.get(name) or "").strip()
        if not raw:
            if name in _OPTIONAL:
                body[name] = None
            continue
        try:
            body[name] = float(raw)
        except ValueError:
            errors[name] = [f"must be a number, got {raw[:40]!r}"]
    return body, errors


def _field(exc: CommandError) -> str:
    return exc.field if exc.field in ("name", "parent", *(f[0] for f in NODE_FIELDS)) else ""  # type: ignore[return-value]


@bp.post("/grid-nodes/edit")
@require("operator")
def put_node() -> Any:
    existing = request.form.get("existing") == "1"
    values = {k: request.form.get(k, "") for k in ("name", "parent", *(f[0] for f in NODE_FIELDS))}
    body, errors = _node_body(request.form)
    if errors:
        return _node_form(values, errors, existing, 400)
    try:
        command = commands.parse_put_grid_node(body)
        with ui().db.transaction() as s:
            before = _node_of(s, command.name)
            if existing and before is None:
                raise CommandNotFound("name", f"no grid node {command.name!r} (deleted meanwhile?)")
            if not existing and before is not None:
                raise CommandConflict("name", f"a grid node named {command.name!r} exists already: "
                                              "change it from its row in the list")
            after = handlers.execute(s, command, now()).view()
            accounts.record(s, g.user, "grid_node.update" if before else "grid_node.create", f"grid node {command.name}",
                            before, after, now())
    except CommandError as exc:
        # beside its field, the message need not name the node again
        message = exc.message.removeprefix("invalid grid node: ").removeprefix(f"grid node {body['name']!r}: ")
        message = message.split(": ", 1)[-1] if message.startswith(f"{exc.field}:") else message
        return _node_form(values, {_field(exc): [message]}, existing, 404 if exc.kind == "not_found" else 409
                          if exc.kind == "conflict" else 400)
    return redirect(url_for("fleet.grid"))


@bp.post("/grid-nodes/delete")
@require("operator")
def delete_node() -> Any:
    name = (request.form.get("name") or "")[:64]
    try:
        with ui().db.transaction() as s:
            before = _node_of(s, name)
            handlers.execute(s, commands.parse_delete_grid_node(name), now())
            accounts.record(s, g.user, "grid_node.delete", f"grid node {name}", before, None, now())
    except CommandError as exc:
        with ui().db.transaction() as s:
            node = _node_of(s, name)
        values = {"name": name, "parent": ""} if node is None else {
            k: "" if node.get(k) is None else str(node[k]) for k in ("name", "parent", *(f[0] for f in NODE_FIELDS))}
        return _node_form(values, {"name": [exc.message]}, node is not None,
                          404 if exc.kind == "not_found" else 409 if exc.kind == "conflict" else 400)
    return redirect(url_for("fleet.grid"))


@bp.get("/devices")
def devices() -> str:
    p = page()
    q = (request.args.get("q") or "").strip()[:64]
    kind = request.args.get("kind") or ""
    kind = kind if kind in {k.value for k in DeviceKind} else ""
    status = request.args.get("status") or ""
    status = status if status in ("seen", "silent", "disabled") else ""
    node = (request.args.get("node") or "").strip()[:64]
    program_raw = request.args.get("program") or ""
    program_id = int(program_raw) if program_raw.isdigit() and len(program_raw) < 10 else None
    with ui().db.transaction() as s:
        total, rows = dashboard.devices_page(s, query=q, kind=kind, program_id=program_id, node=node, status=status,
                                             now=now(), seen_within=2 * ui().settings.poll_rate, start=p.start,
                                             limit=p.size)
        programs = dashboard.program_names(s)
    return render_template("devices.html", rows=rows, page=p.of(total), q=q, kind=kind, status=status, node=node,
                           program_id=program_id, programs=programs, kinds=[k.value for k in DeviceKind],
                           seen_after=now() - 2 * ui().settings.poll_rate)


LOAD_WINDOWS = 10  # settled windows offered on a device's page


def _wall(iso: str, zone: Any) -> str:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone(zone).strftime("%Y-%m-%dT%H:%M:%S")


def _load_chart(s: Any, rows: Any, chosen: str) -> dict[str, Any] | None:
    """The chosen settled window (`program:key`, else the newest) as a chart of the device's metered
    load against its baseline per M&V interval, with the load it was asked to go down to (adjusted
    baseline − setpoint), on the program's local time. From the stored settlement row: exactly the
    figures it was paid on."""
    if not rows:
        return None
    sd, _start, end, key, program_id, name = next((r for r in rows if f"{r[4]}:{r[3]}" == chosen), rows[0])
    zone = reports.program_zone(s, program_id)
    detail = json.loads(sd.detail)
    ivs = detail.get("intervals", [])
    target = [None if iv.get("adjusted_kw") is None else round(iv["adjusted_kw"] - (iv.get("setpoint_kw") or 0.0), 6)
              for iv in ivs]
    return {"key": f"{program_id}:{key}", "program": name, "window": key, "program_id": program_id,
            "tz": str(zone), "times": [_wall(iv["start"], zone) for iv in ivs],
            "edges": [_wall(iv["start"], zone) for iv in ivs] + [_wall(datetime.fromtimestamp(end, timezone.utc).isoformat(), zone)],
            "baseline": [iv.get("baseline_kw") for iv in ivs], "adjusted": [iv.get("adjusted_kw") for iv in ivs],
            "actual": [iv.get("actual_kw") for iv in ivs], "target": target,
            "method": detail.get("method"), "days_used": detail.get("days_used", []),
            "energy_kwh": sd.energy_kwh, "performance": sd.performance}


@bp.get("/devices/<int(max=2147483647):device_id>")
def device(device_id: int) -> str:
    p = page(size=25)
    chosen = (request.args.get("window") or "")[:48]
    with ui().db.transaction() as s:
        view = device_service.get_device(s, device_id)
        docs = dashboard.device_documents(s, device_id)
        enrollments = dashboard.device_enrollments(s, device_id)
        total, events = dashboard.device_events(s, device_id, p.start, p.size)
        settled = dashboard.device_settlements(s, device_id, LOAD_WINDOWS)
        load = _load_chart(s, settled, chosen)
    choices = [{"key": f"{r[4]}:{r[3]}", "label": f"{r[5]} {r[3]}"} for r in settled]
    return render_template("device.html", d=view, docs=docs, enrollments=enrollments, events=events,
                           page=p.of(total), responses=RESPONSES, load=load, choices=choices)
