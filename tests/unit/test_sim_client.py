"""The simulator's 2030.5 client and device agent (der_sim/client.py, der_sim/agent.py) against the
real Flask app in process: a test Transport (this file's `AppTransport`, the only place flask is
touched) carries the agent's requests to the app as if through the trusted proxy with the device's
certificate, records every path, and can answer instead of the app (429, 500, a dropped
connection, garbage). The server's clock and the agent's are one fake clock moved by the test.

Covered: in-band registration; a pre-registered device checking its PIN (and refusing to go on
on a mismatch); the DER documents PUT and read back; an event → 1, 2, 3 at the right moments and
the control applied to the model; a cancellation → 6; mirrored readings stored and returned by
load_series; backfill; backoff on 429 (Retry-After), 500, a dropped connection and a bad answer;
every cycle starting again at /dcap."""

from __future__ import annotations

import dataclasses
import random
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import quote

import pytest
from sqlalchemy import text

import server.api.der as der_views
import server.api.mup as mup_views
import server.api.sep2 as views
from der_sim import reports
from der_sim.agent import AgentConfig, DeviceAgent
from der_sim.client import (
    BadAnswer,
    HttpsTransport,
    Sep2Client,
    Sep2Error,
    Stats,
    TransportError,
    parse_retry_after,
)
from der_sim.devices import BATTERY, LOAD, BatteryParams, LoadParams
from server.db import metering, repo
from server.sep2 import codec
from server.sep2.der import DERAvailability, DERCapability, DERSettings, DERStatus
from server.sep2.models import DeviceCapability, Error, Time
from server.services.sep2 import derp, edev
from server.tls import CCM8, server_context

T0 = 1_800_000_000  # a multiple of 60 and of 900
BAT = BatteryParams(capacity_wh=10_000, max_charge_w=5_000, max_discharge_w=4_000)
FAST = AgentConfig(poll_rate=60, post_rate=300, interval_s=60)
ERROR_429 = codec.render(Error(reason_code=4))


class Clock:
    """The server's wall clock, its cache clock and the agent's clock, moved together."""

    def __init__(self, app, monkeypatch) -> None:  # noqa: ANN001
        self.t = float(T0)
        self.skew = 0.0  # how far the server's clock is ahead of the agent's
        for module in (views, der_views, mup_views):
            monkeypatch.setattr(module, "now", lambda: int(self.t + self.skew))
        monkeypatch.setattr(views, "now_exact", lambda: self.t + self.skew)
        app.extensions["derflex"].clock = lambda: self.t + self.skew


Fault = tuple[int, dict[str, str], bytes] | BaseException


class AppTransport:
    """der_sim.client.Transport over the Flask test client, as the device `cred`."""

    def __init__(self, app, cred, header: str) -> None:  # noqa: ANN001
        self._client = app.test_client()
        leaf = cred.cert_path.read_text().split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n"
        self._cert = {header: quote(leaf)}
        self.log: list[tuple[str, str, int]] = []  # (method, path, status); ("RUN", "", t) marks a run
        self._faults: list[tuple[Callable[[str, str], bool], Fault]] = []

    def fail(self, fault: Fault, method: str | None = None, path: str = "") -> None:
        """Answer the next request matching (method, path prefix) with `fault` instead of the app."""
        self._faults.append((lambda m, p: (method is None or m == method) and p.startswith(path), fault))

    def request(self, method: str, path: str, body: bytes | None, headers: Any) -> tuple[int, dict[str, str], bytes]:
        for i, (match, fault) in enumerate(self._faults):
            if match(method, path):
                del self._faults[i]
                if isinstance(fault, BaseException):
                    self.log.append((method, path, 0))
                    raise fault
                self.log.append((method, path, fault[0]))
                return fault
        resp = self._client.open(path, method=method, data=body, headers={**self._cert, **dict(headers)},
                                 environ_base={"REMOTE_ADDR": "127.0.0.1"})
        self.log.append((method, path, resp.status_code))
        return resp.status_code, {k.lower(): v for k, v in resp.headers.items()}, resp.get_data()

    def close(self) -> None:
        pass

    def paths(self, method: str) -> list[str]:
        return [p for m, p, _ in self.log if m == method]


@pytest.fixture
def clock(app, monkeypatch) -> Clock:  # noqa: ANN001
    return Clock(app, monkeypatch)


