"""The BPP's message pipeline: receive (verify, validate, de-duplicate, store, ACK), process
(answer each stored request into the outbox), deliver (the outbox's state changes; the HTTP is the
worker's), and unsolicited pushes.

receive, in this order, each refusal answered at once and never followed by a callback:
  1. the body is bounded JSON (400 NACK 30000 otherwise);
  2. the Authorization signature verifies over the raw bytes, with the key of the keyId's
     subscriber from the registry, and that subscriber is the context's bap_id (401 NACK +
     WWW-Authenticate otherwise);
  3. the context is valid for this endpoint (action, version 1.1.0, our bpp_id, bap_uri, ids,
     timestamp, ttl not elapsed) and `message` is an object (400 NACK with the failing path);
  4. (bap_id, action, message_id) is new: the raw request is stored; a repeat is ACKed again and
     changes nothing (no second callback);
  5. 200 ACK.
process turns a stored request into its callback in one transaction: the action's answer (or its
business error, inside the callback with the v1 code) goes to the outbox, the request is marked
processed. A crash before the commit leaves it received, and it is processed again.
Outbox rows are retried with backoff (1, 2, 4 … 60 s) when they did not get through — a network
error before the request went out whole, a non-2xx answer, a NACK or an answer that is not an ACK —
until the request's deadline (timestamp + ttl, at most a day); then they are marked expired. A
callback that went out whole and was never answered (the sender raises Unanswered) may be in the
BAP's hands: it is marked unanswered and not sent again (at most once for that one ambiguous case,
at least once for every other; every attempt carries the same bytes, so the same message_id).
After step 3 the signer must be registered as a BAP and bap_uri lie under its registered URL (401
NACK naming context.bap_uri): both in canonical form (server.beckn.urls), origin equal and the
registered path's segments a prefix of bap_uri's; the callback goes to that canonical form.
Step 2 also refuses a signature valid longer than the provider's signature_max_lifetime_s.
Unsolicited on_status pushes are queued here by the outbox's Beckn consumer (server.services.bpp.pushes)
and retried the same way; one the BAP never takes before its deadline makes its fact's delivery
a dead letter of the outbox (server.services.outbox.effect_failed), where operators see and replay it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from server.beckn import signing
from server.beckn.codec import parse_json
from server.beckn.context import BPP_ACTIONS, callback_context, context_from_json, unsolicited_context
from server.beckn.envelope import Request, ack, callback_body, error_object, nack, nack_for, parse_request, render
from server.beckn.errors import BecknError, ErrorCode
from server.beckn.timefmt import parse_duration
from server.beckn.urls import UnsafeURL, parse_base
from server.db import beckn as store
from server.db.session import Database
from server.services import clock, outbox
from server.services.bpp import actions as beckn_actions
from server.services.bpp import v2contracts, v2pipeline

CLAIM_S = 30.0
SEND_CLAIM_S = 120.0  # longer than a send can take: 5 s per socket operation, a bounded answer
MAX_PROCESS_ATTEMPTS = 3
MAX_BACKOFF_S = 60.0
PUSH_TTL = "PT1H"  # how long an unsolicited push is worth delivering
MAX_DELIVERY_S = 86_400.0  # a callback is retried at most a day, whatever TTL the request asked for


@dataclass(frozen=True)
class Answer:
    """The synchronous HTTP answer: status, JSON body, extra headers."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)



def receive(db: Database, action: str, raw: bytes, authorization: str | None, now: float,
            provider: beckn_actions.Provider, key_lookup: signing.KeyLookup, *, domains: Any = None) -> Answer:
    """Steps 1–5 of the module docstring for one request to `{bpp_uri}/{action}`."""
    if action not in BPP_ACTIONS:
        return Answer(404, nack(ErrorCode.ACTION_NOT_APPLICABLE, f"{action!r} is not an action of this BPP"))
    when = clock.utc(now)
    try:
        doc = parse_json(raw)
    except BecknError as exc:
        return Answer(400, nack_for(exc))
    ctx = doc.get("context")
    bap_id = ctx.get("bap_id") if isinstance(ctx, dict) else None
    if not isinstance(bap_id, str) or not bap_id:
        return Answer(400, nack(ErrorCode.INVALID_REQUEST, "context.bap_id is missing", "context.bap_id"))
    try:
        params = signing.verify(authorization, raw, now=when, key_lookup=key_lookup, expected_subscriber=bap_id,
                                max_lifetime_s=provider.signature_max_lifetime_s)
    except signing.SignatureError as exc:
        return Answer(401, nack(ErrorCode.INVALID_REQUEST, f"signature refused: {exc}"),
                      {"WWW-Authenticate": signing.www_authenticate(provider.bpp_id)})
    try:
        request = parse_request(raw, action=action, bpp_id=provider.bpp_id, now=when, domains=domains)
    except BecknError as exc:
        return Answer(400, nack_for(exc))
    refusal = _registered_as_bap(key_lookup, params, request.context.bap_uri)
    if refusal is not None:
        return Answer(401, nack(ErrorCode.INVALID_REQUEST, *refusal),
                      {"WWW-Authenticate": signing.www_authenticate(provider.bpp_id)})
    c = request.context
    try:
        with db.transaction() as s:
            if store.inbox_message(s, c.bap_id, action, c.message_id) is None:
                s.add(store.BecknInbox(bap_id=c.bap_id, action=action, message_id=c.message_id,
                                       transaction_id=c.transaction_id, body=raw, received_time=now,
                                       state="received", claimed_until=0.0))
    except IntegrityError:
        pass  # the same message_id at the same moment from two threads: the other one stored it
    return Answer(200, ack())


