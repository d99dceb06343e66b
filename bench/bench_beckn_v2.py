"""bench_beckn.py --version 2.0: the same benchmark over Beckn v2.0.0 LTS (`/beckn/v2/{action}`).

Everything is bench_beckn.py's (set-up, open-loop schedule, burst, callback accounting, CPU, the
report); what differs is what goes over the wire:

  * the order's meters are --order-devices batteries that reported their ratings (a v2 contract's
    bid is sized by them); the contract is made by our v2 BAP (der_sim.bap_v2): discover →
    select → init → confirm with a block bid, and its status asked once;
  * the load's "search" is a signed v2 `discover` (textSearch "Peak Saver": one catalog with the
    program's Resource), its "status" a v2 `status` of the contract; each is answered by a
    counter-signed Ack (200) whose signature is NOT verified by the load (the BAP's verification
    costs the load generator's CPU, not the server's; tests/api/test_beckn_v2.py checks it);
  * callbacks are `on_discover` (one resource expected) and `on_status` (contract ACTIVE), received
    by the same CallbackReceiver in v2 mode (it verifies our signature and answers counter-signed
    Acks).

    .venv/bin/python bench/bench_beckn.py --version 2.0 --postgres postgresql://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import base64
import json
import threading
import time
from typing import Any

from cryptography.hazmat.primitives import serialization

from bench_beckn import HOST, Bench, Load, Sent, _lfdi, _say

CALLBACK_OF_V2 = {"search": "on_discover", "status": "on_status"}
DISCOVER_MESSAGE = {"intent": {"textSearch": "Peak Saver"}}
BID = [([0.10, 0.20, 0.30], [1.0, 1.0, 1.0])]  # per interval of the program's window (it has one: 16-21h)


class V2Load(Load):
    """The v2 requests: discover, and status of the contract."""

    def one(self, r: Sent) -> Sent:
        from der_sim.bap import BapNetworkError

        client = self._client()
        r.thread = threading.current_thread().name
        r.start = time.monotonic()
        try:
            if r.action == "search":
                reply = client.send("discover", DISCOVER_MESSAGE, message_id=r.message_id)
            else:
                reply = client.send("status", {"contract": {"id": self.order_id, "commitments": [{"id": "status"}]}},
                                    transaction_id=self.order_tx, message_id=r.message_id)
            r.status, r.ack = reply.status, reply.ack
            if not reply.ok:
                r.error = json.dumps(reply.error)[:200] if reply.error else f"HTTP {reply.status} {reply.ack}"
        except BapNetworkError as exc:
            r.error = f"network: {exc}"[:200]
        except Exception as exc:  # counted, never fatal to the schedule
            r.error = f"{type(exc).__name__}: {exc}"[:200]
        r.end = time.monotonic()
        return r


class V2Bench(Bench):
    callback_of = CALLBACK_OF_V2
    load_class = V2Load

    def setup(self) -> None:
        super().setup()
        from server.db.session import Database
        from server.services.sep2 import der
        from server.services.sep2.der import DER_ID
        from server.scope import Scope
        from tests.builders import CAPABILITY, SETTINGS

        self.result["beckn_version"] = "2.0.0"
        db = Database(self.settings.db_url)
        now = int(time.time())
        try:
            with db.transaction() as s:  # the contract's meters report a 5 kW battery's ratings
                from server.db.models import Device
                for i in range(min(self.args.order_devices, self.args.devices)):
                    device = s.query(Device).filter(Device.lfdi == _lfdi(f"bench-house-{i}")).one()
                    der.put(s, Scope.operator(), device.id, DER_ID, CAPABILITY, now)
                    der.put(s, Scope.operator(), device.id, DER_ID, SETTINGS, now)
        finally:
            db.dispose()

    def start_receiver(self) -> None:
        from bench_beckn import RemoteReceiver
        from server.beckn.registry import subscriber_json

        raw = self.identity.private_key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                                      serialization.NoEncryption())
        v2_key = (self.identity.subscriber_id, self.identity.unique_key_id, base64.b64encode(raw).decode())
        lifetime = self.args.seconds + self.args.burst * 0.5 + 3 * self.args.drain_timeout + 600
        self.receiver = RemoteReceiver(self.settings.beckn_subscriber_id, subscriber_json(self.bpp_entry),
                                       self.receiver_port, lifetime, v2_key=v2_key)

    def make_client(self, timeout: float = 10.0) -> Any:
        from der_sim.bap_v2 import BapV2Client

        return BapV2Client(self.identity, self.settings.beckn_subscriber_id, f"http://{HOST}:{self.beckn_port}/beckn/v2",
                           ttl_s=self.args.ttl, timeout=timeout)

    def enroll(self) -> None:
        from der_sim.bap_v2 import BapV2, cleared

        assert self.receiver is not None
        bap = BapV2(self.make_client(), self.receiver, timeout=30)  # type: ignore[arg-type]
        t0 = time.monotonic()
        [catalog] = bap.discover("Peak Saver")
        [resource] = catalog["resources"]
        need = resource["resourceAttributes"]
        period = (need["intervalPeriod"]["start"], need["intervalPeriod"]["duration"])
        n = min(self.args.order_devices, self.args.devices)
        got = bap.enroll(self.program, [_lfdi(f"bench-house-{i}") for i in range(n)], seller="bench-customer",
                         bid=BID * len(need["intervals"]), period=period, currency="USD")
        contract = got["contract"]
        if contract["status"]["code"] != "ACTIVE":
            raise RuntimeError(f"the contract is not ACTIVE: {contract['status']}")
        status = bap.status(contract["id"], got["transaction_id"])
        self.order_id, self.order_tx = contract["id"], got["transaction_id"]
        self.result["order"] = {"id": self.order_id, "devices": n, "status": status["status"]["code"],
                                "resource": resource["id"], "cleared": cleared(contract),
                                "setup_s": round(time.monotonic() - t0, 2)}
        _say(f"contract {self.order_id[:12]}… ACTIVE with {n} meters, cleared {cleared(contract)}; "
             f"discover + select + init + confirm + status in {time.monotonic() - t0:.2f} s")
