"""A small Beckn v1.1.0 BAP: the app side that enrolls simulated customers through our BPP.

Used by the end-to-end demo and the tests. It speaks exactly the contract of `docs/beckn.md`
(programs are catalog items `program-{id}`, an order enrolls one customer's devices as `DER`
fulfillments with a `der` tag group) and takes every wire rule from `server.beckn`: contexts are
`server.beckn.context.Context` values, bodies are rendered once by `envelope.render` and exactly
those bytes are signed (`signing.authorization_header`) and sent. Callbacks arrive at a
`der_sim.bap_receiver.CallbackReceiver`, which verifies the BPP's signature over the raw bytes.

Rules: standard library HTTP only (urllib.request, http.server); of the server package only
`server.beckn` (and `server.sep2`) may be imported (import-linter). No environment proxies and no
redirects: a signed body goes to `{bpp_uri}/{action}` and nowhere else. Every wait is bounded.

Layers: `BapIdentity` (keys and registry entry) → `BapClient` (one signed POST, the synchronous
ACK/NACK) → `Bap` (request + wait for its callback; the flows `search`, `enroll`, `enroll_many`,
`status`, `update`, `opt_out`, `cancel`, `track`, `support`, `rating`…, each returning plain dicts
and raising a `BapError` that names the Beckn code and message when something fails).
"""

from __future__ import annotations

import base64
import http.client
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from server.beckn import codec, envelope, registry, signing
from server.beckn.context import CALLBACK_ACTIONS, META_ACTIONS, VERSION, Context, Location
from server.beckn.timefmt import parse_duration
from server.beckn.values import json_text
from der_sim.bap_receiver import Callback, CallbackReceiver, CallbackTimeout

__all__ = ["Bap", "BapCallbackError", "BapClient", "BapError", "BapIdentity", "BapNack",
           "BapNetworkError", "BapTimeout", "Customer", "DerDevice", "Reply", "item_tags",
           "registry_lookup"]

MAX_ANSWER_BYTES = 1024 * 1024
MAX_WORKERS = 64


# ------------------------------------------------------------------------------------- errors


class BapError(Exception):
    """A BAP request or flow failed; subclasses say where."""


class BapNetworkError(BapError):
    """The BPP could not be reached or did not answer in time."""


class BapNack(BapError):
    """The BPP refused the request synchronously (NACK or a non-200 status)."""

    def __init__(self, action: str, reply: Reply):
        err = reply.error or {}
        super().__init__(f"{action}: HTTP {reply.status} {reply.ack or 'no ACK'}"
                         f" {err.get('code', '')} {err.get('message', '')}".rstrip())
        self.action, self.reply = action, reply
        self.code, self.error_message = err.get("code"), err.get("message")


class BapCallbackError(BapError):
    """The callback arrived but carries a Beckn `error {code, path, message}`."""

    def __init__(self, callback: Callback):
        err = callback.error or {}
        self.code, self.path, self.error_message = err.get("code"), err.get("path"), err.get("message")
        self.callback = callback
        where = f" at {self.path}" if self.path else ""
        super().__init__(f"{callback.action} (transaction {callback.transaction_id}): Beckn error "
                         f"{self.code}{where}: {self.error_message}")


class BapTimeout(BapError):
    """The BPP ACKed but its callback did not arrive in time."""


# ----------------------------------------------------------------------------------- identity


@dataclass(frozen=True, slots=True)
class BapIdentity:
    """Who we are on the network: subscriber id, key id, Ed25519 key and callback URI."""

    subscriber_id: str
    unique_key_id: str
    private_key: Ed25519PrivateKey
    bap_uri: str

    @classmethod
    def generate(cls, subscriber_id: str, bap_uri: str, unique_key_id: str = "k1") -> BapIdentity:
        """A fresh key pair."""
        return cls.from_b64(subscriber_id, unique_key_id, base64.b64encode(
            Ed25519PrivateKey.generate().private_bytes(serialization.Encoding.Raw,
                                                       serialization.PrivateFormat.Raw,
                                                       serialization.NoEncryption())).decode(), bap_uri)

    @classmethod
    def from_b64(cls, subscriber_id: str, unique_key_id: str, private_b64: str, bap_uri: str) -> BapIdentity:
        key = signing.SigningKey.from_b64(subscriber_id, unique_key_id, private_b64)
        return cls(subscriber_id, unique_key_id, key.private_key, bap_uri)

    def with_uri(self, bap_uri: str) -> BapIdentity:
        return replace(self, bap_uri=bap_uri)

    @property
    def signing_key(self) -> signing.SigningKey:
        return signing.SigningKey(self.subscriber_id, self.unique_key_id, self.private_key)

    def private_key_b64(self) -> str:
        """Base64 of the 32-byte seed (keep it secret)."""
        return base64.b64encode(self.private_key.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
            serialization.NoEncryption())).decode("ascii")

    def subscriber(self, *, domain: str | None = None, valid_until: datetime | None = None) -> registry.Subscriber:
        """Our registry entry (type BAP, url = bap_uri)."""
        return registry.Subscriber(subscriber_id=self.subscriber_id, unique_key_id=self.unique_key_id,
                                   type="BAP", signing_public_key=signing.public_key_b64(self.private_key),
                                   url=self.bap_uri, domain=domain, valid_until=valid_until)

    def registry_entry(self, **kwargs: Any) -> dict[str, Any]:
        """The same entry as JSON (`subscriber_json`), e.g. for a registry file."""
        return registry.subscriber_json(self.subscriber(**kwargs))


