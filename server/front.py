"""The front door of every `derflex serve` worker: no handful of clients can stall the others.

gunicorn's gthread worker gives each new connection a thread of its pool for the TLS handshake and
the read of the request head, so eight silent connections (eight threads) stalled every device.
`FrontWorker` is that worker with its event loop doing this part instead: a connection is accepted,
TLS-handshaken (non-blocking) and read until its request head is whole — and its body too, when it
announces a length up to `max_body_bytes` — with a deadline for each stage, before a WSGI thread
sees it. A thread then parses a request that is already in memory. A kept-alive connection goes the
same way for each next request. What the loop holds meanwhile costs a file descriptor and a buffer,
never a thread, so hundreds of silent or byte-a-second clients leave every thread to the devices.

Limits (`FrontLimits`, from `Settings`):
- `handshake_timeout`: from accept to a finished TLS handshake; `head_timeout`: from then (or from
  the first byte of a kept-alive connection's next request) to a whole request. Late → closed.
- `max_pending_per_address`: connections from one address not yet past their first request; one
  more closes that address's oldest (0: no limit; trusted proxies are exempt). When the worker's
  connection limit (gunicorn's `worker_connections`) is reached, the oldest connection still in
  its handshake or head is closed for the new one: a device that completes its handshake in
  milliseconds is never the oldest.
- `io_timeout`: every blocking read or write a thread still makes on a connection (a chunked
  body, an `Expect: 100-continue` body, the answer) is bounded by it.

Identity is untouched: the thread gets the same `ssl.SSLSocket` gunicorn would have made, with the
verified peer certificate (`server/api/client.py`). Plain listeners (the Beckn BPP, proxy mode) go
through the same front without TLS. This module leans on gthread's internals (`TConn`,
`enqueue_req`, `on_client_socket_readable`, `murder_pending`); `tests/test_front.py` fails first if
a gunicorn release changes them.
"""

from __future__ import annotations

import errno
import heapq
import itertools
import logging
import resource
import selectors
import socket
import ssl
import time
from dataclasses import dataclass, field
from typing import Any

from gunicorn import http
from gunicorn import sock as gsock
from gunicorn.workers.gthread import TConn, ThreadWorker

log = logging.getLogger("derflex.front")

_HANDSHAKE, _HEAD = "handshake", "head"
_RECV = 64 * 1024


@dataclass(frozen=True)
class FrontLimits:
    handshake_timeout: float = 10.0
    head_timeout: float = 10.0
    io_timeout: float = 10.0
    max_pending_per_address: int = 256
    exempt_addresses: tuple[str, ...] = ()  # trusted proxies: every client comes through them
    max_body_prefetch: int = 256 * 1024
    max_head: int = 64 * 1024


def request_end(buf: bytes, *, max_head: int, max_body: int) -> int | None:
    """How many bytes of `buf` a thread needs to serve its first request without waiting on the
    client: the head, plus the body when it has a Content-Length up to `max_body` (not for a
    chunked body or an `Expect: 100-continue`: the thread reads those, bounded by `io_timeout`).
    None: keep reading. A head longer than `max_head` goes to the parser as it is (it refuses it)."""
    start = len(buf) - len(buf.lstrip(b"\r\n"))
    end, sep = buf.find(b"\r\n\r\n", start), 4
    bare = buf.find(b"\n\n", start)
    if bare >= 0 and (end < 0 or bare < end):
        end, sep = bare, 2
    if end < 0:
        return len(buf) if len(buf) - start > max_head else None
    head_end = end + sep
    length: int | None = None
    for line in buf[start:end].split(b"\n")[1:]:
        name, _, value = line.partition(b":")
        name, value = name.strip().lower(), value.strip().lower()
        if name == b"transfer-encoding" or (name == b"expect" and value == b"100-continue"):
            return head_end
        if name == b"content-length":
            if length is not None or not value.isdigit():
                return head_end  # the parser refuses it
            length = int(value)
    if not length or length > max_body:
        return head_end
    return head_end + length if len(buf) >= head_end + length else None


@dataclass(eq=False)
class _Arrival:
    """A connection on its way to a thread: its stage, deadline and what it sent so far."""

    conn: TConn
    address: str
    first: bool  # a new connection (counted against its address), not a kept-alive one
    stage: str
    deadline: float
    buf: bytearray = field(default_factory=bytearray)
    events: int = 0


