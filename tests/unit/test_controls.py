"""programs.controls: setpoint → 2030.5 control per device kind, the fleet version, OCPP, DERType."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from fractions import Fraction
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from programs.controls import (
    ControlRatings,
    ControlError,
    active_power,
    control_for,
    der_type_kind,
    fixed_w_hundredths,
    percent_hundredths,
    set_charging_profile,
)
from programs.kinds import DeviceKind

B, EV, PV, LOAD = DeviceKind.BATTERY, DeviceKind.EV_CHARGER, DeviceKind.PV, DeviceKind.LOAD


def _half_away(x: Fraction) -> int:
    """Reference rounding on exact rationals (tests only)."""
    n = abs(x.numerator) * 2 + x.denominator
    q = n // (2 * x.denominator)
    return q if x >= 0 else -q


# --- battery ------------------------------------------------------------------------------------
def test_seed_4_3_example_3_5_kw_on_5_kw_is_7000():
    """Seed §4.3: "opModFixedW": 7000  // 70.00% of 5 kW = 3.5 kW."""
    plan = control_for(B, 3.5, ControlRatings(set_max_w=5000))
    assert (plan.mode, plan.value, plan.multiplier) == ("opModFixedW", 7000, None)
    assert plan.commanded_kw == 3.5 and not plan.clamped
    assert plan.basis == "setMaxW"


def test_battery_discharge_is_percent_of_set_max_discharge_rate_before_set_max_w():
    """flexibility.md: positive as % of setMaxW (or setMaxDischargeRateW); the brief: the discharge
    rate first, setMaxW as fallback."""
    plan = control_for(B, 2.0, ControlRatings(set_max_w=10_000, set_max_discharge_rate_w=4000))
    assert plan.value == 5000 and plan.basis == "setMaxDischargeRateW" and plan.commanded_kw == 2.0


def test_battery_setting_falls_back_to_its_own_rating_then_to_max_w():
    """Schema: setMaxDischargeRateW "Defaults to rtgMaxDischargeRateW"; settings win over ratings."""
    r = ControlRatings(set_max_w=10_000, rtg_max_w=12_000, rtg_max_discharge_rate_w=8000)
    assert control_for(B, 2.0, r).basis == "rtgMaxDischargeRateW"
    assert control_for(B, 2.0, r).value == 2500
    assert control_for(B, 2.0, ControlRatings(rtg_max_w=8000)).basis == "rtgMaxW"
    assert control_for(B, 2.0, ControlRatings(set_max_w=4000, rtg_max_w=8000)).value == 5000


def test_battery_charge_is_negative_percent_of_set_max_charge_rate():
    """flexibility.md: negative (charging) as % of setMaxChargeRateW."""
    r = ControlRatings(set_max_w=10_000, set_max_charge_rate_w=4000, rtg_max_charge_rate_w=5000)
    plan = control_for(B, -2.0, r)
    assert (plan.value, plan.basis, plan.commanded_kw) == (-5000, "setMaxChargeRateW", -2.0)
    assert control_for(B, -2.0, ControlRatings(rtg_max_charge_rate_w=5000)).value == -4000


def test_battery_charge_without_a_charge_rate_names_it_even_when_set_max_w_is_known():
    with pytest.raises(ControlError, match="setMaxChargeRateW or rtgMaxChargeRateW"):
        control_for(B, -1.0, ControlRatings(set_max_w=5000))


def test_battery_discharge_without_any_rating_names_them():
    with pytest.raises(ControlError, match="battery: discharging needs setMaxDischargeRateW.*setMaxW"):
        control_for(B, 1.0, ControlRatings())


def test_battery_clamps_to_plus_minus_100_percent():
    r = ControlRatings(set_max_w=5000, set_max_charge_rate_w=3000)
    up, down = control_for(B, 6.0, r), control_for(B, -9.0, r)
    assert (up.value, up.clamped, up.commanded_kw) == (10_000, True, 5.0)
    assert (down.value, down.clamped, down.commanded_kw) == (-10_000, True, -3.0)
    exact = control_for(B, 5.0, r)
    assert (exact.value, exact.clamped) == (10_000, False)


