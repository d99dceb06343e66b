"""Measurement, verification and settlement of a program's windows, after they end.

For one window (`settle_window`), in one transaction:

1. What was asked: the window's latest clearing revision — per clearing interval the requested kW
   and, per device, its cleared reduction (setpoint) and the (node) price it saw.
2. What was delivered: the program's M&V interval Δ (programs.measurement); the meter readings a
   baseline needs (programs.baselines.needed_instants: the event, its pre-event window and the
   same wall-clock times on the look-back days) are loaded for every device in one pass
   (db.metering.load_fleet_readings), averaged into the Δ grid (grid_average; missing stays
   missing), and the fleet's baselines computed with the program's rule. Days with another
   published window of the program (event days) and the program's excluded days (outages) are
   not baseline days; its holidays count as weekend days.
3. Performance (programs.measurement.performance) and money (programs.settlement.settle): pay
   as clear per interval at the device's price, up to its setpoint (an envelope program: the
   export / import curtailed against the baseline, up to what its envelope required, at its
   fixed rate — programs.envelopes; the summary adds the kWh the sites spent outside it); an interval whose reduction
   cannot be measured is neither paid nor charged (and flagged); the program's revenue split.
4. Stored as a new *version* (db.settlement) with the digest of every input; when the current
   version has the same digest nothing is written (re-running gives identical numbers). A
   different digest after a settlement means late or changed readings: a new version with reason
   "late_readings" and what changed — never a silent change.

Numbers: kW are rounded to 1 mW (6 decimals) before they are priced, so a figure does not depend
on the order numpy summed in; money is exact (programs.settlement).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import numpy as np
from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from programs.baselines import fleet_baselines, grid_average, needed_instants
from programs.envelopes import curtailment, published_kw
from programs.measurement import MAX_RESETTLE_DAYS, performance
from programs.model import Program
from programs.publishing import WindowState, is_published
from programs.settlement import DeviceDelivery, IntervalDelivery, SettlementRule, exponent, settle, text
from server.db import flex as store
from server.db import metering
from server.db import settlement as records
from server.db.session import Database
from server.services import clock, outbox
from server.services.flex.publishing import program_of
from server.services.errors import Conflict, NotFound

log = logging.getLogger(__name__)

SETTLED_STATES = (WindowState.PUBLISHED.value,)  # for SQL; in Python, is_published
RECHECK_S = 900  # how often a settled window is looked at again for late readings
LOOKBACK_S = 35 * 86_400  # windows that ended longer ago than this are not settled by the job
_KW_DIGITS = 6




def _kw(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), _KW_DIGITS)


# ------------------------------------------------------------------------------------ which windows
def due(session: Session, now: int) -> list[tuple[int, str]]:
    """Published windows of active programs that ended at least the program's delay ago and have
    never been settled (ended within LOOKBACK_S)."""
    w, p, r = store.FlexWindow, store.FlexProgram, records.SettlementRun
    rows = session.execute(
        select(w.program_id, w.window_key, w.end, p.spec)
        .join(p, p.id == w.program_id)
        .where(w.state.in_(SETTLED_STATES), w.end <= now, w.end >= now - LOOKBACK_S,
               ~exists().where(r.window_id == w.id))
        .order_by(w.end)
    ).all()
    out = []
    for pid, key, end, spec in rows:
        program = Program.from_dict(json.loads(spec))
        if end + program.measurement.delay_s <= now:
            out.append((pid, key))
    return out


def recheck_due(session: Session, now: int, limit: int = 20) -> list[tuple[int, str]]:
    """Settled windows still inside their program's re-settlement period, not checked for
    RECHECK_S: they are measured again and re-settled only if their inputs changed. Windows
    that ended more than MAX_RESETTLE_DAYS ago are never looked at (so old ones cannot crowd out
    the recent ones)."""
    r, w, p = records.SettlementRun, store.FlexWindow, store.FlexProgram
    rows = session.execute(
        select(w.program_id, w.window_key, w.end, p.spec)
        .join(r, r.window_id == w.id).join(p, p.id == w.program_id)
        .where(r.superseded_time.is_(None), r.checked_time <= now - RECHECK_S,
               w.end >= now - MAX_RESETTLE_DAYS * 86_400)
        .order_by(r.checked_time)
    ).all()
    out = []
    for pid, key, end, spec in rows:
        if now <= end + Program.from_dict(json.loads(spec)).measurement.resettle_days * 86_400:
            out.append((pid, key))
            if len(out) >= limit:
                break
    return out


# ------------------------------------------------------------------------------------ measuring
def _spans(grid: np.ndarray, dt: int) -> list[tuple[int, int]]:
    """Contiguous runs of grid intervals as [t1, t2) spans."""
    if grid.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(grid) != dt) + 1
    return [(int(run[0]), int(run[-1]) + dt) for run in np.split(grid, breaks)]


def _event_days(session: Session, row: store.FlexProgram, program: Program, w: store.FlexWindow) -> set[date]:
    """Local dates of the program's other published windows in the look-back (event days)."""
    fw = store.FlexWindow
    lookback = program.measurement.baseline.lookback_days + 2
    ends = session.execute(
        select(fw.start).where(fw.program_id == row.id, fw.id != w.id, fw.state.in_(SETTLED_STATES),
                               fw.start >= w.start - lookback * 86_400, fw.start < w.start)
    ).scalars().all()
    zone = program.window.zone
    return {datetime.fromtimestamp(s, zone).date() for s in ends}


