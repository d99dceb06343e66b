"""programs.model: the program JSON format, its validation, requests per window, publish time."""

from __future__ import annotations

import json
from datetime import date, datetime, time, timedelta, timezone

import pytest

from programs.kinds import DeviceKind
from programs.model import Incentive, Program, ProgramError, Request
from programs.windows import Window, WindowRule, windows_between

UTC = timezone.utc


def utc(*a: int) -> datetime:
    return datetime(*a, tzinfo=UTC)


def base(**over) -> dict:
    d = {
        "name": "Summer evening peak",
        "currency": "USD",
        "window": {"weekdays": ["mon", "tue", "wed", "thu", "fri"], "start": "16:00", "end": "21:00",
                   "tz": "America/New_York"},
        "requested_kw": 500,
        "price_cap": 0.5,
        "incentive": {"kind": "pay_as_clear"},
        "eligible_kinds": ["battery", "ev_charger", "load"],
    }
    d.update(over)
    return {k: v for k, v in d.items() if v is not ...}


def errors_of(d: dict) -> list[str]:
    with pytest.raises(ProgramError) as e:
        Program.from_dict(d)
    assert isinstance(e.value, ValueError)
    assert str(e.value).startswith("invalid program: ")
    return e.value.errors


# --- format ----------------------------------------------------------------------------------------
def test_minimal_program_takes_the_documented_defaults():
    p = Program.from_dict(base())
    assert p.requested_kw == 500.0 and isinstance(p.requested_kw, float)
    assert p.window == WindowRule(frozenset(range(5)), time(16), time(21), "America/New_York")
    assert p.eligible_kinds == frozenset({DeviceKind.BATTERY, DeviceKind.EV_CHARGER, DeviceKind.LOAD})
    assert (p.interval_s, p.price_floor, p.primacy, p.lead_time_s, p.randomize_start_s) == (None, 0.0, 128, 3600, 0)
    assert (p.grid_node_ids, p.description) == ((), "")
    assert p.incentive == Incentive("pay_as_clear", None, 0.0)


def test_round_trip_is_exact_both_ways_and_json_safe():
    d = base(requested_kw=[300.0, 500.0, 500.0, 400.0, 200.0], interval_s=3600, price_floor=0.01,
             incentive={"kind": "fixed", "rate_per_kwh": 0.25, "under_delivery_per_kwh": 0.05},
             primacy=10, lead_time_s=86400, randomize_start_s=300, grid_node_ids=["feeder-7", "xfmr-12"],
             description="Evening peak")
    p = Program.from_dict(d)
    out = p.to_dict()
    assert Program.from_dict(out) == p
    assert Program.from_dict(json.loads(json.dumps(out))) == p
    assert Program.from_dict(out).to_dict() == out
    assert out["eligible_kinds"] == ["battery", "ev_charger", "load"]
    assert out["window"] == d["window"]
    assert out["requested_kw"] == d["requested_kw"]
    assert set(out) == {"name", "currency", "window", "requested_kw", "interval_s", "price_cap", "price_floor",
                        "incentive", "primacy", "lead_time_s", "randomize_start_s", "eligible_kinds",
                        "grid_node_ids", "description", "measurement"}


def test_weekday_numbers_are_accepted_and_written_back_as_names():
    p = Program.from_dict(base(window={"weekdays": [0, 1, 2, 3, 4], "start": "16:00", "end": "21:00",
                                       "tz": "America/New_York"}))
    assert p.to_dict()["window"]["weekdays"] == ["mon", "tue", "wed", "thu", "fri"]


def test_constructor_normalises_lists_and_kind_names():
    rule = WindowRule(frozenset({0}), time(16), time(18), "UTC")
    p = Program("P", "EUR", rule, [1, 2], 1, Incentive("pay_as_clear"), ["pv"], interval_s=3600,  # type: ignore[arg-type]
                grid_node_ids=["n1"])  # type: ignore[arg-type]
    assert p.requested_kw == (1.0, 2.0)
    assert p.eligible_kinds == frozenset({DeviceKind.PV})
    assert p.grid_node_ids == ("n1",)
    assert p.price_cap == 1.0 and isinstance(p.price_cap, float)


def test_constructor_validates_too():
    rule = WindowRule(frozenset({0}), time(16), time(18), "UTC")
    with pytest.raises(ProgramError, match="currency: must be an ISO 4217 code"):
        Program("P", "euro", rule, 5.0, 1.0, Incentive("pay_as_clear"), frozenset({DeviceKind.PV}))
    with pytest.raises(ProgramError, match="window: must be a WindowRule"):
        Program("P", "EUR", {"tz": "UTC"}, 5.0, 1.0, Incentive("pay_as_clear"), frozenset({DeviceKind.PV}))  # type: ignore[arg-type]