def _bounded(cls: type[socket.socket], timeout: float) -> type[socket.socket]:
    """A socket class whose blocking mode is a bounded timeout: gthread's threads set every
    connection blocking before they read, and a client that stops sending would hold one forever."""

    def setblocking(self: socket.socket, flag: bool) -> None:
        if flag:
            self.settimeout(timeout)
        else:
            cls.setblocking(self, False)

    return type(f"Bounded{cls.__name__}", (cls,), {"setblocking": setblocking})


def _raise_fd_limit(want: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            log.warning("cannot raise the open-file limit to %d (soft %d, hard %d)", target, soft, hard)


class FrontWorker(ThreadWorker):  # type: ignore[misc]
    """gthread with the handshake and the request head read on its event loop (module docstring)."""

    limits = FrontLimits()

    @classmethod
    def with_limits(cls, limits: FrontLimits) -> type[FrontWorker]:
        return type("FrontWorker", (cls,), {"limits": limits})

    def init_process(self) -> None:
        self._arrivals: dict[TConn, _Arrival] = {}  # oldest first
        self._by_address: dict[str, dict[TConn, None]] = {}
        self._deadlines: list[tuple[float, int, _Arrival]] = []
        self._order = itertools.count()
        self._swept = 0.0
        self._socket_class = _bounded(socket.socket, self.limits.io_timeout)
        self._tls: ssl.SSLContext | None = None
        if self.cfg.is_ssl:
            self._tls = gsock.ssl_context(self.cfg)
            self._tls.sslsocket_class = _bounded(ssl.SSLSocket, self.limits.io_timeout)  # type: ignore[assignment]
        _raise_fd_limit(self.cfg.worker_connections + 256)
        super().init_process()

    # --- gthread's entry points ----------------------------------------------------------------

    def accept(self, listener: socket.socket) -> None:
        try:
            client, addr = listener.accept()
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                log.warning("out of file descriptors: closing the oldest connection not yet serving")
                self._evict_oldest(None)
            elif exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        if isinstance(client, socket.socket) and client.family in (socket.AF_INET, socket.AF_INET6):
            client = self._socket_class(client.family, client.type, client.proto, fileno=client.detach())
        conn = TConn(self.cfg, client, addr, listener.getsockname())  # sets it non-blocking
        address = addr[0] if isinstance(addr, tuple) else str(addr)
        self._make_room(address)
        if self._tls is not None:
            try:
                conn.sock = self._tls.wrap_socket(
                    conn.sock, server_side=True, do_handshake_on_connect=False,
                    suppress_ragged_eofs=self.cfg.suppress_ragged_eofs,
                )
            except OSError:
                self._close(conn)
                return
        conn.initialized = True  # gthread must not wrap it again nor wait for data in a thread
        conn.data_ready = True
        stage = _HANDSHAKE if self._tls is not None else _HEAD
        timeout = self.limits.handshake_timeout if self._tls is not None else self.limits.head_timeout
        self._track(_Arrival(conn, address, True, stage, time.monotonic() + timeout))

    def enqueue_req(self, conn: TConn) -> None:
        """A kept-alive connection that became readable, or one whose last read took in part of
        its next request: that request is read here before a thread gets it."""
        buffered = conn.parser.unreader.buf.getvalue() if conn.parser is not None else b""
        if conn.parser is not None:
            conn.parser.unreader.buf = type(conn.parser.unreader.buf)()
        arrival = _Arrival(conn, "", False, _HEAD, time.monotonic() + self.limits.head_timeout)
        arrival.buf += buffered
        self._track(arrival)

    def murder_pending(self) -> None:
        super().murder_pending()
        now = time.monotonic()
        if not self.alive:  # stopping: nothing still arriving will be served
            for arrival in list(self._arrivals.values()):
                self._drop(arrival, "the worker is stopping")
            return
        if now < self._swept + 0.1:
            return
        self._swept = now
        while self._deadlines and self._deadlines[0][0] <= now:
            deadline, _, arrival = heapq.heappop(self._deadlines)
            if self._arrivals.get(arrival.conn) is arrival and arrival.deadline == deadline:
                self._drop(arrival, f"no whole {arrival.stage} in time")

    # --- the arrival state machine -------------------------------------------------------------

    def _track(self, arrival: _Arrival) -> None:
        self._arrivals[arrival.conn] = arrival
        if arrival.first:
            self._by_address.setdefault(arrival.address, {})[arrival.conn] = None
        heapq.heappush(self._deadlines, (arrival.deadline, next(self._order), arrival))
        self._step(arrival)

    def _step(self, arrival: _Arrival, _key: Any = None) -> None:
        conn = arrival.conn
        try:
            if arrival.stage == _HANDSHAKE:
                conn.sock.do_handshake()
                arrival.stage = _HEAD
                arrival.deadline = time.monotonic() + self.limits.head_timeout
                heapq.heappush(self._deadlines, (arrival.deadline, next(self._order), arrival))
            while True:
                end = request_end(bytes(arrival.buf), max_head=self.limits.max_head,
                                  max_body=self.limits.max_body_prefetch)
                if end is not None and not self._readable_now(conn):
                    self._hand_over(arrival)
                    return
                chunk = conn.sock.recv(_RECV)
                if not chunk:
                    self._drop(arrival, "closed by the client", quiet=True)
                    return
                arrival.buf += chunk
                if len(arrival.buf) > self.limits.max_head + self.limits.max_body_prefetch:
                    self._hand_over(arrival)  # the parser refuses it; never an unbounded buffer
                    return
        except ssl.SSLWantReadError:
            self._wait(arrival, selectors.EVENT_READ)
        except ssl.SSLWantWriteError:
            self._wait(arrival, selectors.EVENT_WRITE)
        except BlockingIOError:
            self._wait(arrival, selectors.EVENT_READ)
        except (OSError, ValueError) as exc:  # ssl.SSLError included: a refused handshake
            self._drop(arrival, f"{arrival.stage} failed: {exc}", quiet=True)

    def _readable_now(self, conn: TConn) -> bool:
        """Decrypted bytes already inside the TLS object (the selector cannot see them)."""
        return isinstance(conn.sock, ssl.SSLSocket) and conn.sock.pending() > 0

    def _wait(self, arrival: _Arrival, events: int) -> None:
        if arrival.events == events:
            return
        if arrival.events:
            self.poller.modify(arrival.conn.sock, events, lambda _sock: self._step(arrival))
        else:
            self.poller.register(arrival.conn.sock, events, lambda _sock: self._step(arrival))
        arrival.events = events

    def _untrack(self, arrival: _Arrival) -> None:
        self._arrivals.pop(arrival.conn, None)
        if arrival.first:
            same = self._by_address.get(arrival.address)
            if same is not None:
                same.pop(arrival.conn, None)
                if not same:
                    del self._by_address[arrival.address]
        if arrival.events:
            try:
                self.poller.unregister(arrival.conn.sock)
            except (KeyError, ValueError, OSError):
                pass
            arrival.events = 0

    def _hand_over(self, arrival: _Arrival) -> None:
        self._untrack(arrival)
        conn = arrival.conn
        if conn.parser is None:
            conn.parser = http.get_parser(self.cfg, conn.sock, conn.client)
        conn.parser.unreader.unread(bytes(arrival.buf))
        ThreadWorker.enqueue_req(self, conn)

    def _drop(self, arrival: _Arrival, why: str, *, quiet: bool = False) -> None:
        self._untrack(arrival)
        (log.debug if quiet else log.info)("closed a connection from %s: %s", arrival.conn.client, why)
        self._close(arrival.conn)

    def _close(self, conn: TConn) -> None:
        self.nr_conns -= 1
        try:
            conn.close()
        except OSError:
            pass

    def _make_room(self, address: str) -> None:
        limit = self.limits.max_pending_per_address
        if limit and address not in self.limits.exempt_addresses:
            same = self._by_address.get(address, {})
            while len(same) >= limit:
                self._drop(self._arrivals[next(iter(same))], f"more than {limit} connections arriving from it")
        while self.nr_conns > self.cfg.worker_connections - 1 and self._arrivals:
            self._evict_oldest("the worker's connection limit is reached")

    def _evict_oldest(self, why: str | None) -> None:
        if self._arrivals:
            self._drop(next(iter(self._arrivals.values())), why or "out of file descriptors")
        elif self.keepalived_conns:
            conn = self.keepalived_conns.popleft()  # the longest idle
            try:
                self.poller.unregister(conn.sock)
            except (KeyError, ValueError, OSError):
                pass
            self._close(conn)
        else:
            time.sleep(0.05)  # nothing to give up: let the threads finish something