def registry_lookup(source: str | Path | Iterable[registry.Subscriber],
                    clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> signing.KeyLookup:
    """A key lookup over a registry file (re-read at each lookup, so later edits count) or over
    entries; it returns the usable key at the time of the lookup, or None."""
    fixed = None if isinstance(source, (str, Path)) else list(source)

    def lookup(subscriber_id: str, unique_key_id: str) -> str | None:
        entries = fixed
        if entries is None:
            try:
                entries = registry.parse_subscribers(codec.parse_json(Path(source).read_bytes()))  # type: ignore[arg-type]
            except (OSError, ValueError):
                return None
        found = registry.find_key(entries, subscriber_id, unique_key_id, clock())
        return None if found is None else found.signing_public_key

    return lookup


# ------------------------------------------------------------------------------------- client


@dataclass(frozen=True, slots=True)
class Reply:
    """The synchronous answer to one request, with the context we sent."""

    status: int
    ack: str | None  # "ACK", "NACK" or None when the body was not an ACK/NACK
    error: dict[str, Any] | None
    body: dict[str, Any] | None
    context: dict[str, Any]

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.ack == "ACK"

    @property
    def message_id(self) -> str:
        return str(self.context["message_id"])

    @property
    def transaction_id(self) -> str:
        return str(self.context["transaction_id"])


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a 3xx becomes an HTTPError: a signed body is never re-sent elsewhere


class BapClient:
    """Signs and POSTs v1.1.0 requests to one BPP and returns its synchronous answer."""

    def __init__(self, identity: BapIdentity, bpp_id: str, bpp_uri: str, *, domain: str | None = None,
                 country: str | None = None, city: str | None = None,
                 key_lookup: signing.KeyLookup | None = None, timeout: float = 10.0,
                 ttl_s: int = 30, ssl_context: Any = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        if ttl_s <= 0 or timeout <= 0:
            raise ValueError("ttl_s and timeout must be positive")
        self.identity, self.bpp_id, self.bpp_uri = identity, bpp_id, bpp_uri.rstrip("/")
        self.domain, self.timeout, self.ttl_s, self.clock = domain, timeout, ttl_s, clock
        self.location = Location(country_code=country, city_code=city) if country or city else None
        self.key_lookup = key_lookup  # the BPP's key, for the receiver that checks its callbacks
        handlers: list[Any] = [urllib.request.ProxyHandler({}), _NoRedirect()]
        if ssl_context is not None:
            handlers.append(urllib.request.HTTPSHandler(context=ssl_context))
        self._opener = urllib.request.build_opener(*handlers)

    def context(self, action: str, *, transaction_id: str, message_id: str | None = None,
                now: datetime | None = None) -> Context:
        """A request context: new message_id (unless given), timestamp now, ttl."""
        return Context(domain=self.domain, location=self.location, action=action, version=VERSION,
                       bap_id=self.identity.subscriber_id, bap_uri=self.identity.bap_uri,
                       bpp_id=self.bpp_id, bpp_uri=self.bpp_uri, transaction_id=transaction_id,
                       message_id=message_id or str(uuid.uuid4()), timestamp=now or self.clock(),
                       ttl=parse_duration(f"PT{self.ttl_s}S"))

    def send(self, action: str, message: Mapping[str, Any] | None = None, *, transaction_id: str | None = None,
             message_id: str | None = None) -> Reply:
        """POST `{bpp_uri}/{action}`; the reply (ACK, NACK or another status). Raises
        BapNetworkError when the BPP cannot be reached or does not answer within `timeout`."""
        if action not in CALLBACK_ACTIONS:
            raise ValueError(f"{action!r} is not a Beckn request action")
        now = self.clock()
        ctx = self.context(action, transaction_id=transaction_id or str(uuid.uuid4()),
                           message_id=message_id, now=now)
        doc: dict[str, Any] = {"context": ctx.to_json()}
        if message is not None or action not in META_ACTIONS:
            doc["message"] = dict(message or {})
        body = envelope.render(doc)  # rendered once: these bytes are signed and sent
        auth = signing.authorization_header(body, self.identity.signing_key, now=now, ttl_s=self.ttl_s)
        request = urllib.request.Request(f"{self.bpp_uri}/{action}", data=body, method="POST", headers={
            "Content-Type": "application/json", "Accept": "application/json", "Authorization": auth})
        try:
            try:
                with self._opener.open(request, timeout=self.timeout) as response:
                    status, raw = response.status, response.read(MAX_ANSWER_BYTES)
            except urllib.error.HTTPError as exc:  # 4xx/5xx: still an answer, usually a NACK
                with exc:
                    status, raw = exc.code, exc.read(MAX_ANSWER_BYTES)
        except (OSError, http.client.HTTPException) as exc:  # URLError, timeouts, resets
            reason = getattr(exc, "reason", None) or exc or type(exc).__name__
            raise BapNetworkError(f"{action} to {self.bpp_uri}/{action} failed: {reason}") from exc
        return _reply(status, raw, ctx.to_json())


def _reply(status: int, raw: bytes, context: dict[str, Any]) -> Reply:
    try:
        parsed: dict[str, Any] | None = codec.parse_json(raw)
    except codec.JsonError:
        parsed = None
    ack = error = None
    if parsed is not None:
        status_obj = (parsed.get("message") or {}).get("ack") if isinstance(parsed.get("message"), dict) else None
        ack = status_obj.get("status") if isinstance(status_obj, dict) else None
        error = parsed.get("error") if isinstance(parsed.get("error"), dict) else None
    return Reply(status=status, ack=ack if ack in ("ACK", "NACK") else None, error=error, body=parsed,
                 context=context)


# ---------------------------------------------------------------------------------- the flows


@dataclass(frozen=True, slots=True)
class DerDevice:
    """One device offered in an order (a `DER` fulfillment, tag group `der`)."""

    lfdi: str
    kind: str | None = None
    grid_node: str | None = None
    bid_curve: Sequence[Mapping[str, float]] | None = None  # [{"price": 0.08, "powerKW": -11}, …]
    objectives: Mapping[str, Any] | None = None

    def fulfillment(self) -> dict[str, Any]:
        tags = [("lfdi", self.lfdi), ("kind", self.kind), ("grid-node", self.grid_node),
                ("bid-curve", None if self.bid_curve is None else json_text([dict(p) for p in self.bid_curve])),
                ("objectives", None if self.objectives is None else json_text(dict(self.objectives)))]
        return {"type": "DER", "tags": [{"descriptor": {"code": "der"}, "list": [
            {"descriptor": {"code": code}, "value": value} for code, value in tags if value is not None]}]}


@dataclass(frozen=True, slots=True)
class Customer:
    """A customer to enroll: billing details and (optionally) the devices of `enroll_many`."""

    name: str
    email: str | None = None
    phone: str | None = None
    devices: tuple[DerDevice, ...] = field(default=())

    def billing(self) -> dict[str, Any]:
        return {k: v for k, v in (("name", self.name), ("email", self.email), ("phone", self.phone)) if v}


def item_tags(obj: Mapping[str, Any], group: str = "program") -> dict[str, Any]:
    """`{code: value}` of one tag group of an item or fulfillment (e.g. the `program` tags)."""
    for g in obj.get("tags") or ():
        if isinstance(g, Mapping) and (g.get("descriptor") or {}).get("code") == group:
            return {(t.get("descriptor") or {}).get("code"): t.get("value") for t in g.get("list") or ()
                    if isinstance(t, Mapping)}
    return {}


class Bap:
    """Requests through a BapClient, answers through a CallbackReceiver: the customer flows.

    Each call sends one request and waits (at most `timeout` s) for the callback with its
    message_id; a NACK, a missing callback or a callback carrying an error raises a BapError."""

    def __init__(self, client: BapClient, receiver: CallbackReceiver, *, timeout: float = 30.0) -> None:
        self.client, self.receiver, self.timeout = client, receiver, timeout
        self._sent: dict[str, set[str]] = {}
        self._lock = threading.Lock()

    def call(self, action: str, message: Mapping[str, Any] | None = None, *,
             transaction_id: str | None = None, timeout: float | None = None) -> dict[str, Any]:
        """Send `action`, wait for its callback; `{action, transaction_id, message_id, context,
        message}`. Raises BapNack, BapTimeout or BapCallbackError."""
        transaction_id = transaction_id or str(uuid.uuid4())
        message_id = str(uuid.uuid4())
        with self._lock:  # remember what we sent, to tell pushes apart (bounded)
            if len(self._sent) >= 10_000 and transaction_id not in self._sent:
                self._sent.pop(next(iter(self._sent)))
            self._sent.setdefault(transaction_id, set()).add(message_id)
        reply = self.client.send(action, message, transaction_id=transaction_id, message_id=message_id)
        if not reply.ok:
            raise BapNack(action, reply)
        try:
            cb = self.receiver.wait_for(message_id=message_id, action=CALLBACK_ACTIONS[action],
                                        timeout=self.timeout if timeout is None else timeout)
        except CallbackTimeout as exc:
            raise BapTimeout(f"{action} (transaction {transaction_id}) was ACKed but {exc}") from None
        if cb.error is not None:
            raise BapCallbackError(cb)
        return {"action": cb.action, "transaction_id": transaction_id, "message_id": message_id,
                "context": cb.context, "message": cb.message or {}}

    def wait_push(self, transaction_id: str, *, action: str | None = "on_status", after_seq: int = 0,
                  timeout: float | None = None) -> dict[str, Any]:
        """The next unsolicited callback (a message_id we did not send) in a transaction."""
        with self._lock:
            sent = set(self._sent.get(transaction_id, ()))
        try:
            cb = self.receiver.wait_unsolicited(transaction_id, sent_message_ids=sent, action=action,
                                                after_seq=after_seq,
                                                timeout=self.timeout if timeout is None else timeout)
        except CallbackTimeout as exc:
            raise BapTimeout(str(exc)) from None
        return {**cb.as_dict(), "seq": cb.seq, "message_id": cb.message_id}

    # ---------------------------------------------------------------------------- discovery

    def search(self, *, text: str | None = None, category: str | None = "demand-flexibility",
               device_kind: str | None = None, area_code: str | None = None,
               timeout: float | None = None) -> dict[str, Any]:
        """Programs matching the filters: `{transaction_id, provider, items, fulfillments, catalog}`;
        each item gains `program` = its `program` tags as a dict."""
        intent: dict[str, Any] = {}
        if text:
            intent["descriptor"] = {"name": text}
        if category:
            intent["category"] = {"descriptor": {"code": category}}
        fulfillment: dict[str, Any] = {}
        if device_kind:
            fulfillment["tags"] = [{"descriptor": {"code": "der"}, "list": [
                {"descriptor": {"code": "device-kind"}, "value": device_kind}]}]
        if area_code:
            fulfillment["stops"] = [{"location": {"area_code": area_code}}]
        if fulfillment:
            intent["fulfillment"] = fulfillment
        out = self.call("search", {"intent": intent}, timeout=timeout)
        catalog = out["message"].get("catalog") or {}
        provider = (catalog.get("providers") or [{}])[0]
        items = [{**item, "program": item_tags(item)} for item in provider.get("items") or ()]
        return {"transaction_id": out["transaction_id"], "provider": provider, "items": items,
                "fulfillments": provider.get("fulfillments") or [], "catalog": catalog}

    # ---------------------------------------------------------------------------- enrolment

    def enroll(self, customer: Customer, program_item_id: str, devices: Sequence[DerDevice] | None = None,
               *, capacity_kw: float | None = None, provider_id: str | None = None,
               transaction_id: str | None = None) -> dict[str, Any]:
        """select → init → confirm for one customer; `{customer, transaction_id, order_id, status,
        quote, payments, cancellation_terms, fulfillments, order}` from the callbacks."""
        devices = list(customer.devices if devices is None else devices)
        if not devices:
            raise ValueError(f"{customer.name}: no devices to enroll")
        tx = transaction_id or str(uuid.uuid4())
        item: dict[str, Any] = {"id": program_item_id}
        if capacity_kw is not None:
            item["quantity"] = {"selected": {"measure": {"value": capacity_kw, "unit": "kW"}}}
        order: dict[str, Any] = {"provider": {"id": provider_id or self.client.bpp_id}, "items": [item]}
        selected = self.call("select", {"order": order}, transaction_id=tx)["message"].get("order") or {}
        order = {**order, "billing": customer.billing(), "fulfillments": [d.fulfillment() for d in devices]}
        inited = self.call("init", {"order": order}, transaction_id=tx)["message"].get("order") or {}
        if inited.get("id"):  # the BPP's draft: confirm names it
            order = {"id": inited["id"], **order}
        if inited.get("payments"):
            order["payments"] = inited["payments"]
        confirmed = self.call("confirm", {"order": order}, transaction_id=tx)["message"].get("order") or {}
        return {"customer": customer.name, "transaction_id": tx, "order_id": confirmed.get("id"),
                "status": confirmed.get("status"), "quote": selected.get("quote"),
                "payments": inited.get("payments"), "cancellation_terms": inited.get("cancellation_terms"),
                "fulfillments": confirmed.get("fulfillments") or [], "order": confirmed}

    def enroll_many(self, customers: Sequence[Customer], program_item_id: str, *, workers: int = 4,
                    capacity_kw: float | None = None,
                    on_progress: Callable[[int, int, dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
        """Enroll each customer (with its own devices) on at most `workers` threads. Results come
        in input order: the `enroll` dict plus `ok: True`, or `{customer, ok: False, error, code}`.
        `on_progress(done, total, result)` is called after each customer, one call at a time."""
        if not 1 <= workers <= MAX_WORKERS:
            raise ValueError(f"workers must be 1…{MAX_WORKERS}")
        total, done = len(customers), 0
        results: list[dict[str, Any]] = [{} for _ in customers]
        progress = threading.Lock()

        def one(i: int) -> None:
            nonlocal done
            c = customers[i]
            try:
                result = {**self.enroll(c, program_item_id, capacity_kw=capacity_kw), "ok": True}
            except (BapError, ValueError) as exc:
                result = {"customer": c.name, "ok": False, "error": str(exc),
                          "code": getattr(exc, "code", None)}
            results[i] = result
            with progress:
                done += 1
                if on_progress is not None:
                    on_progress(done, total, result)

        with ThreadPoolExecutor(max_workers=min(workers, max(total, 1)), thread_name_prefix="bap-enroll") as pool:
            for f in [pool.submit(one, i) for i in range(total)]:
                f.result()
        return results

    # ------------------------------------------------------------------------- after confirm

    def status(self, order_id: str, transaction_id: str, **kw: Any) -> dict[str, Any]:
        return self.call("status", {"order_id": order_id}, transaction_id=transaction_id, **kw)

    def update(self, order_id: str, transaction_id: str, devices: Sequence[DerDevice], **kw: Any) -> dict[str, Any]:
        """Replace the order's set of devices and their curves (`update_target` order.fulfillments)."""
        return self.call("update", {"update_target": "order.fulfillments", "order": {
            "id": order_id, "fulfillments": [d.fulfillment() for d in devices]}}, transaction_id=transaction_id, **kw)

    def opt_out(self, order_id: str, transaction_id: str, fulfillment_ids: Sequence[str], **kw: Any) -> dict[str, Any]:
        """These fulfillments (devices) sit out the program's next window."""
        return self.call("update", {"update_target": "order.fulfillments.opt-out", "order": {
            "id": order_id, "fulfillments": [{"id": f} for f in fulfillment_ids]}},
            transaction_id=transaction_id, **kw)

    def cancel(self, order_id: str, transaction_id: str, reason_id: str = "1", **kw: Any) -> dict[str, Any]:
        return self.call("cancel", {"order_id": order_id, "cancellation_reason_id": reason_id},
                         transaction_id=transaction_id, **kw)

    def track(self, order_id: str, transaction_id: str, **kw: Any) -> dict[str, Any]:
        return self.call("track", {"order_id": order_id}, transaction_id=transaction_id, **kw)

    def support(self, ref_id: str, transaction_id: str, **kw: Any) -> dict[str, Any]:
        return self.call("support", {"support": {"ref_id": ref_id}}, transaction_id=transaction_id, **kw)

    def rating(self, ratings: Iterable[tuple[str, str, float]], transaction_id: str, **kw: Any) -> dict[str, Any]:
        """`ratings` as (id, category, value 0…5); the value travels as the schema's string."""
        return self.call("rating", {"ratings": [{"id": i, "rating_category": c, "value": f"{v:g}"}
                                                for i, c, v in ratings]}, transaction_id=transaction_id, **kw)

    def rating_categories(self, transaction_id: str | None = None, **kw: Any) -> dict[str, Any]:
        return self.call("get_rating_categories", None, transaction_id=transaction_id, **kw)

    def cancellation_reasons(self, transaction_id: str | None = None, **kw: Any) -> dict[str, Any]:
        return self.call("get_cancellation_reasons", None, transaction_id=transaction_id, **kw)

    def aggregate(self, aggregation_request: Mapping[str, Any], **kw: Any) -> dict[str, Any]:
        return self.call("aggregate", {"aggregationRequest": dict(aggregation_request)}, **kw)
