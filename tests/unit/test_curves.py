"""programs.curves: power curves, objectives, default curves and rating checks, with hand-computed
numbers (the arithmetic is in the comments) and a few seeded random properties."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from programs.curves import (
    LOAD_CURTAILABLE_SHARE, CurveError, DerRatings, EvChargeObjective, MissingRating, ReduceObjective,
    ReserveObjective, check_within_ratings, default_curve, default_max_reduction_kw, objective_curve,
    parse_objective, parse_power_points, power_to_reduction, reduction_to_power,
)
from programs.kinds import DeviceKind

BAT, PV, EV, LOAD = DeviceKind.BATTERY, DeviceKind.PV, DeviceKind.EV_CHARGER, DeviceKind.LOAD


def at(h: float) -> datetime:
    """2024-12-15 at h o'clock UTC."""
    return datetime(2024, 12, 15, tzinfo=timezone.utc) + timedelta(hours=h)


WS, WE = at(14), at(16)  # a 2 h window
H2 = 7200.0  # the same window in seconds, for default curves


# --- power curves ------------------------------------------------------------------------------
@pytest.mark.parametrize("points, baseline, reduction", [
    # battery: baseline -2 kW (charging) at the lowest price; q = P - (-2)
    ([(0.05, -2), (0.10, 0), (0.20, 3)], -2.0, ((0.05, 0.0), (0.10, 2.0), (0.20, 5.0))),
    # Beckn objects, a vertical step at 0.1: 1 kW -> 4 kW is 3 kW of reduction
    ([{"price": 0.1, "powerKW": 1}, {"price": 0.1, "powerKW": 4}], 1.0, ((0.1, 0.0), (0.1, 3.0))),
    # one point: a constant offer of no reduction
    ([(0.1, -3)], -3.0, ((0.1, 0.0),)),
    # both formats in one list
    ([{"price": 0.1, "powerKW": -3}, [0.2, -1]], -3.0, ((0.1, 0.0), (0.2, 2.0))),
])
def test_power_to_reduction_subtracts_the_lowest_price_power(points, baseline, reduction):
    curve, b = power_to_reduction(points)
    assert b == baseline and curve.points == reduction


def test_a_step_in_a_power_curve_is_right_continuous():
    curve, _ = power_to_reduction([(0.1, 1), (0.1, 4)])
    assert curve(0.0999) == 0.0 and curve(0.1) == 3.0


def test_reduction_to_power_adds_the_baseline_back():
    curve, b = power_to_reduction([(0.05, -2), (0.20, 3)])
    assert reduction_to_power(2.0, b) == 0.0  # -2 + 2
    assert reduction_to_power(curve, b) == [(0.05, -2.0), (0.20, 3.0)]


@pytest.mark.parametrize("points, message", [
    ([], "no points"),
    ("0.1,3", "must be a list of points"),
    ({"price": 0.1, "powerKW": 3}, "must be a list of points"),
    (None, "must be a list of points"),
    ([(math.nan, 1)], "point 0: price must be a finite number"),
    ([(0.1, math.inf)], "point 0: powerKW must be a finite number"),
    ([(0.1, "5")], "point 0: powerKW must be a finite number"),
    ([(0.1, True)], "point 0: powerKW must be a finite number"),
    ([(10**400, 1)], "point 0: price must be a finite number"),  # too large for a float
    ([(0.1, 1, 2)], "point 0: expected (price, powerKW)"),
    ([{"price": 0.1}], "point 0: expected {'price', 'powerKW'}"),
    ([{"price": 0.1, "powerKW": 1, "kind": "x"}], "point 0: expected {'price', 'powerKW'}"),
    ([(0.2, 1), (0.1, 2)], "point 1: price 0.1 after 0.2; prices must not decrease"),
    ([(0.1, 1), (0.1, 2), (0.1, 3)], "point 2: a third point at price 0.1"),
    ([(0.1, 2), (0.2, 1)], "point 1: powerKW 1.0 is below 2.0"),
])
def test_bad_power_curves_are_refused_naming_the_point(points, message):
    with pytest.raises(CurveError) as e:
        parse_power_points(points)
    assert message in str(e.value)


