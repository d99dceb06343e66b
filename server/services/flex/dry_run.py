"""Dry runs: a window cleared and not written, for the operator to look at before the real one."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
import numpy as np
from sqlalchemy.orm import Session
from programs.clearing import CurveBook
from programs.grid import GridClearing
from programs.model import Program
from programs.publishing import WindowState, is_open
from programs.windows import Window
from server.db import flex as store
from server.services import clock
from server.services.errors import NotFound
from server.services.flex.gathering import Fleet, clear_fleet, gather
from server.services.flex.stored import program_of
from server.services.flex.windows import window_key_of, occurrences


@dataclass
class DryRun:
    """A clearing computed and not written: for the operator to look at before the real one."""

    program: Program
    window: store.FlexWindow
    fleet: Fleet
    book: CurveBook | None
    results: list[tuple[Any, GridClearing | None]]
    program_state: str = "active"

    def curve_points(self, n: int = 400) -> tuple[np.ndarray, np.ndarray]:
        """The fleet's aggregate supply curve F(p) (no grid limits), sampled from its lowest
        breakpoint to the price cap, breakpoints included where there are few."""
        if self.book is None or not len(self.book):
            return np.zeros(0), np.zeros(0)
        lo = float(self.book.p_min)
        hi = max(float(self.program.price_cap), lo)
        grid = np.linspace(lo, hi, n)
        bps = np.unique(self.book.bp + self.book.p_min)
        if bps.size <= 2 * n:
            grid = np.unique(np.concatenate([grid, bps[(bps >= lo) & (bps <= hi)]]))
        return grid, np.array([self.book.F(float(p)) for p in grid])

    def plot_args(self) -> dict[str, Any]:
        """Arguments of server.services.flex.plots.supply_curve_png for the interval asking the most."""
        prices, quantities = self.curve_points()
        req, result = max(self.results, key=lambda rr: rr[0].requested_kw) if self.results else (None, None)
        if req is None or result is None or not prices.size:
            raise NotFound("nothing to draw: no device of this program can take part in this window")
        return {
            "prices": prices, "quantities": quantities, "requested_kw": req.requested_kw,
            "price_cap": self.program.price_cap, "clearing_price": float(result.price),
            "cleared_kw": float(result.quantity), "feasible": bool(result.feasible),
            "title": f"{self.program.name}: window {self.window.window_key}, {len(self.fleet)} devices",
            "currency": self.program.currency,
        }

    def view(self, top: int = 10) -> dict[str, Any]:
        out = []
        for req, result in self.results:
            item: dict[str, Any] = {
                "start": req.start.isoformat(), "end": req.end.isoformat(), "requested_kw": req.requested_kw,
            }
            if result is not None:
                order = np.argsort(-np.asarray(result.setpoints), kind="stable")[:top]
                item.update(
                    price=float(result.price), quantity_kw=float(result.quantity), feasible=bool(result.feasible),
                    available_at_cap_kw=float(result.available_at_cap),
                    top_setpoints=[{"device_id": self.fleet.device_ids[i], "reduction_kw": float(result.setpoints[i]),
                                    "price": float(result.device_prices[i])} for i in order],
                )
            out.append(item)
        return {
            "program": self.program.name, "program_state": self.program_state,
            "window": self.window.window_key, "state": self.window.state,
            "devices": len(self.fleet), "skipped": [{"device_id": d, "reason": r} for d, r in self.fleet.skipped[:20]],
            "skipped_count": len(self.fleet.skipped), "intervals": out,
        }


def dry_run(session: Session, program_id: int, window_key: str | None, now: int) -> DryRun:
    """Clear a window without writing anything. With no key: the next window of the program that
    may still be published (planned or published, not ended), from its rows or, for a window not
    planned yet, from the program's rule."""
    row = session.get(store.FlexProgram, program_id)
    if row is None:
        raise NotFound(f"no flexibility program {program_id}")
    program = program_of(row)
    if window_key is None:
        w = _next_open_window(session, row, program, now)
        if w is None:
            raise NotFound(f"program {program_id} has no window in the coming week that may still be published")
    else:
        found = store.window(session, program_id, window_key_of(window_key))
        if found is None:
            raise NotFound(f"program {program_id} has no window {window_key!r} (see its windows)")
        w = found
    window = Window(clock.utc(w.start), clock.utc(w.end), datetime.fromisoformat(w.window_key).date())
    fleet = gather(session, row, program, (w.start, w.end), now)
    book = fleet.book() if len(fleet) else None
    results = [(req, clear_fleet(session, fleet, req.requested_kw, program.price_cap,
                                 fleet.book(k) if fleet.varies else book) if book else None)
               for k, req in enumerate(program.requests(window))]
    return DryRun(program, w, fleet, book, results, row.state)


def _next_open_window(session: Session, row: store.FlexProgram, program: Program, now: int) -> store.FlexWindow | None:
    rows = {w.window_key: w for w in store.windows(session, row.id, since_end=now, limit=50)}
    for w in occurrences(program, now, 7 * 86_400):
        if w.end.timestamp() <= now:
            continue
        existing = rows.get(w.key)
        if existing is not None:
            if is_open(existing.state):
                return existing
            continue
        start = int(w.start.timestamp())
        if start < row.created_time:
            continue
        # not planned yet: an unsaved row, so the dry run writes nothing
        return store.FlexWindow(program_id=row.id, window_key=w.key, start=start, end=int(w.end.timestamp()),
                                publish_at=int(program.publish_at(w).timestamp()), state=WindowState.PLANNED.value,
                                revision=0)
    return None
