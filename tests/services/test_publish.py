"""Publishing a program's peak window (server.services.flex.publishing): one DERControl per device per
interval from an exact clearing, idempotent, re-cleared before the start, cancellable, never
deleted, and all-or-nothing when the process dies in the middle."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from sqlalchemy import func, select

from server.db import derp as der_store
from server.db import flex as store
from server.services.flex import enrollments, programs as flex, publishing, windows
from tests.builders import lfdi, rated_battery

# Monday 2026-11-30; the window is 16:00–18:00 in New York (EST, UTC-5) = 21:00–23:00 UTC
START = int(datetime(2026, 11, 30, 21, 0, tzinfo=timezone.utc).timestamp())
END = START + 7200
PUBLISH_AT = START - 3600
KEY = "2026-11-30"
PROGRAM = {
    "name": "Peak Saver", "currency": "USD",
    "window": {"weekdays": ["mon", "tue", "wed", "thu", "fri"], "start": "16:00", "end": "18:00",
               "tz": "America/New_York"},
    "requested_kw": 6.0, "interval_s": 3600, "price_cap": 0.5,
    "incentive": {"kind": "pay_as_clear"}, "eligible_kinds": ["battery"],
    "lead_time_s": 3600, "randomize_start_s": 30,
}
# each battery offers 0 kW at 0.10 rising to 5 kW of discharge at 0.50 (the seed's power convention)
OFFER = {"power": [[0.10, 0.0], [0.50, 5.0]]}


@pytest.fixture
def world(database):  # noqa: ANN001, ANN201
    now = PUBLISH_AT - 86_400
    with database.transaction() as s:
        devices = [rated_battery(s, lfdi(f"battery-{i}"), now) for i in range(3)]
        program = flex.create_program(s, PROGRAM, now)
        enrolled = [enrollments.enroll(s, program["id"], {"device_id": d, "customer": f"c{i}", "offer": OFFER}, now)["id"]
                       for i, d in enumerate(devices)]
    return {"program": program["id"], "der_program": program["der_program_id"], "devices": devices,
            "enrollments": enrolled}


def events(database, der_program: int) -> list:  # noqa: ANN001
    with database.transaction() as s:
        ev = der_store.DerEvent
        return list(s.execute(select(ev.mrid, ev.device_id, ev.start, ev.duration, ev.base, ev.cancelled_at,
                                     ev.response_required, ev.randomize_start)
                              .where(ev.program_id == der_program).order_by(ev.id)))


def window(database, program: int):  # noqa: ANN001, ANN201
    with database.transaction() as s:
        w = store.window(s, program, KEY)
        return None if w is None else (w.state, w.revision, w.note)


def test_nothing_before_the_publishing_time_then_one_control_per_device_and_interval(world, database) -> None:  # noqa: ANN001
    assert publishing.run_window(database, world["program"], KEY, PUBLISH_AT - 1) is None
    out = publishing.run_window(database, world["program"], KEY, PUBLISH_AT)
    assert out["action"] == "publish" and out["devices"] == 3 and out["skipped_count"] == 0
    # F(p) = 3 × 12.5 (p − 0.10) = 6 kW  →  p* = 0.26, each battery 2 kW = 40 % of 5 kW
    for iv in out["intervals"]:
        assert iv["price"] == pytest.approx(0.26) and iv["quantity_kw"] == pytest.approx(6.0) and iv["feasible"]
    rows = events(database, world["der_program"])
    assert len(rows) == 6
    assert sorted((r.device_id, r.start) for r in rows) == sorted(
        (d, s) for d in world["devices"] for s in (START, START + 3600))
    for r in rows:
        assert "<opModFixedW>4000</opModFixedW>" in r.base
        assert (r.duration, r.response_required, r.randomize_start, r.cancelled_at) == (3600, "03", 30, None)
    assert window(database, world["program"])[:2] == ("published", 1)


def test_running_a_job_twice_publishes_nothing_twice(world, database) -> None:  # noqa: ANN001
    assert publishing.run_window(database, world["program"], KEY, PUBLISH_AT) is not None
    assert publishing.run_window(database, world["program"], KEY, PUBLISH_AT) is None
    assert publishing.run_window(database, world["program"], KEY, PUBLISH_AT + 60) is None
    assert len(events(database, world["der_program"])) == 6


def test_setpoints_and_curves_are_kept_for_audit(world, database) -> None:  # noqa: ANN001
    publishing.run_window(database, world["program"], KEY, PUBLISH_AT)
    with database.transaction() as s:
        w = store.window(s, world["program"], KEY)
        (first, second) = store.clearings(s, w.id, 1)
        points = store.setpoints(s, first.id)
        assert sum(p.reduction_kw for p in points) == pytest.approx(first.quantity_kw)
        assert {p.device_id for p in points} == set(world["devices"])
        snap = json.loads(points[0].curve)
        assert snap == {"source": "power", "baseline_kw": 0.0, "points": [[0.1, 0.0], [0.5, 5.0]]}
        assert points[0].device_price == pytest.approx(0.26) and points[0].event_mrid


def test_a_changed_offer_before_the_start_clears_again_and_supersedes(world, database) -> None:  # noqa: ANN001
    publishing.run_window(database, world["program"], KEY, PUBLISH_AT)
    first = {r.mrid for r in events(database, world["der_program"])}
    with database.transaction() as s:  # one battery now offers its 5 kW from 0.10 on
        enrollments.update_offer(s, world["program"], world["enrollments"][0], {"power": [[0.10, 0.0], [0.11, 5.0]]},
                          PUBLISH_AT + 10)
    with database.transaction() as s:
        assert (world["program"], KEY) in windows.due_windows(s, PUBLISH_AT + 20)
    out = publishing.run_window(database, world["program"], KEY, PUBLISH_AT + 20)
    assert out["action"] == "republish" and out["revision"] == 2
    rows = events(database, world["der_program"])
    assert len(rows) == 12  # nothing deleted; the new events supersede the old (same program, overlapping)
    assert all(r.cancelled_at is None for r in rows)
    new = [r for r in rows if r.mrid not in first]
    assert {r.device_id for r in new} == set(world["devices"])
    assert publishing.run_window(database, world["program"], KEY, PUBLISH_AT + 30) is None


def test_a_device_leaving_before_the_start_has_its_controls_cancelled(world, database) -> None:  # noqa: ANN001
    publishing.run_window(database, world["program"], KEY, PUBLISH_AT)
    with database.transaction() as s:
        enrollments.enrollment_event(s, world["program"], world["enrollments"][2], "cancel", PUBLISH_AT + 10)
    rows = events(database, world["der_program"])
    gone = [r for r in rows if r.device_id == world["devices"][2]]
    assert len(gone) == 2 and all(r.cancelled_at == PUBLISH_AT + 10 for r in gone)
    out = publishing.run_window(database, world["program"], KEY, PUBLISH_AT + 20)
    assert out["revision"] == 2 and out["devices"] == 2
    # the two that stay clear 6 kW alone: 2 × 12.5 (p − 0.10) = 6 → p = 0.34, 3 kW each = 6000
    assert out["intervals"][0]["price"] == pytest.approx(0.34)
    live = [r for r in events(database, world["der_program"]) if r.cancelled_at is None]
    assert {r.device_id for r in live} == set(world["devices"][:2])


def test_once_started_a_window_is_not_moved_under_the_devices(world, database) -> None:  # noqa: ANN001
    publishing.run_window(database, world["program"], KEY, PUBLISH_AT)
    with database.transaction() as s:
        enrollments.update_offer(s, world["program"], world["enrollments"][0], None, START + 5)
    assert publishing.run_window(database, world["program"], KEY, START + 10) is None
    assert window(database, world["program"])[:2] == ("published", 1)


def test_cancelling_a_window_cancels_its_events_and_it_stays_cancelled(world, database) -> None:  # noqa: ANN001
    publishing.run_window(database, world["program"], KEY, PUBLISH_AT)
    with database.transaction() as s:
        windows.cancel_window(s, world["program"], KEY, PUBLISH_AT + 100)
    rows = events(database, world["der_program"])
    assert len(rows) == 6 and all(r.cancelled_at == PUBLISH_AT + 100 for r in rows)
    assert window(database, world["program"])[0] == "cancelled"
    assert publishing.run_window(database, world["program"], KEY, PUBLISH_AT + 200) is None


def test_a_window_found_late_is_published_late_and_one_found_ended_is_missed(world, database) -> None:  # noqa: ANN001
    out = publishing.run_window(database, world["program"], KEY, START + 600)  # the server was down
    assert out["action"] == "publish"
    assert {r.start for r in events(database, world["der_program"])} == {START, START + 3600}  # original times
    with database.transaction() as s:
        flex.get_program(s, world["program"], END + 86_400)  # plans the next days' windows
        windows.plan_windows(s, START + 86_400 - 7200, 3 * 86_400)
    nxt = "2026-12-01"
    out = publishing.run_window(database, world["program"], nxt, END + 86_400 + 1)
    assert out["action"] == "missed"
    with database.transaction() as s:
        w = store.window(s, world["program"], nxt)
        assert w.state == "missed" and "not published" in w.note and w.revision == 0


def test_a_crash_in_the_middle_of_a_publish_leaves_nothing_and_the_next_run_publishes(world, database, monkeypatch) -> None:  # noqa: ANN001
    real = store.add_setpoints
    calls = []

    def dying(session, rows):  # noqa: ANN001, ANN202
        calls.append(len(rows))
        if len(calls) == 2:  # the second interval: events and setpoints of the first are written
            raise SystemExit("the process is killed")
        return real(session, rows)

    monkeypatch.setattr(store, "add_setpoints", dying)
    with pytest.raises(SystemExit):
        publishing.run_window(database, world["program"], KEY, PUBLISH_AT)
    assert events(database, world["der_program"]) == []
    assert window(database, world["program"])[:2] == ("planned", 0)
    with database.transaction() as s:
        assert s.scalar(select(func.count()).select_from(store.Clearing)) == 0
    monkeypatch.setattr(store, "add_setpoints", real)
    assert publishing.run_window(database, world["program"], KEY, PUBLISH_AT + 5)["action"] == "publish"
    assert len(events(database, world["der_program"])) == 6


def test_an_infeasible_request_clears_best_effort_at_the_cap(world, database) -> None:  # noqa: ANN001
    with database.transaction() as s:
        flex.update_program(s, world["program"], {"requested_kw": 40.0}, PUBLISH_AT - 100)
    out = publishing.run_window(database, world["program"], KEY, PUBLISH_AT)
    iv = out["intervals"][0]
    assert not iv["feasible"] and iv["price"] == 0.5
    assert iv["quantity_kw"] == pytest.approx(15.0) and iv["available_at_cap_kw"] == pytest.approx(15.0)
    assert "INFEASIBLE" in out["summary"]
    assert all("<opModFixedW>10000</opModFixedW>" in r.base for r in events(database, world["der_program"]))


def test_moving_the_window_before_it_starts_cancels_the_controls_at_the_old_times(world, database) -> None:  # noqa: ANN001
    """The new controls do not overlap the old ones, so 2030.5 supersession would leave both: the
    old ones must be cancelled, or devices would act at both times."""
    publishing.run_window(database, world["program"], KEY, PUBLISH_AT)
    with database.transaction() as s:
        flex.update_program(s, world["program"], {"window": {**PROGRAM["window"], "start": "18:00", "end": "20:00"}},
                            PUBLISH_AT + 10)
    out = publishing.run_window(database, world["program"], KEY, PUBLISH_AT + 20)
    assert out is not None and out["revision"] == 2
    live = sorted({r.start for r in events(database, world["der_program"]) if r.cancelled_at is None})
    assert live == [START + 7200, START + 7200 + 3600]
