"""programs.baselines: resampling, X-of-Y baselines, day-of adjustments, fallbacks, DST, fleets.

Every expected number is worked out by hand in the comments next to it.
"""

from __future__ import annotations

import json
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from programs.baselines import (
    BaselineError, BaselineRule, baseline, fleet_baselines, resample, x_of_y_days,
)

UTC = timezone.utc
NY = "America/New_York"
H = 3600
EVENT_DAY = date(2026, 6, 15)  # a Monday


def at(d: date, hh: int, tz: str = "UTC", mm: int = 0) -> int:
    """Epoch seconds of wall time hh:mm on local date d (fold=0)."""
    return int(datetime.combine(d, time(hh, mm)).replace(tzinfo=ZoneInfo(tz)).timestamp())


def hourly(first: date, last: date, f, tz: str = "UTC", dt: int = H) -> tuple[np.ndarray, np.ndarray]:
    """Readings every dt seconds from local midnight of `first` to the end of `last`; the value of
    the reading starting at local (aware) time L is f(L)."""
    zone = ZoneInfo(tz)
    t = np.arange(at(first, 0, tz), at(last + timedelta(days=1), 0, tz), dt, dtype=float)
    return t, np.array([f(datetime.fromtimestamp(x, zone)) for x in t], dtype=float)


def weekdays_before(d: date, n: int) -> list[date]:
    out, k = [], d
    while len(out) < n:
        k -= timedelta(days=1)
        if k.weekday() < 5:
            out.append(k)
    return out


# The ten weekdays before Monday 2026-06-15, most recent first:
# 06-12 Fri, 06-11, 06-10, 06-09, 06-08 Mon, 06-05 Fri, 06-04, 06-03, 06-02, 06-01 Mon.
TEN = weekdays_before(EVENT_DAY, 10)
LEVELS = dict(zip(TEN, [3, 9, 1, 7, 5, 10, 2, 8, 4, 6]))


def levels_load(levels: dict, *, event=(4.0, 6.0), window=(10.0, 10.0, 10.0), other=100.0,
                hour_override=None):
    """Hourly UTC load: on a day with level L the 16:00 reading is L and 17:00 is 2L, other hours
    L; weekdays not in `levels` are 1000, weekend days `other`. On EVENT_DAY 16:00/17:00 are
    `event`, 12:00–14:00 are `window`, other hours 0."""
    def f(lt: datetime) -> float:
        d, h = lt.date(), lt.hour
        if hour_override and (d, h) in hour_override:
            return hour_override[(d, h)]
        if d == EVENT_DAY:
            return event[h - 16] if h in (16, 17) else window[h - 12] if 12 <= h <= 14 else 0.0
        if d.weekday() >= 5:
            return other
        lvl = levels.get(d, 1000.0)
        return 2 * lvl if h == 17 else lvl
    return hourly(date(2026, 4, 1), EVENT_DAY, f)


def run(rule: BaselineRule, t, v, *, tz="UTC", day=EVENT_DAY, hours=(16, 18), **kw):
    return baseline(t, v, H, at(day, hours[0], tz), at(day, hours[1], tz), tz, rule, **kw)


# --- X-of-Y ----------------------------------------------------------------------------------------
def test_10_in_10_keeps_all_ten_most_recent_weekdays():
    t, v = levels_load(LEVELS)
    r = run(BaselineRule(x=10, y=10), t, v)
    # 16:00: (3+9+1+7+5+10+2+8+4+6)/10 = 55/10 = 5.5; 17:00: twice that = 11
    np.testing.assert_allclose(r.baseline, [5.5, 11.0])
    np.testing.assert_allclose(r.adjusted, [5.5, 11.0])
    # R = BL - actual = [5.5 - 4, 11 - 6] = [1.5, 5]; E = (1.5 + 5) kW * 1 h = 6.5 kWh
    np.testing.assert_allclose(r.reduction, [1.5, 5.0])
    assert r.energy_kwh == pytest.approx(6.5)
    assert r.days_used == tuple(TEN) and r.method == "x_of_y" and r.fallback_reason is None
    assert r.alpha == 1.0 and r.delta_kw == 0.0 and r.flags == () and r.n_eligible == 10
    np.testing.assert_array_equal(r.interval_starts, [at(EVENT_DAY, 16), at(EVENT_DAY, 17)])


