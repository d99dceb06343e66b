"""Settlement at fleet scale (issue #17 item 5): readings loaded a chunk of devices at a time into
arrays, measured in a read-only transaction, stored in a short write that re-checks the window,
re-checks that measure nothing when the readings did not change, and the scheduler's settlement
job beside its publishing. The figures themselves are the hand-computed world's
(tests/builders.py), as in test_settlement.py."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from sqlalchemy import func, select

from server.db import flex as store
from server.db import metering
from server.db import settlement as records
from server.scope import Scope
from server.sep2.derp import DateTimeInterval
from server.sep2.mup import MirrorMeterReading, MirrorReadingSet, MirrorUsagePoint, Reading, ReadingType
from server.services.flex import settlement
from tests.builders import END, KEY, START, deliver, lfdi, make_world, mirror, rated_battery


@pytest.fixture
def world(database):  # noqa: ANN001, ANN201
    return make_world(database)


# ------------------------------------------------------------------------------------ the loader
def _meter(mrid: str, flow: int, multiplier: int, start: int, values: list[int]) -> MirrorMeterReading:
    rt = ReadingType(accumulation_behaviour=12, commodity=1, data_qualifier=2, flow_direction=flow,
                     interval_length=900, kind=37, power_of_ten_multiplier=multiplier, uom=38)
    readings = [Reading(time_period=DateTimeInterval(start=start + 900 * i, duration=900), value=v, quality_flags="01")
                for i, v in enumerate(values)]
    return MirrorMeterReading(mrid=mrid, reading_type=rt, mirror_reading_sets=[MirrorReadingSet(
        mrid=f"B{start:031X}", time_period=DateTimeInterval(start=start, duration=900 * len(values)),
        readings=readings)])


def test_chunks_and_the_whole_fleet_load_what_load_series_reads(database) -> None:  # noqa: ANN001
    """Forward and reverse meter readings added up, a multiplier of -1 divided exactly, a device
    with no meter, overlapping spans fetched once; any chunk size gives the same readings."""
    from server.services.sep2 import mup

    t0 = START - 7200
    names = [lfdi(f"loader-{i}") for i in range(5)]
    with database.transaction() as s:
        ids = [rated_battery(s, x, t0) for x in names]
    with database.transaction() as s:
        for i, x in enumerate(names[:4]):  # names[4] mirrors nothing
            values = [10 * i + k * 1234 if i != 2 else -(k << 41) - 12345 for k in range(8)]  # large and negative too
            meters = [_meter(f"A{x[:31]}", 1, -1, t0, values)]
            if i % 2:  # a reverse (export) meter reading beside it, at the same starts
                meters.append(_meter(f"C{x[:31]}", 19, 0, t0 + 900, [300 + i] * 6))
            mup.post_mirror_usage_point(s, Scope.operator(), MirrorUsagePoint(
                mrid="0123456789ABCDEF0123456789ABCDEF", device_lfdi=x, role_flags="03", service_category_kind=0,
                status=1, mirror_meter_readings=meters), END)
    spans = [(t0 + 3600, t0 + 5400), (t0 + 4500, t0 + 7200)]  # overlapping, each with an hour before
    with database.transaction() as s:
        whole = metering.load_fleet_readings(s, ids, spans)
        chunked = [(k, fr) for k, fr in metering.fleet_reading_chunks(s, ids, spans, chunk=2)]
        expected = [metering.load_series(s, d, t0, t0 + 7200) for d in ids]
    assert [k for k, _ in chunked] == [0, 2, 4]
    for field in ("device_index", "starts", "durations", "watts"):
        joined = np.concatenate([getattr(fr, field) + (k if field == "device_index" else 0) for k, fr in chunked])
        assert np.array_equal(joined, getattr(whole, field)), field
    for i, (starts, watts) in enumerate(expected):
        mine = whole.device_index == i
        assert np.array_equal(whole.starts[mine], starts) and np.array_equal(whole.watts[mine], watts)
    assert whole.watts[whole.device_index == 0][1] == 123.4  # 1234 × 10^-1, exactly
    assert whole.watts[whole.device_index == 1][1] == (10 + 1234) / 10 - 301  # forward minus reverse
    assert set(whole.sources) == set(ids[:4]) and len(whole.sources[ids[1]][1]) == 2
    assert (whole.device_index == 4).sum() == 0
    # the fingerprint: the same readings, the same sums; one value re-posted, other sums
    with database.transaction() as s:
        meter_ids = metering.fleet_meters(s, ids).ids

    def sums() -> list[list[int]]:
        with database.transaction() as s:
            return metering.readings_fingerprint(s, meter_ids, spans)

    before = sums()
    assert before[0] == whole.starts.size + 12  # the reverse readings: counted before they are added up
    assert whole.sums == before  # numpy's sums of the loaded readings are the database's
    mirror(database, names[4], t0, [5])  # a meter reading not among these
    assert sums() == before
    with database.transaction() as s:
        mup.post_mirror_usage_point(s, Scope.operator(), MirrorUsagePoint(
            mrid="0123456789ABCDEF0123456789ABCDEF", device_lfdi=names[0], role_flags="03", service_category_kind=0,
            status=1, mirror_meter_readings=[_meter(f"A{names[0][:31]}", 1, -1, t0 + 1800, [2469])]), END)
    after = sums()
    assert after != before and after[0] == before[0]  # the same count, another value


# ------------------------------------------------------------------------------------ transactions
def test_device_writes_go_on_while_a_window_is_measured(world, database, monkeypatch) -> None:  # noqa: ANN001
    """The measurement holds no write lock (SQLite: a deferred read snapshot): a device's POST made
    while it runs commits at once, and the result is the one measured from the snapshot."""
    deliver(database, world)
    real = settlement.measure
    waits: list[float] = []

    def measure_with_a_write(*args, **kw):  # noqa: ANN002, ANN003, ANN202
        t = time.perf_counter()
        mirror(database, world["lfdis"][0], END + 3600, [1234], now=END + 300)  # a device posts
        waits.append(time.perf_counter() - t)
        return real(*args, **kw)

    monkeypatch.setattr(settlement, "measure", measure_with_a_write)
    out = settlement.settle_window(database, world["program"], KEY, END + 600)
    assert out["version"] == 1 and out["settlement"]["gross_minor"] == 256
    assert waits and max(waits) < 2.0, waits


def test_a_republish_while_measuring_is_measured_again_not_stored_stale(world, database, monkeypatch) -> None:  # noqa: ANN001
    """Mid-measurement the window gets a new clearing revision (device 0 asked for 1 kW instead of
    2): the measurement of the old revision is not stored; the stored run is the new revision's."""
    deliver(database, world)
    real = settlement.measure
    calls: list[int] = []

    def measure_then_republish(session, row, program, w):  # noqa: ANN001, ANN202
        calls.append(w.revision)
        m = real(session, row, program, w)
        if len(calls) == 1:
            _new_revision(database, world, device=world["devices"][0], reduction_kw=1.0)
        return m

    monkeypatch.setattr(settlement, "measure", measure_then_republish)
    out = settlement.settle_window(database, world["program"], KEY, END + 600)
    assert calls == [1, 2]
    assert (out["version"], out["settlement"]["revision"]) == (1, 2)
    with database.transaction() as s:
        run = s.scalars(select(records.SettlementRun)).one()
        assert run.revision == 2
        row = {r.device_id: r for r in records.device_rows(s, run.id)}[world["devices"][0]]
        assert (row.energy_kwh, row.gross_minor) == (2.0, 48)  # 1 kW credited of 2 delivered: 8 × 6.5 c → 6