def test_a_reduction_too_large_for_a_float_is_a_curve_error():
    # -1e308 -> 1e308 is a 2e308 kW reduction: overflows to inf
    with pytest.raises(CurveError, match="point 1: powerKW - baseline"):
        power_to_reduction([(0.0, -1e308), (1.0, 1e308)])


# --- ratings -----------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, field", [
    ({"kind": "heater"}, "ratings.kind"),
    ({"kind": BAT, "max_w": -1}, "ratings.max_w must be 0 or more"),
    ({"kind": BAT, "max_wh": True}, "ratings.max_wh must be a finite number"),
    ({"kind": BAT, "availability_s": math.nan}, "ratings.availability_s must be a finite number"),
    ({"kind": BAT, "max_charge_w": 10**400}, "ratings.max_charge_w must be a finite number"),
    ({"kind": BAT, "soc_percent": 101}, "ratings.soc_percent must be between 0 and 100"),
    ({"kind": BAT, "reserve_percent": -1}, "ratings.reserve_percent must be between 0 and 100"),
    ({"kind": LOAD, "baseline_kw": math.inf}, "ratings.baseline_kw must be a finite number"),
])
def test_bad_ratings_are_refused_naming_the_field(kwargs, field):
    with pytest.raises(CurveError, match=field.replace(".", r"\.")):
        DerRatings(**kwargs)


@pytest.mark.parametrize("ratings, discharge, charge", [
    (DerRatings(BAT, max_w=4000, max_charge_w=3000, max_discharge_w=5000), 5.0, 3.0),
    (DerRatings(BAT, max_w=4000), 4.0, 4.0),  # both fall back to max_w
    (DerRatings(BAT), None, None),
    (DerRatings(EV, max_w=7000, max_charge_w=11000), 0.0, 11.0),  # V1G: never discharges
    (DerRatings(EV, max_w=7000), 0.0, 7.0),
    (DerRatings(LOAD, max_w=2000, max_charge_w=9000), 0.0, 2.0),  # a load's rating is max_w
    (DerRatings(PV, max_w=6000, max_discharge_w=1000), 6.0, 0.0),  # PV never consumes
])
def test_limits_fall_back_by_kind(ratings, discharge, charge):
    assert ratings.discharge_limit_kw() == discharge and ratings.charge_limit_kw() == charge


def test_kind_is_accepted_as_text():
    assert DerRatings("ev_charger").kind is EV


# --- check_within_ratings ----------------------------------------------------------------------
BATTERY_3_5 = DerRatings(BAT, max_charge_w=3000, max_discharge_w=5000)


@pytest.mark.parametrize("ratings, points", [
    (BATTERY_3_5, [(0.0, -3.0), (1.0, 5.0)]),  # both ends exactly at the limits
    (BATTERY_3_5, [(0.0, -3.0000005)]),  # within the 1e-6 kW rounding allowance
    (DerRatings(EV, max_charge_w=11000), [(0.0, -11.0), (1.0, 0.0)]),
    (DerRatings(LOAD, max_w=2000), [(0.0, -2.0), (1.0, -0.5)]),
    (DerRatings(PV, max_w=6000), [(0.0, 0.0), (1.0, 6.0)]),
    (DerRatings(BAT), [(0.0, -100.0), (1.0, 100.0)]),  # unknown ratings: not checked
    (DerRatings(LOAD), [(0.0, -100.0)]),
    (DerRatings(PV), [(0.0, 100.0)]),
])
def test_points_within_ratings_pass(ratings, points):
    check_within_ratings(points, ratings)