@pytest.fixture
def make_agent(app, settings, clock):  # noqa: ANN001, ANN201
    def make(cred, *, model=BATTERY, params=BAT, config: AgentConfig = FAST, seed: int = 1):  # noqa: ANN001, ANN202
        transport = AppTransport(app, cred, settings.proxy_cert_header)
        agent = DeviceAgent(Sep2Client(transport), lfdi=cred.lfdi, sfdi=cred.sfdi, model=model, params=params,
                            rng=random.Random(seed), config=config, name=cred.name)
        return agent, transport

    return make


def drive(agent: DeviceAgent, transport: AppTransport, clock: Clock, until: float) -> None:
    """Run the agent at the times it asks for until `until` (then once at `until`)."""
    while True:
        transport.log.append(("RUN", "", int(clock.t)))
        wake = agent.run_due(clock.t)
        assert wake > clock.t
        if wake >= until:
            if clock.t < until:
                clock.t = float(until)
                transport.log.append(("RUN", "", int(clock.t)))
                agent.run_due(clock.t)
            return
        clock.t = wake


def device_id(database, lfdi: str) -> int:  # noqa: ANN001
    with database.transaction() as s:
        found = repo.find_device_by_lfdi(s, lfdi)
        return found.id if found else 0


def responses(database, mrid: str) -> list[tuple[int, int]]:  # noqa: ANN001
    with database.read() as conn:
        rows = conn.execute(text(
            "SELECT r.status, r.created_date_time FROM der_responses r JOIN der_events e ON e.id = r.event_id "
            "WHERE e.mrid = :mrid ORDER BY r.id"), {"mrid": mrid}).all()
    return [(r.status, r.created_date_time) for r in rows]


def program_with(database, device: int, **control: Any) -> int:  # noqa: ANN001
    with database.transaction() as s:
        prog = derp.create_der_program(s, description="sim", primacy=5, now=T0 - 100).id
        derp.add_members(s, prog, [device])
        if control:
            derp.set_default_control(s, prog, control)
    return prog


def publish(database, program: int, start: int, duration: int, control: dict, now: int) -> str:  # noqa: ANN001
    with database.transaction() as s:
        base = derp.control_base(control)
        return derp.create_events(s, program, start=start, duration=duration, controls=[(None, base)], now=now)[0].mrid


# ------------------------------------------------------------------------------- registration


def test_in_band_registration_then_der_documents_readable_back(make_agent, cast, database, client_for, clock) -> None:  # noqa: ANN001
    cred = cast["unregistered"]
    agent, transport = make_agent(cred)
    agent.run_due(clock.t)
    assert (agent.phase, agent.problem, agent.last_error) == ("running", None, None)
    assert [s for m, p, s in transport.log if m == "POST" and p == "/edev"] == [201]
    dev = device_id(database, cred.lfdi)
    assert dev and agent.counters.registrations == 1
    with database.transaction() as s:
        assert repo.find_device_by_lfdi(s, cred.lfdi).registered_by == cred.lfdi  # in band, by itself
    # the four documents, PUT to the hrefs the DER gave, read back as stored
    puts = transport.paths("PUT")
    assert sorted(p.rsplit("/", 1)[1] for p in puts) == ["dera", "dercap", "derg", "ders"]
    c = client_for(cred)
    expected = {
        DERCapability: reports.capability("battery", BAT),
        DERSettings: reports.settings("battery", BAT, T0),
        DERStatus: reports.status("battery", BAT, agent.state, T0),
        DERAvailability: reports.availability("battery", BAT, agent.state, T0),
    }
    for href in puts:
        model = next(m for m in expected if href.endswith({DERCapability: "dercap", DERSettings: "derg",
                                                          DERStatus: "ders", DERAvailability: "dera"}[m]))
        got = codec.parse(c.get(href).data, model)
        assert dataclasses.replace(got, href=None) == expected[model], model
    cap = expected[DERCapability]
    assert (cap.type, cap.rtg_max_w.amount, cap.rtg_max_wh.amount) == (80, 4000, 10_000)
    assert (cap.rtg_max_charge_rate_w.amount, cap.rtg_max_discharge_rate_w.amount) == (5000, 4000)
    assert expected[DERStatus].state_of_charge_status.value == 5000  # 50.00 %
    # a second registration does not happen: the next cycle finds itself in the EndDeviceList
    clock.t += 60
    agent.run_due(clock.t)
    assert transport.paths("POST").count("/edev") == 1 and agent.counters.cycles == 2


