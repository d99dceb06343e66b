"""programs.settlement: hand-computed lines and splits, the seed's ₹100 example, validation, properties."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from fractions import Fraction

import numpy as np
import pytest

from programs.model import Program
from programs.settlement import (
    DeviceDelivery, IntervalDelivery, RevenueSplit, SettlementError, SettlementRule,
    exact, exponent, largest_remainder, round_half_even, settle, to_minor,
)

T0 = datetime(2024, 10, 4, 16, 0, tzinfo=timezone.utc)


def iv(k: int, r, s, price=None, dur: int = 900) -> IntervalDelivery:
    return IntervalDelivery(T0 + timedelta(seconds=dur * k), dur, r, s, price)


def amounts(flows) -> dict[str, int]:
    return {f.role: f.amount_minor for f in flows}


def errors_of(fn, *a, **kw) -> list[str]:
    with pytest.raises(SettlementError) as e:
        fn(*a, **kw)
    assert isinstance(e.value, ValueError)
    return e.value.errors


# --- money ---------------------------------------------------------------------------------------
def test_exponents_and_unknown_currency():
    assert (exponent("USD"), exponent("INR"), exponent("JPY"), exponent("KWD")) == (2, 2, 0, 3)
    with pytest.raises(ValueError, match="unknown currency 'XYZ'"):
        exponent("XYZ")


def test_round_half_even_ties_go_to_the_even_neighbour_symmetrically():
    cases = {"0.5": 0, "1.5": 2, "2.5": 2, "1.25": 1, "1.75": 2, "-0.5": 0, "-1.5": -2, "-2.5": -2,
             "-1.25": -1, "3": 3}
    assert {k: round_half_even(Fraction(k)) for k in cases} == cases


def test_floats_are_read_by_their_shortest_repr_not_the_binary_double():
    assert exact(0.1) == Fraction(1, 10) and exact("1/9") == Fraction(1, 9)
    # 1.015 * 100 in doubles is 101.49999999999999 (-> 101); exactly it is 101.5 cents -> half-even 102
    assert round(1.015 * 100) == 101
    assert to_minor(exact(1.015), "USD") == 102
    assert to_minor(exact(0.1) + exact(0.2), "USD") == 30 and exact(0.1) + exact(0.2) == exact(0.3)
    assert to_minor(exact("0.0005"), "KWD") == 0 and to_minor(exact("0.0015"), "KWD") == 2
    for bad in (True, float("nan"), float("inf"), "abc", None, "1/0"):
        with pytest.raises(ValueError):
            exact(bad)


def test_largest_remainder_thirds_and_ties_by_order():
    assert largest_remainder(100, [Fraction(100, 3)] * 3) == [34, 33, 33]
    assert largest_remainder(2, [Fraction(2, 3)] * 3) == [1, 1, 0]
    assert largest_remainder(1, [Fraction(1, 5), Fraction(7, 10), Fraction(1, 10)]) == [0, 1, 0]
    assert largest_remainder(-7, [Fraction(-7, 2), Fraction(-7, 2)]) == [-3, -4]  # floors -4,-4; +1 to first
    with pytest.raises(ValueError, match="not to 10"):
        largest_remainder(10, [Fraction(3), Fraction(3)])


def test_split_in_thirds_gives_the_extra_unit_to_the_prosumer_first_in_order():
    split = RevenueSplit(grid_fee_rate="1/3", aggregator_fee_rate="1/3")
    assert amounts(split.split(100, "USD")) == {"SELLER": 34, "GRID_OPERATOR": 33, "AGGREGATOR": 33,
                                                "GOVERNMENT": 0}


# --- lines ---------------------------------------------------------------------------------------
def test_pay_as_clear_pays_the_cleared_price_on_min_of_delivered_and_setpoint():
    rule = SettlementRule("USD", "pay_as_clear")
    dev = DeviceDelivery("d1", [
        iv(0, 10, 8, 0.25),      # capped at the setpoint: 8 kW * 0.25 h = 2 kWh * $0.25 = 50 c
        iv(1, 5, 8, 0.25),       # 1.25 kWh * 0.25 = 31.25 c -> 31
        iv(2, -2, 8, 0.25),      # negative delivery earns nothing (and costs nothing: no lambda)
        iv(3, 0.2, 1, 0.1),      # 0.05 kWh * 0.10 = 0.5 c -> 0 (half-even)
        iv(4, 0.6, 1, 0.1),      # 0.15 kWh * 0.10 = 1.5 c -> 2
    ])
    s = settle(rule, [dev])
    assert [ln.amount_minor for ln in s.lines] == [50, 31, 0, 0, 2]
    assert [ln.energy_kwh for ln in s.lines] == [2, Fraction(5, 4), 0, Fraction(1, 20), Fraction(3, 20)]
    assert s.gross_minor == s.total_minor == 83 and s.tax_minor == 0
    assert [(f.party, f.role, f.amount_minor) for f in s.flows] == [
        ("d1", "SELLER", 83), ("grid-operator", "GRID_OPERATOR", 0), ("aggregator", "AGGREGATOR", 0),
        ("government", "GOVERNMENT", 0)]


def test_pay_as_clear_uses_the_device_node_price_where_the_interval_has_none():
    rule = SettlementRule("USD", "pay_as_clear")
    s = settle(rule, [DeviceDelivery("d1", [iv(0, 4, 4), iv(1, 4, 4, 0.5)], price_per_kwh=0.2)])
    assert [(ln.price_per_kwh, ln.amount_minor) for ln in s.lines] == [(Fraction(1, 5), 20), (Fraction(1, 2), 50)]


def test_fixed_pays_the_rate_whatever_the_cleared_price():
    rule = SettlementRule("USD", "fixed", rate_per_kwh="0.12")
    s = settle(rule, [DeviceDelivery("d1", [iv(0, 10, 8, 0.25), iv(1, 5, 8, 0.25)])])
    assert [ln.amount_minor for ln in s.lines] == [24, 15]  # 2 kWh * 0.12; 1.25 kWh * 0.12
    assert {ln.price_per_kwh for ln in s.lines} == {Fraction(3, 25)}
    assert s.gross_minor == 39


def test_under_delivery_charge_with_penalties_allowed():
    rule = SettlementRule("USD", "pay_as_clear", under_delivery_per_kwh="0.5", allow_net_negative=True)
    # delivery 1.25 kWh * 0.25 = 31.25 -> 31; shortfall (8 - 5) kW * 0.25 h = 0.75 kWh * 0.5 = 37.5 -> 38
    s = settle(rule, [DeviceDelivery("d1", [iv(0, 5, 8, 0.25)])])
    assert [(ln.kind, ln.amount_minor) for ln in s.lines] == [("delivery", 31), ("under_delivery", -38)]
    assert s.gross_minor == s.total_minor == -7
    # a penalty is the prosumer's alone: no tax or fees on a charge
    rule = replace(rule, split=RevenueSplit(tax_rate="0.18", grid_fee_rate="0.1"))
    assert amounts(settle(rule, [DeviceDelivery("d1", [iv(0, 5, 8, 0.25)])]).flows) == {
        "SELLER": -7, "GRID_OPERATOR": 0, "AGGREGATOR": 0, "GOVERNMENT": 0}


def test_under_delivery_when_delivering_negative_counts_the_whole_gap():
    rule = SettlementRule("USD", "pay_as_clear", under_delivery_per_kwh="0.5", allow_net_negative=True)
    s = settle(rule, [DeviceDelivery("d1", [iv(0, -2, 4, 0.3, dur=3600)])])
    assert [(ln.kind, ln.energy_kwh, ln.amount_minor) for ln in s.lines] == [
        ("delivery", 0, 0), ("under_delivery", 6, -300)]


def test_under_delivery_without_penalties_is_capped_at_the_earnings_and_the_rest_waived():
    rule = SettlementRule("USD", "pay_as_clear", under_delivery_per_kwh="0.5")
    s = settle(rule, [DeviceDelivery("d1", [iv(0, 5, 8, 0.25)])])
    assert [(ln.kind, ln.start, ln.amount_minor) for ln in s.lines] == [
        ("delivery", T0, 31), ("under_delivery", T0, -38), ("waived", None, 7)]
    assert s.gross_minor == s.total_minor == 0
    assert all(f.amount_minor == 0 for f in s.flows)
    # a charge smaller than the earnings is not waived
    s = settle(rule, [DeviceDelivery("d1", [iv(0, 7, 8, 0.25)])])  # 43.75 -> 44; 0.25 kWh * 0.5 -> 12.5 -> 12
    assert [ln.amount_minor for ln in s.lines] == [44, -12] and s.gross_minor == 32


# --- splits --------------------------------------------------------------------------------------
def test_tax_inclusive_takes_the_tax_out_of_the_gross():
    flows = RevenueSplit(tax_rate="0.18").split(10000, "INR")
    # T = 10000 * 0.18 / 1.18 = 1525.42; prosumer 8474.58 -> floors 8474 + 1525, the unit to .58
    assert amounts(flows) == {"SELLER": 8475, "GRID_OPERATOR": 0, "AGGREGATOR": 0, "GOVERNMENT": 1525}
    assert sum(f.amount_minor for f in flows) == 10000


def test_tax_exclusive_adds_the_tax_on_top():
    flows = RevenueSplit(tax_rate="0.18", tax_mode="exclusive", aggregator_fee_rate="0.1").split(10000, "INR")
    assert amounts(flows) == {"SELLER": 9000, "GRID_OPERATOR": 0, "AGGREGATOR": 1000, "GOVERNMENT": 1800}
    assert sum(f.amount_minor for f in flows) == 11800
    # the exclusive tax is one line rounded half-even: 0.18 * 1025 = 184.5 -> 184
    assert amounts(RevenueSplit(tax_rate="0.18", tax_mode="exclusive").split(1025, "USD"))["GOVERNMENT"] == 184


def test_settlement_totals_in_each_tax_mode():
    dev = DeviceDelivery("d1", [iv(0, 10, 10, 10, dur=3600)])  # 10 kWh * ₹10 = ₹100
    inc = settle(SettlementRule("INR", "pay_as_clear", split=RevenueSplit(tax_rate="0.05")), [dev])
    exc = settle(SettlementRule("INR", "pay_as_clear",
                                split=RevenueSplit(tax_rate="0.05", tax_mode="exclusive")), [dev])
    assert (inc.gross_minor, inc.tax_minor, inc.total_minor) == (10000, 476, 10000)  # 476.19
    assert (exc.gross_minor, exc.tax_minor, exc.total_minor) == (10000, 500, 10500)


def test_grid_fee_per_kwh_or_percent():
    dev = DeviceDelivery("d1", [iv(0, 10, 10, 10, dur=3600)])  # 10 kWh, ₹100
    per_kwh = settle(SettlementRule("INR", "pay_as_clear", split=RevenueSplit(grid_fee_per_kwh="1.5")), [dev])
    assert amounts(per_kwh.flows) == {"SELLER": 8500, "GRID_OPERATOR": 1500, "AGGREGATOR": 0, "GOVERNMENT": 0}
    pct = settle(SettlementRule("INR", "pay_as_clear", split=RevenueSplit(grid_fee_rate="0.2")), [dev])
    assert amounts(pct.flows) == {"SELLER": 8000, "GRID_OPERATOR": 2000, "AGGREGATOR": 0, "GOVERNMENT": 0}


def test_grid_fee_both_ways_is_refused():
    assert errors_of(RevenueSplit, grid_fee_per_kwh=1, grid_fee_rate="0.1") == [
        "grid_fee_rate: give grid_fee_per_kwh or grid_fee_rate, not both"]
    errs = errors_of(SettlementRule.from_dict, {"currency": "INR", "incentive": "pay_as_clear",
                                                "split": {"grid_fee_per_kwh": 1, "grid_fee_rate": 0.1}})
    assert errs == ["split.grid_fee_rate: give grid_fee_per_kwh or grid_fee_rate, not both"]


def test_fees_are_capped_so_the_prosumer_share_is_never_negative():
    split = RevenueSplit(tax_rate="0.1", grid_fee_per_kwh="5", aggregator_fee_fixed_minor=500)
    # G = 1100 inclusive: T = 100; grid wants 5 * 3 kWh = 1500 > 1000 left -> 1000; aggregator 0
    assert amounts(split.split(1100, "USD", energy_kwh=3)) == {
        "SELLER": 0, "GRID_OPERATOR": 1000, "AGGREGATOR": 0, "GOVERNMENT": 100}
    assert amounts(split.split(1100, "USD", energy_kwh=1)) == {  # grid 500, aggregator 500 fixed
        "SELLER": 0, "GRID_OPERATOR": 500, "AGGREGATOR": 500, "GOVERNMENT": 100}
    assert amounts(split.split(2000, "USD", energy_kwh=1))["SELLER"] == 2000 - 500 - 500 - 182  # T 181.82


def test_jpy_has_no_minor_units():
    rule = SettlementRule("JPY", "pay_as_clear",
                          split=RevenueSplit(tax_rate="0.1", tax_mode="exclusive", aggregator_fee_fixed_minor=5))
    s = settle(rule, [DeviceDelivery("d1", [iv(0, 3, 3, 25.5, dur=3600), iv(1, 1, 1, 25.5, dur=3600)])])
    assert [ln.amount_minor for ln in s.lines] == [76, 26]  # ¥76.5 -> 76, ¥25.5 -> 26 (half-even)
    assert amounts(s.flows) == {"SELLER": 97, "GRID_OPERATOR": 0, "AGGREGATOR": 5, "GOVERNMENT": 10}
    assert s.total_minor == 112 and s.flows[0].amount == Decimal("97")
    assert settle(replace(rule, currency="KWD"), [DeviceDelivery("d1", [iv(0, 1, 1, "0.0125", 3600)])]
                  ).lines[0].amount_minor == 12  # 12.5 fils -> 12


# --- the seed's example (§2.8, §3.7) ----------------------------------------------------------------
SEED_PARTIES = dict(grid_operator="grid-operator-utility", aggregator="aggregator-platform",
                    government="government-tax")


def test_seed_example_100_rupees_split_60_20_10_10():
    # The seed: ₹100 total; ₹60 to the prosumer (SELLER), ₹20 wheeling to the grid operator, ₹10
    # platform fee to the aggregator, ₹10 tax "(10%)" to the government. The amounts add up to ₹100,
    # but the ₹10 tax is 10% of the tax-inclusive total, which is an inclusive rate of 1/9 (11.1%):
    # T = 100 * (1/9) / (10/9) = 10. That reproduces the seed exactly.
    split = RevenueSplit(tax_rate="1/9", grid_fee_rate="0.2", aggregator_fee_rate="0.1", **SEED_PARTIES)
    rule = SettlementRule("INR", "pay_as_clear", split=split)
    s = settle(rule, [DeviceDelivery("meter-1", [iv(0, 10, 10, 10, dur=3600)], prosumer="prosumer-solar-001")])
    assert [(f.party, f.role, f.amount) for f in s.flows] == [
        ("prosumer-solar-001", "SELLER", Decimal("60.00")),
        ("grid-operator-utility", "GRID_OPERATOR", Decimal("20.00")),
        ("aggregator-platform", "AGGREGATOR", Decimal("10.00")),
        ("government-tax", "GOVERNMENT", Decimal("10.00"))]
    assert s.total_minor == 10000
    report = s.to_dict()
    assert report["flows"][0] == {"party": "prosumer-solar-001", "role": "SELLER", "amount_minor": 6000,
                                  "currency": "INR", "description": "Flexibility delivered"}
    assert report["devices"][0]["lines"] == [{
        "device_id": "meter-1", "start": "2024-10-04T16:00:00+00:00", "duration_s": 3600, "kind": "delivery",
        "energy_kwh": "10", "price_per_kwh": "10", "amount_minor": 10000}]


def test_seed_example_with_a_literal_10_percent_tax_does_not_give_60_20_10_10():
    # Read as a 10% rate, the seed's figures are inconsistent; the consistent answers are:
    # inclusive: T = 100 * 0.1 / 1.1 = ₹9.0909 -> 909 paise; the prosumer gets 60.909 -> 6091.
    inc = RevenueSplit(tax_rate="0.1", grid_fee_rate="0.2", aggregator_fee_rate="0.1").split(10000, "INR")
    assert amounts(inc) == {"SELLER": 6091, "GRID_OPERATOR": 2000, "AGGREGATOR": 1000, "GOVERNMENT": 909}
    # exclusive: ₹100 before tax, ₹10 tax on top, ₹110 paid; the prosumer keeps 100 - 20 - 10 = ₹70.
    exc = RevenueSplit(tax_rate="0.1", tax_mode="exclusive", grid_fee_rate="0.2",
                       aggregator_fee_rate="0.1").split(10000, "INR")
    assert amounts(exc) == {"SELLER": 7000, "GRID_OPERATOR": 2000, "AGGREGATOR": 1000, "GOVERNMENT": 1000}
    assert sum(f.amount_minor for f in exc) == 11000


# --- configuration -------------------------------------------------------------------------------
def test_rule_json_round_trip_is_exact():
    rule = SettlementRule("INR", "fixed", rate_per_kwh=0.12, under_delivery_per_kwh="1/3",
                          allow_net_negative=True,
                          split=RevenueSplit(tax_rate="1/9", grid_fee_per_kwh="0.75", aggregator_fee_rate=0.05,
                                             aggregator_fee_fixed_minor=250, **SEED_PARTIES))
    d = rule.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert d["rate_per_kwh"] == "0.12" and d["under_delivery_per_kwh"] == "1/3"
    assert d["split"]["tax_rate"] == "1/9" and d["split"]["grid_fee_rate"] is None
    assert SettlementRule.from_dict(d) == rule
    assert SettlementRule.from_dict({"currency": "USD", "incentive": "pay_as_clear"}) == SettlementRule(
        "USD", "pay_as_clear")


def test_every_wrong_field_is_named():
    errs = errors_of(SettlementRule.from_dict, {
        "currency": "usd", "incentive": "fixed", "rate_per_kwh": -1, "under_delivery_per_kwh": "x",
        "allow_net_negative": 1, "split": {"tax_rate": -0.1, "tax_mode": "gross", "aggregator_fee_rate": 2,
                                           "aggregator_fee_fixed_minor": 1.5, "government": " "}})
    fields = [e.split(":")[0] for e in errs]
    assert fields == ["split.tax_rate", "split.tax_mode", "split.aggregator_fee_rate",
                      "split.aggregator_fee_fixed_minor", "split.government", "currency",
                      "under_delivery_per_kwh", "allow_net_negative", "rate_per_kwh"]
    assert errors_of(SettlementRule.from_dict, {"bogus": 1}) == [
        "bogus: unknown field (known: currency, incentive, rate_per_kwh, under_delivery_per_kwh, "
        "allow_net_negative, split)", "currency: required", "incentive: required"]
    assert errors_of(SettlementRule, "USD", "fixed") == ["rate_per_kwh: a fixed incentive needs a rate > 0, got None"]
    assert errors_of(SettlementRule, "USD", "pay_as_clear", rate_per_kwh=1)[0].startswith("rate_per_kwh: must be null")
    assert errors_of(SettlementRule.from_dict, {"currency": "USD", "incentive": "pay_as_clear", "split": []}) == [
        "split: must be a JSON object, got []"]
    assert errors_of(SettlementRule.from_dict, ["USD"]) == ["SettlementRule: must be a JSON object, got ['USD']"]
    assert "100%" in errors_of(RevenueSplit, tax_rate="0.25", grid_fee_rate="0.5", aggregator_fee_rate="0.4")[0]


def test_rule_for_a_program_takes_its_currency_and_incentive():
    program = Program.from_dict({
        "name": "Peak", "currency": "JPY", "requested_kw": 100, "price_cap": 50,
        "window": {"weekdays": ["mon"], "start": "16:00", "end": "18:00", "tz": "Asia/Tokyo"},
        "incentive": {"kind": "fixed", "rate_per_kwh": 30.5, "under_delivery_per_kwh": 10},
        "eligible_kinds": ["battery"]})
    rule = SettlementRule.for_program(program)
    assert (rule.currency, rule.incentive, rule.rate_per_kwh, rule.under_delivery_per_kwh) == (
        "JPY", "fixed", Fraction(61, 2), 10)


def test_bad_deliveries_are_named():
    rule = SettlementRule("USD", "pay_as_clear")
    assert errors_of(settle, rule, [DeviceDelivery("a", []), DeviceDelivery("a", [])]) == ["devices[a]: listed twice"]
    errs = errors_of(settle, rule, [DeviceDelivery("b", [iv(0, 1, -1, 0.1), iv(0, "x", 1), iv(2, 1, 1),
                                                         IntervalDelivery(T0, 0, 1, 1, 0.1)])])
    assert errs == ["devices[b].intervals[0].setpoint_kw: must be 0 or more, got -1",
                    "devices[b].intervals[1].start: 2024-10-04T16:00:00+00:00 is listed twice",
                    "devices[b].intervals[1].delivered_kw: must be a finite number, got 'x'",
                    "devices[b].intervals[1].price_per_kwh: pay_as_clear needs the cleared price "
                    "(on the interval or the device)",
                    "devices[b].intervals[2].price_per_kwh: pay_as_clear needs the cleared price "
                    "(on the interval or the device)",
                    "devices[b].intervals[3].start: 2024-10-04T16:00:00+00:00 is listed twice",
                    "devices[b].intervals[3].duration_s: must be a whole number of seconds > 0, got 0"]
    naive = IntervalDelivery(datetime(2024, 10, 4, 16), 900, 1, 1, 0.1)
    assert errors_of(settle, rule, [DeviceDelivery("c", [naive], prosumer=" ")]) == [
        "devices[c].prosumer: must be a non-blank party id, got ' '",
        f"devices[c].intervals[0]: must be an IntervalDelivery with an aware datetime start, got {naive!r}"]


# --- properties ----------------------------------------------------------------------------------
def random_case(rng: np.random.Generator) -> tuple[SettlementRule, list[DeviceDelivery]]:
    currency = str(rng.choice(["USD", "INR", "JPY", "KWD"]))
    grid = {} if rng.random() < 0.3 else (
        {"grid_fee_per_kwh": f"{rng.uniform(0, 0.2):.3f}"} if rng.random() < 0.5
        else {"grid_fee_rate": f"{rng.uniform(0, 0.3):.3f}"})
    split = RevenueSplit(tax_rate=str(rng.choice(["0", "0.05", "0.18", "1/9", "0.125"])),
                         tax_mode=str(rng.choice(["inclusive", "exclusive"])),
                         aggregator_fee_rate=f"{rng.uniform(0, 0.3):.3f}",
                         aggregator_fee_fixed_minor=int(rng.integers(0, 50)), **grid)
    fixed = rng.random() < 0.4
    rule = SettlementRule(currency, "fixed" if fixed else "pay_as_clear",
                          rate_per_kwh=f"{rng.uniform(0.01, 0.5):.4f}" if fixed else None,
                          under_delivery_per_kwh=float(round(rng.uniform(0, 0.8), 3)) if rng.random() < 0.6 else 0,
                          allow_net_negative=bool(rng.random() < 0.5), split=split)
    devices = []
    for k in range(int(rng.integers(1, 7))):
        n, dur = int(rng.integers(1, 9)), int(rng.choice([300, 900, 3600]))
        ivs = [iv(j, float(round(rng.uniform(-3, 12), 3)), float(round(rng.uniform(0, 10), 2)),
                  float(round(rng.uniform(0, 0.5), 4)), dur=dur) for j in range(n)]
        devices.append(DeviceDelivery(f"dev-{k:02d}", ivs, prosumer=f"owner-{k % 3}"))
    return rule, devices


@pytest.mark.parametrize("seed", range(8))
def test_properties_hold_on_random_settlements(seed: int):
    rng = np.random.default_rng(seed)
    for _ in range(25):
        rule, devices = random_case(rng)
        s = settle(rule, devices)
        assert sum(f.amount_minor for f in s.flows) == s.total_minor
        assert s.total_minor == s.gross_minor + (s.tax_minor if rule.split.tax_mode == "exclusive" else 0)
        for d in s.devices:
            assert sum(f.amount_minor for f in d.flows) == d.total_minor
            assert sum(ln.amount_minor for ln in d.lines) == d.gross_minor
            assert all(f.amount_minor >= 0 for f in d.flows if f.role != "SELLER")
            seller = d.flows[0].amount_minor
            assert seller >= 0 or (rule.allow_net_negative and seller == d.gross_minor < 0)
        if not rule.allow_net_negative:
            assert all(f.amount_minor >= 0 for f in s.flows)
        # deterministic and independent of the order of devices and of intervals
        assert settle(rule, devices) == s
        order = rng.permutation(len(devices))
        shuffled = [replace(devices[i], intervals=[devices[i].intervals[j]
                                                   for j in rng.permutation(len(devices[i].intervals))])
                    for i in order]
        assert settle(rule, shuffled) == s
        assert SettlementRule.from_dict(json.loads(json.dumps(rule.to_dict()))) == rule
        json.dumps(s.to_dict())


@pytest.mark.parametrize("seed", range(4))
def test_largest_remainder_properties(seed: int):
    rng = np.random.default_rng(100 + seed)
    for _ in range(200):
        n = int(rng.integers(1, 8))
        total = int(rng.integers(-1000, 100000))
        w = [Fraction(int(x)) for x in rng.integers(1, 1000, n)]
        shares = [total * x / sum(w) for x in w]
        out = largest_remainder(total, shares)
        assert sum(out) == total
        assert all(0 <= o - s < 1 or 0 < s - o < 1 for o, s in zip(out, shares))
        assert all(o - int(np.floor(float(s))) in (0, 1) for o, s in zip(out, shares) if s.denominator != 1)
