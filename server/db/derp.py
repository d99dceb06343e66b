"""DER programs, their member devices, and their events (DERControls), in domain terms.

An event targets one member device or, with no device, every member of its program. Events are
never deleted or edited: a cancellation is recorded beside them, supersession is computed when
read (server/sep2/events.py). The control itself is kept as its rendered DERControlBase element,
with the set of modes it sets for supersession checks.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    Row,
    Select,
    String,
    Text,
    bindparam,
    exists,
    select,
    union_all,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from server.db import bulk
from server.db.models import Base, Device
from server.db.repo import DriverStatement, Reader, scope_params, visible_to
from server.scope import Role, Scope

SEP2_FAMILY = {"info": {"cache_family": "sep2"}}


class DerProgram(Base):
    """A DERProgram: primacy (lower wins across programs) and its default control."""

    __tablename__ = "der_programs"
    __table_args__ = SEP2_FAMILY

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    mrid: Mapped[str] = mapped_column(String(32), unique=True)
    description: Mapped[str | None] = mapped_column(String(32))
    primacy: Mapped[int] = mapped_column(Integer)
    version: Mapped[int] = mapped_column(Integer, default=0)
    created_time: Mapped[int] = mapped_column(BigInteger)
    # DefaultDERControl: its own mRID and version; the control as a rendered DERControlBase.
    default_mrid: Mapped[str | None] = mapped_column(String(32))
    default_version: Mapped[int] = mapped_column(Integer, default=0)
    default_base: Mapped[str | None] = mapped_column(Text)
    # The DefaultDERControl's own fields (setGradW, setES*, description…) as JSON by 2030.5 names.
    default_settings: Mapped[str | None] = mapped_column(Text)


class ProgramMember(Base):
    """A device's membership of a program: what its FunctionSetAssignments lead it to."""

    __tablename__ = "der_program_members"
    __table_args__ = SEP2_FAMILY

    program_id: Mapped[int] = mapped_column(
        ForeignKey("der_programs.id", ondelete="CASCADE"), primary_key=True
    )
    device_id: Mapped[int] = mapped_column(
        ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class DerEvent(Base):
    """A DERControl: when, what, for whom; cancelled or not. Never deleted or changed otherwise."""

    __tablename__ = "der_events"
    __table_args__ = (
        Index("ix_der_events_program_device_start", "program_id", "device_id", "start"),
        SEP2_FAMILY,
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    mrid: Mapped[str] = mapped_column(String(32), unique=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("der_programs.id", ondelete="CASCADE"))
    # None: every member of the program.
    device_id: Mapped[int | None] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    description: Mapped[str | None] = mapped_column(String(32))
    creation_time: Mapped[int] = mapped_column(BigInteger)
    start: Mapped[int] = mapped_column(BigInteger)
    duration: Mapped[int] = mapped_column(BigInteger)
    randomize_start: Mapped[int | None] = mapped_column(Integer)
    randomize_duration: Mapped[int | None] = mapped_column(Integer)
    response_required: Mapped[str] = mapped_column(String(2), default="03")
    base: Mapped[str] = mapped_column(Text)  # rendered DERControlBase element
    controls: Mapped[str] = mapped_column(String(400))  # space-separated mode names it sets
    cancelled_at: Mapped[int | None] = mapped_column(BigInteger)
    cancel_randomized: Mapped[bool] = mapped_column(Boolean, default=False)


_PROGRAM = DerProgram.__table__
_EVENT = DerEvent.__table__


def _device_visible(role: Role) -> Any:
    """`device_id` (bound) names a device the caller may see."""
    return exists(
        select(Device.id).where(Device.id == bindparam("device_id"), visible_to(role))
    )


@cache
def _der_programs_of_device_stmt(role: Role) -> Select[Any]:
    member = ProgramMember.__table__
    return (
        select(_PROGRAM)
        .join(member, member.c.program_id == _PROGRAM.c.id)
        .where(member.c.device_id == bindparam("device_id"), _device_visible(role))
        .order_by(_PROGRAM.c.primacy, _PROGRAM.c.id)
    )


@cache
def _der_program_of_device_stmt(role: Role) -> Select[Any]:
    return _der_programs_of_device_stmt(role).where(_PROGRAM.c.id == bindparam("program_id"))


@cache
def _events_for_device_stmt() -> DriverStatement:
    # Called only after the caller's right to see the device and program was checked. Two index
    # seeks (program-wide events, this device's) rather than one OR, which made SQLite read every
    # event of the program: with one event per device that was 300 µs per poll at 3,000 devices.
    # Every DER poll runs it: driver-level (repo.DriverStatement).
    def part(device: Any) -> Select[Any]:
        return select(_EVENT).where(
            _EVENT.c.program_id == bindparam("program_id"),
            device,
            _EVENT.c.creation_time <= bindparam("now"),
            _EVENT.c.start + _EVENT.c.duration > bindparam("since"),
        )

    return DriverStatement(
        union_all(part(_EVENT.c.device_id.is_(None)), part(_EVENT.c.device_id == bindparam("device_id"))))


def der_programs_of_device(db: Reader, scope: Scope, device_id: int) -> Sequence[Row[Any]]:
    """The programs a visible device belongs to, by primacy; [] for a device out of scope."""
    params = scope_params(scope, device_id=device_id)
    return [] if params is None else db.execute(_der_programs_of_device_stmt(scope.role), params).all()


def der_program_of_device(db: Reader, scope: Scope, device_id: int, program_id: int) -> Row[Any] | None:
    params = scope_params(scope, device_id=device_id, program_id=program_id)
    if params is None:
        return None
    return db.execute(_der_program_of_device_stmt(scope.role), params).first()


def current_events(db: Reader, program_id: int, device_id: int, *, since: int, now: int) -> Sequence[Row[Any]]:
    """Events of a program that apply to a device, exist at `now` and had not ended at `since`."""
    params = {"program_id": program_id, "device_id": device_id, "since": since, "now": now}
    return _events_for_device_stmt().all(db, params)


# ----------------------------------------------------------------------------- operator writes


def add_der_program(session: Session, program: DerProgram) -> DerProgram:
    session.add(program)
    session.flush()
    return program


def get_der_program(session: Session, program_id: int) -> DerProgram | None:
    return session.get(DerProgram, program_id)


def list_der_programs(session: Session) -> Sequence[DerProgram]:
    return session.scalars(select(DerProgram).order_by(DerProgram.primacy, DerProgram.id)).all()


def add_members(session: Session, program_id: int, device_ids: Sequence[int]) -> int:
    """Add devices to a program (already members are left as they are); returns how many were new."""
    wanted = list(dict.fromkeys(device_ids))
    existing: set[int] = set()
    for i in range(0, len(wanted), 500):  # only the given devices: cost independent of the program's size
        existing.update(session.scalars(
            select(ProgramMember.device_id).where(
                ProgramMember.program_id == program_id, ProgramMember.device_id.in_(wanted[i:i + 500]))
        ))
    new = [d for d in wanted if d not in existing]
    session.add_all(ProgramMember(program_id=program_id, device_id=d) for d in new)
    session.flush()
    return len(new)


def remove_members(session: Session, program_id: int, device_ids: Sequence[int]) -> int:
    rows = session.scalars(
        select(ProgramMember).where(
            ProgramMember.program_id == program_id, ProgramMember.device_id.in_(device_ids)
        )
    ).all()
    for row in rows:
        session.delete(row)
    return len(rows)


def member_ids(session: Session, program_id: int) -> list[int]:
    stmt = select(ProgramMember.device_id).where(ProgramMember.program_id == program_id)
    return sorted(session.scalars(stmt))


def existing_device_ids(session: Session, device_ids: Sequence[int]) -> set[int]:
    return set(session.scalars(select(Device.id).where(Device.id.in_(device_ids))))


def add_events(session: Session, events: Sequence[DerEvent]) -> None:
    session.add_all(events)
    session.flush()


def get_event_by_mrid(session: Session, mrid: str) -> DerEvent | None:
    return session.scalars(select(DerEvent).where(DerEvent.mrid == mrid)).first()


def der_program_events(session: Session, program_id: int, since_end: int) -> Sequence[DerEvent]:
    """A program's events that had not ended at `since_end`, by start."""
    stmt = (
        select(DerEvent)
        .where(DerEvent.program_id == program_id, DerEvent.start + DerEvent.duration > since_end)
        .order_by(DerEvent.start, DerEvent.id)
    )
    return session.scalars(stmt).all()


EVENT_COLUMNS = ("mrid", "program_id", "device_id", "description", "creation_time", "start", "duration",
                 "randomize_start", "randomize_duration", "response_required", "base", "controls",
                 "cancelled_at", "cancel_randomized")


def insert_events(session: Session, rows: Sequence[tuple[Any, ...]]) -> None:
    """Many events at once (the scheduler publishes one per device), tuples in EVENT_COLUMNS order."""
    bulk.insert(session, _EVENT, EVENT_COLUMNS, rows)


def cancel_events(session: Session, mrids: Sequence[str], now: int) -> int:
    """Cancel the given events that are not cancelled yet (status 2); returns how many."""
    done = 0
    for i in range(0, len(mrids), 500):
        chunk = list(mrids[i : i + 500])
        result = session.execute(
            _EVENT.update()
            .where(_EVENT.c.mrid.in_(chunk), _EVENT.c.cancelled_at.is_(None))
            .values(cancelled_at=now, cancel_randomized=False)
        )
        done += result.rowcount or 0
    return done