def test_5_of_10_keeps_the_highest_load_over_the_event_hours():
    # 06-10 (level 1) is huge outside the event hours: ranking uses the event hours only.
    big = {(date(2026, 6, 10), h): 500.0 for h in range(24) if h not in (16, 17)}
    t, v = levels_load(LEVELS, hour_override=big)
    r = run(BaselineRule(x=5, y=10), t, v)
    # the five highest of [3, 9, 1, 7, 5, 10, 2, 8, 4, 6] are 10, 9, 8, 7, 6: mean 40/5 = 8
    np.testing.assert_allclose(r.baseline, [8.0, 16.0])
    assert r.days_used == (date(2026, 6, 11), date(2026, 6, 9), date(2026, 6, 5), date(2026, 6, 3),
                           date(2026, 6, 1))  # levels 9, 7, 10, 8, 6, most recent first


def test_high_4_of_5():
    t, v = levels_load(LEVELS)
    r = run(BaselineRule(x=4, y=5, min_days=4), t, v)
    # five most recent: [3, 9, 1, 7, 5]; drop the lowest (1): (3 + 9 + 7 + 5)/4 = 24/4 = 6
    np.testing.assert_allclose(r.baseline, [6.0, 12.0])
    assert r.days_used == (date(2026, 6, 12), date(2026, 6, 11), date(2026, 6, 9), date(2026, 6, 8))


def test_ties_go_to_the_more_recent_day():
    t, v = levels_load({d: 5.0 for d in TEN[:3]})  # three equal days
    r = run(BaselineRule(x=2, y=3, min_days=2), t, v)
    assert r.days_used == (TEN[0], TEN[1])
    np.testing.assert_allclose(r.baseline, [5.0, 10.0])


# --- day-of adjustments ---------------------------------------------------------------------------
FLAT10 = {d: 10.0 for d in weekdays_before(EVENT_DAY, 30)}


def flat_history(window, event=(9.0, 9.0)):
    """History 10 kW at every hour of every day (17:00 too); the event day as given."""
    def f(lt: datetime) -> float:
        d, h = lt.date(), lt.hour
        if d == EVENT_DAY:
            return event[h - 16] if h in (16, 17) else window[h - 12] if 12 <= h <= 14 else 0.0
        return 10.0
    return hourly(date(2026, 5, 1), EVENT_DAY, f)


@pytest.mark.parametrize("window, alpha, flags", [
    # W = [start - 4 h, start - 1 h) = 12:00, 13:00, 14:00; ΣW BL = 3 * 10 = 30
    ((14.0, 14.0, 14.0), 1.2, ("adjustment_capped",)),   # 42/30 = 1.4 -> capped at 1 + 0.2
    ((5.0, 5.0, 5.0), 0.8, ("adjustment_capped",)),      # 15/30 = 0.5 -> capped at 1 - 0.2
    ((10.0, 11.0, 12.0), 1.1, ()),                       # 33/30 = 1.1, inside the cap
])
def test_multiplicative_adjustment_and_its_cap_both_ways(window, alpha, flags):
    t, v = flat_history(window)
    r = run(BaselineRule(adjustment="multiplicative", cap=0.2), t, v)
    assert r.alpha == pytest.approx(alpha) and r.delta_kw == 0.0
    np.testing.assert_allclose(r.baseline, [10.0, 10.0])
    np.testing.assert_allclose(r.adjusted, [10 * alpha] * 2)
    # R = 10α - 9 per hour; E = 2 h * (10α - 9)
    assert r.energy_kwh == pytest.approx(2 * (10 * alpha - 9))
    assert r.flags == flags


def test_multiplicative_upward_only_keeps_the_baseline_when_the_day_runs_low():
    t, v = flat_history((9.0, 9.0, 9.0))
    r = run(BaselineRule(adjustment="multiplicative", upward_only=True), t, v)
    # 27/30 = 0.9 < 1 -> upward only: α = 1
    assert r.alpha == 1.0 and r.flags == ("adjustment_upward_only",)
    np.testing.assert_allclose(r.adjusted, [10.0, 10.0])
    t, v = flat_history((12.0, 12.0, 12.0))
    assert run(BaselineRule(adjustment="multiplicative", upward_only=True), t, v).alpha == pytest.approx(1.2)


