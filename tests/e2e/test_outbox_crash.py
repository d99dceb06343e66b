"""The outbox end to end, with real processes: `derflex serve` (its BPP listener, Beckn worker and
outbox drainer), a real BAP (der_sim.bap) and its callback receiver verifying our signatures.

* kill -9 between a publish's commit and its Beckn push: the server's drainer process SIGKILLs
  itself when it finds the push due (DERFLEX_TEST_ONLY_OUTBOX_CRASH=before-delivery, a test-only
  fault), the rest of the server is SIGKILLed, a fresh server starts — and the BAP receives that
  on_status exactly once. The same for a settlement.
* A BAP that answers 500 for as long as the retry schedule lasts: the push ends as a dead letter
  (`derflex outbox list --state dead` says why); `derflex outbox replay` delivers it once the BAP
  answers again.

The publish and the settlement are committed by this test process (as `derflex scheduler` or an
operator would from another process): the push is the outbox's job, wherever the change was made.
On SQLite the drainer is a thread of the BPP's worker; with DERFLEX_TEST_DATABASE_URL the same
runs against PostgreSQL, where the drainer lives in the Beckn worker's own process.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from der_sim.bap import Bap, BapClient, BapIdentity, Customer, DerDevice, registry_lookup
from der_sim.bap_receiver import CallbackReceiver
from server.bootstrap import prepare
from server.config import from_env
from server.scope import Scope
from server.services.bpp import keys as beckn_keys
from server.services.flex import programs as flex, publishing, settlement, windows
from server.services.sep2 import der, edev
from server.services.sep2.der import DER_ID
from tests.e2e.conftest import RunningServer, free_port, start_server
from tests.builders import CAPABILITY, SETTINGS

pytestmark = pytest.mark.e2e

CURVE = [{"price": 0.10, "powerKW": 0.0}, {"price": 0.40, "powerKW": 5.0}]
CRASH_ENV = "DERFLEX_TEST_ONLY_OUTBOX_CRASH"


def lfdi(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:40].upper()


def _noon_zone(now: datetime) -> str:
    """A fixed-offset zone where it is now about noon, so today's windows never cross midnight."""
    offset = 12 - now.hour  # -11 … 12
    return "Etc/UTC" if offset == 0 else f"Etc/GMT{'-' if offset > 0 else '+'}{abs(offset)}"


