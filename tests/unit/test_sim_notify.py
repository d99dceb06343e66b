"""Simulated devices driven by notifications (der_sim.agent's notification mode), in process.

The agent talks to the real Flask app through test_sim_client's AppTransport; the server side of
notifications is the real one too: the outbox's `notifications` consumer renders what a change
calls for (server.services.sep2.notify), and the test hands the queued documents to the agent as
its receiver would (parsed with the receiver's models). One fake clock for server and agent.

Covered: the agent subscribes to its FSA list, each DERProgramList, each DERControlList and
DefaultDERControl before it reads them, and then walks only every notify_poll_factor × pollRate;
an event reaches it by notification (no DERControlList read between the subscription and the
event's end) and is answered 1, 2, 3 at the right seconds; a default control changed reaches the
model; a new membership (a DERProgramList notification) makes it walk at once and subscribe to
the new program; subscriptions the server lost are made again and ones no longer needed deleted;
a refused subscription puts the device back to polling; the polling estimate's arithmetic."""

from __future__ import annotations

import random
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import select

from der_sim.agent import AgentConfig, DeviceAgent
from der_sim.client import Sep2Client
from der_sim.devices import BATTERY
from der_sim.fleet import polling_estimate
from der_sim.notifications import MODELS
from server.db import sub as store
from server.jobs.outbox import OutboxDrainer
from server.sep2.sub import parse_notification
from server.services.sep2 import derp, edev, notify
from tests.unit.test_sim_client import BAT, T0, AppTransport, Clock, drive, program_with, publish, responses

NOTIFY = AgentConfig(poll_rate=60, post_rate=300, interval_s=60, notify=True, notify_poll_factor=10)


@pytest.fixture
def clock(app, monkeypatch) -> Clock:  # noqa: ANN001
    return Clock(app, monkeypatch)


@pytest.fixture
def allow_loopback(app) -> None:  # noqa: ANN001
    state = app.extensions["derflex"]
    state.settings = state.settings.with_(notification_allow=("loopback",))


def make(app, settings, cred, config: AgentConfig = NOTIFY) -> tuple[DeviceAgent, AppTransport]:  # noqa: ANN001
    transport = AppTransport(app, cred, settings.proxy_cert_header)
    agent = DeviceAgent(Sep2Client(transport), lfdi=cred.lfdi, sfdi=cred.sfdi, model=BATTERY, params=BAT,
                        rng=random.Random(1), config=config, name=cred.name)
    agent.notification_uri = f"https://127.0.0.1:9443/n/{agent.lfdi}"
    return agent, transport


def deliver(database: Any, agent: DeviceAgent, now: float) -> list[Any]:
    """What the server's notifier would send now: the outbox drained into notifications, each
    parsed as the receiver parses it and delivered to the agent; marked delivered."""
    OutboxDrainer(database, [notify.Notifications(900)], clock=lambda: now).drain()
    notify.scan_events(database, now, default_rate=900)
    with database.transaction() as s:
        rows = list(store.due(s, now, 1000))
        store.delivered(s, [r.id for r in rows], now)
        out = []
        for r in rows:
            assert r.uri == agent.notification_uri
            note, resource = parse_notification(r.body.encode(), MODELS)
            agent.deliver(note, resource)
            out.append((note.subscribed_resource, type(resource).__name__))
    return out


def subscribed(database: Any, device: int) -> list[str]:
    with database.transaction() as s:
        return sorted(s.scalars(select(store.Subscription.resource).where(store.Subscription.device_id == device)))


def walks(transport: AppTransport, dev: int) -> int:
    return transport.paths("GET").count(f"/edev/{dev}/fsa?s=0&l=100")


def test_subscribes_before_reading_then_takes_the_event_from_a_notification(app, settings, cast, database, clock,  # noqa: ANN001
                                                                            allow_loopback) -> None:
    cred = cast["owner"]
    with database.transaction() as s:
        dev = edev.register_out_of_band(s, cred.lfdi, T0 - 10, pin=111115).id
    prog = program_with(database, dev, opModMaxLimW=9000)
    agent, transport = make(app, settings, cred)
    drive(agent, transport, clock, T0 + 1)
    derc, dderc = f"/edev/{dev}/derp/{prog}/derc", f"/edev/{dev}/derp/{prog}/dderc"
    sub = f"/edev/{dev}/sub"
    assert subscribed(database, dev) == sorted([f"/edev/{dev}/fsa", f"/edev/{dev}/fsa/1/derp", derc, dderc])
    walk = [(m, p.split("?")[0]) for m, p, _ in transport.log
            if m in ("GET", "POST") and p.split("?")[0] in (sub, f"/edev/{dev}/fsa", f"/edev/{dev}/fsa/1/derp", derc, dderc)]
    assert walk == [("GET", sub),  # what the server holds already (nothing)
                    ("POST", sub), ("GET", f"/edev/{dev}/fsa"),  # each subscribed, then read
                    ("POST", sub), ("GET", f"/edev/{dev}/fsa/1/derp"),
                    ("POST", sub), ("GET", derc),
                    ("POST", sub), ("GET", dderc)]
    assert agent.counters.subscriptions == 4 and agent.counters.notifications == 0
    assert agent.control is not None and agent.control.max_lim_w_pct == 90.0  # the default, read once
    gets_after_subscribing = agent.counters.control_list_gets
    assert deliver(database, agent, clock.t) == []  # nothing changed yet

    mrid = publish(database, prog, start=T0 + 120, duration=300, control={"opModFixedW": 5000}, now=T0 + 30)
    clock.t = T0 + 31
    assert deliver(database, agent, clock.t) == [(derc, "DERControlList")]
    drive(agent, transport, clock, T0 + 32)
    assert responses(database, mrid) == [(1, T0 + 31)]  # received at once, not at the next poll
    drive(agent, transport, clock, T0 + 119)
    deliver(database, agent, clock.t)
    drive(agent, transport, clock, T0 + 200)
    assert agent.control is not None and agent.control.fixed_w_pct == 50.0
    for at in (T0 + 420, T0 + 426):  # its end, then it leaves the list (after the 5 s grace)
        drive(agent, transport, clock, at)
        deliver(database, agent, clock.t)
    drive(agent, transport, clock, T0 + 500)
    assert responses(database, mrid) == [(1, T0 + 31), (2, T0 + 120), (3, T0 + 420)]
    assert agent.counters.control_list_gets == gets_after_subscribing  # never polled for it
    assert walks(transport, dev) == 1 and agent.counters.notifications >= 2

    with database.transaction() as s:  # the default changes: notified, applied
        derp.set_default_control(s, prog, {"opModMaxLimW": 7000})
    assert deliver(database, agent, clock.t) == [(dderc, "DefaultDERControl")]
    drive(agent, transport, clock, T0 + 501)
    assert agent.control is not None and agent.control.max_lim_w_pct == 70.0
    drive(agent, transport, clock, T0 + 599)
    assert walks(transport, dev) == 1
    drive(agent, transport, clock, T0 + 601)  # the safety net: 10 × the 60 s pollRate
    assert walks(transport, dev) == 2 and agent.counters.subscriptions == 4  # nothing subscribed twice