class Measured:
    """Everything one settlement computed, before it is stored."""

    def __init__(self, **kw: Any) -> None:
        self.__dict__.update(kw)


def measure(session: Session, row: store.FlexProgram, program: Program, w: store.FlexWindow) -> Measured:
    clearings = [c for c in store.clearings(session, w.id, w.revision)]
    if not clearings:
        raise Conflict(f"window {w.window_key} has no clearing to settle")
    sp = store.Setpoint
    rows = session.execute(
        select(sp.clearing_id, sp.device_id, sp.enrollment_id, sp.reduction_kw, sp.device_price)
        .where(sp.clearing_id.in_([c.id for c in clearings]))
    ).all()
    device_ids = sorted({r.device_id for r in rows})
    di = {d: i for i, d in enumerate(device_ids)}
    ci = {c.id: k for k, c in enumerate(clearings)}
    D, K = len(device_ids), len(clearings)
    set_kw, price = np.zeros((D, K)), np.full((D, K), np.nan)
    enrollment: dict[int, int | None] = {}
    for r in rows:
        i, k = di[r.device_id], ci[r.clearing_id]
        set_kw[i, k] = max(0.0, r.reduction_kw)
        price[i, k] = r.device_price
        enrollment[r.device_id] = r.enrollment_id if r.enrollment_id is not None else enrollment.get(r.device_id)
    for k, c in enumerate(clearings):  # a device cleared in some intervals only: the interval's price
        price[np.isnan(price[:, k]), k] = c.price
    customers = dict(session.execute(
        select(store.Enrollment.id, store.Enrollment.customer)
        .where(store.Enrollment.id.in_([e for e in enrollment.values() if e is not None]))
    ).all()) if enrollment else {}

    dt = program.mv_interval_s
    terms = program.measurement
    tz = program.window.tz
    n = (w.end - w.start) // dt
    starts = w.start + dt * np.arange(n, dtype=np.int64)
    which = np.searchsorted(np.array([c.start for c in clearings]), starts, side="right") - 1
    which = np.clip(which, 0, K - 1)
    S, P = set_kw[:, which], price[:, which]
    requested = np.array([clearings[k].requested_kw for k in which])

    excluded = _event_days(session, row, program, w) | set(terms.excluded_days)
    grid = needed_instants(dt, w.start, w.end, tz, terms.baseline)
    readings = metering.load_fleet_readings(session, device_ids, _spans(grid, dt))
    values = grid_average(readings.device_index, readings.starts, readings.durations, readings.watts, D, grid, dt)
    fb = fleet_baselines(grid.astype(float), values, dt, w.start, w.end, tz, terms.baseline, excluded=excluded,
                         holidays=terms.holidays)
    reduction = np.round(fb.reduction, _KW_DIGITS)
    excess = None
    if program.envelope is not None:  # export/import curtailed against the baseline, up to the envelope
        cut = curtailment(fb.adjusted, fb.actual, published_kw(program.envelope))
        reduction, S = np.round(cut.curtailed_kw, _KW_DIGITS), np.round(cut.required_kw, _KW_DIGITS)
        requested, excess = S.sum(axis=0), np.round(cut.excess_kw, _KW_DIGITS)
    perf = performance(reduction, S, requested)

    rule = SettlementRule.for_program(program, terms.split, terms.allow_net_negative)
    deliveries = []
    for i, dev in enumerate(device_ids):
        ivs = [IntervalDelivery(clock.utc(int(starts[j])), dt, float(reduction[i, j]), _kw(S[i, j]), float(P[i, j]))
               for j in range(n) if not math.isnan(reduction[i, j])]
        e = enrollment.get(dev)
        deliveries.append(DeviceDelivery(str(dev), ivs, prosumer=customers.get(e) if e is not None else None))
    result = settle(rule, deliveries)

    rounded = np.round(values, _KW_DIGITS)
    h = hashlib.sha256()
    for part in (grid, rounded, np.round(S, _KW_DIGITS), P, np.array(device_ids)):
        h.update(np.ascontiguousarray(part).tobytes())
    h.update(json.dumps([terms.to_dict(), sorted(d.isoformat() for d in excluded), w.revision,
                         program.incentive.to_dict(), sorted(customers.items())]).encode())
    return Measured(
        device_ids=device_ids, enrollment=enrollment, customers=customers, clearings=clearings, dt=dt,
        starts=starts, S=S, P=P, requested=requested, fb=fb, reduction=reduction, perf=perf, result=result,
        readings=readings, values=rounded, grid=grid, excluded=excluded, digest=h.hexdigest(), terms=terms,
        excess=excess,
    )


