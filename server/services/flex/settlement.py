"""Measurement, verification and settlement of a program's windows, after they end.

For one window (`settle_window`):

1. What was asked: the window's latest clearing revision — per clearing interval the requested kW
   and, per device, its cleared reduction (setpoint) and the (node) price it saw.
2. What was delivered: the program's M&V interval Δ (programs.measurement); the meter readings a
   baseline needs (programs.baselines.needed_instants: the event, its pre-event window and the
   same wall-clock times on the look-back days) are loaded a chunk of devices at a time straight
   into numpy arrays (db.metering.fleet_reading_chunks: driver-level SQL, no Python object per
   reading), averaged into the Δ grid (grid_average; missing stays missing) and the chunk's
   baselines computed with the program's rule (`fleet_baselines_of`): memory is bounded by the
   chunk. Days with another published window of the program (event days) and the program's
   excluded days (outages) are not baseline days; its holidays count as weekend days.
3. Performance (programs.measurement.performance) and money (programs.settlement.settle): pay
   as clear per interval at the device's price, up to its setpoint (an envelope program: the
   export / import curtailed against the baseline, up to what its envelope required, at its
   fixed rate — programs.envelopes; the summary adds the kWh the sites spent outside it); an interval whose reduction
   cannot be measured is neither paid nor charged (and flagged); the program's revenue split.
4. Stored as a new *version* (db.settlement) with the digest of every input; when the current
   version has the same digest nothing is written (re-running gives identical numbers). A
   different digest after a settlement means late or changed readings: a new version with reason
   "late_readings" and what changed — never a silent change.

Transactions. Steps 1–3 run in a read-only transaction (`_snapshot`: one consistent view — an
SQLite WAL snapshot without the write lock, PostgreSQL REPEATABLE READ READ ONLY), the per-device
rows are built outside any transaction, and step 4 is one short write transaction that locks the
window row and re-checks what was measured: the same clearing revision, the same program terms
and the same current version. If any moved (a republish, a program update, another process's
settlement), nothing is stored and the window is measured again (`_ATTEMPTS`), so a settlement
racing a republish never stores a stale result and each (window, version) is written once, by
whichever process gets there first. On SQLite the write lock is held for that write only (about a
second at 10,000 devices), not for the measurement.

Re-checks. With every run the *readings fingerprint* is stored (`fingerprint`): what the
measurement's inputs were — the revision, the program's terms, the event days, the customers, the
meter readings chosen for each device and, per chunk of meter readings and time range, the count
and weighted sums of the readings (computed by the database: no reading leaves it). A re-check
whose fingerprint equals the stored one only moves `checked_time`; otherwise the window is
measured again and the digest decides, as above.

Numbers: kW are rounded to 1 mW (6 decimals) before they are priced, so a figure does not depend
on the order numpy summed in; money is exact (programs.settlement).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import date, datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any

import numpy as np
from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from programs.baselines import FleetBaseline, fleet_baselines, grid_average, needed_instants
from programs.envelopes import curtailment, published_kw
from programs.measurement import MAX_RESETTLE_DAYS, performance
from programs.model import Program
from programs.publishing import WindowState, is_published
from programs.settlement import DeviceDelivery, IntervalDelivery, SettlementRule, exact, exponent, settle, text
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


class _Asked:
    """What a window's clearing revision asked of its devices: setpoints and prices per device and
    clearing (D, K), each device's enrollment and its customer."""

    def __init__(self, session: Session, w: store.FlexWindow) -> None:
        clearings = list(store.clearings(session, w.id, w.revision))
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
        self.customers = dict(session.execute(
            select(store.Enrollment.id, store.Enrollment.customer)
            .where(store.Enrollment.id.in_([e for e in enrollment.values() if e is not None]))
        ).all()) if enrollment else {}
        self.clearings, self.device_ids, self.enrollment, self.set_kw, self.price = (
            clearings, device_ids, enrollment, set_kw, price)


