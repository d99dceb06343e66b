"""Settlement reports: what a window's settlement measured and paid, per window and per
enrollment, as JSON views, CSV and a PNG, and the meter readings behind any device's figures.

Read-only, from the stored runs (server.db.settlement): nothing here measures or prices again, so
a report shows exactly the figures that were settled, and a report of an old version shows that
version's figures. Versions: every settlement of a window is a version (1, 2, …); the *current*
one is the one no newer version superseded; `version=` picks any. What a report adds to the
stored figures is only presentation (LFDIs, local times, major-unit amounts) and, in a device's
trace, the raw readings read again from the metering tables with a check that they still give the
digest that was stored (`device_trace`).

Errors: NotFound (404) with a message naming what is missing — the program, the window, a
settlement of it, the version, the device in it, the enrollment.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
from collections.abc import Iterator, Sequence
from datetime import date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from programs.baselines import BaselineRule, grid_average, needed_instants
from programs.model import Program
from programs.settlement import exact, exponent
from server.db import flex as store
from server.db import metering
from server.db import settlement as records
from server.db.models import Device
from server.services import clock
from server.services.flex.stored import program_of, program_row
from server.services.errors import NotFound, check_text

__all__ = ["CSV_COLUMNS", "credited_kwh", "decimal_text", "device_trace", "enrollment_csv", "enrollment_report", "major",
           "program_zone", "window_csv", "window_plot_args", "window_png", "window_report"]

CSV_COLUMNS = ("window", "version", "device_id", "lfdi", "customer", "interval_start", "baseline_kw", "actual_kw",
               "reduction_kw", "setpoint_kw", "price_per_kwh", "credited_kwh", "amount_minor", "currency", "line")
MAX_LIMIT = 1000
_KW_DIGITS = 6  # as server.services.flex.settlement rounds the readings it digests




def _seconds(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp())


def major(amount_minor: int, currency: str) -> str:
    """Minor units as a major-unit text with the currency's decimals: 256 USD -> "2.56"."""
    try:
        exp = exponent(currency)
    except ValueError:
        exp = 2
    return str(Decimal(amount_minor).scaleb(-exp).quantize(Decimal(1).scaleb(-exp)))


# ------------------------------------------------------------------------------------ lookups
def _program(session: Session, program_id: int) -> tuple[store.FlexProgram, Program]:
    row = program_row(session, program_id)
    return row, program_of(row)


def program_zone(session: Session, program_id: int) -> Any:
    """The program's time zone (a ZoneInfo): reports show local times in it."""
    return _program(session, program_id)[1].window.zone


def _window(session: Session, program_id: int, window_key: str) -> store.FlexWindow:
    key = check_text(window_key, "window key", 32) or ""
    w = store.window(session, program_id, key)
    if w is None:
        raise NotFound(f"program {program_id} has no window {key!r} (see its windows)")
    return w


def _run(session: Session, w: store.FlexWindow, version: int | None) -> records.SettlementRun:
    if version is None:
        run = records.current_run(session, w.id)
        if run is None:
            raise NotFound(f"window {w.window_key} has not been settled (state {w.state}; a published window "
                           "is settled after it ends)")
        return run
    run = records.run(session, w.id, version)
    if run is None:
        known = [r.version for r in records.runs(session, w.id)]
        have = f"versions {', '.join(map(str, known))}" if known else "no settlement yet"
        raise NotFound(f"window {w.window_key} has no settlement version {version} ({have})")
    return run


def _versions(session: Session, w: store.FlexWindow) -> list[dict[str, Any]]:
    return [{"version": r.version, "reason": r.reason, "created": clock.iso(r.created_time),
             "superseded": clock.iso(r.superseded_time), "current": r.superseded_time is None,
             "revision": r.revision} for r in records.runs(session, w.id)]


def _lfdis(session: Session, device_ids: Sequence[int]) -> dict[int, str]:
    if not device_ids:
        return {}
    return dict(session.execute(select(Device.id, Device.lfdi).where(Device.id.in_(list(device_ids)))).all())