@pytest.mark.parametrize("ratings, points, message", [
    (BATTERY_3_5, [(0.0, -3.5)], "consumption 3.5 kW is above the battery's limit 3.0 kW (max_charge_w)"),
    (BATTERY_3_5, [(0.0, 0.0), (1.0, 5.5)],
     "point 1 (price 1.0, 5.5 kW): generation/discharge 5.5 kW is above the battery's limit 5.0 kW (max_discharge_w)"),
    (DerRatings(BAT, max_w=4000), [(0.0, 4.5)], "above the battery's limit 4.0 kW (max_w)"),
    (DerRatings(EV, max_charge_w=11000), [(0.0, -12.0)], "above the EV charger's limit 11.0 kW (max_charge_w)"),
    (DerRatings(EV), [(0.0, 0.5)], "EV charger cannot generate or discharge"),
    (DerRatings(LOAD), [(0.0, -1.0), (1.0, 0.5)], "point 1 (price 1.0, 0.5 kW): a load cannot generate"),
    (DerRatings(LOAD, max_w=2000), [(0.0, -2.5)], "above the load's limit 2.0 kW (max_w)"),
    (DerRatings(PV), [(0.0, -0.5)], "a PV inverter cannot consume"),
    (DerRatings(PV, max_w=6000), [(0.0, 6.5)], "above the PV inverter's limit 6.0 kW (max_w)"),
])
def test_points_beyond_ratings_are_refused(ratings, points, message):
    with pytest.raises(CurveError) as e:
        check_within_ratings(points, ratings)
    assert message in str(e.value)


# --- objectives: parsing -----------------------------------------------------------------------
EV_OBJ = {"targetChargeKWh": 20, "deadline": "2024-12-15T18:00:00Z", "maxPricePerKWh": 0.12}


def test_parse_reduce_and_reserve_objectives():
    assert parse_objective({"reduceKW": 5, "minPricePerKWh": 0.15}) == ReduceObjective(5.0, 0.15)
    assert parse_objective({"reservePercent": 0, "minPricePerKWh": 0}) == ReserveObjective(0.0, 0.0)


def test_parse_ev_objective_converts_the_deadline_to_utc_and_keeps_constraints():
    obj = parse_objective(dict(EV_OBJ, deadline="2024-12-15T20:00:00+02:00", preferredSource="SOLAR",
                               constraints={"minChargeKWh": 10, "maxChargeKWh": 60}))
    assert obj == EvChargeObjective(20.0, at(18), 0.12, 10.0, 60.0)
    assert obj.deadline.tzinfo == timezone.utc


def test_parsed_objectives_pass_through():
    obj = ReduceObjective(1.0, 0.1)
    assert parse_objective(obj) is obj


@pytest.mark.parametrize("d, message", [
    ([("reduceKW", 1)], "objective must be a JSON object"),
    ({"foo": 1}, "give exactly one of reduceKW, targetChargeKWh, reservePercent (what it asks for), got none"),
    ({"reduceKW": 1, "reservePercent": 10, "minPricePerKWh": 0.1}, "got several"),
    ({1: 2, "a": 3}, "got none"),  # keys of mixed types: still a CurveError
    ({"reduceKW": 1, "minPricePerKWh": 0.1, "deadline": "x"}, "objective.deadline: unknown field"),
    ({"reduceKW": 1}, "objective.minPricePerKWh: required"),
    ({"targetChargeKWh": 1}, "objective.deadline: required; objective.maxPricePerKWh: required"),
    ({"reduceKW": 0, "minPricePerKWh": 0.1}, "objective.reduceKW: must be greater than 0, got 0"),
    ({"reduceKW": 1, "minPricePerKWh": -0.1}, "objective.minPricePerKWh: must be at least 0"),
    ({"reservePercent": 101, "minPricePerKWh": 0}, "objective.reservePercent: must be at least 0 and at most 100"),
    ({"reduceKW": "5", "minPricePerKWh": 0.1}, "objective.reduceKW: must be a finite number"),
    ({"reduceKW": True, "minPricePerKWh": 0.1}, "objective.reduceKW: must be a finite number"),
    ({"reduceKW": 1, "minPricePerKWh": math.nan}, "objective.minPricePerKWh: must be a finite number"),
    ({"reduceKW": 10**400, "minPricePerKWh": 0.1}, "objective.reduceKW: must be a finite number"),
    (dict(EV_OBJ, targetChargeKWh=-1), "objective.targetChargeKWh: must be greater than 0"),
    (dict(EV_OBJ, deadline="2024-12-15T18:00:00"), "objective.deadline: must include a UTC offset"),
    (dict(EV_OBJ, deadline="tomorrow"), "objective.deadline: must be an ISO 8601 date-time"),
    (dict(EV_OBJ, deadline=1734285600), "objective.deadline: must be an ISO 8601 date-time"),
    (dict(EV_OBJ, deadline="0001-01-01T00:00:00+01:00"), "objective.deadline: is outside the range"),
    (dict(EV_OBJ, preferredSource=5), "objective.preferredSource: must be a text"),
    (dict(EV_OBJ, constraints="x"), "objective.constraints: must be an object"),
    (dict(EV_OBJ, constraints={"foo": 1}), "objective.constraints.foo: unknown field"),
    (dict(EV_OBJ, constraints={"minChargeKWh": -1}), "objective.constraints.minChargeKWh: must be a number 0 or more"),
    (dict(EV_OBJ, constraints={"maxChargeKWh": 10**400}), "objective.constraints.maxChargeKWh: must be a number"),
    (dict(EV_OBJ, constraints={"minChargeKWh": 5, "maxChargeKWh": 4}), "minChargeKWh: is above maxChargeKWh"),
])
def test_bad_objectives_are_refused_naming_the_field(d, message):
    with pytest.raises(CurveError) as e:
        parse_objective(d)
    assert message in str(e.value)


