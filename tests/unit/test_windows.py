"""programs.windows: recurring wall-clock windows -> UTC windows, DST rules, intervals."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone

import pytest

from programs.windows import Window, WindowError, WindowRule, next_window, split, windows_between

UTC = timezone.utc
WEEKDAYS = frozenset(range(5))
EVERY_DAY = frozenset(range(7))


def utc(*a: int) -> datetime:
    return datetime(*a, tzinfo=UTC)


def rule(start: str, end: str, tz: str, days: frozenset[int] = EVERY_DAY) -> WindowRule:
    return WindowRule(days, time.fromisoformat(start), time.fromisoformat(end), tz)


def day_window(r: WindowRule, d: date) -> Window:
    """The window of `r` starting on local date `d`, found through windows_between."""
    found = [w for w in windows_between(r, utc(d.year, d.month, d.day) - timedelta(days=2),
                                        utc(d.year, d.month, d.day) + timedelta(days=2))
             if w.local_date == d]
    assert len(found) == 1, found
    return found[0]


# --- rule validation -----------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, field, fragment", [
    (dict(tz="Mars/Olympus_Mons"), "tz", "unknown time zone 'Mars/Olympus_Mons'"),
    (dict(tz=""), "tz", "IANA name"),
    (dict(weekdays=frozenset()), "weekdays", "at least one weekday"),
    (dict(weekdays=frozenset({7})), "weekdays", "weekday 7 is not a number 0 (Mon)"),
    (dict(weekdays=frozenset({True})), "weekdays", "weekday True"),
    (dict(weekdays="mon"), "weekdays", "must be a set of weekday numbers"),
    (dict(start="16:00"), "start", "must be a time of day"),
    (dict(end=time(21, 0, tzinfo=UTC)), "end", "without a time zone"),
    (dict(start=time(16, 0, 0, 5)), "start", "whole seconds"),
    (dict(end=time(16, 0)), "end", "equals start (16:00:00)"),
])
def test_rule_validation_names_the_field(kwargs, field, fragment):
    args = dict(weekdays=WEEKDAYS, start=time(16), end=time(21), tz="America/New_York") | kwargs
    with pytest.raises(WindowError) as e:
        WindowRule(**args)
    assert any(m.startswith(f"{field}: ") and fragment in m for m in e.value.errors), e.value.errors
    assert isinstance(e.value, ValueError)


def test_rule_accepts_weekdays_as_any_iterable_and_stores_a_frozenset():
    r = WindowRule([0, 1], time(16), time(21), "UTC")  # type: ignore[arg-type]
    assert r.weekdays == frozenset({0, 1})


def test_nominal_length_counts_wall_clock_and_wraps_midnight():
    assert rule("16:00", "21:00", "UTC").nominal_s == 5 * 3600
    assert rule("22:00", "02:00", "UTC").nominal_s == 4 * 3600
    assert rule("00:00", "00:00:01", "UTC").nominal_s == 1
    assert rule("00:00:01", "00:00", "UTC").nominal_s == 86399


# --- JSON form -------------------------------------------------------------------------------------
def test_rule_dict_round_trip_uses_day_names_and_hh_mm():
    d = {"weekdays": ["mon", "tue", "wed", "thu", "fri"], "start": "16:00", "end": "21:00:30",
         "tz": "America/New_York"}
    r = WindowRule.from_dict(d)
    assert r == WindowRule(WEEKDAYS, time(16), time(21, 0, 30), "America/New_York")
    assert r.to_dict() == d
    assert WindowRule.from_dict(r.to_dict()) == r


def test_rule_dict_accepts_numbers_and_any_case_names():
    r = WindowRule.from_dict({"weekdays": [6, "SAT"], "start": "22:00", "end": "02:00", "tz": "Asia/Kolkata"})
    assert r.weekdays == frozenset({5, 6})
    assert r.to_dict()["weekdays"] == ["sat", "sun"]


@pytest.mark.parametrize("d, expected", [
    ({"weekdays": ["mon"], "start": "16:00", "end": "21:00"}, "tz: required"),
    ({"weekdays": ["mon"], "start": "16:00", "end": "21:00", "tz": "UTC", "zone": "x"}, "zone: unknown field"),
    ({"weekdays": ["monday"], "start": "16:00", "end": "21:00", "tz": "UTC"}, "weekdays: 'monday' is not a day name"),
    ({"weekdays": "mon-fri", "start": "16:00", "end": "21:00", "tz": "UTC"}, "weekdays: must be a list"),
    ({"weekdays": ["mon", 0], "start": "16:00", "end": "21:00", "tz": "UTC"}, "weekdays: a day is listed twice"),
    ({"weekdays": ["mon"], "start": "4pm", "end": "21:00", "tz": "UTC"}, "start: must be a wall-clock time 'HH:MM'"),
    ({"weekdays": ["mon"], "start": "16:00", "end": "24:00", "tz": "UTC"}, "end: '24:00' is not a time of day"),
    ({"weekdays": ["mon"], "start": "16:00", "end": "16:00", "tz": "UTC"}, "end: equals start"),
])
def test_rule_from_dict_errors(d, expected):
    with pytest.raises(WindowError) as e:
        WindowRule.from_dict(d)
    assert any(expected in m for m in e.value.errors), e.value.errors


def test_rule_from_dict_names_every_wrong_field_at_once():
    with pytest.raises(WindowError) as e:
        WindowRule.from_dict({"weekdays": [], "start": "x", "tz": "Nowhere/City"})
    fields = sorted(m.split(":")[0] for m in e.value.errors)
    assert fields == ["end", "start", "tz", "weekdays"]


# --- windows -----------------------------------------------------------------------------------
def test_window_is_normalised_to_utc_and_has_key_and_duration():
    w = Window(datetime(2026, 11, 23, 16, tzinfo=timezone(timedelta(hours=-5))), utc(2026, 11, 24, 2), date(2026, 11, 23))
    assert w.start == utc(2026, 11, 23, 21) and w.start.tzinfo is UTC
    assert w.key == "2026-11-23"
    assert w.duration_s == 5 * 3600


@pytest.mark.parametrize("start, end, fragment", [
    (datetime(2026, 1, 1, 16), utc(2026, 1, 1, 21), "start must be a time-zone-aware"),
    (utc(2026, 1, 1, 21), utc(2026, 1, 1, 21), "is not after its start"),
])
def test_window_validation(start, end, fragment):
    with pytest.raises(ValueError, match=fragment):
        Window(start, end, date(2026, 1, 1))


def test_weekdays_only_rule_gives_five_windows_in_a_week_in_local_time():
    """Mon–Fri 16:00–21:00 New York in July (EDT, UTC-4) -> 20:00–01:00 UTC."""
    r = rule("16:00", "21:00", "America/New_York", WEEKDAYS)
    ws = windows_between(r, utc(2026, 7, 6), utc(2026, 7, 13))  # Mon 6 .. Mon 13 (exclusive)
    assert [w.key for w in ws] == ["2026-07-06", "2026-07-07", "2026-07-08", "2026-07-09", "2026-07-10"]
    assert ws[0].start == utc(2026, 7, 6, 20) and ws[0].end == utc(2026, 7, 7, 1)
    assert all(w.duration_s == 5 * 3600 for w in ws)


def test_winter_window_uses_standard_time():
    r = rule("16:00", "21:00", "America/New_York", WEEKDAYS)
    w = day_window(r, date(2026, 11, 23))
    assert (w.start, w.end) == (utc(2026, 11, 23, 21), utc(2026, 11, 24, 2))


@pytest.mark.parametrize("tz, d, start, end, hours", [
    # spring forward: 01:00 standard time -> 03:00 daylight time, one real hour
    ("America/New_York", date(2026, 3, 8), utc(2026, 3, 8, 6), utc(2026, 3, 8, 7), 1),
    ("Europe/Berlin", date(2026, 3, 29), utc(2026, 3, 29, 0), utc(2026, 3, 29, 1), 1),
    # fall back: 01:00 daylight time (first occurrence) -> 03:00 standard time, three real hours
    ("America/New_York", date(2026, 11, 1), utc(2026, 11, 1, 5), utc(2026, 11, 1, 8), 3),
    ("Europe/Berlin", date(2026, 10, 25), utc(2026, 10, 24, 23), utc(2026, 10, 25, 2), 3),
])
def test_window_crossing_a_dst_change_is_one_hour_shorter_or_longer(tz, d, start, end, hours):
    """A 01:00–03:00 window on a DST day lasts 1 h (spring) or 3 h (fall) of real time."""
    w = day_window(rule("01:00", "03:00", tz), d)
    assert (w.start, w.end) == (start, end)
    assert w.duration_s == hours * 3600
    assert w.key == d.isoformat()


def test_same_window_a_day_later_is_two_hours_again():
    w = day_window(rule("01:00", "03:00", "Europe/Berlin"), date(2026, 10, 26))
    assert w.duration_s == 2 * 3600


def test_start_in_the_spring_gap_moves_forward_by_the_gap():
    """Rule: a wall time in the gap moves forward by the gap (02:30 -> 03:30 EDT)."""
    w = day_window(rule("02:30", "04:00", "America/New_York"), date(2026, 3, 8))
    assert w.start == utc(2026, 3, 8, 7, 30)  # 03:30 EDT
    assert w.end == utc(2026, 3, 8, 8)  # 04:00 EDT
    assert w.duration_s == 1800


def test_end_in_the_spring_gap_moves_forward_by_the_gap():
    """Midnight-crossing 22:00–02:00 ending in the gap: 02:00 EST would be 03:00 EDT."""
    w = day_window(rule("22:00", "02:00", "America/New_York"), date(2026, 3, 7))
    assert w.start == utc(2026, 3, 8, 3)  # Sat 22:00 EST
    assert w.end == utc(2026, 3, 8, 7)  # Sun 03:00 EDT
    assert w.duration_s == 4 * 3600


def test_midnight_crossing_window_on_fall_back_night_is_an_hour_longer():
    w = day_window(rule("22:00", "02:00", "America/New_York"), date(2026, 10, 31))
    assert (w.start, w.end) == (utc(2026, 11, 1, 2), utc(2026, 11, 1, 7))
    assert w.duration_s == 5 * 3600


def test_ambiguous_fall_back_time_takes_the_first_occurrence():
    """Rule: an ambiguous wall time is its first occurrence (fold=0): 01:30 EDT, not EST."""
    w = day_window(rule("01:30", "05:00", "America/New_York"), date(2026, 11, 1))
    assert w.start == utc(2026, 11, 1, 5, 30)
    assert w.end == utc(2026, 11, 1, 10)


def test_window_entirely_in_the_gap_does_not_occur_that_day():
    """02:30–03:00 on a spring-forward day has no real time: no window that day."""
    r = rule("02:30", "03:00", "America/New_York", frozenset({6}))  # Sundays
    assert windows_between(r, utc(2026, 3, 7), utc(2026, 3, 10)) == []
    nxt = next_window(r, utc(2026, 3, 7))
    assert nxt is not None and nxt.key == "2026-03-15"
    assert r.window_on(date(2026, 3, 8)) is None


def test_kolkata_has_no_dst_every_window_is_five_hours_at_a_fixed_offset():
    r = rule("18:00", "23:00", "Asia/Kolkata")
    ws = windows_between(r, utc(2026, 1, 1), utc(2027, 1, 1))
    assert len(ws) == 365
    assert {w.duration_s for w in ws} == {5 * 3600}
    assert {(w.start.hour, w.start.minute) for w in ws} == {(12, 30)}


def test_midnight_crossing_window_belongs_to_the_day_it_starts():
    """Weekdays name the local start date: Friday 22:00–02:00 ends on Saturday."""
    r = rule("22:00", "02:00", "Asia/Kolkata", frozenset({4}))  # Fridays
    ws = windows_between(r, utc(2026, 11, 16), utc(2026, 11, 23))
    assert len(ws) == 1
    assert ws[0].key == "2026-11-20"
    assert (ws[0].start, ws[0].end) == (utc(2026, 11, 20, 16, 30), utc(2026, 11, 20, 20, 30))


def test_windows_between_includes_a_window_already_in_progress():
    """Overlap: a window that started the previous local day is still returned."""
    r = rule("22:00", "02:00", "Asia/Kolkata", frozenset({4}))
    ws = windows_between(r, utc(2026, 11, 20, 19), utc(2026, 11, 21, 12))  # Sat 00:30 IST ...
    assert [w.key for w in ws] == ["2026-11-20"]


@pytest.mark.parametrize("a, b, keys", [
    (utc(2026, 7, 6, 15), utc(2026, 7, 6, 20), []),  # ends exactly at the start
    (utc(2026, 7, 7, 1), utc(2026, 7, 7, 2), []),  # starts exactly at the end
    (utc(2026, 7, 7, 0, 59), utc(2026, 7, 7, 2), ["2026-07-06"]),
    (utc(2026, 7, 6, 15), utc(2026, 7, 6, 20, 0, 1), ["2026-07-06"]),
    (utc(2026, 7, 6, 21), utc(2026, 7, 6, 20), []),  # empty range
])
def test_windows_between_is_half_open_overlap(a, b, keys):
    r = rule("16:00", "21:00", "America/New_York", WEEKDAYS)
    assert [w.key for w in windows_between(r, a, b)] == keys


def test_windows_between_rejects_naive_times():
    r = rule("16:00", "21:00", "UTC")
    with pytest.raises(ValueError, match="start_utc must be a time-zone-aware datetime"):
        windows_between(r, datetime(2026, 1, 1), utc(2026, 1, 2))
    with pytest.raises(ValueError, match="after_utc must be a time-zone-aware"):
        next_window(r, datetime(2026, 1, 1))


def test_next_window_skips_the_weekend_and_is_inclusive_at_a_start():
    r = rule("16:00", "21:00", "America/New_York", WEEKDAYS)
    fri_evening = utc(2026, 7, 10, 22)  # during Friday's window
    assert next_window(r, fri_evening).key == "2026-07-13"
    assert next_window(r, utc(2026, 7, 13, 20)).key == "2026-07-13"
    assert next_window(r, utc(2026, 7, 13, 20, 0, 1)).key == "2026-07-14"


def test_next_window_accepts_any_aware_time():
    r = rule("16:00", "21:00", "America/New_York", WEEKDAYS)
    ist = timezone(timedelta(hours=5, minutes=30))
    assert next_window(r, datetime(2026, 7, 11, 3, tzinfo=ist)).key == "2026-07-13"


# --- intervals ---------------------------------------------------------------------------------
def test_split_into_whole_intervals():
    w = Window(utc(2026, 7, 6, 20), utc(2026, 7, 7, 1), date(2026, 7, 6))
    parts = split(w, 3600)
    assert len(parts) == 5
    assert parts[0] == (utc(2026, 7, 6, 20), utc(2026, 7, 6, 21))
    assert parts[-1][1] == w.end
    assert all(b == c for (_, b), (c, _) in zip(parts, parts[1:]))


def test_split_last_interval_is_shorter():
    """Rule: the last interval is shorter when the window is not a whole number of intervals."""
    w = Window(utc(2026, 7, 6, 20), utc(2026, 7, 7, 1), date(2026, 7, 6))
    parts = split(w, 7200)
    assert [(b - a).total_seconds() for a, b in parts] == [7200, 7200, 3600]


def test_split_counts_real_seconds_on_dst_days():
    fall = day_window(rule("01:00", "03:00", "America/New_York"), date(2026, 11, 1))
    spring = day_window(rule("01:00", "03:00", "America/New_York"), date(2026, 3, 8))
    assert len(split(fall, 3600)) == 3
    assert len(split(spring, 3600)) == 1
    assert [(b - a).total_seconds() for a, b in split(spring, 2700)] == [2700, 900]


@pytest.mark.parametrize("interval", [0, -60, 1.5, True, "900"])
def test_split_rejects_bad_interval(interval):
    w = Window(utc(2026, 7, 6, 20), utc(2026, 7, 7, 1), date(2026, 7, 6))
    with pytest.raises(ValueError, match="interval_s must be a positive whole number"):
        split(w, interval)