def test_battery_zero_needs_no_rating_and_holds_idle():
    plan = control_for(B, 0.0, ControlRatings())
    assert (plan.mode, plan.value, plan.commanded_kw, plan.clamped) == ("opModFixedW", 0, 0.0, False)


@pytest.mark.parametrize(
    "kw, expected",
    [
        (1.0005, 1001),  # 1000.5 units → away from zero
        (-1.0005, -1001),
        (0.0005, 1),  # 0.5 unit: Python's round(0.5) would give 0
        (1.0025, 1003),  # half-even would give 1002
        (-1.0025, -1003),
        (1.00049, 1000),
        (0.35, 350),  # 0.35 is 0.34999… in binary; milliwatt quantization absorbs it
    ],
)
def test_rounding_is_half_away_from_zero_on_exact_ties(kw, expected):
    """flexibility.md: round half away from zero (10 kW device: 1 unit = 1 W)."""
    r = ControlRatings(set_max_w=10_000, set_max_charge_rate_w=10_000)
    assert control_for(B, kw, r).value == expected
    assert percent_hundredths(kw, 10_000)[0] == expected


def test_percent_hundredths_matches_exact_decimal_rounding_for_decimal_inputs():
    """For setpoints with ≤ 6 decimals in kW and ratings with ≤ 3 decimals in W, the result is the
    exact half-away rounding of the intended decimal ratio (no float noise survives)."""
    rng = np.random.default_rng(7)
    for _ in range(20_000):
        mw = int(rng.integers(-12_000_000, 12_000_001))
        den_mw = int(rng.integers(1, 12_000_000))
        kw = float(Decimal(mw) / Decimal(10**6))
        den_w = float(Decimal(den_mw) / Decimal(1000))
        exact = Fraction(mw, 10**6) * 1000 * 10_000 / Fraction(den_mw, 1000)
        expected = max(-10_000, min(10_000, _half_away(exact)))
        assert percent_hundredths(kw, den_w) == (expected, abs(mw) > den_mw), (kw, den_w)


# --- error bound (property) ---------------------------------------------------------------------
def _unit_kw(plan) -> float:
    if plan.mode == "opModTargetW":
        return 10.0**plan.multiplier / 1000
    return plan.basis_w / 10_000 / 1000


@pytest.mark.parametrize("kind", [B, EV, PV, LOAD])
def test_commanded_is_within_half_a_unit_of_the_setpoint_when_not_clamped(kind):
    """flexibility.md: "the rounding error is ≤ 0.5 W per 10 kW device" (plus 0.5 mW of the
    milliwatt quantization); also: clamped exactly when the setpoint is outside the device's range."""
    rng = np.random.default_rng(11)
    n_unclamped = 0
    for _ in range(5000):
        rating = float(rng.uniform(500, 60_000))
        r = ControlRatings(set_max_w=rating, set_max_charge_rate_w=rating * 0.8, set_max_discharge_rate_w=rating * 0.9)
        kw = float(rng.uniform(-1.2, 1.2) * rating / 1000)
        plan = control_for(kind, kw, r)
        if plan.clamped:
            continue
        n_unclamped += 1
        assert abs(plan.commanded_kw - kw) <= 0.5 * _unit_kw(plan) + 0.5e-6 + 1e-12 * abs(kw), (kw, plan)
        if kind is B:
            assert abs(plan.commanded_kw - kw) <= 0.5 * (rating / 10_000) / 1000 + 1e-6
    assert n_unclamped > 1000


def test_ten_kw_device_error_is_at_most_half_a_watt():
    """flexibility.md: the rounding error is ≤ 0.5 W per 10 kW device."""
    r = ControlRatings(set_max_w=10_000, set_max_charge_rate_w=10_000)
    worst = max(abs(control_for(B, kw, r).commanded_kw - kw) for kw in np.linspace(-9.99, 9.99, 20_011))
    assert 0.4e-3 < worst <= 0.5e-3 + 1e-9