def test_every_wrong_field_is_named_at_once():
    with pytest.raises(CurveError) as e:
        parse_objective({"reduceKW": -1, "minPricePerKWh": "x", "extra": 1})
    assert all(f"objective.{k}:" in str(e.value) for k in ("extra", "reduceKW", "minPricePerKWh"))


# --- objectives: curves ------------------------------------------------------------------------
def test_reduce_objective_is_a_step_at_its_price():
    # "reduce 5 kW if price >= 0.15" -> [(0.15, 0), (0.15, 5)], whatever the device
    curve = objective_curve({"reduceKW": 5, "minPricePerKWh": 0.15}, DerRatings(LOAD), WS, WE, WS)
    assert curve.points == ((0.15, 0.0), (0.15, 5.0))


@pytest.mark.parametrize("ratings, reduce_kw, message", [
    # load at -6 kW reducing 7 kW would generate +1 kW
    (DerRatings(LOAD, baseline_kw=-6.0), 7, "load cannot generate"),
    # battery discharging 2 kW reducing 4 kW more: 6 kW > its 5 kW limit
    (DerRatings(BAT, max_discharge_w=5000, baseline_kw=2.0), 4, "above the battery's limit 5.0 kW"),
])
def test_reduce_objective_beyond_ratings_is_refused_when_the_baseline_is_known(ratings, reduce_kw, message):
    with pytest.raises(CurveError, match=message):
        objective_curve({"reduceKW": reduce_kw, "minPricePerKWh": 0.1}, ratings, WS, WE, WS)


def test_reduce_objective_within_ratings_passes():
    # -6 + 6 = 0 kW: a load switched off
    curve = objective_curve({"reduceKW": 6, "minPricePerKWh": 0.1}, DerRatings(LOAD, baseline_kw=-6.0), WS, WE, WS)
    assert curve.points == ((0.1, 0.0), (0.1, 6.0))


EV11 = dict(max_charge_w=11_000)  # r = 11 kW


