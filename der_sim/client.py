"""A small synchronous IEEE 2030.5 client: what a simulated device speaks to the server with.

Two layers:
- `Transport` moves bytes: `request(method, path, body, headers) -> (status, headers, body)`, header
  names lower case. `HttpsTransport` is the real one: one keep-alive `http.client.HTTPSConnection`
  with the 2030.5 client context of `server.tls.client_context` (TLS 1.2,
  ECDHE-ECDSA-AES128-CCM8, the device's certificate). A connection the server dropped while idle
  is replaced and the request sent once more on the new one (only then: a request that fails on a
  fresh connection is not repeated). Tests plug in-process transports in instead.
- `Sep2Client` speaks documents: `get(href, Model)` parses the answer with `server.sep2.codec`,
  `post(href, model)` returns the Location, `put(href, model)`, `delete(href)`. Bodies are
  `application/sep+xml`. An answer ≥ 400 raises `Sep2Error` with its status, the server's `<Error>` (if it sent one), its
  Retry-After in seconds and Location (409 on registration carries one); no answer at all raises
  `TransportError`; an answer that cannot be understood raises `BadAnswer`. All are `ClientError`.

`Stats` counts requests by method and status and keeps a latency histogram; it is thread-safe and
mergeable, so one may be shared by many clients or summed over a fleet.

Neither class is thread-safe for concurrent requests (one connection): one client per device,
driven by one thread at a time.
"""

from __future__ import annotations

import bisect
import email.utils
import http.client
import math
import ssl
import threading
import time
from collections import Counter
from collections.abc import Mapping
from datetime import UTC
from pathlib import Path
from typing import Any, Protocol, TypeVar

from server.sep2 import codec
from server.sep2.codec import DecodeError
from server.sep2.models import MEDIA_TYPE, Error
from server.tls import CCM8, client_context

__all__ = [
    "BadAnswer",
    "ClientError",
    "HttpsTransport",
    "Sep2Client",
    "Sep2Error",
    "Stats",
    "Transport",
    "TransportError",
    "parse_retry_after",
    "with_query",
]

T = TypeVar("T")

MAX_ANSWER_BYTES = 4 * 1024 * 1024
_RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


# ------------------------------------------------------------------------------------- errors


class ClientError(Exception):
    """A 2030.5 request failed; `retryable` says whether trying again later may succeed."""

    retryable = True
    retry_after: float | None = None


class TransportError(ClientError):
    """No answer: the connection could not be made, was dropped, or timed out."""


class BadAnswer(ClientError):
    """An answer that cannot be used (a body that is not the expected document, no Location…)."""

    retryable = False


class Sep2Error(ClientError):
    """The server answered ≥ 400."""

    def __init__(self, method: str, path: str, status: int, error: Error | None = None, *,
                 retry_after: float | None = None, detail: str | None = None, location: str | None = None):
        reason = f", reasonCode {error.reason_code}" if error is not None else ""
        text = f": {detail}" if detail else ""
        super().__init__(f"{method} {path} → {status}{reason}{text}")
        self.method = method
        self.path = path
        self.status = status
        self.error = error
        self.retry_after = retry_after
        self.detail = detail
        self.location = location

    @property
    def retryable(self) -> bool:  # type: ignore[override]
        return self.status in _RETRYABLE_STATUSES or self.status >= 500


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Retry-After in seconds from now: delta-seconds or an HTTP date; None when absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    now = time.time() if now is None else now
    return max(0.0, when.timestamp() - now)


# -------------------------------------------------------------------------------------- stats

# Latency buckets: 0.1 ms × 1.2^k up to about 2 minutes; one more for anything longer.
_EDGES = tuple(1e-4 * 1.2**k for k in range(78))


