"""The Beckn worker: answers stored requests into the outbox and delivers the outbox, in
background threads of a server process.

Every process that serves the BPP runs one; they share the work through the database (each row is
claimed with one conditional UPDATE), so several processes neither lose nor double a callback.
A request is processed the moment it is stored (`wake`), and everything left over — a restart,
another process's crash — within `poll_s`. Deliveries run on a small thread pool so one slow BAP
does not hold the others up; every HTTP call is bounded (http_post).

Transactions are batched, because each one costs a fixed 0.5–0.8 ms of CPU (and a WAL flush on
PostgreSQL) whatever it does: the requests found in a pass are processed `batch` at a time in one
transaction each (a savepoint per request), and the senders record their outcomes as a group
commit — a sender that finishes while another is recording leaves its outcome to the next
recorder, which writes every outcome waiting in one transaction.
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
# At most 2 x senders rows are claimed and not yet sent (one in flight and one queued per sender):
# a queued row waits for at most one send before its own, so a claim outlives both.
assert 2 * SEND_LIMIT_S < beckn.SEND_CLAIM_S, "a claim must outlive a wait and a send, or another worker sends it again"


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
                 eager: bool = False, batch: int | None = None):
        self.db, self.provider, self.key, self.send, self.clock = db, provider, key, send, clock
        self.poll_s = poll_s
        self.senders = senders
        # requests per processing transaction. On SQLite one: a batch holds the one write lock the
        # ACKs' inserts and the senders' records wait for (in the busy handler's sleeps), which put
        # the callbacks' p99 at 1.1 s with 8 against 0.23 s with 1 (docs/benchmarks.md); its
        # transactions cost CPU but no WAL flush, so batching saved nothing measurable there
        self.batch = batch or (1 if db.url.startswith("sqlite") else 32)
        self._outcomes: list[beckn.Attempt] = []
        self._recording = threading.Lock()
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
        """Process what was received, handing what is due to the senders after every batch (so a
        long pass of processing does not starve delivery); how many rows it took."""
        now = self.clock()
        with self.db.read() as c:
            received = store.received_ids(c, now)
        claimed = 0
        for i in range(0, len(received), self.batch):
            if i:
                claimed += self._hand_out()
            chunk = received[i:i + self.batch]
            crashed: list[tuple[int, Exception]] = []
            try:
                beckn.process_many(self.db, chunk, self.clock(), self.provider)
            except Exception as exc:  # rolled back whole: one at a time, which isolates the bad one
                log.warning("beckn: a batch of %d requests failed (%r); one by one", len(chunk), exc)
                crashed = self._one_by_one(chunk)
            for inbox_id, exc in crashed:  # one bad row must not stop the others
                log.error("beckn: processing request %s failed", inbox_id, exc_info=exc)
                beckn.fail_processing(self.db, inbox_id, self.clock(), self.provider, repr(exc))
        return len(received) + claimed + self._hand_out()

    def _hand_out(self) -> int:
        """Claim due callbacks for the senders: at most one in flight and one queued per sender
        (see SEND_CLAIM_S above), never a row still being sent; how many were claimed."""
        with self._lock:
            busy = set(self._sending)
        room = 2 * self.senders - len(busy)
        if room <= 0:
            return 0
        claimed = beckn.claim_due(self.db, self.clock(), room, busy=busy)
        for delivery in claimed:
            with self._lock:
                self._sending.add(delivery.id)
            self._pool.submit(self._deliver, delivery)
        return len(claimed)

    def _one_by_one(self, inbox_ids: list[int]) -> list[tuple[int, Exception]]:
        crashed = []
        for inbox_id in inbox_ids:
            try:
                beckn.process(self.db, inbox_id, self.clock(), self.provider)
            except Exception as exc:  # noqa: BLE001
                crashed.append((inbox_id, exc))
        return crashed

    def _deliver(self, delivery: beckn.Delivery) -> None:
        try:
            attempt = beckn.send_once(delivery, self.key, self.send, self.clock)
            with self._lock:
                self._outcomes.append(attempt)
            self._record_waiting()
        except Exception:
            log.exception("beckn: delivering callback %s failed", delivery.id)
        finally:
            with self._lock:
                self._sending.discard(delivery.id)
            self._wake.set()  # a sender is free: the next due callback need not wait for the poll

    def _record_waiting(self) -> None:
        """Group commit: record every outcome waiting, in one transaction. A sender that finds
        another one recording waits for it and records what arrived meanwhile (often nothing: its
        own outcome went with the other's batch). A row's claim stays until its outcome is
        recorded, so no other worker sends it meanwhile; a failed recording leaves the claims to
        expire (SEND_CLAIM_S) and the rows are sent again, as after a crash."""
        with self._recording:
            with self._lock:
                batch, self._outcomes = self._outcomes, []
            if not batch:
                return
            try:
                states = beckn.record_attempts(self.db, batch)
            except Exception:
                log.exception("beckn: recording %d callback outcomes failed", len(batch))
                return
        for attempt, state in zip(batch, states, strict=True):
            if state != "delivered":
                log.info("beckn: callback %s to %s: %s", attempt.delivery.id, attempt.delivery.url, state)

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
