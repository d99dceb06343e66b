"""The transactional outbox in domain terms: facts, their delivery to each consumer, and what a
consumer's action produced.

* `OutboxFact`: something other parts must hear of (a window published, a control created…),
  written in the transaction that made it true. Immutable once written. `kind` names its type,
  `key` is a readable natural key (the control's mRID, "program/window/revision"…), `payload` the
  fact's fields as JSON.
* `OutboxDelivery`: one fact for one consumer — the retry state lives here, per consumer, because
  consumers fail independently (a BAP that is down must not hold back a 2030.5 notification).
  State: pending → delivered | dead. A drainer claims a row by moving `claimed_until` forward;
  `idempotency_key` is unique and stays the same for every attempt (a replay gives a new one).
* `OutboxReceipt`: a reference to what a consumer's action produced (e.g. the message_id of a Beckn
  callback it queued), unique across consumers: written in the same transaction as the action, it
  makes a second action for the same key fail, and it leads a later failure of that product (a
  callback that expired) back to its delivery.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import (
    BigInteger,
    Connection,
    Float,
    ForeignKey,
    Index,
    Integer,
    Select,
    String,
    Text,
    UniqueConstraint,
    case,
    delete,
    exists,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.orm import Mapped, Session, aliased, mapped_column

from server.db import bulk
from server.db.models import Base

# 64-bit ids on PostgreSQL (one fact per published control adds up); on SQLite only INTEGER
# PRIMARY KEY is the auto-assigned rowid, and it is 64-bit anyway.
BIG_ID = BigInteger().with_variant(Integer(), "sqlite")

STATES = ("pending", "delivered", "dead")


class OutboxFact(Base):
    # No index beside the primary key: a publish writes one fact per device control, and ids
    # follow time closely enough for pruning to find old facts by bisection (`prune_bound`).
    __tablename__ = "outbox_facts"

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True)
    kind: Mapped[str] = mapped_column(String(40))
    key: Mapped[str] = mapped_column(String(255))
    payload: Mapped[str] = mapped_column(Text)
    created_time: Mapped[float] = mapped_column(Float)


class OutboxDelivery(Base):
    __tablename__ = "outbox_deliveries"
    __table_args__ = (
        UniqueConstraint("fact_id", "consumer", name="uq_outbox_deliveries_fact_consumer"),
        UniqueConstraint("idempotency_key", name="uq_outbox_deliveries_idempotency_key"),
        Index("ix_outbox_deliveries_due", "state", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True)
    fact_id: Mapped[int] = mapped_column(BIG_ID, ForeignKey("outbox_facts.id", ondelete="CASCADE"))
    consumer: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))  # pending | delivered | dead
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # hand-overs begun (counted at the claim)
    next_attempt_at: Mapped[float] = mapped_column(Float)
    claimed_until: Mapped[float] = mapped_column(Float, default=0.0)
    last_error: Mapped[str | None] = mapped_column(String(500))
    idempotency_key: Mapped[str] = mapped_column(String(100))
    replays: Mapped[int] = mapped_column(Integer, default=0)  # operator replays (each a new key)
    updated_time: Mapped[float] = mapped_column(Float)
    delivered_time: Mapped[float | None] = mapped_column(Float)


class OutboxReceipt(Base):
    __tablename__ = "outbox_receipts"

    ref: Mapped[str] = mapped_column(String(255), primary_key=True)
    delivery_id: Mapped[int] = mapped_column(BIG_ID, ForeignKey("outbox_deliveries.id", ondelete="CASCADE"),
                                             index=True)
    created_time: Mapped[float] = mapped_column(Float)


FACT_COLUMNS = ("id", "kind", "key", "payload", "created_time")
DELIVERY_COLUMNS = ("fact_id", "consumer", "state", "attempts", "next_attempt_at", "claimed_until",
                    "idempotency_key", "replays", "updated_time")


def idempotency_key(consumer: str, fact_id: int, replays: int = 0) -> str:
    return f"{consumer}:{fact_id}" + (f":r{replays}" if replays else "")


# ------------------------------------------------------------------------------------ writing


_NEXT_IDS = "SELECT nextval(%s::regclass) AS v FROM generate_series(1, %s)"


def new_fact_ids(session: Session, n: int) -> list[int]:
    """`n` fact ids reserved for this transaction, so many facts and their deliveries can be
    written in bulk. PostgreSQL: from the table's sequence — as a range when nobody drew from it
    meanwhile (the usual case; sending 100,000 ids back cost more than the insert), else one by
    one; SQLite: after the largest id (the transaction holds the write lock from its first
    statement, so nobody else takes them)."""
    if n <= 0:
        return []
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        with conn.connection.driver_connection.cursor() as cur:
            # the sequence named once: pg_get_serial_sequence per id made this ten times slower
            (seq,) = cur.execute("SELECT pg_get_serial_sequence('outbox_facts', 'id')").fetchone() or (None,)
            low, high, count = cur.execute(f"SELECT min(v), max(v), count(*) FROM ({_NEXT_IDS}) t", (seq, n)).fetchone()
            if high - low + 1 == count == n:
                return list(range(low, high + 1))
            # interleaved with another transaction's ids: fresh ones, listed
            return sorted(r[0] for r in cur.execute(_NEXT_IDS, (seq, n)).fetchall())
    top = conn.execute(select(func.max(OutboxFact.id))).scalar() or 0
    return list(range(top + 1, top + 1 + n))


_COPY_TEXT = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_COPY_SPECIAL = re.compile(r"[\\\t\n\r]")


def _copy_text(value: str) -> str:
    """A value as COPY's text format needs it (checked first: mRIDs and most JSON need nothing)."""
    return value.translate(_COPY_TEXT) if _COPY_SPECIAL.search(value) else value


