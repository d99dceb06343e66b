"""The worked examples of the building-block seed (shared/seeds/003…, §2.2–2.7, §3.1–3.6)
reproduced with exact numbers. Where the seed's own numbers do not add up, the test shows the
consistent answer; docs/architecture.md ("Where the seed's numbers disagree") says why."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pytest

from programs.clearing import CurveBook, clear
from programs.curves import DerRatings, objective_curve, power_to_reduction, reduction_to_power
from programs.grid import GridNode
from programs.kinds import DeviceKind

EV = [{"price": 0.08, "powerKW": -11}, {"price": 0.10, "powerKW": -5}]


def test_2_2_ev_bid_curve_clears_at_0_09_to_minus_8_kw():
    """§2.2/§3.3: 'charge at 11 kW if ≤ 0.08, 5 kW if ≤ 0.10'; cleared at 0.09 → ~8 kW (exactly 8)."""
    curve, baseline = power_to_reduction(EV)
    assert baseline == -11.0 and curve.points == ((0.08, 0.0), (0.10, 6.0))
    c = clear(CurveBook.from_curves([curve]), 3.0, 0.5)  # 3 kW less than its 11 kW baseline
    assert c.price == pytest.approx(0.09, abs=1e-15)
    assert reduction_to_power(float(c.setpoints[0]), baseline) == pytest.approx(-8.0, abs=1e-12)


def test_3_1_three_point_curve_interpolates():
    curve, baseline = power_to_reduction(EV + [{"price": 0.12, "powerKW": 0}])
    assert reduction_to_power(curve(0.11), baseline) == pytest.approx(-2.5)
    assert reduction_to_power(curve(0.50), baseline) == 0.0  # held flat above the last point


def test_3_2_aggregation_response_numbers_are_not_one_clearing():
    """§3.2 prints clearingPrice 0.075 with the EV at -8.0 kW: on its own curve the EV is at -8 kW
    only at 0.09; at 0.075 (below its lowest price) it holds -11 kW. Its two setpoints (3.5 and
    -8.0) also do not sum to the printed clearingQuantityKW 50."""
    curve, baseline = power_to_reduction(EV)
    assert reduction_to_power(curve(0.075), baseline) == -11.0
    assert 3.5 + -8.0 != 50.0


def test_2_5_twenty_devices_50_kw_clear_at_0_12():
    """§2.5: 50 kW from 20 devices clearing at 0.12: consistent when each offers a ramp to 5 kW at
    0.24 (2.5 kW each at 0.12)."""
    book = CurveBook.from_curves([[(0.0, 0.0), (0.24, 5.0)]] * 20)
    c = clear(book, 50.0, 1.0)
    assert c.price == pytest.approx(0.12, abs=1e-15) and c.quantity == 50.0
    np.testing.assert_allclose(c.setpoints, 2.5)


def test_2_5_reduce_5_kw_if_price_at_least_0_15_cannot_clear_at_0_12():
    """§2.5 also has every device bid 'reduce 5 kW if price ≥ 0.15': then nothing is offered below
    0.15, so 50 kW clears AT 0.15 (not 0.12), and the tie rule shares it: 2.5 kW each."""
    steps = [[(0.15, 0.0), (0.15, 5.0)]] * 20
    c = clear(CurveBook.from_curves(steps), 50.0, 1.0)
    assert c.price == 0.15 and c.quantity == pytest.approx(50.0)
    np.testing.assert_allclose(c.setpoints, 2.5)
    assert clear(CurveBook.from_curves(steps), 50.0, 0.12).feasible is False  # a 0.12 cap gets nothing


def test_3_4_locational_price_0_175():
    node = GridNode("transformer-zone-5", load_percent=75, adder_per_percent=0.001, congestion_multiplier=1.0,
                    max_forward_kw=200, max_reverse_kw=50, current_load_kw=150)
    assert 0.10 + node.adder == pytest.approx(0.175, abs=1e-15)


def test_2_7_a_0_03_adder_at_75_percent_means_0_0004_per_percent():
    """§2.7's 'transformer at 75 % load adds 0.03' uses another rate than §3.4's 0.001 per %."""
    assert GridNode("t", load_percent=75, adder_per_percent=0.0004).adder == pytest.approx(0.03)
    assert GridNode("t", load_percent=75, adder_per_percent=0.001).adder == pytest.approx(0.075)


def test_3_6_charge_20_kwh_by_18_00_at_most_0_12():
    """§3.6: an 11 kW EV that needs 20 kWh by 18:00, window 14:00–16:00 (§3.2's timeWindow). It
    would draw 20 kWh in the window; after it, 2 h at 11 kW still give 22 kWh ≥ 20, so it can defer
    everything: a step of 20 kWh / 2 h = 10 kW of reduction at its price 0.12."""
    ratings = DerRatings(kind=DeviceKind.EV_CHARGER, max_charge_w=11_000, baseline_kw=-11.0)
    obj = {"targetChargeKWh": 20, "deadline": "2024-12-15T18:00:00Z", "maxPricePerKWh": 0.12,
           "preferredSource": "SOLAR", "constraints": {"minChargeKWh": 10, "maxChargeKWh": 60}}
    start = datetime(2024, 12, 15, 14, tzinfo=timezone.utc)
    end = datetime(2024, 12, 15, 16, tzinfo=timezone.utc)
    curve = objective_curve(obj, ratings, start, end, start)
    assert curve.points == ((0.12, 0.0), (0.12, pytest.approx(10.0)))
    # with the deadline at the window's end it must charge throughout: nothing to offer
    tight = dict(obj, deadline="2024-12-15T16:00:00Z")
    assert objective_curve(tight, ratings, start, end, start).points[-1][1] == pytest.approx(0.0)
