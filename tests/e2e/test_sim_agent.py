"""Simulated devices (der_sim.agent.DeviceAgent) against a real `derflex serve` over real TLS.

One run of about 30 s shared by the tests below: a fresh server with one demo device (registered
out of band, PIN 111115), and three agents with certificates from the server's dev PKI, each on
its own keep-alive TLS 1.2 / ECDHE-ECDSA-AES128-CCM8 connection, driven in real time by one thread
as a fleet would drive them (each called at the time it asks for): a battery (the demo device), a
PV inverter and a load (both registering in band). Time is compressed by the agents' overrides:
poll every 2 s, report every 4 s, 2 s metering intervals. The operator, through the CLI, makes a
program with the three as members and publishes one event (opModFixedW 50 %) a few seconds ahead.
Everything is then checked from the server's side (its database), and the battery's model is
checked to have followed the control.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import text

from der_sim.agent import AgentConfig, DeviceAgent
from der_sim.devices import BATTERY, LOAD, PV, BatteryParams, LoadParams, PVParams
from server.db import metering
from server.db.session import Database
from server.tls import CCM8

from .conftest import RunningServer, start_server, stop_server

pytestmark = pytest.mark.e2e

CONFIG = AgentConfig(poll_rate=2, post_rate=4, interval_s=2)
EVENT_LEAD = 10  # seconds from publishing to the start: several polls see it scheduled
EVENT_SECONDS = 8
BAT = BatteryParams(capacity_wh=10_000, max_charge_w=5_000, max_discharge_w=4_000)


def cli(home: Path, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "server.cli", "--home", str(home), *args],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"derflex {' '.join(args)}: {done.stdout}\n{done.stderr}"
    return done.stdout


class Driver(threading.Thread):
    """Calls each agent at the time it asked for, on the wall clock, until stopped."""

    def __init__(self, agents: list[DeviceAgent]) -> None:
        super().__init__(daemon=True)
        self.agents = agents
        self.wake = [0.0] * len(agents)
        self.runs = 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            for i, agent in enumerate(self.agents):
                now = time.time()  # read for each agent: the one before may have taken a while
                if now >= self.wake[i]:
                    self.wake[i] = agent.run_due(now)
                    self.runs += 1
            self._halt.wait(max(0.0, min(min(self.wake) - time.time(), 0.1)))

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=30)


@dataclass
class Run:
    server: RunningServer
    agents: list[DeviceAgent]
    db: Database
    device_ids: dict[str, int] = field(default_factory=dict)  # by LFDI
    program: int = 0
    mrid: str = ""
    start: int = 0
    end: int = 0
    battery_during: list[tuple[float, float]] = field(default_factory=list)  # (control %, W) sampled
    tls: list[tuple[str, str] | None] = field(default_factory=list)
    seconds: float = 0.0


def _wait(condition, timeout: float) -> bool:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def _statuses(db: Database, mrid: str, device: int) -> list[tuple[int, int]]:
    with db.read() as conn:
        rows = conn.execute(text(
            "SELECT r.status, r.created_date_time FROM der_responses r JOIN der_events e ON e.id = r.event_id "
            "WHERE e.mrid = :mrid AND r.device_id = :dev ORDER BY r.id"), {"mrid": mrid, "dev": device}).all()
    return [(r.status, r.created_date_time) for r in rows]


def _series(db: Database, device: int, t1: int, t2: int) -> dict[int, float]:
    with db.read() as conn:
        starts, watts = metering.load_series(conn, device, t1, t2)
    return dict(zip(starts.tolist(), watts.tolist(), strict=True))


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    began = time.monotonic()
    home = tmp_path_factory.mktemp("simagent")
    server = start_server(home, "--demo-devices", "1")
    pki = server.pki
    fleet = [
        (pki.load("demo-1"), BATTERY, BAT),
        (pki.issue("sim-pv"), PV, PVParams(nameplate_w=6_000)),
        (pki.issue("sim-load"), LOAD, LoadParams()),
    ]
    agents = [
        DeviceAgent.over_tls(cred, "localhost", server.port, pki.trust_path, model=model, params=params,
                             rng=random.Random(i), config=CONFIG)
        for i, (cred, model, params) in enumerate(fleet)
    ]
    db = Database(f"sqlite:///{home / 'var' / 'derflex.db'}")
    result = Run(server=server, agents=agents, db=db)
    driver = Driver(agents)
    driver.start()
    try:
        assert _wait(lambda: all(a.phase == "running" for a in agents), 30), \
            [(a.name, a.phase, a.problem, a.last_error) for a in agents]
        devices = json.loads(cli(home, "admin", "devices", "--json"))["devices"]
        result.device_ids = {d["lfdi"]: d["id"] for d in devices}
        ids = [str(result.device_ids[a.lfdi]) for a in agents]
        result.program = json.loads(cli(home, "program", "create", "--primacy", "5", "--description", "sim e2e",
                                        "--json"))["id"]
        cli(home, "program", "members", "add", str(result.program), *ids)
        start = (int(time.time()) + EVENT_LEAD) // 2 * 2  # on a metering interval boundary
        created = json.loads(cli(home, "event", "create", str(result.program), "--start", str(start),
                                 "--duration", str(EVENT_SECONDS), "--fixed-w", "5000", "--json"))
        (event,) = created["events"]
        result.mrid, result.start, result.end = event["mrid"], event["start"], event["end"]
        battery = agents[0]
        while time.time() < result.end + 1:
            state, control = battery.state, battery.control
            if result.start + 0.5 < state.time and time.time() < result.end - 0.5:  # its last step was inside
                result.battery_during.append(
                    (control.fixed_w_pct if control and control.fixed_w_pct is not None else float("nan"),
                     state.power_w))
            time.sleep(0.25)

        def done() -> bool:
            answered = all(len(_statuses(db, result.mrid, int(i))) >= 3 for i in ids)
            mirrored = all(max(_series(db, int(i), start - 60, result.end + 60), default=0) >= result.end
                           for i in ids)
            return answered and mirrored

        _wait(done, 20)
        result.tls = [a.client.transport.tls() for a in agents]
        result.seconds = time.monotonic() - began
        yield result
    finally:
        driver.stop()
        for a in agents:
            a.close()
        db.dispose()
        assert stop_server(server) == 0, server.log.read_text()


def test_agents_register_over_tls_ccm8(run: Run) -> None:
    assert run.tls == [("TLSv1.2", CCM8)] * 3
    demo, pv, load = run.agents
    assert [a.phase for a in run.agents] == ["running"] * 3
    assert (demo.counters.registrations, pv.counters.registrations, load.counters.registrations) == (0, 1, 1)
    assert all(a.lfdi in run.device_ids for a in run.agents)
    # one keep-alive connection each, reopened only when the server closed an idle one
    assert all(a.client.transport.connections <= a.stats.by_method["GET"] / 5 for a in run.agents)
    assert all(a.counters.failures == 0 and a.stats.failed == 0 for a in run.agents), \
        [(a.name, a.last_error, a.stats.snapshot()) for a in run.agents]


def test_der_documents_reported(run: Run) -> None:
    with run.db.read() as conn:
        caps = dict(conn.execute(text("SELECT device_id, der_type FROM der_capabilities")).all())
        soc = conn.execute(text("SELECT state_of_charge_percent, reading_time FROM der_statuses WHERE device_id = :d"),
                           {"d": run.device_ids[run.agents[0].lfdi]}).one()
    assert [caps[run.device_ids[a.lfdi]] for a in run.agents] == [80, 4, 0]
    assert 0 < soc.state_of_charge_percent <= 50 and soc.reading_time >= run.start  # reported again since


def test_event_answered_received_started_completed(run: Run) -> None:
    assert run.mrid, "no event was published"
    for agent in run.agents:
        got = _statuses(run.db, run.mrid, run.device_ids[agent.lfdi])
        assert [s for s, _ in got] == [1, 2, 3], (agent.name, got, agent.last_error)
        (_, received), (_, started), (_, completed) = got
        assert received < run.start <= started <= run.start + 1
        assert run.end <= completed <= run.end + 1


def test_battery_followed_the_control(run: Run) -> None:
    assert run.battery_during, "the event was never sampled"
    assert all(pct == 50.0 for pct, _ in run.battery_during), run.battery_during
    assert all(w == pytest.approx(2000.0) for _, w in run.battery_during), run.battery_during
    assert run.agents[0].control is None  # released at the end (the program has no default)


def test_readings_mirrored_and_served_to_mv(run: Run) -> None:
    battery = run.agents[0]
    series = _series(run.db, run.device_ids[battery.lfdi], run.start - 40, run.end + 40)
    inside = [series[t] for t in range(run.start, run.end, 2)]
    assert inside == [-2000.0] * (EVENT_SECONDS // 2), series  # 2 kW exported in every interval
    assert series[run.start - 2] == 0.0 and series[run.end] == 0.0
    for agent in run.agents[1:]:
        got = _series(run.db, run.device_ids[agent.lfdi], run.start - 40, run.end + 40)
        assert set(range(run.start, run.end, 2)) <= set(got) and all(t % 2 == 0 for t in got), got
    load = _series(run.db, run.device_ids[run.agents[2].lfdi], run.start - 40, run.end + 40)
    assert all(w > 0 for w in load.values())  # a load imports
