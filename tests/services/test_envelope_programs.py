"""Envelope programs through the services (server.services.flex.envelopes, publishing, settlement):
one DERControl per member device with the site's csipaus limits, idempotent, republished and
superseded when the envelope changes, cancelled with a leaving device; settled from mirrored
readings as export curtailed against the baseline (hand-computed)."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from server.db import derp as der_store
from server.db import flex as store
from server.db import settlement as records
from server.services.flex import enrollments, envelopes, programs as flex, publishing, settlement, windows
from server.services.sep2 import connection_points
from tests.builders import DAY, END, KEY, PUBLISH_AT, START, lfdi, mirror, rated_battery

NMI = "41020000002"
ENVELOPE_PROGRAM = {
    "name": "Solar soak", "currency": "USD",
    "window": {"weekdays": ["mon", "tue", "wed", "thu", "fri"], "start": "16:00", "end": "18:00",
               "tz": "America/New_York"},
    "price_cap": 0.5, "incentive": {"kind": "fixed", "rate_per_kwh": 0.10, "under_delivery_per_kwh": 0.20},
    "eligible_kinds": ["battery", "pv"], "lead_time_s": 3600, "randomize_start_s": 30,
    "envelope": {"export_limit_kw": 1.5},
    "measurement": {"interval_s": 900, "delay_s": 600, "resettle_days": 2,
                    "baseline": {"x": 3, "y": 3, "min_days": 3, "lookback_days": 10, "day_types": "any"}},
}


@pytest.fixture
def world(database):  # noqa: ANN001, ANN201
    now = PUBLISH_AT - 10 * DAY
    lfdis = [lfdi(f"site-{i}") for i in range(3)]
    with database.transaction() as s:
        devices = [rated_battery(s, x, now) for x in lfdis]
        connection_points.set_for_device(s, devices[0], NMI)
        program = flex.create_program(s, ENVELOPE_PROGRAM, now)
        enrolled = [enrollments.enroll(s, program["id"], {"device_id": d, "customer": f"customer-{i}"}, now)["id"]
                    for i, d in enumerate(devices)]
        windows.plan_windows(s, PUBLISH_AT - DAY, 7 * DAY)
    return {"program": program["id"], "der_program": program["der_program_id"], "devices": devices,
            "lfdis": lfdis, "enrollments": enrolled}


def events(database, der_program: int) -> list:  # noqa: ANN001
    with database.transaction() as s:
        ev = der_store.DerEvent
        return list(s.execute(select(ev.mrid, ev.device_id, ev.start, ev.duration, ev.base, ev.controls,
                                     ev.cancelled_at, ev.response_required, ev.randomize_start)
                              .where(ev.program_id == der_program).order_by(ev.id)))


def test_each_member_gets_one_control_with_the_sites_export_limit(world, database) -> None:  # noqa: ANN001
    assert publishing.run_window(database, world["program"], KEY, PUBLISH_AT - 1) is None
    out = publishing.run_window(database, world["program"], KEY, PUBLISH_AT)
    assert (out["action"], out["revision"], out["devices"], out["skipped_count"]) == ("publish", 1, 3, 0)
    assert "export ≤ 1.5 kW per site" in out["summary"]
    [iv] = out["intervals"]  # no interval_s: one control for the whole window
    assert (iv["requested_kw"], iv["quantity_kw"], iv["price"], iv["devices"]) == (0.0, 0.0, 0.10, 3)
    rows = events(database, world["der_program"])
    assert sorted(r.device_id for r in rows) == sorted(world["devices"])
    for r in rows:
        assert (r.start, r.duration, r.response_required, r.randomize_start, r.cancelled_at) == (START, 7200, "03", 30, None)
        assert r.controls == "opModExpLimW"
        assert "csipaus:opModExpLimW" in r.base and "<value>1500</value>" in r.base and "opModFixedW" not in r.base
    with database.transaction() as s:
        w = store.window(s, world["program"], KEY)
        assert (w.state, w.revision) == ("published", 1)
        points = {p.device_id: p for p in store.setpoints(s, store.clearings(s, w.id, 1)[0].id)}
        assert {p.event_mrid for p in points.values()} == {r.mrid for r in rows}
        site = json.loads(points[world["devices"][0]].curve)
        assert site == {"source": "envelope", "envelope": {"export_limit_kw": 1.5, "import_limit_kw": None},
                        "connection_point_id": NMI}
        assert json.loads(points[world["devices"][1]].curve)["connection_point_id"] is None
        assert all((p.reduction_kw, p.power_kw, p.device_price) == (0.0, 1.5, 0.10) for p in points.values())
    # the scheduler running it again publishes nothing twice
    assert publishing.run_window(database, world["program"], KEY, PUBLISH_AT + 60) is None
    assert len(events(database, world["der_program"])) == 3


def test_a_changed_envelope_before_the_start_republishes_and_supersedes(world, database) -> None:  # noqa: ANN001
    publishing.run_window(database, world["program"], KEY, PUBLISH_AT)
    first = {r.mrid for r in events(database, world["der_program"])}
    with database.transaction() as s:
        flex.update_program(s, world["program"], {"envelope": {"export_limit_kw": 0.5}}, PUBLISH_AT + 10)
    out = publishing.run_window(database, world["program"], KEY, PUBLISH_AT + 20)
    assert (out["action"], out["revision"]) == ("republish", 2)
    rows = events(database, world["der_program"])
    # nothing deleted; the same modes: the new events supersede the old ones (2030.5 rule), none cancelled
    assert len(rows) == 6 and all(r.cancelled_at is None for r in rows)
    new = [r for r in rows if r.mrid not in first]
    assert {r.device_id for r in new} == set(world["devices"])
    assert all(r.controls == "opModExpLimW" and "<value>500</value>" in r.base for r in new)
    # other modes (an import limit as well) do not supersede: the old events are cancelled
    with database.transaction() as s:
        flex.update_program(s, world["program"], {"envelope": {"export_limit_kw": 0.5, "import_limit_kw": 10}},
                            PUBLISH_AT + 30)
    assert publishing.run_window(database, world["program"], KEY, PUBLISH_AT + 40)["revision"] == 3
    rows = events(database, world["der_program"])
    latest = [r for r in rows if r.controls == "opModImpLimW opModExpLimW"]
    assert len(rows) == 9 and len(latest) == 3 and all(r.cancelled_at is None for r in latest)
    assert all(r.cancelled_at == PUBLISH_AT + 40 for r in rows if r.mrid not in first and r not in latest)
    assert all("<value>10000</value>" in r.base for r in latest)


def test_a_device_leaving_before_the_start_has_its_control_cancelled(world, database) -> None:  # noqa: ANN001
    publishing.run_window(database, world["program"], KEY, PUBLISH_AT)
    with database.transaction() as s:
        enrollments.enrollment_event(s, world["program"], world["enrollments"][2], "cancel", PUBLISH_AT + 10)
    rows = {r.device_id: r for r in events(database, world["der_program"])}
    assert rows[world["devices"][2]].cancelled_at == PUBLISH_AT + 10
    assert rows[world["devices"][0]].cancelled_at is None


def test_settled_as_export_curtailed_against_the_baseline(world, database) -> None:  # noqa: ANN001
    """Five earlier days the sites exported 4 kW over the window's hours (baseline: 4 kW export).
    In the window, site 0 held 1.5 kW (the envelope), site 1 exported 2 kW (0.5 over), site 2 sent
    nothing. Per 15-minute interval: required 4 − 1.5 = 2.5 kW; site 0 curtailed 2.5 kW →
    0.625 kWh × 10 c = 6.25 → 6 c (half-even), × 8 = 48; site 1 curtailed 2 kW → 0.5 kWh × 10 c =
    5 c, × 8 = 40, less 0.125 kWh outside the envelope × 20 c = 2.5 → 2 c, × 8 = 16: 24."""
    for x in world["lfdis"]:
        for back in range(1, 6):
            mirror(database, x, START - back * DAY - 3600, [-4000] * 12)
    publishing.run_window(database, world["program"], KEY, PUBLISH_AT)
    mirror(database, world["lfdis"][0], START, [-1500] * 8, now=END)
    mirror(database, world["lfdis"][1], START, [-2000] * 8, now=END)
    with database.transaction() as s:
        assert (world["program"], KEY) in settlement.due(s, END + 600)
    out = settlement.settle_window(database, world["program"], KEY, END + 600)
    s_ = out["settlement"]
    assert s_["gross_minor"] == 48 + 24 and s_["total_minor"] == 72
    assert s_["envelope"] == {"export_limit_kw": 1.5, "import_limit_kw": None, "required_kwh": 15.0,
                              "curtailed_kwh": 9.0, "excess_kwh": 1.0, "device_intervals_outside": 8,
                              "device_intervals_measured": 16}
    for iv in s_["intervals"]:
        assert (iv["cleared_kw"], iv["delivered_kw"], iv["credited_kw"], iv["excess_kw"]) == (7.5, 4.5, 4.5, 0.5)
        assert iv["price"] == pytest.approx(0.10)
    with database.transaction() as s:
        run = records.current_run(s, store.window(s, world["program"], KEY).id)
        rows = {r.device_id: r for r in records.device_rows(s, run.id)}
        a, b, c = (rows[d] for d in world["devices"])
        assert [r.gross_minor for r in (a, b, c)] == [48, 24, 0]
        assert [r.energy_kwh for r in (a, b, c)] == [5.0, 4.0, 0.0]
        first = json.loads(b.detail)["intervals"][0]
        assert (first["baseline_kw"], first["actual_kw"], first["reduction_kw"], first["setpoint_kw"]) == \
            (-4.0, -2.0, 2.0, 2.5)
        assert [ln["kind"] for ln in first["lines"]] == ["delivery", "under_delivery"]
        assert json.loads(c.detail)["flags"] == ["actual_missing"]
    # the same inputs settle to the same numbers: nothing written again
    assert settlement.settle_window(database, world["program"], KEY, END + 700) is None
    # what the sites exported around the window (the demo's picture)
    with database.transaction() as s:
        got = envelopes.window_export(s, world["program"], KEY, margin_s=0)
        png = envelopes.window_export_png(s, world["program"], KEY, margin_s=0)
    assert (got["limit_kw"], got["device_ids"], got["start"], got["end"]) == (1.5, world["devices"], START, END)
    assert got["times"] == list(range(START, END, 900))
    assert got["export_kw"] == [[1.5] * 8, [2.0] * 8, [None] * 8]
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5000