def test_additive_adjustment():
    t, v = flat_history((12.0, 13.0, 14.0))
    r = run(BaselineRule(adjustment="additive"), t, v)
    # δ = mean(12-10, 13-10, 14-10) = (2+3+4)/3 = 3 -> BL' = 13; R = 13 - 9 = 4; E = 2 * 4 = 8 kWh
    assert r.delta_kw == pytest.approx(3.0) and r.alpha == 1.0
    np.testing.assert_allclose(r.adjusted, [13.0, 13.0])
    assert r.energy_kwh == pytest.approx(8.0)
    # cap does not apply to additive: δ = 20 - 10 = 10 kW, far beyond 20 % of 10
    t, v = flat_history((20.0, 20.0, 20.0))
    assert run(BaselineRule(adjustment="additive", cap=0.2), t, v).delta_kw == pytest.approx(10.0)


def test_additive_upward_only_never_lowers():
    t, v = flat_history((8.0, 9.0, 7.0))
    r = run(BaselineRule(adjustment="additive", upward_only=True), t, v)
    # δ = mean(-2, -1, -3) = -2 -> 0
    assert r.delta_kw == 0.0 and r.flags == ("adjustment_upward_only",)
    r = run(BaselineRule(adjustment="additive"), t, v)
    assert r.delta_kw == pytest.approx(-2.0)
    np.testing.assert_allclose(r.adjusted, [8.0, 8.0])


def test_adjustment_skipped_when_the_window_has_missing_actuals():
    t, v = flat_history((14.0, np.nan, 14.0))
    r = run(BaselineRule(adjustment="multiplicative"), t, v)
    assert r.alpha == 1.0 and r.flags == ("adjustment_missing_data",)
    np.testing.assert_allclose(r.adjusted, [10.0, 10.0])


def test_missing_actual_gives_no_reduction_for_that_interval():
    t, v = flat_history((10.0, 10.0, 10.0), event=(9.0, np.nan))
    r = run(BaselineRule(), t, v)
    assert np.isnan(r.reduction[1]) and r.flags == ("actual_missing",)
    assert r.energy_kwh == pytest.approx(1.0)  # only 16:00: (10 - 9) * 1 h
    t, v = flat_history((10.0, 10.0, 10.0), event=(np.nan, np.nan))
    assert np.isnan(run(BaselineRule(), t, v).energy_kwh)       # nothing measured: no energy, not 0


# --- eligibility -------------------------------------------------------------------------------
def test_eligibility_skips_weekends_holidays_excluded_and_incomplete_days():
    levels = {date(2026, 6, 12): 200, date(2026, 6, 11): 300, date(2026, 6, 10): 400,
              date(2026, 6, 9): 1, date(2026, 6, 8): 2, date(2026, 6, 5): 3, date(2026, 6, 4): 4,
              date(2026, 6, 3): 5}
    missing = {(date(2026, 6, 10), 17): np.nan}                 # 06-10 has a hole at 17:00
    t, v = levels_load(levels, hour_override=missing, other=100.0)
    rule = BaselineRule(x=5, y=5)
    r = run(rule, t, v, holidays={date(2026, 6, 12)}, excluded={date(2026, 6, 11)})
    # left: 06-09, 06-08, 06-05, 06-04, 06-03 with levels 1..5: mean 3 (17:00: 6); 06-02 (1000) unused
    assert r.days_used == (date(2026, 6, 9), date(2026, 6, 8), date(2026, 6, 5), date(2026, 6, 4),
                           date(2026, 6, 3))
    np.testing.assert_allclose(r.baseline, [3.0, 6.0])


def test_a_hole_in_the_window_hours_matters_only_when_adjusting():
    levels = {d: 10.0 for d in TEN}
    t, v = levels_load(levels, hour_override={(TEN[0], 13): np.nan}, window=(10.0, 10.0, 10.0))
    assert TEN[0] in run(BaselineRule(x=5, y=5), t, v).days_used
    r = run(BaselineRule(x=5, y=5, adjustment="additive"), t, v)
    assert TEN[0] not in r.days_used and r.days_used[0] == TEN[1]


