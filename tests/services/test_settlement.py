"""Measurement and settlement of a published window (server.services.flex.settlement): hand-computed
baselines, reductions and money from mirrored readings; stored, reproducible, re-settled (never
silently changed) when late readings arrive; the scheduler's pass settles after the delay."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from server.db import flex as store
from server.db import settlement as records
from server.services.flex import settlement, programs as flex, publishing, windows
from server.services.errors import Conflict
from tests.builders import (  # noqa: F401 - the world the settlement tests share
    DAY,
    END,
    EVENT_W,
    KEY,
    PROGRAM,
    PUBLISH_AT,
    START,
    deliver,
    make_world,
    mirror,
)


@pytest.fixture
def world(database):  # noqa: ANN001, ANN201
    return make_world(database)


def device_rows(database, version: int | None = None) -> dict[int, records.SettlementDevice]:  # noqa: ANN001
    with database.transaction() as s:
        w = store.window(s, world_program(s), KEY)
        run = records.current_run(s, w.id) if version is None else records.run(s, w.id, version)
        rows = {r.device_id: r for r in records.device_rows(s, run.id)}
        s.expunge_all()
        return rows


def world_program(s) -> int:  # noqa: ANN001
    return s.scalars(select(store.FlexProgram.id)).one()


def test_hand_computed_reduction_energy_and_money(world, database) -> None:  # noqa: ANN001
    deliver(database, world)
    out = settlement.settle_window(database, world["program"], KEY, END + 600)
    s = out["settlement"]
    assert (out["version"], out["reason"], s["devices"], s["interval_s"]) == (1, "scheduled", 3, 900)
    assert s["methods"] == {"x_of_y": 3}
    # per 15-minute interval: requested 6, cleared 3 × 2, delivered 2 + 1 + 3 = 6, credited 2 + 1 + 2 = 5
    assert len(s["intervals"]) == 8
    for iv in s["intervals"]:
        assert (iv["requested_kw"], iv["cleared_kw"], iv["delivered_kw"], iv["credited_kw"], iv["measured_devices"]) \
            == (6.0, 6.0, 6.0, 5.0, 3)
        assert iv["price"] == pytest.approx(0.26)
    assert (s["requested_kwh"], s["cleared_kwh"], s["delivered_kwh"], s["credited_kwh"]) == (12.0, 12.0, 12.0, 10.0)
    # credited 4, 2, 4 kWh at 0.26 $/kWh, one line per 15-minute interval rounded half-even:
    # 0.5 kWh × 0.26 = 13 c (×8 = 104); 0.25 kWh × 0.26 = 6.5 c → 6 (×8 = 48, not 52)
    rows = device_rows(database)
    a, b, c = (rows[d] for d in world["devices"])
    assert [r.gross_minor for r in (a, b, c)] == [104, 48, 104]
    assert [r.energy_kwh for r in (a, b, c)] == [4.0, 2.0, 4.0]
    assert [r.performance for r in (a, b, c)] == [1.0, 0.5, 1.0]
    assert [r.customer for r in (a, b, c)] == ["customer-0", "customer-1", "customer-2"]
    # 104 split: tax 104/10 = 10.4, grid 20.8, platform 10.4, prosumer 62.4 → floors 62/20/10/10, the two
    # leftover cents by largest remainder: grid (.8), then the prosumer (first of the .4 ties)
    flows = {f["role"]: f["amount_minor"] for f in json.loads(a.detail)["flows"]}
    assert flows == {"SELLER": 63, "GRID_OPERATOR": 21, "AGGREGATOR": 10, "GOVERNMENT": 10}
    assert s["gross_minor"] == 256 and s["total_minor"] == 256
    assert sum(f["amount_minor"] for f in s["flows"]) == 256
    detail = json.loads(b.detail)
    assert detail["days_used"] == ["2026-11-29", "2026-11-28", "2026-11-27"]
    first = detail["intervals"][0]
    assert (first["baseline_kw"], first["actual_kw"], first["reduction_kw"], first["setpoint_kw"]) == (3.0, 2.0, 1.0, 2.0)
    assert first["lines"] == [{"kind": "delivery", "energy_kwh": "0.25", "price_per_kwh": "0.26", "amount_minor": 6}]
    assert detail["readings"]["meter_reading_ids"] and detail["readings"]["intervals_read"] > 8


def test_re_running_gives_identical_numbers_and_writes_nothing(world, database) -> None:  # noqa: ANN001
    deliver(database, world)
    first = settlement.settle_window(database, world["program"], KEY, END + 600)
    assert settlement.settle_window(database, world["program"], KEY, END + 700) is None
    with database.transaction() as s:
        assert s.scalar(select(func.count()).select_from(records.SettlementRun)) == 1
        run = s.scalars(select(records.SettlementRun)).one()
        assert json.loads(run.summary)["inputs_digest"] == first["settlement"]["inputs_digest"]
        assert run.checked_time == END + 700


def test_a_late_reading_makes_a_recorded_resettlement(world, database) -> None:  # noqa: ANN001
    # device 2 has not reported yet: its intervals are unmeasured, neither paid nor charged
    deliver(database, world, watts=EVENT_W[:2])
    v1 = settlement.settle_window(database, world["program"], KEY, END + 600)
    assert v1["settlement"]["gross_minor"] == 152
    c = device_rows(database)[world["devices"][2]]
    assert (c.gross_minor, json.loads(c.detail)["flags"]) == (0, ["actual_missing"])
    mirror(database, world["lfdis"][2], START, [0] * 8, now=END + 3000)  # the late readings
    v2 = settlement.settle_window(database, world["program"], KEY, END + 3600)
    assert (v2["version"], v2["reason"]) == (2, "late_readings")
    assert v2["settlement"]["changes"] == {"previous_version": 1, "delivered_kwh": [6.0, 12.0],
                                           "gross_minor": [152, 256], "total_minor": [152, 256]}
    with database.transaction() as s:
        runs = records.runs(s, store.window(s, world["program"], KEY).id)
        assert [(r.version, r.superseded_time) for r in runs] == [(1, END + 3600), (2, None)]
    assert device_rows(database, version=1)[world["devices"][2]].gross_minor == 0  # the old figures stay
    assert device_rows(database)[world["devices"][2]].gross_minor == 104


def test_the_scheduler_pass_waits_for_the_delay_then_rechecks(world, database) -> None:  # noqa: ANN001
    deliver(database, world)
    assert settlement.run_due(database, END + 599) == []  # delay_s 600
    [out] = settlement.run_due(database, END + 600)
    assert out["version"] == 1
    assert settlement.run_due(database, END + 601) == []  # settled; recheck not due yet
    mirror(database, world["lfdis"][1], START, [3000] * 8, now=END + 1000)  # device 1 did nothing after all
    assert settlement.run_due(database, END + 600 + settlement.RECHECK_S - 1) == []
    [again] = settlement.run_due(database, END + 600 + settlement.RECHECK_S)
    assert (again["version"], again["reason"]) == (2, "late_readings")
    assert again["settlement"]["gross_minor"] == 208
    # after the re-settlement period nothing is looked at again
    mirror(database, world["lfdis"][0], START, [3000] * 8, now=END + 3 * DAY)
    assert settlement.run_due(database, END + 3 * DAY) == []


def test_no_settlement_before_the_end_or_of_an_unpublished_window(world, database) -> None:  # noqa: ANN001
    with pytest.raises(Conflict, match="can be settled after"):
        settlement.settle_window(database, world["program"], KEY, END - 1)
    with pytest.raises(Conflict, match="not published"):
        settlement.settle_window(database, world["program"], "2026-12-01", END + DAY)


def test_a_window_published_with_no_devices_settles_to_nothing(database) -> None:  # noqa: ANN001
    with database.transaction() as s:
        program = flex.create_program(s, {**PROGRAM, "name": "Nobody Came"}, PUBLISH_AT - DAY)
        windows.plan_windows(s, PUBLISH_AT - DAY, 7 * DAY)
    assert publishing.run_window(database, program["id"], KEY, PUBLISH_AT)["devices"] == 0
    out = settlement.settle_window(database, program["id"], KEY, END + 600)
    s = out["settlement"]
    assert (s["devices"], s["gross_minor"], s["total_minor"], s["credited_kwh"], s["flows"]) == (0, 0, 0, 0.0, [])
    assert "USD 0.00 paid in all" in out["summary"]


def test_an_inexact_tax_rate_reads_as_a_percentage(world, database) -> None:  # noqa: ANN001
    deliver(database, world)
    settlement.settle_window(database, world["program"], KEY, END + 600)
    flows = json.loads(device_rows(database)[world["devices"][0]].detail)["flows"]
    assert [f["description"] for f in flows if f["role"] == "GOVERNMENT"] == ["Tax (inclusive 11.11%)"]


def test_an_excluded_outage_day_is_not_a_baseline_day(database) -> None:  # noqa: ANN001
    # 2026-11-28 had an outage: with 3 of 3 days wanted and 5 days of history, the next is used
    world = make_world(database, measurement={**PROGRAM["measurement"], "excluded_days": ["2026-11-28"]})
    deliver(database, world)
    settlement.settle_window(database, world["program"], KEY, END + 600)
    detail = json.loads(device_rows(database)[world["devices"][0]].detail)
    assert detail["days_used"] == ["2026-11-29", "2026-11-27", "2026-11-26"]


def test_old_settlements_never_crowd_out_the_recent_ones_when_rechecking(world, database) -> None:  # noqa: ANN001
    deliver(database, world)
    settlement.settle_window(database, world["program"], KEY, END + 600)
    with database.transaction() as s:  # 30 stale runs of long-gone windows, checked long ago
        w = store.window(s, world["program"], KEY)
        for i in range(30):
            old = store.FlexWindow(program_id=world["program"], window_key=f"old-{i}", start=START - (40 + i) * DAY,
                                   end=END - (40 + i) * DAY, publish_at=0, state="published", revision=1,
                                   updated_time=0)
            s.add(old)
            s.flush()
            s.add(records.SettlementRun(window_id=old.id, version=1, reason="scheduled", revision=1, interval_s=900,
                                        currency="USD", inputs_digest="x", summary="{}", created_time=0,
                                        checked_time=0, superseded_time=None))
        assert w is not None
    with database.transaction() as s:
        assert settlement.recheck_due(s, END + 600 + settlement.RECHECK_S, limit=5) == [(world["program"], KEY)]