# --- EV charger ---------------------------------------------------------------------------------
def test_ev_charger_holds_charging_at_the_cleared_rate():
    plan = control_for(EV, -3.68, ControlRatings(set_max_w=7360, set_max_charge_rate_w=7360))
    assert (plan.mode, plan.value, plan.commanded_kw, plan.clamped) == ("opModFixedW", -5000, -3.68, False)


def test_ev_charger_positive_setpoint_clamps_to_zero_no_v2g():
    plan = control_for(EV, 2.0, ControlRatings(set_max_charge_rate_w=7000))
    assert (plan.value, plan.commanded_kw, plan.clamped) == (0, 0.0, True)
    assert control_for(EV, 0.0, ControlRatings()).clamped is False


def test_ev_charger_needs_a_charge_rate():
    with pytest.raises(ControlError, match="ev_charger: charging needs setMaxChargeRateW"):
        control_for(EV, -3.0, ControlRatings(set_max_w=7000, rtg_max_w=7000))


def test_ev_charger_clamps_at_full_charging_rate():
    plan = control_for(EV, -11.0, ControlRatings(set_max_charge_rate_w=7400))
    assert (plan.value, plan.commanded_kw, plan.clamped) == (-10_000, -7.4, True)


# --- PV -----------------------------------------------------------------------------------------
def test_pv_limits_generation_as_percent_of_set_max_w():
    """flexibility.md/derp.py: opModMaxLimW is PerCent (hundredths) of setMaxW."""
    plan = control_for(PV, 3.0, ControlRatings(set_max_w=5000, set_max_discharge_rate_w=1000))
    assert (plan.mode, plan.value, plan.commanded_kw, plan.basis) == ("opModMaxLimW", 6000, 3.0, "setMaxW")
    assert control_for(PV, 3.0, ControlRatings(rtg_max_w=6000)).value == 5000


def test_pv_negative_setpoint_clamps_to_zero_and_above_rating_to_100_percent():
    neg = control_for(PV, -1.0, ControlRatings(set_max_w=5000))
    assert (neg.mode, neg.value, neg.clamped) == ("opModMaxLimW", 0, True)
    over = control_for(PV, 7.0, ControlRatings(set_max_w=5000))
    assert (over.value, over.clamped, over.commanded_kw) == (10_000, True, 5.0)


def test_pv_without_set_max_w_or_rtg_max_w_is_an_error():
    with pytest.raises(ControlError, match="pv: a generation limit needs setMaxW or rtgMaxW"):
        control_for(PV, 1.0, ControlRatings(set_max_charge_rate_w=5000))


# --- controllable load --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kw, value, multiplier",
    [(-1.2345, -12345, -1), (-50.0, -5000, 1), (-3.4567, -3457, 0), (-2.0, -2000, 0), (-0.0123456, -12346, -3)],
)
def test_load_target_w_picks_the_multiplier_with_least_rounding(kw, value, multiplier):
    """derp.py: opModTargetW is ActivePower, value Int16 × 10^multiplier W, negative = consumption."""
    plan = control_for(LOAD, kw, ControlRatings())
    assert (plan.mode, plan.value, plan.multiplier) == ("opModTargetW", value, multiplier)
    assert plan.commanded_kw == pytest.approx(value * 10.0**multiplier / 1000, rel=1e-15)


def test_active_power_is_least_rounding_among_all_int16_encodings():
    rng = np.random.default_rng(3)
    for mw in rng.integers(-(10**12), 1, size=3000):
        mw = int(mw)
        value, m = active_power(mw)
        assert -32768 <= value <= 32767
        errors = []
        for k in range(-3, 10):
            v = _half_away(Fraction(mw, 10 ** (k + 3)))
            if -32768 <= v <= 32767:
                errors.append(abs(v * 10 ** (k + 3) - mw))
        assert abs(value * 10 ** (m + 3) - mw) == min(errors)