# --- errors ----------------------------------------------------------------------------------------
def test_every_wrong_field_is_named_in_one_error():
    errs = errors_of(base(name="", currency="usd", price_cap=0, primacy=256, lead_time_s=-1, colour="red",
                          window={"weekdays": [], "start": "16:00", "end": "21:00", "tz": "Nowhere/City"},
                          incentive={"kind": "fixed"}, eligible_kinds=["toaster"]))
    fields = {m.split(":")[0] for m in errs}
    assert fields == {"name", "currency", "price_cap", "primacy", "lead_time_s", "colour", "window.weekdays",
                      "window.tz", "incentive.rate_per_kwh", "eligible_kinds"}


def test_missing_required_fields_are_named():
    errs = errors_of({"name": "x"})
    assert sorted(errs) == sorted(f"{k}: required" for k in
                                  ("currency", "window", "requested_kw", "price_cap", "incentive", "eligible_kinds"))


def test_non_object_is_rejected():
    assert errors_of(["not", "an", "object"]) == ["program: must be a JSON object, got list"]  # type: ignore[arg-type]


@pytest.mark.parametrize("field, value, expected", [
    ("name", "x" * 101, "name: must be at most 100 characters, got 101"),
    ("name", "   ", "name: must be a non-blank text"),
    ("currency", "US", "currency: must be an ISO 4217 code"),
    ("requested_kw", 0, "requested_kw: must be greater than 0, got 0"),
    ("requested_kw", True, "requested_kw: must be a number, got True"),
    ("requested_kw", float("nan"), "requested_kw: must be a finite number"),
    ("requested_kw", [], "requested_kw: a profile needs at least one entry"),
    ("requested_kw", "500", "requested_kw: must be a number, got '500'"),
    ("price_cap", -1, "price_cap: must be greater than 0"),
    ("price_floor", -0.01, "price_floor: must be 0 or more"),
    ("price_floor", 0.5, "price_floor: must be below price_cap (0.5 >= 0.5)"),
    ("primacy", 1.5, "primacy: must be a whole number, got 1.5"),
    ("primacy", -1, "primacy: must be between 0 and 255, got -1"),
    ("lead_time_s", 7 * 86400 + 1, "lead_time_s: must be between 0 and 604800 seconds (7 days)"),
    ("randomize_start_s", 3601, "randomize_start_s: must be between 0 and 3600 seconds"),
    ("interval_s", 30, "interval_s: must be between 60 and 86400 seconds, got 30"),
    ("interval_s", 6 * 3600, "interval_s: 21600 s is longer than the window (18000 s)"),
    ("eligible_kinds", [], "eligible_kinds: at least one device kind is required"),
    ("eligible_kinds", "battery", "eligible_kinds: must be a JSON list"),
    ("grid_node_ids", ["a", "a"], "grid_node_ids: a grid node id is listed twice"),
    ("grid_node_ids", ["a", ""], "grid_node_ids: grid node id '' must be a non-blank text"),
    ("description", "é" * 17, "description: must fit the 2030.5 DERProgram description: at most 32 bytes in UTF-8, got 34"),
    ("description", 5, "description: must be a text"),
    ("incentive", "pay_as_clear", "incentive: must be an object"),
    ("incentive", {"kind": "auction"}, "incentive.kind: must be one of pay_as_clear, fixed, got 'auction'"),
    ("incentive", {"kind": "pay_as_clear", "rate_per_kwh": 0.2},
     "incentive.rate_per_kwh: must be null for pay_as_clear"),
    ("incentive", {"kind": "fixed", "rate_per_kwh": 0}, "incentive.rate_per_kwh: a fixed incentive needs a rate"),
    ("incentive", {"kind": "fixed", "rate_per_kwh": 0.2, "under_delivery_per_kwh": -1},
     "incentive.under_delivery_per_kwh: must be 0 or more"),
    ("incentive", {"rate_per_kwh": 0.2, "bonus": 1}, "incentive.bonus: unknown field"),
    ("incentive", {"rate_per_kwh": 0.2}, "incentive.kind: required"),
    ("window", "weekdays 16-21", "window: must be an object"),
    ("window", {"weekdays": ["mon"], "start": "16:00", "end": "16:00", "tz": "UTC"}, "window.end: equals start"),
])
def test_field_errors(field, value, expected):
    errs = errors_of(base(**{field: value}))
    assert any(m.startswith(expected) for m in errs), errs


def test_description_of_32_ascii_characters_fits():
    assert Program.from_dict(base(description="x" * 32)).description == "x" * 32


# --- profiles --------------------------------------------------------------------------------------
def test_profile_needs_one_entry_per_interval():
    """5 h window in 15-minute intervals = 20 entries."""
    errs = errors_of(base(requested_kw=[100] * 19, interval_s=900))
    assert errs == ["requested_kw: the profile has 19 entries but the window (18000 s in intervals of 900 s) "
                    "has 20 intervals"]
    assert Program.from_dict(base(requested_kw=[100] * 20, interval_s=900)).is_profile


def test_profile_count_rounds_up_when_the_interval_does_not_divide_the_window():
    """Rule: the last interval may be shorter, so 5 h in 2 h intervals is 3 entries."""
    assert Program.from_dict(base(requested_kw=[1, 2, 3], interval_s=7200)).requested_kw == (1.0, 2.0, 3.0)
    assert errors_of(base(requested_kw=[1, 2], interval_s=7200))[0].startswith("requested_kw: the profile has 2")