def test_weekend_event_uses_weekend_and_holiday_days_and_any_uses_all():
    sat = date(2026, 6, 20)
    lv = {date(2026, 6, 14): 1.0, date(2026, 6, 13): 2.0, date(2026, 6, 12): 6.0, date(2026, 6, 19): 50.0}
    t, v = hourly(date(2026, 5, 1), sat, lambda lt: lv.get(lt.date(), 1000.0))
    # weekend type: 06-14 Sun, 06-13 Sat, then 06-12 (a holiday Friday): (1 + 2 + 6)/3 = 3
    r = run(BaselineRule(x=3, y=3), t, v, day=sat, holidays={date(2026, 6, 12)})
    assert r.days_used == (date(2026, 6, 14), date(2026, 6, 13), date(2026, 6, 12))
    np.testing.assert_allclose(r.baseline, [3.0, 3.0])
    # "any": the 3 most recent days 06-19, 06-18 (1000), 06-17 (1000): (50 + 1000 + 1000)/3
    r = run(BaselineRule(x=3, y=3, day_types="any"), t, v, day=sat)
    np.testing.assert_allclose(r.baseline, [2050 / 3] * 2)


def test_lookback_limits_the_search():
    t, v = levels_load(LEVELS)
    # 10 days back reaches 06-05: weekdays 06-12..06-08 and 06-05 = 6 < y 10, >= min_days 5
    r = run(BaselineRule(x=10, y=10, lookback_days=10), t, v)
    assert r.n_eligible == 6 and r.method == "x_of_y_short"
    np.testing.assert_allclose(r.baseline, [35 / 6, 70 / 6])  # (3 + 9 + 1 + 7 + 5 + 10)/6
    r = run(BaselineRule(x=10, y=10, lookback_days=45), t, v)
    assert r.n_eligible == 10 and r.method == "x_of_y"


# --- fallbacks --------------------------------------------------------------------------------
def short_history(n_days: int, window=(6.0, 8.0, 10.0)):
    days = weekdays_before(EVENT_DAY, n_days)
    lv = {d: float(i + 1) for i, d in enumerate(days)}   # most recent 1, then 2, ...

    def f(lt: datetime) -> float:
        d, h = lt.date(), lt.hour
        if d == EVENT_DAY:
            return 5.0 if h in (16, 17) else window[h - 12] if 12 <= h <= 14 else 0.0
        return lv.get(d, np.nan)
    return hourly(date(2026, 4, 1), EVENT_DAY, f)


def test_short_history_uses_the_eligible_days_there_are():
    t, v = short_history(4)
    r = run(BaselineRule(x=10, y=10, min_days=3), t, v)
    # 4 days with levels 1..4: mean 2.5
    assert r.method == "x_of_y_short" and r.flags == ("short_history",) and r.n_eligible == 4
    np.testing.assert_allclose(r.baseline, [2.5, 2.5])
    assert "4 eligible days in the last 45 days (10 wanted)" in r.fallback_reason
    # highest X of a short history: 5-of-10 with 4 days keeps all 4; 2-of-10 keeps levels 4 and 3
    np.testing.assert_allclose(run(BaselineRule(x=2, y=10, min_days=2), t, v).baseline, [3.5, 3.5])


def test_too_short_history_falls_back_to_a_flat_pre_event_window_average():
    t, v = short_history(2)
    r = run(BaselineRule(x=10, y=10, min_days=5, adjustment="multiplicative"), t, v)
    # W actual 6, 8, 10 -> flat BL = 24/3 = 8; not adjusted; R = 8 - 5 = 3; E = 2 * 3 = 6 kWh
    assert r.method == "pre_event_window" and r.flags == ("flat_fallback",) and r.days_used == ()
    np.testing.assert_allclose(r.baseline, [8.0, 8.0])
    np.testing.assert_allclose(r.adjusted, [8.0, 8.0])
    assert r.alpha == 1.0 and r.energy_kwh == pytest.approx(6.0) and r.n_eligible == 2
    assert "2 eligible days" in r.fallback_reason and "< min_days 5" in r.fallback_reason


def test_no_history_and_a_hole_in_the_window_gives_no_baseline():
    t, v = short_history(0, window=(6.0, np.nan, 10.0))
    r = run(BaselineRule(), t, v)
    assert r.method == "none" and r.flags == ("no_baseline",)
    assert np.isnan(r.baseline).all() and np.isnan(r.reduction).all() and np.isnan(r.energy_kwh)
    assert "no baseline" in r.fallback_reason


def test_a_new_device_with_only_the_event_day():
    t, v = short_history(0)
    keep = t >= at(EVENT_DAY, 0)
    r = run(BaselineRule(), t[keep], v[keep])
    assert r.method == "pre_event_window" and r.n_eligible == 0
    np.testing.assert_allclose(r.baseline, [8.0, 8.0])


# --- DST (America/New_York) -------------------------------------------------------------------
def by_wall_hour(lt: datetime) -> float:
    """The reading's local wall-clock hour; + 0.5 on the second (standard time) 01:xx of fall back."""
    return lt.hour + 0.5 * lt.fold