def _new_revision(database, world, *, device: int, reduction_kw: float) -> None:  # noqa: ANN001
    """The window's clearings and setpoints copied as revision + 1, one device's setpoint changed."""
    with database.transaction() as s:
        w = store.window(s, world["program"], KEY)
        for c in store.clearings(s, w.id, w.revision):
            copy = store.Clearing(**{k: getattr(c, k) for k in store.Clearing.__table__.columns.keys() if k != "id"})
            copy.revision = w.revision + 1
            s.add(copy)
            s.flush()
            for sp in store.setpoints(s, c.id):
                values = {k: getattr(sp, k) for k in store.Setpoint.__table__.columns.keys()}
                values["clearing_id"] = copy.id
                if sp.device_id == device:
                    values["reduction_kw"] = reduction_kw
                s.add(store.Setpoint(**values))
        w.revision += 1


def test_two_settlements_racing_store_one_version(world, database, monkeypatch) -> None:  # noqa: ANN001
    """Another process settles the window while this one measures: one version is stored, and
    this one finds it (same digest) instead of writing a second."""
    deliver(database, world)
    real = settlement.measure
    other: list[object] = []

    def measure_while_another_settles(*args, **kw):  # noqa: ANN002, ANN003, ANN202
        m = real(*args, **kw)
        if not other:
            monkeypatch.setattr(settlement, "measure", real)
            other.append(settlement.settle_window(database, world["program"], KEY, END + 600))
        return m

    monkeypatch.setattr(settlement, "measure", measure_while_another_settles)
    assert settlement.settle_window(database, world["program"], KEY, END + 601) is None
    assert other[0]["version"] == 1
    with database.transaction() as s:
        assert s.scalar(select(func.count()).select_from(records.SettlementRun)) == 1
        assert s.scalars(select(records.SettlementRun.checked_time)).one() == END + 601