def test_profile_needs_interval_s():
    assert errors_of(base(requested_kw=[1, 2])) == [
        "interval_s: required when requested_kw is a profile (a list, one kW per interval)"]


def test_profile_entry_errors_name_the_entry():
    errs = errors_of(base(requested_kw=[1, -2, 3, 4, 5], interval_s=3600))
    assert errs == ["requested_kw: profile entry 1: must be greater than 0, got -2"]


# --- requests and publishing ---------------------------------------------------------------------
def window_of(p: Program, d: date) -> Window:
    (w,) = [w for w in windows_between(p.window, utc(d.year, d.month, d.day) - timedelta(days=1),
                                       utc(d.year, d.month, d.day) + timedelta(days=2)) if w.local_date == d]
    return w


def test_single_request_covers_the_whole_window():
    p = Program.from_dict(base())
    w = window_of(p, date(2026, 7, 6))
    assert p.requests(w) == [Request(utc(2026, 7, 6, 20), utc(2026, 7, 7, 1), 500.0)]
    assert p.requests(w)[0].duration_s == 5 * 3600


def test_constant_request_per_interval_when_interval_s_is_set():
    p = Program.from_dict(base(interval_s=7200))
    reqs = p.requests(window_of(p, date(2026, 7, 6)))
    assert [r.requested_kw for r in reqs] == [500.0] * 3
    assert [r.duration_s for r in reqs] == [7200, 7200, 3600]


def test_profile_maps_entries_to_intervals_in_order():
    p = Program.from_dict(base(requested_kw=[1, 2, 3, 4, 5], interval_s=3600))
    reqs = p.requests(window_of(p, date(2026, 7, 6)))
    assert [r.requested_kw for r in reqs] == [1, 2, 3, 4, 5]
    assert reqs[2].start == utc(2026, 7, 6, 22)


def night_program(**over) -> Program:
    return Program.from_dict(base(window={"weekdays": ["sun"], "start": "01:00", "end": "03:00",
                                          "tz": "America/New_York"}, **over))


def test_profile_on_fall_back_day_repeats_the_entries_of_the_repeated_hour():
    """Rule: entries follow wall-clock time; the repeated hour 01:00–02:00 uses entry 0 twice."""
    p = night_program(requested_kw=[10, 20], interval_s=3600)
    reqs = p.requests(window_of(p, date(2026, 11, 1)))
    assert [r.requested_kw for r in reqs] == [10, 10, 20]
    assert [r.start for r in reqs] == [utc(2026, 11, 1, 5), utc(2026, 11, 1, 6), utc(2026, 11, 1, 7)]


def test_profile_on_spring_forward_day_skips_the_entries_of_the_missing_hour():
    p = night_program(requested_kw=[10, 20], interval_s=3600)
    reqs = p.requests(window_of(p, date(2026, 3, 8)))
    assert [(r.start, r.end, r.requested_kw) for r in reqs] == [(utc(2026, 3, 8, 6), utc(2026, 3, 8, 7), 10)]


def test_profile_when_the_start_moved_out_of_the_gap_uses_the_later_entries():
    """02:00–04:00 on a spring-forward day starts at 03:00 EDT: wall-clock entries 2 and 3."""
    p = Program.from_dict(base(window={"weekdays": ["sun"], "start": "02:00", "end": "04:00",
                                       "tz": "America/New_York"}, requested_kw=[1, 2, 3, 4], interval_s=1800))
    reqs = p.requests(window_of(p, date(2026, 3, 8)))
    assert [r.requested_kw for r in reqs] == [3, 4]


def test_publish_at_is_window_start_minus_lead_time():
    p = Program.from_dict(base(lead_time_s=86400))
    w = window_of(p, date(2026, 7, 6))
    assert p.publish_at(w) == utc(2026, 7, 5, 20)
    assert Program.from_dict(base(lead_time_s=0)).publish_at(w) == w.start


def test_numbers_too_large_for_a_float_and_overlong_zone_names_are_named_errors():
    """JSON turns 1e400 written as digits into an int a float cannot hold; a time zone name is
    looked up as a file name. Both must be a ProgramError naming the field, never a crash."""
    from programs.model import Program, ProgramError

    base = {"name": "P", "currency": "USD", "requested_kw": 5.0, "price_cap": 0.5,
            "window": {"weekdays": ["mon"], "start": "16:00", "end": "18:00", "tz": "UTC"},
            "incentive": {"kind": "pay_as_clear"}, "eligible_kinds": ["battery"]}
    with pytest.raises(ProgramError, match="requested_kw: must be a finite number"):
        Program.from_dict({**base, "requested_kw": 10**400})
    with pytest.raises(ProgramError, match="unknown time zone"):
        Program.from_dict({**base, "window": {**base["window"], "tz": "x" * 300}})
