"""Cancelling what a window published: a whole window's events, the events no new revision
supersedes, a leaving device's events, a device sitting one window out. Events are never deleted; they get a cancellation time."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from programs.publishing import Action, is_open, transition
from server.db import derp as der_store
from server.db import flex as store
from server.services import outbox
from server.services.errors import Conflict


def previous_events(s: Session, w: store.FlexWindow) -> dict[tuple[int, int], tuple[str, str, int, int]]:
    """(device, interval) → (event mRID, its modes, start, end) of the window's latest revision."""
    sp, cl, ev = store.Setpoint, store.Clearing, der_store.DerEvent
    rows = s.execute(
        select(sp.device_id, cl.interval_index, ev.mrid, ev.controls, cl.start, cl.end)
        .join(cl, cl.id == sp.clearing_id)
        .join(ev, ev.mrid == sp.event_mrid)
        .where(cl.window_id == w.id, cl.revision == w.revision, ev.cancelled_at.is_(None))
    )
    return {(r.device_id, r.interval_index): (r.mrid, r.controls, r.start, r.end) for r in rows}


def cancel_unsuperseded(s: Session, previous: dict[tuple[int, int], tuple[str, str, int, int]],
                         new_keys: dict[tuple[int, int], tuple[str, int, int]], now: int, *, program_id: int) -> None:
    """Old events that no new event supersedes — none for the device and interval, other modes,
    or other times (a moved window: the old event would not even overlap the new one) — are
    cancelled. Every old event that had not ended is told of (outbox): cancelled or superseded."""
    doomed = [mrid for key, (mrid, modes, start, end) in previous.items()
              if new_keys.get(key) != (modes, start, end) and end > now]
    der_store.cancel_events(s, doomed, now)
    _withdrawn(s, program_id, previous, set(doomed), now)


def _withdrawn(s: Session, program_id: int, previous: dict[tuple[int, int], tuple[str, str, int, int]],
               cancelled: set[str], now: int) -> None:
    """The ControlCancelled facts of a window's old events that had not ended: "cancelled" for
    those in `cancelled`, "superseded" for the others (a new revision's event replaces them)."""
    for reason, wanted in (("cancelled", True), ("superseded", False)):
        pairs = [(device, mrid) for (device, _i), (mrid, _m, _s, end) in previous.items()
                 if end > now and (mrid in cancelled) is wanted]
        outbox.record_controls(s, outbox.ControlCancelled, program_id, [d for d, _ in pairs],
                               [m for _, m in pairs], now, reason=reason)


def cancel_window_row(session: Session, w: store.FlexWindow, now: int, note: str) -> None:
    """Cancel a window and every event it published that has not ended."""
    if not is_open(w.state):
        return
    if w.end <= now:
        raise Conflict(f"window {w.window_key} has ended: there is nothing to cancel")
    if w.revision:
        previous = previous_events(session, w)
        doomed = [m for (m, _modes, _s, end) in previous.values() if end > now]
        der_store.cancel_events(session, doomed, now)
        _withdrawn(session, w.program_id, previous, set(doomed), now)
    w.state = transition(w.state, Action.CANCEL).value
    w.note = note
    w.updated_time = now


def cancel_device_events(session: Session, row: store.FlexProgram, device_id: int, now: int) -> None:
    """A device leaving a program: its events there that have not ended are cancelled."""
    cancel_devices_events(session, row, [device_id], now)


def cancel_devices_events(session: Session, row: store.FlexProgram, device_ids: Sequence[int], now: int, *,
                          window: store.FlexWindow | None = None) -> int:
    """The program's events of these devices that have not ended are cancelled (only those of
    `window` when given: a device sitting one window out), each told of as a ControlCancelled
    fact. How many were cancelled."""
    if not device_ids:
        return 0
    ev = der_store.DerEvent
    stmt = select(ev.device_id, ev.mrid).where(
        ev.program_id == row.der_program_id, ev.device_id.in_(list(device_ids)),
        ev.start + ev.duration > now, ev.cancelled_at.is_(None))
    if window is not None:
        stmt = stmt.where(ev.start >= window.start, ev.start < window.end)
    pairs = session.execute(stmt.order_by(ev.device_id, ev.mrid)).all()
    der_store.cancel_events(session, [m for _, m in pairs], now)
    outbox.record_controls(session, outbox.ControlCancelled, row.id, [d for d, _ in pairs], [m for _, m in pairs], now)
    return len(pairs)