def test_load_positive_setpoint_clamps_to_zero_and_consumption_to_set_max_w():
    pos = control_for(LOAD, 1.0, ControlRatings())
    assert (pos.value, pos.clamped, pos.mode) == (0, True, "opModTargetW")
    big = control_for(LOAD, -9.0, ControlRatings(set_max_w=4500))
    assert (big.value, big.multiplier, big.commanded_kw, big.clamped) == (-4500, 0, -4.5, True)


# --- fleets -------------------------------------------------------------------------------------
def _scalar_fleet(p, pos, neg):
    out, mask = [], []
    for x, a, b in zip(p, pos, neg):
        v, c = percent_hundredths(float(x), float(a if x > 0 else b)) if x != 0 else (0, False)
        out.append(v)
        mask.append(c)
    return np.array(out), np.array(mask)


def test_fleet_version_agrees_exactly_with_the_scalar_on_random_cases():
    rng = np.random.default_rng(2030_5)
    n = 100_000
    pos = rng.uniform(1000, 20_000, n)
    pos[::2] = pos[::2].round(1)  # ratings like 4999.5 W (ActivePower with multiplier -1) and raw floats
    neg = rng.uniform(1000, 20_000, n)
    p = rng.uniform(-25, 25, n)
    p[::97] = 0.0
    values, clamped = fixed_w_hundredths(p, pos, neg)
    ref_v, ref_c = _scalar_fleet(p, pos, neg)
    assert values.dtype == np.int64
    assert np.array_equal(values, ref_v) and np.array_equal(clamped, ref_c)
    assert clamped.any() and (~clamped).any()


def test_fleet_version_agrees_on_exact_ties_and_rounds_them_away_from_zero():
    """Ties like k + 0.5 units: both versions round away from zero."""
    rng = np.random.default_rng(5)
    den_w = rng.integers(1, 200, 20_000).astype(float) * 100.0  # 100 W … 20 kW: unit = den/10000 W
    k = rng.integers(-9999, 9999, 20_000)
    p_kw = (k + 0.5) * den_w / 10_000 / 1000
    values, clamped = fixed_w_hundredths(p_kw, den_w, den_w)
    ref_v, ref_c = _scalar_fleet(p_kw, den_w, den_w)
    assert np.array_equal(values, ref_v) and np.array_equal(clamped, ref_c)
    assert np.array_equal(values, np.where(k >= 0, k + 1, k))
    assert not clamped.any()


def test_fleet_version_reads_only_the_denominator_of_the_setpoints_sign():
    values, clamped = fixed_w_hundredths(
        np.array([3.5, -2.0, 0.0, 7.0]), np.array([5000, np.nan, np.nan, 5000.0]), np.array([np.nan, 4000, np.nan, 1.0])
    )
    assert values.tolist() == [7000, -5000, 0, 10_000]
    assert clamped.tolist() == [False, False, False, True]


def test_fleet_version_names_the_device_missing_its_rating():
    with pytest.raises(ControlError, match=r"device #1: the charge \(negative\) rating"):
        fixed_w_hundredths(np.array([1.0, -1.0]), np.array([5000.0, 5000.0]), np.array([5000.0, np.nan]))
    with pytest.raises(ControlError, match="setpoint #0"):
        fixed_w_hundredths(np.array([np.inf]), np.array([5000.0]), np.array([5000.0]))


# --- input errors -------------------------------------------------------------------------------
def test_control_error_is_a_value_error_and_bad_inputs_are_named():
    assert issubclass(ControlError, ValueError)
    with pytest.raises(ControlError, match="unknown device kind 'heater'"):
        control_for("heater", 1.0, ControlRatings(set_max_w=1000))
    with pytest.raises(ControlError, match="setpoint must be a finite number"):
        control_for(B, float("nan"), ControlRatings(set_max_w=1000))
    with pytest.raises(ControlError, match="setMaxW must be a positive number of W"):
        control_for(PV, 1.0, ControlRatings(set_max_w=0))


