"""The Beckn worker: answers stored requests into the outbox and delivers the outbox, in
background threads of a server process.

Every process that serves the BPP runs one; they share the work through the database (each row is
claimed with one conditional UPDATE), so several processes neither lose nor double a callback.
A request is processed the moment it is stored (`wake`), and everything left over — a restart,
another process's crash — within `poll_s`. Deliveries run on a small thread pool so one slow BAP
does not hold the others up; every HTTP call is bounded (http_post).
"""

from __future__ import annotations

import http.client
import logging
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

from server.beckn.signing import SigningKey
from server.db import beckn as store
from server.db.session import Database
from server.jobs.loop import BackgroundLoop
from server.services.bpp import pipeline as beckn
from server.services.bpp.actions import Provider

log = logging.getLogger("derflex.beckn")
CONNECT_TIMEOUT_S = 5.0  # to connect and hand the request over (each socket operation)
ANSWER_TIMEOUT_S = 30.0  # for the answer once the request is out whole: a slow BAP still gets it once
SEND_LIMIT_S = CONNECT_TIMEOUT_S + ANSWER_TIMEOUT_S + 5.0  # no send lasts longer, whatever the peer does
MAX_ANSWER_BYTES = 65_536
assert SEND_LIMIT_S < beckn.SEND_CLAIM_S, "a claim must outlive any send, or another worker sends it again"


def http_post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    """POST and return (status, the first 64 KiB of the answer).

    OSError when the request did not go out whole (refused, unreachable, connect timeout, reset while
    sending): safe to retry, the BAP never had it. `beckn.Unanswered` once it went out whole but no
    answer came within ANSWER_TIMEOUT_S (or the connection closed before a status line, or a 2xx
    answer's body was cut): the BAP may have it, so it is not retried. A redirect is an answer (a
    failed attempt), never followed: following it would carry our signed POST anywhere. A watchdog
    shuts the socket at SEND_LIMIT_S, so a peer that drips bytes cannot hold a sender longer."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise OSError(f"not an http(s) URL: {url[:80]!r}")
    cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = cls(parts.hostname, parts.port, timeout=CONNECT_TIMEOUT_S)
    cut = threading.Event()
    watchdog = threading.Timer(SEND_LIMIT_S, _shut, (conn, cut))
    watchdog.daemon = True
    watchdog.start()
    try:
        conn.request("POST", parts.path or "/", body=body, headers=headers)  # OSError: not out whole
        if conn.sock is not None:
            conn.sock.settimeout(ANSWER_TIMEOUT_S)
        try:
            resp = conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            if isinstance(exc, OSError) or cut.is_set():  # timeout, closed, reset or cut: no status line
                raise beckn.Unanswered(f"no answer within {ANSWER_TIMEOUT_S:g} s ({type(exc).__name__})") from exc
            raise  # a garbled status line is an answer, a failed attempt: retried
        try:
            return resp.status, resp.read(MAX_ANSWER_BYTES)
        except (OSError, http.client.IncompleteRead) as exc:
            if 200 <= resp.status < 300:  # taken, but we cannot read whether it was an ACK
                raise beckn.Unanswered(f"HTTP {resp.status} with its body cut ({type(exc).__name__})") from exc
            return resp.status, b""  # an error answer all the same: retried
    finally:
        watchdog.cancel()
        conn.close()


def _shut(conn: http.client.HTTPConnection, cut: threading.Event) -> None:
    cut.set()
    sock = conn.sock
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class BecknWorker(BackgroundLoop):
    thread_name = "beckn-worker"

    def __init__(self, db: Database, provider: Provider, key: SigningKey, *, send: beckn.Sender = http_post,
                 clock: Callable[[], float] = time.time, senders: int = 8, poll_s: float = 0.5,
                 eager: bool = False):
        self.db, self.provider, self.key, self.send, self.clock = db, provider, key, send, clock
        self.poll_s = poll_s
        self.senders = senders
        # eager: a process of its own goes on at once while there is work; beside request threads
        # (eager=False) it pauses between passes, or it would starve the ACKs of the interpreter
        self.eager = eager
        super().__init__()
        self._pool = ThreadPoolExecutor(senders, thread_name_prefix="beckn-send")
        self._sending: set[int] = set()
        self._lock = threading.Lock()

    def _stopped(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def run_once(self) -> int:
        """Process what was received, then hand what is due to the senders; how many rows it took."""
        now = self.clock()
        with self.db.read() as c:
            received = store.received_ids(c, now)
        for inbox_id in received:
            try:
                beckn.process(self.db, inbox_id, self.clock(), self.provider)
            except Exception as exc:  # one bad row must not stop the others
                log.exception("beckn: processing request %s failed", inbox_id)
                beckn.fail_processing(self.db, inbox_id, self.clock(), self.provider, repr(exc))
        with self._lock:  # claim only what the senders can take now, never a row still being sent
            busy = set(self._sending)
        claimed = beckn.claim_due(self.db, self.clock(), self.senders - len(busy), busy=busy)
        for delivery in claimed:
            with self._lock:
                self._sending.add(delivery.id)
            self._pool.submit(self._deliver, delivery)
        return len(received) + len(claimed)

    def _deliver(self, delivery: beckn.Delivery) -> None:
        try:
            state = beckn.deliver_once(self.db, delivery, self.key, self.send, self.clock)
            if state != "delivered":
                log.info("beckn: callback %s to %s: %s", delivery.id, delivery.url, state)
        except Exception:
            log.exception("beckn: delivering callback %s failed", delivery.id)
        finally:
            with self._lock:
                self._sending.discard(delivery.id)
            self._wake.set()  # a sender is free: the next due callback need not wait for the poll

    def _run(self) -> None:
        while not self._stop.is_set():
            busy = 0
            try:
                busy = self.run_once()
            except Exception:
                log.exception("beckn: worker pass failed")
            if not (busy and self.eager):  # idle, or sharing the interpreter: wait for a wake or the poll
                self._wake.wait(self.poll_s)
            self._wake.clear()