# ------------------------------------------------------------------------------------ re-checks
def test_a_recheck_measures_only_when_the_readings_changed(world, database, monkeypatch) -> None:  # noqa: ANN001
    deliver(database, world)
    first = settlement.settle_window(database, world["program"], KEY, END + 600)
    with database.transaction() as s:
        assert s.scalars(select(records.SettlementRun.readings_fingerprint)).one()
    real = settlement.measure
    calls: list[int] = []
    monkeypatch.setattr(settlement, "measure", lambda *a, **k: calls.append(1) or real(*a, **k))
    assert settlement.settle_window(database, world["program"], KEY, END + 1500) is None
    assert calls == []  # nothing changed: nothing measured
    # a reading outside what the baseline reads: still nothing to measure
    mirror(database, world["lfdis"][0], END + 3600, [777], now=END + 1600)
    assert settlement.settle_window(database, world["program"], KEY, END + 2400) is None
    assert calls == []
    # device 1's event readings re-posted with another value (no new reading: the count is the same)
    mirror(database, world["lfdis"][1], START, [3000] * 8, now=END + 2500)
    again = settlement.settle_window(database, world["program"], KEY, END + 3300)
    assert calls == [1] and (again["version"], again["reason"]) == (2, "late_readings")
    assert again["settlement"]["gross_minor"] == first["settlement"]["gross_minor"] - 48
    with database.transaction() as s:
        runs = records.runs(s, store.window(s, world["program"], KEY).id)
        assert [r.checked_time for r in runs] == [END + 2400, END + 3300]


def test_a_run_without_a_fingerprint_is_measured_once_then_rechecked_cheaply(world, database, monkeypatch) -> None:  # noqa: ANN001
    """Runs stored before the fingerprint existed: the first re-check measures (same digest,
    nothing written) and records it; the next measures nothing."""
    deliver(database, world)
    settlement.settle_window(database, world["program"], KEY, END + 600)
    with database.transaction() as s:
        s.scalars(select(records.SettlementRun)).one().readings_fingerprint = None
    real = settlement.measure
    calls: list[int] = []
    monkeypatch.setattr(settlement, "measure", lambda *a, **k: calls.append(1) or real(*a, **k))
    assert settlement.settle_window(database, world["program"], KEY, END + 1500) is None
    assert settlement.settle_window(database, world["program"], KEY, END + 2400) is None
    assert calls == [1]
    with database.transaction() as s:
        assert s.scalar(select(func.count()).select_from(records.SettlementRun)) == 1


# ------------------------------------------------------------------------------------ the scheduler
def test_the_scheduler_publishes_while_a_settlement_pass_runs(world, database, monkeypatch) -> None:  # noqa: ANN001
    """settle() takes its own lock: a long settlement pass does not hold up publishing."""
    from server.jobs.scheduler import FlexScheduler
    from tests.jobs.test_scheduler import Clock

    started, release = threading.Event(), threading.Event()

    def slow_pass(db, now):  # noqa: ANN001, ANN202
        started.set()
        assert release.wait(20)
        return []

    monkeypatch.setattr(settlement, "run_due", slow_pass)
    sched = FlexScheduler(database, clock=Clock(END + 600))
    t = threading.Thread(target=sched.settle)
    t.start()
    try:
        assert started.wait(10)
        t0 = time.perf_counter()
        done = sched.reconcile(settle=False)  # takes the publishing lock: free
        assert done and all(o["action"] != "settled" for o in done)
        assert sched.publish(world["program"], KEY) is None  # published already: nothing to do, at once
        assert time.perf_counter() - t0 < 5
    finally:
        release.set()
        t.join(20)


def test_a_leader_runs_settlement_as_its_own_job(database) -> None:  # noqa: ANN001
    from server.jobs.scheduler import FlexScheduler
    from tests.jobs.test_scheduler import _jobs, _wait

    sched = FlexScheduler(database, reconcile_seconds=3600, lease_seconds=3)
    sched.start()
    try:
        assert _wait(lambda: sched.leading, 10)
        assert _wait(lambda: {"reconcile", "settle"} <= _jobs(database), 10), _jobs(database)
        job = sched._aps.get_job("settle")
        assert job.executor == "settlement" and sched._aps.get_job("reconcile").executor == "default"
    finally:
        sched.stop()
