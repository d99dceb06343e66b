"""The Beckn facade in domain terms: messages received, callbacks to deliver, orders (a customer's
enrollment of devices in a program), ratings.

* `BecknInbox`: every accepted request, raw, unique per (bap_id, action, message_id): a repeat is
  recognised and changes nothing. State: received → processed (its callback is in the outbox), or
  failed after three crashed attempts (an error callback is sent instead).
* `BecknOutbox`: every callback and unsolicited push, as the exact JSON to send; delivered with
  retries until its deadline (the request's TTL), so a restart loses none. State: pending →
  delivered | expired; a worker claims a row by moving `claimed_until` forward.
* `BecknOrder`: the order; its devices are enrollments whose `external_ref` is the order id.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import BigInteger, Connection, Float, ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from server.db.models import Base


class BecknInbox(Base):
    __tablename__ = "beckn_inbox"
    __table_args__ = (
        UniqueConstraint("bap_id", "action", "message_id", name="uq_beckn_inbox_message"),
        Index("ix_beckn_inbox_state", "state", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    bap_id: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(32))
    message_id: Mapped[str] = mapped_column(String(255))
    transaction_id: Mapped[str] = mapped_column(String(255))
    body: Mapped[bytes] = mapped_column(LargeBinary)  # the raw bytes that were signed
    received_time: Mapped[float] = mapped_column(Float)
    state: Mapped[str] = mapped_column(String(16))  # received | processed | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # processing attempts that crashed
    claimed_until: Mapped[float] = mapped_column(Float, default=0.0)
    processed_time: Mapped[float | None] = mapped_column(Float)


class BecknOutbox(Base):
    __tablename__ = "beckn_outbox"
    __table_args__ = (Index("ix_beckn_outbox_due", "state", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    inbox_id: Mapped[int | None] = mapped_column(ForeignKey("beckn_inbox.id", ondelete="SET NULL"))
    action: Mapped[str] = mapped_column(String(32))  # on_search, rating_categories, …
    url: Mapped[str] = mapped_column(String(1024))
    bap_id: Mapped[str] = mapped_column(String(255))
    message_id: Mapped[str] = mapped_column(String(255))
    transaction_id: Mapped[str] = mapped_column(String(255))
    body: Mapped[bytes] = mapped_column(LargeBinary)  # the exact bytes to sign and send
    state: Mapped[str] = mapped_column(String(16))  # pending | delivered | expired
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[float] = mapped_column(Float)
    claimed_until: Mapped[float] = mapped_column(Float, default=0.0)
    deadline: Mapped[float] = mapped_column(Float)
    last_error: Mapped[str | None] = mapped_column(String(500))
    created_time: Mapped[float] = mapped_column(Float)
    delivered_time: Mapped[float | None] = mapped_column(Float)


class BecknOrder(Base):
    __tablename__ = "beckn_orders"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    bap_id: Mapped[str] = mapped_column(String(255), index=True)
    bap_uri: Mapped[str] = mapped_column(String(1024))
    transaction_id: Mapped[str] = mapped_column(String(255), index=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("flex_programs.id", ondelete="RESTRICT"))
    state: Mapped[str] = mapped_column(String(16))  # server.beckn.orders states
    order: Mapped[str] = mapped_column(Text)  # the order JSON as last agreed (billing, fulfillments…)
    context: Mapped[str] = mapped_column(Text)  # the last request context (for unsolicited pushes)
    created_time: Mapped[int] = mapped_column(BigInteger)
    updated_time: Mapped[int] = mapped_column(BigInteger)


class BecknRating(Base):
    __tablename__ = "beckn_ratings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    bap_id: Mapped[str] = mapped_column(String(255))
    ref_id: Mapped[str] = mapped_column(String(255))
    category: Mapped[str] = mapped_column(String(64))
    value: Mapped[float] = mapped_column(Float)
    created_time: Mapped[int] = mapped_column(BigInteger)


# ----------------------------------------------------------------------------------- queries


def inbox_message(session: Session, bap_id: str, action: str, message_id: str) -> BecknInbox | None:
    return session.scalars(select(BecknInbox).where(
        BecknInbox.bap_id == bap_id, BecknInbox.action == action, BecknInbox.message_id == message_id)).first()


def claim(session: Session, model: Any, row_id: int, now: float, lease_s: float, *, due: Any = None) -> bool:
    """Take one row for `lease_s` seconds if nobody holds it (one UPDATE: safe across processes)."""
    stmt = update(model).where(model.id == row_id, model.claimed_until <= now)
    if due is not None:
        stmt = stmt.where(due)
    return (session.execute(stmt.values(claimed_until=now + lease_s)).rowcount or 0) == 1


def claim_received(session: Session, ids: Sequence[int], now: float, lease_s: float) -> list[BecknInbox]:
    """Claim those of `ids` still received and unclaimed (one UPDATE … RETURNING) and load them (one
    SELECT), by id: the worker's batch, two statements whatever its size."""
    if not ids:
        return []
    stmt = (update(BecknInbox)
            .where(BecknInbox.id.in_(list(ids)), BecknInbox.state == "received", BecknInbox.claimed_until <= now)
            .values(claimed_until=now + lease_s)
            .returning(BecknInbox.id))
    taken = [r[0] for r in session.execute(stmt).all()]
    if not taken:
        return []
    return list(session.scalars(select(BecknInbox).where(BecknInbox.id.in_(taken)).order_by(BecknInbox.id)))