def fleet_baselines_of(session: Session, device_ids: list[int], grid: np.ndarray, dt: int, start: int, end: int,
                       tz: str, rule: Any, *, excluded: Iterable[date] = (), holidays: Iterable[date] = (),
                       on_chunk: Callable[[np.ndarray, metering.FleetReadings], None] | None = None,
                       chunk: int = metering.FLEET_CHUNK) -> FleetBaseline:
    """The baselines of `device_ids` for the event [start, end) from their stored readings, a
    chunk of devices at a time (metering.fleet_reading_chunks → grid_average → fleet_baselines,
    joined by FleetBaseline.concat): only one chunk's readings are held at once. `on_chunk(values,
    readings)` sees each chunk's grid values (average kW, NaN = missing) and its readings."""
    excluded, holidays = tuple(excluded), tuple(holidays)
    times = grid.astype(float)
    parts = []
    for k, fr in metering.fleet_reading_chunks(session, device_ids, _spans(grid, dt), chunk=chunk):
        n = min(chunk, len(device_ids) - k)
        values = grid_average(fr.device_index, fr.starts, fr.durations, fr.watts, n, grid, dt)
        if on_chunk is not None:
            on_chunk(values, fr)
        parts.append(fleet_baselines(times, values, dt, start, end, tz, rule, excluded=excluded, holidays=holidays))
    if not parts:  # no devices: the empty fleet, as fleet_baselines gives it
        parts.append(fleet_baselines(times, np.empty((0, grid.size)), dt, start, end, tz, rule,
                                     excluded=excluded, holidays=holidays))
    return FleetBaseline.concat(parts)


def measure(session: Session, row: store.FlexProgram, program: Program, w: store.FlexWindow) -> Measured:
    """Measure and price a published window's clearing revision (module docstring, steps 1–3)
    in `session`'s transaction; nothing is written."""
    asked = _Asked(session, w)
    clearings, device_ids, enrollment, customers = asked.clearings, asked.device_ids, asked.enrollment, asked.customers
    K = len(clearings)

    dt = program.mv_interval_s
    terms = program.measurement
    tz = program.window.tz
    n = (w.end - w.start) // dt
    starts = w.start + dt * np.arange(n, dtype=np.int64)
    which = np.searchsorted(np.array([c.start for c in clearings]), starts, side="right") - 1
    which = np.clip(which, 0, K - 1)
    S, P = asked.set_kw[:, which], asked.price[:, which]
    requested = np.array([clearings[k].requested_kw for k in which])

    excluded = _event_days(session, row, program, w) | set(terms.excluded_days)
    grid = needed_instants(dt, w.start, w.end, tz, terms.baseline)
    h = hashlib.sha256(np.ascontiguousarray(grid).tobytes())
    row_digests: list[str] = []
    intervals_read: list[int] = []
    sources: dict[int, tuple[int, tuple[int, ...]]] = {}
    sums: list[tuple[int, ...]] = [(0,) * 7]

    def seen(values: np.ndarray, fr: metering.FleetReadings) -> None:  # the digests, chunk by chunk
        rounded = np.round(values, _KW_DIGITS)
        h.update(rounded.tobytes())  # rows in device order: the bytes of the whole (D, T) array
        row_digests.extend(hashlib.sha256(r.tobytes()).hexdigest() for r in rounded)
        intervals_read.extend(np.isfinite(rounded).sum(axis=1).tolist())
        sources.update(fr.sources)
        sums[0] = metering.add_sums(sums[0], fr.sums)

    fb = fleet_baselines_of(session, device_ids, grid, dt, w.start, w.end, tz, terms.baseline, excluded=excluded,
                            holidays=terms.holidays, on_chunk=seen)
    reduction = np.round(fb.reduction, _KW_DIGITS)
    excess = None
    if program.envelope is not None:  # export/import curtailed against the baseline, up to the envelope
        cut = curtailment(fb.adjusted, fb.actual, published_kw(program.envelope))
        reduction, S = np.round(cut.curtailed_kw, _KW_DIGITS), np.round(cut.required_kw, _KW_DIGITS)
        requested, excess = S.sum(axis=0), np.round(cut.excess_kw, _KW_DIGITS)
    perf = performance(reduction, S, requested)

    rule = SettlementRule.for_program(program, terms.split, terms.allow_net_negative)
    result = settle(rule, _deliveries(device_ids, enrollment, customers, starts, dt, reduction, S, P))

    for part in (np.round(S, _KW_DIGITS), P, np.array(device_ids)):
        h.update(np.ascontiguousarray(part).tobytes())
    h.update(json.dumps([terms.to_dict(), sorted(d.isoformat() for d in excluded), w.revision,
                         program.incentive.to_dict(), sorted(customers.items())]).encode())
    return Measured(
        device_ids=device_ids, enrollment=enrollment, customers=customers, clearings=clearings, dt=dt,
        starts=starts, S=S, P=P, requested=requested, fb=fb, reduction=reduction, perf=perf, result=result,
        sources=sources, row_digests=row_digests, intervals_read=intervals_read, grid=grid, excluded=excluded,
        digest=h.hexdigest(), terms=terms, excess=excess, revision=w.revision,
        fingerprint=_fingerprint(row, w, asked, excluded, sources, sums[0]),
    )