def test_a_new_program_is_found_by_notification_and_lost_subscriptions_are_made_again(  # noqa: PLR0915
        app, settings, cast, database, clock, allow_loopback) -> None:  # noqa: ANN001
    cred = cast["owner"]
    with database.transaction() as s:
        dev = edev.register_out_of_band(s, cred.lfdi, T0 - 10, pin=111115).id
    first = program_with(database, dev)
    agent, transport = make(app, settings, cred)
    drive(agent, transport, clock, T0 + 1)
    assert walks(transport, dev) == 1

    with database.transaction() as s:  # an operator makes it a member of a second program
        second = derp.create_der_program(s, description="second", primacy=3, now=T0).id
        derp.add_members(s, second, [dev])
    clock.t = T0 + 10
    got = deliver(database, agent, clock.t)
    assert (f"/edev/{dev}/fsa/1/derp", "DERProgramList") in got
    drive(agent, transport, clock, T0 + 11)
    assert walks(transport, dev) == 2  # walked at once, and subscribed to the new program's list
    assert f"/edev/{dev}/derp/{second}/derc" in subscribed(database, dev)

    mrid = publish(database, second, start=T0 + 100, duration=60, control={"opModFixedW": 3000}, now=T0 + 20)
    clock.t = T0 + 21
    deliver(database, agent, clock.t)
    drive(agent, transport, clock, T0 + 22)
    assert responses(database, mrid) == [(1, T0 + 21)]

    with database.transaction() as s:  # the server loses one subscription; the first program ends
        lost = s.scalars(select(store.Subscription).where(
            store.Subscription.resource == f"/edev/{dev}/derp/{second}/derc")).one()
        s.delete(lost)
        derp.remove_members(s, first, [dev])
    deliver(database, agent, clock.t)
    drive(agent, transport, clock, T0 + 40)
    now_held = subscribed(database, dev)
    assert f"/edev/{dev}/derp/{second}/derc" in now_held  # made again by the walk
    assert f"/edev/{dev}/derp/{first}/derc" not in now_held  # no longer read: deleted
    assert transport.paths("DELETE")


def test_a_refused_subscription_means_polling_at_the_poll_rate(app, settings, cast, database, clock) -> None:  # noqa: ANN001
    cred = cast["owner"]  # no allow_loopback: the server refuses notifications to 127.0.0.1
    with database.transaction() as s:
        dev = edev.register_out_of_band(s, cred.lfdi, T0 - 10, pin=111115).id
    program_with(database, dev)
    agent, transport = make(app, settings, cred)
    drive(agent, transport, clock, T0 + 130)
    assert agent.counters.subscriptions == 0 and agent.counters.subscriptions_refused >= 1
    assert walks(transport, dev) == 3  # T0, +60, +120: as a polling device
    assert subscribed(database, dev) == []


def test_without_a_notification_uri_the_agent_polls() -> None:
    agent = DeviceAgent(Sep2Client(SimpleNamespace(request=None, close=lambda: None)), lfdi="A" * 40, sfdi=1,
                        model=BATTERY, params=BAT, rng=random.Random(1), config=NOTIFY)
    assert not agent.notifying
    agent.notification_uri = "https://127.0.0.1:1/n/" + "A" * 40
    assert agent.notifying
    with pytest.raises(ValueError):
        AgentConfig(notify=True, notify_poll_factor=0.5)


def test_polling_estimate_replaces_walks_and_cycles_by_their_polling_counts() -> None:
    counters = SimpleNamespace(polls=2, cycles=10, poll_requests=8, sub_requests=6, cycle_requests=20)
    agent = SimpleNamespace(counters=counters, running_since=1000.0, poll_rate=10.0, post_rate=20.0,
                            client=SimpleNamespace(requests=100))
    # 200 s: 20 walks of 4 requests, the 10 cycles + 18 for the walks not made, of 2 requests each,
    # and the 66 other requests as they were
    assert polling_estimate(agent, 1200.0) == 66 + 20 * 4 + (10 + 18) * 2
    agent.running_since = None
    assert polling_estimate(agent, 1200.0) is None
