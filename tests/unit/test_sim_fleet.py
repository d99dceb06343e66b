"""der_sim.fleet without a server: a fleet drawn from a seed (exact kind counts, valid and varied
parameters, EV habits reaching back into the history), progress output, and bid curves derived
from each device's state. The fleet against a real server runs in tests/e2e/test_demo.py."""

from __future__ import annotations

import io
import random

import pytest

from der_sim.devices import MODELS, backfill, metered_import_w
from der_sim.fleet import DEFAULT_MIX, EV_HISTORY_DAYS, SimDevice, make_devices, progress_printer

NOW = 1_796_000_000.0


def test_a_seed_replays_the_fleet_and_the_mix_is_exact() -> None:
    a, b = make_devices(50, seed=3, now=NOW), make_devices(50, seed=3, now=NOW)
    assert [(d.name, d.kind, d.params) for d in a] == [(d.name, d.kind, d.params) for d in b]
    assert [d.kind for d in make_devices(50, seed=4, now=NOW)] != [d.kind for d in a]
    counts = {k: sum(d.kind == k for d in a) for k in DEFAULT_MIX}
    assert counts == {"battery": 20, "load": 17, "ev_charger": 8, "pv": 5}  # 17.5 / 7.5 by largest remainder
    assert {d.kind for d in make_devices(10, mix={"battery": 1.0}, now=NOW)} == {"battery"}
    assert len({d.params for d in a if d.kind == "battery"}) > 3  # varied, not copies


def test_bad_fleets_are_refused_clearly() -> None:
    with pytest.raises(ValueError, match="unknown device kinds"):
        make_devices(3, mix={"heat pump": 1.0})
    with pytest.raises(ValueError, match="positive share"):
        make_devices(3, mix={"battery": 0.0})
    with pytest.raises(ValueError, match="0 or more"):
        make_devices(-1)
    assert make_devices(0) == []


def test_ev_chargers_charge_daily_in_their_history_as_they_do_today() -> None:
    (ev,) = [d for d in make_devices(20, mix={"ev_charger": 1.0}, now=NOW)][:1]
    assert len(ev.params.sessions) == EV_HISTORY_DAYS + 3
    model = MODELS["ev_charger"]
    t = NOW + 120  # a window about to start
    rng = random.Random(1)
    today = model.step(ev.params, model.initial(ev.params, t, rng), None, t, 60, rng)
    history = dict(backfill(model, ev.params, t - 7 * 86_400, 1, 60, random.Random(2)))
    # a week ago at the same time the car was charging too (the same habit), so a baseline sees it
    assert metered_import_w(today) > 1000 and history[t - 7 * 86_400] > 1000


def test_offers_follow_the_seed_convention_and_state() -> None:
    from der_sim.fleet import Fleet

    devices = make_devices(12, seed=5, now=NOW, mix={"battery": 0.5, "load": 0.25, "ev_charger": 0.25})
    fleet = Fleet.__new__(Fleet)  # offers() needs only the devices: no server, no agents
    fleet.devices = devices
    offers = fleet.offers(1800, 0.0, 12.0, now=NOW)
    assert len(offers) == 12
    for d, curve in zip(devices, offers):
        prices = [p for p, _ in curve]
        kws = [kw for _, kw in curve]
        assert prices == sorted(prices) and prices[0] >= 0.0 and prices[-1] <= 12.0
        assert kws == sorted(kws)  # more price, more flexibility
        if d.kind == "battery":
            assert kws[0] == 0.0 and kws[-1] > 0  # discharges more as the price rises


def test_progress_prints_a_line_per_tenth_off_a_terminal() -> None:
    out = io.StringIO()
    show = progress_printer(out)
    for i in range(1, 101):
        show("devices registered", i, 100)
    lines = out.getvalue().splitlines()
    assert lines[0] == "  devices registered: 1/100" and lines[-1] == "  devices registered: 100/100"
    assert len(lines) == 11
    assert isinstance(make_devices(1, now=NOW)[0], SimDevice)