def test_history_in_standard_time_maps_by_wall_clock_to_an_event_in_daylight_time():
    mon = date(2026, 3, 9)  # the day after spring forward
    t, v = hourly(date(2026, 2, 1), mon, by_wall_hour, tz=NY)
    r = run(BaselineRule(adjustment="multiplicative"), t, v, tz=NY, day=mon)
    # 16:00 EDT = 20:00 UTC, but on the EST history days 20:00 UTC is 15:00: by wall clock BL = 16, 17
    np.testing.assert_allclose(r.baseline, [16.0, 17.0])
    assert r.alpha == pytest.approx(1.0)  # W 12..14 wall hours on both sides: 39/39
    assert all(d < mon and d.weekday() < 5 for d in r.days_used) and len(r.days_used) == 10


def test_event_on_a_fall_back_day_has_25_hours_and_repeats_the_baseline():
    sun = date(2026, 11, 1)
    t, v = hourly(date(2026, 10, 1), sun, by_wall_hour, tz=NY)
    r = run(BaselineRule(x=2, y=2, min_days=2), t, v, tz=NY, day=sun, hours=(0, 3))
    # 00:00 EDT .. 03:00 EST is 4 real hours: wall 00, 01 (EDT), 01 (EST), 02 -> BL 0, 1, 1, 2
    assert len(r.interval_starts) == 4
    np.testing.assert_allclose(r.baseline, [0.0, 1.0, 1.0, 2.0])
    assert r.days_used == (date(2026, 10, 31), date(2026, 10, 25))  # Sat, Sun: weekend type
    np.testing.assert_allclose(r.actual, [0.0, 1.0, 1.5, 2.0])


def test_event_on_a_spring_forward_day_has_23_hours_and_skips_the_gap():
    sun = date(2026, 3, 8)
    t, v = hourly(date(2026, 2, 1), sun, by_wall_hour, tz=NY)
    r = run(BaselineRule(x=2, y=2, min_days=2), t, v, tz=NY, day=sun, hours=(0, 4))
    # 00:00 EST .. 04:00 EDT is 3 real hours: wall 00, 01, 03 -> BL 0, 1, 3
    np.testing.assert_allclose(r.baseline, [0.0, 1.0, 3.0])


def test_dst_days_as_history_map_by_wall_clock_with_fold_0():
    # spring forward as a history day: 02:00 does not exist on 03-08 -> read at 03:00 EDT (value 3)
    mon = date(2026, 3, 9)
    t, v = hourly(date(2026, 2, 1), mon, by_wall_hour, tz=NY)
    r = run(BaselineRule(x=1, y=1, min_days=1, day_types="any"), t, v, tz=NY, day=mon, hours=(1, 4))
    assert r.days_used == (date(2026, 3, 8),)
    np.testing.assert_allclose(r.baseline, [1.0, 3.0, 3.0])
    # fall back as a history day: 01:00 on 11-01 is its first (EDT) occurrence (value 1, not 1.5)
    mon = date(2026, 11, 2)
    t, v = hourly(date(2026, 10, 1), mon, by_wall_hour, tz=NY)
    r = run(BaselineRule(x=1, y=1, min_days=1, day_types="any"), t, v, tz=NY, day=mon, hours=(1, 2))
    assert r.days_used == (date(2026, 11, 1),)
    np.testing.assert_allclose(r.baseline, [1.0])


# --- resampling --------------------------------------------------------------------------------
def test_energy_readings_are_summed_into_average_kw():
    t = np.arange(0, 1800, 300.0)                    # 5-minute readings
    r = resample(t, np.full(6, 0.25), 900, 0, 1800, "energy")
    # 3 readings * 0.25 kWh = 0.75 kWh in 0.25 h = 3 kW
    np.testing.assert_allclose(r.kw, [3.0, 3.0])
    np.testing.assert_array_equal(r.times, [0, 900])
    assert not r.missing.any()
    np.testing.assert_allclose(r.coverage, [1.0, 1.0])


def test_power_readings_are_time_weighted():
    r = resample([0, 600, 900], [2.0, 8.0, 5.0], 900, 0, 1800, "power", reading_s=[600, 300, 900])
    # (2 kW * 600 s + 8 kW * 300 s) / 900 s = 3600/900 = 4 kW; then 5 kW
    np.testing.assert_allclose(r.kw, [4.0, 5.0])


