"""The BAP's callback endpoint: a small HTTP server that receives and checks our BPP's callbacks.

Used by `der_sim.bap` (the simulated customers' Beckn app) and by tests of the BPP as the "fake
BAP" of `../shared/design/beckn.md`. Standard library HTTP only (http.server); the wire rules come
from `server.beckn` (strict JSON, the v1.1.0 context, BECKN-006 verification), never re-implemented.

Rules:
- `POST {path}/{action}` for a callback action (`on_search` … `on_aggregate`, `rating_categories`,
  `cancellation_reasons`); any other path is 404 NACK, any other method 405.
- The raw received bytes are verified with `server.beckn.signing.verify` (expected subscriber = the
  BPP's id, keys from `key_lookup`) BEFORE anything else is believed. A bad, missing, expired or
  wrong-key signature is answered 401 NACK with `WWW-Authenticate` and recorded as a failure.
  A signed body that is not a v1.1.0 callback envelope (bad JSON, context, action ≠ path, another
  bpp_id) is 400 NACK, also recorded as a failure. Everything else is ACKed and recorded.
- Fault injection for tests (`fail_next`): the next N callbacks are answered 500, NACK, or only after
  sleeping (a hang); they are recorded with `fault` set and do not count as accepted.
- Bounded: bodies (256 KiB), records (a ring of `max_records`), socket timeouts, hang time, and the
  server's own lifetime (`lifetime_s`: it stops by itself if a caller forgets to).
- Beckn v2.0.0 (`v2_key` given: the BAP's signing key): the callbacks are v2's (`on_discover` …
  `on_rate`), the envelope is checked with `server.beckn_v2.context` (version 2.0.0, action = path,
  bppId ours), and every answer is a v2 Ack `{status, signature}` counter-signed with `v2_key`
  (400/401 NACKs carry `error {errorCode, errorMessage}`). Records read `messageId` and
  `transactionId` as well as v1's keys.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from server.beckn import codec, envelope, signing
from server.beckn.context import CALLBACK_ACTIONS, context_from_json
from server.beckn.errors import BecknError, ErrorCode
from server.beckn_v2 import envelope as v2_envelope
from server.beckn_v2.context import CALLBACK_ACTIONS as V2_CALLBACK_ACTIONS, context_from_json as v2_context_from_json
from server.beckn_v2.errors import V2Code, V2Error

__all__ = ["Callback", "CallbackReceiver", "CallbackTimeout", "FAULTS"]

CALLBACK_NAMES = frozenset(CALLBACK_ACTIONS.values())
V2_CALLBACK_NAMES = frozenset(V2_CALLBACK_ACTIONS.values())
FAULTS = ("500", "nack", "hang")
MAX_BODY = codec.DEFAULT_MAX_BYTES
MAX_HANG_S = 120.0


class CallbackTimeout(TimeoutError):
    """No matching callback arrived in time."""


@dataclass(frozen=True, slots=True)
class Callback:
    """One received callback as recorded: what came, whether its signature held, what we answered."""

    seq: int
    action: str
    context: dict[str, Any] | None
    message: dict[str, Any] | None
    error: dict[str, Any] | None
    verified: bool
    failure: str | None  # None, or why it was refused (a SignatureError reason, "envelope", …)
    status: int  # the HTTP status we answered
    fault: str | None = None  # the injected fault, if any
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def accepted(self) -> bool:
        return self.verified and self.failure is None and self.fault is None

    @property
    def message_id(self) -> str | None:
        return None if self.context is None else self.context.get("message_id", self.context.get("messageId"))

    @property
    def transaction_id(self) -> str | None:
        return None if self.context is None else self.context.get("transaction_id", self.context.get("transactionId"))

    def as_dict(self) -> dict[str, Any]:
        return {"action": self.action, "context": self.context, "message": self.message,
                "error": self.error, "verified": self.verified, "failure": self.failure}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True  # a receiver restarted on its registered port must bind despite TIME_WAIT
    receiver: CallbackReceiver


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = 10  # seconds a client may take to send its request
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence stderr
        pass

    def do_GET(self) -> None:  # noqa: N802
        self._answer(405, envelope.nack(ErrorCode.INVALID_REQUEST, "only POST is accepted"))

    def do_POST(self) -> None:  # noqa: N802
        self.server.receiver._handle(self)

    def _answer(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = envelope.render(body)
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except OSError:  # the sender gave up (e.g. after a hang): nothing left to answer
            pass


class CallbackReceiver:
    """Receive, verify and record `{url}/on_*` callbacks; `wait_for` them.

    `bpp_id`: the only subscriber whose signature is accepted; `key_lookup(subscriber_id,
    unique_key_id)` gives its public key (e.g. `der_sim.bap.registry_lookup(path)`). `path` is the
    prefix of the BAP URI (`url` = `http://127.0.0.1:{port}{path}` once started)."""

    def __init__(self, bpp_id: str, key_lookup: signing.KeyLookup, *, host: str = "127.0.0.1",
                 port: int = 0, path: str = "/bap", realm: str = "bap", skew_s: int = 5,
                 max_records: int = 10_000, lifetime_s: float | None = 3600.0,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 v2_key: signing.SigningKey | None = None) -> None:
        if path and (not path.startswith("/") or path.endswith("/")):
            raise ValueError("path must be empty or start with / and not end with /")
        self.bpp_id, self.key_lookup, self.path, self.realm = bpp_id, key_lookup, path, realm
        self.skew_s, self.clock, self.lifetime_s = skew_s, clock, lifetime_s
        self.v2_key = v2_key  # set: a v2 BAP's receiver (v2 callbacks, counter-signed Acks)
        self._host, self._port = host, port
        self._records: deque[Callback] = deque(maxlen=max_records)
        self._cond = threading.Condition()
        self._seq = itertools.count(1)
        self._faults: deque[tuple[str, float]] = deque()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._timer: threading.Timer | None = None

    # -------------------------------------------------------------------------------- lifecycle

    def start(self) -> CallbackReceiver:
        if self._server is not None:
            raise RuntimeError("the receiver is already started")
        server = _Server((self._host, self._port), _Handler)
        server.receiver = self
        self._server = server
        self._stopping.clear()
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"bap-receiver-{self.port}", daemon=True)
        self._thread.start()
        if self.lifetime_s is not None:
            self._timer = threading.Timer(self.lifetime_s, self.stop)
            self._timer.daemon = True
            self._timer.start()
        return self

    def stop(self) -> None:
        """Stop serving and release hanging handlers; safe to call twice or from any thread."""
        self._stopping.set()
        server, self._server = self._server, None
        timer, self._timer = self._timer, None
        if timer is not None and timer is not threading.current_thread():
            timer.cancel()
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        with self._cond:
            self._cond.notify_all()

    def __enter__(self) -> CallbackReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the receiver is not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """The BAP URI callbacks are posted under (`{url}/on_select`…)."""
        return f"http://{self._host}:{self.port}{self.path}"

    # ---------------------------------------------------------------------------- test controls

    def fail_next(self, mode: str, count: int = 1, *, hang_s: float = 5.0) -> None:
        """Answer the next `count` callbacks with a fault: "500", "nack" or "hang" (sleep `hang_s`
        seconds, at most 120, then ACK — the sender has usually given up by then)."""
        if mode not in FAULTS:
            raise ValueError(f"mode must be one of {', '.join(FAULTS)}")
        if not 0 <= hang_s <= MAX_HANG_S or count < 0:
            raise ValueError(f"count must be >= 0 and hang_s within 0…{MAX_HANG_S}")
        with self._cond:
            self._faults.extend([(mode, hang_s)] * count)

    def clear_faults(self) -> None:
        with self._cond:
            self._faults.clear()

    # -------------------------------------------------------------------------------- records

    @property
    def callbacks(self) -> list[Callback]:
        with self._cond:
            return list(self._records)

    @property
    def failures(self) -> list[Callback]:
        """The callbacks refused for their signature or envelope."""
        return [c for c in self.callbacks if c.failure is not None]

    def wait_for(self, *, message_id: str | None = None, action: str | None = None,
                 transaction_id: str | None = None, exclude_message_ids: Collection[str] = (),
                 after_seq: int = 0, accepted_only: bool = True, timeout: float = 10.0) -> Callback:
        """The first recorded callback (seq > `after_seq`) matching every given filter; waits up
        to `timeout` seconds for one, then raises CallbackTimeout. `exclude_message_ids` lets a
        caller wait for an unsolicited callback: one whose message_id it did not send."""
        deadline = time.monotonic() + max(0.0, timeout)

        def match(c: Callback) -> bool:
            return (c.seq > after_seq and (c.accepted or not accepted_only)
                    and (message_id is None or c.message_id == message_id)
                    and (action is None or c.action == action)
                    and (transaction_id is None or c.transaction_id == transaction_id)
                    and c.message_id not in exclude_message_ids)

        with self._cond:
            while True:
                found = next((c for c in self._records if match(c)), None)
                if found is not None:
                    return found
                left = deadline - time.monotonic()
                if left <= 0 or self._stopping.is_set():
                    what = ", ".join(f"{k}={v}" for k, v in (("action", action), ("message_id", message_id),
                                                            ("transaction_id", transaction_id)) if v)
                    state = "the receiver stopped" if self._stopping.is_set() else f"{timeout:g} s passed"
                    raise CallbackTimeout(f"no callback ({what or 'any'}) arrived: {state}")
                self._cond.wait(min(left, 0.5))

    def wait_unsolicited(self, transaction_id: str, *, sent_message_ids: Collection[str],
                         action: str | None = "on_status", after_seq: int = 0,
                         timeout: float = 10.0) -> Callback:
        """A push in `transaction_id` (a message_id not among those we sent)."""
        return self.wait_for(transaction_id=transaction_id, action=action, after_seq=after_seq,
                             exclude_message_ids=sent_message_ids, timeout=timeout)

    # ------------------------------------------------------------------------------- handling

    def _record(self, **fields: Any) -> Callback:
        with self._cond:
            cb = Callback(seq=next(self._seq), **fields)
            self._records.append(cb)
            self._cond.notify_all()
            return cb

    def _nack(self, body: bytes, code: str, text: str) -> dict[str, Any]:
        if self.v2_key is None:
            return envelope.nack(ErrorCode(code) if code in ErrorCode._value2member_map_ else ErrorCode.INVALID_REQUEST, text)
        mid = (_loose_parse(body).get("context") or {}).get("messageId") if body else None
        return v2_envelope.ack_body("NACK", body, mid if isinstance(mid, str) else "", self.v2_key, now=self.clock(),
                                    error={"errorCode": code, "errorMessage": text})

    def _ack(self, body: bytes) -> dict[str, Any]:
        if self.v2_key is None:
            return envelope.ack()
        mid = (_loose_parse(body).get("context") or {}).get("messageId")
        return v2_envelope.ack_body("ACK", body, mid if isinstance(mid, str) else "", self.v2_key, now=self.clock())

    def _handle(self, h: _Handler) -> None:
        prefix = self.path + "/"
        action = h.path[len(prefix):] if h.path.startswith(prefix) else ""
        names = V2_CALLBACK_NAMES if self.v2_key is not None else CALLBACK_NAMES
        if action not in names:
            h._answer(404, self._nack(b"", "40001", f"no callback endpoint {h.path[:80]}"))
            return
        try:
            length = int(h.headers.get("Content-Length", ""))
        except ValueError:
            h._answer(411, self._nack(b"", "30000", "Content-Length is required"))
            return
        if not 0 <= length <= MAX_BODY:
            h._answer(413, self._nack(b"", "30000", f"body larger than {MAX_BODY} bytes"))
            return
        try:
            body = h.rfile.read(length)
        except OSError:
            return
        doc = _loose_parse(body)
        ctx = doc.get("context") if isinstance(doc.get("context"), dict) else None
        msg = doc.get("message") if isinstance(doc.get("message"), dict) else None
        err = doc.get("error") if isinstance(doc.get("error"), dict) else None
        seen = {"action": action, "context": ctx, "message": msg, "error": err}
        try:
            signing.verify(h.headers.get("Authorization"), body, now=self.clock(), key_lookup=self.key_lookup,
                           expected_subscriber=self.bpp_id, skew_s=self.skew_s,
                           digest_header=h.headers.get("Digest"))
        except signing.SignatureError as exc:
            self._record(**seen, verified=False, failure=exc.reason, status=401)
            h._answer(401, self._nack(body, "60000" if self.v2_key else "30000", f"signature refused: {exc}"),
                      {"WWW-Authenticate": signing.www_authenticate(self.realm)})
            return
        try:
            if self.v2_key is not None:
                self._check_v2_envelope(body, action)
            else:
                self._check_envelope(body, action)
        except BecknError as exc:
            self._record(**seen, verified=True, failure="envelope", status=400)
            h._answer(400, envelope.nack_for(exc))
            return
        except V2Error as exc:
            self._record(**seen, verified=True, failure="envelope", status=400)
            h._answer(400, self._nack(body, exc.code, exc.message))
            return
        with self._cond:
            mode, hang_s = self._faults.popleft() if self._faults else (None, 0.0)
        if mode == "500":
            self._record(**seen, verified=True, failure=None, status=500, fault=mode)
            h._answer(500, {"error": {"code": "50000", "message": "injected server error"}})
        elif mode == "nack":
            self._record(**seen, verified=True, failure=None, status=200, fault=mode)
            h._answer(200, self._nack(body, "40000", "injected NACK") if self.v2_key is not None
                      else envelope.nack(ErrorCode.BUSINESS_ERROR, "injected NACK"))
        elif mode == "hang":
            self._record(**seen, verified=True, failure=None, status=200, fault=mode)
            self._stopping.wait(hang_s)
            h._answer(200, self._ack(body))
        else:
            self._record(**seen, verified=True, failure=None, status=200)
            h._answer(200, self._ack(body))

    def _check_envelope(self, body: bytes, action: str) -> None:
        doc = codec.parse_json(body)
        ctx = context_from_json(doc.get("context"), action=action)
        if ctx.bpp_id != self.bpp_id:
            raise envelope.EnvelopeError(f"must be {self.bpp_id}", "context.bpp_id")
        for name in ("message", "error"):
            if doc.get(name) is not None and not isinstance(doc[name], dict):
                raise envelope.EnvelopeError("must be an object", name)

    def _check_v2_envelope(self, body: bytes, action: str) -> None:
        doc = v2_envelope.parse_body(body)
        ctx = v2_context_from_json(doc.get("context"), action=action)
        if ctx.bpp_id != self.bpp_id:
            raise V2Error(f"must be {self.bpp_id}", "context.bppId", V2Code.CONTEXT_ERROR)
        for name in ("message", "error"):
            if doc.get(name) is not None and not isinstance(doc[name], dict):
                raise V2Error("must be an object", name)


def _loose_parse(body: bytes) -> dict[str, Any]:
    """The body's fields for the record, even when it is refused ({} if it is not JSON)."""
    try:
        return codec.parse_json(body)
    except codec.JsonError:
        return {}