@pytest.mark.parametrize("ratings, deadline, target, now, q_max", [
    # c = 11, W = 2 h, t_after = 2 h: B = min(22, 20) = 20, M = max(0, 20 - 22) = 0 -> 20 / 2 = 10
    (DerRatings(EV, **EV11, baseline_kw=-11.0), at(18), 20, at(14), 10.0),
    # t_after = 1 h: B = 20, M = 20 - 11 = 9 -> (20 - 9) / 2 = 5.5
    (DerRatings(EV, **EV11, baseline_kw=-11.0), at(17), 20, at(14), 5.5),
    # c = 7: B = min(14, 20) = 14, M = 0 -> 14 / 2 = 7
    (DerRatings(EV, **EV11, baseline_kw=-7.0), at(18), 20, at(14), 7.0),
    # small target: B = min(22, 6) = 6 (it stops when full), M = 0 -> 6 / 2 = 3
    (DerRatings(EV, **EV11, baseline_kw=-11.0), at(18), 6, at(14), 3.0),
    # baseline unknown: c = r = 7 (max_w fallback), B = 14, M = 20 - 14 = 6 -> (14 - 6) / 2 = 4
    (DerRatings(EV, max_w=7000), at(18), 20, at(14), 4.0),
    # baseline not charging (+0.5): c = 0, B = 0 -> 0
    (DerRatings(EV, **EV11, baseline_kw=0.5), at(18), 20, at(14), 0.0),
    # deadline inside the window: t_after = 0, M = E >= B -> 0
    (DerRatings(EV, **EV11, baseline_kw=-11.0), at(15), 5, at(14), 0.0),
    # deadline at the window's end: the same
    (DerRatings(EV, **EV11, baseline_kw=-11.0), at(16), 20, at(14), 0.0),
    # deadline before the window (but after now): full before it starts, nothing to reduce
    (DerRatings(EV, **EV11, baseline_kw=-11.0), at(13.5), 20, at(13), 0.0),
    # now 15:00 inside the window: W = 1 h, B = min(11, 20) = 11, M = 20 - 11 = 9 -> (11 - 9) / 1 = 2
    (DerRatings(EV, **EV11, baseline_kw=-11.0), at(17), 20, at(15), 2.0),
])
def test_ev_objective_offers_its_largest_safe_reduction(ratings, deadline, target, now, q_max):
    obj = dict(EV_OBJ, targetChargeKWh=target, deadline=deadline.isoformat())
    curve = objective_curve(obj, ratings, WS, WE, now)
    assert curve(0.1199) == 0.0  # below its price it charges as it would
    assert curve(0.12) == pytest.approx(q_max)
    if q_max == 0.0:
        assert curve.points == ((0.12, 0.0),)


def test_ev_deadline_passed_is_refused():
    with pytest.raises(CurveError, match="objective.deadline: .* has passed"):
        objective_curve(dict(EV_OBJ, deadline="2024-12-15T12:00:00Z"), DerRatings(EV, **EV11), WS, WE, at(13))


def test_ev_objective_needs_the_charge_rate():
    with pytest.raises(MissingRating, match="max_charge_w or max_w"):
        objective_curve(EV_OBJ, DerRatings(EV, baseline_kw=-7.0), WS, WE, WS)


@pytest.mark.parametrize("obj, kind, message", [
    (EV_OBJ, BAT, "only an EV charger has a charging target, this device is a battery"),
    ({"reservePercent": 20, "minPricePerKWh": 0.1}, LOAD, "only a battery keeps a reserve, this device is a load"),
])
def test_objectives_for_the_wrong_kind_are_refused(obj, kind, message):
    with pytest.raises(CurveError, match=message):
        objective_curve(obj, DerRatings(kind, max_w=5000, soc_percent=50, max_wh=10_000), WS, WE, WS)


BAT_10KWH = dict(max_discharge_w=5000, max_wh=10_000)


