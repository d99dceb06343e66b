"""A 2030.5 notification receiver for simulated devices: one HTTPS listener for a whole fleet.

Devices that subscribe (der_sim.agent in notification mode) give the server a notificationURI
under this receiver, one path per device: `https://HOST:PORT/n/<LFDI>`. The server POSTs each
Notification there; the receiver parses it (server.sep2.sub.parse_notification), hands it to the
device's sink and answers 204 at once. The device applies it on its own thread later (a sink only
queues), so a slow device never holds up the server's keep-alive connection.

TLS as the server speaks it (server.tls.server_context): TLS 1.2, ECDHE-ECDSA-AES128-CCM8 (GCM
too with `allow_gcm`), this receiver's certificate from the dev PKI, and the peer's certificate
required and verified against the trust file. Chaining to the trust file is not enough: every
device of the fleet does too, and a device must not be able to notify another. The peer must be a
server certificate (extendedKeyUsage serverAuth, server.pki.certificate_kind), and, when
`peers` is given, one of those exact certificates (SHA-256 of the DER).

Answers: 204 delivered; 404 a path that names no registered device; 400 a body that is not a
Notification of a resource devices subscribe to (MODELS); 415 not application/sep+xml; 413
larger than MAX_BODY; 405 not a POST. Counters say what arrived (`stats()`).

Threads are bounded: `threads` workers (default 8) serve connections, each handshaking and then
serving its connection's keep-alive requests; accepted connections wait in a queue of `backlog`
(default 64), and one more is closed at once. A worker closes its connection when it has been idle
`idle_timeout` seconds, or is idle or answering (then with `Connection: close`) while other
connections wait, so waiting connections are served. The server opens a few connections per
receiver (Settings.notification_connections), so a handful of workers carry a fleet of thousands.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import re
import select
import socket
import socketserver
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from cryptography import x509

from server.pki import certificate_kind
from server.sep2.codec import DecodeError
from server.sep2.derp import DefaultDERControl, DERControlList, DERProgramList
from server.sep2.fsa import FunctionSetAssignmentsList
from server.sep2.models import MEDIA_TYPE, EndDevice
from server.sep2.sub import Notification, parse_notification
from server.tls import server_context

__all__ = ["MODELS", "NotificationReceiver", "Sink"]

log = logging.getLogger(__name__)

# What a simulated device subscribes to, so what a notification may carry.
MODELS = (DERControlList, DefaultDERControl, DERProgramList, FunctionSetAssignmentsList, EndDevice)
MAX_BODY = 4 * 1024 * 1024
PATH_PREFIX = "/n/"
FIRST_REQUEST_GRACE_S = 1.0  # a new connection keeps its worker this long for its first request
_LFDI = re.compile(r"[0-9A-Fa-f]{40}")

Sink = Callable[[Notification, Any], None]  # (the Notification, its parsed Resource or None)


class _Server(socketserver.TCPServer):
    """A TCP listener whose accepted connections are served by a fixed pool of threads."""

    allow_reuse_address = True
    request_queue_size = 128
    daemon_threads = True

    def __init__(self, owner: NotificationReceiver, address: tuple[str, int]) -> None:
        self.owner = owner
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        try:
            self.owner._waiting.put_nowait((request, client_address))
        except queue.Full:
            self.owner._count("connections_rejected")
            self.shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("notification receiver: error on a connection from %s", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        self.timeout = self.server.owner.idle_timeout
        super().setup()

    def handle(self) -> None:
        """Requests of one keep-alive connection, until it closes, idles `idle_timeout`, or others
        wait for a worker (the notifier reopens a connection it finds closed while idle)."""
        owner = self.server.owner
        self.close_connection = not owner._await_request(self.connection, grace=FIRST_REQUEST_GRACE_S)
        while not self.close_connection:
            self.handle_one_request()
            if not self.close_connection and not owner._await_request(self.connection):
                break

    def do_POST(self) -> None:  # noqa: N802
        owner = self.server.owner
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            return self._answer(411, "Content-Length required", close=True)
        if int(length) > MAX_BODY:
            return self._answer(413, "too large", close=True)
        body = self.rfile.read(int(length))
        if not content_type_ok(self.headers.get("Content-Type")):
            owner._count("answered_415")
            return self._answer(415, f"Content-Type must be {MEDIA_TYPE}")
        status, text = owner._dispatch(self.path, body)
        self._answer(status, text)

    def _not_post(self) -> None:
        self._answer(405, "POST only", allow="POST")

    do_GET = do_PUT = do_DELETE = do_HEAD = do_PATCH = _not_post  # noqa: N815

    def _answer(self, status: int, text: str, *, close: bool = False, allow: str | None = None) -> None:
        owner = self.server.owner
        body = b"" if status == 204 else text.encode("utf-8")
        self.send_response(status)
        if allow:
            self.send_header("Allow", allow)
        if body:
            self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        if close or not owner._waiting.empty() or owner._stopping.is_set():
            self.send_header("Connection", "close")  # sets close_connection: the worker is free again
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        log.debug("notification receiver: " + format, *args)


class NotificationReceiver:
    """`start()` it, `register(lfdi, sink)` each device, give devices `url_for(lfdi)`, `stop()`."""

    def __init__(self, cert: Path | str, key: Path | str, trust: Path | str, *, host: str = "127.0.0.1",
                 port: int = 0, threads: int = 8, backlog: int = 64, idle_timeout: float = 30.0,
                 handshake_timeout: float = 5.0, peers: Collection[bytes] | None = None,
                 allow_gcm: bool = False) -> None:
        if threads < 1 or backlog < 1:
            raise ValueError("threads and backlog must be at least 1")
        self.cert, self.key, self.trust = Path(cert), Path(key), Path(trust)
        self.host, self.port = host, port
        self.threads, self.idle_timeout, self.handshake_timeout = threads, idle_timeout, handshake_timeout
        self.peers = None if peers is None else frozenset(peers)
        self.allow_gcm = allow_gcm
        self._sinks: dict[str, Sink] = {}
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._waiting: queue.Queue[tuple[Any, Any] | None] = queue.Queue(maxsize=backlog)
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._workers: list[threading.Thread] = []
        self._live: set[socket.socket] = set()  # connections being served (closed on stop)

    # ------------------------------------------------------------------------------ devices
    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the receiver is not started: its port is not known yet")
        shown = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{shown}:{self.port}{PATH_PREFIX}"

    def url_for(self, lfdi: str) -> str:
        """The notificationURI of one device."""
        return self.base_url + lfdi.upper()

    def register(self, lfdi: str, sink: Sink) -> None:
        with self._lock:
            self._sinks[lfdi.upper()] = sink

    def unregister(self, lfdi: str) -> None:
        with self._lock:
            self._sinks.pop(lfdi.upper(), None)

    def stats(self) -> dict[str, int]:
        """received (dispatched to a device), by answer (answered_204, answered_400, …), connections
        (TLS handshakes completed), connections_refused (handshake failed or a peer that is not the
        server), connections_rejected (the queue was full)."""
        with self._lock:
            return dict(self._counts)

    def _count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] += n

    # ------------------------------------------------------------------------------ running
    def start(self) -> NotificationReceiver:
        if self._server is not None:
            return self
        self._ctx = server_context(self.cert, self.key, self.trust, allow_gcm=self.allow_gcm)
        self._stopping.clear()
        self._server = _Server(self, (self.host, self.port))
        self.port = int(self._server.server_address[1])
        self._workers = [threading.Thread(target=self._work, name=f"der-sim-notify-{i}", daemon=True)
                         for i in range(self.threads)]
        for w in self._workers:
            w.start()
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                         name="der-sim-notify-accept", daemon=True).start()
        log.info("notification receiver on %s (%d threads)", self.base_url, self.threads)
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        while True:  # connections accepted but never served
            try:
                item = self._waiting.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                _close(item[0])
        with self._lock:
            live = list(self._live)
        for sock in live:
            _close(sock)
        for _ in self._workers:
            self._waiting.put(None)
        for w in self._workers:
            w.join(5)
        self._workers = []

    def __enter__(self) -> NotificationReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------------------ serving
    def _work(self) -> None:
        while True:
            item = self._waiting.get()
            if item is None or self._stopping.is_set():
                if item is not None:
                    _close(item[0])
                return
            raw, address = item
            self._serve(raw, address)

    def _serve(self, raw: socket.socket, address: Any) -> None:
        server = self._server
        if server is None:
            _close(raw)
            return
        with self._lock:
            self._live.add(raw)
        conn: socket.socket = raw
        try:
            raw.settimeout(self.handshake_timeout)
            try:
                conn = self._ctx.wrap_socket(raw, server_side=True)
                self._check_peer(conn)
            except (OSError, ssl.SSLError, ValueError) as exc:
                self._count("connections_refused")
                log.warning("notification receiver: refused a connection from %s: %s", address, exc)
                return
            self._count("connections")
            with self._lock:
                self._live.add(conn)
            server.finish_request(conn, address)
        except Exception:  # one bad connection must not take a worker with it
            log.debug("notification receiver: a connection from %s failed", address, exc_info=True)
        finally:
            with self._lock:
                self._live.discard(raw)
                self._live.discard(conn)
            _close(conn)
            if conn is not raw:
                _close(raw)

    def _await_request(self, conn: Any, grace: float = 0.0) -> bool:
        """Whether the next request arrives on an idle connection before it should be given up:
        after `idle_timeout`, or once other connections wait (but not within `grace` seconds).
        (Clients that pipeline requests are not served well: bytes already read ahead into the
        handler's buffer are not seen here. The 2030.5 notifier waits for each answer.)"""
        began = time.monotonic()
        deadline = began + self.idle_timeout
        while True:
            if isinstance(conn, ssl.SSLSocket) and conn.pending():
                return True
            readable, _, _ = select.select([conn], [], [], 0.2)
            if readable:
                return True
            now = time.monotonic()
            if self._stopping.is_set() or now >= deadline or (not self._waiting.empty() and now >= began + grace):
                return False

    def _check_peer(self, conn: ssl.SSLSocket) -> None:
        der = conn.getpeercert(binary_form=True)
        if not der:
            raise ValueError("no client certificate")
        kind = certificate_kind(x509.load_der_x509_certificate(der))
        if kind != "server":
            raise ValueError(f"the peer's certificate is a {kind} certificate, not the server's")
        if self.peers is not None and hashlib.sha256(der).digest() not in self.peers:
            raise ValueError("the peer's certificate is not the server certificate this receiver expects")

    def _dispatch(self, path: str, body: bytes) -> tuple[int, str]:
        status, text = self._route(path, body)
        self._count(f"answered_{status}")
        return status, text

    def _route(self, path: str, body: bytes) -> tuple[int, str]:
        lfdi = path.split("?", 1)[0].removeprefix(PATH_PREFIX)
        if not path.startswith(PATH_PREFIX) or not _LFDI.fullmatch(lfdi):
            return 404, "no such device"
        with self._lock:
            sink = self._sinks.get(lfdi.upper())
        if sink is None:
            return 404, "no such device"
        try:
            note, resource = parse_notification(body, MODELS, max_bytes=MAX_BODY)
        except DecodeError as exc:
            return 400, f"not a Notification this device understands: {exc}"
        try:
            sink(note, resource)
        except Exception:
            log.exception("notification receiver: the sink of %s failed", lfdi)
            return 500, "the device could not take it"
        self._count("received")
        return 204, ""


def _close(sock: Any) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


def content_type_ok(value: str | None) -> bool:
    """Whether a Content-Type is 2030.5 XML (parameters ignored)."""
    return (value or "").split(";", 1)[0].strip().lower() == MEDIA_TYPE