def test_an_energy_reading_straddling_a_boundary_is_split_by_overlap():
    r = resample([0, 600, 1200], [0.2, 1.0, 0.6], 900, 0, 1800, "energy", reading_s=600)
    # [0, 900): 0.2 + 1.0 * 300/600 = 0.7 kWh / 0.25 h = 2.8 kW; [900, 1800): 0.5 + 0.6 = 1.1 -> 4.4 kW
    np.testing.assert_allclose(r.kw, [2.8, 4.4])


def test_partial_coverage_below_90_percent_is_missing():
    r = resample([0, 300, 600], [2.0, np.nan, 4.0], 900, 0, 900, "power")
    # covered 600 of 900 s = 2/3 < 0.9 -> missing, not invented
    assert np.isnan(r.kw[0]) and r.missing[0]
    assert r.coverage[0] == pytest.approx(2 / 3)
    # with min_coverage 0.5: (2 * 300 + 4 * 300) / 600 = 3 kW (average of the covered part)
    assert resample([0, 300, 600], [2.0, np.nan, 4.0], 900, 0, 900, "power", min_coverage=0.5).kw[0] == 3.0


def test_coverage_of_at_least_90_percent_averages_the_covered_part():
    vals = np.arange(1.0, 16.0)
    vals[-1] = np.nan                                  # 1-minute readings, the last missing
    r = resample(np.arange(0, 900, 60.0), vals, 900, 0, 900, "power")
    # 14/15 = 93 % >= 90 %: mean(1..14) = 105/14 = 7.5 kW
    assert r.kw[0] == pytest.approx(7.5) and not r.missing[0]
    # energy: 14 readings of 1..14 kWh per minute = 105 kWh in 840 s -> 105 * 3600/840 = 450 kW
    assert resample(np.arange(0, 900, 60.0), vals, 900, 0, 900, "energy").kw[0] == pytest.approx(450.0)


def test_a_skipped_reading_is_a_gap_not_a_longer_reading():
    # readings every 300 s with the 600 s one absent: [0, 900) is covered 600 s -> missing
    r = resample([0, 300, 900, 1200, 1500], [1, 1, 1, 1, 1.0], 900, 0, 1800, "power")
    assert r.missing.tolist() == [True, False]
    # outside the readings: nothing covered
    assert resample([0, 300], [1, 1.0], 300, 600, 1200, "power").missing.all()


def test_resample_a_fleet_at_once():
    v = np.array([[0.25] * 6, [0.5, 0.5, 0.5, np.nan, np.nan, np.nan]])
    r = resample(np.arange(0, 1800, 300.0), v, 900, 0, 1800, "energy")
    # device 2: 1.5 kWh / 0.25 h = 6 kW, then nothing
    np.testing.assert_allclose(r.kw, [[3.0, 3.0], [6.0, np.nan]])
    assert r.missing.tolist() == [[False, False], [False, True]]


@pytest.mark.parametrize("kwargs, fragment", [
    (dict(kind="kwh"), "kind: must be one of energy, power"),
    (dict(end=1000), "end: must give a whole, positive number of 900 s intervals"),
    (dict(interval_s=0), "interval_s: must be a positive"),
    (dict(reading_s=600), "reading_s: readings overlap"),
    (dict(times=[0, 600, 300, 900]), "times: must be a 1-D array"),
    (dict(values=[1.0, 2.0]), "values: must have shape (4,) or (devices, 4)"),
    (dict(min_coverage=0), "min_coverage"),
    (dict(start=datetime(2026, 1, 1)), "start: must be time-zone aware"),
])
def test_resample_errors_name_the_field(kwargs, fragment):
    args = dict(times=[0, 300, 600, 900], values=[1.0, 1.0, 1.0, 1.0], interval_s=900, start=0, end=900,
                kind="power") | kwargs
    with pytest.raises(BaselineError) as e:
        resample(**args)
    assert any(fragment in m for m in e.value.errors), e.value.errors