def _registered_as_bap(key_lookup: Any, params: signing.SignatureParams, bap_uri: str) -> tuple[str, str | None] | None:
    """The signer must be registered as a BAP, and callbacks go only under its registered URL:
    otherwise any subscriber could make us POST signed messages to any address. The refusal's
    message and JSON path, or None."""
    lookup = getattr(key_lookup, "lookup", None)
    entry = lookup(params.subscriber_id, params.unique_key_id) if lookup is not None else None
    if entry is None:
        return None  # a plain key function (tests, embedded use) knows keys only
    if entry.type != "BAP":
        return f"{params.subscriber_id} is registered as a {entry.type}, not a BAP", None
    if not entry.url:
        return f"{params.subscriber_id} is registered without a callback URL", None
    try:
        registered = parse_base(entry.url)
    except UnsafeURL as exc:
        return f"{params.subscriber_id}'s registered URL is unusable: it {exc}", None
    try:
        under = parse_base(bap_uri).is_under(registered)
    except UnsafeURL as exc:  # parse_request refused these already; kept for callers that did not
        return f"context.bap_uri is not a safe callback URL: it {exc}", "context.bap_uri"
    if not under:  # compared by origin and path segments, both in canonical form
        return f"context.bap_uri is not under {params.subscriber_id}'s registered URL {registered}", "context.bap_uri"
    return None


def process(db: Database, inbox_id: int, now: float, provider: beckn_actions.Provider) -> bool:
    """Answer one stored request into the outbox; False when another worker has it or had it.

    One transaction: the claim (a conditional UPDATE, which a concurrent worker's UPDATE waits
    on and then finds processed), the answer, the outbox row and the state change commit
    together, or none of them does and the request is taken again later."""
    with db.transaction() as s:
        return _process_in(s, inbox_id, now, provider)


def process_many(db: Database, inbox_ids: Sequence[int], now: float, provider: beckn_actions.Provider) -> int:
    """`process` for several stored requests in ONE transaction: one commit (one WAL flush on
    PostgreSQL) and two statements to claim and load the batch, instead of a transaction, a claim
    and a load per request; how many it answered. Rows another worker has are skipped. A request
    whose processing crashes (not a business error) rolls the whole batch back and raises: the
    caller then processes them one by one with `process`, which isolates the bad one."""
    with db.transaction() as s:
        rows = store.claim_received(s, inbox_ids, now, CLAIM_S)
        for row in rows:
            _answer(s, row, now, provider)
    return len(rows)


def _process_in(s: Session, inbox_id: int, now: float, provider: beckn_actions.Provider) -> bool:
    """The body of `process`, in the caller's transaction."""
    if not store.claim(s, store.BecknInbox, inbox_id, now, CLAIM_S, due=store.BecknInbox.state == "received"):
        return False
    row = s.get(store.BecknInbox, inbox_id)
    if row is None or row.state != "received":
        return False
    _answer(s, row, now, provider)
    return True


def _answer(s: Session, row: store.BecknInbox, now: float, provider: beckn_actions.Provider) -> None:
    """A claimed request's callback into the outbox, the request marked processed."""
    if v2pipeline.is_v2_row(row.action):  # Beckn v2.0.0: same transaction, v2's wire
        v2pipeline.process_row(s, row, now, provider)
        return
    doc = json.loads(row.body)
    request = Request(context_from_json(doc["context"], action=row.action), doc.get("message") or {})
    message: dict[str, Any] | None
    error = None
    try:
        if row.action in beckn_actions.WITHOUT_WRITES:  # nothing to undo on a business error: no savepoint
            message = beckn_actions.handle(s, request, provider, int(now))
        else:
            with s.begin_nested():
                message = beckn_actions.handle(s, request, provider, int(now))
    except BecknError as exc:
        message, error = None, error_object(exc.code, exc.message, exc.path)
    ctx = callback_context(request.context, now=clock.utc(now), bpp_id=provider.bpp_id, bpp_uri=provider.bpp_uri)
    deadline = request.context.deadline()
    until = min(deadline.timestamp() if deadline else now + 3600, now + MAX_DELIVERY_S)
    _enqueue(s, ctx, callback_body(ctx, message, error), now, until, inbox_id=row.id)
    row.state = "processed"
    row.processed_time = now


