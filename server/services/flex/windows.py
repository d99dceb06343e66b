"""A program's windows: planned a week ahead from its wall-clock rule, which are due to publish, what
inputs a clearing reads (its digest), how operators see them, and the CancelWindow command.

Which window may do what is the state table's (programs.publishing: `can`, `is_open`); this module
never compares state names itself."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from programs.model import Program
from programs.publishing import Action, WindowState, can, is_open
from programs.windows import Window, windows_between
from server.db import flex as store
from server.services import clock
from server.services.errors import NotFound, check_text
from server.services.flex.cancelling import cancel_window_row
from server.services.flex.command_errors import CommandConflict, CommandNotFound, about
from server.services.flex.commands import CancelWindow, parse_cancel_window
from server.services.flex.results import WindowResult
from server.services.flex.stored import program_of


# How far back planning looks, so a window that started while the server was down is still seen.
LOOKBACK_S = 2 * 86_400


def occurrences(program: Program, now: int, horizon_s: int) -> list[Window]:
    return windows_between(program.window, clock.utc(now - LOOKBACK_S), clock.utc(now + horizon_s))


def plan_program(session: Session, row: store.FlexProgram, program: Program, now: int, *,
                 horizon_s: int = 7 * 86_400, replan: bool = False) -> list[tuple[int, str, int]]:
    """Make sure every window of the horizon has its row. With `replan` (the program changed),
    windows not yet started follow the new rule: their times move, and planned windows the rule no
    longer has are cancelled (published ones too, with their events)."""
    wanted = {w.key: w for w in occurrences(program, now, horizon_s)}
    rows = {w.window_key: w for w in store.windows(session, row.id, since_end=now - LOOKBACK_S, limit=10_000)}
    out = []
    for key, w in wanted.items():
        start, end = int(w.start.timestamp()), int(w.end.timestamp())
        publish_at = int(program.publish_at(w).timestamp())
        wr = rows.get(key)
        if wr is None:
            if end <= now - LOOKBACK_S or start < row.created_time:
                continue  # long gone, or begun before the program existed: not the program's
            wr = store.FlexWindow(program_id=row.id, window_key=key, start=start, end=end, publish_at=publish_at,
                                  state=WindowState.PLANNED.value, revision=0, updated_time=now)
            session.add(wr)
        elif replan and wr.start > now and (wr.start, wr.end, wr.publish_at) != (start, end, publish_at):
            wr.start, wr.end, wr.publish_at, wr.updated_time = start, end, publish_at, now
        if can(wr.state, Action.PUBLISH):
            out.append((row.id, key, publish_at))
    if replan:
        for key, wr in rows.items():
            if key not in wanted and wr.start > now and is_open(wr.state):
                cancel_window_row(session, wr, now, "no longer a window of the program")
    session.flush()
    return out


def plan_windows(session: Session, now: int, horizon_s: int) -> list[tuple[int, str, int]]:
    """Rows for the windows of every active program in the horizon; the planned ones returned."""
    out: list[tuple[int, str, int]] = []
    for row in store.programs(session, active_only=True):
        out.extend(plan_program(session, row, program_of(row), now, horizon_s=horizon_s))
    return out


def input_digest(session: Session, row: store.FlexProgram) -> str:
    e = store.Enrollment
    n, ids, latest = session.execute(
        select(func.count(e.id), func.coalesce(func.sum(e.id), 0), func.coalesce(func.max(e.updated_time), 0))
        .where(e.program_id == row.id)
    ).one()
    g = store.GridNode
    nodes, node_latest = session.execute(
        select(func.count(g.id), func.coalesce(func.max(g.updated_time), 0))
    ).one()
    raw = f"{row.version}|{n}|{ids}|{latest}|{nodes}|{node_latest}"
    return hashlib.sha256(raw.encode()).hexdigest()


def due_windows(session: Session, now: int) -> list[tuple[int, str]]:
    """Windows to act on now: planned ones whose time has come, published ones not yet started
    whose inputs changed."""
    out = [(w.program_id, w.window_key) for w in store.due_windows(session, now, (WindowState.PLANNED.value,))]
    digests: dict[int, str] = {}
    for w in store.due_windows(session, now, (WindowState.PUBLISHED.value,)):
        if w.start <= now:
            continue
        if w.program_id not in digests:
            row = session.get(store.FlexProgram, w.program_id)
            digests[w.program_id] = input_digest(session, row) if row else ""
        if digests[w.program_id] != w.input_digest:
            out.append((w.program_id, w.window_key))
    return out


def window_key_of(window_key: str) -> str:
    """A window key as given by an operator: printable, at most 32 characters (or Invalid)."""
    return check_text(window_key, "window key", 32) or ""


def is_date_key(key: str) -> bool:
    try:
        datetime.fromisoformat(key)
        return True
    except ValueError:
        return False


def interval_view(c: store.Clearing) -> dict[str, Any]:
    return {
        "interval": c.interval_index, "start": clock.iso(c.start), "end": clock.iso(c.end),
        "requested_kw": c.requested_kw, "price": c.price, "quantity_kw": c.quantity_kw,
        "feasible": c.feasible, "available_at_cap_kw": c.available_at_cap_kw, "devices": c.devices,
        "nodes": json.loads(c.nodes) if c.nodes else None,
    }


def window_result(w: store.FlexWindow) -> WindowResult:
    return WindowResult(key=w.window_key, start=w.start, end=w.end, publish_at=w.publish_at, state=w.state,
                        revision=w.revision, published=w.published_time, note=w.note)


def window_view(session: Session, program_id: int, window_key: str, *, top: int = 10) -> dict[str, Any]:
    window_key = window_key_of(window_key)
    w = store.window(session, program_id, window_key)
    if w is None:
        raise NotFound(f"program {program_id} has no window {window_key!r}")
    view = window_result(w).view()
    view["intervals"] = []
    for c in store.clearings(session, w.id, w.revision) if w.revision else []:
        iv = interval_view(c)
        iv["top_setpoints"] = [
            {"device_id": p.device_id, "reduction_kw": p.reduction_kw, "power_kw": p.power_kw,
             "price": p.device_price, "event_mrid": p.event_mrid}
            for p in store.setpoints(session, c.id, limit=top, order_by_reduction=True)
        ]
        view["intervals"].append(iv)
    return view


def list_windows(session: Session, program_id: int, now: int, *, include_past: bool = False, limit: int = 50) -> list[dict[str, Any]]:
    if session.get(store.FlexProgram, program_id) is None:
        raise NotFound(f"no flexibility program {program_id}")
    rows = store.windows(session, program_id, since_end=None if include_past else now, limit=limit)
    out = []
    for w in rows:
        view = window_result(w).view()
        cl = store.clearings(session, w.id, w.revision) if w.revision else []
        view["intervals"] = [interval_view(c) for c in cl]
        out.append(view)
    return out


def cancel(session: Session, command: CancelWindow, now: int) -> WindowResult:
    """The CancelWindow command: the window and the events it published that have not ended."""
    w = store.window(session, command.program_id, command.window_key, for_update=True)
    if w is None:
        raise CommandNotFound("key", f"program {command.program_id} has no window {command.window_key!r}")
    if not can(w.state, Action.CANCEL):
        raise CommandConflict("key", f"window {command.window_key} is {w.state}")
    with about("key"):
        cancel_window_row(session, w, now, "cancelled by the operator")
    return window_result(w)


def cancel_window(session: Session, program_id: int, window_key: str, now: int) -> dict[str, Any]:
    """Cancel a window by its key (for scripts and tests; transports execute CancelWindow)."""
    return cancel(session, parse_cancel_window(program_id, window_key), now).view()