def _device_row(d: records.SettlementDevice, lfdi: str | None, detail: dict[str, Any]) -> dict[str, Any]:
    return {"device_id": d.device_id, "lfdi": lfdi, "customer": d.customer, "enrollment_id": d.enrollment_id,
            "method": d.method, "energy_kwh": d.energy_kwh, "performance": d.performance,
            "gross_minor": d.gross_minor, "total_minor": d.total_minor, "flags": detail.get("flags", []),
            "flows": detail.get("flows", [])}


def _local_span(program: Program, start: int, end: int) -> str:
    """"Mon 30 Nov 2026 16:00–18:00 EST" in the program's zone (the end's date if it differs)."""
    zone = program.window.zone
    a, b = clock.utc(start).astimezone(zone), clock.utc(end).astimezone(zone)
    tail = b.strftime("%H:%M") if a.date() == b.date() else b.strftime("%a %d %b %H:%M")
    zones = "/".join(dict.fromkeys(t.tzname() or "" for t in (a, b)))
    return f"{a.strftime('%a %d %b %Y %H:%M')}–{tail} {zones}".strip()


# ------------------------------------------------------------------------------------ a window
def window_report(session: Session, program_id: int, window_key: str, *, version: int | None = None,
                  start: int = 0, limit: int = 100) -> dict[str, Any]:
    """A window's settlement (the current version, or `version`): the run's stored summary
    (curve per interval, totals, flows, terms, changes from the previous version), a page of its
    devices (`start`, `limit` ≤ 1000; device id order) and every version of the window."""
    row, program = _program(session, program_id)
    w = _window(session, program_id, window_key)
    run = _run(session, w, version)
    limit = max(0, min(int(limit), MAX_LIMIT))
    sd = records.SettlementDevice
    total = session.scalar(select(func.count()).select_from(sd).where(sd.run_id == run.id)) or 0
    page = session.scalars(select(sd).where(sd.run_id == run.id).order_by(sd.device_id)
                           .offset(max(0, int(start))).limit(limit)).all()
    lfdis = _lfdis(session, [d.device_id for d in page])
    summary = json.loads(run.summary)
    return {
        "program_id": row.id, "program": row.name, "window": w.window_key, "version": run.version,
        "current": run.superseded_time is None, "reason": run.reason, "currency": run.currency,
        "local": _local_span(program, w.start, w.end), "summary": summary,
        "paid": major(summary["total_minor"], run.currency),
        "devices": {"all": total, "start": start, "limit": limit,
                    "rows": [_device_row(d, lfdis.get(d.device_id), json.loads(d.detail)) for d in page]},
        "versions": _versions(session, w),
    }


def decimal_text(x: Fraction) -> str:
    """An exact number as a plain decimal: exact when it terminates ("0.25"), else rounded to 9
    decimal places ("1/12" kWh, from a 5-minute interval, is "0.083333333")."""
    q = Decimal(x.numerator) / Decimal(x.denominator)
    if Fraction(q) != x:
        q = q.quantize(Decimal("1e-9"))
    out = format(q.normalize(), "f")
    return "0" if out in ("-0", "") else out


def credited_kwh(lines: Sequence[dict[str, Any]]) -> Fraction:
    """The credited energy of stored money lines (their "delivery" lines), exactly."""
    return sum((exact(ln["energy_kwh"]) for ln in lines if ln["kind"] == "delivery"), Fraction(0))


def _credited(lines: Sequence[dict[str, Any]]) -> str:
    return decimal_text(credited_kwh(lines))


def _csv_value(v: Any) -> Any:
    return "" if v is None else v