class _Exact:
    """Floats as programs.settlement reads them (exact(): the shortest repr), faster: a kW rounded
    to 1 mW is k/10^6 exactly (the nearest double to k/10^6 has that shortest repr), and the few
    distinct prices and setpoints are converted once."""

    def __init__(self) -> None:
        self._seen: dict[float, Fraction] = {}

    def kw(self, x: float) -> Fraction:
        if abs(x) < 1e9:
            return Fraction(round(x * 1e6), 1_000_000)
        return exact(x)

    def once(self, x: float) -> Fraction:
        got = self._seen.get(x)
        if got is None:
            got = self._seen[x] = exact(x)
        return got


def _deliveries(device_ids: list[int], enrollment: dict[int, int | None], customers: dict[int, str],
                starts: np.ndarray, dt: int, reduction: np.ndarray, S: np.ndarray, P: np.ndarray
                ) -> list[DeviceDelivery]:
    """Each device's measured intervals for programs.settlement.settle (exact numbers: _Exact)."""
    ex = _Exact()
    times = [clock.utc(int(t)) for t in starts]
    red, sp, pr = reduction.tolist(), S.tolist(), P.tolist()
    out = []
    for i, dev in enumerate(device_ids):
        r_i, s_i, p_i = red[i], sp[i], pr[i]
        ivs = []
        for j, r in enumerate(r_i):
            if r != r:  # NaN: not measured
                continue
            s = _kw(s_i[j])
            ivs.append(IntervalDelivery(times[j], dt, ex.kw(r), None if s is None else ex.once(s), ex.once(p_i[j])))
        e = enrollment.get(dev)
        out.append(DeviceDelivery(str(dev), ivs, prosumer=customers.get(e) if e is not None else None))
    return out


