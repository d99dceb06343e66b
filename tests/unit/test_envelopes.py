"""Envelope programs in the domain: the "envelope" key of a program, its controls and its M&V."""

from __future__ import annotations

import math

import numpy as np
import pytest

from programs.envelopes import Envelope, EnvelopeError, curtailment, limit_controls, published_kw
from programs.model import Program, ProgramError
from programs.settlement import DeviceDelivery, IntervalDelivery, SettlementRule, settle


def _spec(**over):
    spec = {
        "name": "Solar soak", "currency": "AUD",
        "window": {"weekdays": ["mon", "tue"], "start": "10:00", "end": "15:00", "tz": "Australia/Sydney"},
        "price_cap": 0.5, "incentive": {"kind": "fixed", "rate_per_kwh": 0.1},
        "eligible_kinds": ["pv", "battery"], "grid_node_ids": ["feeder-7"],
        "envelope": {"export_limit_kw": 1.5},
    }
    spec.update(over)
    return {k: v for k, v in spec.items() if v is not ...}


def _errors(spec):
    with pytest.raises(ProgramError) as e:
        Program.from_dict(spec)
    return e.value.errors


def test_an_envelope_program_needs_no_request_and_round_trips():
    p = Program.from_dict(_spec())
    assert p.requested_kw == 0.0
    assert p.envelope == Envelope(export_limit_kw=1.5)
    d = p.to_dict()
    assert d["envelope"] == {"export_limit_kw": 1.5, "import_limit_kw": None} and d["requested_kw"] == 0.0
    assert Program.from_dict(d) == p
    assert Program.from_dict(_spec(requested_kw=0)) == p
    # a program without an envelope writes no envelope key (its JSON form is unchanged)
    plain = Program.from_dict(_spec(envelope=..., requested_kw=5, incentive={"kind": "pay_as_clear"}))
    assert plain.envelope is None and "envelope" not in plain.to_dict()
    assert Program.from_dict(_spec(envelope=None, requested_kw=5)).envelope is None


@pytest.mark.parametrize("over, expected", [
    ({"requested_kw": 5}, ["requested_kw: an envelope program asks for limits"]),
    ({"requested_kw": [1, 2]}, ["requested_kw: an envelope program asks for limits"]),
    ({"incentive": {"kind": "pay_as_clear"}}, ["incentive.kind: an envelope program has no clearing price"]),
    ({"envelope": {}}, ["envelope.export_limit_kw: give export_limit_kw, import_limit_kw or both"]),
    ({"envelope": {"export_limit_kw": -0.1}}, ["envelope.export_limit_kw: must be from 0 to"]),
    ({"envelope": {"import_limit_kw": "2"}}, ["envelope.import_limit_kw: must be a number of kW or null"]),
    ({"envelope": {"export_limit_kw": float("nan")}}, ["envelope.export_limit_kw: must be from 0"]),
    ({"envelope": {"export_limit_kw": True}}, ["envelope.export_limit_kw: must be a number"]),
    ({"envelope": {"export_limit_kw": 10**400}}, ["envelope.export_limit_kw: must be at most"]),
    ({"envelope": {"export_kw": 1}}, ["envelope.export_kw: unknown field"]),
    ({"envelope": [1.5]}, ["envelope: must be an object"]),
])
def test_a_wrong_envelope_program_names_each_wrong_field_once(over, expected):
    errors = _errors(_spec(**over))
    assert len(errors) == len(expected), errors
    for got, want in zip(errors, expected):
        assert got.startswith(want), errors


def test_zero_is_a_limit_and_both_directions_may_be_limited():
    p = Program.from_dict(_spec(envelope={"export_limit_kw": 0, "import_limit_kw": 7.5}))
    assert p.envelope == Envelope(0.0, 7.5)
    assert limit_controls(p.envelope) == {"opModImpLimW": (7500, 0), "opModExpLimW": (0, 0)}
    assert list(limit_controls(p.envelope)) == ["opModImpLimW", "opModExpLimW"]  # csipaus-core.xsd's order


def test_controls_are_active_powers_whose_value_fits_int16():
    assert limit_controls(Envelope(export_limit_kw=1.5)) == {"opModExpLimW": (1500, 0)}
    assert limit_controls(Envelope(export_limit_kw=50.0)) == {"opModExpLimW": (5000, 1)}
    value, mult = limit_controls(Envelope(import_limit_kw=1.23456))["opModImpLimW"]
    assert -32768 <= value <= 32767 and abs(value * 10**mult - 1234.56) < 0.1
    # the published limit is what the device receives, and what M&V measures against
    assert published_kw(Envelope(export_limit_kw=1.23456)).export_limit_kw == pytest.approx(value * 10**mult / 1000)
    with pytest.raises(EnvelopeError):
        Envelope()


def test_curtailment_pays_export_given_up_against_the_baseline_up_to_the_envelope():
    env = Envelope(export_limit_kw=1.5)
    # import-positive kW: baseline exports 4 kW; the site held 1.5 (full), 2.0 (half a kW over),
    # exported more than its baseline, a baseline already inside the envelope, missing data
    b = np.array([[-4.0, -4.0, -4.0, -1.0, np.nan, -4.0]])
    a = np.array([[-1.5, -2.0, -4.5, -1.0, -1.0, np.nan]])
    c = curtailment(b, a, env)
    np.testing.assert_allclose(c.required_kw, [[2.5, 2.5, 2.5, 0.0, 0.0, 2.5]])
    np.testing.assert_allclose(c.curtailed_kw, [[2.5, 2.0, -0.5, 0.0, np.nan, np.nan]])
    np.testing.assert_allclose(c.excess_kw, [[0.0, 0.5, 3.0, 0.0, 0.0, np.nan]])
    # import side: a site importing 6 kW on its baseline, limited to 2 kW, imported 3
    imp = curtailment(np.array([6.0]), np.array([3.0]), Envelope(import_limit_kw=2.0))
    assert (imp.required_kw[0], imp.curtailed_kw[0], imp.excess_kw[0]) == (4.0, 3.0, 1.0)


def test_the_settlement_of_a_curtailment_pays_up_to_the_requirement_and_charges_the_excess():
    """The M&V feeds programs.settlement's fixed incentive: rate × min(max(R, 0), s) × Δt, and
    under_delivery_per_kwh × (s − R) × Δt = the kWh spent outside the envelope."""
    from datetime import datetime, timedelta, timezone

    env = Envelope(export_limit_kw=1.5)
    c = curtailment(np.array([-4.0, -4.0]), np.array([-1.5, -2.0]), env)
    t0 = datetime(2026, 1, 5, 0, tzinfo=timezone.utc)
    ivs = [IntervalDelivery(t0 + timedelta(hours=k), 3600, float(c.curtailed_kw[k]), float(c.required_kw[k]))
           for k in range(2)]
    rule = SettlementRule("AUD", "fixed", rate_per_kwh=0.1, under_delivery_per_kwh=0.2)
    res = settle(rule, [DeviceDelivery("7", ivs)])
    # 2.5 kWh + 2.0 kWh curtailed at 10 c; 0.5 kWh over the envelope at 20 c
    assert res.gross_minor == 25 + 20 - 10
    assert [ln.kind for ln in res.devices[0].lines] == ["delivery", "delivery", "under_delivery"]
    assert math.isclose(float(res.devices[0].energy_kwh), 4.5)