def insert_facts(session: Session, rows: Sequence[tuple[int, str, str, str, float]]) -> None:
    """Facts in FACT_COLUMNS order (ids from new_fact_ids), at the driver's speed: SQLite's
    executemany; on PostgreSQL one COPY of text made in one pass (per-row write_row cost a
    quarter of the time at 100,000 facts)."""
    if not rows:
        return
    conn = session.connection()
    if conn.dialect.name != "postgresql":
        bulk.insert(session, OutboxFact.__table__, FACT_COLUMNS, rows)
        return
    data = "".join([f"{i}\t{kind}\t{_copy_text(key)}\t{_copy_text(payload)}\t{t!r}\n"
                    for i, kind, key, payload, t in rows])
    with conn.connection.driver_connection.cursor() as cur, \
            cur.copy(f"COPY outbox_facts ({', '.join(FACT_COLUMNS)}) FROM STDIN") as copy:
        copy.write(data)


def insert_deliveries(session: Session, fact_ids: Sequence[int], consumers: Sequence[str], now: float) -> None:
    """A pending delivery of each fact to each consumer, due at `now`."""
    rows = [(fid, c, "pending", 0, now, 0.0, idempotency_key(c, fid), 0, now) for fid in fact_ids for c in consumers]
    bulk.insert(session, OutboxDelivery.__table__, DELIVERY_COLUMNS, rows)


def insert_facts_from(session: Session, rows: Select[Any], *, returning: bool) -> tuple[int, list[int]]:
    """Facts (kind, key, payload, created_time) that a query selects, written by the database: how
    many, and their ids when `returning` (a consumer needs deliveries for them)."""
    stmt = insert(OutboxFact).from_select(["kind", "key", "payload", "created_time"], rows)
    if returning:
        ids = sorted(session.execute(stmt.returning(OutboxFact.id)).scalars())
        return len(ids), ids
    # SQLAlchemy keeps an INSERT's row count only when asked to
    return session.execute(stmt.execution_options(preserve_rowcount=True)).rowcount, []


# ----------------------------------------------------------------------------------- draining


def due_ids(conn: Session | Connection, consumers: Collection[str], now: float, limit: int) -> Sequence[int]:
    """Deliveries to these consumers due now (a plain read: an idle drainer takes no write lock)."""
    d = OutboxDelivery
    return conn.execute(
        select(d.id).where(d.state == "pending", d.next_attempt_at <= now, d.claimed_until <= now,
                           d.consumer.in_(list(consumers)))
        .order_by(d.next_attempt_at, d.id).limit(limit)
    ).scalars().all()