@pytest.mark.parametrize("ratings, reserve, now, q_max", [
    # keep max(30, 20) = 30 %: (60 - 30) % of 10 kWh = 3 kWh over 2 h = 1.5 kW; min(5, 1.5)
    (DerRatings(BAT, **BAT_10KWH, soc_percent=60, reserve_percent=20), 30, at(14), 1.5),
    # its own 40 % reserve is higher: (60 - 40) % of 10 kWh = 2 kWh / 2 h = 1 kW
    (DerRatings(BAT, **BAT_10KWH, soc_percent=60, reserve_percent=40), 30, at(14), 1.0),
    # now 15:00: 3 kWh over the remaining 1 h = 3 kW
    (DerRatings(BAT, **BAT_10KWH, soc_percent=60), 30, at(15), 3.0),
    # energy-rich: 100 % of 10 kWh / 2 h = 5 kW, but the 4 kW discharge limit binds: 4
    (DerRatings(BAT, max_discharge_w=4000, max_wh=10_000, soc_percent=100), 0, at(14), 4.0),
    # state of charge below the reserve: nothing
    (DerRatings(BAT, **BAT_10KWH, soc_percent=25), 30, at(14), 0.0),
])
def test_reserve_objective_steps_to_the_battery_bound(ratings, reserve, now, q_max):
    curve = objective_curve({"reservePercent": reserve, "minPricePerKWh": 0.2}, ratings, WS, WE, now)
    assert curve.points == (((0.2, 0.0), (0.2, pytest.approx(q_max))) if q_max else ((0.2, 0.0),))


@pytest.mark.parametrize("ratings, missing", [
    (DerRatings(BAT, max_discharge_w=5000, max_wh=10_000, availability_s=3600), "soc_percent"),
    (DerRatings(BAT, max_discharge_w=5000, soc_percent=50, availability_s=3600), "max_wh"),
    (DerRatings(BAT, max_wh=10_000, soc_percent=50), "max_discharge_w or max_w"),
])
def test_reserve_objective_needs_soc_and_capacity(ratings, missing):
    with pytest.raises(MissingRating, match=missing):
        objective_curve({"reservePercent": 20, "minPricePerKWh": 0.2}, ratings, WS, WE, WS)


@pytest.mark.parametrize("ws, we, now, message", [
    (WE, WS, WS, "window_end .* is not after window_start"),
    (WS, WE, WE, "the window ended at"),
    (WS, WE, datetime(2024, 12, 15, 14), "now must be a time-zone-aware datetime"),
    (WS, "16:00", WS, "window_end must be a time-zone-aware datetime"),
    (datetime.min.replace(tzinfo=timezone(timedelta(hours=1))), WE, WS, "window_start is outside the range"),
])
def test_bad_windows_are_refused(ws, we, now, message):
    with pytest.raises(CurveError, match=message):
        objective_curve({"reduceKW": 1, "minPricePerKWh": 0.1}, DerRatings(LOAD), ws, we, now)


