"""Simulated device physics (der_sim/devices.py): each test is named after the rule it checks.

Times are UTC seconds; day 0 is 1970-01-01, so with tz_offset_s 0 the local hour is t % 86400 / 3600.
"""

from __future__ import annotations

import math
import random

import pytest

from der_sim.devices import (
    BATTERY,
    EV_CHARGER,
    LOAD,
    MODELS,
    PV,
    BatteryParams,
    Control,
    EVParams,
    EVSession,
    LoadParams,
    PVParams,
    backfill,
    load_profile_w,
    metered_import_w,
    offered_curve,
    session_results,
)

H = 3600
DAY = 86_400
BAT = BatteryParams(capacity_wh=10_000, max_charge_w=5_000, max_discharge_w=4_000, round_trip_efficiency=0.81,
                    reserve_pct=20, initial_soc_pct=50)


def run(model, params, controls, dt, rng, start=0.0):
    """Step through `controls` (one per step); return every state."""
    state = model.initial(params, start, rng)
    out = []
    for k, c in enumerate(controls):
        state = model.step(params, state, c, start + k * dt, dt, rng)
        out.append(state)
    return out


# --------------------------------------------------------------------------------------- battery


def test_battery_conserves_energy_with_split_efficiency() -> None:
    """ΔSoC = ∫charge·η − ∫discharge/η, η = sqrt(round-trip efficiency), under any mix of setpoints."""
    rng = random.Random(7)
    controls = [Control(fixed_w_pct=rng.uniform(-100, 100)) if rng.random() > 0.2 else None for _ in range(2000)]
    states = run(BATTERY, BAT, controls, 300.0, rng)
    last = states[-1]
    eta = math.sqrt(0.81)
    soc0 = BAT.capacity_wh * 0.5
    assert last.charged_wh > 1000 and last.discharged_wh > 1000  # both directions were exercised
    assert last.soc_wh - soc0 == pytest.approx(last.charged_wh * eta - last.discharged_wh / eta, abs=1e-6)


def test_battery_never_crosses_its_reserve_nor_its_capacity() -> None:
    """Discharge stops at the reserve and charge at full: the power is cut to what fits in the step."""
    rng = random.Random(1)
    states = run(BATTERY, BAT, [Control(fixed_w_pct=100)] * 40, 600.0, rng)
    assert all(s.soc_wh >= BAT.reserve_wh - 1e-9 for s in states)
    assert states[-1].soc_wh == pytest.approx(BAT.reserve_wh)
    assert states[-1].power_w == pytest.approx(0.0, abs=1e-9)
    assert states[0].power_w == pytest.approx(4000.0)
    states = run(BATTERY, BAT, [Control(fixed_w_pct=-100)] * 40, 600.0, rng)
    assert all(s.soc_wh <= BAT.capacity_wh + 1e-9 for s in states)
    assert states[-1].soc_wh == pytest.approx(BAT.capacity_wh)
    assert states[0].power_w == pytest.approx(-5000.0)


def test_battery_follows_fixed_w_as_percent_of_its_discharge_or_charge_rating() -> None:
    """opModFixedW: positive % of the maximum discharge W, negative % of the maximum charge W; idle
    without an event; opModConnect false stops it; opModMaxLimW caps the discharge."""
    rng = random.Random(0)
    s0 = BATTERY.initial(BAT, 0, rng)
    assert BATTERY.step(BAT, s0, Control(fixed_w_pct=50), 0, 60, rng).power_w == pytest.approx(2000)
    assert BATTERY.step(BAT, s0, Control(fixed_w_pct=-25), 0, 60, rng).power_w == pytest.approx(-1250)
    assert BATTERY.step(BAT, s0, None, 0, 60, rng).power_w == 0
    assert BATTERY.step(BAT, s0, Control(fixed_w_pct=50, connect=False), 0, 60, rng).power_w == 0
    assert BATTERY.step(BAT, s0, Control(fixed_w_pct=100, max_lim_w_pct=25), 0, 60, rng).power_w == pytest.approx(1000)


def test_metered_import_is_minus_the_device_power() -> None:
    """Sign convention: positive power = discharge/export, metered import = −power."""
    rng = random.Random(0)
    s = BATTERY.step(BAT, BATTERY.initial(BAT, 0, rng), Control(fixed_w_pct=-40), 0, 60, rng)
    assert s.power_w < 0 and metered_import_w(s) == -s.power_w > 0