def _device_csv_rows(window_key: str, version: int, currency: str, d: records.SettlementDevice,
                     lfdi: str | None) -> Iterator[list[Any]]:
    detail = json.loads(d.detail)
    for iv in detail["intervals"]:
        lines = iv.get("lines", [])
        yield [window_key, version, d.device_id, lfdi or "", d.customer, iv["start"],
               *(_csv_value(iv[k]) for k in ("baseline_kw", "actual_kw", "reduction_kw", "setpoint_kw", "price")),
               _credited(lines), sum(ln["amount_minor"] for ln in lines), currency, "interval"]
    if detail.get("waived_minor"):
        yield [window_key, version, d.device_id, lfdi or "", d.customer, "", "", "", "", "", "", "0",
               detail["waived_minor"], currency, "waived"]


def _csv_text(rows: Iterator[list[Any]]) -> str:
    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\n")
    out.writerow(CSV_COLUMNS)
    out.writerows(rows)
    return buf.getvalue()


def window_csv(session: Session, program_id: int, window_key: str, *, version: int | None = None,
               device_id: int | None = None) -> str:
    """The window's settlement as CSV (CSV_COLUMNS): one row per device × M&V interval, in device
    and time order, with the stored kW, price, credited kWh and money of that interval (the sum
    of its lines: delivery and any under-delivery charge); a device whose charges were waived
    (net negative not allowed) gets one more row, line "waived", with the waived amount, so the
    amount_minor column sums to the run's gross. `device_id`: that device's rows only."""
    _program(session, program_id)
    w = _window(session, program_id, window_key)
    run = _run(session, w, version)
    devices = records.device_rows(session, run.id, device_ids=None if device_id is None else [device_id])
    if device_id is not None and not devices:
        raise NotFound(f"device {device_id} is not in settlement version {run.version} of window {w.window_key}")
    lfdis = _lfdis(session, [d.device_id for d in devices])
    return _csv_text(row for d in devices
                     for row in _device_csv_rows(w.window_key, run.version, run.currency, d, lfdis.get(d.device_id)))


# ------------------------------------------------------------------------------------ a device's trace
def _wall_span(zone: Any, day: date, day0: date, a: datetime, b: datetime) -> tuple[int, int]:
    """The instants on local date `day` at the wall-clock times local `a`…`b` have on `day0`
    (fold=0, as programs.baselines maps wall-clock times)."""
    def at(t: datetime) -> int:
        d = day + timedelta(days=(t.date() - day0).days)
        return int(datetime.combine(d, t.time()).replace(tzinfo=zone, fold=0).timestamp())
    return at(a), at(b)


def _grid_spans(grid: np.ndarray, dt: int) -> list[tuple[int, int]]:
    """Contiguous runs of grid intervals as [t1, t2) spans (as server.services.flex.settlement)."""
    if grid.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(grid) != dt) + 1
    return [(int(r[0]), int(r[-1]) + dt) for r in np.split(grid, breaks)]


def _reading_rows(session: Session, meter_ids: Sequence[int], t1: int, t2: int) -> list[dict[str, Any]]:
    """Raw reading rows of these meter readings overlapping [t1, t2), by start (then meter)."""
    if not meter_ids:
        return []
    r, mr = metering.Reading, metering.MeterReading
    rows = session.execute(
        select(r.meter_reading_id, r.start, r.duration, r.value, r.multiplier, r.quality_flags, mr.flow_direction)
        .join(mr, mr.id == r.meter_reading_id)
        .where(r.meter_reading_id.in_(list(meter_ids)), r.start >= t1 - metering.MAX_READING_S, r.start < t2)
        .order_by(r.start, r.meter_reading_id)
    ).all()
    out = []
    for x in rows:
        if x.start + x.duration <= t1:
            continue
        scale = 10.0 ** abs(x.multiplier)  # value × 10^multiplier W; reverse flow counts negative
        watts = (x.value * scale if x.multiplier >= 0 else x.value / scale)
        watts *= -1 if x.flow_direction == metering.FLOW_REVERSE else 1
        out.append({"meter_reading_id": x.meter_reading_id, "start": clock.iso(x.start), "duration": x.duration,
                    "value": x.value, "multiplier": x.multiplier, "watts": watts, "quality_flags": x.quality_flags})
    return out


