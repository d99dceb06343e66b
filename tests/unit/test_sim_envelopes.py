"""der_sim honours CSIP-AUS dynamic operating envelopes: opModExpLimW / opModImpLimW /
opModGenLimW / opModLoadLimW decoded by the event engine and applied by every device model — a PV
inverter's export stays under the limit while the control is active and returns to what the sun
gives after it; batteries, EV chargers and loads are cut as the limits say."""

from __future__ import annotations

import random

import pytest

from der_sim.devices import (BATTERY, EV_CHARGER, LOAD, MODELS, PV, BatteryParams, Control, EVParams, EVSession,
                             LoadParams, PVParams, metered_import_w)
from der_sim.engine import EventEngine, decode_control
from server.sep2.der import ActivePower
from server.sep2.derp import DateTimeInterval, DERControl, DERControlBase, EventStatus

NOON = 12 * 3600  # UTC; the PV's local time is UTC (tz_offset_s 0)


def doe(mrid: str, start: int, duration: int, **limits: ActivePower) -> DERControl:
    return DERControl(mrid=mrid, creation_time=0, reply_to="/rsps/1", response_required="03",
                      interval=DateTimeInterval(start=start, duration=duration),
                      event_status=EventStatus(current_status=0, date_time=0),
                      der_control_base=DERControlBase(**limits))


def test_the_engine_decodes_the_four_limits_in_watts() -> None:
    base = DERControlBase(op_mod_imp_lim_w=ActivePower(value=5, multiplier=3),
                          op_mod_exp_lim_w=ActivePower(value=15, multiplier=2),
                          op_mod_gen_lim_w=ActivePower(value=0, multiplier=0),
                          op_mod_load_lim_w=ActivePower(value=25, multiplier=-1))
    assert decode_control(base) == Control(imp_lim_w=5000.0, exp_lim_w=1500.0, gen_lim_w=0.0, load_lim_w=2.5)
    # a negative limit allows nothing that way, as 0 does
    assert Control(exp_lim_w=-100.0).exp_lim_w == 0.0
    with pytest.raises(ValueError, match="exp_lim_w"):
        Control(exp_lim_w=float("nan"))


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_every_model_accepts_an_envelope_event(kind: str) -> None:
    engine = EventEngine(random.Random(0), supports=MODELS[kind].supports)
    engine.observe("P", 1, [doe("A", 100, 100, op_mod_exp_lim_w=ActivePower(value=1500, multiplier=0))], None, 0)
    assert [r.status for r in engine.tick(0).responses] == [1]  # received, not 252 (not applicable)
    assert engine.tick(150).control == Control(exp_lim_w=1500.0)


def test_a_pv_inverters_export_stays_under_the_limit_while_the_control_is_active() -> None:
    """5 kW of PV at midday, clear sky; a 1.5 kW export envelope from 12:30 to 13:30, fed to the
    engine as the agent feeds it; the device stepped each minute like the agent's readings."""
    params = PVParams(nameplate_w=5000.0)
    engine = EventEngine(random.Random(1), supports=PV.supports)
    start, end = NOON + 1800, NOON + 5400
    engine.observe("P", 1, [doe("A", start, end - start, op_mod_exp_lim_w=ActivePower(value=15, multiplier=2))],
                   None, NOON)
    rng = random.Random(2)
    state = PV.initial(params, NOON, rng)
    inside, outside = [], []
    for t in range(NOON, NOON + 7200, 60):
        control = engine.tick(t).control
        state = PV.step(params, state, control, t, 60, rng)
        export = -metered_import_w(state)  # what the agent mirrors, positive = export
        (inside if start <= t < end else outside).append((t, export, state.available_w))
    assert len(inside) == 60 and len(outside) == 60
    assert all(export <= 1500.0 + 1e-9 for _, export, _ in inside)
    assert all(available > 4000 for _, _, available in inside)  # the sun would have given far more
    assert min(export for _, export, _ in inside) == pytest.approx(1500.0)
    assert all(export > 4000 for _, export, _ in outside)  # before and after: what the sun gives


def test_the_generation_limit_caps_pv_too_and_the_smallest_limit_wins() -> None:
    params = PVParams(nameplate_w=5000.0)
    state = PV.initial(params, NOON, random.Random(0))
    for control, expected in ((Control(gen_lim_w=800.0), 800.0), (Control(exp_lim_w=900.0, gen_lim_w=1200.0), 900.0),
                              (Control(exp_lim_w=0.0), 0.0), (Control(imp_lim_w=10.0), None)):
        got = PV.step(params, state, control, NOON, 60, random.Random(0)).power_w
        if expected is None:  # an import limit does not touch a generator
            assert got > 4000
        else:
            assert got == pytest.approx(expected)


def test_a_battery_discharges_and_charges_within_its_envelope() -> None:
    params = BatteryParams(capacity_wh=13500, max_charge_w=5000, max_discharge_w=5000, initial_soc_pct=50)
    state = BATTERY.initial(params, 0, random.Random(0))
    step = lambda c: BATTERY.step(params, state, c, 0, 60, random.Random(0)).power_w  # noqa: E731
    assert step(Control(fixed_w_pct=100.0)) == pytest.approx(5000.0)
    assert step(Control(fixed_w_pct=100.0, exp_lim_w=2000.0)) == pytest.approx(2000.0)
    assert step(Control(fixed_w_pct=100.0, exp_lim_w=3000.0, gen_lim_w=2500.0)) == pytest.approx(2500.0)
    assert step(Control(fixed_w_pct=-100.0, imp_lim_w=1000.0)) == pytest.approx(-1000.0)
    assert step(Control(fixed_w_pct=-100.0, load_lim_w=1500.0, imp_lim_w=4000.0)) == pytest.approx(-1500.0)
    assert step(Control(fixed_w_pct=-100.0, exp_lim_w=0.0)) == pytest.approx(-5000.0)  # export limit: charging is fine


def test_an_ev_charger_and_a_load_draw_within_the_import_limit() -> None:
    ev = EVParams(max_charge_w=7000, sessions=(EVSession(0, 7200, 20000, 11000),))
    state = EV_CHARGER.initial(ev, 0, random.Random(0))
    assert EV_CHARGER.step(ev, state, Control(imp_lim_w=2000.0), 0, 60, random.Random(0)).power_w == pytest.approx(-2000.0)
    assert EV_CHARGER.step(ev, state, None, 0, 60, random.Random(0)).power_w == pytest.approx(-7000.0)
    load = LoadParams(noise=0.0, curtailable_share=0.5)
    demand = LOAD.step(load, LOAD.initial(load, 0, random.Random(0)), None, 19 * 3600, 60, random.Random(0)).demand_w
    held = LOAD.step(load, LOAD.initial(load, 0, random.Random(0)), Control(imp_lim_w=1500.0), 19 * 3600, 60,
                     random.Random(0))
    assert demand > 2000 and -held.power_w == pytest.approx(1500.0)
    floor = LOAD.step(load, LOAD.initial(load, 0, random.Random(0)), Control(imp_lim_w=0.0), 19 * 3600, 60,
                      random.Random(0))
    assert -floor.power_w == pytest.approx(0.5 * demand)  # a load cannot shed below its uncurtailable share