# --- the rule: validation, JSON -------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, field, fragment", [
    (dict(x=0), "x", "between 1 and 366"),
    (dict(x=True), "x", "whole number"),
    (dict(x=11, y=10), "x", "keeps more days than it looks at"),
    (dict(method="regression"), "method", "must be one of x_of_y"),
    (dict(adjustment="ratio"), "adjustment", "none, multiplicative, additive"),
    (dict(cap=1.0), "cap", "below 1"),
    (dict(cap=-0.1), "cap", "at least 0"),
    (dict(upward_only="yes"), "upward_only", "true or false"),
    (dict(adjust_from_h=25), "adjust_from_h", "between 0 and 24"),
    (dict(adjust_from_h=2, adjust_to_h=2), "adjust_to_h", "must end after it starts"),
    (dict(min_days=11), "min_days", "at most y (10)"),
    (dict(lookback_days=9), "lookback_days", "at least y (10)"),
    (dict(day_types="weekday"), "day_types", "weekday_weekend, any"),
])
def test_rule_validation_names_the_field(kwargs, field, fragment):
    with pytest.raises(BaselineError) as e:
        BaselineRule(**kwargs)
    assert any(m.startswith(f"{field}: ") and fragment in m for m in e.value.errors), e.value.errors
    assert isinstance(e.value, ValueError) and str(e.value).startswith("invalid baseline: ")


def test_rule_defaults_and_min_days_default():
    assert BaselineRule().min_days == 5
    assert BaselineRule(x=4, y=5).min_days == 4   # min(5, X)
    assert BaselineRule(x=1, y=1).min_days == 1


def test_rule_json_round_trip_and_unknown_keys():
    r = BaselineRule(x=5, y=10, adjustment="multiplicative", cap=0.3, upward_only=True,
                     adjust_from_h=4, adjust_to_h=2, min_days=3, lookback_days=30, day_types="any")
    d = json.loads(json.dumps(r.to_dict()))
    assert d == {"x": 5, "y": 10, "method": "x_of_y", "adjustment": "multiplicative", "cap": 0.3,
                 "upward_only": True, "adjust_from_h": 4.0, "adjust_to_h": 2.0, "min_days": 3,
                 "lookback_days": 30, "day_types": "any"}
    assert BaselineRule.from_dict(d) == r
    assert BaselineRule.from_dict({}) == BaselineRule()
    with pytest.raises(BaselineError) as e:
        BaselineRule.from_dict({"x": 12, "colour": "red"})
    assert e.value.errors[0].startswith("colour: unknown field")
    assert any(m.startswith("x: keeps more days") for m in e.value.errors)
    with pytest.raises(BaselineError, match="baseline: must be a JSON object"):
        BaselineRule.from_dict([1])  # type: ignore[arg-type]


@pytest.mark.parametrize("kwargs, fragment", [
    (dict(tz="Mars/Olympus"), "tz: unknown time zone"),
    (dict(end_h=17.5), "end: must give a whole, positive number of 3600 s intervals"),
    (dict(rule=BaselineRule(adjust_from_h=3.5)), "adjust_from_h: must give a whole"),
    (dict(rule={"x": 1}), "rule: must be a BaselineRule"),
    (dict(excluded=["2026-06-12"]), "excluded: must be local dates"),
])
def test_baseline_input_errors_name_the_field(kwargs, fragment):
    t, v = levels_load(LEVELS)
    end = at(EVENT_DAY, 16) + int(kwargs.pop("end_h", 18) * H - 16 * H)
    args = dict(times=t, values=v, interval_s=H, start=at(EVENT_DAY, 16), end=end, tz="UTC",
                rule=BaselineRule()) | kwargs
    with pytest.raises(BaselineError) as e:
        baseline(**args)
    assert any(fragment in m for m in e.value.errors), e.value.errors


def test_event_times_may_be_aware_datetimes():
    t, v = levels_load(LEVELS)
    r = baseline(t, v, H, datetime(2026, 6, 15, 16, tzinfo=UTC), datetime(2026, 6, 15, 18, tzinfo=UTC),
                 "UTC", BaselineRule())
    np.testing.assert_allclose(r.baseline, [5.5, 11.0])


# --- the core on (devices × days × intervals) ------------------------------------------------------
def test_core_selects_per_device_without_a_loop():
    # 2 devices, 4 candidate days (most recent first), K = 2 intervals (both event)
    days = np.array([[[1, 1], [4, 4], [np.nan, 9], [2, 2]],
                     [[5, 5], [3, 3], [8, 8], [7, 7]]], dtype=float)
    base, kept, n_el = x_of_y_days(days, np.array([True, True, True, False]), x=1, y=2, n_event=2)
    # device 0: eligible 0, 1 (day 2 has a hole, day 3 unusable) -> keep the higher: day 1 (4)
    # device 1: eligible 0, 1, 2 -> Y = 2 most recent: 0 (5), 1 (3) -> keep day 0 (5)
    np.testing.assert_array_equal(kept, [[False, True, False, False], [True, False, False, False]])
    np.testing.assert_allclose(base, [[4, 4], [5, 5]])
    np.testing.assert_array_equal(n_el, [2, 2])