# --- OCPP ---------------------------------------------------------------------------------------
def test_ocpp_seed_4_2_example_50_kw_at_240_v_is_208_3_a():
    """Seed §4.2: "limit": 50.0 * 1000 / 240  // Convert kW to Amps."""
    req = set_charging_profile(50_000, unit="A", voltage_v=240, phases=1, profile_id=7, start=None, duration_s=None)
    period = req["csChargingProfiles"]["chargingSchedule"]["chargingSchedulePeriod"]
    assert period == [{"startPeriod": 0, "limit": 208.3, "numberPhases": 1}]


def test_ocpp_amps_per_phase_three_phase_11_kw_at_230_v_is_15_9_a():
    req = set_charging_profile(11_000, unit="A", voltage_v=230, phases=3, profile_id=1, start=None, duration_s=None)
    assert req["csChargingProfiles"]["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"] == 15.9


def test_ocpp_negative_charging_setpoint_becomes_a_positive_limit_rounded_half_away():
    req = set_charging_profile(-7400.04, profile_id=1, start=None, duration_s=None)
    assert req["csChargingProfiles"]["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"] == 7400.0
    amps = set_charging_profile(-57.5, unit="A", voltage_v=230, profile_id=1, start=None, duration_s=None)
    assert amps["csChargingProfiles"]["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"] == 0.3  # 0.25 → 0.3


def test_ocpp_1_6_payload_shape():
    """OCPP 1.6 SetChargingProfile.req: connectorId + csChargingProfiles{chargingProfileId,
    stackLevel, chargingProfilePurpose, chargingProfileKind, chargingSchedule{duration,
    startSchedule, chargingRateUnit, chargingSchedulePeriod[{startPeriod, limit, numberPhases}]}}."""
    start = datetime(2024, 7, 1, 16, 0, 30, 123456, tzinfo=ZoneInfo("America/Los_Angeles"))
    req = set_charging_profile(
        11_000, unit="W", phases=3, profile_id=42, stack_level=2, start=start, duration_s=3600, connector_id=2
    )
    assert req == {
        "connectorId": 2,
        "csChargingProfiles": {
            "chargingProfileId": 42,
            "stackLevel": 2,
            "chargingProfilePurpose": "TxDefaultProfile",
            "chargingProfileKind": "Absolute",
            "chargingSchedule": {
                "duration": 3600,
                "startSchedule": "2024-07-01T23:00:30Z",
                "chargingRateUnit": "W",
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 11000.0, "numberPhases": 3}],
            },
        },
    }


def test_ocpp_2_0_1_payload_shape():
    """OCPP 2.0.1 SetChargingProfileRequest: evseId + chargingProfile{id, stackLevel,
    chargingProfilePurpose, chargingProfileKind, chargingSchedule[{id, startSchedule, duration,
    chargingRateUnit, chargingSchedulePeriod}]}."""
    start = datetime(2024, 7, 1, 23, 0, tzinfo=timezone.utc)
    req = set_charging_profile(
        -16_000, version="2.0.1", unit="A", voltage_v=230, phases=3, profile_id=9, start=start, duration_s=900
    )
    assert req["evseId"] == 1 and "connectorId" not in req
    prof = req["chargingProfile"]
    assert (prof["id"], prof["stackLevel"], prof["chargingProfileKind"]) == (9, 0, "Absolute")
    assert prof["chargingProfilePurpose"] == "TxDefaultProfile"
    (sched,) = prof["chargingSchedule"]
    assert sched == {
        "id": 9,
        "duration": 900,
        "startSchedule": "2024-07-01T23:00:00Z",
        "chargingRateUnit": "A",
        "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 23.2, "numberPhases": 3}],
    }


