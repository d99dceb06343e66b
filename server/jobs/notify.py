"""The notifier: sends queued 2030.5 notifications (server.db.sub.Notification) to their
subscribers, and runs the clock-driven scan of event starts and ends (server.services.sep2.notify).

One process of a deployment does this at a time (elected through the database like the scheduler,
server.db.leader, under the name "notifier"); it runs beside every outbox drainer, so whichever
process holds the lease works and the others wait their turn.

Sending:
  * HTTPS with TLS 1.2 and ECDHE-ECDSA-AES128-CCM8 (GCM too when the server allows it), the
    server's own certificate as the client certificate, the receiver verified against the trust
    chain (and its host name). Plain http only where the operator allowed it
    (Settings.notification_allow), and the address actually connected to is checked against the
    same policy (a name that resolved elsewhere at subscription time gains nothing).
  * Per receiver (scheme://host:port) at most Settings.notification_connections connections, each
    kept alive; a subscription's notifications always go over the same one, in the order they
    were queued, so they arrive in order.
  * A 2xx answer is delivery. Anything else (an error status, a refused or broken connection, no
    answer within Settings.notification_timeout_seconds) fails the attempt: that notification is
    retried after 10 s, 100 s, 300 s, 30 min (DERFLEX_OUTBOX_RETRY_SECONDS) and then dead, and the
    receiver's other pending notifications wait with it, so nothing overtakes. Dead ones stay for
    operators to see and replay (`derflex notifications`, admin API).
  * Delivery is at least once: a notification is marked delivered soon after its answer (all that
    the lanes delivered, every MARK_AFTER_S, in one transaction beside the sending); a process
    killed between an answer and its mark sends those few again.
"""

from __future__ import annotations

import http.client
import logging
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from server.config import Settings
from server.db import sub as store
from server.db.leader import Leadership
from server.db.session import Database
from server.jobs.loop import BackgroundLoop
from server.services import outbox
from server.services.errors import Invalid
from server.services.sep2 import notify
from server.services.sep2.sub import check_address
from server.tls import CCM8, GCM

log = logging.getLogger("derflex.notify")

LEADER_NAME = "notifier"
MARK_AFTER_S = 0.2  # what the lanes delivered is marked this often (one transaction), and at the end of a pass
SCAN_EVERY_S = 1.0  # event starts and ends are scanned for at most this often (a write transaction)
RETENTION_S = 14 * 86_400  # delivered notifications are kept this long for operators
MEDIA_TYPE = "application/sep+xml"
ELECT_EVERY_S = 3.0  # well within the lease (server.db.leader.LEASE_SECONDS)


@dataclass(frozen=True)
class Sending:
    """Where notifications go from: our certificate and key, the trust chain receivers are checked
    against, and the policy."""

    cert: Path
    key: Path
    trust: Path
    allow: tuple[str, ...] = ()
    connections: int = 2
    timeout_s: float = 10.0
    allow_gcm: bool = False

    def context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_ciphers(f"{CCM8}:{GCM}" if self.allow_gcm else CCM8)
        ctx.load_cert_chain(self.cert, self.key)
        ctx.load_verify_locations(self.trust)
        return ctx


def sending_for(settings: Settings, cert: Path, key: Path, trust: Path) -> Sending:
    return Sending(cert, key, trust, tuple(settings.notification_allow), settings.notification_connections,
                   float(settings.notification_timeout_seconds), settings.tls_allow_gcm)


class SendError(Exception):
    """An attempt failed. `final`: retrying cannot help (the address is not allowed)."""

    def __init__(self, message: str, *, final: bool = False):
        super().__init__(message)
        self.final = final


