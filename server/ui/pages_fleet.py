"""Grid nodes (the tree with adders, flow limits and the last clearing's node prices) and devices
(search and filter, one device's ratings, DER status, enrollments, events and responses)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from flask import Blueprint, render_template, request

from programs.kinds import DeviceKind
from server.db import dashboard
from server.services.sep2 import devices as device_service
from server.services.flex import grid_nodes, reports
from server.ui.context import now, ui
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