def test_ocpp_without_start_is_relative_and_bad_arguments_are_named():
    req = set_charging_profile(7000, profile_id=1, start=None, duration_s=None)
    assert req["csChargingProfiles"]["chargingProfileKind"] == "Relative"
    assert "startSchedule" not in req["csChargingProfiles"]["chargingSchedule"]
    naive = datetime(2024, 7, 1, 16, 0)
    with pytest.raises(ControlError, match="timezone-aware"):
        set_charging_profile(7000, profile_id=1, start=naive, duration_s=None)
    with pytest.raises(ControlError, match="numberPhases"):
        set_charging_profile(7000, profile_id=1, phases=4, start=None, duration_s=None)
    with pytest.raises(ControlError, match="version"):
        set_charging_profile(7000, version="2.1", profile_id=1, start=None, duration_s=None)  # type: ignore[arg-type]
    with pytest.raises(ControlError, match="duration_s"):
        set_charging_profile(7000, profile_id=1, start=None, duration_s=0)
    with pytest.raises(ControlError, match="limit_w"):
        set_charging_profile(float("inf"), profile_id=1, start=None, duration_s=None)
    with pytest.raises(ControlError, match="profile_id must be a whole number"):
        set_charging_profile(7000, profile_id=-1, start=None, duration_s=None)


# --- DERType ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "der_type, kind",
    [(4, PV), (80, B), (81, EV), (82, EV), (83, B), (0, None), (1, None), (2, None), (5, None), (6, None), (200, None)],
)
def test_der_type_kind_maps_2030_5_der_types(der_type, kind):
    """2030.5 DERType: 4 PV, 80 other storage, 81 EV, 82 EVSE, 83 combined PV and storage."""
    assert der_type_kind(der_type) is kind


def test_der_type_kind_rejects_values_that_are_not_a_der_type():
    with pytest.raises(ControlError, match="DERType must be a whole number 0…255"):
        der_type_kind(256)


def test_fleet_controls_equal_control_for_device_by_device():
    """The vectorised mapping the publisher uses gives the scalar mapping's mode, value and
    multiplier for every kind, sign, clamp and missing-but-unneeded rating."""
    from programs.controls import KIND_INDEX, KINDS, MODES, fleet_controls

    rng = np.random.default_rng(11)
    kinds, powers, ratings = [], [], []
    for _ in range(3000):
        k = KINDS[int(rng.integers(0, 4))]
        r = ControlRatings(
            set_max_w=float(rng.choice([3000, 5000, 7600.5])) if rng.random() < 0.8 else None,
            rtg_max_w=10_000.0,
            set_max_charge_rate_w=float(rng.choice([3300, 7200, 11000])) if rng.random() < 0.7 else None,
            rtg_max_charge_rate_w=11_000.0,
            set_max_discharge_rate_w=float(rng.choice([2500, 5000])) if rng.random() < 0.5 else None,
        )
        p = float(rng.choice([0.0, rng.uniform(-15, 15), round(rng.uniform(-12, 12), 3), 0.00005, -0.00005]))
        kinds.append(KIND_INDEX[k])
        powers.append(p)
        ratings.append(r)
    mode, value, mult = fleet_controls(np.array(kinds), np.array(powers), ratings)
    for i in range(len(kinds)):
        plan = control_for(KINDS[kinds[i]], powers[i], ratings[i])
        assert (MODES[mode[i]], int(value[i]), int(mult[i])) == (plan.mode, plan.value, plan.multiplier or 0), (
            KINDS[kinds[i]], powers[i], ratings[i])


def test_fleet_controls_ignore_a_zero_rating_the_kind_does_not_use():
    """An EV charger or a load reports setMaxDischargeRateW 0 (it cannot discharge): the scalar
    mapping never reads it, so the vectorised one must not refuse the whole fleet for it."""
    from programs.controls import KIND_INDEX, MODES, fleet_controls

    r = ControlRatings(set_max_w=7200.0, set_max_charge_rate_w=7200.0, set_max_discharge_rate_w=0.0)
    cases = [(EV, -3.6), (DeviceKind.LOAD, -1.0)]
    mode, value, mult = fleet_controls(np.array([KIND_INDEX[k] for k, _ in cases]), np.array([p for _, p in cases]),
                                       [r, r])
    for i, (k, p) in enumerate(cases):
        plan = control_for(k, p, r)
        assert (MODES[mode[i]], int(value[i]), int(mult[i])) == (plan.mode, plan.value, plan.multiplier or 0)
    with pytest.raises(ControlError, match="setMaxDischargeRateW"):  # a battery does need it
        control_for(B, 2.0, r)