class Stats:
    """Request counts and latencies (thread-safe; `merge` sums another Stats into this one).

    Status 0 stands for a request that got no answer (TransportError)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests = 0
        self.by_status: Counter[int] = Counter()
        self.by_method: Counter[str] = Counter()
        self.latency_sum = 0.0
        self.latency_max = 0.0
        self._hist = [0] * (len(_EDGES) + 1)

    def record(self, method: str, status: int, seconds: float) -> None:
        bucket = bisect.bisect_left(_EDGES, seconds)
        with self._lock:
            self.requests += 1
            self.by_status[status] += 1
            self.by_method[method] += 1
            self.latency_sum += seconds
            if seconds > self.latency_max:
                self.latency_max = seconds
            self._hist[bucket] += 1

    def merge(self, other: Stats) -> None:
        with other._lock:
            snap = (other.requests, Counter(other.by_status), Counter(other.by_method), other.latency_sum,
                    other.latency_max, list(other._hist))
        with self._lock:
            self.requests += snap[0]
            self.by_status.update(snap[1])
            self.by_method.update(snap[2])
            self.latency_sum += snap[3]
            self.latency_max = max(self.latency_max, snap[4])
            self._hist = [a + b for a, b in zip(self._hist, snap[5], strict=True)]

    @property
    def failed(self) -> int:
        """Requests answered ≥ 400 or not answered at all."""
        with self._lock:
            return sum(n for status, n in self.by_status.items() if status == 0 or status >= 400)

    def percentile(self, q: float) -> float:
        """The latency (s) below which a share q (0…1) of requests fell: a bucket's upper edge."""
        with self._lock:
            total = sum(self._hist)
            if total == 0:
                return 0.0
            want = max(1, math.ceil(q * total))
            seen = 0
            for i, n in enumerate(self._hist):
                seen += n
                if seen >= want:
                    return _EDGES[i] if i < len(_EDGES) else self.latency_max
        return self.latency_max  # pragma: no cover

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            requests, mean = self.requests, (self.latency_sum / self.requests if self.requests else 0.0)
            by_status, by_method, worst = dict(self.by_status), dict(self.by_method), self.latency_max
        return {
            "requests": requests, "by_status": by_status, "by_method": by_method, "failed": self.failed,
            "latency_mean_s": mean, "latency_p50_s": self.percentile(0.5), "latency_p99_s": self.percentile(0.99),
            "latency_max_s": worst,
        }


# ---------------------------------------------------------------------------------- transport


class Transport(Protocol):
    """Moves one request; header names of the answer are lower case."""

    def request(self, method: str, path: str, body: bytes | None,
                headers: Mapping[str, str]) -> tuple[int, Mapping[str, str], bytes]: ...

    def close(self) -> None: ...


# Failures that mean "the server closed the idle keep-alive connection": worth one more try.
_DROPPED = (http.client.RemoteDisconnected, http.client.CannotSendRequest, ConnectionResetError,
            BrokenPipeError, ConnectionAbortedError, ssl.SSLEOFError, ssl.SSLZeroReturnError)


class HttpsTransport:
    """One keep-alive HTTPS connection with a given SSL context, reopened when it drops."""

    def __init__(self, host: str, port: int, context: ssl.SSLContext, *, timeout: float = 10.0) -> None:
        self.host = host
        self.port = port
        self.context = context
        self.timeout = timeout
        self.connections = 0  # how many connections were opened (TLS handshakes)
        self.resent = 0  # requests sent again because the server had closed the idle connection
        self._conn: http.client.HTTPSConnection | None = None
        self._reused = False

    @classmethod
    def for_credential(cls, host: str, port: int, cert_path: Path, key_path: Path, trust_path: Path, *,
                       cipher: str = CCM8, timeout: float = 10.0) -> HttpsTransport:
        """A transport presenting a device certificate, trusting the server's CA (`trust_path`)."""
        return cls(host, port, client_context(cert_path, key_path, trust_path, cipher=cipher), timeout=timeout)

    def tls(self) -> tuple[str, str] | None:
        """(protocol version, cipher) of the open connection, None when there is none."""
        sock = self._conn.sock if self._conn is not None else None
        if not isinstance(sock, ssl.SSLSocket):
            return None
        cipher = sock.cipher()
        return (sock.version() or "", cipher[0] if cipher else "")

    def _open(self) -> http.client.HTTPSConnection:
        conn = http.client.HTTPSConnection(self.host, self.port, context=self.context, timeout=self.timeout)
        conn.connect()
        self.connections += 1
        self._conn, self._reused = conn, False
        return conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn, self._reused = None, False

    def request(self, method: str, path: str, body: bytes | None,
                headers: Mapping[str, str]) -> tuple[int, Mapping[str, str], bytes]:
        for attempt in (1, 2):
            try:
                conn = self._conn if self._conn is not None else self._open()
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                raise TransportError(f"cannot connect to {self.host}:{self.port}: {exc}") from exc
            reused = self._reused
            try:
                conn.request(method, path, body=body, headers=dict(headers))
                resp = conn.getresponse()
                data = resp.read(MAX_ANSWER_BYTES + 1)
            except _DROPPED as exc:
                self.close()
                if reused and attempt == 1:
                    self.resent += 1
                    continue  # the server closed the idle connection: once more on a new one
                raise TransportError(f"{method} {path}: connection dropped ({exc!r})") from exc
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                raise TransportError(f"{method} {path}: {exc!r}") from exc
            if len(data) > MAX_ANSWER_BYTES:
                self.close()
                raise BadAnswer(f"{method} {path}: answer larger than {MAX_ANSWER_BYTES} bytes")
            self._reused = True
            if resp.will_close:
                self.close()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
        raise AssertionError("unreachable")  # pragma: no cover