# --- default curves ----------------------------------------------------------------------------
@pytest.mark.parametrize("ratings, q_max", [
    # energy above reserve: (80 - 20) % of 10 kWh = 6 kWh / 2 h = 3 kW; min(5, 3) = 3
    (DerRatings(BAT, **BAT_10KWH, soc_percent=80, reserve_percent=20), 3.0),
    # energy-rich (20 kWh / 2 h = 10 kW): the 5 kW discharge limit binds
    (DerRatings(BAT, max_discharge_w=5000, max_wh=20_000, soc_percent=100), 5.0),
    # availability 30 min of a 2 h window: 5 * 1800 / 7200 = 1.25
    (DerRatings(BAT, max_discharge_w=5000, availability_s=1800), 1.25),
    # availability longer than the window: the discharge limit, 5
    (DerRatings(BAT, max_discharge_w=5000, availability_s=10_800), 5.0),
    # all three bounds: min(5, 3, 5 * 3600 / 7200 = 2.5) = 2.5
    (DerRatings(BAT, **BAT_10KWH, soc_percent=80, reserve_percent=20, availability_s=3600), 2.5),
    # soc known but not max_wh: availability alone, 5 * 3600 / 7200 = 2.5
    (DerRatings(BAT, max_discharge_w=5000, soc_percent=80, availability_s=3600), 2.5),
    # charging 2 kW: stopping it costs no energy, added on top of the min: 3 + 2 = 5
    (DerRatings(BAT, **BAT_10KWH, soc_percent=80, reserve_percent=20, baseline_kw=-2.0), 5.0),
    # charging 2 kW at the full discharge bound: 5 + 2 = 7 > the discharge limit
    (DerRatings(BAT, max_discharge_w=5000, availability_s=7200, baseline_kw=-2.0), 7.0),
    # already discharging 1 kW: 3 - 1 = 2
    (DerRatings(BAT, **BAT_10KWH, soc_percent=80, reserve_percent=20, baseline_kw=1.0), 2.0),
    # soc 10 % below its 20 % reserve: no energy, 0
    (DerRatings(BAT, **BAT_10KWH, soc_percent=10, reserve_percent=20), 0.0),
    # ... but a charging one still offers stopping its 2 kW charge: 0 + 2
    (DerRatings(BAT, **BAT_10KWH, soc_percent=10, reserve_percent=20, baseline_kw=-2.0), 2.0),
    # discharge limit from max_w: 4 kW, availability the whole window
    (DerRatings(BAT, max_w=4000, availability_s=7200), 4.0),
    # EV charging 7 kW of its 11: 7
    (DerRatings(EV, max_charge_w=11_000, baseline_kw=-7.0), 7.0),
    # EV "charging" 15 kW: capped at its 11 kW rate
    (DerRatings(EV, max_charge_w=11_000, baseline_kw=-15.0), 11.0),
    # EV rate from max_w: min(7, 6) = 6
    (DerRatings(EV, max_w=6000, baseline_kw=-7.0), 6.0),
    # EV rate unknown: its draw, 7
    (DerRatings(EV, baseline_kw=-7.0), 7.0),
    # EV not charging: 0
    (DerRatings(EV, max_charge_w=11_000, baseline_kw=0.5), 0.0),
    # load: 50 % of 6 kW = 3
    (DerRatings(LOAD, max_w=10_000, baseline_kw=-6.0), 3.0),
    # load generating (+1 kW): nothing to curtail
    (DerRatings(LOAD, baseline_kw=1.0), 0.0),
    # PV: 0 whatever it knows
    (DerRatings(PV, max_w=6000, baseline_kw=4.0, availability_s=7200), 0.0),
])
def test_default_max_reduction_from_ratings(ratings, q_max):
    assert default_max_reduction_kw(ratings, H2) == pytest.approx(q_max)


def test_load_share_is_half():
    assert LOAD_CURTAILABLE_SHARE == 0.5


@pytest.mark.parametrize("ratings, missing", [
    (DerRatings(BAT, max_wh=10_000, soc_percent=80), "max_discharge_w or max_w"),
    (DerRatings(BAT, max_discharge_w=5000), "neither its state of charge"),
    (DerRatings(BAT, max_discharge_w=5000, max_wh=10_000), "neither its state of charge"),
    (DerRatings(EV, max_charge_w=11_000), "baseline_kw"),
    (DerRatings(LOAD, max_w=2000), "baseline_kw"),
])
def test_missing_rating_is_named_and_gives_a_zero_curve(ratings, missing):
    with pytest.raises(MissingRating, match=missing):
        default_max_reduction_kw(ratings, H2)
    assert default_curve(ratings, 0.0, 0.4, H2).points == ((0.0, 0.0),)


def test_default_curve_ramps_from_floor_to_cap():
    # q_max = 3 (above): 0 at 0.1, 3 at 0.4; at 0.25: 3 * (0.25 - 0.1) / 0.3 = 1.5; flat beyond
    ratings = DerRatings(BAT, **BAT_10KWH, soc_percent=80, reserve_percent=20)
    curve = default_curve(ratings, 0.1, 0.4, H2)
    assert curve.points == ((0.1, 0.0), (0.4, pytest.approx(3.0)))
    assert curve(0.05) == 0.0 and curve(0.25) == pytest.approx(1.5) and curve(1.0) == pytest.approx(3.0)


def test_default_curve_of_nothing_is_one_point():
    assert default_curve(DerRatings(PV, max_w=6000), 0.0, 0.4, H2).points == ((0.0, 0.0),)


