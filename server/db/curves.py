"""DER curves of DER programs (volt-var, freq-watt, the ride-through trip curves …).

A curve is kept as its canonical DERCurve document (without href: that depends on the device
reading it) beside the columns queries need. Curves belong to one DER program and are read
through it; they are in the `sep2` cache family, so adding or deleting one drops the cached
documents that show it. Controls name a curve in their stored DERControlBase by the token
`dc:{id}` (server.services.sep2.mappers.dc); `curve_in_use` looks for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Integer, Row, Select, String, Text, bindparam, exists, func, or_, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from server.db.derp import DerEvent, DerProgram
from server.db.models import Base
from server.db.repo import Reader


class DerCurve(Base):
    """One DERCurve of a DER program: its type, identity and canonical document."""

    __tablename__ = "der_curves"
    __table_args__ = {"info": {"cache_family": "sep2"}}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("der_programs.id", ondelete="CASCADE"), index=True)
    mrid: Mapped[str] = mapped_column(String(32), unique=True)
    description: Mapped[str | None] = mapped_column(String(32))
    curve_type: Mapped[int] = mapped_column(Integer)
    creation_time: Mapped[int] = mapped_column(BigInteger)
    document: Mapped[str] = mapped_column(Text)  # canonical DERCurve XML, no href


_CURVE = DerCurve.__table__
# Newest first: creationTime, then mRID, descending.
_ORDER = (_CURVE.c.creation_time.desc(), _CURVE.c.mrid.desc())


@cache
def _count_stmt() -> Select[Any]:
    return select(func.count()).select_from(_CURVE).where(_CURVE.c.program_id == bindparam("program_id"))


@cache
def _page_stmt() -> Select[Any]:
    return (
        select(_CURVE)
        .where(_CURVE.c.program_id == bindparam("program_id"))
        .order_by(*_ORDER)
        .offset(bindparam("start"))
        .limit(bindparam("limit"))
    )


@cache
def _one_stmt() -> Select[Any]:
    return select(_CURVE).where(_CURVE.c.program_id == bindparam("program_id"), _CURVE.c.id == bindparam("id"))


def curves_of_program(db: Reader, program_id: int, start: int, limit: int) -> tuple[int, Sequence[Row[Any]]]:
    """(how many, one page) of a DER program's curves, newest first. The caller has checked that
    its client may see the program."""
    total = db.execute(_count_stmt(), {"program_id": program_id}).scalar_one()
    rows = db.execute(_page_stmt(), {"program_id": program_id, "start": start, "limit": limit}).all()
    return total, rows


def curve_of_program(db: Reader, program_id: int, curve_id: int) -> Row[Any] | None:
    return db.execute(_one_stmt(), {"program_id": program_id, "id": curve_id}).first()


def get_curve(session: Session, program_id: int, curve_id: int) -> DerCurve | None:
    row = session.get(DerCurve, curve_id)
    return row if row is not None and row.program_id == program_id else None


def add_curve(session: Session, curve: DerCurve) -> DerCurve:
    session.add(curve)
    session.flush()
    return curve


def delete_curve(session: Session, curve: DerCurve) -> None:
    session.delete(curve)
    session.flush()


def curve_in_use(session: Session, program_id: int, token: str, *, since: int) -> bool:
    """Whether the program's default control, or one of its events that has not ended by `since`
    (cancelled ones included: they stay listed until their end), names the curve `token`."""
    pattern = f'%href="{token}"%'
    by_default = exists(
        select(DerProgram.id).where(DerProgram.id == program_id, DerProgram.default_base.like(pattern))
    )
    by_event = exists(
        select(DerEvent.id).where(
            DerEvent.program_id == program_id,
            DerEvent.start + DerEvent.duration > since,
            DerEvent.base.like(pattern),
        )
    )
    return bool(session.execute(select(or_(by_default, by_event))).scalar())
