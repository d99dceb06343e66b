"""The Beckn worker under stress: no callback twice when a claim outlives a slow send, a broken
HTTP answer counts as a failed attempt, a crashing request is answered with an error in the end,
and a redirect is never followed (it would carry our signed POST anywhere)."""

from __future__ import annotations

import http.client
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from sqlalchemy import select

from server.db import beckn as store
from server.jobs.beckn import http_post
from server.services.bpp import pipeline, actions as beckn_actions
from tests.api.test_beckn_inbound import (  # noqa: F401  (fixtures)
    ACK, FakeClock, assert_ack, bap, bap_client, bpp, bpp_key, make_body, make_worker, outbox, post, sign,
)


def _store(bpp, bap_client, bap, n: int = 1) -> None:  # noqa: ANN001
    for _ in range(n):
        body, _ = make_body(bap_client, "search")
        assert_ack(post(bpp, "search", body, sign(body, bap)))


def test_a_callback_whose_claim_runs_out_while_it_is_being_sent_is_not_sent_twice(bpp, bap_client, bap, make_worker,
                                                                                  database) -> None:  # noqa: ANN001
    _store(bpp, bap_client, bap, 3)
    gate, calls = threading.Event(), []

    def slow(url, body, headers):  # noqa: ANN001, ANN202  (stand-in for a BAP that takes its time)
        calls.append(json.loads(body)["context"]["message_id"])
        gate.wait(5)
        return ACK

    clock = FakeClock(time.time())
    worker = make_worker(slow, clock)
    worker.run_once()
    time.sleep(0.2)
    clock.advance(pipeline.SEND_CLAIM_S + 1)  # every claim has run out, the sends have not ended
    worker.run_once()
    time.sleep(0.2)
    gate.set()
    for _ in range(50):
        if all(r.state != "pending" for r in outbox(database)):
            break
        time.sleep(0.05)
        worker.run_once()
    assert len(calls) == len(set(calls)) >= 2, calls  # those in flight, each once
    # those sent are delivered (their claims were not taken over); one that waited past its
    # request's TTL while every sender was busy (as many as the worker has) expired unsent
    states = sorted(r.state for r in outbox(database))
    assert states == ["delivered"] * len(calls) + ["expired"] * (3 - len(calls)), (calls, states)


def test_a_broken_http_answer_is_a_failed_attempt_and_the_callback_expires(bpp, bap_client, bap, make_worker,
                                                                           database) -> None:  # noqa: ANN001
    _store(bpp, bap_client, bap)

    def broken(url, body, headers):  # noqa: ANN001, ANN202
        raise http.client.BadStatusLine("garbage")

    clock = FakeClock(time.time())
    worker = make_worker(broken, clock)
    for _ in range(8):
        worker.run_once()
        time.sleep(0.1)
        clock.advance(3600)
    (row,) = outbox(database)
    assert row.state == "expired" and row.attempts >= 1 and "BadStatusLine" in row.last_error


def test_a_request_whose_processing_crashes_is_answered_with_an_error_on_the_third_try(
        bpp, bap_client, bap, make_worker, database, monkeypatch) -> None:  # noqa: ANN001
    _store(bpp, bap_client, bap)

    def crash(*_a, **_k):  # noqa: ANN002, ANN003, ANN202
        raise RuntimeError("a bug in a handler")

    monkeypatch.setattr(beckn_actions, "handle", crash)
    clock = FakeClock(time.time())
    worker = make_worker(lambda *_a: ACK, clock)
    for _ in range(3):
        worker.run_once()
        clock.advance(5)
    with database.transaction() as s:
        (row,) = s.scalars(select(store.BecknInbox)).all()
        assert (row.state, row.attempts) == ("failed", 3)
    (cb,) = outbox(database)
    assert json.loads(cb.body)["error"]["code"] == "40000"


def test_a_redirect_is_an_answer_not_a_new_destination() -> None:
    hits = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            hits.append(self.path)
            self.send_response(302)
            self.send_header("Location", "/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_POST  # noqa: N815

        def log_message(self, *_a: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        status, _ = http_post(f"http://127.0.0.1:{server.server_address[1]}/bap/on_search", b"{}", {})
    finally:
        server.shutdown()
        server.server_close()
    assert status == 302 and hits == ["/bap/on_search"]
    assert pipeline.judge(status, b"") == "HTTP 302"
