"""The BPP's Beckn v2 message pipeline: the same durable path as v1 (server.services.bpp.pipeline),
with v2's wire (server.beckn_v2).

receive (synchronous), each refusal answered at once, nothing stored, no callback ever:
  1. the action is one of ours (404 NACK 40001 otherwise); the body is bounded JSON (400, 30000);
  2. the Authorization signature (BECKN-006, unchanged) verifies over the raw bytes with the key of
     the keyId's subscriber, who is the context's bapId (401 NACK: 60001 expired, 60002 unknown key,
     60003 algorithm, 60000 otherwise, + WWW-Authenticate);
  3. the v2 context is valid for this endpoint (server.beckn_v2.context; 400, 50006 for a version,
     60005 for a context not for us or not now), `message` is an object, and every attribute pack
     is one we serve (400, 40007);
  4. the signer is a registered BAP and bapUri lies under its URL (v1's rule, 401);
  5. (bapId, "v2:"+action, messageId) is new: the raw request is stored; a repeat is ACKed again and
     changes nothing;
  6. 200 Ack, counter-signed with our key (server.beckn_v2.envelope).
process (the worker, through pipeline.process for rows whose action starts with "v2:"): the action
(server.services.bpp.v2contracts.handle) runs in a savepoint in the transaction that writes the
callback to beckn_outbox and marks the request processed; a business fault becomes the callback's
`error` {errorCode, errorMessage} beside the request's own message echoed (core requires a
`message` in every callback; the fault changed nothing). Delivery, retries, expiry and dead
letters are v1's (pipeline.claim_due / deliver_once): the callback is signed the same way.
push_contract_status: an unsolicited on_status for a v2 contract (the outbox's Beckn consumer).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from server.beckn import signing
from server.beckn.timefmt import parse_duration
from server.beckn.urls import UnsafeURL, parse_base
from server.beckn_v2 import envelope
from server.beckn_v2.context import BPP_ACTIONS, callback_context, context_from_json, unsolicited_context
from server.beckn_v2.errors import V2Code, V2Error, error_object
from server.db import beckn as store
from server.db.session import Database
from server.services import clock
from server.services.bpp import v2contracts
from server.services.bpp.provider import Provider

PREFIX = "v2:"
PUSH_TTL = "PT1H"
MAX_DELIVERY_S = 86_400.0

_SIGNATURE_CODES: dict[type[signing.SignatureError], V2Code] = {
    signing.SignatureExpired: V2Code.SIGNATURE_EXPIRED,
    signing.UnknownKey: V2Code.KEY_NOT_FOUND,
    signing.UnsupportedAlgorithm: V2Code.ALGORITHM_MISMATCH,
}


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def receive(db: Database, action: str, raw: bytes, authorization: str | None, now: float, provider: Provider,
            key_lookup: signing.KeyLookup, our_key: signing.SigningKey, *,
            networks: Collection[str] | None = None) -> Answer:
    """Steps 1-6 of the module docstring for one request to `{bpp_uri}/v2/{action}`."""
    when = clock.utc(now)
    message_id = ""

    def refuse(exc: V2Error, status: int | None = None, headers: dict[str, str] | None = None) -> Answer:
        return Answer(status or exc.status, envelope.nack_body(exc, raw, message_id, our_key, now=when), headers or {})

    unauthorized = {"WWW-Authenticate": signing.www_authenticate(provider.bpp_id)}
    if action not in BPP_ACTIONS:
        return refuse(V2Error(f"{action[:40]!r} is not a v2 action of this BPP", None, V2Code.ACTION_NOT_APPLICABLE), 404)
    try:
        doc = envelope.parse_body(raw)
    except V2Error as exc:
        return refuse(exc)
    ctx = doc.get("context")
    if isinstance(ctx, dict) and isinstance(ctx.get("messageId"), str) and len(ctx["messageId"]) <= 255:
        message_id = ctx["messageId"]
    bap_id = ctx.get("bapId") if isinstance(ctx, dict) else None
    if not isinstance(bap_id, str) or not bap_id:
        return refuse(V2Error("is missing", "context.bapId"))
    try:
        params = signing.verify(authorization, raw, now=when, key_lookup=key_lookup, expected_subscriber=bap_id,
                                max_lifetime_s=provider.signature_max_lifetime_s)
    except signing.SignatureError as exc:
        code = next((c for t, c in _SIGNATURE_CODES.items() if isinstance(exc, t)), V2Code.INVALID_SIGNATURE)
        return refuse(V2Error(f"signature refused: {exc}", None, code), 401, unauthorized)
    try:
        request = envelope.parse_request(doc, action=action, bpp_id=provider.bpp_id, now=when,
                                         networks=networks or provider.networks or None)
    except V2Error as exc:
        return refuse(exc)
    refusal = _registered_as_bap(key_lookup, params, request.context.bap_uri)
    if refusal is not None:
        return refuse(V2Error(refusal, "context.bapUri", V2Code.INVALID_SIGNATURE), 401, unauthorized)
    c = request.context
    try:
        with db.transaction() as s:
            if store.inbox_message(s, c.bap_id, PREFIX + action, c.message_id) is None:
                s.add(store.BecknInbox(bap_id=c.bap_id, action=PREFIX + action, message_id=c.message_id,
                                       transaction_id=c.transaction_id, body=raw, received_time=now,
                                       state="received", claimed_until=0.0))
    except IntegrityError:
        pass  # the same messageId at the same moment from two threads: the other one stored it
    return Answer(200, envelope.ack_body("ACK", raw, c.message_id, our_key, now=when))


def _registered_as_bap(key_lookup: Any, params: signing.SignatureParams, bap_uri: str) -> str | None:
    lookup = getattr(key_lookup, "lookup", None)
    entry = lookup(params.subscriber_id, params.unique_key_id) if lookup is not None else None
    if entry is None:
        return None
    if entry.type != "BAP":
        return f"{params.subscriber_id} is registered as a {entry.type}, not a BAP"
    try:
        registered = parse_base(entry.url or "")
        under = parse_base(bap_uri).is_under(registered)
    except UnsafeURL as exc:
        return f"{params.subscriber_id}'s registered URL or the bapUri is unusable: it {exc}"
    return None if under else f"is not under {params.subscriber_id}'s registered URL {registered}"


def is_v2_row(action: str) -> bool:
    return action.startswith(PREFIX)


def _echo(request: envelope.Request) -> dict[str, Any]:
    """The message of an error callback: the request's own (core requires one), for on_rate under
    its callback's name."""
    if request.context.action == "rate":
        return {"ratings": request.message.get("ratingInputs") or []}
    message = json.loads(json.dumps(request.message))
    contract = message.get("contract")
    if isinstance(contract, dict) and isinstance(contract.get("consideration"), list):
        for c in contract["consideration"]:  # core requires it; the devkits leave it out
            if isinstance(c, dict) and "status" not in c:
                c["status"] = {"code": "DRAFT"}
    return message