def _fingerprint(row: store.FlexProgram, w: store.FlexWindow, asked: _Asked, excluded: set[date],
                 sources: dict[int, tuple[int, tuple[int, ...]]], sums: tuple[int, ...]) -> str:
    body = json.dumps({"revision": w.revision, "spec": json.loads(row.spec), "excluded": sorted(
        d.isoformat() for d in excluded), "customers": sorted(asked.customers.items()),
        "enrollment": sorted(asked.enrollment.items()), "meters": sorted(sources.items()), "readings": list(sums)},
        sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()


def fingerprint(session: Session, row: store.FlexProgram, program: Program, w: store.FlexWindow) -> str:
    """The readings fingerprint of a window (module docstring, "Re-checks") as the database adds
    the readings up — the same `measure` computes from the readings it loaded. Cheap next to it."""
    asked = _Asked(session, w)
    terms = program.measurement
    excluded = _event_days(session, row, program, w) | set(terms.excluded_days)
    grid = needed_instants(program.mv_interval_s, w.start, w.end, program.window.tz, terms.baseline)
    sources: dict[int, tuple[int, tuple[int, ...]]] = {}
    sums: tuple[int, ...] = (0,) * 7
    for k in range(0, len(asked.device_ids), metering.FLEET_CHUNK):
        chosen = metering.fleet_meters(session, asked.device_ids[k:k + metering.FLEET_CHUNK])
        sources.update(chosen.sources)
        sums = metering.add_sums(sums, metering.readings_fingerprint(session, chosen.ids,
                                                                      _spans(grid, program.mv_interval_s)))
    return _fingerprint(row, w, asked, excluded, sources, sums)


# ------------------------------------------------------------------------------------ settling
_ATTEMPTS = 3  # measurements of one window before giving up (each found the window changed meanwhile)


@contextmanager
def _snapshot(db: Database) -> Iterator[Session]:
    """A read-only transaction with one consistent view of the database: on SQLite a deferred
    BEGIN (a WAL snapshot; writers go on), on PostgreSQL REPEATABLE READ READ ONLY."""
    with db.engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
            conn.begin()
        else:
            conn.exec_driver_sql("BEGIN")
        session = Session(bind=conn, expire_on_commit=False)
        try:
            yield session
        finally:
            session.close()
            conn.rollback()


class _Seen:
    """What a measurement was made against: the write re-checks it."""

    def __init__(self, w: store.FlexWindow, row: store.FlexProgram, current: records.SettlementRun | None) -> None:
        self.revision, self.spec = w.revision, row.spec
        self.current_id = current.id if current is not None else None
        self.fingerprint = current.readings_fingerprint if current is not None else None


def settle_window(db: Database, program_id: int, window_key: str, now: int, *, reason: str = "scheduled"
                  ) -> dict[str, Any] | None:
    """Measure and settle one window (module docstring). Returns the outcome, or None when a
    settlement with the same inputs already stands (its check time is updated)."""
    for _ in range(_ATTEMPTS):
        with _snapshot(db) as s:
            w = store.window(s, program_id, window_key)
            row = s.get(store.FlexProgram, program_id)
            if w is None or row is None:
                raise NotFound(f"no window {window_key!r} in program {program_id}")
            if not is_published(w.state) or not w.revision:
                raise Conflict(f"window {window_key} was not published (state {w.state}): nothing to settle")
            if now < w.end:
                raise Conflict(f"window {window_key} ends at {clock.iso(w.end)}: it can be settled after that")
            program = program_of(row)
            seen = _Seen(w, row, records.current_run(s, w.id))
            fp = None
            if seen.fingerprint is not None:  # a re-check: measure only if what it read moved
                fp = fingerprint(s, row, program, w)
            m = measure(s, row, program, w) if fp is None or fp != seen.fingerprint else None
        if m is None:
            if _checked(db, program_id, window_key, seen, now, None, fp):
                return None
            continue
        rows = _device_rows(m)  # outside any transaction: most of the writing's work
        out = _store(db, program_id, window_key, seen, program, m, rows, now, reason)
        if out is not _STALE:
            return out
        log.info("settlement: window %s of program %s changed while it was measured; measuring again",
                 window_key, program_id)
    raise Conflict(f"window {window_key} kept changing while it was settled ({_ATTEMPTS} attempts); "
                   "it will be retried")


_STALE = object()


def _locked(s: Session, program_id: int, window_key: str, seen: _Seen
            ) -> tuple[store.FlexWindow, store.FlexProgram, records.SettlementRun | None] | None:
    """In a write transaction: the window (locked), its program and current run — None when the
    window, its revision, its program's terms or its current version are no longer what was measured."""
    w = store.window(s, program_id, window_key, for_update=True)
    row = s.get(store.FlexProgram, program_id)
    if w is None or row is None or not is_published(w.state) or w.revision != seen.revision or row.spec != seen.spec:
        return None
    return w, row, records.current_run(s, w.id)


def _checked(db: Database, program_id: int, window_key: str, seen: _Seen, now: int, digest: str | None,
             fp: str | None) -> bool:
    """Nothing changed: move the current run's check time (and keep the fingerprint it was found
    with). False when the window moved meanwhile (measure again)."""
    with db.transaction() as s:
        got = _locked(s, program_id, window_key, seen)
        if got is None or got[2] is None:
            return False
        current = got[2]
        if current.id != seen.current_id and (digest is None or current.inputs_digest != digest):
            return False
        current.checked_time = max(current.checked_time, now)
        current.readings_fingerprint = fp
    return True


def _store(db: Database, program_id: int, window_key: str, seen: _Seen, program: Program, m: Measured,
           rows: list[tuple[Any, ...]], now: int, reason: str) -> dict[str, Any] | None | object:
    """The short write (module docstring, "Transactions"): a new version, or None when the current
    one has the same digest, or _STALE when the window moved since it was measured."""
    with db.transaction() as s:
        got = _locked(s, program_id, window_key, seen)
        if got is None:
            return _STALE
        w, row, current = got
        if current is not None and current.inputs_digest == m.digest:  # the same result stands
            current.checked_time = max(current.checked_time, now)
            current.readings_fingerprint = m.fingerprint
            return None
        if (current.id if current is not None else None) != seen.current_id:
            return _STALE  # another version was stored meanwhile: measure against it
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
            currency=program.currency, inputs_digest=m.digest, readings_fingerprint=m.fingerprint,
            summary=json.dumps(summary), created_time=now, checked_time=now, superseded_time=None)
        s.add(run)
        s.flush()
        records.add_devices(s, [(run.id, *r) for r in rows])
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


