"""Subscriptions and the notifications queued for them, in domain terms.

* `Subscription`: a client's wish to hear of changes to one resource, kept under the EndDevice the
  resource belongs to (`device_id`). `target` is the resource parsed into what the fan-out needs
  (kind, device, DER program, FSA, DER document), so matching a change to its subscribers is an
  indexed lookup, never a string match. One row per (device, subscriber, resource): subscribing
  again updates it.
* `Notification`: one document for one subscription, queued by the fan-out (in the transaction
  of the change it reports, or of the clock tick that made an event active) and sent by the
  notifier. `key` names what it reports (e.g. an event's mRID and status) and is unique per
  subscription, so nothing is queued twice. State: pending → delivered | dead. It keeps the
  receiver (scheme://host:port) it goes to, so a receiver's notifications are sent in order over
  one connection and retried together.
* `NotificationCursor`: how far the clock-driven scan of event starts and ends has got.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    BigInteger,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    case,
    delete,
    func,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Mapped, Session, mapped_column

from server.db.derp import DerEvent
from server.db.models import Base

BIG_ID = BigInteger().with_variant(Integer(), "sqlite")

STATES = ("pending", "delivered", "dead")

# What a subscription can be to (server.services.sep2.sub parses hrefs into these).
TARGETS = ("edev", "edev_list", "fsa_list", "derp_list", "derc_list", "actderc", "dderc", "der_doc")


class Subscription(Base):
    __tablename__ = "subscriptions"
    __table_args__ = (
        UniqueConstraint("device_id", "subscriber_lfdi", "resource", name="uq_subscriptions_resource"),
        Index("ix_subscriptions_target", "target", "target_device_id", "program_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), index=True)
    subscriber_lfdi: Mapped[str] = mapped_column(String(40))
    resource: Mapped[str] = mapped_column(String(255))  # subscribedResource, as the client named it
    target: Mapped[str] = mapped_column(String(16))  # one of TARGETS
    target_device_id: Mapped[int] = mapped_column(Integer)
    program_id: Mapped[int | None] = mapped_column(Integer)  # DER program (derc_list, actderc, dderc)
    fsa_id: Mapped[int | None] = mapped_column(Integer)  # derp_list
    der_doc: Mapped[str | None] = mapped_column(String(8))  # der_doc: dercap, derg, ders, dera
    notification_uri: Mapped[str] = mapped_column(String(255))
    # https://host[:port] of this server as the client addressed it: Notifications name their
    # subscription by absolute URI (the standard's SHALL), and that is the one the client can reach.
    base_uri: Mapped[str] = mapped_column(String(255), default="", server_default="")
    receiver: Mapped[str] = mapped_column(String(255))  # scheme://host:port of notification_uri
    limit: Mapped[int] = mapped_column(Integer)
    level: Mapped[str] = mapped_column(String(16))
    encoding: Mapped[int] = mapped_column(Integer, default=0)
    created_time: Mapped[int] = mapped_column(BigInteger)
    updated_time: Mapped[int] = mapped_column(BigInteger)


class Notification(Base):
    __tablename__ = "notifications"
    __table_args__ = (
        UniqueConstraint("subscription_id", "key", name="uq_notifications_subscription_key"),
        Index("ix_notifications_due", "state", "next_attempt_at"),
        Index("ix_notifications_receiver", "receiver", "state"),
    )

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True)
    # No foreign key: a "resource deleted" notification outlives the subscription it ends.
    subscription_id: Mapped[int] = mapped_column(Integer)
    key: Mapped[str] = mapped_column(String(100))
    receiver: Mapped[str] = mapped_column(String(255))
    uri: Mapped[str] = mapped_column(String(255))
    body: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[float] = mapped_column(Float)
    last_error: Mapped[str | None] = mapped_column(String(500))
    created_time: Mapped[float] = mapped_column(Float)
    delivered_time: Mapped[float | None] = mapped_column(Float)
    replays: Mapped[int] = mapped_column(Integer, default=0)


class NotificationCursor(Base):
    __tablename__ = "notification_cursors"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    at: Mapped[float] = mapped_column(Float)


# Events by start and by end: the clock-driven scan finds the ones that began or ended since it
# last looked without reading the others.
Index("ix_der_events_start", DerEvent.start)
Index("ix_der_events_end", DerEvent.start + DerEvent.duration)

SUB_COLUMNS = ("resource", "target", "target_device_id", "program_id", "fsa_id", "der_doc", "notification_uri",
               "receiver", "limit", "level", "encoding")


# ------------------------------------------------------------------------------ subscriptions


def find(session: Session, device_id: int, subscriber_lfdi: str, resource: str) -> Subscription | None:
    return session.scalars(select(Subscription).where(
        Subscription.device_id == device_id, Subscription.subscriber_lfdi == subscriber_lfdi,
        Subscription.resource == resource)).first()


def of_device(session: Any, device_id: int, start: int, limit: int) -> tuple[int, Sequence[Any]]:
    """(how many, one page by id) of the subscriptions kept under a device."""
    where = Subscription.device_id == device_id
    total = session.execute(select(func.count()).select_from(Subscription).where(where)).scalar() or 0
    rows = session.execute(select(Subscription.__table__).where(where).order_by(Subscription.id)
                           .offset(start).limit(limit)).all()
    return total, rows


def one(session: Any, device_id: int, sub_id: int) -> Any | None:
    return session.execute(select(Subscription.__table__).where(
        Subscription.device_id == device_id, Subscription.id == sub_id)).first()


def delete_one(session: Session, device_id: int, sub_id: int) -> bool:
    gone = session.execute(delete(Subscription).where(Subscription.device_id == device_id,
                                                      Subscription.id == sub_id)).rowcount or 0
    if gone:  # what was queued for it is not wanted any more
        session.execute(delete(Notification).where(Notification.subscription_id == sub_id,
                                                   Notification.state == "pending"))
    return bool(gone)


def matching(session: Session, target: str, device_ids: Sequence[int], *, program_id: int | None = None,
             fsa_id: int | None = None, der_doc: str | None = None) -> Sequence[Subscription]:
    """Subscriptions to `target` of these devices (and this program / FSA / document)."""
    out: list[Subscription] = []
    ids = list(dict.fromkeys(device_ids))
    for i in range(0, len(ids), 500):
        stmt = select(Subscription).where(Subscription.target == target,
                                          Subscription.target_device_id.in_(ids[i:i + 500]))
        if program_id is not None:
            stmt = stmt.where(Subscription.program_id == program_id)
        if fsa_id is not None:
            stmt = stmt.where(Subscription.fsa_id == fsa_id)
        if der_doc is not None:
            stmt = stmt.where(Subscription.der_doc == der_doc)
        out.extend(session.scalars(stmt.order_by(Subscription.id)))
    return out


def of_program(session: Session, targets: Sequence[str], program_id: int) -> Sequence[Subscription]:
    return session.scalars(select(Subscription).where(Subscription.target.in_(list(targets)),
                                                      Subscription.program_id == program_id)
                           .order_by(Subscription.id)).all()


def of_program_devices(session: Session, targets: Sequence[str], pairs: Sequence[tuple[int, int]]) -> Sequence[Subscription]:
    """Subscriptions to `targets` of these (DER program, device) pairs, by id: one indexed query
    per 500 devices (ix_subscriptions_target), whatever the number of pairs."""
    wanted = set(pairs)
    devices = sorted({d for _, d in wanted})
    programs = sorted({p for p, _ in wanted})
    out: list[Subscription] = []
    for i in range(0, len(devices), 500):
        out.extend(s for s in session.scalars(select(Subscription).where(
            Subscription.target.in_(list(targets)), Subscription.target_device_id.in_(devices[i:i + 500]),
            Subscription.program_id.in_(programs)))
            if (s.program_id, s.target_device_id) in wanted)
    return sorted(out, key=lambda s: s.id)


def of_targets(session: Session, targets: Sequence[str]) -> Sequence[Subscription]:
    return session.scalars(select(Subscription).where(Subscription.target.in_(list(targets)))
                           .order_by(Subscription.id)).all()


def all_subscriptions(session: Session, *, start: int = 0, limit: int = 100) -> tuple[int, Sequence[Subscription]]:
    total = session.execute(select(func.count()).select_from(Subscription)).scalar() or 0
    rows = session.scalars(select(Subscription).order_by(Subscription.id).offset(start).limit(limit)).all()
    return total, rows


# ------------------------------------------------------------------------------ notifications


def queue(session: Session, rows: Sequence[dict[str, Any]]) -> int:
    """Queue notifications (dicts of Notification's columns); one whose (subscription, key) is
    already queued is skipped. How many were new."""
    if not rows:
        return 0
    conn = session.connection()
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    # One cached statement, executed for many rows (SQLAlchemy batches them into multi-row
    # INSERTs): building a VALUES clause per call cost more than the rest of the queueing.
    stmt = (insert(Notification.__table__).on_conflict_do_nothing(index_elements=["subscription_id", "key"])
            .returning(Notification.id))
    written = 0
    for i in range(0, len(rows), 1000):
        written += len(conn.execute(stmt, list(rows[i:i + 1000])).all())
    return written


def last_bodies(session: Session, sub_ids: Sequence[int]) -> dict[int, str]:
    """The body of the newest notification queued for each of these subscriptions (those that
    have one)."""
    n = Notification
    out: dict[int, str] = {}
    ids = sorted(set(sub_ids))
    for i in range(0, len(ids), 500):
        newest = (select(func.max(n.id)).where(n.subscription_id.in_(ids[i:i + 500]))
                  .group_by(n.subscription_id).scalar_subquery())
        out.update((row[0], row[1]) for row in session.execute(select(n.subscription_id, n.body).where(n.id.in_(newest))))
    return out


def due(session: Any, now: float, limit: int) -> Sequence[Any]:
    """Pending notifications due now, oldest first: (id, subscription_id, receiver, uri, body,
    attempts)."""
    n = Notification
    return session.execute(
        select(n.id, n.subscription_id, n.receiver, n.uri, n.body, n.attempts)
        .where(n.state == "pending", n.next_attempt_at <= now).order_by(n.id).limit(limit)
    ).all()


def next_due(session: Any) -> float | None:
    return session.execute(select(func.min(Notification.next_attempt_at))
                           .where(Notification.state == "pending")).scalar()


def delivered(session: Session, ids: Sequence[int], now: float) -> None:
    n = Notification
    session.execute(update(n).where(n.id.in_(list(ids)), n.state == "pending")
                    .values(state="delivered", delivered_time=now, attempts=n.attempts + 1, last_error=None))


def failed(session: Session, head_id: int, receiver: str, error: str, retry_at: float | None, now: float) -> None:
    """The receiver refused or did not answer `head_id`: count the attempt; with `retry_at`, hold
    every pending notification of that receiver until then (so they stay in order), else the head
    is dead and the rest go on."""
    n = Notification
    if retry_at is None:
        session.execute(update(n).where(n.id == head_id, n.state == "pending")
                        .values(state="dead", attempts=n.attempts + 1, last_error=error[:500]))
        return
    session.execute(update(n).where(n.id == head_id).values(attempts=n.attempts + 1, last_error=error[:500]))
    session.execute(update(n).where(n.receiver == receiver, n.state == "pending", n.next_attempt_at < retry_at)
                    .values(next_attempt_at=retry_at))


def replay(session: Session, ids: Sequence[int] | None, now: float) -> list[int]:
    """Dead notifications (these, or all) pending again now; their ids."""
    n = Notification
    stmt = select(n.id).where(n.state == "dead")
    if ids is not None:
        stmt = stmt.where(n.id.in_(list(ids)))
    found = sorted(session.scalars(stmt))
    for i in range(0, len(found), 500):
        session.execute(update(n).where(n.id.in_(found[i:i + 500]))
                        .values(state="pending", attempts=0, next_attempt_at=now, replays=n.replays + 1))
    return found


def page(session: Session, *, state: str | None, receiver: str | None, start: int, limit: int) -> tuple[int, Sequence[Notification]]:
    n = Notification
    where = [c for c in (n.state == state if state else None, n.receiver == receiver if receiver else None)
             if c is not None]
    total = session.execute(select(func.count()).select_from(n).where(*where)).scalar() or 0
    rows = session.scalars(select(n).where(*where).order_by(n.id.desc()).offset(start).limit(limit)).all()
    return total, rows


def counts(session: Session) -> Sequence[tuple[str, str, int, int]]:
    """(receiver, state, attempts capped at 2, count)."""
    n = Notification
    tried = case((n.attempts >= 2, 2), else_=n.attempts)
    return session.execute(select(n.receiver, n.state, tried, func.count())
                           .group_by(n.receiver, n.state, tried)).all()


def prune(session: Session, before: float, limit: int = 10_000) -> int:
    n = Notification
    doomed = select(n.id).where(n.state == "delivered", n.delivered_time < before).limit(limit)
    return session.execute(delete(n).where(n.id.in_(doomed))).rowcount or 0


# ------------------------------------------------------------------------------------- cursor


def cursor(session: Session, name: str, now: float) -> NotificationCursor:
    """The cursor, locked for this transaction (made at `now` the first time)."""
    row = session.get(NotificationCursor, name, with_for_update=True)
    if row is None:
        row = NotificationCursor(name=name, at=now)
        session.add(row)
        session.flush()
    return row


def any_subscription(session: Session) -> bool:
    return session.execute(select(Subscription.id).limit(1)).first() is not None
