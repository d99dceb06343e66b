"""Responses devices post about events (received, started, completed, opted out, rejected…)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, Row, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from server.db.derp import DerEvent
from server.db.models import Base, Device


class DerResponse(Base):
    """One Response: which device said what about which event, and when."""

    __tablename__ = "der_responses"
    __table_args__ = (Index("ix_der_responses_event_device", "event_id", "device_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("der_events.id", ondelete="CASCADE"))
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), index=True)
    status: Mapped[int] = mapped_column(Integer)
    created_date_time: Mapped[int | None] = mapped_column(BigInteger)  # the device's own clock
    received_time: Mapped[int] = mapped_column(BigInteger)


def add(session: Session, response: DerResponse) -> DerResponse:
    session.add(response)
    session.flush()
    return response


def for_devices(db: Any, program_id: int, device_ids: Sequence[int], start: int, limit: int) -> tuple[int, Sequence[Row[Any]]]:
    """(count, page) of the responses about a program's events made for these devices."""
    where = (DerEvent.program_id == program_id, DerResponse.device_id.in_(device_ids))
    base = select(DerResponse.__table__, DerEvent.mrid.label("subject"), Device.lfdi.label("lfdi"))
    base = base.join(DerEvent, DerEvent.id == DerResponse.event_id).join(Device, Device.id == DerResponse.device_id)
    total = db.execute(
        select(func.count()).select_from(DerResponse).join(DerEvent, DerEvent.id == DerResponse.event_id).where(*where)
    ).scalar_one()
    rows = db.execute(base.where(*where).order_by(DerResponse.id).offset(start).limit(limit)).all()
    return total, rows


def summary(session: Session, event_id: int) -> dict[int, int]:
    """How many devices' latest response about an event has each status."""
    latest = (
        select(DerResponse.device_id, func.max(DerResponse.id).label("last"))
        .where(DerResponse.event_id == event_id)
        .group_by(DerResponse.device_id)
        .subquery()
    )
    stmt = select(DerResponse.status, func.count()).join(latest, DerResponse.id == latest.c.last).group_by(DerResponse.status)
    return {status: count for status, count in session.execute(stmt)}