class _Lane:
    """One keep-alive connection to one receiver."""

    def __init__(self, receiver: str, sending: Sending, ctx: ssl.SSLContext):
        self.receiver, self.sending, self.ctx = receiver, sending, ctx
        parts = urlsplit(receiver)
        self.https = parts.scheme == "https"
        self.host, self.port = parts.hostname or "", parts.port or (443 if self.https else 80)
        self.conn: http.client.HTTPConnection | None = None
        self.lock = threading.Lock()

    def _connect(self) -> http.client.HTTPConnection:
        timeout = self.sending.timeout_s
        conn: http.client.HTTPConnection
        if self.https:
            conn = http.client.HTTPSConnection(self.host, self.port, timeout=timeout, context=self.ctx)
        else:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            conn.connect()
        except (OSError, ssl.SSLError) as exc:
            conn.close()
            raise SendError(f"cannot connect to {self.receiver}: {exc}") from None
        assert conn.sock is not None
        try:
            check_address(conn.sock.getpeername()[0], self.sending.allow)
        except Invalid as exc:
            conn.close()
            raise SendError(f"{self.receiver} resolved to an address notifications may not go to: {exc.message}",
                            final=True) from None
        return conn

    def post(self, uri: str, body: bytes) -> None:
        parts = urlsplit(uri)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        headers = {"Content-Type": MEDIA_TYPE, "Content-Length": str(len(body)), "Host": parts.netloc}
        for fresh in (False, True):
            reused = self.conn is not None
            if self.conn is None:
                self.conn = self._connect()
            try:
                self.conn.request("POST", path, body=body, headers=headers)
                resp = self.conn.getresponse()
                resp.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                self.close()
                if reused and not fresh:
                    continue  # the receiver closed an idle keep-alive connection: once more, anew
                raise SendError(f"{self.receiver} closed the connection: {exc}") from None
            except (OSError, http.client.HTTPException, ssl.SSLError) as exc:
                self.close()
                raise SendError(f"{self.receiver}: {type(exc).__name__}: {exc}") from None
            if resp.will_close:
                self.close()
            if 200 <= resp.status < 300:
                return
            raise SendError(f"{self.receiver} answered HTTP {resp.status}")

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except OSError:
                pass
            self.conn = None


