"""programs.measurement (a program's M&V terms, performance) and the fleet helpers of
programs.baselines that settlement uses (grid_average, needed_instants): hand-computed numbers."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pytest

from programs.baselines import BaselineRule, baseline, fleet_baselines, grid_average, needed_instants, resample
from programs.measurement import Terms, TermsError, measurement_interval, performance
from programs.model import Program, ProgramError

PROGRAM = {
    "name": "Peak", "currency": "USD", "requested_kw": 5.0, "price_cap": 0.5,
    "window": {"weekdays": ["mon"], "start": "16:00", "end": "18:00", "tz": "America/New_York"},
    "incentive": {"kind": "pay_as_clear"}, "eligible_kinds": ["battery"],
}


# --- terms ---------------------------------------------------------------------------------------
def test_terms_defaults_round_trip_and_every_wrong_field_is_named() -> None:
    t = Terms()
    assert Terms.from_dict(t.to_dict()) == t
    assert (t.interval_s, t.delay_s, t.resettle_days, t.baseline, t.allow_net_negative) == (None, 900, 3, BaselineRule(), False)
    with pytest.raises(TermsError) as e:
        Terms.from_dict({"interval_s": 420, "delay_s": -1, "resettle_days": True, "bogus": 1,
                         "baseline": {"x": 11, "y": 10}, "split": {"tax_mode": "sometimes"}})
    text = " | ".join(e.value.errors)
    for want in ("measurement.interval_s: must divide an hour", "measurement.delay_s", "measurement.resettle_days",
                 "measurement.bogus: unknown field", "measurement.baseline.x", "measurement.split.tax_mode"):
        assert want in text


def test_the_mv_interval_defaults_to_a_divisor_of_window_clearing_and_900() -> None:
    assert measurement_interval(Terms(), 7200, None) == 900
    assert measurement_interval(Terms(), 7200, 3600) == 900
    assert measurement_interval(Terms(), 180, None) == 180        # a three-minute demo window
    assert measurement_interval(Terms(), 6000, 1800) == 300       # 100 minutes in half hours
    assert measurement_interval(Terms(interval_s=60), 7200, 3600) == 60
    with pytest.raises(TermsError, match="straddle two clearings"):
        measurement_interval(Terms(interval_s=1200), 7200, 1800)
    with pytest.raises(TermsError, match="does not divide the window"):
        measurement_interval(Terms(interval_s=3600), 5400, None)
    with pytest.raises(TermsError, match="set it"):
        measurement_interval(Terms(), 7207, None)


def test_a_program_carries_its_terms_and_refuses_ones_that_do_not_fit() -> None:
    p = Program.from_dict({**PROGRAM, "measurement": {"interval_s": 300, "split": {"aggregator_fee_rate": "0.1"}}})
    assert p.mv_interval_s == 300 and str(p.measurement.split.aggregator_fee_rate) == "1/10"
    assert Program.from_dict(p.to_dict()) == p
    assert Program.from_dict(PROGRAM).mv_interval_s == 900
    with pytest.raises(ProgramError, match="measurement.interval_s"):
        Program.from_dict({**PROGRAM, "interval_s": 1800, "measurement": {"interval_s": 3600}})


# --- performance ---------------------------------------------------------------------------------
def test_performance_by_hand() -> None:
    nan = np.nan
    r = np.array([[2.0, 2.5, -1.0], [1.0, nan, 1.0], [0.5, 0.5, 0.5]])
    s = np.array([[2.0, 2.0, 2.0], [2.0, 2.0, 2.0], [0.0, 0.0, 0.0]])
    p = performance(r, s, [5.0, 5.0, 5.0])
    # credited min(max(R, 0), s): device 0: 2, 2, 0; device 1: 1, -, 1; device 2 had no setpoint
    assert np.array_equal(p.credited_kw[0], [2.0, 2.0, 0.0])
    assert p.credited_kw[1, 0] == 1.0 and np.isnan(p.credited_kw[1, 1])
    assert np.array_equal(p.shortfall_kw[0], [0.0, 0.0, 3.0])
    assert p.performance[0] == pytest.approx(4 / 6)
    assert p.performance[1] == pytest.approx(2 / 4)    # the unmeasured interval's setpoint does not count
    assert np.isnan(p.performance[2])
    assert np.array_equal(p.cleared_kw, [4.0, 4.0, 4.0])
    assert np.array_equal(p.delivered_kw, [3.5, 3.0, 0.5])  # Σ R of the measured devices (negative counts)
    assert np.array_equal(p.credited_total_kw, [3.0, 2.0, 1.0])
    assert np.array_equal(p.measured_devices, [3, 2, 3])
    with pytest.raises(ValueError):
        performance(r, s[:, :2], [1, 1])
    with pytest.raises(ValueError):
        performance(r, -s, [1, 1, 1])


# --- fleet helpers -------------------------------------------------------------------------------
def test_grid_average_weights_by_overlap_and_leaves_gaps_missing() -> None:
    grid = [0, 900, 2700]                       # a gap at 1800
    # device 0: 15-minute readings 1000 W and 3000 W; device 1: one hour-long reading of 2000 W
    # starting at 450 (half of [0, 900), all of [900, 1800) and of [2700, 3600)); device 2: 60 s
    # readings, one of the fifteen missing in [2700, 3600) (coverage 14/15 ≥ 0.9)
    dev = [0, 0, 1] + [2] * 14
    starts = [0, 900, 450] + [2700 + 60 * k for k in range(15) if k != 7]
    durs = [900, 900, 3600] + [60] * 14
    watts = [1000.0, 3000.0, 2000.0] + [500.0] * 14
    out = grid_average(dev, starts, durs, watts, 3, grid, 900)
    assert np.array_equal(out[0, :2], [1.0, 3.0]) and np.isnan(out[0, 2])
    assert np.isnan(out[1, 0]) and out[1, 1] == 2.0 and out[1, 2] == 2.0  # half of [0, 900) is missing
    assert np.isnan(out[2, :2]).all() and out[2, 2] == 0.5


def test_grid_average_agrees_with_resample_on_one_device() -> None:
    rng = np.random.default_rng(3)
    starts = np.arange(0, 7200, 300)
    w = rng.uniform(0, 5000, starts.size)
    r = resample(starts, w / 1000.0, 900, 0, 7200, "power", reading_s=300)
    g = grid_average(np.zeros(starts.size, int), starts, np.full(starts.size, 300), w, 1, np.arange(0, 7200, 900), 900)
    assert np.allclose(g[0], r.kw)


def test_needed_instants_are_all_a_baseline_reads() -> None:
    start = int(datetime(2026, 11, 30, 21, 0, tzinfo=timezone.utc).timestamp())
    rule = BaselineRule(x=3, y=3, min_days=3, lookback_days=5, day_types="any")
    need = needed_instants(900, start, start + 3600, "America/New_York", rule)
    # the event (4) and its pre-event window (12) on the event day, the event's 4 on 5 earlier days
    assert need.size == 4 + 12 + 5 * 4
    rng = np.random.default_rng(1)
    times = np.arange(start - 6 * 86400, start + 3600, 900)
    values = rng.uniform(0, 5, (2, times.size))
    full = fleet_baselines(times, values, 900, start, start + 3600, "America/New_York", rule)
    keep = np.isin(times, need)
    only = fleet_baselines(times[keep], values[:, keep], 900, start, start + 3600, "America/New_York", rule)
    assert np.array_equal(full.adjusted, only.adjusted) and np.array_equal(full.reduction, only.reduction)
    one = baseline(times[keep], values[0, keep], 900, start, start + 3600, "America/New_York", rule)
    assert np.array_equal(one.adjusted, full.adjusted[0])


def test_holidays_and_excluded_days_are_dates() -> None:
    t = Terms.from_dict({"holidays": ["2026-12-25", "2026-12-25"], "excluded_days": ["2026-11-27"]})
    assert [d.isoformat() for d in t.holidays] == ["2026-12-25"]
    assert Terms.from_dict(t.to_dict()) == t
    with pytest.raises(TermsError, match='measurement.excluded_days: .*not a date like "2026-12-25"'):
        Terms.from_dict({"excluded_days": ["yesterday"]})
    with pytest.raises(TermsError, match="measurement.holidays: must be a list"):
        Terms.from_dict({"holidays": "2026-12-25"})