# ------------------------------------------------------------------------------------ settling
def settle_window(db: Database, program_id: int, window_key: str, now: int, *, reason: str = "scheduled"
                  ) -> dict[str, Any] | None:
    """Measure and settle one window (module docstring). Returns the outcome, or None when a
    settlement with the same inputs already stands (its check time is updated)."""
    with db.transaction() as s:
        w = store.window(s, program_id, window_key, for_update=True)
        row = s.get(store.FlexProgram, program_id)
        if w is None or row is None:
            raise NotFound(f"no window {window_key!r} in program {program_id}")
        if not is_published(w.state) or not w.revision:
            raise Conflict(f"window {window_key} was not published (state {w.state}): nothing to settle")
        if now < w.end:
            raise Conflict(f"window {window_key} ends at {clock.iso(w.end)}: it can be settled after that")
        program = program_of(row)
        m = measure(s, row, program, w)
        current = records.current_run(s, w.id)
        if current is not None and current.inputs_digest == m.digest:
            current.checked_time = now
            return None
        version = 1 if current is None else current.version + 1
        if current is not None and reason == "scheduled":
            reason = "late_readings"
        previous = json.loads(current.summary) if current is not None else None
        summary = _summary(row, program, w, m, version, reason, now, previous)
        if current is not None:
            current.superseded_time = now
            s.flush()
        run = records.SettlementRun(
            window_id=w.id, version=version, reason=reason, revision=w.revision, interval_s=m.dt,
            currency=program.currency, inputs_digest=m.digest, summary=json.dumps(summary),
            created_time=now, checked_time=now, superseded_time=None)
        s.add(run)
        s.flush()
        records.add_devices(s, _device_rows(run.id, m))
        outbox.record(s, outbox.SettlementStored(program_id, window_key, run.id, version, reason), now)
    return {"program_id": program_id, "window": window_key, "action": "settled", "version": version,
            "reason": reason, "summary": _headline(row, w, summary), "settlement": summary}


def _flows(flows: Any) -> list[dict[str, Any]]:
    return [{"party": f.party, "role": f.role, "amount_minor": f.amount_minor, "amount": str(f.amount),
             "currency": f.currency, "description": f.description} for f in flows]


def _summary(row: store.FlexProgram, program: Program, w: store.FlexWindow, m: Measured, version: int,
             reason: str, now: int, previous: dict[str, Any] | None) -> dict[str, Any]:
    perf, res = m.perf, m.result
    methods: dict[str, int] = {}
    for name in m.fb.method:
        methods[name] = methods.get(name, 0) + 1
    intervals = [{
        "start": clock.iso(int(m.starts[j])), "end": clock.iso(int(m.starts[j]) + m.dt),
        "requested_kw": _kw(perf.requested_kw[j]), "cleared_kw": _kw(perf.cleared_kw[j]),
        "delivered_kw": _kw(perf.delivered_kw[j]), "credited_kw": _kw(perf.credited_total_kw[j]),
        "measured_devices": int(perf.measured_devices[j]),
        "price": _kw(float(np.nanmean(m.P[:, j]))) if len(m.device_ids) else None,
    } for j in range(len(m.starts))]
    out = {
        "program_id": row.id, "program": row.name, "window": w.window_key, "start": clock.iso(w.start),
        "end": clock.iso(w.end), "version": version, "reason": reason, "settled_at": clock.iso(now),
        "revision": w.revision, "interval_s": m.dt, "currency": program.currency, "devices": len(m.device_ids),
        "methods": methods, "excluded_days": sorted(d.isoformat() for d in m.excluded),
        "intervals": intervals,
        "requested_kwh": _kw(float(perf.requested_kw.sum()) * m.dt / 3600),
        "cleared_kwh": _kw(float(perf.cleared_kw.sum()) * m.dt / 3600),
        "delivered_kwh": _kw(float(perf.delivered_kw.sum()) * m.dt / 3600),
        "credited_kwh": _kw(float(sum((d.energy_kwh for d in res.devices), 0))),
        "gross_minor": res.gross_minor, "tax_minor": res.tax_minor, "total_minor": res.total_minor,
        "flows": _flows(res.flows), "terms": m.terms.to_dict(), "inputs_digest": m.digest,
    }
    if m.excess is not None and program.envelope is not None:  # how far the sites stayed inside it
        env = published_kw(program.envelope)
        for j, iv in enumerate(intervals):
            iv["excess_kw"] = _kw(float(np.nansum(m.excess[:, j]))) if len(m.device_ids) else 0.0
        out["envelope"] = env.to_dict() | {
            "required_kwh": out["cleared_kwh"], "curtailed_kwh": out["credited_kwh"],
            "excess_kwh": _kw(float(np.nansum(m.excess)) * m.dt / 3600),
            "device_intervals_outside": int(np.sum(m.excess > 1e-3)),
            "device_intervals_measured": int(np.sum(~np.isnan(m.excess))),
        }
    if previous is not None:
        out["changes"] = {
            "previous_version": previous["version"],
            "delivered_kwh": [previous["delivered_kwh"], out["delivered_kwh"]],
            "gross_minor": [previous["gross_minor"], out["gross_minor"]],
            "total_minor": [previous["total_minor"], out["total_minor"]],
        }
    return out