class World:
    """A home with two houses, a program whose window today is 13:00–14:00 local (it is noon) and
    one that ran 10:00–11:00 local, a registered BAP and its receiver."""

    def __init__(self, home: Path, database_url: str) -> None:
        self.home = home
        self.beckn_port = free_port()
        self.env = {"DERFLEX_BECKN_BIND": f"127.0.0.1:{self.beckn_port}", "DERFLEX_SCHEDULER": "false",
                    "DERFLEX_DATABASE_URL": database_url}
        self.settings = from_env(self.env, home=home)
        self.db = prepare(self.settings, say=lambda _m: None)
        now = datetime.now(timezone.utc)
        zone = _noon_zone(now)
        self.zone = ZoneInfo(zone)
        self.local_today = now.astimezone(self.zone).date()
        created = int((now - timedelta(days=2)).timestamp())  # windows earlier today are the program's
        spec = {"currency": "USD", "requested_kw": 4.0, "price_cap": 0.4, "incentive": {"kind": "pay_as_clear"},
                "eligible_kinds": ["battery"], "lead_time_s": 3 * 3600}
        every_day = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
        with self.db.transaction() as s:
            for i in range(2):  # batteries whose ratings say what 1 kW is (their controls are a % of them)
                d = edev.register_out_of_band(s, lfdi(f"house-{i}"), created).id
                der.put(s, Scope.operator(), d, DER_ID, CAPABILITY, created)
                der.put(s, Scope.operator(), d, DER_ID, SETTINGS, created)
            self.coming = flex.create_program(s, {**spec, "name": "Coming Peak", "window": {
                "weekdays": every_day, "start": "13:00", "end": "14:00", "tz": zone}}, created)["id"]
            self.past = flex.create_program(s, {**spec, "name": "Morning Peak", "window": {
                "weekdays": every_day, "start": "10:00", "end": "11:00", "tz": zone}}, created)["id"]
            windows.plan_windows(s, int(now.timestamp()), 86_400)
        self.key = self.local_today.isoformat()
        self.bpp_entry = beckn_keys.our_entry(self.settings, now)
        self.receiver_port = free_port()
        self.identity = BapIdentity.generate("bap.outbox.test", f"http://127.0.0.1:{self.receiver_port}/bap")
        beckn_keys.add_to_file_registry(self.settings, self.identity.subscriber())
        self.receiver = CallbackReceiver(self.settings.beckn_subscriber_id, registry_lookup([self.bpp_entry]),
                                         port=self.receiver_port, path="/bap").start()
        self.server: RunningServer | None = None

    def start_server(self, **extra_env: str) -> RunningServer:
        self.server = start_server(self.home, env={**self.env, **extra_env})
        _wait(lambda: _answers(self.beckn_port), 30, f"the BPP did not listen on {self.beckn_port}")
        return self.server

    def kill_server(self) -> None:
        """kill -9 of `derflex serve`; its BPP and workers follow it out (they watch their parent)."""
        assert self.server is not None
        self.server.proc.send_signal(signal.SIGKILL)
        self.server.proc.wait(10)
        _wait(lambda: not _answers(self.beckn_port) and not _answers(self.server.port), 20,
              "the killed server's listeners still answer")
        self.server = None

    def stop(self) -> None:
        self.receiver.stop()
        if self.server is not None and self.server.proc.poll() is None:
            self.server.proc.send_signal(signal.SIGTERM)
            try:
                self.server.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.server.proc.kill()
                self.server.proc.wait(10)
        self.db.dispose()

    def enroll(self, program: int) -> dict:
        client = BapClient(self.identity, self.settings.beckn_subscriber_id, f"http://127.0.0.1:{self.beckn_port}/beckn",
                           key_lookup=registry_lookup([self.bpp_entry]), domain=self.settings.beckn_domain, ttl_s=30)
        bap = Bap(client, self.receiver, timeout=30)
        devices = [DerDevice(lfdi(f"house-{i}"), kind="battery", bid_curve=CURVE) for i in range(2)]
        order = bap.enroll(Customer("Ada", email="ada@example.com", devices=devices), f"program-{program}")
        assert order["status"] == "ACTIVE", order
        return order

    def pushes(self, transaction_id: str) -> list:
        """The on_status callbacks the BAP took in the order's transaction (it never asked for one)."""
        return [c for c in self.receiver.callbacks
                if c.action == "on_status" and c.transaction_id == transaction_id and c.accepted]

    def cli(self, *args: str) -> str:
        env = {**os.environ, **self.env, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
        done = subprocess.run([sys.executable, "-m", "server.cli", "--home", str(self.home), *args],
                              env=env, capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def _wait(predicate, seconds: float, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"{what} (waited {seconds:g} s)")


@pytest.fixture
def world(tmp_path: Path, database) -> Iterator[World]:  # noqa: ANN001
    """The test database (SQLite, or PostgreSQL with DERFLEX_TEST_DATABASE_URL) is the server's."""
    w = World(tmp_path, database.url)
    yield w
    w.stop()


def _local(world: World, hour: int, minute: int = 0) -> int:
    """Today at hour:minute in the world's zone, as UTC seconds."""
    day = world.local_today
    return int(datetime(day.year, day.month, day.day, hour, minute, tzinfo=world.zone).timestamp())


def _crash_and_restart(world: World) -> None:
    """The drainer found the push due and SIGKILLed its process before sending anything; then the
    whole server is killed -9 and a fresh one (no fault) starts."""
    assert world.server is not None
    _wait(lambda: f"{CRASH_ENV}=before-delivery:beckn" in world.server.log.read_text(errors="replace"), 30,
          "the drainer never found the push due")
    time.sleep(1.0)  # on SQLite gunicorn brings the BPP's worker back; its drainer dies again, sending nothing
    world.kill_server()
    world.start_server()


def test_killed_between_a_publish_and_its_push_the_bap_hears_of_it_exactly_once(world: World) -> None:
    world.start_server(**{CRASH_ENV: "before-delivery:beckn"})
    order = world.enroll(world.coming)
    out = publishing.run_window(world.db, world.coming, world.key, int(time.time()))  # committed: the fact with it
    assert out is not None and out["action"] == "publish" and out["devices"] == 2, out
    _crash_and_restart(world)
    assert world.pushes(order["transaction_id"]) == []  # nothing got out before the kill
    push = world.receiver.wait_for(transaction_id=order["transaction_id"], action="on_status", timeout=30)
    assert push.verified and push.message["order"]["id"] == order["order_id"]
    assert {f["state"]["descriptor"]["code"] for f in push.message["order"]["fulfillments"]} == {"EVENT-SCHEDULED"}
    time.sleep(3)  # the drainer and the Beckn worker poll several times more: nothing comes again
    assert len(world.pushes(order["transaction_id"])) == 1
    delivered = json.loads(world.cli("outbox", "list", "--consumer", "beckn", "--json"))["deliveries"]
    assert [(d["consumer"], d["state"], d["fact"]["kind"]) for d in delivered] == [("beckn", "delivered", "window.published")]


def test_killed_between_a_settlement_and_its_push_the_bap_hears_of_it_exactly_once(world: World) -> None:
    world.start_server()
    order = world.enroll(world.past)
    tx = order["transaction_id"]
    # the morning's window, published while it ran (late, before its end) and pushed at once
    out = publishing.run_window(world.db, world.past, world.key, _local(world, 10, 30))
    assert out is not None and out["devices"] == 2, out
    world.receiver.wait_for(transaction_id=tx, action="on_status", timeout=30)
    world.kill_server()
    world.start_server(**{CRASH_ENV: "before-delivery:beckn"})
    settled = settlement.settle_window(world.db, world.past, world.key, int(time.time()))
    assert settled is not None and settled["version"] == 1
    _crash_and_restart(world)
    seen = len(world.pushes(tx))
    assert seen == 1  # the publish's push only

    def settlement_pushes() -> list:
        return [c for c in world.pushes(tx) if any(g["descriptor"]["code"] == "settlement"
                                                   for g in c.message["order"].get("tags") or [])]

    _wait(lambda: settlement_pushes(), 30, "the settlement's on_status never came")
    time.sleep(3)
    [push] = settlement_pushes()
    tags = {t["descriptor"]["code"]: t["value"] for g in push.message["order"]["tags"] for t in g["list"]}
    assert tags["window"] == world.key and tags["version"] == "1"
    assert len(world.pushes(tx)) == 2  # the publish's and the settlement's, each once


def test_a_bap_that_answers_500_all_along_leaves_a_dead_letter_that_a_replay_delivers(world: World) -> None:
    world.start_server(DERFLEX_OUTBOX_RETRY_SECONDS="1,1")  # a push is tried for 2 s, then dead
    order = world.enroll(world.coming)
    tx = order["transaction_id"]
    world.receiver.fail_next("500", count=10_000)
    publishing.run_window(world.db, world.coming, world.key, int(time.time()))

    def dead() -> list:
        return json.loads(world.cli("outbox", "list", "--state", "dead", "--json"))["deliveries"]

    _wait(lambda: dead(), 60, "the push never became a dead letter")
    [letter] = dead()
    assert letter["consumer"] == "beckn" and letter["fact"]["kind"] == "window.published"
    assert "on_status to http://127.0.0.1" in letter["last_error"] and "HTTP 500" in letter["last_error"]
    refused = [c for c in world.receiver.callbacks if c.transaction_id == tx and c.action == "on_status"]
    assert len(refused) >= 2 and all(c.status == 500 for c in refused)  # retried, never taken
    assert json.loads(world.cli("outbox", "stats", "--json"))["consumers"][0]["dead"] == 1

    world.receiver.clear_faults()  # the BAP is back
    assert "is due again" in world.cli("outbox", "replay", str(letter["id"]))
    push = world.receiver.wait_for(transaction_id=tx, action="on_status", timeout=30)
    assert push.message_id not in {c.message_id for c in refused}  # a fresh on_status, not the expired one
    time.sleep(3)
    assert len(world.pushes(tx)) == 1
    [after] = json.loads(world.cli("outbox", "list", "--consumer", "beckn", "--json"))["deliveries"]
    assert (after["id"], after["state"], after["replays"]) == (letter["id"], "delivered", 1)
