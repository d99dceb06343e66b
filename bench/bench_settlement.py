#!/usr/bin/env python
"""Measurement & settlement benchmark: `settlement.settle_window` for N enrolled devices × one
window, and the fleet baseline computation from stored readings for M devices — on SQLite and/or
PostgreSQL, in one process (no HTTP, no TLS).

The issue's sizes: settlement of 10,000 devices × one window, baselines of 100,000 devices
(`--full`). The defaults are a smoke run (300 / 1,000 devices, a minute or so).

What one run does per database (every loop is bounded; nothing touches the network):

  1. A fresh database migrated by the project's own migrations (server.bootstrap.prepare): SQLite
     (WAL) in a temporary home, or a private PostgreSQL database created on --postgres (127.0.0.1
     only) and dropped at the end (bench/benchlib.py).
  2. M EndDevices (bulk, in `devices` terms as bench_publish.py writes them); the first N get the DER
     documents and offers of bench_publish.py's fleet (50 % batteries, 30 % EV chargers, 20 %
     loads) and are enrolled in one program: the first 3 through server.services.flex.programs.enroll, the
     rest bulk (a bulk row is compared with a service row).
  3. The program: every day 16:00–18:00 America/New_York, clearing interval 1 h (2 clearings),
     pay-as-clear, price cap 0.50, revenue split as tests/services/test_settlement.py; measurement:
     M&V interval 15 min, baseline 10-in-10 over a 14-day look-back, day_types "any" (every day is a
     candidate: the window runs every day), multiplicative day-of adjustment capped at ±20 % over
     [start − 4 h, start − 1 h) (--adjustment). The event: Wednesday 2026-11-18 (EST; no DST change
     in the look-back), published by server.services.flex.publishing.run_window at start − 1 h; no other
     window of the program was ever published (the program was created 2 h before the event), so no
     look-back day is an event day.
  4. Meter data for all M devices, one usage point (premises aggregation point) with one real-power
     meter reading (uom 38 W, dataQualifier 2 average, flowDirection 1 forward, 15-min readings) —
     ONLY the hours a baseline reads: on the event day and on each of the 14 look-back days the
     window (8 readings) and, with an adjustment, the pre-event hours 12:00–15:00 (12 readings);
     the event day's pre-event hours are read in any case (the flat fallback). That is 300 readings
     per device with the adjustment (30 M for 100,000 devices), 132 without. The set of instants is
     checked equal to programs.baselines.needed_instants. The first 3 devices mirror theirs through
     server.services.sep2.mup.post_mirror_usage_point; the others' usage point and meter reading rows are
     copies of those (other device, same columns) and their readings are bulk-inserted (sqlite3
     executemany / binary COPY) with their reading_days rows; a bulk device's load_series is checked
     against the values generated. Then ANALYZE.
     Values: device load L (0.6–3.6 kW, a shape over the day, whole tens of W); look-back day k
     (1 … 10) is L × 1.1 or × 0.9 alternately (mean exactly L), days 11–14 other factors; the event
     day's pre-event hours are L; during the event L − delivered, delivered = the device's cleared
     reduction × 1, 0.5, 0 or 1.5 (60/20/10/10 %). Devices not enrolled deliver nothing. So a
     complete history gives baseline = L and a reduction known exactly. A few devices are made
     imperfect on purpose (seeded): 3 % miss one look-back day (10 days from 11), 1 % have 6 days
     (x_of_y_short), 1 % have 3 days (flat pre-event fallback), 0.5 % sent nothing for the event
     (actual missing: not paid), 0.5 % have no meter (no baseline).
  5. (a) Settlement, --runs times: settle_window(db, program, window, end + 15 min) end to end (one
     transaction: setpoints, load the fleet's readings, grid_average, fleet_baselines, performance,
     settle, digest, the run row, one settlement_devices row per device, commit), with a breakdown by
     thin timing wrappers on the settlement module's names (inclusive wall times); then the same call
     again, which finds the same digest and writes nothing (the 15-min re-check of late readings).
     The settlement rows are deleted between runs (not timed). Peak memory = the process's peak RSS
     during the call (VmHWM reset through /proc/self/clear_refs) minus its RSS before. During both
     calls a WriteProbe thread upserts one reading every 0.5 s in a transaction of its own (as a
     device's POST would, at an instant no baseline reads): how long other writers wait, and whether
     they fail.
     (b) Baselines, --runs times: for all M devices, db.metering.load_fleet_readings (the spans
     settlement asks for) → programs.baselines.grid_average → fleet_baselines; no settlement.
     Every run's numbers are checked: each device's method, and the reduction of every device with a
     complete (or 6-day) history equals the delivered kW generated (to 1e-6 kW).
  6. --profile: one more settle_window, and load_fleet_readings of up to 20,000 devices, under
     cProfile (figures not comparable), top functions stored. --diagnose: the pieces of
     load_fleet_readings for all M devices (the usage point queries; the readings queries through
     the session, and the same SQL through the driver), and `prototype_load_fleet_readings` — a
     bench-only prototype of the proposed fix (docs/benchmarks.md) — checked equal to
     load_fleet_readings on up to 5,000 devices, then timed on all M (--baseline-runs times).
  7. Prints tables and writes bench/results/settlement-<UTC timestamp>.json (after each database).

Examples:
    .venv/bin/python bench/bench_settlement.py                                   # smoke, SQLite
    .venv/bin/python bench/bench_settlement.py --full --db both --runs 3
    .venv/bin/python bench/bench_settlement.py --full --db postgresql --postgres postgresql://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import cProfile
import ctypes
import datetime as dt
import gc
import io
import json
import os
import pstats
import random
import re
import resource
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator
from zoneinfo import ZoneInfo

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchlib import PgDatabase, TimedDatabase, Timers, clean_up, machine_info  # noqa: E402
from bench_publish import ALL_DAYS, Fleet, der_rows  # noqa: E402  (the publish bench's fleet and DER rows)

DAY = 86_400
CHUNK = 10_000
TZ = "America/New_York"
ZONE = ZoneInfo(TZ)
EVENT_DAY = dt.date(2026, 11, 18)  # a Wednesday; EST from 2026-11-01 (no DST change in the look-back)
START = int(dt.datetime.combine(EVENT_DAY, dt.time(16, 0), ZONE).timestamp())
END = START + 7200
PUBLISH_AT = START - 3600
CREATED = START - 7200
SETTLE_AT = END + 900
KEY = EVENT_DAY.isoformat()
MV_S = 900
LOOKBACK = 14
# days back 1 … 10 alternate 1.1 / 0.9 (their mean is exactly 1); 11 … 14 differ
DAY_FACTOR_TENTHS = [10, 11, 9, 11, 9, 11, 9, 11, 9, 11, 9, 10, 12, 8, 10]  # index = days back (0 = event day)
SPLIT = {"tax_rate": "1/9", "tax_mode": "inclusive", "grid_fee_rate": "0.2", "aggregator_fee_rate": "0.1"}
RT_W = dict(accumulation_behaviour=12, commodity=1, data_qualifier=2, flow_direction=1, interval_length=MV_S,
            kind=37, power_of_ten_multiplier=0, uom=38)
UP_MRID = "0123456789ABCDEF0123456789ABCDEF"
SERVICE_METERS = 3
# imperfect histories (fleet index >= SERVICE_METERS): class -> share
CLASSES = (("gap", 0.03), ("short", 0.01), ("new", 0.01), ("silent", 0.005), ("nometer", 0.005))
EXPECTED_METHOD = {"clean": "x_of_y", "gap": "x_of_y", "short": "x_of_y_short", "new": "pre_event_window",
                   "silent": "x_of_y", "nometer": "none"}
PERF_CLASSES = ((1.0, 0.6), (0.5, 0.2), (0.0, 0.1), (1.5, 0.1))
PROFILE_LOAD_DEVICES = 20_000  # --profile: load_fleet_readings of at most this many devices under cProfile
SETTLEMENT_PHASES = ("fingerprint", "fingerprint/readings_fingerprint", "measure", "_event_days", "clearings", "needed_instants",
                     "fleet_meters", "_fetch", "_to_fleet", "grid_average", "fleet_baselines", "performance",
                     "_deliveries", "settle", "_summary", "_device_rows", "_store", "add_devices", "commit")


def _say(msg: str) -> None:
    print(msg, flush=True)


# ------------------------------------------------------------------------------ memory and timing


def _status_kib(field: str) -> int:
    m = re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M)
    return int(m.group(1)) if m else 0


try:
    _malloc_trim: Callable[[int], int] | None = ctypes.CDLL("libc.so.6").malloc_trim
except OSError:  # not glibc
    _malloc_trim = None


@contextmanager
def peak_memory(out: dict[str, Any]) -> Iterator[None]:
    """out['peak_mib']: the peak RSS during the block minus the RSS before it (freed memory is
    returned to the OS first, and the kernel's high-water mark reset, so the figure is what the
    block itself needed)."""
    gc.collect()
    if _malloc_trim is not None:
        _malloc_trim(0)
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        resettable = True
    except OSError:
        resettable = False
    before = _status_kib("VmRSS")
    try:
        yield
    finally:
        peak = _status_kib("VmHWM") if resettable else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        out["rss_before_mib"] = round(before / 1024, 1)
        out["peak_mib"] = round(max(0, peak - before) / 1024, 1)
        out["peak_exact"] = resettable


class WriteProbe(threading.Thread):
    """While a settlement runs: every 0.5 s one small write in a transaction of its own — a reading
    upserted by server.db.metering.store_readings, as a device's POST stores it (a meter reading and
    an instant no baseline reads, so it changes nothing measured) — timed, failures kept: how long
    other writers wait for the settlement's transaction."""

    def __init__(self, db: Any, meter_reading_id: int, at: int):
        super().__init__(name="write-probe", daemon=True)
        self.db, self.mr, self.at = db, meter_reading_id, at
        self.done = threading.Event()
        self.waits: list[float] = []
        self.errors: list[str] = []

    def run(self) -> None:
        from server.db import metering

        while not self.done.is_set():
            t0 = time.perf_counter()
            try:
                with self.db.transaction() as s:
                    metering.store_readings(s, [metering.NewReading(self.mr, self.at, MV_S, 1000, 0, 1)])
                self.waits.append(time.perf_counter() - t0)
            except Exception as exc:  # noqa: BLE001 - what a writer would see
                self.errors.append(f"{type(exc).__name__} after {time.perf_counter() - t0:.1f} s: "
                                   f"{str(exc).splitlines()[0][:80]}")
            self.done.wait(0.5)

    def stop(self) -> dict[str, Any]:
        self.done.set()
        self.join(60)
        w = sorted(self.waits)
        return {"writes": len(w), "failed": len(self.errors), "errors": self.errors[:3],
                "max_wait_s": round(w[-1], 3) if w else None,
                "median_wait_s": round(statistics.median(w), 4) if w else None}