def _current_digest(session: Session, device_id: int, rule: BaselineRule, dt: int, w: store.FlexWindow,
                    tz: str) -> tuple[str, tuple[int, ...]]:
    """The readings digest settlement would compute for this device now, and the meter readings
    it would read (server.services.flex.settlement: the same grid, loader, averaging and rounding)."""
    grid = needed_instants(dt, w.start, w.end, tz, rule)
    fleet = metering.load_fleet_readings(session, [device_id], _grid_spans(grid, dt))
    values = grid_average(fleet.device_index, fleet.starts, fleet.durations, fleet.watts, 1, grid, dt)
    rounded = np.round(values, _KW_DIGITS)
    digest = hashlib.sha256(np.ascontiguousarray(rounded[0]).tobytes()).hexdigest()
    return digest, fleet.sources.get(device_id, (None, ()))[1]


def device_trace(session: Session, program_id: int, window_key: str, device_id: int, *,
                 version: int | None = None) -> dict[str, Any]:
    """One device in a window's settlement, down to the meter readings.

    Returns its stored row and detail (per M&V interval: baseline, adjusted baseline, actual,
    reduction, setpoint, price and money lines; days used, method, flags, flows) and, read again
    from the metering tables (read-only), the raw reading rows of the meter readings it was
    settled from (detail.readings.meter_reading_ids) over: the event window, the same local
    wall-clock hours on each day its baseline used, and — when the baseline was adjusted or fell
    back to the pre-event window — the pre-event window (event day and days used alike). Each
    event interval also gets `readings_kw`: those raw rows averaged over it (time-weighted,
    kW, as settlement averaged them; None where they cover less than 90 %), so the stored
    `actual_kw` can be checked against the readings. A row's `watts` is value × 10^multiplier,
    negative for a reverse-flow meter reading (positive = drawn from the grid, as settlement
    counts it).

    `readings_changed` compares digests, not counts: the digest of this device's readings is
    computed again exactly as server.services.flex.settlement computes it (the same instants from the
    stored terms' baseline rule, the same loader and usage-point choice, the same averaging and
    rounding to 1 mW) and compared with the stored one; True means late or re-posted readings
    would now give other figures (the scheduler's re-check settles them as a new version while
    the window is inside its re-settlement period). The program's time zone is taken from its
    current definition (the stored terms do not hold it)."""
    row, program = _program(session, program_id)
    w = _window(session, program_id, window_key)
    run = _run(session, w, version)
    [d] = records.device_rows(session, run.id, device_ids=[device_id]) or [None]
    if d is None:
        raise NotFound(f"device {device_id} is not in settlement version {run.version} of window {w.window_key}")
    detail = json.loads(d.detail)
    summary = json.loads(run.summary)
    rule = BaselineRule.from_dict(summary["terms"]["baseline"])
    meters = detail["readings"]["meter_reading_ids"]
    zone = program.window.zone
    pre = rule.adjustment != "none" or d.method == "pre_event_window"
    first = w.start - round(rule.adjust_from_h * 3600) if pre else w.start
    a, b = clock.utc(first).astimezone(zone), clock.utc(w.end).astimezone(zone)
    day0 = clock.utc(w.start).astimezone(zone).date()

    spans = [{"what": "event" + (" (with the pre-event window)" if pre else ""), "date": day0.isoformat(),
              "start": clock.iso(first), "end": clock.iso(w.end), "readings": _reading_rows(session, meters, first, w.end)}]
    for day in detail.get("days_used", []):
        t1, t2 = _wall_span(zone, date.fromisoformat(day), day0, a, b)
        spans.append({"what": "baseline day", "date": day, "start": clock.iso(t1), "end": clock.iso(t2),
                      "readings": _reading_rows(session, meters, t1, t2)})

    dt = run.interval_s
    event_rows = spans[0]["readings"]
    if event_rows:
        st = np.array([_seconds(r["start"]) for r in event_rows], dtype=np.int64)
        du = np.array([r["duration"] for r in event_rows], dtype=np.int64)
        wt = np.array([r["watts"] for r in event_rows], dtype=np.float64)
        # meter readings of one usage point with the same start add up (settlement's rule)
        key = np.stack([st, du])
        uniq, inverse = np.unique(key, axis=1, return_inverse=True)
        wt = np.bincount(inverse.ravel(), weights=wt, minlength=uniq.shape[1])
        grid = np.array([_seconds(iv["start"]) for iv in detail["intervals"]], dtype=np.int64)
        avg = grid_average(np.zeros(uniq.shape[1], dtype=np.int64), uniq[0], uniq[1], wt, 1, grid, dt)[0]
    else:
        avg = np.full(len(detail["intervals"]), np.nan)
    for iv, kw in zip(detail["intervals"], avg):
        iv["readings_kw"] = None if math.isnan(kw) else round(float(kw), _KW_DIGITS)

    digest, now_meters = _current_digest(session, device_id, rule, dt, w, program.window.tz)
    lfdi = _lfdis(session, [device_id]).get(device_id)
    return {
        "program_id": row.id, "program": row.name, "window": w.window_key, "version": run.version,
        "current": run.superseded_time is None, "currency": run.currency, "interval_s": dt,
        "local": _local_span(program, w.start, w.end),
        "device": _device_row(d, lfdi, detail),
        "detail": detail,
        "spans": spans,
        "readings_changed": digest != d.readings_digest,
        "readings_check": {"stored_digest": d.readings_digest, "digest_now": digest,
                           "meter_reading_ids_now": list(now_meters), "compared": "digest"},
    }