def test_pre_registered_device_checks_its_pin(make_agent, cast, database, clock) -> None:  # noqa: ANN001
    cred = cast["owner"]
    with database.transaction() as s:
        edev.register_out_of_band(s, cred.lfdi, T0 - 10, pin=111115)
    agent, transport = make_agent(cred)
    agent.run_due(clock.t)
    assert agent.phase == "running"
    assert any(p.endswith("/rg") for p in transport.paths("GET"))
    assert "/edev" not in transport.paths("POST")


def test_pin_mismatch_is_refused_and_nothing_more_is_done(make_agent, cast, database, clock) -> None:  # noqa: ANN001
    cred = cast["owner"]
    with database.transaction() as s:
        edev.register_out_of_band(s, cred.lfdi, T0 - 10, pin=222220)
    agent, transport = make_agent(cred)  # expects the default 111115
    wake = agent.run_due(clock.t)
    assert agent.phase == "refused" and "PIN" in agent.problem and "222220" in agent.problem
    assert transport.paths("PUT") == [] and transport.paths("POST") == []
    assert not any("/fsa" in p for p in transport.paths("GET"))
    assert wake == pytest.approx(clock.t + 60)  # it looks again at its poll rate
    clock.t = wake
    agent.run_due(clock.t)
    assert agent.phase == "refused" and transport.paths("PUT") == []
    # the operator fixes the PIN: the device goes on
    with database.transaction() as s:
        repo.find_device_by_lfdi(s, cred.lfdi).pin = 111115
    clock.t += 60
    agent.run_due(clock.t)
    assert agent.phase == "running" and len(transport.paths("PUT")) == 4


def test_in_band_registration_switched_off_waits(make_agent, cast, app, clock, monkeypatch) -> None:  # noqa: ANN001
    rt = app.extensions["derflex"]
    monkeypatch.setattr(rt, "settings", dataclasses.replace(rt.settings, allow_inband_registration=False))
    agent, transport = make_agent(cast["unregistered"])
    agent.run_due(clock.t)
    assert agent.phase == "waiting" and "in-band registration refused" in agent.problem
    assert agent.counters.failures == 0 and transport.paths("PUT") == []


# ---------------------------------------------------------------------------------------- events


def test_event_answered_1_2_3_and_applied_then_readings_mirrored(make_agent, cast, database, clock) -> None:  # noqa: ANN001
    cred = cast["owner"]
    with database.transaction() as s:
        dev = edev.register_out_of_band(s, cred.lfdi, T0 - 10, pin=111115).id
    prog = program_with(database, dev, opModMaxLimW=9000)
    mrid = publish(database, prog, start=T0 + 300, duration=600, control={"opModFixedW": 5000}, now=T0 - 5)
    agent, transport = make_agent(cred)
    drive(agent, transport, clock, T0 + 450)
    assert agent.control is not None and agent.control.fixed_w_pct == 50.0
    assert agent.state.power_w == pytest.approx(2000.0)  # 50 % of its 4 kW discharge rating
    drive(agent, transport, clock, T0 + 1500)
    assert agent.control is not None and agent.control.fixed_w_pct is None  # back to the default
    assert agent.control.max_lim_w_pct == 90.0
    # received at its first poll, started at the start, completed at the end
    assert responses(database, mrid) == [(1, T0), (2, T0 + 300), (3, T0 + 900)]
    assert agent.counters.responses_posted == 3 and agent.counters.responses_dropped == 0
    # DERStatus and DERAvailability again every postRate (300 s)
    assert transport.paths("PUT").count(f"/edev/{dev}/der/1/ders") >= 5
    # the readings: average import per minute, −2 kW during the event, 0 before and after
    with database.read() as conn:
        starts, watts = metering.load_series(conn, dev, T0, T0 + 1500)
    assert starts.tolist() == list(range(T0, T0 + 1500, 60))[: len(starts)] and len(starts) >= 20
    by_start = dict(zip(starts.tolist(), watts.tolist(), strict=True))
    assert all(by_start[t] == -2000.0 for t in range(T0 + 300, T0 + 900, 60))
    assert all(by_start[t] == 0.0 for t in (T0, T0 + 240, T0 + 900, T0 + 1140))
    assert transport.paths("POST").count("/mup") == 1  # created once, found by its mRID after that
    assert agent.counters.readings_posted == len(starts) and agent.counters.readings_dropped == 0