def _median(xs: list[float]) -> float:
    return round(statistics.median(xs), 3) if xs else float("nan")


# ------------------------------------------------------------------------------ bulk writes


def _pg_copy_binary(cur: Any, table: str, columns: list[tuple[str, str, np.ndarray]]) -> None:
    """COPY … FROM STDIN (FORMAT BINARY) of whole numpy columns: (name, '>i8' | '>i4' | '>i2', values)."""
    n = len(columns[0][2])
    fields: list[tuple[str, str]] = [("n", ">i2")]
    for name, code, _ in columns:
        fields += [(name + "_len", ">i4"), (name, code)]
    rec = np.empty(n, dtype=fields)
    rec["n"] = len(columns)
    for name, code, values in columns:
        rec[name + "_len"] = np.dtype(code).itemsize
        rec[name] = values
    header = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
    cols = ", ".join(c[0] for c in columns)
    with cur.copy(f"COPY {table} ({cols}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.write(header)
        view = memoryview(rec.tobytes())
        step = 8 << 20
        for k in range(0, len(view), step):
            copy.write(view[k:k + step])
        copy.write((-1).to_bytes(2, "big", signed=True))


# ------------------------------------------------------------------------------ the loader before (#17)


def legacy_load_fleet_readings(session: Any, device_ids: list[int], spans: list[tuple[int, int]]) -> Any:
    """server.db.metering.load_fleet_readings as it was before issue #17 (bench only, for the
    before/after comparison in one run): SQLAlchemy statements with expanding IN lists of 900,
    every reading a Row, one float64 (readings × 6) array, two np.unique(axis=1)."""
    from sqlalchemy import bindparam, or_, select

    from server.db import metering as mt

    up, mr, r = mt.UsagePoint.__table__, mt.MeterReading.__table__, mt.Reading.__table__
    power = (select(mr.c.id, up.c.device_id, mr.c.usage_point_id, mr.c.flow_direction, up.c.role_flags)
             .join(up, up.c.id == mr.c.usage_point_id)
             .where(up.c.device_id.in_(bindparam("device_ids", expanding=True)), mr.c.uom == mt.UOM_W,
                    or_(mr.c.phase.is_(None), mr.c.phase == 0),
                    or_(mr.c.data_qualifier.is_(None), mr.c.data_qualifier.in_(mt._POWER_QUALIFIERS)))
             .order_by(up.c.device_id, up.c.id, mr.c.id))
    series = (select(r.c.meter_reading_id, r.c.start, r.c.duration, r.c.value, r.c.multiplier)
              .where(r.c.meter_reading_id.in_(bindparam("ids", expanding=True)), r.c.start >= bindparam("t1"),
                     r.c.start < bindparam("t2")))
    chunk = 900
    index = {d: i for i, d in enumerate(device_ids)}
    chosen: dict[int, tuple[int, int]] = {}
    sources: dict[int, tuple[int, tuple[int, ...]]] = {}
    ids = list(device_ids)
    for k in range(0, len(ids), chunk):
        by_device: dict[int, list[Any]] = {}
        for row in session.execute(power, {"device_ids": ids[k:k + chunk]}).all():
            by_device.setdefault(row.device_id, []).append(row)
        for dev, cands in by_device.items():
            premises = [c for c in cands if c.role_flags & mt.ROLE_PREMISES_AGGREGATION_POINT]
            u = (premises or cands)[0].usage_point_id
            mine = [c for c in cands if c.usage_point_id == u]
            sources[dev] = (u, tuple(c.id for c in mine))
            for c in mine:
                chosen[c.id] = (index[dev], -1 if c.flow_direction == mt.FLOW_REVERSE else 1)
    parts: list[tuple[Any, ...]] = []
    mr_ids = sorted(chosen)
    for t1, t2 in spans:
        for k in range(0, len(mr_ids), chunk):
            parts.extend(session.execute(series, {"ids": mr_ids[k:k + chunk], "t1": t1 - mt.MAX_READING_S,
                                                  "t2": t2}).all())
    if not parts:
        empty_i, empty_f = np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64)
        return mt.FleetReadings(empty_i, empty_i, empty_i, empty_f, sources)
    arr = np.array([(chosen[p[0]][0], p[1], p[2], p[3], p[4], chosen[p[0]][1]) for p in parts], dtype=np.float64)
    dev, start, dur = arr[:, 0].astype(np.int64), arr[:, 1].astype(np.int64), arr[:, 2].astype(np.int64)
    mult = arr[:, 4]
    scale = np.power(10.0, np.abs(mult))
    watts = np.where(mult >= 0, arr[:, 3] * scale, arr[:, 3] / scale) * arr[:, 5]
    meter = np.array([p[0] for p in parts], dtype=np.int64)
    _, first = np.unique(np.stack([meter, start]), axis=1, return_index=True)
    dev, start, dur, watts = dev[first], start[first], dur[first], watts[first]
    uniq, inverse = np.unique(np.stack([dev, start, dur]), axis=1, return_inverse=True)
    summed = np.bincount(inverse.ravel(), weights=watts, minlength=uniq.shape[1])
    return mt.FleetReadings(uniq[0], uniq[1], uniq[2], summed, sources)


