"""Log events devices post about themselves, bounded per device.

Each device keeps at most `MAX_PER_DEVICE` log events: storing one more drops that device's
oldest by arrival (not by the device's own clock, which may be wrong), so a chatty or broken
device cannot fill the disk. The table has no cache family: posting one never empties another
document's cache, and their reads are not cached.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, Row, Select, String, bindparam, delete, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from server.db.models import Base
from server.db.repo import Reader

MAX_PER_DEVICE = 1000


class LogEventRow(Base):
    """One LogEvent as a device posted it, and when it arrived."""

    __tablename__ = "log_events"
    __table_args__ = (
        Index("ix_log_events_device_id", "device_id", "id"),
        Index("ix_log_events_device_created", "device_id", "created_date_time", "log_event_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    received_time: Mapped[int] = mapped_column(BigInteger)
    created_date_time: Mapped[int] = mapped_column(BigInteger)  # the device's clock
    details: Mapped[str | None] = mapped_column(String(32))
    extended_data: Mapped[int | None] = mapped_column(BigInteger)
    function_set: Mapped[int] = mapped_column(Integer)
    log_event_code: Mapped[int] = mapped_column(Integer)
    log_event_id: Mapped[int] = mapped_column(Integer)
    log_event_pen: Mapped[int] = mapped_column(BigInteger)
    profile_id: Mapped[int] = mapped_column(Integer)


_LOG = LogEventRow.__table__
# The list order: newest first by the device's createdDateTime, then logEventID, then arrival.
_ORDER = (_LOG.c.created_date_time.desc(), _LOG.c.log_event_id.desc(), _LOG.c.id.desc())


@cache
def _count_stmt() -> Select[Any]:
    return select(func.count()).select_from(_LOG).where(_LOG.c.device_id == bindparam("device_id"))


@cache
def _page_stmt() -> Select[Any]:
    return (
        select(_LOG)
        .where(_LOG.c.device_id == bindparam("device_id"))
        .order_by(*_ORDER)
        .offset(bindparam("start"))
        .limit(bindparam("limit"))
    )


@cache
def _one_stmt() -> Select[Any]:
    return select(_LOG).where(_LOG.c.device_id == bindparam("device_id"), _LOG.c.id == bindparam("id"))


def log_events_of_device(db: Reader, device_id: int, start: int, limit: int) -> tuple[int, Sequence[Row[Any]]]:
    """(how many, one page) of a device's log events, newest first. The caller has checked that
    its client may see the device."""
    total = db.execute(_count_stmt(), {"device_id": device_id}).scalar_one()
    rows = db.execute(_page_stmt(), {"device_id": device_id, "start": start, "limit": limit}).all()
    return total, rows


def log_event_of_device(db: Reader, device_id: int, log_event_id: int) -> Row[Any] | None:
    return db.execute(_one_stmt(), {"device_id": device_id, "id": log_event_id}).first()


def add_log_event(session: Session, row: LogEventRow, *, keep: int = MAX_PER_DEVICE) -> LogEventRow:
    """Store a log event and drop the device's oldest beyond `keep` (by arrival)."""
    session.add(row)
    session.flush()
    cutoff = (
        select(_LOG.c.id)
        .where(_LOG.c.device_id == row.device_id)
        .order_by(_LOG.c.id.desc())
        .offset(keep)
        .limit(1)
        .scalar_subquery()
    )
    session.execute(delete(_LOG).where(_LOG.c.device_id == row.device_id, _LOG.c.id <= cutoff))
    return row