# -------------------------------------------------------------------------------------------- PV


def test_pv_is_zero_at_night_and_never_above_its_limit() -> None:
    """Output never negative; zero outside sunrise…sunset; never above opModMaxLimW × nameplate."""
    p = PVParams(nameplate_w=6000, sunrise_h=6, sunset_h=18, cloudiness=0.6)
    rng = random.Random(3)
    plain = run(PV, p, [None] * (2 * 96), 900.0, rng)
    limited = run(PV, p, [Control(max_lim_w_pct=30)] * (2 * 96), 900.0, random.Random(3))
    for k, (s, lim) in enumerate(zip(plain, limited)):
        hour = (k * 900 + 450) % DAY / H
        assert s.power_w >= 0
        if hour < 6 or hour > 18:
            assert s.power_w == 0
        assert s.power_w <= 6000
        assert lim.power_w <= 0.3 * 6000 + 1e-9
        assert lim.power_w == pytest.approx(min(s.power_w, 1800.0))
    assert max(s.power_w for s in plain) > 3000  # the sun did shine at noon


def test_pv_fixed_w_caps_output_and_disconnect_stops_it() -> None:
    """A non-negative opModFixedW caps generation at that % of nameplate; negative or disconnected → 0."""
    p = PVParams(nameplate_w=5000)
    rng = random.Random(0)
    s0 = PV.initial(p, 12 * H, rng)
    assert PV.step(p, s0, Control(fixed_w_pct=70), 12 * H, 60, rng).power_w == pytest.approx(3500)
    assert PV.step(p, s0, Control(fixed_w_pct=-10), 12 * H, 60, rng).power_w == 0
    assert PV.step(p, s0, Control(connect=False), 12 * H, 60, rng).power_w == 0


# -------------------------------------------------------------------------------------- EV charger

EV = EVParams(max_charge_w=11_000, sessions=(EVSession(arrival=18 * H, departure=30 * H, energy_wh=20_000, max_rate_w=7_400),))


def test_ev_meets_its_deadline_when_unconstrained() -> None:
    """Charges at min(charger, car) rate when plugged until the energy is delivered."""
    states = run(EV_CHARGER, EV, [None] * (36 * 4), 900.0, random.Random(0))
    assert max(-s.power_w for s in states) == pytest.approx(7400)
    assert all(s.power_w <= 0 for s in states)
    assert all(s.power_w == 0 for k, s in enumerate(states) if k * 900 < 18 * H or k * 900 >= 30 * H)
    [result] = session_results(EV, states[-1])
    assert result.met and result.delivered_wh == pytest.approx(20_000)


def test_ev_held_down_by_fixed_w_reports_a_missed_deadline() -> None:
    """opModFixedW −10 % holds charging at 10 % of the charger rating: 1.1 kW × 12 h < 20 kWh."""
    states = run(EV_CHARGER, EV, [Control(fixed_w_pct=-10)] * (36 * 4), 900.0, random.Random(0))
    plugged = [s for k, s in enumerate(states) if 18 * H <= k * 900 < 30 * H]
    assert all(s.power_w == pytest.approx(-1100) for s in plugged)
    [result] = session_results(EV, states[-1])
    assert not result.met and result.delivered_wh == pytest.approx(1100 * 12)


def test_ev_held_rate_never_exceeds_what_the_car_takes_or_needs() -> None:
    """A hold above the car's rate charges at the car's rate; charging stops once the need is met."""
    p = EVParams(max_charge_w=11_000, sessions=(EVSession(arrival=0, departure=10 * H, energy_wh=3_000, max_rate_w=7_400),))
    states = run(EV_CHARGER, p, [Control(fixed_w_pct=-90)] * 40, 900.0, random.Random(0))
    assert states[0].power_w == pytest.approx(-7400)
    assert sum(-s.power_w * 900 / H for s in states) == pytest.approx(3000)
    assert states[-1].power_w == 0
    assert session_results(p, states[-1])[0].met


def test_ev_sessions_must_not_overlap() -> None:
    with pytest.raises(ValueError, match="session 1"):
        EVParams(max_charge_w=7000, sessions=(EVSession(0, 100, 1, 1), EVSession(50, 200, 1, 1)))


