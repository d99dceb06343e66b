"""Simulated devices driven by notifications against a real `derflex serve` (about 30 s).

A fleet of three (battery, PV, load; der_sim.fleet with a der_sim.notifications receiver on a
loopback port, the dev PKI's server certificate) registers in band over TLS 1.2 CCM8. The
server allows notifications to loopback (DERFLEX_NOTIFICATION_ALLOW) and logs every request
(--access-log). Each device polls every 2 s by pollRate, but in notification mode walks its
programs only every 100 × that (never, within this test). The operator, through the CLI, makes a
DER program with the three as members: the devices hear of it by a DERProgramList notification,
walk once and subscribe to its DERControlList. Then the operator publishes an event a few
seconds ahead. It must reach them by notification: the server's access log shows no
DERControlList GET between their subscription and the event's end, and yet each device answers
1 (received, before the start), 2 (started) and 3 (completed)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import text

from der_sim.agent import AgentConfig
from der_sim.fleet import Fleet, certificates, make_devices
from der_sim.notifications import NotificationReceiver
from server.db.session import Database

from .conftest import RunningServer, start_server, stop_server

pytestmark = pytest.mark.e2e

CONFIG = AgentConfig(poll_rate=2, post_rate=4, interval_s=2, notify=True, notify_poll_factor=100)
ENV = {"DERFLEX_NOTIFICATION_ALLOW": "loopback"}
EVENT_LEAD, EVENT_SECONDS = 6, 4


def cli(home: Path, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "server.cli", "--home", str(home), *args],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"derflex {' '.join(args)}: {done.stdout}\n{done.stderr}"
    return done.stdout


def _wait(condition, timeout: float) -> bool:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def derc_gets(log: Path, href: str) -> int:
    """GETs of a DERControlList in the server's access log (any paging)."""
    pattern = re.compile(rf'"GET {re.escape(href)}(\?[^ ]*)? HTTP')
    return len(pattern.findall(log.read_text(errors="replace")))


@dataclass
class Run:
    server: RunningServer
    fleet: Fleet
    receiver: NotificationReceiver
    db: Database
    ids: dict[str, int] = field(default_factory=dict)  # device id by LFDI
    program: int = 0
    mrid: str = ""
    start: int = 0
    end: int = 0
    created_at: float = 0.0
    gets_at_subscription: dict[str, int] = field(default_factory=dict)
    gets_at_end: dict[str, int] = field(default_factory=dict)
    counters_at_subscription: dict[str, tuple[int, int]] = field(default_factory=dict)
    responses: dict[str, list[tuple[int, int]]] = field(default_factory=dict)