# ------------------------------------------------------------------------------------- client


def with_query(href: str, **params: int) -> str:
    """`href` with list query parameters (s, l, a) appended."""
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return f"{href}{'&' if '?' in href else '?'}{query}" if query else href


class Sep2Client:
    """GET/POST/PUT of 2030.5 documents over a Transport, recording every request in `stats`."""

    def __init__(self, transport: Transport, *, stats: Stats | None = None,
                 clock: Any = time.perf_counter) -> None:
        self.transport = transport
        self.stats = stats if stats is not None else Stats()
        self.requests = 0  # made by this client (stats may be shared by a fleet)
        self._clock = clock

    @classmethod
    def over_tls(cls, host: str, port: int, cert_path: Path, key_path: Path, trust_path: Path, *,
                 cipher: str = CCM8, timeout: float = 10.0, stats: Stats | None = None) -> Sep2Client:
        """A client over a real TLS connection with a device's certificate."""
        transport = HttpsTransport.for_credential(host, port, cert_path, key_path, trust_path,
                                                  cipher=cipher, timeout=timeout)
        return cls(transport, stats=stats)

    def close(self) -> None:
        self.transport.close()

    def _call(self, method: str, path: str, body: bytes | None) -> tuple[int, Mapping[str, str], bytes]:
        headers = {"Accept": MEDIA_TYPE}
        if body is not None:
            headers["Content-Type"] = MEDIA_TYPE
        began = self._clock()
        self.requests += 1
        try:
            status, answer_headers, data = self.transport.request(method, path, body, headers)
        except TransportError:
            self.stats.record(method, 0, self._clock() - began)
            raise
        except (OSError, http.client.HTTPException) as exc:  # a transport that did not wrap them
            self.stats.record(method, 0, self._clock() - began)
            raise TransportError(f"{method} {path}: {exc!r}") from exc
        self.stats.record(method, status, self._clock() - began)
        if status >= 400:
            raise self._error(method, path, status, answer_headers, data)
        return status, answer_headers, data

    @staticmethod
    def _error(method: str, path: str, status: int, headers: Mapping[str, str], data: bytes) -> Sep2Error:
        error = None
        if data.strip():
            try:
                error = codec.parse(data, Error)
            except DecodeError:
                error = None
        retry_after = parse_retry_after(headers.get("retry-after"))
        return Sep2Error(method, path, status, error, retry_after=retry_after,
                         detail=headers.get("x-error-detail"), location=headers.get("location"))

    def get(self, href: str, model: type[T] | tuple[type[T], ...]) -> T:
        """The document at `href`, parsed as `model` (BadAnswer if it is not one)."""
        _, _, data = self._call("GET", href, None)
        try:
            return codec.parse(data, model, max_bytes=MAX_ANSWER_BYTES)
        except DecodeError as exc:
            raise BadAnswer(f"GET {href}: {exc}") from exc

    def post(self, href: str, obj: Any) -> str | None:
        """POST a document; the Location of what was created or updated (None if not given)."""
        _, headers, _ = self._call("POST", href, codec.render(obj))
        return headers.get("location")

    def put(self, href: str, obj: Any) -> None:
        self._call("PUT", href, codec.render(obj))

    def delete(self, href: str) -> None:
        self._call("DELETE", href, None)