def claim_many(session: Session, ids: Sequence[int], now: float, lease_s: float) -> Sequence[Any]:
    """Claim the outbox rows among `ids` still pending and unclaimed (one UPDATE … RETURNING);
    (id, url, body, token) of each row this worker now holds: `token` (the new claimed_until) is
    what its outcome must still find, or another worker has taken the row since."""
    if not ids:
        return []
    token = now + lease_s
    stmt = (update(BecknOutbox)
            .where(BecknOutbox.id.in_(list(ids)), BecknOutbox.state == "pending", BecknOutbox.claimed_until <= now)
            .values(claimed_until=token)
            .returning(BecknOutbox.id, BecknOutbox.url, BecknOutbox.body))
    return sorted((*r, token) for r in session.execute(stmt).all())


def expire_overdue(session: Session, ids: Sequence[int], now: float) -> int:
    """Those of `ids` (rows found due) that are past their deadline are expired, whatever their last
    attempt was. Only the candidates: a sweep over every pending row would grow with the backlog."""
    if not ids:
        return 0
    stmt = (update(BecknOutbox)
            .where(BecknOutbox.id.in_(list(ids)), BecknOutbox.state == "pending", BecknOutbox.deadline < now)
            .values(state="expired"))
    return session.execute(stmt).rowcount or 0


def received_ids(session: Session | Connection, now: float, limit: int = 100) -> Sequence[int]:
    """Requests waiting to be answered (a plain read: the worker's idle polls take no write lock)."""
    return session.scalars(select(BecknInbox.id).where(
        BecknInbox.state == "received", BecknInbox.claimed_until <= now).order_by(BecknInbox.id).limit(limit)).all()


def due_outbox_ids(session: Session | Connection, now: float, limit: int = 100) -> Sequence[int]:
    """Callbacks due now (a plain read, as received_ids)."""
    return session.scalars(select(BecknOutbox.id).where(
        BecknOutbox.state == "pending", BecknOutbox.next_attempt_at <= now, BecknOutbox.claimed_until <= now,
    ).order_by(BecknOutbox.next_attempt_at, BecknOutbox.id).limit(limit)).all()


def orders_of_program(session: Session, program_id: int, states: Sequence[str]) -> Sequence[BecknOrder]:
    return session.scalars(select(BecknOrder).where(
        BecknOrder.program_id == program_id, BecknOrder.state.in_(states)).order_by(BecknOrder.created_time)).all()