# ------------------------------------------------------------------------------------------- load

LOADP = LoadParams(base_w=400, morning_peak_w=1200, evening_peak_w=2000, noise=0.05, curtailable_share=0.4)


def test_load_never_below_its_uncurtailable_share() -> None:
    """opModTargetW / opModFixedW / opModConnect reduce consumption to (1 − curtailable share) × demand at most."""
    rng = random.Random(5)
    for control in (Control(target_w=0), Control(target_w=500), Control(fixed_w_pct=-1), Control(fixed_w_pct=30),
                    Control(connect=False)):
        for s in run(LOAD, LOADP, [control] * 96, 900.0, rng):
            assert -s.power_w >= 0.6 * s.demand_w - 1e-9
            assert -s.power_w <= s.demand_w + 1e-9


def test_load_follows_a_consumption_target_between_its_floor_and_its_demand() -> None:
    """opModTargetW −2000 W (a consumption target) holds consumption at 2 kW: demand is above it, the floor below."""
    rng = random.Random(2)
    s0 = LOAD.initial(LOADP, 19 * H, rng)
    s = LOAD.step(LOADP, s0, Control(target_w=-2000), 19 * H, 60, rng)
    assert 0.6 * s.demand_w < 2000 < s.demand_w
    assert s.power_w == pytest.approx(-2000)
    assert LOAD.step(LOADP, s0, None, 19 * H, 60, random.Random(2)).power_w == pytest.approx(-s.demand_w)


# ------------------------------------------------------------------------------------ determinism


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_a_seed_replays_the_same_run(kind: str) -> None:
    """Deterministic given a seeded random.Random: same seed, same readings; another seed, others."""
    model = MODELS[kind]
    params = {"battery": BAT, "pv": PVParams(nameplate_w=5000, cloudiness=0.5), "ev_charger": EV, "load": LOADP}[kind]
    a = backfill(model, params, 0, 2, 900, random.Random(42))
    b = backfill(model, params, 0, 2, 900, random.Random(42))
    assert a == b
    if kind in ("pv", "load"):  # the noisy ones
        assert backfill(model, params, 0, 2, 900, random.Random(43)) != a


# --------------------------------------------------------------------------------------- backfill