def test_cancelled_event_answered_6_and_released(make_agent, cast, database, clock) -> None:  # noqa: ANN001
    cred = cast["owner"]
    with database.transaction() as s:
        dev = edev.register_out_of_band(s, cred.lfdi, T0 - 10, pin=111115).id
    prog = program_with(database, dev)
    mrid = publish(database, prog, start=T0 + 120, duration=600, control={"opModFixedW": -4000}, now=T0 - 5)
    agent, transport = make_agent(cred)
    drive(agent, transport, clock, T0 + 200)
    assert agent.state.power_w == pytest.approx(-2000.0)  # charging at 40 % of 5 kW
    with database.transaction() as s:
        derp.cancel_event(s, mrid, T0 + 200)
    drive(agent, transport, clock, T0 + 400)
    assert agent.control is None and agent.state.power_w == 0.0
    statuses = responses(database, mrid)
    assert [s for s, _ in statuses] == [1, 2, 6]
    assert T0 + 200 <= statuses[2][1] <= T0 + 260  # seen at the first poll after the cancellation


def test_a_late_caller_still_switches_at_the_exact_second(make_agent, cast, database, clock) -> None:  # noqa: ANN001
    cred = cast["owner"]
    with database.transaction() as s:
        dev = edev.register_out_of_band(s, cred.lfdi, T0 - 10, pin=111115).id
    prog = program_with(database, dev)
    mrid = publish(database, prog, start=T0 + 300, duration=600, control={"opModFixedW": 5000}, now=T0 - 5)
    agent, _ = make_agent(cred, config=dataclasses.replace(FAST, poll_rate=600, post_rate=1200))
    agent.run_due(clock.t)  # sees it scheduled
    clock.t = T0 + 330.7  # called half a minute after the start
    agent.run_due(clock.t)
    assert agent.state.time == clock.t and agent.state.power_w == pytest.approx(2000.0)
    clock.t = T0 + 1260.2  # and long after the end
    agent.run_due(clock.t)
    assert responses(database, mrid) == [(1, T0), (2, T0 + 300), (3, T0 + 900)]
    with database.read() as conn:
        starts, watts = metering.load_series(conn, dev, T0, T0 + 1200)
    assert dict(zip(starts.tolist(), watts.tolist(), strict=True)) == {
        t: (-2000.0 if T0 + 300 <= t < T0 + 900 else 0.0) for t in range(T0, T0 + 1200, 60)}


def test_server_clock_ahead_is_followed(make_agent, cast, database, clock) -> None:  # noqa: ANN001
    clock.skew = 100.0
    cred = cast["owner"]
    with database.transaction() as s:
        dev = edev.register_out_of_band(s, cred.lfdi, T0 - 10, pin=111115).id
    prog = program_with(database, dev)
    mrid = publish(database, prog, start=T0 + 300, duration=120, control={"opModFixedW": 5000}, now=T0 - 5)
    agent, transport = make_agent(cred)
    drive(agent, transport, clock, T0 + 500)  # the agent's clock: the event is over on the server's at T0 + 320
    assert 99.5 <= agent.offset <= 100.5
    assert responses(database, mrid) == [(1, T0 + 100), (2, T0 + 300), (3, T0 + 420)]


def test_every_cycle_walks_again_from_dcap(make_agent, cast, database, clock) -> None:  # noqa: ANN001
    cred = cast["owner"]
    with database.transaction() as s:
        dev = edev.register_out_of_band(s, cred.lfdi, T0 - 10, pin=111115).id
    prog = program_with(database, dev)
    publish(database, prog, start=T0 + 90, duration=60, control={"opModFixedW": 1000}, now=T0 - 5)
    agent, transport = make_agent(cred)
    drive(agent, transport, clock, T0 + 700)
    runs: list[list[tuple[str, str]]] = []
    for method, path, _ in transport.log:
        if method == "RUN":
            runs.append([])
        else:
            runs[-1].append((method, path))
    cycles = [r for r in runs if r and r[0] == ("GET", "/dcap")]
    assert len(cycles) == agent.counters.cycles >= 10
    for r in runs:
        if r and r[0] != ("GET", "/dcap"):  # only Responses are sent outside a cycle (at the event's start/end)
            assert all(m == "POST" and p.startswith("/rsps/") for m, p in r), r
    polls = [r for r in cycles if any("/derc" in p for _, p in r)]
    assert len(polls) == agent.counters.polls >= 10
    for r in polls:  # the whole chain each time: EndDeviceList → FSA → programs → controls
        paths = [p.split("?")[0] for m, p in r if m == "GET"]
        assert paths[:2] == ["/dcap", "/tm"] or paths[:2] == ["/dcap", "/edev"]
        assert {"/edev", f"/edev/{dev}/fsa", f"/edev/{dev}/fsa/1/derp", f"/edev/{dev}/derp/{prog}/derc"} <= set(paths)