def _responses(db: Database, mrid: str, device: int) -> list[tuple[int, int]]:
    with db.read() as conn:
        rows = conn.execute(text(
            "SELECT r.status, r.created_date_time FROM der_responses r JOIN der_events e ON e.id = r.event_id "
            "WHERE e.mrid = :mrid AND r.device_id = :dev ORDER BY r.id"), {"mrid": mrid, "dev": device}).all()
    return [(r.status, r.created_date_time) for r in rows]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    home = tmp_path_factory.mktemp("simnotify")
    server = start_server(home, "--access-log", env=ENV)
    pki = server.pki
    devices = make_devices(3, seed=5, mix={"battery": 1, "pv": 1, "load": 1}, prefix="ntf")
    receiver = NotificationReceiver(pki.server_cert_path, pki.server_key_path, pki.trust_path, threads=4)
    fleet = Fleet(devices, certificates(pki, devices), "127.0.0.1", server.port, pki.trust_path, config=CONFIG,
                  workers=2, receiver=receiver)
    db = Database(f"sqlite:///{home / 'var' / 'derflex.db'}")
    result = Run(server, fleet, receiver, db)
    fleet.start()
    try:
        assert fleet.wait_registered(30) == 3, [(a.name, a.phase, a.last_error) for a in fleet.agents]
        listed = json.loads(cli(home, "admin", "devices", "--json"))["devices"]
        result.ids = {d["lfdi"]: d["id"] for d in listed}
        ids = [result.ids[a.lfdi] for a in fleet.agents]
        result.program = json.loads(cli(home, "der-program", "create", "--primacy", "5", "--description",
                                        "notified", "--json"))["id"]
        cli(home, "der-program", "members", "add", str(result.program), *map(str, ids))
        hrefs = {a.lfdi: f"/edev/{result.ids[a.lfdi]}/derp/{result.program}/derc" for a in fleet.agents}

        def subscribed_and_read() -> bool:
            return all(hrefs[a.lfdi] in a._subs and derc_gets(server.log, hrefs[a.lfdi]) >= 1 and not a._inbox
                       for a in fleet.agents)

        assert _wait(subscribed_and_read, 15), [(a.name, sorted(a._subs), a.last_error) for a in fleet.agents]
        time.sleep(0.5)  # the walk that subscribed has finished reading
        result.gets_at_subscription = {lfdi: derc_gets(server.log, h) for lfdi, h in hrefs.items()}
        result.counters_at_subscription = {a.lfdi: (a.counters.control_list_gets, a.counters.polls)
                                           for a in fleet.agents}

        result.created_at = time.time()
        result.start = int(result.created_at) + EVENT_LEAD
        created = json.loads(cli(home, "event", "create", str(result.program), "--start", str(result.start),
                                 "--duration", str(EVENT_SECONDS), "--fixed-w", "5000", "--json"))
        (event,) = created["events"]
        result.mrid, result.end = event["mrid"], event["end"]
        _wait(lambda: all(len(_responses(db, result.mrid, i)) >= 3 for i in ids),
              result.end - time.time() + 10)
        result.gets_at_end = {lfdi: derc_gets(server.log, h) for lfdi, h in hrefs.items()}
        result.responses = {a.lfdi: _responses(db, result.mrid, result.ids[a.lfdi]) for a in fleet.agents}
        yield result
    finally:
        fleet.stop()
        db.dispose()
        assert stop_server(server) == 0, server.log.read_text()[-3000:]


def test_the_event_reached_the_devices_by_notification_not_by_poll(run: Run) -> None:
    assert run.mrid, "no event was published"
    assert run.gets_at_end == run.gets_at_subscription  # no DERControlList GET since they subscribed
    for agent in run.fleet.agents:
        reads, walks = run.counters_at_subscription[agent.lfdi]
        assert (agent.counters.control_list_gets, agent.counters.polls) == (reads, walks), agent.name
        assert walks == 2  # the first walk, and the one a DERProgramList notification asked for
        assert agent.counters.notifications >= 2 and agent.counters.subscriptions_refused == 0
        assert agent.counters.failures == 0 and agent.stats.failed == 0, (agent.name, agent.last_error)
    stats = run.receiver.stats()
    assert stats["received"] >= 6 and stats.get("answered_400", 0) == stats.get("answered_404", 0) == 0
    assert stats.get("connections_refused", 0) == 0
    assert 1 <= stats["connections"] <= 4  # the whole fleet over a few keep-alive connections


def test_the_devices_answered_received_started_completed(run: Run) -> None:
    for agent in run.fleet.agents:
        got = run.responses[agent.lfdi]
        assert [s for s, _ in got] == [1, 2, 3], (agent.name, got, agent.last_error)
        (_, received), (_, started), (_, completed) = got
        # told within moments (a loaded CI machine may take a few seconds), well before the start
        assert received <= run.created_at + 10 and received < run.start
        assert run.start <= started <= run.start + 1 and run.end <= completed <= run.end + 1


def test_the_fleet_command_runs_notified(run: Run, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "der_sim", "fleet", "--server", f"127.0.0.1:{run.server.port}", "--pki",
         str(run.server.home / "certs"), "--devices", "2", "--mix", "battery=1", "--poll-rate", "2",
         "--post-rate", "3", "--minutes", "0.15", "--prefix", "cli-ntf", "--notify", "--json"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr + run.server.log.read_text()[-3000:]
    summary = json.loads(done.stdout)
    assert summary["phases"] == {"running": 2} and summary["failed_requests"] == 0
    c = summary["counters"]
    assert c["subscriptions"] >= 4 and c["subscriptions_refused"] == 0  # FSA list and DERProgramList each
    assert c["polls"] == 2  # one walk each: nothing changed, nothing polled again
    assert "notifications to https://127.0.0.1:" in done.stderr
    assert summary["polling_estimate"] > summary["requests"] - c["sub_requests"]
