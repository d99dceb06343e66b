"""The Beckn worker against real HTTP receivers (server.jobs.beckn.http_post, no stand-in `send`).

The delivery rule (docs/beckn.md, "Delivery"): a callback is retried only when it did not get
through — refused or cut before it went out whole, a non-2xx answer, a NACK. One that went out
whole is waited on (ANSWER_TIMEOUT_S, 30 s) and, if no answer comes, is marked unanswered and not
sent again: the BAP may have it. Every attempt carries the same bytes, hence the same message_id.

The case from issue 17: a BAP that ACKs after 7 s (over the old 5 s timeout) received 4 copies of
each of 3 callbacks within 40 s. Here it receives each exactly once.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from der_sim.bap import BapClient, BapIdentity
from server.app import provider_of
from server.jobs import beckn as job
from server.jobs.beckn import BecknWorker, http_post
from server.services.bpp import keys as beckn_keys, pipeline
from tests.api.test_beckn_inbound import (  # noqa: F401  (fixtures)
    ACK_BODY, assert_ack, bpp, bpp_key, make_body, outbox, post, sign,
)

BAP_ID = "bap.slow.test"


class Receiver:
    """A BAP's callback endpoint on 127.0.0.1: records every POST (path, raw body) when it has read
    it, then behaves as `behave(n)` says for the n-th request (0-based): an int is a delay before
    the ACK, "500" answers 500, "close" closes without answering, "drip" sends a status line one
    byte every 0.3 s."""

    def __init__(self, behave: Callable[[int], object]):
        self.behave = behave
        self.posts: list[tuple[str, bytes, float]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.lock:
                    n = len(receiver.posts)
                    receiver.posts.append((self.path, body, time.monotonic()))
                how = receiver.behave(n)
                if how == "close":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if how == "drip":
                    try:
                        for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 100:
                            self.wfile.write(bytes([byte]))
                            self.wfile.flush()
                            time.sleep(0.3)
                    except OSError:  # the client gave up: expected
                        self.close_connection = True
                    return
                if isinstance(how, (int, float)):
                    time.sleep(how)
                status, answer = (500, b'{"error":"busy"}') if how == "500" else (200, json.dumps(ACK_BODY).encode())
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *_a: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/bap"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def message_ids(self) -> list[str]:
        with self.lock:
            return [json.loads(body)["context"]["message_id"] for _, body, _ in self.posts]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receive_with() -> Iterator[Callable[[Callable[[int], object]], Receiver]]:
    made: list[Receiver] = []

    def make(behave: Callable[[int], object]) -> Receiver:
        made.append(Receiver(behave))
        return made[-1]

    yield make
    for r in made:
        r.close()


@pytest.fixture
def start_worker(settings, database, bpp_key):  # noqa: ANN001, ANN201
    workers: list[BecknWorker] = []

    def start() -> BecknWorker:
        w = BecknWorker(database, provider_of(settings), bpp_key, send=http_post, senders=4, poll_s=0.1)
        workers.append(w)
        w.start()
        return w

    yield start
    for w in workers:
        w.stop(timeout=60)


def _requests(settings, bpp, receiver: Receiver, n: int, ttl_s: int = 60) -> list[str]:  # noqa: ANN001
    """n signed searches from a BAP registered at the receiver's URL; their message_ids."""
    identity = BapIdentity.generate(BAP_ID, receiver.url)
    beckn_keys.add_to_file_registry(settings, identity.subscriber())
    client = BapClient(identity, settings.beckn_subscriber_id, settings.beckn_uri, domain=settings.beckn_domain,
                       ttl_s=ttl_s)
    ids = []
    for _ in range(n):
        body, doc = make_body(client, "search")
        assert_ack(post(bpp, "search", body, sign(body, identity)))
        ids.append(doc["context"]["message_id"])
    return ids


def _wait_until(predicate: Callable[[], bool], seconds: float) -> None:
    until = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > until:
            pytest.fail(f"not reached within {seconds} s")
        time.sleep(0.1)