def _enqueue(s: Session, ctx: Any, body: dict[str, Any], now: float, deadline: float, *, inbox_id: int | None = None) -> None:
    url = parse_base(ctx.bap_uri).callback_url(ctx.action)  # the canonical form that was checked
    s.add(store.BecknOutbox(inbox_id=inbox_id, action=ctx.action, url=url, bap_id=ctx.bap_id,
                            message_id=ctx.message_id, transaction_id=ctx.transaction_id, body=render(body),
                            state="pending", attempts=0, next_attempt_at=now, claimed_until=0.0,
                            deadline=deadline, created_time=now))


def push_order_status(s: Session, order: store.BecknOrder, provider: beckn_actions.Provider, now: float, *,
                      message_id: str | None = None, deadline: float | None = None) -> str:
    """Queue an unsolicited on_status for an order (in its transaction, with a new message_id
    unless one is given), delivered until `deadline` (default: an hour). Its message_id."""
    if v2contracts.is_v2(order):  # a v2 contract hears in v2
        return v2pipeline.push_contract_status(s, order, provider, now, message_id=message_id, deadline=deadline)
    previous = context_from_json(json.loads(order.context))
    ctx = unsolicited_context(previous, action="on_status", message_id=message_id or str(uuid.uuid4()),
                              now=clock.utc(now), bpp_id=provider.bpp_id, bpp_uri=provider.bpp_uri,
                              ttl=parse_duration(PUSH_TTL))
    message = beckn_actions.order_status_message(s, order, provider, int(now))
    _enqueue(s, ctx, callback_body(ctx, message), now, now + 3600 if deadline is None else deadline)
    return ctx.message_id


# ------------------------------------------------------------------------------ delivery


@dataclass(frozen=True)
class Delivery:
    id: int
    url: str
    body: bytes
    token: float = 0.0  # the claim this attempt holds (claimed_until when it was claimed)


def claim_due(db: Database, now: float, limit: int = 50, *, busy: Collection[int] = ()) -> list[Delivery]:
    """Outbox rows due now (at most `limit`, none of `busy`: rows this worker is still sending),
    each claimed for SEND_CLAIM_S so no other worker sends it meanwhile; overdue rows expire."""
    if limit <= 0:
        return []
    with db.read() as c:  # the common answer is "nothing": find out without the write lock
        ids = [i for i in store.due_outbox_ids(c, now, limit + len(busy)) if i not in busy][:limit]
    if not ids:
        return []
    with db.transaction() as s:
        overdue = s.scalars(select(store.BecknOutbox).where(
            store.BecknOutbox.id.in_(ids), store.BecknOutbox.state == "pending", store.BecknOutbox.deadline < now)).all()
        store.expire_overdue(s, ids, now)
        for row in overdue:
            _expired(s, row, now)
        return [Delivery(*r) for r in store.claim_many(s, ids, now, SEND_CLAIM_S)]


def push_ref(message_id: str) -> str:
    """The outbox receipt of an on_status queued for a fact (server.services.bpp.pushes)."""
    return f"beckn:{message_id}"


def _expired(s: Session, row: store.BecknOutbox, now: float) -> None:
    """A callback the BAP never took before its deadline. If an outbox fact queued it, that fact's
    delivery to the Beckn consumer becomes a dead letter (the operator sees and replays it there)."""
    why = (f"{row.action} to {row.url} not taken before its deadline: "
           f"{row.last_error or 'never answered'} ({row.attempts} attempts)")
    outbox.effect_failed(s, push_ref(row.message_id), why, now)


class Unanswered(Exception):
    """Raised by a Sender: the callback went out whole and no answer came back (the answer timeout
    ran out, or the connection closed before a status line, or a 2xx answer's body was cut). The BAP
    may well have it and be acting on it: it is not sent again (docs/beckn.md, "Delivery")."""


def record_attempt(db: Database, delivery: Delivery, now: float, error: str | None, *,
                   unanswered: bool = False) -> str:
    """The outcome of one attempt: delivered, or retried later with backoff, or expired, or (sent
    whole, never answered) unanswered and not retried — unless the claim was lost meanwhile
    (another worker holds the row now: its outcome counts)."""
    return record_attempts(db, [Attempt(delivery, now, error, unanswered)])[0]


