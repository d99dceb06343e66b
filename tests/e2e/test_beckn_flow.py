"""The Beckn facade end to end: a real `derflex serve` (its BPP listener), a real BAP (der_sim.bap)
with a real HTTP callback receiver verifying our signatures. Search → select → init → confirm →
status → update → cancel → rating; a BAP that fails twice gets its callback exactly once more; a
server killed with a callback pending delivers it after its restart."""

from __future__ import annotations

import hashlib
import json
import socket
import urllib.request
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from der_sim.bap import Bap, BapCallbackError, BapClient, BapIdentity, Customer, DerDevice, registry_lookup
from der_sim.bap_receiver import CallbackReceiver
from server.bootstrap import prepare
from server.config import from_env
from server.services.bpp import keys as beckn_keys
from server.services.sep2 import edev
from server.services.flex import enrollments, programs as flex
from tests.e2e.conftest import RunningServer, free_port, start_server, stop_server

pytestmark = pytest.mark.e2e

PROGRAM = {"name": "Peak Saver", "currency": "USD", "description": "Peak Saver",
           "window": {"weekdays": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "start": "16:00",
                      "end": "21:00", "tz": "America/Los_Angeles"},
           "requested_kw": 50.0, "price_cap": 0.4, "incentive": {"kind": "pay_as_clear"},
           "eligible_kinds": ["battery", "ev_charger"], "lead_time_s": 3600}


def lfdi(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:40].upper()


class World:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.beckn_port = free_port()
        self.env = {"DERFLEX_BECKN_BIND": f"127.0.0.1:{self.beckn_port}", "DERFLEX_SCHEDULER": "false"}
        self.settings = from_env(self.env, home=home)
        db = prepare(self.settings, say=lambda _m: None)
        now = int(time.time())
        with db.transaction() as s:
            for i in range(4):
                edev.register_out_of_band(s, lfdi(f"house-{i}"), now)
            self.program = flex.create_program(s, PROGRAM, now)["id"]
        self.db = db
        self.bpp_entry = beckn_keys.our_entry(self.settings, datetime.now(timezone.utc))
        self.receiver_port = free_port()
        self.identity = BapIdentity.generate("bap.test.local", f"http://127.0.0.1:{self.receiver_port}/bap")
        beckn_keys.add_to_file_registry(self.settings, self.identity.subscriber())
        self.server: RunningServer | None = None
        self.receiver: CallbackReceiver | None = None

    def start_receiver(self) -> CallbackReceiver:
        self.receiver = CallbackReceiver(self.settings.beckn_subscriber_id, registry_lookup([self.bpp_entry]),
                                         port=self.receiver_port, path="/bap").start()
        return self.receiver

    def start_server(self) -> None:
        env = {**self.env}
        self.server = start_server(self.home, env=env)
        # start_server gives the BPP a port of its own; our BAP must use the one we fixed
        _wait_port(self.beckn_port)

    def bap(self, ttl_s: int = 30) -> Bap:
        client = BapClient(self.identity, self.settings.beckn_subscriber_id,
                           f"http://127.0.0.1:{self.beckn_port}/beckn", key_lookup=registry_lookup([self.bpp_entry]),
                           domain=self.settings.beckn_domain, ttl_s=ttl_s)
        assert self.receiver is not None
        return Bap(client, self.receiver, timeout=20)