def process_row(s: Session, row: store.BecknInbox, now: float, provider: Provider) -> None:
    """Answer one stored v2 request into the outbox, in the caller's transaction."""
    doc = json.loads(row.body)
    request = envelope.Request(context_from_json(doc["context"], action=row.action.removeprefix(PREFIX)),
                               doc.get("message") or {})
    error = None
    try:
        message = v2contracts.handle(s, request, provider, int(now))
    except V2Error as exc:
        message, error = _echo(request), error_object(exc.code, exc.message, exc.path)
    enqueue_answer(s, request, row, message, error, now, provider)
    row.state = "processed"
    row.processed_time = now


def enqueue_answer(s: Session, request: envelope.Request, row: store.BecknInbox, message: dict[str, Any],
                   error: dict[str, str] | None, now: float, provider: Provider) -> None:
    ctx = callback_context(request.context, now=clock.utc(now), bpp_id=provider.bpp_id, bpp_uri=provider.v2_uri,
                           schema_context=v2contracts.used_packs(message),
                           request_digest=f"BLAKE-512={signing.digest_b64(row.body)}")
    until = min(request.context.deadline().timestamp(), now + MAX_DELIVERY_S)
    _enqueue(s, ctx, envelope.callback_body(ctx, message, error), now, max(until, now + 60), inbox_id=row.id)


def fail_row(s: Session, row: store.BecknInbox, now: float, provider: Provider) -> None:
    """The third crash of a v2 request: an error callback (40000) instead of none."""
    doc = json.loads(row.body)
    request = envelope.Request(context_from_json(doc["context"], action=row.action.removeprefix(PREFIX)),
                               doc.get("message") or {})
    error = error_object(V2Code.BUSINESS_ERROR, "the request could not be processed; send it again later")
    enqueue_answer(s, request, row, _echo(request), error, now, provider)


def _enqueue(s: Session, ctx: Any, body: dict[str, Any], now: float, deadline: float, *, inbox_id: int | None = None) -> None:
    url = parse_base(ctx.bap_uri).callback_url(ctx.action)
    s.add(store.BecknOutbox(inbox_id=inbox_id, action=ctx.action, url=url, bap_id=ctx.bap_id,
                            message_id=ctx.message_id, transaction_id=ctx.transaction_id, body=envelope.render(body),
                            state="pending", attempts=0, next_attempt_at=now, claimed_until=0.0,
                            deadline=deadline, created_time=now))


def push_contract_status(s: Session, order: store.BecknOrder, provider: Provider, now: float, *,
                         message_id: str | None = None, deadline: float | None = None) -> str:
    """Queue an unsolicited on_status for a v2 contract (a new messageId unless one is given); a
    settled performance with more meters than a page goes as one on_status per page, in order
    (BecknPageInfo push mode: sequence 0…N-1, isLast on the last), page k > 0 with messageId
    uuid5(the first's, k). The first page's messageId."""
    previous = context_from_json(json.loads(order.context))
    first = message_id or str(uuid.uuid4())
    for page in range(v2contracts.performance_pages(s, order, provider.v2_page_size)):
        message = v2contracts.status_message(s, order, provider, int(now), page=page)
        mid = first if page == 0 else str(uuid.uuid5(uuid.NAMESPACE_URL, f"urn:derflex:page:{first}:{page}"))
        ctx = unsolicited_context(previous, action="on_status", message_id=mid, now=clock.utc(now),
                                  bpp_id=provider.bpp_id, bpp_uri=provider.v2_uri, ttl=parse_duration(PUSH_TTL),
                                  schema_context=v2contracts.used_packs(message))
        _enqueue(s, ctx, envelope.callback_body(ctx, message), now, now + 3600 if deadline is None else deadline)
    return first