# ------------------------------------------------------------------------------------ an enrollment
def _enrollment(session: Session, program_id: int, enrollment_id: int) -> store.Enrollment:
    e = session.get(store.Enrollment, enrollment_id)
    if e is None or e.program_id != program_id:
        raise NotFound(f"no enrollment {enrollment_id} in program {program_id}")
    return e


def _enrollment_rows(session: Session, program_id: int, e: store.Enrollment
                     ) -> list[tuple[records.SettlementRun, store.FlexWindow, records.SettlementDevice]]:
    """The device's rows in every current settlement run of the program's windows, window order."""
    r, sd, fw = records.SettlementRun, records.SettlementDevice, store.FlexWindow
    return [tuple(x) for x in session.execute(  # type: ignore[misc]
        select(r, fw, sd).join(fw, fw.id == r.window_id).join(sd, sd.run_id == r.id)
        .where(fw.program_id == program_id, r.superseded_time.is_(None), sd.device_id == e.device_id)
        .order_by(fw.start)
    ).all()]


def enrollment_report(session: Session, program_id: int, enrollment_id: int) -> dict[str, Any]:
    """Every current settlement of the program's windows that includes this enrollment's device:
    per window its version, credited energy, performance, money and flows; and totals per
    currency (normally one: the program's), flows added up per party and role."""
    row, program = _program(session, program_id)
    e = _enrollment(session, program_id, enrollment_id)
    windows, totals = [], {}
    for run, w, d in _enrollment_rows(session, program_id, e):
        detail = json.loads(d.detail)
        windows.append({
            "window": w.window_key, "start": clock.iso(w.start), "end": clock.iso(w.end),
            "local": _local_span(program, w.start, w.end), "version": run.version, "reason": run.reason,
            "settled_at": clock.iso(run.created_time), "currency": run.currency, "enrollment_id": d.enrollment_id,
            "method": d.method, "energy_kwh": d.energy_kwh, "performance": d.performance,
            "gross_minor": d.gross_minor, "total_minor": d.total_minor, "flags": detail.get("flags", []),
            "flows": detail.get("flows", []),
        })
        t = totals.setdefault(run.currency, {"currency": run.currency, "windows": 0, "energy_kwh": Decimal(0),
                                             "gross_minor": 0, "total_minor": 0, "flows": {}})
        t["windows"] += 1
        t["energy_kwh"] += Decimal(repr(d.energy_kwh))
        t["gross_minor"] += d.gross_minor
        t["total_minor"] += d.total_minor
        for f in detail.get("flows", []):
            k = (f["role"], f["party"])
            t["flows"][k] = t["flows"].get(k, 0) + f["amount_minor"]
    out_totals = []
    for cur, t in sorted(totals.items()):
        out_totals.append({
            "currency": cur, "windows": t["windows"], "energy_kwh": float(t["energy_kwh"]),
            "gross_minor": t["gross_minor"], "total_minor": t["total_minor"], "paid": major(t["total_minor"], cur),
            "flows": [{"role": role, "party": party, "amount_minor": a, "amount": major(a, cur), "currency": cur}
                      for (role, party), a in t["flows"].items()],
        })
    return {
        "program_id": row.id, "program": row.name, "enrollment_id": e.id, "device_id": e.device_id,
        "lfdi": _lfdis(session, [e.device_id]).get(e.device_id), "customer": e.customer, "state": e.state,
        "windows": windows, "totals": out_totals,
    }