def test_a_bap_that_acks_after_7_s_gets_each_of_3_callbacks_once(settings, database, bpp, receive_with,
                                                                 start_worker) -> None:  # noqa: ANN001
    receiver = receive_with(lambda n: 7)
    ids = _requests(settings, bpp, receiver, 3)
    started = time.monotonic()
    start_worker()
    _wait_until(lambda: all(r.state == "delivered" for r in outbox(database)) and len(outbox(database)) == 3, 30)
    assert time.monotonic() - started >= 7
    time.sleep(8)  # the old worker sent a second copy 6 s after the first, a third after 13 s …
    assert sorted(receiver.message_ids()) == sorted(ids)
    assert [(r.state, r.attempts, r.last_error) for r in outbox(database)] == [("delivered", 1, None)] * 3


def test_a_callback_sent_whole_and_never_answered_is_not_sent_again(settings, database, bpp, receive_with,
                                                                    start_worker, monkeypatch) -> None:  # noqa: ANN001
    """Past the answer timeout the BAP may still have it: marked unanswered, never repeated. The
    same for a connection closed after the request was read."""
    monkeypatch.setattr(job, "ANSWER_TIMEOUT_S", 1.0)
    receiver = receive_with(lambda n: 4 if n == 0 else "close")
    first = _requests(settings, bpp, receiver, 1)
    start_worker()
    _wait_until(lambda: len(outbox(database)) == 1 and outbox(database)[0].state != "pending", 10)
    second = _requests(settings, bpp, receiver, 1)
    _wait_until(lambda: len(outbox(database)) == 2 and outbox(database)[1].state != "pending", 10)
    time.sleep(5)  # a retry would come after 1 s, then 2 s
    assert receiver.message_ids() == first + second
    rows = outbox(database)
    assert [(r.state, r.attempts) for r in rows] == [("unanswered", 1)] * 2
    assert "no answer within 1 s" in rows[0].last_error and "sent, no answer" in rows[1].last_error


def test_an_error_answer_is_retried_with_the_same_bytes_and_message_id(settings, database, bpp, receive_with,
                                                                        start_worker) -> None:  # noqa: ANN001
    receiver = receive_with(lambda n: "500" if n < 2 else 0)
    (message_id,) = _requests(settings, bpp, receiver, 1)
    start_worker()
    _wait_until(lambda: [r.state for r in outbox(database)] == ["delivered"], 15)  # none yet before the first pass
    (row,) = outbox(database)
    assert row.attempts == 3
    assert receiver.message_ids() == [message_id] * 3
    assert len({body for _, body, _ in receiver.posts}) == 1  # byte for byte the same callback
    assert {path for path, _, _ in receiver.posts} == {"/bap/on_search"}


def test_a_bap_that_cannot_be_reached_is_retried() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connections are refused
        with pytest.raises(OSError) as caught:
            http_post(f"http://127.0.0.1:{port}/bap/on_search", b"{}", {})
    assert not isinstance(caught.value, pipeline.Unanswered)


def test_a_bap_that_drips_its_answer_is_cut_off_by_the_watchdog(receive_with, monkeypatch) -> None:  # noqa: ANN001
    """Each byte arrives well within the socket timeout; the watchdog bounds the whole send."""
    monkeypatch.setattr(job, "SEND_LIMIT_S", 2.0)
    receiver = receive_with(lambda n: "drip")
    started = time.monotonic()
    with pytest.raises(pipeline.Unanswered):
        http_post(f"{receiver.url}/on_search", b"{}", {"Content-Type": "application/json"})
    assert time.monotonic() - started < 4


def test_every_send_ends_before_its_claim() -> None:
    assert job.CONNECT_TIMEOUT_S < job.ANSWER_TIMEOUT_S < job.SEND_LIMIT_S < pipeline.SEND_CLAIM_S
