"""Grid nodes (the tree with adders, flow limits and the last clearing's node prices) and devices
(search and filter, one device's ratings, DER status, enrollments, events and responses)."""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, render_template, request

from programs.kinds import DeviceKind
from server.db import dashboard
from server.services.sep2 import devices as device_service
from server.services.flex import grid_nodes
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


@bp.get("/devices/<int(max=2147483647):device_id>")
def device(device_id: int) -> str:
    p = page(size=25)
    with ui().db.transaction() as s:
        view = device_service.get_device(s, device_id)
        docs = dashboard.device_documents(s, device_id)
        enrollments = dashboard.device_enrollments(s, device_id)
        total, events = dashboard.device_events(s, device_id, p.start, p.size)
    return render_template("device.html", d=view, docs=docs, enrollments=enrollments, events=events,
                           page=p.of(total), responses=RESPONSES)
