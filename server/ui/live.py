"""A window while it runs: its phase as an operator reads it (scheduled → active → completed →
settled) and the kW delivered so far, before any settlement.

Delivered so far is measured exactly as settlement will measure it (server.services.flex.settlement
`measure`: the program's M&V interval, the fleet's mirrored readings averaged into it, the
baseline rule with its event days and exclusions, programs.measurement.performance), only earlier:
an interval whose readings have not arrived (or cover less than the M&V coverage) is simply not
shown yet. Nothing is stored; the figures the window is paid on are the settlement's.

Measuring reads every cleared device's readings for the baseline's look-back, so a result is kept
per window (and clearing revision) for LIVE_SECONDS in this process and one thread measures a
window at a time; the window page polls every 5 s and the settled figures replace these as soon
as the settlement is stored.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from sqlalchemy.orm import Session

from programs.publishing import is_published
from server.db import flex as flex_store
from server.services import clock
from server.services.errors import ServiceError

LIVE_SECONDS = 10.0
_MAX_KEPT = 64

_lock = threading.Lock()
_kept: dict[tuple[int, str, int], tuple[float, dict[str, Any] | None]] = {}
_measuring: dict[tuple[int, str, int], threading.Lock] = {}


def phase(w: flex_store.FlexWindow, now: int, settled: bool) -> str:
    """What an operator calls the window's moment: scheduled (before its start), active (running),
    completed (ended, not settled yet), settled; missed and cancelled as they are."""
    if not is_published(w.state) and w.state != "planned":
        return str(w.state)
    if now < w.start:
        return "scheduled"
    if w.state == "planned":  # its start passed and it was never published: the job will mark it missed
        return "missed" if now >= w.end else "planned"
    if now < w.end:
        return "active"
    return "settled" if settled else "completed"


def _measure(session: Session, row: Any, program: Any, w: flex_store.FlexWindow, now: int) -> dict[str, Any] | None:
    from server.services.flex import settlement

    try:
        m = settlement.measure(session, row, program, w)
    except (ServiceError, ValueError):  # nothing cleared, or M&V cannot run yet: nothing to show
        return None
    perf = m.perf
    times, delivered, measured = [], [], 0
    for j, start in enumerate(m.starts):
        start = int(start)
        times.append(clock.utc(start))
        if perf.measured_devices[j] and start < now:
            delivered.append(round(float(perf.delivered_kw[j]), 3))
            measured += 1
        else:
            delivered.append(None)
    if not measured:
        return None
    kwh = sum(x for x in delivered if x is not None) * m.dt / 3600
    asked = sum(float(perf.cleared_kw[j]) for j, x in enumerate(delivered) if x is not None) * m.dt / 3600
    return {"times": [t.isoformat() for t in times], "delivered": delivered,
            "requested": [float(x) for x in perf.requested_kw], "cleared": [float(x) for x in perf.cleared_kw],
            "measured_intervals": measured, "intervals": len(times), "devices": len(m.device_ids),
            "headline": f"Live: {kwh:.1f} kWh delivered so far against {asked:.1f} kWh cleared in the "
                        f"{measured} of {len(times)} intervals measured (from mirrored readings against "
                        "baselines; the window is paid on its settlement)",
            "live": True, "measured_at": now}


def delivered_so_far(session: Session, row: Any, program: Any, w: flex_store.FlexWindow, now: int
                     ) -> dict[str, Any] | None:
    """The window's delivered kW per M&V interval measured so far (module docstring), or None when
    no interval can be measured yet. Kept LIVE_SECONDS per window and clearing revision."""
    if not is_published(w.state) or not w.revision or now < w.start:
        return None
    key = (w.program_id, w.window_key, int(w.revision))
    with _lock:
        kept = _kept.get(key)
        if kept is not None and time.monotonic() - kept[0] < LIVE_SECONDS:
            return kept[1]
        one = _measuring.setdefault(key, threading.Lock())
    with one:  # one thread measures; the others wait for its result
        with _lock:
            kept = _kept.get(key)
            if kept is not None and time.monotonic() - kept[0] < LIVE_SECONDS:
                return kept[1]
        value = _measure(session, row, program, w, now)
        with _lock:
            if len(_kept) >= _MAX_KEPT:
                oldest = min(_kept, key=lambda k: _kept[k][0])
                _kept.pop(oldest, None)
                _measuring.pop(oldest, None)
            _kept[key] = (time.monotonic(), value)
    return value


def forget() -> None:
    """Drop every kept result (tests)."""
    with _lock:
        _kept.clear()
        _measuring.clear()