@pytest.mark.parametrize("floor, cap, window_s, message", [
    (0.4, 0.4, H2, "need 0 <= price_floor < price_cap"),
    (0.5, 0.4, H2, "need 0 <= price_floor < price_cap"),
    (-0.1, 0.4, H2, "need 0 <= price_floor < price_cap"),
    (math.nan, 0.4, H2, "price_floor must be a finite number"),
    (0.0, "0.4", H2, "price_cap must be a finite number"),
    (0.0, 0.4, 0, "window_s must be greater than 0"),
    (0.0, 0.4, 5e-324, "window_s must be greater than 0"),  # 0 h in floating point
    (0.0, 0.4, math.inf, "window_s must be a finite number"),
])
def test_bad_default_curve_arguments_are_refused(floor, cap, window_s, message):
    ratings = DerRatings(BAT, max_discharge_w=5000, availability_s=3600)
    with pytest.raises(CurveError, match=message):
        default_curve(ratings, floor, cap, window_s)


# --- properties (seeded) -----------------------------------------------------------------------
def _maybe(rng: np.random.Generator, value: float) -> float | None:
    return None if rng.random() < 0.2 else float(value)


@pytest.mark.parametrize("seed", range(5))
def test_default_curves_are_ramps_bounded_by_discharge_plus_charging(seed):
    rng = np.random.default_rng(seed)
    for _ in range(200):
        kind = DeviceKind(rng.choice([k.value for k in DeviceKind]))
        ratings = DerRatings(
            kind, max_w=_maybe(rng, rng.uniform(0, 20_000)), max_charge_w=_maybe(rng, rng.uniform(0, 20_000)),
            max_discharge_w=_maybe(rng, rng.uniform(0, 20_000)), max_wh=_maybe(rng, rng.uniform(0, 50_000)),
            soc_percent=_maybe(rng, rng.uniform(0, 100)), reserve_percent=_maybe(rng, rng.uniform(0, 100)),
            availability_s=_maybe(rng, rng.uniform(0, 20_000)), baseline_kw=_maybe(rng, rng.uniform(-15, 15)))
        floor = rng.uniform(0, 0.5)
        cap = floor + rng.uniform(0.01, 1.0)
        curve = default_curve(ratings, floor, cap, rng.uniform(60, 4 * 3600))
        q = [curve(p) for p in np.linspace(floor - 0.1, cap + 0.1, 41)]
        assert curve(floor) == 0.0 and all(b >= a for a, b in zip(q, q[1:]))
        bound = (ratings.discharge_limit_kw() or 0.0) + max(0.0, -(ratings.baseline_kw or 0.0))
        assert max(q) <= bound + 1e-9


@pytest.mark.parametrize("seed", range(5))
def test_the_ev_step_never_makes_it_miss_its_deadline(seed):
    rng = np.random.default_rng(seed)
    for _ in range(300):
        rate = rng.uniform(1, 22)
        c = rng.uniform(0, rate) if rng.random() < 0.8 else None  # None: charges at full rate
        target = rng.uniform(0.5, 80)
        ws = at(14)
        we = ws + timedelta(minutes=int(rng.integers(15, 240)))
        now = ws + timedelta(minutes=int(rng.integers(-120, (we - ws).seconds // 60)))
        deadline = now + timedelta(minutes=int(rng.integers(1, 12 * 60)))
        ratings = DerRatings(EV, max_charge_w=rate * 1000, baseline_kw=None if c is None else -c)
        obj = dict(EV_OBJ, targetChargeKWh=target, deadline=deadline.isoformat())
        q = objective_curve(obj, ratings, ws, we, now).points[-1][1]
        c = rate if c is None else c
        start = max(ws, now)
        h = lambda a, b: max(0.0, (b - a).total_seconds() / 3600)  # noqa: E731
        before_deadline, after_window = h(start, min(we, deadline)), h(we, deadline)
        assert 0.0 <= q <= c + 1e-9
        # reduced by q over the window, then full rate from the window's end to the deadline
        reduced = min((c - q) * before_deadline, target) + rate * after_window
        as_usual = min(c * before_deadline, target) + rate * after_window
        assert reduced >= min(target, as_usual) - 1e-9