def _device_rows(m: Measured) -> list[tuple[Any, ...]]:
    """One settlement_devices row per device, without its run id (DEVICE_COLUMNS[1:]): the
    figures and the per-device JSON detail. Built outside any transaction; every number is what
    _kw gives (Python's round of the float), the interval times are made once per window."""
    fb, perf = m.fb, m.perf
    by_id = {int(d.device_id): d for d in m.result.devices}
    iso = [clock.iso(int(t)) for t in m.starts]
    at = {clock.utc(int(t)): j for j, t in enumerate(m.starts)}
    texts: dict[Any, str] = {}

    def exact_text(x: Any) -> str:
        got = texts.get(x)
        if got is None:
            got = texts[x] = text(x)
        return got

    columns = [a.tolist() for a in (fb.baseline, fb.adjusted, fb.actual, m.reduction, m.S, m.P)]
    alpha, delta, n_el, performance_ = fb.alpha.tolist(), fb.delta_kw.tolist(), fb.n_eligible.tolist(), \
        perf.performance.tolist()
    out = []
    for i, dev in enumerate(m.device_ids):
        ds = by_id[dev]
        lines: list[list[dict[str, Any]]] = [[] for _ in iso]
        waived = 0
        found_waived = False
        for ln in ds.lines:
            k = at.get(ln.start) if ln.start is not None else None
            if k is not None:
                lines[k].append({"kind": ln.kind, "energy_kwh": text(ln.energy_kwh),
                                 "price_per_kwh": exact_text(ln.price_per_kwh), "amount_minor": ln.amount_minor})
            if ln.kind == "waived" and not found_waived:
                waived, found_waived = ln.amount_minor, True
        bl, adj, act, red, sp, pr = (c[i] for c in columns)
        intervals = [{
            "start": iso[j], "baseline_kw": _kw(bl[j]), "adjusted_kw": _kw(adj[j]), "actual_kw": _kw(act[j]),
            "reduction_kw": _kw(red[j]), "setpoint_kw": _kw(sp[j]), "price": _kw(pr[j]), "lines": lines[j],
        } for j in range(len(iso))]
        up, meters = m.sources.get(dev, (None, ()))
        row_digest = m.row_digests[i]
        detail = {
            "method": fb.method[i], "fallback_reason": fb.fallback_reason[i], "flags": list(fb.flags[i]),
            "days_used": [d.isoformat() for d in fb.days_used[i]], "eligible_days": int(n_el[i]),
            "alpha": _kw(alpha[i]), "delta_kw": _kw(delta[i]), "intervals": intervals,
            "waived_minor": waived, "flows": _flows(ds.flows),
            "readings": {"usage_point_id": up, "meter_reading_ids": list(meters), "digest": row_digest,
                         "intervals_read": m.intervals_read[i]},
        }
        p = performance_[i]
        out.append((dev, m.enrollment.get(dev), ds.prosumer[:100], fb.method[i], float(ds.energy_kwh),
                    None if math.isnan(p) else round(p, 6), ds.gross_minor, ds.total_minor, row_digest,
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