# ------------------------------------------------------------------------------------ metering


def test_backfill_posts_history_in_chunks_where_live_readings_begin(make_agent, cast, database, clock) -> None:  # noqa: ANN001
    cred = cast["unregistered"]
    agent, transport = make_agent(cred, model=LOAD, params=LoadParams(), config=dataclasses.replace(FAST, readings_per_post=500))
    agent.run_due(clock.t)  # registers; live series starts at T0
    assert agent.backfill(2, 900, now=clock.t) == 192
    assert agent.backfill(1, now=clock.t) == 1440  # the live interval: 3 posts of at most 500
    dev = device_id(database, cred.lfdi)
    with database.read() as conn:
        starts, watts = metering.load_series(conn, dev, T0 - 2 * 86_400, T0)
    assert len(starts) == 192 + 1440 - 96  # the last day at 900 s and 60 s both (different intervals)
    assert starts[0] == T0 - 2 * 86_400 and starts[-1] == T0 - 60
    assert (watts > 0).all()  # a load only imports
    reading_posts = [p for m, p, s in transport.log if m == "POST" and p.startswith("/mup/")]
    assert len(reading_posts) == 1 + 3


def test_a_too_large_body_halves_the_chunks(make_agent, cast, clock) -> None:  # noqa: ANN001
    agent, transport = make_agent(cast["unregistered"], model=LOAD, params=LoadParams())
    agent.run_due(clock.t)
    transport.fail((413, {}, codec.render(Error(reason_code=2))), "POST", "/mup/")
    assert agent.backfill(1, 900, now=clock.t) == 96
    assert [s for m, p, s in transport.log if m == "POST" and p.startswith("/mup/")] == [413, 201, 201]


# ------------------------------------------------------------------------------------- failures


def test_429_honours_retry_after_then_500_backs_off_then_recovers(make_agent, cast, clock) -> None:  # noqa: ANN001
    agent, transport = make_agent(cast["unregistered"])
    transport.fail((429, {"retry-after": "120", "content-type": "application/sep+xml"}, ERROR_429))
    wake = agent.run_due(clock.t)
    assert wake >= clock.t + 120 and agent.counters.failures == 1 and "429" in agent.last_error
    assert agent.phase == "starting"
    clock.t = wake
    transport.fail((500, {}, b""))
    wake2 = agent.run_due(clock.t)
    assert clock.t + 1 <= wake2 <= clock.t + 2  # 2nd consecutive failure: 2 s × jitter (½…1)
    transport.fail(ConnectionResetError("peer went away"))
    clock.t = wake2
    wake3 = agent.run_due(clock.t)
    assert clock.t + 2 <= wake3 <= clock.t + 4
    assert agent.counters.failures == 3 and agent.counters.consecutive_failures == 3
    assert agent.stats.by_status[429] == 1 and agent.stats.by_status[500] == 1 and agent.stats.by_status[0] == 1
    clock.t = wake3
    agent.run_due(clock.t)
    assert agent.phase == "running" and agent.counters.consecutive_failures == 0
    assert agent.stats.failed == 3 and agent.stats.requests > 10


def test_a_bad_answer_never_escapes(make_agent, cast, clock) -> None:  # noqa: ANN001
    agent, transport = make_agent(cast["unregistered"])
    transport.fail((200, {"content-type": "application/sep+xml"}, b"<not-xml"), "GET", "/dcap")
    wake = agent.run_due(clock.t)
    assert agent.counters.failures == 1 and "BadAnswer" in agent.last_error and wake > clock.t
    transport.fail(RuntimeError("a bug in a transport"), "GET", "/dcap")
    clock.t = wake
    wake = agent.run_due(clock.t)
    assert agent.counters.failures == 2 and "RuntimeError" in agent.last_error
    clock.t = wake
    agent.run_due(clock.t)
    assert agent.phase == "running"


def test_responses_wait_for_the_server_and_are_not_lost(make_agent, cast, database, clock) -> None:  # noqa: ANN001
    cred = cast["owner"]
    with database.transaction() as s:
        dev = edev.register_out_of_band(s, cred.lfdi, T0 - 10, pin=111115).id
    prog = program_with(database, dev)
    mrid = publish(database, prog, start=T0 + 30, duration=60, control={"opModFixedW": 2500}, now=T0 - 5)
    agent, transport = make_agent(cred)
    agent.run_due(clock.t)  # polls, answers 1
    clock.t = T0 + 30
    transport.fail((503, {"retry-after": "20"}, b""), "POST", "/rsps/")
    wake = agent.run_due(clock.t)  # the start: control applied though the Response is refused
    assert agent.control.fixed_w_pct == 25.0 and wake >= T0 + 50
    drive(agent, transport, clock, T0 + 200)
    assert [s for s, _ in responses(database, mrid)] == [1, 2, 3]