def _headline(row: store.FlexProgram, w: store.FlexWindow, s: dict[str, Any]) -> str:
    money = f"{s['currency']} {Decimal(s['total_minor']).scaleb(-exponent(s['currency']))} paid in all"
    return (f"program {row.name!r} window {w.window_key} settled (v{s['version']}, {s['reason']}): "
            f"{s['devices']} devices, {s['delivered_kwh']} kWh delivered of {s['cleared_kwh']} cleared, {money}")


def _device_rows(run_id: int, m: Measured) -> list[tuple[Any, ...]]:
    fb, perf = m.fb, m.perf
    by_id = {int(d.device_id): d for d in m.result.devices}
    out = []
    for i, dev in enumerate(m.device_ids):
        ds = by_id[dev]
        lines_by_start: dict[str, list[Any]] = {}
        for ln in ds.lines:
            if ln.start is not None:
                lines_by_start.setdefault(ln.start.isoformat(), []).append(ln)
        intervals = []
        for j in range(len(m.starts)):
            key = clock.utc(int(m.starts[j])).isoformat()
            intervals.append({
                "start": clock.iso(int(m.starts[j])), "baseline_kw": _kw(fb.baseline[i, j]),
                "adjusted_kw": _kw(fb.adjusted[i, j]), "actual_kw": _kw(fb.actual[i, j]),
                "reduction_kw": _kw(m.reduction[i, j]), "setpoint_kw": _kw(m.S[i, j]), "price": _kw(m.P[i, j]),
                "lines": [{"kind": ln.kind, "energy_kwh": text(ln.energy_kwh), "price_per_kwh": text(ln.price_per_kwh),
                           "amount_minor": ln.amount_minor} for ln in lines_by_start.get(key, [])],
            })
        waived = [ln.amount_minor for ln in ds.lines if ln.kind == "waived"]
        up, meters = m.readings.sources.get(dev, (None, ()))
        row_digest = hashlib.sha256(np.ascontiguousarray(m.values[i]).tobytes()).hexdigest()
        detail = {
            "method": fb.method[i], "fallback_reason": fb.fallback_reason[i], "flags": list(fb.flags[i]),
            "days_used": [d.isoformat() for d in fb.days_used[i]], "eligible_days": int(fb.n_eligible[i]),
            "alpha": _kw(fb.alpha[i]), "delta_kw": _kw(fb.delta_kw[i]), "intervals": intervals,
            "waived_minor": waived[0] if waived else 0, "flows": _flows(ds.flows),
            "readings": {"usage_point_id": up, "meter_reading_ids": list(meters), "digest": row_digest,
                         "intervals_read": int(np.isfinite(m.values[i]).sum())},
        }
        p = perf.performance[i]
        out.append((run_id, dev, m.enrollment.get(dev), ds.prosumer[:100], fb.method[i], float(ds.energy_kwh),
                    None if math.isnan(p) else round(float(p), 6), ds.gross_minor, ds.total_minor, row_digest,
                    json.dumps(detail)))
    return out


# ------------------------------------------------------------------------------------ the job
def run_due(db: Database, now: int) -> list[dict[str, Any]]:
    """Settle what is due and re-check recent settlements (the scheduler calls this)."""
    with db.transaction() as s:
        todo = due(s, now) + recheck_due(s, now)
    out = []
    for pid, key in todo:
        try:
            outcome = settle_window(db, pid, key, now)
        except Exception:  # one window's failure must not hold up the others; retried next pass
            log.exception("settlement: window %s of program %s failed; it will be retried", key, pid)
            continue
        if outcome is not None:
            out.append(outcome)
    return out