def test_backfill_has_the_daily_shape_of_the_profile() -> None:
    """Weeks of readings without events; evening-peak hours import more than the night."""
    rows = backfill(LOAD, LOADP, 0, 14, 900, random.Random(9))
    assert len(rows) == 14 * 96
    assert [t for t, _ in rows[:3]] == [0, 900, 1800]
    by_hour: dict[int, list[float]] = {}
    for t, w in rows:
        by_hour.setdefault(int(t % DAY // H), []).append(w)
    mean = {h: sum(v) / len(v) for h, v in by_hour.items()}
    assert mean[19] > 2 * mean[3]
    assert mean[7] > 1.5 * mean[3]
    assert all(w > 0 for _, w in rows)  # a load only imports


def test_backfill_of_pv_exports_by_day_only() -> None:
    rows = backfill(PV, PVParams(nameplate_w=4000), 0, 3, 3600, random.Random(0))
    assert all(w <= 0 for _, w in rows)
    assert all(w == 0 for t, w in rows if not 6 <= t % DAY / H < 18)
    assert min(w for _, w in rows) < -3000


def test_load_profile_peaks_morning_and_evening() -> None:
    assert load_profile_w(LOADP, 19 * H) > load_profile_w(LOADP, 7.5 * H) > load_profile_w(LOADP, 3 * H)


# ---------------------------------------------------------------------------------- bid curves


def _monotone(curve):
    return all(p1 < p2 and q1 <= q2 for (p1, q1), (p2, q2) in zip(curve, curve[1:]))


def test_battery_offers_what_its_soc_above_reserve_sustains_over_the_window() -> None:
    """Discharge offer = min(max discharge, (SoC − reserve) · η / window), in kW, from 0 at the floor."""
    s = BATTERY.initial(BAT, 0, random.Random(0))  # 5 kWh stored, 2 kWh reserve → 3 kWh usable
    curve = offered_curve(BATTERY, BAT, s, 0, window_s=4 * H, price_floor=0.05, price_cap=0.5)
    assert curve == [(0.05, 0.0), (0.5, pytest.approx(3000 * 0.9 / 4 / 1000))]
    short = offered_curve(BATTERY, BAT, s, 0, window_s=H / 2, price_floor=0.05, price_cap=0.5)
    assert short[-1][1] == pytest.approx(4.0)  # the rating caps it
    empty = BATTERY.step(BAT, s, Control(fixed_w_pct=100), 0, 2 * H, random.Random(0))
    assert offered_curve(BATTERY, BAT, empty, 0, window_s=H, price_floor=0.05, price_cap=0.5) == [(0.05, 0.0)]


def test_ev_offers_to_reduce_charging_only_as_far_as_its_deadline_allows() -> None:
    """Seed convention (negative = consumption): full-rate charging at the floor, the slowest
    charging that still meets the deadline at the cap."""
    s = EV_CHARGER.initial(EV, 0, random.Random(0))
    # plugged at 18:00, 20 kWh due by 06:00 at 7.4 kW: a 2 h window can drop to zero
    assert offered_curve(EV_CHARGER, EV, s, 18 * H, window_s=2 * H, price_floor=0.1, price_cap=1) == [
        (0.1, pytest.approx(-7.4)), (1, pytest.approx(0.0))]
    # 10 h window: 2 h after it at 7.4 kW = 14.8 kWh, so 5.2 kWh in 10 h → 0.52 kW at least
    curve = offered_curve(EV_CHARGER, EV, s, 18 * H, window_s=10 * H, price_floor=0.1, price_cap=1)
    assert curve[-1][1] == pytest.approx(-0.52)
    assert _monotone(curve)
    assert offered_curve(EV_CHARGER, EV, s, 12 * H, window_s=H, price_floor=0.1, price_cap=1) == [(0.1, 0.0)]


def test_load_offers_its_curtailable_share_and_pv_offers_nothing() -> None:
    s = LOAD.initial(LOADP, 19 * H, random.Random(0))
    curve = offered_curve(LOAD, LOADP, s, 19 * H, window_s=H, price_floor=0.1, price_cap=0.3)
    assert _monotone(curve) and curve[0][1] < 0
    assert curve[1][1] == pytest.approx(0.6 * curve[0][1])
    pv = PVParams(nameplate_w=5000)
    assert offered_curve(PV, pv, PV.initial(pv, 0, random.Random(0)), 12 * H, window_s=H, price_floor=0.1, price_cap=0.3) == []


def test_offered_curve_refuses_a_floor_not_below_the_cap() -> None:
    s = BATTERY.initial(BAT, 0, random.Random(0))
    with pytest.raises(ValueError, match="price_floor"):
        offered_curve(BATTERY, BAT, s, 0, window_s=H, price_floor=0.5, price_cap=0.5)


# -------------------------------------------------------------------------------------- validation


@pytest.mark.parametrize(("build", "field"), [
    (lambda: BatteryParams(capacity_wh=0, max_charge_w=1, max_discharge_w=1), "capacity_wh"),
    (lambda: BatteryParams(capacity_wh=1, max_charge_w=1, max_discharge_w=1, round_trip_efficiency=1.2), "round_trip_efficiency"),
    (lambda: BatteryParams(capacity_wh=1, max_charge_w=1, max_discharge_w=1, reserve_pct=120), "reserve_pct"),
    (lambda: PVParams(nameplate_w=1, sunrise_h=19, sunset_h=7), "sunrise_h"),
    (lambda: LoadParams(curtailable_share=1.5), "curtailable_share"),
    (lambda: EVSession(arrival=10, departure=5, energy_wh=1, max_rate_w=1), "departure"),
    (lambda: Control(fixed_w_pct=150), "opModFixedW"),
    (lambda: Control(max_lim_w_pct=-1), "opModMaxLimW"),
])
def test_bad_parameters_are_refused_naming_the_field(build, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        build()


def test_a_step_cannot_start_before_the_state() -> None:
    """Time only moves forward: a step starting before the state's time is an error (a gap is idle time)."""
    rng = random.Random(0)
    s = BATTERY.step(BAT, BATTERY.initial(BAT, 0, rng), None, 0, 60, rng)
    with pytest.raises(ValueError, match="before the state's time"):
        BATTERY.step(BAT, s, None, 30, 60, rng)
    assert BATTERY.step(BAT, s, None, 600, 60, rng).time == 660
