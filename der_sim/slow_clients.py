"""Clients that never finish a request, to show a server keeps serving everyone else.

`SlowClients` holds, on one thread, `silent` TCP connections that send nothing at all and `slow`
connections that send a request head one byte every `interval` seconds and never end it (over TLS
with a device certificate when given an SSL context: the head is then sent after a complete
mutually authenticated handshake, as from a device that stalls). A connection the server closes
is opened again, so the numbers hold for the whole run. `stats()` says how many were opened, how
many the server closed and how long those had lived.

Used by tests/e2e/test_slow_clients.py and bench/bench_slow_clients.py; nothing in the product.
"""

from __future__ import annotations

import selectors
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from typing import Any

_HEAD = b"GET /dcap HTTP/1.1\r\nHost: derflex\r\nAccept: application/sep+xml\r\n"


@dataclass(eq=False)
class _Slot:
    kind: str  # "silent" | "slow"
    source: str
    sock: socket.socket | None = None
    opened_at: float = 0.0
    retry_at: float = 0.0
    sent: int = 0


@dataclass
class SlowStats:
    opened: dict[str, int] = field(default_factory=lambda: {"silent": 0, "slow": 0})
    closed_by_server: dict[str, int] = field(default_factory=lambda: {"silent": 0, "slow": 0})
    failed_opens: int = 0
    bytes_sent: int = 0
    lifetimes: dict[str, list[float]] = field(default_factory=lambda: {"silent": [], "slow": []})
    open_now: dict[str, int] = field(default_factory=lambda: {"silent": 0, "slow": 0})

    def as_dict(self) -> dict[str, Any]:
        def summary(xs: list[float]) -> dict[str, float | int]:
            xs = sorted(xs)
            return {"n": len(xs), "min_s": round(xs[0], 2), "max_s": round(xs[-1], 2),
                    "median_s": round(xs[len(xs) // 2], 2)} if xs else {"n": 0}

        return {"opened": dict(self.opened), "closed_by_server": dict(self.closed_by_server),
                "failed_opens": self.failed_opens, "bytes_sent": self.bytes_sent,
                "open_now": dict(self.open_now),
                "lifetime_before_server_closed": {k: summary(v) for k, v in self.lifetimes.items()}}


class SlowClients:
    def __init__(self, host: str, port: int, *, silent: int = 0, slow: int = 0,
                 tls: ssl.SSLContext | None = None, interval: float = 1.0,
                 sources: tuple[str, ...] = ("127.0.0.1",), reopen: bool = True) -> None:
        self.host, self.port, self.tls, self.interval, self.reopen = host, port, tls, interval, reopen
        self.slots = [_Slot("silent", sources[i % len(sources)]) for i in range(silent)]
        self.slots += [_Slot("slow", sources[i % len(sources)]) for i in range(slow)]
        self._stats = SlowStats()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sel = selectors.DefaultSelector()

    def start(self) -> SlowClients:
        self._thread = threading.Thread(target=self._run, name="slow-clients", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        for slot in self.slots:
            self._close(slot)
        self._sel.close()
        return self.stats()

    def stats(self) -> dict[str, Any]:
        with self._lock:
            self._stats.open_now = {k: sum(1 for s in self.slots if s.kind == k and s.sock is not None)
                                    for k in ("silent", "slow")}
            return self._stats.as_dict()

    def wait_open(self, timeout: float = 30.0) -> bool:
        """Until every slot has been opened once (True), or `timeout`."""
        deadline = time.monotonic() + timeout
        want = {"silent": sum(s.kind == "silent" for s in self.slots), "slow": sum(s.kind == "slow" for s in self.slots)}
        while time.monotonic() < deadline:
            with self._lock:
                if all(self._stats.opened[k] >= n for k, n in want.items()):
                    return True
            time.sleep(0.05)
        return False

    # --------------------------------------------------------------------------------- loop

    def _run(self) -> None:
        next_byte = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            for slot in self.slots:
                if self._stop.is_set():
                    return
                if slot.sock is None and now >= slot.retry_at and (self.reopen or not slot.opened_at):
                    self._open(slot)
            if now >= next_byte:
                next_byte = now + self.interval
                for slot in self.slots:
                    if slot.kind == "slow" and slot.sock is not None:
                        self._send_byte(slot)
            for key, _ in self._sel.select(timeout=0.05):
                slot = key.data
                self._peer_closed(slot)

    def _open(self, slot: _Slot) -> None:
        try:
            raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            raw.bind((slot.source, 0))
            raw.settimeout(5.0)
            raw.connect((self.host, self.port))
            sock: socket.socket = raw
            if slot.kind == "slow" and self.tls is not None:
                sock = self.tls.wrap_socket(raw, server_hostname="localhost")
            sock.setblocking(False)
        except (OSError, ValueError):
            with self._lock:
                self._stats.failed_opens += 1
            slot.retry_at = time.monotonic() + 0.5
            return
        slot.sock, slot.opened_at, slot.sent = sock, time.monotonic(), 0
        self._sel.register(sock, selectors.EVENT_READ, slot)
        with self._lock:
            self._stats.opened[slot.kind] += 1

    def _send_byte(self, slot: _Slot) -> None:
        assert slot.sock is not None
        head = _HEAD + b"".join(b"X-Slow-%d: 1\r\n" % i for i in range(1 + slot.sent // 12))
        try:
            n = slot.sock.send(head[slot.sent:slot.sent + 1])
        except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
            return
        except OSError:
            self._peer_closed(slot)
            return
        slot.sent += n
        with self._lock:
            self._stats.bytes_sent += n

    def _peer_closed(self, slot: _Slot) -> None:
        """The server sent something (an alert, an answer) or closed: either way it gave up on us."""
        lived = time.monotonic() - slot.opened_at
        with self._lock:
            self._stats.closed_by_server[slot.kind] += 1
            self._stats.lifetimes[slot.kind].append(lived)
        self._close(slot)

    def _close(self, slot: _Slot) -> None:
        if slot.sock is None:
            return
        try:
            self._sel.unregister(slot.sock)
        except (KeyError, ValueError):
            pass
        try:
            slot.sock.close()
        except OSError:
            pass
        slot.sock = None