def _wait_port_free(port: int, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                time.sleep(0.2)
        except OSError:
            return
    raise AssertionError(f"port {port} still answers {seconds} s after its server was killed")


def _wait_port(port: int, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listens on {port}")


@pytest.fixture
def world(tmp_path: Path):  # noqa: ANN201
    w = World(tmp_path)
    w.start_receiver()
    w.start_server()
    yield w
    if w.receiver is not None:
        w.receiver.stop()
    if w.server is not None and w.server.proc.poll() is None:
        assert stop_server(w.server) == 0, w.server.log.read_text()
    w.db.dispose()


def test_search_enroll_status_update_cancel_rating(world: World) -> None:
    bap = world.bap()
    found = bap.search(device_kind="battery")
    (item,) = found["items"]
    assert item["id"] == f"program-{world.program}" and item["descriptor"]["name"] == "Peak Saver"
    assert bap.search(text="no such program")["items"] == []

    devices = [DerDevice(lfdi(f"house-{i}"), kind="battery") for i in range(3)]
    order = bap.enroll(Customer("Ada", email="ada@example.com", devices=devices), item["id"])
    assert order["order_id"] and order["status"] == "ACTIVE" and order["payments"]
    with world.db.transaction() as s:
        enrolled = enrollments.list_enrollments(s, world.program)["enrollments"]
    assert sorted(e["state"] for e in enrolled) == ["active"] * 3
    assert {e["external_ref"] for e in enrolled} == {order["order_id"]}

    tx = order["transaction_id"]
    status = bap.status(order["order_id"], tx)["message"]["order"]
    assert [f["state"]["descriptor"]["code"] for f in status["fulfillments"]] == ["ENROLLED"] * 3

    url = bap.track(order["order_id"], tx)["message"]["tracking"]["url"]
    with urllib.request.urlopen(url, timeout=5) as resp:  # the live view the BAP can show its customer
        tracked = json.loads(resp.read())["order"]
    assert tracked["id"] == order["order_id"] and tracked["status"] == "ACTIVE" and len(tracked["fulfillments"]) == 3

    bap.update(order["order_id"], tx, devices[:2])  # the third device leaves
    with world.db.transaction() as s:
        states = {e["device_id"]: e["state"] for e in enrollments.list_enrollments(s, world.program)["enrollments"]}
    assert sorted(states.values()) == ["active", "active", "cancelled"]

    cancelled = bap.cancel(order["order_id"], tx)["message"]["order"]
    assert cancelled["status"] == "CANCELLED"
    with world.db.transaction() as s:
        assert {e["state"] for e in enrollments.list_enrollments(s, world.program)["enrollments"]} == {"cancelled"}
    with pytest.raises(BapCallbackError) as err:
        bap.cancel(order["order_id"], tx)
    assert err.value.code == "50001"  # cancellation not possible: it is cancelled already
    bap.rating([(order["order_id"], "Order", 4.5)], tx)
    with pytest.raises(BapCallbackError) as err:
        bap.rating([(order["order_id"], "Order", 7)], tx)
    assert err.value.code == "30015"
    # every callback came signed by the BPP and verified; none was refused
    assert world.receiver is not None and world.receiver.failures == []


def test_a_bap_that_fails_twice_gets_the_callback_exactly_once_more(world: World) -> None:
    bap = world.bap()
    assert world.receiver is not None
    world.receiver.fail_next("500", count=2)
    out = bap.call("get_rating_categories", None)  # retried after 1 s and 2 s, then taken
    attempts = [c for c in world.receiver.callbacks if c.message_id == out["message_id"]]
    assert [c.status for c in attempts] == [500, 500, 200]
    time.sleep(2.5)  # nothing more comes: delivered means delivered
    assert len([c for c in world.receiver.callbacks if c.message_id == out["message_id"]]) == 3


def test_callbacks_pending_when_the_server_dies_are_delivered_after_its_restart(world: World) -> None:
    assert world.receiver is not None and world.server is not None
    bap = world.bap(ttl_s=300)
    world.receiver.stop()  # the BAP is away: the callback cannot be delivered
    reply = bap.client.send("get_cancellation_reasons", None)
    assert reply.ok
    time.sleep(1.0)
    world.server.proc.kill()  # no clean shutdown
    world.server.proc.wait(10)
    _wait_port_free(world.beckn_port)
    receiver = world.start_receiver()
    world.start_server()
    cb = receiver.wait_for(message_id=reply.message_id, action="cancellation_reasons", timeout=30)
    assert cb.verified and cb.error is None
    # delivered by the new server: the killed one's BPP followed its parent out and freed the port
    assert world.server is not None and "Address already in use" not in world.server.log.read_text()
    reasons = cb.message["cancellation_reasons"]
    assert {r["id"] for r in reasons} >= {"1", "2", "3"}
