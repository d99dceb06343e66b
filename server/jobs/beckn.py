"""The Beckn worker: answers stored requests into the outbox and delivers the outbox, in
background threads of a server process.

Every process that serves the BPP runs one; they share the work through the database (each row is
claimed with one conditional UPDATE), so several processes neither lose nor double a callback.
A request is processed the moment it is stored (`wake`), and everything left over — a restart,
another process's crash — within `poll_s`. Deliveries run on a small thread pool so one slow BAP
does not hold the others up; every HTTP call has a timeout.
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from server.beckn.signing import SigningKey
from server.db import beckn as store
from server.db.session import Database
from server.jobs.loop import BackgroundLoop
from server.services.bpp import pipeline as beckn
from server.services.bpp.actions import Provider

log = logging.getLogger("derflex.beckn")
SEND_TIMEOUT_S = 5.0
MAX_ANSWER_BYTES = 65_536


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer (a failed attempt), never followed: following it would carry our
    signed POST, as a GET, to wherever the BAP points — anywhere, internal addresses included."""

    def redirect_request(self, *_args: object, **_kwargs: object) -> None:
        return None


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())


def http_post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    """POST and return (status, the first 64 KiB of the answer); OSError on network failures."""
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with _OPENER.open(req, timeout=SEND_TIMEOUT_S) as resp:
            return resp.status, resp.read(MAX_ANSWER_BYTES)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(MAX_ANSWER_BYTES)


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