def claim(session: Session, ids: Sequence[int], now: float, lease_s: float) -> list[tuple[int, str, int, float]]:
    """Claim those of `ids` still pending and unclaimed, counting the attempt: (id, consumer,
    attempts, token) of each row now held. PostgreSQL skips rows another drainer is claiming (FOR
    UPDATE SKIP LOCKED); SQLite serialises writers, and the conditional UPDATE decides there."""
    d = OutboxDelivery
    free = session.execute(
        select(d.id).where(d.id.in_(list(ids)), d.state == "pending", d.claimed_until <= now)
        .with_for_update(skip_locked=True)
    ).scalars().all()
    if not free:
        return []
    token = now + lease_s
    rows = session.execute(
        update(d).where(d.id.in_(list(free)), d.state == "pending", d.claimed_until <= now)
        .values(claimed_until=token, attempts=d.attempts + 1, updated_time=now)
        .returning(d.id, d.consumer, d.attempts)
    ).all()
    return sorted((i, c, n, token) for i, c, n in rows)


def held(session: Session, delivery_id: int, token: float) -> OutboxDelivery | None:
    """The delivery, locked, if this drainer's claim (`token`) still holds it and it is pending."""
    row = session.get(OutboxDelivery, delivery_id, with_for_update=True, populate_existing=True)
    if row is None or row.state != "pending" or row.claimed_until != token:
        return None
    return row


def prune_bound(session: Session, before: float) -> int | None:
    """About the largest fact id recorded before `before`, by bisection over the primary key (ids
    follow time; a fact written out of order is pruned a little early or late), below the newest
    fact, which always stays: SQLite never hands its id out again (an idempotency key names a fact
    id). None when there is nothing that old."""
    f = OutboxFact
    first, last = session.execute(select(func.min(f.id), func.max(f.id))).one()
    if first is None or first == last or session.scalar(select(f.created_time).where(f.id == first)) >= before:
        return None
    lo, hi = first, last - 1  # created(lo) < before
    while lo < hi:
        mid = (lo + hi + 1) // 2
        fid, created = session.execute(select(f.id, f.created_time).where(f.id >= mid).order_by(f.id).limit(1)).one()
        if created < before and fid <= hi:
            lo = fid
        else:
            hi = mid - 1
    return lo


def prune(session: Session, bound: int, before: float, limit: int) -> int:
    """Delete up to `limit` facts up to id `bound` recorded before `before` that no consumer still
    waits for or gave up on; their deliveries and receipts go with them (ON DELETE CASCADE)."""
    f, d = aliased(OutboxFact), OutboxDelivery
    still_open = exists().where(d.fact_id == f.id, d.state != "delivered")
    doomed = select(f.id).where(f.id <= bound, f.created_time < before, ~still_open).order_by(f.id).limit(limit)
    return session.execute(delete(OutboxFact).where(OutboxFact.id.in_(doomed))).rowcount or 0


# ------------------------------------------------------------------------------------ reading


def deliveries(session: Session, *, state: str | None = None, consumer: str | None = None,
               start: int = 0, limit: int = 100) -> tuple[int, Sequence[tuple[OutboxDelivery, OutboxFact]]]:
    """(how many match, one page of them newest first with their facts)."""
    d, f = OutboxDelivery, OutboxFact
    where = [c for c in (d.state == state if state else None, d.consumer == consumer if consumer else None)
             if c is not None]
    total = session.execute(select(func.count()).select_from(d).where(*where)).scalar() or 0
    page = session.execute(
        select(d, f).join(f, f.id == d.fact_id).where(*where).order_by(d.id.desc()).offset(start).limit(limit)
    ).all()
    return total, page


def counts(session: Session) -> Sequence[tuple[str, str, int, int]]:
    """(consumer, state, attempts capped at 2, count) over every delivery."""
    d = OutboxDelivery
    tried = case((d.attempts >= 2, 2), else_=d.attempts)
    return session.execute(
        select(d.consumer, d.state, tried, func.count()).group_by(d.consumer, d.state, tried)
    ).all()
