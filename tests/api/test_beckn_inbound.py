"""The BPP's synchronous side through the real Flask app of `create_beckn_app`, and what follows.

Every request is rendered once, signed over those exact bytes with `server.beckn.signing` by a BAP
whose key sits in the file registry (`<home>/var/beckn-registry.json`), and POSTed with the test
client to `/beckn/{action}`. A refusal must be a NACK (`{"message":{"ack":{"status":"NACK"}},
"error":{code, path?, message}}`) with the right status (401 + WWW-Authenticate for a signature,
400 for a body or context, 404/405 for a wrong path or method), store nothing, and never lead to a
callback: a BecknWorker pass afterwards hands nothing to its `send`. The `send` here is
`RecordingBap`, a stand-in for the network only; everything else is derflex's own code.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from der_sim.bap import BapClient, BapIdentity
from server.app import create_beckn_app, provider_of
from server.beckn import envelope, signing
from server.bootstrap import prepare
from server.db import beckn as store
from server.jobs.beckn import BecknWorker
from server.services.bpp import keys as beckn_keys
from tests import beckn_schema

BAP_ID = "bap.inbound.test"
BAP_URI = "http://bap.inbound.test/beckn"
ACK_BODY = {"message": {"ack": {"status": "ACK"}}}
ACK = (200, json.dumps(ACK_BODY).encode())
NACK = (200, json.dumps({"message": {"ack": {"status": "NACK"}},
                         "error": {"code": "30000", "message": "no thanks"}}).encode())
SEARCH = {"intent": {"category": {"descriptor": {"code": "demand-flexibility"}}}}
ABSENT = object()  # a `message` left out of the body


# ------------------------------------------------------------------------------------ stand-ins


class RecordingBap:
    """Stands in for the BAP's HTTP endpoint (the worker's `send`): records every POST and answers
    from a script (a (status, body) pair or an exception to raise); the last answer repeats."""

    def __init__(self, *answers: Any):
        self.answers = list(answers) or [ACK]
        self.calls: list[tuple[str, bytes, dict[str, str]]] = []
        self._lock = threading.Lock()

    def __call__(self, url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        with self._lock:
            self.calls.append((url, body, dict(headers)))
            answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, BaseException):
            raise answer
        return answer


class FakeClock:
    def __init__(self, t: float):
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


# -------------------------------------------------------------------------------------- fixtures


@pytest.fixture
def bpp_key(settings):  # noqa: ANN001, ANN201
    """Our signing key, made by the first-run preparation."""
    prepare(settings, say=lambda _: None).dispose()
    return beckn_keys.signing_key(settings)


@pytest.fixture
def bap(settings) -> BapIdentity:  # noqa: ANN001
    identity = BapIdentity.generate(BAP_ID, BAP_URI)
    beckn_keys.add_to_file_registry(settings, identity.subscriber())
    return identity


@pytest.fixture
def bap_client(settings, bap: BapIdentity) -> BapClient:  # noqa: ANN001
    """Only for its `context(...)`: requests go through the Flask test client."""
    return BapClient(bap, settings.beckn_subscriber_id, settings.beckn_uri, domain=settings.beckn_domain)


@pytest.fixture
def bpp(settings, database, bpp_key):  # noqa: ANN001, ANN201
    return create_beckn_app(settings, database).test_client()


@pytest.fixture
def make_worker(settings, database, bpp_key):  # noqa: ANN001, ANN201
    """make_worker(send, clock) -> a BecknWorker (not started; stopped after the test)."""
    workers: list[BecknWorker] = []

    def make(send: RecordingBap, clock: FakeClock | None = None) -> BecknWorker:
        w = BecknWorker(database, provider_of(settings), bpp_key, send=send, clock=clock or time.time, senders=2)
        workers.append(w)
        return w

    yield make
    for w in workers:
        w.stop()


# --------------------------------------------------------------------------------------- helpers


def make_body(client: BapClient, action: str, message: Any = ABSENT, *, now: datetime | None = None,
              drop: tuple[str, ...] = (), fields: dict[str, Any] | None = None) -> tuple[bytes, dict[str, Any]]:
    """The exact bytes of a request (context from the BAP library, then edited) and its document."""
    ctx = client.context(action, transaction_id=str(uuid.uuid4()), now=now).to_json()
    for name in drop:
        ctx.pop(name, None)
    ctx.update(fields or {})
    doc: dict[str, Any] = {"context": ctx}
    if message is not ABSENT:
        doc["message"] = message
    elif action not in ("get_rating_categories", "get_cancellation_reasons"):
        doc["message"] = {"order_id": "o-1"} if action == "status" else SEARCH
    return envelope.render(doc), doc


def sign(body: bytes, who: BapIdentity, *, now: datetime | None = None, ttl_s: int = 30) -> str:
    return signing.authorization_header(body, who.signing_key, now=now or datetime.now(UTC), ttl_s=ttl_s)


def post(client, action: str, body: bytes, auth: str | None, method: str = "POST"):  # noqa: ANN001, ANN201
    headers = {} if auth is None else {"Authorization": auth}
    return client.open(f"/beckn/{action}", method=method, data=body, headers=headers,
                       content_type="application/json")


def assert_nack(resp, status: int, code: str | None = "30000", path: Any = ABSENT) -> dict[str, Any]:  # noqa: ANN001
    assert resp.status_code == status, resp.get_data(as_text=True)[:500]
    body = resp.get_json()
    assert isinstance(body, dict), resp.get_data(as_text=True)[:200]
    assert set(body) == {"message", "error"} and body["message"] == {"ack": {"status": "NACK"}}, body
    error = body["error"]
    assert set(error) <= {"code", "path", "message"} and {"code", "message"} <= set(error), error
    assert isinstance(error["code"], str) and error["code"].isdigit(), error
    assert isinstance(error["message"], str) and error["message"], error
    if code is not None:
        assert error["code"] == code, error
    if path is not ABSENT:
        assert error.get("path") == path, error
    return error


def assert_ack(resp) -> None:  # noqa: ANN001
    assert resp.status_code == 200, resp.get_data(as_text=True)[:500]
    assert resp.get_json() == ACK_BODY


def count(database, model) -> int:  # noqa: ANN001
    with database.transaction() as s:
        return s.scalar(select(func.count()).select_from(model))


def outbox(database) -> list[store.BecknOutbox]:  # noqa: ANN001
    with database.transaction() as s:
        rows = s.scalars(select(store.BecknOutbox).order_by(store.BecknOutbox.id)).all()
        s.expunge_all()
        return list(rows)


def run_pass(worker: BecknWorker, database, timeout: float = 10.0) -> None:  # noqa: ANN001
    """One worker pass, then wait until every delivery it handed out has been recorded."""
    worker.run_once()
    until = time.monotonic() + timeout
    while True:
        with database.transaction() as s:
            busy = s.scalar(select(func.count()).select_from(store.BecknOutbox).where(
                store.BecknOutbox.state == "pending", store.BecknOutbox.claimed_until > 0))
        if not busy:
            return
        if time.monotonic() > until:
            pytest.fail("a delivery handed out by run_once() was never recorded")
        time.sleep(0.01)


def assert_nothing_happens(database, make_worker) -> None:  # noqa: ANN001
    """Nothing stored, and a worker pass has nothing to send now or ever."""
    assert count(database, store.BecknInbox) == 0
    send = RecordingBap()
    worker = make_worker(send)
    run_pass(worker, database)
    assert count(database, store.BecknOutbox) == 0
    assert send.calls == []


# ---------------------------------------------------------------------------------- signatures


def _other_registered(settings) -> BapIdentity:  # noqa: ANN001
    other = BapIdentity.generate("other.bap.test", "http://other.bap.test/beckn")
    beckn_keys.add_to_file_registry(settings, other.subscriber())
    return other


def _with_algorithm(header: str, algorithm: str) -> str:
    assert 'algorithm="ed25519"' in header
    return header.replace('algorithm="ed25519"', f'algorithm="{algorithm}"')


def _reregister(settings, bap: BapIdentity, **changes: Any) -> None:  # noqa: ANN001
    beckn_keys.add_to_file_registry(settings, dataclasses.replace(bap.subscriber(), **changes))


NOW = lambda: datetime.now(UTC)  # noqa: E731

SIGNATURE_CASES: dict[str, Any] = {
    "missing": lambda s, bap, body: None,
    "empty": lambda s, bap, body: "",
    "malformed": lambda s, bap, body: 'Signature keyId="bap.inbound.test|k1",signature="abc"',
    "not-signature-scheme": lambda s, bap, body: "Bearer abc.def.ghi",
    "expired": lambda s, bap, body: sign(body, bap, now=NOW() - timedelta(seconds=120), ttl_s=30),
    "future-dated": lambda s, bap, body: sign(body, bap, now=NOW() + timedelta(seconds=120)),
    "tampered-body": lambda s, bap, body: sign(body.replace(b"demand-flexibility", b"demand-flexibilitz"), bap),
    "key-not-in-registry": lambda s, bap, body: sign(body, BapIdentity.generate(BAP_ID, BAP_URI, "k9")),
    "same-key-id-other-key": lambda s, bap, body: sign(body, BapIdentity.generate(BAP_ID, BAP_URI)),
    "keyid-subscriber-not-bap-id": lambda s, bap, body: sign(body, _other_registered(s)),
    "algorithm-rsa-sha256": lambda s, bap, body: _with_algorithm(sign(body, bap), "rsa-sha256"),
    "registry-entry-expired": lambda s, bap, body: (
        _reregister(s, bap, valid_until=NOW() - timedelta(days=1)), sign(body, bap))[1],
    "registry-entry-unsubscribed": lambda s, bap, body: (
        _reregister(s, bap, status="UNSUBSCRIBED"), sign(body, bap))[1],
    "registry-entry-initiated": lambda s, bap, body: (
        _reregister(s, bap, status="INITIATED"), sign(body, bap))[1],
}


@pytest.mark.parametrize("case", list(SIGNATURE_CASES))
def test_a_bad_signature_is_401_nack_and_nothing_follows(case, settings, database, bpp, bap, bap_client,
                                                         make_worker) -> None:
    body, _ = make_body(bap_client, "search")
    header = SIGNATURE_CASES[case](settings, bap, body)
    resp = post(bpp, "search", body, header)
    error = assert_nack(resp, 401)
    assert "signature" in error["message"].lower()
    assert resp.headers.get("WWW-Authenticate") == signing.www_authenticate(settings.beckn_subscriber_id)
    assert_nothing_happens(database, make_worker)


def test_the_same_request_correctly_signed_is_accepted(settings, database, bpp, bap, bap_client) -> None:
    """The control for the cases above: the registry and the body are good as such."""
    _other_registered(settings)
    body, _ = make_body(bap_client, "search")
    assert_ack(post(bpp, "search", body, sign(body, bap)))
    assert count(database, store.BecknInbox) == 1


# -------------------------------------------------------------------------------------- context

REQUIRED = ("action", "version", "bap_id", "bap_uri", "bpp_id", "transaction_id", "message_id", "timestamp", "ttl")


@pytest.mark.parametrize("field", REQUIRED)
def test_a_missing_context_field_is_400_nack_naming_it(field, database, bpp, bap, bap_client, make_worker) -> None:
    # `status`, not `search`: a search may come without bpp_id (a gateway broadcasts it)
    body, _ = make_body(bap_client, "status", drop=(field,))
    resp = post(bpp, "status", body, sign(body, bap))
    assert_nack(resp, 400, "30000", f"context.{field}")
    assert_nothing_happens(database, make_worker)


def _ten_minutes_ago() -> str:
    return (datetime.now(UTC) - timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%S.000Z")


CONTEXT_CASES: dict[str, tuple[str, dict[str, Any], str]] = {
    # name: (endpoint, context fields to set, the NACK's path)
    "version-1.0.0": ("search", {"version": "1.0.0"}, "context.version"),
    "version-2.0.0": ("search", {"version": "2.0.0"}, "context.version"),
    "action-not-the-endpoint": ("search", {"action": "select"}, "context.action"),
    "another-bpp": ("search", {"bpp_id": "someone.else.bpp"}, "context.bpp_id"),
    "ttl-elapsed": ("search", {"timestamp": "TEN_MINUTES_AGO", "ttl": "PT30S"}, "context.ttl"),
    "timestamp-in-the-future": ("search", {"timestamp": "2999-01-01T00:00:00.000Z"}, "context.timestamp"),
    "bap_uri-not-a-url": ("search", {"bap_uri": "not a url"}, "context.bap_uri"),
    "ttl-not-a-duration": ("search", {"ttl": "30 seconds"}, "context.ttl"),
}


@pytest.mark.parametrize("case", list(CONTEXT_CASES))
def test_a_bad_context_is_400_nack_with_its_path(case, database, bpp, bap, bap_client, make_worker) -> None:
    action, fields, path = CONTEXT_CASES[case]
    fields = {k: _ten_minutes_ago() if v == "TEN_MINUTES_AGO" else v for k, v in fields.items()}
    body, _ = make_body(bap_client, action, fields=fields)
    resp = post(bpp, action, body, sign(body, bap))  # the signature itself is fresh and good
    assert_nack(resp, 400, "30000", path)
    assert_nothing_happens(database, make_worker)


@pytest.mark.parametrize("stamp, path", [("9999-12-31T23:59:59-05:00", "context.timestamp"),
                                         ("0001-01-01T00:00:00+05:00", "context.timestamp")], ids=["year-10000", "year-0"])
def test_a_timestamp_at_the_edge_of_the_calendar_is_400_nack(stamp, path, database, bpp, bap, bap_client,
                                                             make_worker) -> None:
    body, _ = make_body(bap_client, "search", fields={"timestamp": stamp, "ttl": "PT30S"})
    resp = post(bpp, "search", body, sign(body, bap))
    assert_nothing_happens(database, make_worker)
    assert_nack(resp, 400, "30000", path)


@pytest.mark.parametrize("message, path", [("a text", "message"), ([1, 2], "message"), (None, "message"),
                                           (ABSENT, "message")], ids=["string", "array", "null", "absent"])
def test_a_message_that_is_not_an_object_is_400_nack(message, path, database, bpp, bap, bap_client,
                                                      make_worker) -> None:
    body, doc = make_body(bap_client, "search")
    if message is ABSENT:
        del doc["message"]
    else:
        doc["message"] = message
    body = envelope.render(doc)
    assert_nack(post(bpp, "search", body, sign(body, bap)), 400, "30000", path)
    assert_nothing_happens(database, make_worker)


def _deep(levels: int) -> bytes:
    return b'{"context":{},"message":{"a":' + b"[" * levels + b"]" * levels + b"}}"


BODY_CASES: dict[str, Any] = {
    "invalid-json": lambda ctx: b'{"context": {"bap_id": "bap.inbound.test"}, "message": ',
    "not-utf8": lambda ctx: b'{"context": {"bap_id": "\xff"}}',
    "duplicate-key": lambda ctx: envelope.render({"context": ctx, "message": SEARCH})[:-1] + b',"message":{}}',
    "top-level-array": lambda ctx: b'[{"context": {}}]',
    "nested-100": lambda ctx: _deep(100),
    "nested-100000": lambda ctx: _deep(100_000),
    "context-not-an-object": lambda ctx: envelope.render({"context": [ctx], "message": SEARCH}),
}


@pytest.mark.parametrize("case", list(BODY_CASES))
def test_a_body_that_is_not_a_request_is_400_nack(case, database, bpp, bap, bap_client, make_worker) -> None:
    _, doc = make_body(bap_client, "search")
    body = BODY_CASES[case](doc["context"])
    assert_nack(post(bpp, "search", body, sign(body, bap)), 400, "30000")
    assert_nothing_happens(database, make_worker)


def test_a_body_over_the_size_limit_is_a_nack(settings, database, bpp, bap, bap_client, make_worker) -> None:
    big = "x" * (settings.max_body_bytes + 1024)
    body, _ = make_body(bap_client, "search", {"intent": {"descriptor": {"name": big}}})
    resp = post(bpp, "search", body, sign(body, bap))
    assert resp.status_code in (400, 413)
    assert_nack(resp, resp.status_code, None)
    assert_nothing_happens(database, make_worker)


@pytest.mark.parametrize("path", ["frobnicate", "on_search", "search/extra", "x" * 80])
def test_an_unknown_action_path_is_404_nack_40001(path, database, bpp, bap, bap_client, make_worker) -> None:
    body, _ = make_body(bap_client, "search")
    assert_nack(post(bpp, path, body, sign(body, bap)), 404, "40001")
    assert_nothing_happens(database, make_worker)


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_another_method_on_an_action_is_405_nack(method, database, bpp, bap, bap_client, make_worker) -> None:
    body, _ = make_body(bap_client, "search")
    assert_nack(post(bpp, "search", body, sign(body, bap), method=method), 405, None)
    assert_nothing_happens(database, make_worker)


def test_a_405_says_which_method_is_allowed(bpp) -> None:
    resp = bpp.get("/beckn/search")
    assert resp.status_code == 405
    assert "POST" in resp.headers.get("Allow", "")


# ------------------------------------------------------------------------------------ good path


def _verify_callback(settings, bpp_key, call: tuple[str, bytes, dict[str, str]], at: float) -> dict[str, Any]:  # noqa: ANN001
    """The callback's signature holds with the BPP's registered public key; its parsed body."""
    _, body, headers = call
    when = datetime.fromtimestamp(at, UTC)
    public = beckn_keys.our_entry(settings, when).signing_public_key
    params = signing.verify(headers.get("Authorization"), body, now=when, expected_subscriber=settings.beckn_subscriber_id,
                            key_lookup=lambda sid, kid: public if (sid, kid) == (
                                settings.beckn_subscriber_id, settings.beckn_unique_key_id) else None)
    assert params.subscriber_id == settings.beckn_subscriber_id
    return json.loads(body)


def test_a_good_search_is_acked_stored_once_and_answered_once(settings, database, bpp, bpp_key, bap, bap_client,
                                                              make_worker) -> None:
    body, doc = make_body(bap_client, "search")
    ctx = doc["context"]
    assert_ack(post(bpp, "search", body, sign(body, bap)))
    with database.transaction() as s:
        rows = s.scalars(select(store.BecknInbox)).all()
        assert [(r.bap_id, r.action, r.message_id, r.transaction_id, r.state, bytes(r.body)) for r in rows] == [
            (BAP_ID, "search", ctx["message_id"], ctx["transaction_id"], "received", body)]

    # the same message again (freshly signed): ACKed, changes nothing
    assert_ack(post(bpp, "search", body, sign(body, bap)))
    assert count(database, store.BecknInbox) == 1

    clock = FakeClock(time.time())
    send = RecordingBap(ACK)
    worker = make_worker(send, clock)
    run_pass(worker, database)
    assert len(send.calls) == 1
    url, _, headers = send.calls[0]
    assert url == f"{BAP_URI}/on_search"
    assert headers.get("Content-Type") == "application/json"
    callback = _verify_callback(settings, bpp_key, send.calls[0], clock())
    cb = callback["context"]
    assert (cb["action"], cb["transaction_id"], cb["message_id"]) == ("on_search", ctx["transaction_id"],
                                                                      ctx["message_id"])
    assert (cb["bap_id"], cb["bap_uri"], cb["bpp_id"]) == (BAP_ID, BAP_URI, settings.beckn_subscriber_id)
    assert cb["version"] == "1.1.0"
    assert "error" not in callback and "catalog" in callback["message"]
    [row] = outbox(database)
    assert (row.state, row.attempts) == ("delivered", 1)

    # later passes, and the same message once more after processing: never a second callback
    assert_ack(post(bpp, "search", body, sign(body, bap)))
    for _ in range(3):
        clock.advance(5)
        run_pass(worker, database)
    assert len(send.calls) == 1
    assert count(database, store.BecknInbox) == 1 and count(database, store.BecknOutbox) == 1


def test_the_on_search_callback_validates_against_the_official_schema(settings, database, bpp, bap, bap_client,
                                                                      make_worker) -> None:
    schema = beckn_schema.load()  # skips, saying why, when BECKN_REFERENCE_DIR is not set
    body, _ = make_body(bap_client, "search")
    assert_ack(post(bpp, "search", body, sign(body, bap)))
    send = RecordingBap(ACK)
    run_pass(make_worker(send), database)
    [(_, sent, _)] = send.calls
    schema.validate("on_search", json.loads(sent))


def test_an_unknown_order_is_acked_then_the_callback_carries_30010(settings, database, bpp, bpp_key, bap,
                                                                  bap_client, make_worker) -> None:
    body, doc = make_body(bap_client, "status", {"order_id": "no-such-order"})
    assert_ack(post(bpp, "status", body, sign(body, bap)))
    clock = FakeClock(time.time())
    send = RecordingBap(ACK)
    run_pass(make_worker(send, clock), database)
    assert len(send.calls) == 1
    assert send.calls[0][0] == f"{BAP_URI}/on_status"
    callback = _verify_callback(settings, bpp_key, send.calls[0], clock())
    assert callback["context"]["message_id"] == doc["context"]["message_id"]
    assert callback["context"]["transaction_id"] == doc["context"]["transaction_id"]
    assert callback["error"]["code"] == "30010"
    assert callback["error"].get("path") == "message.order_id"
    assert [r.state for r in outbox(database)] == ["delivered"]


def test_a_request_that_crashes_its_batch_is_isolated_and_the_others_answered(settings, database, bpp, bpp_key, bap,
                                                                           bap_client, make_worker, monkeypatch) -> None:  # noqa: ANN001
    """The worker answers a pass's requests in one transaction (#17 item 4). One whose processing
    crashes (not a business error) rolls that batch back; the requests are then taken one by one:
    the others get their callbacks, the bad one is tried again and its third crash answers 40000."""
    from server.services.bpp import actions, catalog

    bad_text = "crash-me"
    search = catalog.search

    def crashing(s, message, provider, now):  # noqa: ANN001, ANN202
        if message.get("intent", {}).get("descriptor", {}).get("name") == bad_text:
            raise RuntimeError("boom")
        return search(s, message, provider, now)

    monkeypatch.setitem(actions._HANDLERS, "search", lambda s, r, p, now: crashing(s, r.message, p, now))
    ids = []
    for i in range(5):
        message = {"intent": {"descriptor": {"name": bad_text if i == 2 else "saver"}}}
        body, doc = make_body(bap_client, "search", message)
        assert_ack(post(bpp, "search", body, sign(body, bap)))
        ids.append(doc["context"]["message_id"])
    clock = FakeClock(time.time())
    send = RecordingBap(ACK)
    worker = make_worker(send, clock)
    run_pass(worker, database)
    answered = [_verify_callback(settings, bpp_key, call, clock()) for call in send.calls]
    assert sorted(c["context"]["message_id"] for c in answered) == sorted(ids[:2] + ids[3:])
    assert all("error" not in c for c in answered)
    for _ in range(2):  # tried again after 2 s, then 4 s: the third crash answers with an error
        clock.advance(5)
        run_pass(worker, database)
    last = _verify_callback(settings, bpp_key, send.calls[-1], clock())
    assert len(send.calls) == 5 and last["context"]["message_id"] == ids[2]
    assert last["error"]["code"] == "40000"
    with database.transaction() as s:
        assert sorted(r.state for r in s.scalars(select(store.BecknInbox))) == ["failed"] + ["processed"] * 4


# --------------------------------------------------------------------------------------- retries


def _accepted_search(bpp, bap: BapIdentity, bap_client: BapClient, start: float) -> None:  # noqa: ANN001
    body, _ = make_body(bap_client, "search", now=datetime.fromtimestamp(start, UTC))
    assert_ack(post(bpp, "search", body, sign(body, bap)))


def test_a_callback_answered_500_twice_is_sent_three_times_then_delivered(database, bpp, bap, bap_client,
                                                                         make_worker) -> None:
    clock = FakeClock(time.time())
    _accepted_search(bpp, bap, bap_client, clock())
    send = RecordingBap((500, b"oops"), (500, b""), ACK)
    worker = make_worker(send, clock)
    run_pass(worker, database)
    assert len(send.calls) == 1
    run_pass(worker, database)  # not due yet: the backoff holds it back
    assert len(send.calls) == 1
    [row] = outbox(database)
    assert (row.state, row.attempts, row.last_error) == ("pending", 1, "HTTP 500")
    clock.t = row.next_attempt_at + 0.01
    run_pass(worker, database)
    assert len(send.calls) == 2
    [row] = outbox(database)
    assert (row.state, row.attempts) == ("pending", 2)
    clock.t = row.next_attempt_at + 0.01
    run_pass(worker, database)
    assert len(send.calls) == 3
    [row] = outbox(database)
    assert (row.state, row.attempts, row.last_error) == ("delivered", 3, None)
    clock.advance(120)
    run_pass(worker, database)
    assert len(send.calls) == 3
    assert len({body for _, body, _ in send.calls}) == 1  # the same stored bytes each time


def test_a_callback_that_never_gets_through_expires_at_the_deadline(database, bpp, bap, bap_client,
                                                                   make_worker) -> None:
    clock = FakeClock(time.time())
    _accepted_search(bpp, bap, bap_client, clock())  # ttl PT30S
    send = RecordingBap(ConnectionRefusedError("connection refused"))
    worker = make_worker(send, clock)
    for _ in range(40):
        run_pass(worker, database)
        [row] = outbox(database)
        if row.state != "pending":
            break
        assert row.last_error.startswith("network:")
        clock.t = max(clock.t, row.next_attempt_at) + 0.01
    assert row.state == "expired"
    assert row.attempts == len(send.calls) >= 2
    assert clock() <= row.deadline + 60  # it stopped at the deadline, not long after
    clock.advance(600)
    run_pass(worker, database)
    assert len(send.calls) == row.attempts


def test_a_nack_answer_counts_as_a_failure_and_is_retried(database, bpp, bap, bap_client, make_worker) -> None:
    clock = FakeClock(time.time())
    _accepted_search(bpp, bap, bap_client, clock())
    send = RecordingBap(NACK, (200, b"not json"), ACK)
    worker = make_worker(send, clock)
    run_pass(worker, database)
    [row] = outbox(database)
    assert (row.state, row.attempts) == ("pending", 1) and row.last_error.startswith("NACK")
    clock.t = row.next_attempt_at + 0.01
    run_pass(worker, database)
    [row] = outbox(database)
    assert (row.state, row.attempts) == ("pending", 2)
    clock.t = row.next_attempt_at + 0.01
    run_pass(worker, database)
    [row] = outbox(database)
    assert (row.state, row.attempts) == ("delivered", 3)
    assert len(send.calls) == 3