def enrollment_csv(session: Session, program_id: int, enrollment_id: int) -> str:
    """The enrollment's device in every current settlement of the program, as CSV (CSV_COLUMNS):
    one row per window × M&V interval (plus a "waived" row where charges were waived)."""
    _program(session, program_id)
    e = _enrollment(session, program_id, enrollment_id)
    rows = _enrollment_rows(session, program_id, e)
    lfdi = _lfdis(session, [e.device_id]).get(e.device_id)
    return _csv_text(line for run, w, d in rows
                     for line in _device_csv_rows(w.window_key, run.version, run.currency, d, lfdi))


# ------------------------------------------------------------------------------------ the picture
def window_plot_args(session: Session, program_id: int, window_key: str, version: int | None = None
                     ) -> dict[str, Any]:
    """The arguments of plots.delivery_png for a window's settlement (read in the transaction;
    draw after it, so no database lock is held while matplotlib works)."""
    row, program = _program(session, program_id)
    w = _window(session, program_id, window_key)
    run = _run(session, w, version)
    s = json.loads(run.summary)
    ivs = s["intervals"]
    version_note = f"settlement v{run.version}" + ("" if run.version == 1 else f" ({run.reason.replace('_', ' ')})")
    version_note += "" if run.superseded_time is None else ", superseded"
    return {
        "times": [clock.utc(_seconds(iv["start"])) for iv in ivs],
        "requested_kw": [iv["requested_kw"] for iv in ivs],
        "cleared_kw": [iv["cleared_kw"] for iv in ivs],
        "delivered_kw": [iv["delivered_kw"] if iv["measured_devices"] else None for iv in ivs],
        "interval_s": run.interval_s,
        "title": f"{row.name} — {_local_span(program, w.start, w.end)}",
        "subtitle": f"{s['devices']} device{'s' if s['devices'] != 1 else ''} · {version_note}, "
                    f"settled {clock.utc(run.created_time).astimezone(program.window.zone).strftime('%d %b %Y %H:%M %Z')}",
        "requested_kwh": s["requested_kwh"] or 0.0, "delivered_kwh": s["delivered_kwh"] or 0.0,
        "credited_kwh": s["credited_kwh"] or 0.0, "paid": major(s["total_minor"], run.currency),
        "currency": run.currency, "tz": program.window.zone,
    }


def window_png(session: Session, program_id: int, window_key: str, version: int | None = None) -> bytes:
    """The PNG of a window's settlement: requested, cleared and delivered kW per interval with
    the headline (server.services.flex.plots.delivery_png)."""
    from server.services.flex import plots

    return plots.delivery_png(**window_plot_args(session, program_id, window_key, version))