# ----------------------------------------------------------------------------------- the client


def test_client_errors_carry_status_error_and_retry_after(app, settings, cast) -> None:  # noqa: ANN001
    client = Sep2Client(AppTransport(app, cast["owner"], settings.proxy_cert_header))
    with pytest.raises(Sep2Error) as info:
        client.get("/edev/99", DeviceCapability)  # not registered: nothing of the tree is its own
    assert info.value.status == 404 and info.value.error.reason_code == 1 and not info.value.retryable
    with pytest.raises(BadAnswer):
        client.get("/tm", DeviceCapability)  # a Time, not a DeviceCapability
    transport = AppTransport(app, cast["owner"], settings.proxy_cert_header)
    transport.fail((429, {"retry-after": "7"}, ERROR_429))
    transport.fail(OSError("unreachable"))
    client = Sep2Client(transport)
    with pytest.raises(Sep2Error) as info:
        client.get("/dcap", DeviceCapability)
    assert (info.value.retry_after, info.value.retryable, info.value.error.reason_code) == (7.0, True, 4)
    with pytest.raises(TransportError):
        client.get("/dcap", DeviceCapability)
    assert client.get("/dcap", DeviceCapability).end_device_list_link.href == "/edev"
    assert client.stats.by_status == {429: 1, 0: 1, 200: 1}


def test_retry_after_forms_and_stats_merge() -> None:
    assert parse_retry_after("30") == 30.0
    assert parse_retry_after("Thu, 01 Jan 2026 00:01:00 GMT", now=1767225600.0) == 60.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None
    a, b = Stats(), Stats()
    a.record("GET", 200, 0.010)
    b.record("POST", 201, 0.030)
    b.record("GET", 0, 1.0)
    a.merge(b)
    snap = a.snapshot()
    assert snap["requests"] == 3 and snap["by_method"] == {"GET": 2, "POST": 1} and snap["failed"] == 1
    assert 0.010 <= a.percentile(0.3) <= 0.013 and 0.030 <= a.percentile(0.5) <= 0.037 and a.percentile(1.0) >= 1.0 and snap["latency_max_s"] == 1.0


def test_busy_agent_answers_at_once(make_agent, cast, clock) -> None:  # noqa: ANN001
    agent, transport = make_agent(cast["unregistered"])
    with agent._lock:  # as during a backfill in another thread
        assert agent.run_due(clock.t) == clock.t + 0.5
    assert transport.log == []


class _DroppingHandler(BaseHTTPRequestHandler):
    """Answers /tm over HTTP/1.1 without "Connection: close", then closes the connection anyway
    (what a server's keep-alive timeout does to an idle connection)."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802
        body = codec.render(Time(current_time=T0))
        self.send_response(200)
        self.send_header("Content-Type", "application/sep+xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def log_message(self, *args: object) -> None:
        pass


def test_https_transport_reopens_a_connection_the_server_dropped(pki, cast) -> None:  # noqa: ANN001
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _DroppingHandler)
    httpd.socket = server_context(pki.server_cert_path, pki.server_key_path, pki.trust_path).wrap_socket(
        httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        cred = cast["owner"]
        transport = HttpsTransport.for_credential("localhost", httpd.server_address[1], cred.cert_path,
                                                  cred.key_path, pki.trust_path, timeout=5)
        client = Sep2Client(transport)
        for _ in range(3):
            assert client.get("/tm", Time).current_time == T0
            assert transport.tls() == ("TLSv1.2", CCM8)
        assert transport.connections == 3 and transport.resent == 2 and client.stats.by_status == {200: 3}
        transport.close()
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_https_transport_does_not_retry_a_fresh_connection(pki, cast) -> None:  # noqa: ANN001
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there
    cred = cast["owner"]
    client = Sep2Client(HttpsTransport.for_credential("localhost", port, cred.cert_path, cred.key_path,
                                                      pki.trust_path, timeout=2))
    with pytest.raises(TransportError):
        client.get("/tm", Time)
    assert client.transport.connections == 0 and client.stats.by_status == {0: 1}
