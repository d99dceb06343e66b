"""The BAP library (`der_sim.bap`, `der_sim.bap_receiver`) over real loopback HTTP.

- The CallbackReceiver is a real server; the tests post callbacks to it themselves, signed with a
  BPP key made here by `server.beckn.signing` (good, tampered, wrong key, expired, missing…).
- The BapClient and the flows talk to `StandInBpp`: a tiny HTTP server in this file that STANDS IN
  for our BPP (whose real endpoints are being written elsewhere). It verifies each request's
  signature over the exact bytes received, validates the context with `server.beckn.envelope`,
  answers ACK/NACK and posts signed callbacks the way docs/beckn.md describes. It is the only
  stand-in; nothing is mocked.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from der_sim.bap import (
    Bap,
    BapCallbackError,
    BapClient,
    BapIdentity,
    BapNack,
    BapNetworkError,
    BapTimeout,
    Customer,
    DerDevice,
    registry_lookup,
)
from der_sim.bap_receiver import CallbackReceiver, CallbackTimeout
from server.beckn import envelope, registry, signing
from server.beckn.context import VERSION, Context, callback_context, unsolicited_context
from server.beckn.timefmt import parse_duration, parse_timestamp

BPP_ID = "bpp.derflex.test"
BAP_ID = "bap.derflex.test"
LFDI = "0123456789ABCDEF0123456789ABCDEF01234567"
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def new_key(subscriber_id: str = BPP_ID, key_id: str = "k1") -> signing.SigningKey:
    return BapIdentity.generate(subscriber_id, "http://127.0.0.1/x", key_id).signing_key


def entry(key: signing.SigningKey, kind: str = "BPP") -> registry.Subscriber:
    return registry.Subscriber(key.subscriber_id, key.unique_key_id, kind,
                               signing.public_key_b64(key.private_key))


def post(url: str, body: bytes, headers: dict[str, str] | None = None,
         timeout: float = 5.0) -> tuple[int, dict[str, str], dict[str, Any]]:
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with _NO_PROXY.open(request, timeout=timeout) as r:
            return r.status, dict(r.headers), json.loads(r.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, dict(exc.headers), json.loads(exc.read())


def callback(action: str = "on_select", *, tx: str = "tx-1", message_id: str | None = None,
             message: dict[str, Any] | None = None, error: dict[str, Any] | None = None,
             bpp_id: str = BPP_ID) -> tuple[str, bytes]:
    """A callback body as our BPP renders it; returns (message_id, bytes)."""
    mid = message_id or str(uuid.uuid4())
    ctx = Context(domain="deg:flex", location=None, action=action, version=VERSION, bap_id=BAP_ID,
                  bap_uri="http://127.0.0.1/bap", bpp_id=bpp_id, bpp_uri="http://127.0.0.1/bpp",
                  transaction_id=tx, message_id=mid, timestamp=datetime.now(UTC), ttl=parse_duration("PT30S"))
    return mid, envelope.render(envelope.callback_body(ctx, message if message is not None else {"order": {}}, error))


def signed(body: bytes, key: signing.SigningKey, *, now: datetime | None = None) -> dict[str, str]:
    return {"Authorization": signing.authorization_header(body, key, now=now or datetime.now(UTC))}


@pytest.fixture()
def bpp_key() -> signing.SigningKey:
    return new_key()


@pytest.fixture()
def receiver(bpp_key: signing.SigningKey) -> Iterator[CallbackReceiver]:
    with CallbackReceiver(BPP_ID, registry_lookup([entry(bpp_key)]), lifetime_s=120) as r:
        yield r


# ------------------------------------------------------------------------------ the receiver


def test_a_verified_callback_is_acked_and_recorded(receiver: CallbackReceiver, bpp_key: signing.SigningKey) -> None:
    mid, body = callback(message={"order": {"id": "o-1"}})
    status, _, answer = post(f"{receiver.url}/on_select", body, signed(body, bpp_key))
    assert (status, answer) == (200, {"message": {"ack": {"status": "ACK"}}})
    cb = receiver.wait_for(message_id=mid, action="on_select", timeout=2)
    assert cb.verified and cb.accepted and cb.failure is None and cb.status == 200
    assert cb.message == {"order": {"id": "o-1"}} and cb.transaction_id == "tx-1" and cb.error is None
    assert receiver.failures == []


def test_meta_callbacks_and_business_errors_are_recorded(receiver: CallbackReceiver,
                                                         bpp_key: signing.SigningKey) -> None:
    mid, body = callback("rating_categories", message={"rating_categories": [{"category": "Order"}]})
    assert post(f"{receiver.url}/rating_categories", body, signed(body, bpp_key))[0] == 200
    assert receiver.wait_for(message_id=mid, timeout=2).action == "rating_categories"
    err = {"code": "30010", "message": "order not found"}
    mid, body = callback("on_status", error=err)
    assert post(f"{receiver.url}/on_status", body, signed(body, bpp_key))[0] == 200
    assert receiver.wait_for(message_id=mid, timeout=2).error == err


@pytest.mark.parametrize("case, reason", [
    ("tampered", "bad_signature"), ("wrong_key", "bad_signature"), ("expired", "expired"),
    ("missing", "missing"), ("other_subscriber", "subscriber_mismatch"), ("unknown_key", "unknown_key"),
    ("future", "created_in_future"),
])
def test_bad_signatures_are_refused_with_401_and_recorded(receiver: CallbackReceiver, bpp_key: signing.SigningKey,
                                                          case: str, reason: str) -> None:
    mid, body = callback()
    now = datetime.now(UTC)
    headers = {
        "tampered": signed(body, bpp_key),
        "wrong_key": signed(body, new_key()),
        "expired": signed(body, bpp_key, now=now - timedelta(seconds=120)),
        "missing": {},
        "other_subscriber": signed(body, new_key("intruder.test")),
        "unknown_key": signed(body, new_key(key_id="k-unknown")),
        "future": signed(body, bpp_key, now=now + timedelta(seconds=120)),
    }[case]
    sent = body.replace(b'"order":{}', b'"order":{"id":"forged"}') if case == "tampered" else body
    assert sent != body or case != "tampered"
    status, headers_back, answer = post(f"{receiver.url}/on_select", sent, headers)
    assert status == 401 and answer["message"]["ack"]["status"] == "NACK"
    assert headers_back["WWW-Authenticate"].startswith('Signature realm="bap"')
    [failure] = receiver.failures
    assert (failure.failure, failure.verified, failure.status, failure.message_id) == (reason, False, 401, mid)
    with pytest.raises(CallbackTimeout):
        receiver.wait_for(message_id=mid, timeout=0.1)  # never offered as a real callback
    assert receiver.wait_for(message_id=mid, accepted_only=False, timeout=0).failure == reason


@pytest.mark.parametrize("path_action, bpp_id", [("on_init", BPP_ID), ("on_select", "another.bpp")])
def test_a_signed_body_that_is_not_a_valid_callback_is_400(receiver: CallbackReceiver, bpp_key: signing.SigningKey,
                                                           path_action: str, bpp_id: str) -> None:
    _, body = callback("on_select", bpp_id=bpp_id)
    status, _, answer = post(f"{receiver.url}/{path_action}", body, signed(body, bpp_key))
    assert status == 400 and answer["error"]["code"] == "30000"
    assert [c.failure for c in receiver.failures] == ["envelope"]


def test_unknown_paths_are_404(receiver: CallbackReceiver, bpp_key: signing.SigningKey) -> None:
    _, body = callback()
    for path in ("/bap/select", "/bap/on_nothing", "/on_select", "/bap/on_select/x"):
        assert post(f"http://127.0.0.1:{receiver.port}{path}", body, signed(body, bpp_key))[0] == 404
    assert receiver.callbacks == []


def test_fault_modes_500_and_nack_then_ack(receiver: CallbackReceiver, bpp_key: signing.SigningKey) -> None:
    receiver.fail_next("500", 2)
    receiver.fail_next("nack")
    mid, body = callback()
    answers = [post(f"{receiver.url}/on_select", body, signed(body, bpp_key)) for _ in range(4)]
    assert [a[0] for a in answers] == [500, 500, 200, 200]
    assert [a[2]["message"]["ack"]["status"] for a in answers[2:]] == ["NACK", "ACK"]
    assert [c.fault for c in receiver.callbacks] == ["500", "500", "nack", None]
    assert receiver.wait_for(message_id=mid, timeout=1).seq == 4  # only the ACKed delivery counts


def test_hang_mode_makes_the_sender_time_out_and_stop_releases_it(bpp_key: signing.SigningKey) -> None:
    with CallbackReceiver(BPP_ID, registry_lookup([entry(bpp_key)]), lifetime_s=60) as r:
        r.fail_next("hang", 1, hang_s=30)
        mid, body = callback()
        started = time.monotonic()
        with pytest.raises((TimeoutError, urllib.error.URLError)):  # the read (or connect) timed out
            post(f"{r.url}/on_select", body, signed(body, bpp_key), timeout=0.3)
        assert time.monotonic() - started < 5
        assert post(f"{r.url}/on_select", body, signed(body, bpp_key))[0] == 200  # the next one is served
        assert [c.fault for c in r.callbacks] == ["hang", None]
        started = time.monotonic()
    assert time.monotonic() - started < 5  # stop() did not wait for the 30 s hang


def test_wait_for_times_out_cleanly(receiver: CallbackReceiver) -> None:
    started = time.monotonic()
    with pytest.raises(CallbackTimeout, match="message_id=nope"):
        receiver.wait_for(message_id="nope", timeout=0.3)
    assert 0.25 < time.monotonic() - started < 2


def test_unsolicited_callbacks_are_found_by_transaction(receiver: CallbackReceiver,
                                                        bpp_key: signing.SigningKey) -> None:
    mine, body = callback("on_status", tx="tx-9")
    post(f"{receiver.url}/on_status", body, signed(body, bpp_key))
    push, body = callback("on_status", tx="tx-9", message={"order": {"id": "o-9", "status": "ACTIVE"}})
    post(f"{receiver.url}/on_status", body, signed(body, bpp_key))
    cb = receiver.wait_unsolicited("tx-9", sent_message_ids={mine}, timeout=2)
    assert cb.message_id == push and cb.message == {"order": {"id": "o-9", "status": "ACTIVE"}}


def test_the_receiver_stops_by_itself_and_wakes_waiters(bpp_key: signing.SigningKey) -> None:
    r = CallbackReceiver(BPP_ID, registry_lookup([entry(bpp_key)]), lifetime_s=0.3).start()
    started = time.monotonic()
    with pytest.raises(CallbackTimeout, match="stopped"):
        r.wait_for(message_id="x", timeout=10)
    assert time.monotonic() - started < 3 and not r.running
    r.stop()  # idempotent


def test_registry_lookup_reads_a_registry_file(tmp_path: Path, bpp_key: signing.SigningKey) -> None:
    path = tmp_path / "registry.json"
    lookup = registry_lookup(path)
    assert lookup(BPP_ID, "k1") is None  # no file yet
    ident = BapIdentity.generate(BAP_ID, "http://127.0.0.1:9/bap")
    expired = registry.Subscriber(BPP_ID, "old", "BPP", signing.public_key_b64(new_key().private_key),
                                  valid_until=datetime.now(UTC) - timedelta(days=1))
    path.write_text(json.dumps(registry.registry_file([entry(bpp_key), ident.subscriber(), expired])))
    assert lookup(BPP_ID, "k1") == signing.public_key_b64(bpp_key.private_key)
    assert lookup(BAP_ID, "k1") == ident.registry_entry()["signing_public_key"]
    assert lookup(BPP_ID, "old") is None and lookup("x", "k1") is None
    assert ident.registry_entry()["type"] == "BAP" and ident.registry_entry()["url"] == "http://127.0.0.1:9/bap"
    again = BapIdentity.from_b64(BAP_ID, "k1", ident.private_key_b64(), ident.bap_uri)
    assert again.registry_entry() == ident.registry_entry()


# --------------------------------------------------------------------- the stand-in for our BPP


class StandInBpp:
    """STAND-IN for our BPP: verifies signatures over the exact bytes, validates the context with
    server.beckn, answers ACK (or 401/400 NACK), then posts a signed callback per docs/beckn.md."""

    def __init__(self, bap_keys: list[registry.Subscriber]) -> None:
        self.key = new_key()
        self.lookup = registry_lookup(bap_keys)
        self.requests: list[tuple[str, bytes, Any]] = []  # (action, raw body, parsed Request)
        self.hang_s = 0.0
        self.callbacks = True
        self.failed_posts: list[OSError] = []
        self._threads: list[threading.Thread] = []
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                stand_in._serve(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.uri = f"http://127.0.0.1:{self.server.server_address[1]}/beckn"
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        for t in self._threads:
            t.join(timeout=5)

    def _serve(self, h: BaseHTTPRequestHandler) -> None:
        action = h.path.removeprefix("/beckn/")
        raw = h.rfile.read(int(h.headers["Content-Length"]))
        now = datetime.now(UTC)
        try:
            bap_id = json.loads(raw)["context"]["bap_id"]
            signing.verify(h.headers.get("Authorization"), raw, now=now, key_lookup=self.lookup,
                           expected_subscriber=bap_id)
        except signing.SignatureError as exc:
            return self._answer(h, 401, envelope.nack("30000", f"signature: {exc.reason}"))
        try:
            req = envelope.parse_request(raw, action=action, bpp_id=BPP_ID, now=now, domains={"deg:flex"})
        except envelope.BecknError as exc:
            return self._answer(h, 400, envelope.nack_for(exc))
        self.requests.append((action, raw, req))
        if self.hang_s:
            time.sleep(self.hang_s)
        self._answer(h, 200, envelope.ack())
        if self.callbacks:
            t = threading.Thread(target=self._callback, args=(req,))
            self._threads.append(t)
            t.start()

    @staticmethod
    def _answer(h: BaseHTTPRequestHandler, status: int, body: dict[str, Any]) -> None:
        data = envelope.render(body)
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def push_status(self, req: Any, order: dict[str, Any]) -> None:
        ctx = unsolicited_context(req.context, action="on_status", message_id=str(uuid.uuid4()),
                                  now=datetime.now(UTC), bpp_id=BPP_ID, bpp_uri=self.uri, ttl=parse_duration("PT30S"))
        self._post(ctx, {"order": order}, None)

    def _callback(self, req: Any) -> None:
        message, error = self.answer(req.context.action, req.message, req.context.transaction_id)
        ctx = callback_context(req.context, now=datetime.now(UTC), bpp_id=BPP_ID, bpp_uri=self.uri)
        self._post(ctx, message, error)

    def _post(self, ctx: Context, message: dict[str, Any] | None, error: dict[str, Any] | None) -> None:
        body = envelope.render(envelope.callback_body(ctx, message, error))
        try:
            post(f"{ctx.bap_uri}/{ctx.action}", body, signed(body, self.key))
        except OSError as exc:  # the BAP went away (a test ended): a real BPP would retry
            self.failed_posts.append(exc)

    @staticmethod
    def answer(action: str, msg: dict[str, Any], tx: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
        order = msg.get("order") or {}
        items = order.get("items") or [{}]
        if action in ("select", "init", "confirm") and items[0].get("id") != "program-1":
            return {}, envelope.error_object("30004", "no such program", "message.order.items[0].id")
        if action == "search":
            item = {"id": "program-1", "descriptor": {"name": "Evening peak"}, "tags": [{
                "descriptor": {"code": "program"}, "list": [{"descriptor": {"code": "requested-kw"}, "value": "50"}]}]}
            return {"catalog": {"providers": [{"id": BPP_ID, "items": [item],
                                               "fulfillments": [{"id": "window-1", "type": "PEAK-WINDOW"}]}]}}, None
        if action == "select":
            return {"order": {**order, "quote": {"price": {"currency": "EUR", "value": "1.20"}}}}, None
        if action == "init":
            return {"order": {**order, "id": f"draft-{tx}", "payments": [{"collected_by": "BPP", "type": "POST-FULFILLMENT"}],
                              "cancellation_terms": [{"cancel_by": {"duration": "PT0S"}}]}}, None
        if action == "confirm":
            fulfillments = [{**f, "id": f"ful-{i}", "state": {"descriptor": {"code": "ENROLLED"}}}
                            for i, f in enumerate(order["fulfillments"])]
            return {"order": {**order, "id": f"order-{tx}", "status": "ACTIVE", "fulfillments": fulfillments}}, None
        if action in ("status", "cancel", "track", "support", "rating", "update"):
            if action != "rating" and msg.get("order_id", (msg.get("order") or {}).get("id", "")) == "missing":
                return {}, envelope.error_object("30010", "order not found")
            return {"echo": msg}, None
        return {"rating_categories": [{"category": "Order"}]}, None  # get_rating_categories


@pytest.fixture()
def ident() -> BapIdentity:
    return BapIdentity.generate(BAP_ID, "http://127.0.0.1:1/bap")  # uri set once the receiver runs


@pytest.fixture()
def bpp(ident: BapIdentity) -> Iterator[StandInBpp]:
    s = StandInBpp([ident.subscriber()])
    yield s
    s.close()


@pytest.fixture()
def bap(ident: BapIdentity, bpp: StandInBpp) -> Iterator[Bap]:
    with CallbackReceiver(BPP_ID, registry_lookup([entry(bpp.key)]), lifetime_s=120) as r:
        client = BapClient(ident.with_uri(r.url), BPP_ID, bpp.uri, domain="deg:flex", country="IND",
                           city="std:080", timeout=5)
        yield Bap(client, r, timeout=5)


def test_the_client_signs_exactly_what_it_sends_with_a_full_context(bap: Bap, bpp: StandInBpp) -> None:
    before = datetime.now(UTC) - timedelta(seconds=1)
    r1 = bap.client.send("select", {"order": {"items": [{"id": "program-1"}]}}, transaction_id="tx-a")
    r2 = bap.client.send("init", {"order": {"items": [{"id": "program-1"}]}}, transaction_id="tx-a")
    assert (r1.status, r1.ack, r1.ok, r2.ok) == (200, "ACK", True, True)
    (a1, raw1, req1), (a2, raw2, req2) = bpp.requests
    assert (a1, a2) == ("select", "init")
    sent = json.loads(raw1)["context"]
    assert sent == r1.context  # the reply carries the context that went over the wire
    assert {k: sent[k] for k in ("action", "version", "bap_id", "bap_uri", "bpp_id", "bpp_uri", "transaction_id",
                                 "ttl", "domain")} == {
        "action": "select", "version": "1.1.0", "bap_id": BAP_ID, "bap_uri": bap.receiver.url, "bpp_id": BPP_ID,
        "bpp_uri": bpp.uri, "transaction_id": "tx-a", "ttl": "PT30S", "domain": "deg:flex"}
    assert sent["location"] == {"country": {"code": "IND"}, "city": {"code": "std:080"}}
    assert before <= parse_timestamp(sent["timestamp"]) <= datetime.now(UTC) + timedelta(seconds=1)
    assert req1.context.message_id != req2.context.message_id and req2.context.transaction_id == "tx-a"
    assert uuid.UUID(r1.message_id) and r1.transaction_id == "tx-a"
    for reply, action in ((r1, "on_select"), (r2, "on_init")):  # and the BPP's answers come back
        assert bap.receiver.wait_for(message_id=reply.message_id, timeout=3).action == action


def test_a_bpp_refusal_comes_back_as_a_nack(bap: Bap, bpp: StandInBpp) -> None:
    stranger = BapClient(BapIdentity.generate(BAP_ID, bap.receiver.url), BPP_ID, bpp.uri, domain="deg:flex")
    reply = stranger.send("status", {"order_id": "o-1"})  # same bap_id, key not in the registry
    assert (reply.status, reply.ack, reply.ok) == (401, "NACK", False) and "bad_signature" in reply.error["message"]
    wrong_domain = BapClient(bap.client.identity, BPP_ID, bpp.uri, domain="other")
    reply = wrong_domain.send("status", {"order_id": "o-1"})
    assert (reply.status, reply.error["path"]) == (400, "context.domain")
    with pytest.raises(BapNack, match="HTTP 400 NACK 30000"):
        Bap(wrong_domain, bap.receiver).status("o-1", "tx-1")
    assert bpp.requests == []


def test_meta_requests_carry_no_message(bap: Bap, bpp: StandInBpp) -> None:
    out = bap.rating_categories()
    assert out["action"] == "rating_categories" and out["message"] == {"rating_categories": [{"category": "Order"}]}
    assert "message" not in json.loads(bpp.requests[0][1])


def test_network_errors_and_timeouts_raise_bap_network_error(bap: Bap, bpp: StandInBpp) -> None:
    closed = StandInBpp([])
    closed.close()
    client = BapClient(bap.client.identity, BPP_ID, closed.uri, domain="deg:flex", timeout=1)
    with pytest.raises(BapNetworkError, match="select to http://127.0.0.1"):
        client.send("select", {"order": {}})
    bpp.hang_s = 1.0
    slow = BapClient(bap.client.identity, BPP_ID, bpp.uri, domain="deg:flex", timeout=0.2)
    with pytest.raises(BapNetworkError, match="timed out"):
        slow.send("status", {"order_id": "o-1"})


def test_search_sends_the_documented_intent_and_reads_the_catalog(bap: Bap, bpp: StandInBpp) -> None:
    out = bap.search(text="peak", device_kind="battery", area_code="feeder-7")
    intent = bpp.requests[0][2].message["intent"]
    assert intent == {"descriptor": {"name": "peak"}, "category": {"descriptor": {"code": "demand-flexibility"}},
                      "fulfillment": {"tags": [{"descriptor": {"code": "der"}, "list": [
                          {"descriptor": {"code": "device-kind"}, "value": "battery"}]}],
                          "stops": [{"location": {"area_code": "feeder-7"}}]}}
    assert [i["id"] for i in out["items"]] == ["program-1"] and out["items"][0]["program"] == {"requested-kw": "50"}
    assert out["provider"]["id"] == BPP_ID and out["fulfillments"][0]["type"] == "PEAK-WINDOW"


def test_enroll_runs_select_init_confirm_in_one_transaction(bap: Bap, bpp: StandInBpp) -> None:
    device = DerDevice(LFDI, kind="battery", grid_node="feeder-7", bid_curve=[{"price": 0.08, "powerKW": -5}],
                       objectives={"reduceKW": 3})
    out = bap.enroll(Customer("Asha", email="asha@example.org"), "program-1", [device], capacity_kw=5)
    assert [a for a, _, _ in bpp.requests] == ["select", "init", "confirm"]
    assert len({req.context.transaction_id for _, _, req in bpp.requests}) == 1
    select, init, confirm = (req.message["order"] for _, _, req in bpp.requests)
    assert select == {"provider": {"id": BPP_ID}, "items": [
        {"id": "program-1", "quantity": {"selected": {"measure": {"value": 5, "unit": "kW"}}}}]}
    assert init["billing"] == {"name": "Asha", "email": "asha@example.org"}
    [ful] = init["fulfillments"]
    tags = {t["descriptor"]["code"]: t["value"] for t in ful["tags"][0]["list"]}
    assert ful["type"] == "DER" and ful["tags"][0]["descriptor"]["code"] == "der"
    assert tags == {"lfdi": LFDI, "kind": "battery", "grid-node": "feeder-7",
                    "bid-curve": '[{"price":0.08,"powerKW":-5}]', "objectives": '{"reduceKW":3}'}
    assert confirm["id"] == f"draft-{out['transaction_id']}" and confirm["billing"] == init["billing"]
    assert confirm["payments"] == [{"collected_by": "BPP", "type": "POST-FULFILLMENT"}]
    assert out["order_id"] == f"order-{out['transaction_id']}" and out["status"] == "ACTIVE"
    assert out["quote"]["price"]["value"] == "1.20" and out["fulfillments"][0]["id"] == "ful-0"


def test_a_callback_error_stops_the_flow_with_its_beckn_code(bap: Bap, bpp: StandInBpp) -> None:
    with pytest.raises(BapCallbackError, match="on_select .*Beckn error 30004 at message.order.items") as err:
        bap.enroll(Customer("Ben"), "program-404", [DerDevice(LFDI)])
    assert err.value.code == "30004" and [a for a, _, _ in bpp.requests] == ["select"]
    with pytest.raises(BapCallbackError) as err:
        bap.status("missing", "tx-1")
    assert err.value.code == "30010"


def test_a_missing_callback_is_a_bap_timeout(bap: Bap, bpp: StandInBpp) -> None:
    bpp.callbacks = False
    with pytest.raises(BapTimeout, match="track .* was ACKed but no callback"):
        bap.track("o-1", "tx-1", timeout=0.3)


def test_enroll_many_runs_a_bounded_pool_and_reports_progress(bap: Bap, bpp: StandInBpp) -> None:
    customers = [Customer(f"c{i}", devices=(DerDevice(f"{i:040X}"),)) for i in range(6)] + [Customer("nobody")]
    progress: list[tuple[int, int]] = []
    results = bap.enroll_many(customers, "program-1", workers=3,
                              on_progress=lambda done, total, _r: progress.append((done, total)))
    assert progress == [(i, 7) for i in range(1, 8)]
    assert [r["customer"] for r in results] == [c.name for c in customers]
    assert all(r["ok"] and r["status"] == "ACTIVE" for r in results[:6])
    assert results[6]["ok"] is False and "no devices" in results[6]["error"]
    assert len({r["order_id"] for r in results[:6]}) == 6
    assert len([a for a, _, _ in bpp.requests if a == "confirm"]) == 6


def test_after_confirm_helpers_follow_the_contract(bap: Bap, bpp: StandInBpp) -> None:
    tx = "tx-after"
    bap.status("o-1", tx)
    bap.update("o-1", tx, [DerDevice(LFDI, kind="load")])
    bap.opt_out("o-1", tx, ["ful-0"])
    bap.cancel("o-1", tx, reason_id="2")
    bap.track("o-1", tx)
    bap.support("o-1", tx)
    out = bap.rating([("o-1", "Order", 4.5)], tx)
    assert out["action"] == "on_rating" and out["transaction_id"] == tx
    msgs = [req.message for _, _, req in bpp.requests]
    assert msgs[0] == {"order_id": "o-1"}
    assert msgs[1]["update_target"] == "order.fulfillments" and msgs[1]["order"]["fulfillments"][0]["type"] == "DER"
    assert msgs[2] == {"update_target": "order.fulfillments.opt-out", "order": {"id": "o-1", "fulfillments": [{"id": "ful-0"}]}}
    assert msgs[3] == {"order_id": "o-1", "cancellation_reason_id": "2"}
    assert msgs[4] == {"order_id": "o-1"} and msgs[5] == {"support": {"ref_id": "o-1"}}
    assert msgs[6] == {"ratings": [{"id": "o-1", "rating_category": "Order", "value": "4.5"}]}
    assert {req.context.transaction_id for _, _, req in bpp.requests} == {tx}


def test_pushes_are_told_apart_from_answers(bap: Bap, bpp: StandInBpp) -> None:
    bap.status("o-1", "tx-push")
    bpp.push_status(bpp.requests[0][2], {"id": "o-1", "status": "ACTIVE"})
    push = bap.wait_push("tx-push", timeout=3)
    assert push["message"] == {"order": {"id": "o-1", "status": "ACTIVE"}} and push["verified"]
    assert push["message_id"] != bpp.requests[0][2].context.message_id