@dataclass(frozen=True)
class Attempt:
    """One send's outcome, to be recorded (`record_attempts`): error None means delivered."""

    delivery: Delivery
    at: float
    error: str | None
    unanswered: bool = False


def record_attempts(db: Database, attempts: Sequence[Attempt]) -> list[str]:
    """`record_attempt` for several sends in ONE transaction (the worker's senders record what
    finished meanwhile together); each one's resulting state, in order."""
    if not attempts:
        return []
    with db.transaction() as s:
        return [_record_in(s, a) for a in attempts]


def _record_in(s: Session, a: Attempt) -> str:
    row = s.get(store.BecknOutbox, a.delivery.id, with_for_update=True)
    if row is None or row.state != "pending" or row.claimed_until != a.delivery.token:
        return "claim lost"
    row.attempts += 1
    row.claimed_until = 0.0
    if a.error is None:
        row.state, row.delivered_time, row.last_error = "delivered", a.at, None
        return row.state
    row.last_error = a.error[:500]
    if a.unanswered:
        row.state = "unanswered"
        return row.state
    retry_at = a.at + min(MAX_BACKOFF_S, 2.0 ** (row.attempts - 1))
    if retry_at > row.deadline:
        row.state = "expired"
        _expired(s, row, a.at)
    else:
        row.next_attempt_at = retry_at
    return row.state


def judge(status: int, body: bytes) -> str | None:
    """None when the BAP took the callback (2xx and an ACK); else why not."""
    if not 200 <= status < 300:
        return f"HTTP {status}"
    try:
        answer = json.loads(body or b"{}")
        if answer.get("message", {}).get("ack", {}).get("status") == "NACK":
            return "NACK: " + json.dumps(answer.get("error"))[:300]
        if answer.get("status") == "NACK":  # a v2 Ack
            return "NACK: " + json.dumps(answer.get("error"))[:300]
    except (ValueError, AttributeError):
        return "the answer is not an ACK"
    return None


Sender = Callable[[str, bytes, dict[str, str]], tuple[int, bytes]]


def deliver_once(db: Database, delivery: Delivery, key: signing.SigningKey, send: Sender, now: Callable[[], float]) -> str:
    """Sign the stored bytes now, send them, record the outcome."""
    return record_attempts(db, [send_once(delivery, key, send, now)])[0]


def send_once(delivery: Delivery, key: signing.SigningKey, send: Sender, now: Callable[[], float]) -> Attempt:
    """Sign the stored bytes now and send them; the outcome, not yet recorded."""
    t = now()
    headers = {"Content-Type": "application/json",
               "Authorization": signing.authorization_header(delivery.body, key, now=clock.utc(t), ttl_s=60)}
    try:
        status, body = send(delivery.url, delivery.body, headers)
        error = judge(status, body)
    except Unanswered as exc:
        return Attempt(delivery, now(), f"sent, no answer: {exc}", unanswered=True)
    except OSError as exc:
        error = f"network: {exc}"
    except Exception as exc:  # a broken HTTP answer (bad status line, cut body…) is a failed attempt
        error = f"{type(exc).__name__}: {exc}"
    return Attempt(delivery, now(), error)


def fail_processing(db: Database, inbox_id: int, now: float, provider: beckn_actions.Provider, why: str) -> str:
    """A request whose processing crashed (not a business error): tried again after 2, 4 s; the
    third crash answers the BAP with error 40000 instead of leaving it without a callback."""
    with db.transaction() as s:
        row = s.get(store.BecknInbox, inbox_id, with_for_update=True)
        if row is None or row.state != "received":
            return "gone"
        row.attempts += 1
        if row.attempts < MAX_PROCESS_ATTEMPTS:
            row.claimed_until = now + 2.0 ** row.attempts
            return "retry"
        if v2pipeline.is_v2_row(row.action):
            v2pipeline.fail_row(s, row, now, provider)
            row.state, row.processed_time = "failed", now
            return f"failed: {why[:200]}"
        doc = json.loads(row.body)
        request = context_from_json(doc["context"], action=row.action)
        ctx = callback_context(request, now=clock.utc(now), bpp_id=provider.bpp_id, bpp_uri=provider.bpp_uri)
        error = error_object(ErrorCode.BUSINESS_ERROR, "the request could not be processed; send it again later")
        deadline = request.deadline()
        until = min(deadline.timestamp() if deadline else now + 3600, now + MAX_DELIVERY_S)
        _enqueue(s, ctx, callback_body(ctx, None, error), now, until, inbox_id=row.id)
        row.state, row.processed_time = "failed", now
        return f"failed: {why[:200]}"


def pending_counts(db: Database) -> dict[str, int]:
    with db.transaction() as s:
        rows = s.execute(select(store.BecknOutbox.state, func.count()).group_by(store.BecknOutbox.state)).all()
    return {state: n for state, n in rows}