class Notifier(BackgroundLoop):
    """`start()` / `stop()` the elected sender and scanner; `run_once()` for one pass."""

    thread_name = "notifier"

    def __init__(self, db: Database, sending: Sending, *, default_poll_rate: int = 900,
                 schedule: Sequence[float] = outbox.DEFAULT_SCHEDULE, clock: Callable[[], float] = time.time,
                 poll_s: float = 0.25, batch: int = 2000, holder: str | None = None,
                 elect: bool = True):
        self.db, self.sending, self.clock, self.poll_s, self.batch = db, sending, clock, poll_s, batch
        self.default_poll_rate = default_poll_rate
        self.schedule = tuple(schedule)
        self.ctx = sending.context()
        self.elect = elect
        self.leadership = Leadership(db.engine, LEADER_NAME, holder or f"{socket.gethostname()}:{uuid.uuid4().hex[:8]}",
                                     clock=clock)
        self._lanes: dict[tuple[str, int], _Lane] = {}
        self._pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="notify-send")
        self._next_prune = self._next_election = 0.0
        self._next_scan = float("-inf")
        self._sent_ids: list[int] = []  # delivered, not marked yet
        self._sent_lock = threading.Lock()
        # Held around this process's write transactions that share SQLite's one write lock with an
        # outbox drainer in this process (server.jobs.outbox shares it): waiting here, a mark gets
        # its turn as soon as the drainer commits; waiting in SQLite's busy handler (which sleeps
        # and retries) it loses every race to the drainer's next transaction.
        self.write_turn = threading.Lock()
        self.sent = self.failed = 0
        super().__init__()

    # ---------------------------------------------------------------------------- one pass
    def run_once(self) -> int:
        """Scan the clock's transitions and send what is due; how many notifications were tried."""
        now = self.clock()
        if self.elect and not self._lead(now):
            self._close_lanes()
            return 0
        if now >= self._next_scan or now < self._next_scan - SCAN_EVERY_S:  # (a clock set back)
            self._next_scan = now + SCAN_EVERY_S
            try:
                with self.write_turn:
                    notify.scan_events(self.db, now, default_rate=self.default_poll_rate)
            except Exception:  # sending must go on; the cursor did not move, the scan is retried
                log.exception("notifier: scanning event transitions failed")
        return self.send_due(now)

    def _lead(self, now: float) -> bool:
        """Whether this process leads; the lease is renewed every few seconds, not every pass."""
        if now >= self._next_election or not self.leadership.leader:
            if now >= self._next_election:
                self.leadership.acquire()
                self._next_election = now + ELECT_EVERY_S
        return self.leadership.leader

    def send_due(self, now: float) -> int:
        """Send what is due (at most `batch`), each lane on a thread of the pool; what they
        delivered is marked every MARK_AFTER_S from here, so no lane waits for the database (on
        SQLite a mark waits its turn for the write lock), and all of it before the next pass
        reads what is due."""
        with self.db.read() as c:
            rows = store.due(c, now, self.batch)
        if not rows:
            return 0
        lanes: dict[tuple[str, int], list[Any]] = {}
        k = max(1, self.sending.connections)
        for row in rows:
            lanes.setdefault((row.receiver, row.subscription_id % k), []).append(row)
        futures = [self._pool.submit(self._send_lane, key, todo) for key, todo in lanes.items()]
        while True:
            _, running = wait(futures, timeout=MARK_AFTER_S)
            self._mark_sent()
            if not running:
                break
        for f in futures:
            if f.exception() is not None:
                log.error("notifier: a send lane failed: %s", f.exception())
        return len(rows)

    def _lane(self, key: tuple[str, int]) -> _Lane:
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = _Lane(key[0], self.sending, self.ctx)
        return lane

    def _send_lane(self, key: tuple[str, int], rows: Sequence[Any]) -> None:
        lane = self._lane(key)
        with lane.lock:
            for row in rows:
                if self._stop.is_set():
                    break
                try:
                    lane.post(row.uri, row.body.encode("utf-8"))
                except SendError as exc:
                    self._mark_sent()  # what went before it is delivered: not held back with it
                    self._failed(row, str(exc), exc.final)
                    break  # this subscription's later notifications wait: nothing overtakes
                with self._sent_lock:
                    self._sent_ids.append(row.id)

    def _mark_sent(self) -> None:
        """Mark what the lanes delivered since the last mark, in one transaction."""
        with self._sent_lock:
            ids, self._sent_ids = self._sent_ids, []
        if ids:
            with self.write_turn, self.db.transaction() as s:
                store.delivered(s, ids, self.clock())
            self.sent += len(ids)

    def _failed(self, row: Any, error: str, final: bool) -> None:
        now = self.clock()
        retry_at = None if final or row.attempts >= len(self.schedule) else now + self.schedule[row.attempts]
        with self.write_turn, self.db.transaction() as s:
            store.failed(s, row.id, row.receiver, error, retry_at, now)
        self.failed += 1
        if retry_at is None:
            log.error("notifier: notification %s to %s is dead after %s attempts: %s", row.id, row.uri,
                      row.attempts + 1, error)
        else:
            log.warning("notifier: notification %s to %s failed (attempt %s), retried in %.0f s: %s", row.id,
                        row.uri, row.attempts + 1, retry_at - now, error)

    def _prune(self) -> None:
        now = self.clock()
        if now < self._next_prune:
            return
        self._next_prune = now + 3600.0
        with self.db.transaction() as s:
            store.prune(s, now - RETENTION_S)

    def _close_lanes(self) -> None:
        for lane in self._lanes.values():
            lane.close()
        self._lanes.clear()

    # ---------------------------------------------------------------------------- lifecycle
    def _run(self) -> None:
        while not self._stop.is_set():
            busy = 0
            try:
                busy = self.run_once()
                if self.leadership.leader or not self.elect:
                    self._prune()
            except Exception:  # never let the notifier die: log and try again
                log.exception("notifier: pass failed")
            if not busy:
                self._wake.wait(self.poll_s)
                self._wake.clear()

    def _started(self) -> None:
        log.info("notifier: running (elected as %r)", LEADER_NAME)

    def _stopped(self) -> None:
        self._close_lanes()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.leadership.release()