# --- property: the fleet equals device-by-device, and a plain reference ---------------------------
RULES = [
    BaselineRule(x=10, y=10),
    BaselineRule(x=5, y=10, adjustment="multiplicative"),
    BaselineRule(x=4, y=5, adjustment="additive", min_days=3),
    BaselineRule(x=3, y=6, adjustment="multiplicative", upward_only=True, cap=0.1, min_days=4),
    BaselineRule(x=2, y=4, adjustment="additive", upward_only=True, day_types="any", min_days=2,
                 lookback_days=20),
]


def reference_days(t, v, start, n, rule, zone, excluded, holidays):
    """A plain-Python X-of-Y for one device (no adjustment window): (days kept, BL per interval)."""
    lookup = {int(a): b for a, b in zip(t, v)}
    z = ZoneInfo(zone)
    day0 = datetime.fromtimestamp(start, z).date()
    walls = [datetime.fromtimestamp(start + k * H, z).replace(tzinfo=None) for k in range(n)]

    def kind(d):
        return "we" if d.weekday() >= 5 or d in holidays else "wd"
    picked = []
    for i in range(1, rule.lookback_days + 1):
        d = day0 - timedelta(days=i)
        if d in excluded or (rule.day_types != "any" and kind(d) != kind(day0)):
            continue
        vals = []
        for w in walls:
            ts = datetime.combine(d + (w.date() - day0), w.time()).replace(tzinfo=z).timestamp()
            vals.append(lookup.get(int(ts), np.nan))
        if not np.isnan(vals).any():
            picked.append((d, vals))
        if len(picked) == rule.y:
            break
    ranked = sorted(range(len(picked)), key=lambda j: (-sum(picked[j][1]), j))[:rule.x]
    kept = [picked[j] for j in sorted(ranked)]
    return tuple(d for d, _ in kept), np.mean([x for _, x in kept], axis=0) if kept else None


@pytest.mark.parametrize("seed", range(8))
def test_fleet_equals_single_device_and_reference(seed):
    rng = np.random.default_rng(seed)
    rule = RULES[seed % len(RULES)]
    zone = NY
    event = date(2026, 3, 13) if seed % 2 else date(2026, 3, 14)     # a Friday / a Saturday, after DST
    t, _ = hourly(date(2026, 1, 20), event, lambda lt: 0.0, tz=zone)
    D = 9
    v = rng.lognormal(1.0, 0.5, size=(D, t.size))
    v[rng.random(v.shape) < 0.01] = np.nan                           # scattered holes
    v[0, : int(t.size * 0.9)] = np.nan                               # a device with little history
    v[1, :-20] = np.nan                                              # a new device
    v[2, -24:] = np.nan                                              # no event-day data at all
    v[3] = np.round(v[3])                                            # many ties
    excluded = {event - timedelta(days=int(k)) for k in rng.integers(1, 15, size=3)}
    holidays = {event - timedelta(days=int(k)) for k in rng.integers(1, 15, size=2)}
    start, end = at(event, 15, zone), at(event, 19, zone)
    fleet = fleet_baselines(t, v, H, start, end, zone, rule, excluded, holidays)
    methods = set()
    for i in range(D):
        one = baseline(t, v[i], H, start, end, zone, rule, excluded, holidays)
        got = fleet.device(i)
        for name in ("baseline", "adjusted", "actual", "reduction", "interval_starts"):
            np.testing.assert_array_equal(getattr(got, name), getattr(one, name), err_msg=name)
        for name in ("energy_kwh", "alpha", "delta_kw", "days_used", "n_eligible", "method",
                     "fallback_reason", "flags"):
            a, b = getattr(got, name), getattr(one, name)
            assert a == b or (a != a and b != b), (name, a, b)
        methods.add(one.method)
        if rule.adjustment == "none" and one.method.startswith("x_of_y"):
            days, bl = reference_days(t, v[i], start, 4, rule, zone, excluded, holidays)
            assert one.days_used == days
            np.testing.assert_allclose(one.baseline, bl)
    assert "x_of_y" in methods and methods - {"x_of_y"}            # fallbacks exercised too