# ------------------------------------------------------------------------------ the world


class Meters:
    """Which instants a baseline reads, each device's load and history class, and what it delivered."""

    def __init__(self, m: int, n: int, seed: int, rule: Any):
        rng = np.random.default_rng(seed)
        self.m, self.n = m, n
        w_from, w_to = round(rule.adjust_from_h * 3600), round(rule.adjust_to_h * 3600)
        ev_wall = [(dt.datetime.fromtimestamp(START, ZONE) + dt.timedelta(seconds=MV_S * j)).time()
                   for j in range((END - START) // MV_S)]
        pre_wall = [(dt.datetime.fromtimestamp(START - w_from, ZONE) + dt.timedelta(seconds=MV_S * j)).time()
                    for j in range((w_from - w_to) // MV_S)]
        self.n_ev, self.n_pre = len(ev_wall), len(pre_wall)
        adjust = rule.adjustment != "none"
        inst, day_of, slot_of = [], [], []  # slot: 0 … n_pre-1 pre-event, n_pre … event
        for back in range(LOOKBACK + 1):
            d = EVENT_DAY - dt.timedelta(days=back)
            walls = (pre_wall if (adjust or back == 0) else []), ev_wall
            for offset, ws in zip((0, self.n_pre), walls):
                for j, w in enumerate(ws):
                    inst.append(int(dt.datetime.combine(d, w, ZONE).timestamp()))
                    day_of.append(back)
                    slot_of.append(offset + j)
        order = np.argsort(inst)
        self.instants = np.asarray(inst, dtype=np.int64)[order]
        self.day_of = np.asarray(day_of, dtype=np.int64)[order]
        self.slot_of = np.asarray(slot_of, dtype=np.int64)[order]
        self.event_col = (self.day_of == 0) & (self.slot_of >= self.n_pre)
        # load L (W, whole tens) per device and slot of the day
        shape = np.concatenate([np.arange(self.n_pre), [40, 45, 50, 55, 55, 50, 45, 40][:self.n_ev]
                                + [40] * max(0, self.n_ev - 8)])
        self.base = rng.integers(60, 301, size=m)
        self.load = 10 * (self.base[:, None] + shape[None, :]).astype(np.int64)  # (m, slots)
        # history classes (the first SERVICE_METERS devices are clean: they post through the service)
        u = rng.random(m)
        cls = np.array(["clean"] * m, dtype=object)
        edge = 0.0
        for name, share in CLASSES:
            cls[(u >= edge) & (u < edge + share)] = name
            edge += share
        cls[:SERVICE_METERS] = "clean"
        self.cls = cls
        self.gap_day = rng.integers(1, 11, size=m)
        pu = rng.random(m)
        perf = np.empty(m)
        edge = 0.0
        for value, share in PERF_CLASSES:
            perf[(pu >= edge) & (pu < edge + share)] = value
            edge += share
        self.perf = perf
        self.delivered = np.zeros((m, self.n_ev), dtype=np.int64)  # W per M&V interval, set after publishing

    def set_delivered(self, reduction_kw: np.ndarray) -> None:
        """reduction_kw (n, n_ev): each enrolled device's cleared reduction per M&V interval."""
        s = np.maximum(reduction_kw, 0.0)
        self.delivered[: s.shape[0]] = np.rint(self.perf[: s.shape[0], None] * s * 1000).astype(np.int64)

    def present(self, rows: np.ndarray) -> np.ndarray:
        """(len(rows), T) which readings exist for these fleet indices."""
        cls = self.cls[rows]
        day = self.day_of[None, :]
        ok = np.ones((len(rows), self.instants.size), dtype=bool)
        ok &= ~((cls == "gap")[:, None] & (day == self.gap_day[rows][:, None]))
        ok &= ~((cls == "short")[:, None] & (day > 6))
        ok &= ~((cls == "new")[:, None] & (day > 3))
        ok &= ~((cls == "silent")[:, None] & self.event_col[None, :])
        ok &= ~(cls == "nometer")[:, None]
        return ok

    def values(self, rows: np.ndarray) -> np.ndarray:
        """(len(rows), T) W at every instant (whether present or not)."""
        load = self.load[rows][:, self.slot_of]
        f = np.asarray(DAY_FACTOR_TENTHS, dtype=np.int64)[self.day_of]
        v = load * f[None, :] // 10
        ev = np.flatnonzero(self.event_col)
        v[:, ev] -= self.delivered[rows][:, self.slot_of[ev] - self.n_pre]
        return v

    def expected_reduction(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(kW (len(rows), n_ev), checkable (len(rows),)): the exact reduction where the history
        makes it known (complete or 6-day histories, and the flat fallback)."""
        ev_load = self.load[rows][:, self.n_pre:]
        deliv = self.delivered[rows]
        out = deliv / 1000.0
        cls = self.cls[rows]
        new = cls == "new"
        if new.any():
            flat = self.load[rows][new, :self.n_pre].mean(axis=1) / 1000.0
            out[new] = flat[:, None] - (ev_load[new] - deliv[new]) / 1000.0
        checkable = np.isin(cls, ("clean", "short", "new"))
        return out, checkable


class World:
    def __init__(self, args: argparse.Namespace, database: str):
        self.args = args
        self.database = database
        self.n, self.m = args.devices, max(args.baseline_devices, args.devices)
        self.tmp = Path(tempfile.mkdtemp(prefix="derflex-bench-settlement-"))
        self.pg = PgDatabase(args.postgres) if database == "postgresql" else None
        self.db: Any = None
        self.steps: dict[str, float] = {}
        self.result: dict[str, Any] = {"database": database}

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        yield
        self.steps[name] = round(time.perf_counter() - t0, 3)

    # ---------------------------------------------------------------------------- set-up
    def setup(self) -> None:
        from server.bootstrap import prepare
        from server.config import Settings
        from server.db import migrate

        if self.pg is not None:
            self.pg.create()
            self.result["postgresql"] = self.pg.version()
        self.settings = Settings(home=self.tmp, database_url=self.pg.url if self.pg else "")
        with self.step("migrate"):
            self.db = prepare(self.settings, say=lambda _m: None)
        assert migrate.current_revision(self.db.engine) == migrate.head_revision()
        self.spec = self._spec()
        from programs.model import Program

        self.program = Program.from_dict(self.spec)
        self.rule = self.program.measurement.baseline
        self.meters = Meters(self.m, self.n, self.args.seed, self.rule)
        _say(f"[{self.database}] migrated in {self.steps['migrate']} s; {self.m:,} devices with meters, "
             f"{self.n:,} enrolled; {self.meters.instants.size} readings per complete device")

    def _spec(self) -> dict[str, Any]:
        a = self.args
        baseline: dict[str, Any] = {"x": 10, "y": 10, "lookback_days": LOOKBACK, "day_types": "any",
                                    "adjustment": a.adjustment}
        if a.adjustment != "none":
            baseline.update(cap=0.2, adjust_from_h=4, adjust_to_h=1)
        return {
            "name": "Bench settlement", "currency": "USD",
            "window": {"weekdays": ALL_DAYS, "start": "16:00", "end": "18:00", "tz": TZ},
            "requested_kw": round(1.5 * self.n, 3), "interval_s": 3600, "price_cap": 0.50, "price_floor": 0.0,
            "incentive": {"kind": "pay_as_clear"}, "lead_time_s": 3600,
            "eligible_kinds": ["battery", "ev_charger", "load"], "description": "bench settlement",
            "measurement": {"interval_s": MV_S, "delay_s": 900, "resettle_days": 3, "split": SPLIT,
                            "baseline": baseline},
        }

    def devices(self) -> None:
        from sqlalchemy import select

        from server.db import bulk
        from server.db.models import Device
        from server.sep2.identity import sfdi_from_lfdi
        from server.services.sep2 import edev

        rng = random.Random(self.args.seed + 1)
        lfdis: list[str] = []
        taken: set[str] = set()
        while len(lfdis) < self.m:
            lfdi = f"{rng.getrandbits(160):040X}"
            if lfdi not in taken:
                taken.add(lfdi)
                lfdis.append(lfdi)
        t = CREATED - 30 * DAY
        cols = ("lfdi", "sfdi", "enabled", "post_rate", "changed_time", "registered_time", "registered_by",
                "aggregator_lfdi", "pin", "pin_time", "label")
        with self.step("devices"), self.db.transaction() as s:
            bulk.insert(s, Device.__table__, cols, [(x, sfdi_from_lfdi(x), True, None, t, t, edev.OPERATOR, None, None,
                                                     None, None) for x in lfdis])
            rows = s.execute(select(Device.id, Device.lfdi).order_by(Device.id)).all()
        self.ids = [r.id for r in rows]
        self.lfdis = [r.lfdi for r in rows]
        assert len(self.ids) == self.m
        _say(f"  {self.m:,} EndDevices (bulk) in {self.steps['devices']} s")

    def der_documents(self) -> None:
        from sqlalchemy import insert

        self.fleet = Fleet(self.n, self.args.seed)
        now = CREATED - 3600
        with self.step("der_documents"):
            rows: dict[Any, list[dict[str, Any]]] = defaultdict(list)
            for i in range(self.n):
                for table, row in der_rows(self.ids[i], self.fleet.documents(i, now), now):
                    rows[table].append(row)
            with self.db.transaction() as s:
                for table, values in rows.items():
                    for k in range(0, len(values), CHUNK):
                        s.execute(insert(table), values[k:k + CHUNK])
        _say(f"  DER documents of {self.n:,} devices (bulk, as der.put stores them) in {self.steps['der_documents']} s")

    def program_and_enrollments(self) -> None:
        from sqlalchemy import insert, select

        from server.db import derp as der_store
        from server.db import flex as store
        from server.services.flex import enrollments, programs as flex, windows

        with self.step("program_enroll"):
            with self.db.transaction() as s:
                view = flex.create_program(s, self.spec, CREATED)
                self.program_id, self.der_program_id = view["id"], view["der_program_id"]
                first = min(3, self.n)
                for i in range(first):
                    enrollments.enroll(s, self.program_id, self._body(i), CREATED)
                for k in range(first, self.n, CHUNK):
                    part = range(k, min(k + CHUNK, self.n))
                    s.execute(insert(store.Enrollment), [
                        {"program_id": self.program_id, "device_id": self.ids[i], "customer": f"customer-{i}",
                         "device_kind": self.fleet.kinds[i], "grid_node_id": None,
                         "offer": json.dumps(self.fleet.offers[i]) if self.fleet.offers[i] is not None else None,
                         "state": "active", "source": "operator", "external_ref": None,
                         "created_time": CREATED, "updated_time": CREATED} for i in part])
                    s.execute(insert(der_store.ProgramMember),
                              [{"program_id": self.der_program_id, "device_id": self.ids[i]} for i in part])
                windows.plan_windows(s, CREATED, 7 * DAY)
            if self.n > first:
                e = store.Enrollment
                with self.db.read() as conn:
                    got = {r.device_id: r._mapping for r in conn.execute(
                        select(e).where(e.device_id.in_([self.ids[0], self.ids[first]])))}
                same = ("program_id", "state", "source", "external_ref", "created_time", "updated_time")
                diff = {k: (got[self.ids[0]][k], got[self.ids[first]][k]) for k in same
                        if got[self.ids[0]][k] != got[self.ids[first]][k]}
                if diff:
                    raise RuntimeError(f"a bulk enrollment differs from a service one: {diff}")
        _say(f"  program {self.program_id} and {self.n:,} enrollments (3 through enrollments.enroll) in "
             f"{self.steps['program_enroll']} s")

    def _body(self, i: int) -> dict[str, Any]:
        body: dict[str, Any] = {"device_id": self.ids[i], "customer": f"customer-{i}", "kind": self.fleet.kinds[i]}
        if self.fleet.offers[i] is not None:
            body["offer"] = self.fleet.offers[i]
        return body

    def publish(self) -> None:
        from sqlalchemy import select

        from server.db import flex as store
        from server.services.flex import publishing

        with self.step("publish"):
            out = publishing.run_window(self.db, self.program_id, KEY, PUBLISH_AT)
        if out is None or out.get("action") != "publish" or out["devices"] != self.n:
            raise RuntimeError(f"run_window did not publish {self.n} devices: {out}")
        sp, cl = store.Setpoint, store.Clearing
        with self.db.read() as conn:
            rows = conn.execute(select(sp.device_id, cl.interval_index, cl.start, sp.reduction_kw)
                                .join(cl, cl.id == sp.clearing_id)).all()
        pos = {d: i for i, d in enumerate(self.ids[: self.n])}
        red = np.zeros((self.n, self.meters.n_ev))
        for r in rows:
            j0 = (r.start - START) // MV_S
            red[pos[r.device_id], j0:j0 + 3600 // MV_S] = r.reduction_kw
        self.meters.set_delivered(red)
        self.result["publish"] = {"seconds": self.steps["publish"], "summary": out["summary"],
                                  "skipped_count": out["skipped_count"]}
        _say(f"  published in {self.steps['publish']} s — {out['summary']}")

    # ---------------------------------------------------------------------------- meter data
    def _mirror(self, i: int) -> None:
        """Device i mirrors its readings through the service (one MirrorReadingSet per run of readings)."""
        from server.scope import Scope
        from server.sep2.derp import DateTimeInterval
        from server.sep2.mup import MirrorMeterReading, MirrorReadingSet, MirrorUsagePoint, Reading, ReadingType
        from server.services.sep2 import mup as mup_service

        mt = self.meters
        ok = mt.present(np.array([i]))[0]
        vals = mt.values(np.array([i]))[0]
        t, v = mt.instants[ok], vals[ok]
        breaks = np.flatnonzero(np.diff(t) != MV_S) + 1
        sets = []
        for ts, vs in zip(np.split(t, breaks), np.split(v, breaks)):
            sets.append(MirrorReadingSet(
                mrid=f"B{int(ts[0]):031X}", time_period=DateTimeInterval(start=int(ts[0]), duration=MV_S * len(ts)),
                readings=[Reading(time_period=DateTimeInterval(start=int(a), duration=MV_S), value=int(b),
                                  quality_flags="01") for a, b in zip(ts, vs)]))
        # a MirrorMeterReading mRID belongs to one device (services.sep2.mup): one per device
        mmr = MirrorMeterReading(mrid=f"A{self.lfdis[i][:31]}", reading_type=ReadingType(**RT_W), mirror_reading_sets=sets)
        mup = MirrorUsagePoint(mrid=UP_MRID, device_lfdi=self.lfdis[i], role_flags="03", service_category_kind=0,
                               status=1, mirror_meter_readings=[mmr])
        with self.db.transaction() as s:
            mup_service.post_mirror_usage_point(s, Scope.operator(), mup, END + 300)

    def meter_data(self) -> None:
        from sqlalchemy import select, text

        from server.db import bulk, metering

        mt = self.meters
        with self.step("needed_instants_check"):
            from programs.baselines import needed_instants

            need = needed_instants(MV_S, START, END, TZ, self.rule)
            if not np.array_equal(need, mt.instants):
                raise RuntimeError(f"the generated instants ({mt.instants.size}) are not the ones a baseline reads "
                                   f"({need.size})")
        service = list(range(min(SERVICE_METERS, self.m)))
        with self.step("service_meters"):
            for i in service:
                self._mirror(i)
        up_t, mr_t = metering.UsagePoint.__table__, metering.MeterReading.__table__
        with self.db.read() as conn:
            up0 = conn.execute(select(up_t).where(up_t.c.device_id == self.ids[0])).mappings().one()
            mr0 = conn.execute(select(mr_t).where(mr_t.c.usage_point_id == up0["id"])).mappings().one()
        bulk_rows = np.array([i for i in range(len(service), self.m) if mt.cls[i] != "nometer"], dtype=np.int64)
        up_cols = [c for c in up0.keys() if c not in ("id", "device_id")]
        mr_cols = [c for c in mr0.keys() if c not in ("id", "usage_point_id")]
        t0 = time.perf_counter()
        with self.db.transaction() as s:
            bulk.insert(s, up_t, ["device_id", *up_cols],
                        [(self.ids[i], *(up0[c] for c in up_cols)) for i in bulk_rows.tolist()])
            ups = dict(s.execute(select(up_t.c.device_id, up_t.c.id)).all())
            bulk.insert(s, mr_t, ["usage_point_id", *mr_cols],
                        [(ups[self.ids[i]], *(mr0[c] for c in mr_cols)) for i in bulk_rows.tolist()])
            mrs = dict(s.execute(select(up_t.c.device_id, mr_t.c.id).join(mr_t, mr_t.c.usage_point_id == up_t.c.id)).all())
        self.steps["usage_points_meter_readings"] = round(time.perf_counter() - t0, 3)
        mr_of = np.array([mrs.get(d, -1) for d in self.ids], dtype=np.int64)
        # readings, in (meter reading, start) order, a chunk of devices per transaction
        t0 = time.perf_counter()
        rows_total = 0
        raw = self.db.engine.raw_connection()
        pg = self.pg is not None
        try:
            cur = raw.cursor()
            step = 2000
            for k in range(0, len(bulk_rows), step):
                rows = bulk_rows[k:k + step]
                rows = rows[np.argsort(mr_of[rows])]
                ok = mt.present(rows)
                vals = mt.values(rows)
                r_idx, c_idx = np.nonzero(ok)
                start = mt.instants[c_idx]
                value = vals[r_idx, c_idx]
                mr = mr_of[rows][r_idx]
                count = start.size
                days = np.unique(np.stack([mr, start // DAY]), axis=1)
                if pg:
                    _pg_copy_binary(cur, "readings", [
                        ("start", ">i8", start), ("value", ">i8", value), ("meter_reading_id", ">i4", mr),
                        ("duration", ">i4", np.full(count, MV_S)), ("quality_flags", ">i4", np.ones(count)),
                        ("multiplier", ">i2", np.zeros(count))])
                    _pg_copy_binary(cur, "reading_days", [("meter_reading_id", ">i4", days[0]), ("day", ">i4", days[1])])
                else:
                    cur.executemany("INSERT INTO readings (start, value, meter_reading_id, duration, quality_flags, "
                                    "multiplier) VALUES (?, ?, ?, ?, 1, 0)",
                                    zip(start.tolist(), value.tolist(), mr.tolist(), [MV_S] * count))
                    cur.executemany("INSERT INTO reading_days (meter_reading_id, day) VALUES (?, ?)",
                                    zip(days[0].tolist(), days[1].tolist()))
                raw.commit()
                rows_total += count
            cur.close()
        finally:
            raw.close()
        self.steps["readings_bulk"] = round(time.perf_counter() - t0, 3)
        with self.step("analyze"), self.db.engine.connect() as conn:
            conn.execute(text("ANALYZE"))
            conn.commit()
        with self.db.read() as conn:
            n_readings = conn.execute(text("SELECT count(*) FROM readings")).scalar_one()
            if pg:
                size = conn.execute(text("SELECT pg_total_relation_size('readings')")).scalar_one()
            else:
                size = None
        if self.pg is None:
            size = sum(p.stat().st_size for p in self.tmp.rglob("*.db*"))
        self.result["store"] = {"readings": n_readings, "bulk_readings": rows_total, "bytes": size,
                                "classes": dict(Counter(mt.cls.tolist()))}
        self._check_store(mrs)
        _say(f"  meters: {len(service)} through the service, {len(bulk_rows):,} bulk; {n_readings:,} readings "
             f"({rows_total:,} bulk in {self.steps['readings_bulk']} s); ANALYZE {self.steps['analyze']} s; "
             f"{(size or 0) / 2**20:,.0f} MiB ({'readings + its key' if pg else 'database files'})")

    def _check_store(self, mrs: dict[int, int]) -> None:
        """The service's readings are what the generator would have bulk-inserted; a bulk device's
        load_series gives the generated values; the bulk rows have the service rows' columns."""
        from sqlalchemy import select

        from server.db import metering

        mt = self.meters
        r_t = metering.Reading.__table__
        with self.db.read() as conn:
            got = conn.execute(select(r_t.c.start, r_t.c.value, r_t.c.duration, r_t.c.quality_flags, r_t.c.multiplier)
                               .where(r_t.c.meter_reading_id == mrs[self.ids[0]]).order_by(r_t.c.start)).all()
        ok, vals = mt.present(np.array([0]))[0], mt.values(np.array([0]))[0]
        want = [(int(a), int(b), MV_S, 1, 0) for a, b in zip(mt.instants[ok], vals[ok])]
        if [tuple(r) for r in got] != want:
            raise RuntimeError("the service stored other readings than the generator made for device 0")
        probe = next((i for i in range(SERVICE_METERS, self.m) if mt.cls[i] == "clean"), None)
        if probe is not None:
            with self.db.transaction() as s:
                starts, watts = metering.load_series(s, self.ids[probe], int(mt.instants[0]), int(mt.instants[-1]) + 1)
            vals = mt.values(np.array([probe]))[0]
            if not (np.array_equal(starts, mt.instants) and np.array_equal(watts, vals.astype(float))):
                raise RuntimeError(f"load_series of bulk device {self.ids[probe]} is not what was generated")

    # ---------------------------------------------------------------------------- checks
    def _check(self, rows: np.ndarray, reduction: np.ndarray, methods: tuple[str, ...]) -> dict[str, Any]:
        mt = self.meters
        want_methods = [EXPECTED_METHOD[c] for c in mt.cls[rows]]
        wrong = [(int(r), m, w) for r, m, w in zip(rows, methods, want_methods) if m != w]
        exp, checkable = mt.expected_reduction(rows)
        diff = np.abs(reduction[checkable] - exp[checkable])
        worst = float(np.nanmax(diff)) if diff.size else 0.0
        nan_bad = int(np.isnan(reduction[checkable]).sum())
        if wrong or worst > 1e-6 or nan_bad:
            raise RuntimeError(f"wrong results: {len(wrong)} methods differ (e.g. {wrong[:3]}), worst reduction error "
                               f"{worst:.3g} kW, {nan_bad} unexpected NaN")
        return {"devices": int(rows.size), "checked_reductions": int(checkable.sum()), "max_error_kw": worst,
                "methods": dict(Counter(methods))}

    # ---------------------------------------------------------------------------- (a) settlement
    def settlement_runs(self) -> None:
        from sqlalchemy import text

        from server.db import flex as flex_store
        from server.db import metering
        from server.db import settlement as records
        from server.services.flex import settlement

        runs = []
        for r in range(self.args.runs):
            with self.db.transaction() as s:
                s.execute(text("DELETE FROM settlement_devices"))
                s.execute(text("DELETE FROM settlement_runs"))
            timers = Timers()
            timers.wrap(settlement, "measure", keep=True)
            timers.wrap(settlement, "fingerprint", phase=True)  # its meter and sums queries: fingerprint/…
            for name in ("_event_days", "needed_instants", "grid_average", "fleet_baselines",
                         "performance", "_deliveries", "settle", "_summary", "_device_rows", "_store"):
                timers.wrap(settlement, name)
            for name in ("fleet_meters", "_fetch", "_to_fleet", "readings_fingerprint"):
                timers.wrap(metering, name)
            timers.wrap(records, "add_devices")
            timers.wrap(flex_store, "clearings")
            mem: dict[str, Any] = {}
            probe = self._probe()
            try:
                with peak_memory(mem):
                    t0 = time.perf_counter()
                    out = settlement.settle_window(TimedDatabase(self.db, timers), self.program_id, KEY, SETTLE_AT)
                    wall = time.perf_counter() - t0
            finally:
                timers.restore()
                probed = probe.stop()
            if out is None or out["version"] != 1 or out["settlement"]["devices"] != self.n:
                raise RuntimeError(f"settle_window did not settle {self.n} devices: {out and out['summary']}")
            m = timers.last.pop("measure")
            pos = {d: i for i, d in enumerate(self.ids)}
            rows = np.array([pos[d] for d in m.device_ids], dtype=np.int64)
            check = self._check(rows, m.reduction, m.fb.method)
            del m
            probe = self._probe()
            try:
                t1 = time.perf_counter()
                again = settlement.settle_window(self.db, self.program_id, KEY, SETTLE_AT + 900)
                recheck = time.perf_counter() - t1
            finally:
                probed_recheck = probe.stop()
            if again is not None:
                raise RuntimeError("the re-check wrote a new version although nothing changed")
            summ = out["settlement"]
            phases = {k: round(timers.seconds[k], 3) for k in SETTLEMENT_PHASES if k in timers.seconds}
            phases["load_readings"] = round(sum(timers.seconds[k] for k in ("fleet_meters", "_fetch", "_to_fleet")), 3)
            inner = ("_event_days", "needed_instants", "grid_average", "fleet_baselines", "performance", "settle",
                     "_deliveries")
            phases["measure_rest"] = round(timers.seconds["measure"] - phases["load_readings"]
                                           - sum(timers.seconds[k] for k in inner), 3)
            phases["settle_window_rest"] = round(wall - sum(timers.seconds[k] for k in (
                "fingerprint", "measure", "_device_rows", "_store")), 3)
            run = {"wall_seconds": round(wall, 3), "recheck_seconds": round(recheck, 3), "phases": phases,
                   "memory": mem, "check": check, "concurrent_writes": probed,
                   "concurrent_writes_recheck": probed_recheck,
                   "totals": {k: summ[k] for k in ("requested_kwh", "cleared_kwh", "delivered_kwh", "credited_kwh",
                                                   "gross_minor", "total_minor")}}
            runs.append(run)
            _say(f"  (a) settle_window run {r + 1}: {wall:.2f} s (re-check, nothing changed: {recheck:.2f} s); "
                 f"load {phases.get('load_readings', 0):.2f}, baselines "
                 f"{phases.get('grid_average', 0) + phases.get('fleet_baselines', 0):.2f}, settle "
                 f"{phases.get('settle', 0):.2f}, rows+JSON {phases.get('_device_rows', 0):.2f}, write "
                 f"{phases.get('_store', 0):.2f} s; peak +{mem['peak_mib']} MiB; "
                 f"{summ['delivered_kwh']} kWh delivered, {summ['total_minor']} minor units; concurrent writes "
                 f"(one every 0.5 s): {probed['writes']} ok, max wait {probed['max_wait_s']} s, {probed['failed']} failed "
                 f"{probed['errors'][:1]}")
        with self.db.read() as conn:
            detail_bytes = conn.execute(text("SELECT sum(length(detail)) FROM settlement_devices")).scalar_one()
        self.result["settlement"] = {
            "devices": self.n, "runs": runs,
            "median_wall_seconds": _median([r["wall_seconds"] for r in runs]),
            "median_recheck_seconds": _median([r["recheck_seconds"] for r in runs]),
            "median_phases": {k: _median([r["phases"].get(k, 0.0) for r in runs]) for k in runs[0]["phases"]},
            "median_peak_mib": _median([r["memory"]["peak_mib"] for r in runs]),
            "detail_bytes": detail_bytes,
        }

    def _probe(self) -> WriteProbe:
        """A WriteProbe on the last device's meter reading, two days after the event."""
        from sqlalchemy import select

        from server.db import metering

        up, mr = metering.UsagePoint, metering.MeterReading
        with self.db.read() as conn:
            mr_id = conn.execute(select(mr.id).join(up, up.id == mr.usage_point_id).order_by(mr.id.desc())
                                 .limit(1)).scalar_one()
        probe = WriteProbe(self.db, mr_id, START + 2 * DAY)
        probe.start()
        return probe

    # ---------------------------------------------------------------------------- (b) baselines
    def baseline_runs(self) -> None:
        """(b): what services.flex.settlement.fleet_baselines_of does, step by step and timed: a
        chunk of devices' readings (metering.fleet_reading_chunks) → grid_average → fleet_baselines,
        the chunks joined (FleetBaseline.concat)."""
        from programs.baselines import FleetBaseline, fleet_baselines, grid_average, needed_instants
        from server.db import metering
        from server.services.flex.settlement import _spans

        dtm = MV_S
        ids = self.ids
        runs = []
        for r in range(self.args.baseline_runs):
            mem: dict[str, Any] = {}
            t_load = t_grid = t_base = 0.0
            n_readings = 0
            with peak_memory(mem):
                t0 = time.perf_counter()
                grid = needed_instants(dtm, START, END, TZ, self.rule)
                times = grid.astype(float)
                parts = []
                with self.db.transaction() as s:
                    t1 = time.perf_counter()
                    chunks = metering.fleet_reading_chunks(s, ids, _spans(grid, dtm))
                    while True:
                        ta = time.perf_counter()
                        got = next(chunks, None)
                        tb = time.perf_counter()
                        t_load += tb - ta
                        if got is None:
                            break
                        k, fr = got
                        n_readings += int(fr.starts.size)
                        values = grid_average(fr.device_index, fr.starts, fr.durations, fr.watts,
                                              min(metering.FLEET_CHUNK, len(ids) - k), grid, dtm)
                        del fr, got
                        tc = time.perf_counter()
                        parts.append(fleet_baselines(times, values, dtm, START, END, TZ, self.rule, excluded=()))
                        del values
                        t_grid += tc - tb
                        t_base += time.perf_counter() - tc
                fb = FleetBaseline.concat(parts)
                del parts
                t4 = time.perf_counter()
            check = self._check(np.arange(len(ids)), np.round(fb.reduction, 6), fb.method)
            del fb
            run = {"wall_seconds": round(t4 - t0, 3), "load_fleet_readings": round(t_load, 3),
                   "grid_average": round(t_grid, 3), "fleet_baselines": round(t_base, 3),
                   "other": round((t1 - t0), 3), "readings_loaded": n_readings, "memory": mem, "check": check,
                   "chunk": metering.FLEET_CHUNK}
            runs.append(run)
            _say(f"  (b) baselines run {r + 1}: {run['wall_seconds']:.2f} s for {len(ids):,} devices — "
                 f"load_fleet_readings {run['load_fleet_readings']:.2f} s ({n_readings:,} readings), grid_average "
                 f"{run['grid_average']:.2f} s, fleet_baselines {run['fleet_baselines']:.2f} s; peak +{mem['peak_mib']} MiB")
        keys = ("wall_seconds", "load_fleet_readings", "grid_average", "fleet_baselines")
        self.result["baselines"] = {
            "devices": len(ids), "runs": runs, **{f"median_{k}": _median([r[k] for r in runs]) for k in keys},
            "median_peak_mib": _median([r["memory"]["peak_mib"] for r in runs]),
        }

    # ---------------------------------------------------------------------------- diagnostics
    def diagnose(self) -> None:
        """Before and after in this run: the loader as it was before #17 (legacy_load_fleet_readings)
        and load_fleet_readings, on the same --diagnose-devices devices, checked equal and timed."""
        from server.db import metering
        from programs.baselines import needed_instants
        from server.services.flex.settlement import _spans

        ids = self.ids[: min(len(self.ids), self.args.diagnose_devices)]
        spans = _spans(needed_instants(MV_S, START, END, TZ, self.rule), MV_S)
        out: dict[str, Any] = {"devices": len(ids), "spans": len(spans)}
        for name, fn in (("legacy", legacy_load_fleet_readings), ("new", metering.load_fleet_readings)):
            mem: dict[str, Any] = {}
            with peak_memory(mem), self.db.transaction() as s:
                t0 = time.perf_counter()
                fr = fn(s, ids, spans)
                seconds = time.perf_counter() - t0
            out[name] = {"seconds": round(seconds, 3), "peak_mib": mem["peak_mib"], "readings": int(fr.starts.size)}
            out.setdefault("results", []).append(fr)
            _say(f"  diagnose: {name} loader, {len(ids):,} devices: {seconds:.2f} s, peak +{mem['peak_mib']} MiB")
        want, got = out.pop("results")
        same = (want.sources == got.sources and all(np.array_equal(getattr(want, f), getattr(got, f))
                                                    for f in ("device_index", "starts", "durations", "watts")))
        if not same:
            raise RuntimeError("load_fleet_readings does not give what the loader before #17 gave")
        out["equal"] = True
        self.result["diagnose"] = out

    def profile(self) -> None:
        from sqlalchemy import text

        from programs.baselines import needed_instants
        from server.db import metering
        from server.services.flex import settlement
        from server.services.flex.settlement import _spans

        texts = {}
        with self.db.transaction() as s:
            s.execute(text("DELETE FROM settlement_devices"))
            s.execute(text("DELETE FROM settlement_runs"))
        for name, fn in (
            ("settle_window", lambda: settlement.settle_window(self.db, self.program_id, KEY, SETTLE_AT)),
            ("load_fleet_readings", lambda: self._load_all(metering, needed_instants, _spans, PROFILE_LOAD_DEVICES)),
        ):
            prof = cProfile.Profile()
            t0 = time.perf_counter()
            prof.enable()
            fn()
            prof.disable()
            wall = time.perf_counter() - t0
            buf = io.StringIO()
            st = pstats.Stats(prof, stream=buf)
            st.sort_stats("tottime").print_stats(self.args.profile_top)
            st.sort_stats("cumulative").print_stats(self.args.profile_top)
            texts[name] = {"wall_seconds_profiled": round(wall, 3), "profile": buf.getvalue(),
                           "devices": self.n if name == "settle_window" else min(self.m, PROFILE_LOAD_DEVICES)}
            _say(f"  profiled {name}: {wall:.2f} s under cProfile")
        self.result["profile"] = texts

    def _load_all(self, metering: Any, needed_instants: Any, spans: Any, limit: int) -> None:
        grid = needed_instants(MV_S, START, END, TZ, self.rule)
        with self.db.transaction() as s:
            metering.load_fleet_readings(s, self.ids[:limit], spans(grid, MV_S))

    def cleanup(self) -> None:
        clean_up(self.db, self.pg, self.tmp, self.args.keep, _say)
        self.db = None


# ------------------------------------------------------------------------------ report


def report(res: dict[str, Any]) -> None:
    for w in res["databases"]:
        if "settlement" not in w:
            continue
        a, b = w["settlement"], w.get("baselines")
        ph = a["median_phases"]
        lines = [
            "",
            f"{w['database']}: settlement of {a['devices']:,} devices × one window (medians of {len(a['runs'])} runs)",
            f"  {'settle_window (end to end)':42} {a['median_wall_seconds']:8.3f} s   peak +{a['median_peak_mib']} MiB",
        ]
        labels = [("fingerprint", "· fingerprint (re-check inputs, SQL sums)"),
                  ("measure", "· measure (read-only snapshot)"), ("clearings", "  · clearings"),
                  ("_event_days", "  · _event_days"), ("needed_instants", "  · needed_instants"),
                  ("load_readings", "  · load readings (meters, SQL, parse, sort)"), ("_fetch", "    · _fetch (SQL + parse)"),
                  ("_to_fleet", "    · _to_fleet (W, order)"), ("grid_average", "  · grid_average"),
                  ("fleet_baselines", "  · fleet_baselines"), ("performance", "  · performance"),
                  ("_deliveries", "  · _deliveries (exact inputs)"), ("settle", "  · settle (exact money)"),
                  ("measure_rest", "  · rest (setpoints, arrays, digest)"),
                  ("_device_rows", "· _device_rows (per-device JSON, no transaction)"),
                  ("_store", "· _store (the write transaction, commit included)"),
                  ("_summary", "  · _summary"), ("add_devices", "  · add_devices (bulk write)"), ("commit", "  · commit"),
                  ("settle_window_rest", "· rest (snapshot, checks)")]
        for k, label in labels:
            if k in ph:
                lines.append(f"  {label:48} {ph[k]:8.3f} s")
        lines.append(f"  {'re-check, nothing changed (fingerprint only)':48} {a['median_recheck_seconds']:8.3f} s")
        cw = [r["concurrent_writes"] for r in a["runs"]] + [r["concurrent_writes_recheck"] for r in a["runs"]]
        lines.append(f"  {'concurrent writes during (a) and re-checks':42} {sum(c['writes'] for c in cw)} ok, "
                     f"{sum(c['failed'] for c in cw)} failed, max wait "
                     f"{max((c['max_wait_s'] or 0) for c in cw):.2f} s")
        if b:
            lines += [
                f"{w['database']}: baselines of {b['devices']:,} devices from stored readings (medians of {len(b['runs'])} runs)",
                f"  {'load + grid_average + fleet_baselines':42} {b['median_wall_seconds']:8.3f} s   peak +{b['median_peak_mib']} MiB",
                f"  {'· load_fleet_readings':42} {b['median_load_fleet_readings']:8.3f} s   "
                f"({b['runs'][0]['readings_loaded']:,} readings)",
                f"  {'· grid_average':42} {b['median_grid_average']:8.3f} s",
                f"  {'· fleet_baselines':42} {b['median_fleet_baselines']:8.3f} s",
            ]
        d = w.get("diagnose")
        if d:
            lines += [
                f"{w['database']}: load_fleet_readings of {d['devices']:,} devices, before #17 and now (equal results)",
                f"  {'· before (rows through the session)':42} {d['legacy']['seconds']:8.3f} s   "
                f"peak +{d['legacy']['peak_mib']} MiB",
                f"  {'· now (arrays from one value per query)':42} {d['new']['seconds']:8.3f} s   "
                f"peak +{d['new']['peak_mib']} MiB",
            ]
        lines.append("  set-up: " + ", ".join(f"{k} {v} s" for k, v in w["setup_steps"].items()))
        _say("\n".join(lines))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bench_settlement.py",
        description="Measurement & settlement: settle_window for N enrolled devices × one window, and fleet "
        "baselines of M devices from stored readings, in-process, on SQLite and/or PostgreSQL.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--devices", type=int, default=300, help="enrolled devices settled (N)")
    p.add_argument("--baseline-devices", type=int, default=1000, help="devices with meters whose baselines are "
                   "computed (M >= N; the first N are the enrolled ones)")
    p.add_argument("--full", action="store_true", help="the issue's sizes: --devices 10000 --baseline-devices 100000")
    p.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="sqlite")
    p.add_argument("--postgres", metavar="URL", default="postgresql://postgres@127.0.0.1:5432/test",
                   help="a PostgreSQL server on this machine to create a private database on (dropped after)")
    p.add_argument("--runs", type=int, default=3, help="measured runs of (a) and of (b); medians are reported")
    p.add_argument("--baseline-runs", type=int, default=None, help="measured runs of (b) (default: --runs)")
    p.add_argument("--adjustment", choices=("multiplicative", "additive", "none"), default="multiplicative",
                   help="the baseline's day-of adjustment (none: the look-back days hold only the window's readings)")
    p.add_argument("--seed", type=int, default=2030)
    p.add_argument("--skip-baselines", action="store_true", help="measure (a) only")
    p.add_argument("--diagnose", action="store_true", help="before/after in one run: the loader as it was before "
                   "#17 and load_fleet_readings on the same --diagnose-devices devices, checked equal and timed")
    p.add_argument("--diagnose-devices", type=int, default=20_000)
    p.add_argument("--profile", action="store_true", help="one more settle_window, and load_fleet_readings of up to "
                   f"{PROFILE_LOAD_DEVICES:,} devices, under cProfile (figures not comparable)")
    p.add_argument("--profile-top", type=int, default=30)
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results", help="folder for the JSON results")
    p.add_argument("--keep", action="store_true", help="keep the temporary home (and SQLite database)")
    a = p.parse_args(argv)
    if a.full:
        a.devices, a.baseline_devices = 10_000, 100_000
    if a.devices < 10:
        p.error("need at least 10 devices")
    if a.runs < 1:
        p.error("--runs must be at least 1")
    a.baseline_devices = max(a.baseline_devices, a.devices)
    if a.baseline_runs is None:
        a.baseline_runs = a.runs
    return a


def _terminate(signum: int, _frame: Any) -> None:
    """SIGTERM/SIGHUP: leave through the `finally` blocks, so the scratch database and home go too."""
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    res: dict[str, Any] = {
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "machine": machine_info(("SQLAlchemy", "numpy", "psycopg")),
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "event": {"start": START, "end": END, "key": KEY, "tz": TZ, "settled_at": SETTLE_AT},
        "databases": [],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = args.out / f"settlement-{stamp}.json"
    t_all = time.perf_counter()
    for database in (("sqlite", "postgresql") if args.db == "both" else (args.db,)):
        w = World(args, database)
        t0 = time.perf_counter()
        try:
            w.setup()
            w.devices()
            w.der_documents()
            w.program_and_enrollments()
            w.publish()
            w.meter_data()
            w.result["spec"] = w.spec
            w.settlement_runs()
            if not args.skip_baselines:
                w.baseline_runs()
            if args.diagnose:
                w.diagnose()
            if args.profile:
                w.profile()
        finally:
            w.cleanup()
        w.result["setup_steps"] = w.steps
        w.result["total_seconds"] = round(time.perf_counter() - t0, 1)
        w.result["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
        res["databases"].append(w.result)
        res["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        out.write_text(json.dumps(res, indent=2, default=str))
        del w
    res["total_seconds"] = round(time.perf_counter() - t_all, 1)
    res["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    out.write_text(json.dumps(res, indent=2, default=str))
    report(res)
    _say(f"results: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
