"""FunctionSetAssignments in domain terms: which DER programs a device is led to, and through which
of its FunctionSetAssignments.

Two ways lead a device to a DER program:

- **membership** (`der_program_members`, server.db.derp): the operator's members and the devices
  the flexibility scheduler enrolls. Every device's FunctionSetAssignments number 1 holds the DER
  programs it is a member of; it is derived, not stored (mRID from the device id).
- **operator FSAs** (`function_set_assignments`): an FSA has its own mRID, description, version and
  the DER programs it assigns (`fsa_der_programs`), and is assigned to one device or a group
  (`fsa_devices`). Each device sees it under a number of its own (2, 3, …: `/edev/{id}/fsa/{n}`),
  so one FSA shared by a group keeps one mRID and one version, as a DERProgram does.

FSA 1 is listed when the device is a member of some DER program, or when it has no operator FSA
(so a device never has an empty FunctionSetAssignmentsList, as before FSAs were first-class).

A device *reaches* a DER program through either way; that is what lets it read the program, its
events and its ResponseSet, and answer them (`der_program_reached`, `reaches`, `follower_ids`).

Client reads are filtered by the caller's Scope in SQL (the device must be visible); every query
of the poll path is a primary-key or index seek: `fsa_devices` by (device, number),
`fsa_der_programs` by (fsa, program) and by program, memberships by device.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    PrimaryKeyConstraint,
    Row,
    Select,
    String,
    UniqueConstraint,
    and_,
    bindparam,
    delete,
    exists,
    func,
    or_,
    select,
    union,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from server.db.derp import DerProgram, ProgramMember
from server.db.models import Aggregator, Base, Device
from server.db.repo import DriverStatement, Reader, scope_params, visible_to
from server.scope import Role, Scope

SEP2_FAMILY = {"cache_family": "sep2"}
MEMBERSHIP_FSA = 1  # the derived FunctionSetAssignments of every device: its memberships


class FunctionSetAssignment(Base):
    """An operator's FunctionSetAssignments: its identity and version (bumped on every change)."""

    __tablename__ = "function_set_assignments"
    __table_args__ = {"info": SEP2_FAMILY}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    mrid: Mapped[str] = mapped_column(String(32), unique=True)
    description: Mapped[str | None] = mapped_column(String(32))
    version: Mapped[int] = mapped_column(Integer, default=0)
    created_time: Mapped[int] = mapped_column(BigInteger)


class FsaDevice(Base):
    """An FSA assigned to a device, under the device's own number for it (2, 3, …)."""

    __tablename__ = "fsa_devices"
    __table_args__ = (
        PrimaryKeyConstraint("device_id", "number", name="pk_fsa_devices"),
        UniqueConstraint("fsa_id", "device_id", name="uq_fsa_devices_fsa_device"),
        {"info": SEP2_FAMILY},
    )

    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    fsa_id: Mapped[int] = mapped_column(ForeignKey("function_set_assignments.id", ondelete="CASCADE"))


class FsaDerProgram(Base):
    """A DER program an FSA assigns."""

    __tablename__ = "fsa_der_programs"
    __table_args__ = (
        PrimaryKeyConstraint("fsa_id", "program_id", name="pk_fsa_der_programs"),
        Index("ix_fsa_der_programs_program_id", "program_id"),
        {"info": SEP2_FAMILY},
    )

    fsa_id: Mapped[int] = mapped_column(ForeignKey("function_set_assignments.id", ondelete="CASCADE"))
    program_id: Mapped[int] = mapped_column(ForeignKey("der_programs.id", ondelete="CASCADE"))


_FSA = FunctionSetAssignment.__table__
_FD = FsaDevice.__table__
_FP = FsaDerProgram.__table__
_PROGRAM = DerProgram.__table__
_MEMBER = ProgramMember.__table__


def _device_visible(role: Role) -> Any:
    """`device_id` (bound) names a device the caller may see."""
    return exists(select(Device.id).where(Device.id == bindparam("device_id"), visible_to(role)))


# ------------------------------------------------------------------------------ device side

_IS_MEMBER = exists(select(_MEMBER.c.program_id).where(_MEMBER.c.device_id == bindparam("device_id")))
_HAS_FSA = exists(select(_FD.c.number).where(_FD.c.device_id == bindparam("device_id")))
# An aggregator's own EndDevice (its certificate's LFDI: CSIP-AUS) has no DER and follows no
# program: an empty FSA 1 there would only mislead a client walking every EndDevice's FSAs.
_IS_AGGREGATOR = exists(select(Aggregator.lfdi).join(Device, Device.lfdi == Aggregator.lfdi)
                        .where(Device.id == bindparam("device_id")))
_PROGRAM_COUNT = (
    select(func.count()).select_from(_FP).where(_FP.c.fsa_id == _FSA.c.id).correlate(_FSA).scalar_subquery()
)


@cache
def _shows_membership_stmt(role: Role) -> Select[Any]:
    return select(or_(_IS_MEMBER, and_(~_HAS_FSA, ~_IS_AGGREGATOR)).label("shown")).where(_device_visible(role))


@cache
def _assigned_stmt(role: Role) -> Select[Any]:
    return (
        select(_FD.c.number, _FSA.c.id, _FSA.c.mrid, _FSA.c.description, _FSA.c.version,
               _PROGRAM_COUNT.label("programs"))
        .join(_FSA, _FSA.c.id == _FD.c.fsa_id)
        .where(_FD.c.device_id == bindparam("device_id"), _device_visible(role))
        .order_by(_FD.c.number)
    )


@cache
def _assigned_one_stmt(role: Role) -> Select[Any]:
    return _assigned_stmt(role).where(_FD.c.number == bindparam("number"))


def shows_membership_fsa(db: Reader, scope: Scope, device_id: int) -> bool:
    """Whether the visible device lists FSA 1: it is a member of some DER program, or it has no
    operator FSA. False for a device out of scope."""
    params = scope_params(scope, device_id=device_id)
    return params is not None and bool(db.execute(_shows_membership_stmt(scope.role), params).scalar())


def assigned_fsas(db: Reader, scope: Scope, device_id: int) -> Sequence[Row[Any]]:
    """The operator FSAs of a visible device by its number: (number, id, mrid, description,
    version, programs); [] for a device out of scope."""
    params = scope_params(scope, device_id=device_id)
    return [] if params is None else db.execute(_assigned_stmt(scope.role), params).all()


def assigned_fsa(db: Reader, scope: Scope, device_id: int, number: int) -> Row[Any] | None:
    params = scope_params(scope, device_id=device_id, number=number)
    return None if params is None else db.execute(_assigned_one_stmt(scope.role), params).first()


@cache
def _fsa_programs_stmt(role: Role) -> Select[Any]:
    return (
        select(_PROGRAM)
        .join(_FP, _FP.c.program_id == _PROGRAM.c.id)
        .join(_FD, _FD.c.fsa_id == _FP.c.fsa_id)
        .where(_FD.c.device_id == bindparam("device_id"), _FD.c.number == bindparam("number"),
               _device_visible(role))
        .order_by(_PROGRAM.c.primacy, _PROGRAM.c.id)
    )


def der_programs_of_fsa(db: Reader, scope: Scope, device_id: int, number: int) -> Sequence[Row[Any]]:
    """The DER programs of the visible device's FSA `number` (≥ 2), by primacy."""
    params = scope_params(scope, device_id=device_id, number=number)
    return [] if params is None else db.execute(_fsa_programs_stmt(scope.role), params).all()


def _reaches() -> Any:
    """The bound `device_id` reaches the program row `_PROGRAM` (membership or an FSA)."""
    member = exists(select(_MEMBER.c.device_id).where(
        _MEMBER.c.program_id == _PROGRAM.c.id, _MEMBER.c.device_id == bindparam("device_id")))
    assigned = exists(
        select(_FD.c.number)
        .join(_FP, _FP.c.fsa_id == _FD.c.fsa_id)
        .where(_FD.c.device_id == bindparam("device_id"), _FP.c.program_id == _PROGRAM.c.id)
    )
    return or_(member, assigned)


@cache
def _reached_one_stmt(role: Role) -> DriverStatement:  # every DER poll: driver-level (repo.DriverStatement)
    return DriverStatement(
        select(_PROGRAM).where(_PROGRAM.c.id == bindparam("program_id"), _reaches(), _device_visible(role)))


@cache
def _reached_stmt(role: Role) -> Select[Any]:
    ids = union(
        select(_MEMBER.c.program_id.label("id")).where(_MEMBER.c.device_id == bindparam("device_id")),
        select(_FP.c.program_id.label("id"))
        .join(_FD, _FD.c.fsa_id == _FP.c.fsa_id)
        .where(_FD.c.device_id == bindparam("device_id")),
    ).subquery()
    return (
        select(_PROGRAM)
        .join(ids, ids.c.id == _PROGRAM.c.id)
        .where(_device_visible(role))
        .order_by(_PROGRAM.c.primacy, _PROGRAM.c.id)
    )


def der_program_reached(db: Reader, scope: Scope, device_id: int, program_id: int) -> Row[Any] | None:
    """The DER program when the visible device reaches it (membership or one of its FSAs)."""
    params = scope_params(scope, device_id=device_id, program_id=program_id)
    return None if params is None else _reached_one_stmt(scope.role).first(db, params)


def der_programs_reached(db: Reader, scope: Scope, device_id: int) -> Sequence[Row[Any]]:
    """Every DER program the visible device reaches, by primacy."""
    params = scope_params(scope, device_id=device_id)
    return [] if params is None else db.execute(_reached_stmt(scope.role), params).all()


def reaches(db: Reader, program_id: int, device_id: int) -> bool:
    """Unscoped (the caller checked the device): whether the device reaches the program."""
    stmt = select(_PROGRAM.c.id).where(_PROGRAM.c.id == bindparam("program_id"), _reaches())
    return db.execute(stmt, {"program_id": program_id, "device_id": device_id}).first() is not None


@cache
def _one_count_stmt() -> DriverStatement:
    device = bindparam("device_id")
    assigned = select(func.count()).select_from(_FD).where(_FD.c.device_id == device).scalar_subquery()
    member = exists(select(_MEMBER.c.device_id).where(_MEMBER.c.device_id == device))
    return DriverStatement(select(assigned.label("assigned"), member.label("member"),
                                  _IS_AGGREGATOR.label("aggregator")))


def fsa_counts(db: Reader, device_ids: Sequence[int]) -> dict[int, int]:
    """How many FunctionSetAssignments each device lists (FSA 1 included when shown). Unscoped:
    for devices the caller already sees (their EndDevice documents)."""
    if not device_ids:
        return {}
    ids = list(device_ids)
    if len(ids) == 1:  # one EndDevice, polled: one driver-level statement (no IN list to build)
        row = _one_count_stmt().first(db, {"device_id": ids[0]})
        return {ids[0]: row.assigned + (1 if row.member or not (row.assigned or row.aggregator) else 0)}
    assigned = dict(db.execute(
        select(_FD.c.device_id, func.count()).where(_FD.c.device_id.in_(ids)).group_by(_FD.c.device_id)
    ).all())
    members = set(db.scalars(select(_MEMBER.c.device_id).where(_MEMBER.c.device_id.in_(ids)).distinct()))
    own = set(db.scalars(select(Device.id).join(Aggregator, Aggregator.lfdi == Device.lfdi).where(Device.id.in_(ids))))
    return {d: assigned.get(d, 0) + (1 if d in members or not (assigned.get(d) or d in own) else 0) for d in ids}


# ---------------------------------------------------------------------------- operator side


def add_fsa(session: Session, row: FunctionSetAssignment) -> FunctionSetAssignment:
    session.add(row)
    session.flush()
    return row


def get_fsa(session: Session, fsa_id: int) -> FunctionSetAssignment | None:
    return session.get(FunctionSetAssignment, fsa_id)


def list_fsas(session: Session, device_id: int | None = None) -> Sequence[FunctionSetAssignment]:
    stmt = select(FunctionSetAssignment).order_by(FunctionSetAssignment.id)
    if device_id is not None:
        stmt = stmt.join(FsaDevice, FsaDevice.fsa_id == FunctionSetAssignment.id).where(FsaDevice.device_id == device_id)
    return session.scalars(stmt).all()


def delete_fsa(session: Session, row: FunctionSetAssignment) -> None:
    # Explicit deletes: SQLite enforces ON DELETE CASCADE only with foreign keys switched on.
    session.execute(delete(FsaDevice).where(FsaDevice.fsa_id == row.id))
    session.execute(delete(FsaDerProgram).where(FsaDerProgram.fsa_id == row.id))
    session.delete(row)
    session.flush()


def fsa_program_ids(session: Session, fsa_id: int) -> list[int]:
    return sorted(session.scalars(select(FsaDerProgram.program_id).where(FsaDerProgram.fsa_id == fsa_id)))


def fsa_devices(session: Session, fsa_id: int) -> list[tuple[int, int]]:
    """(device id, the device's number for it), by device id."""
    rows = session.execute(
        select(FsaDevice.device_id, FsaDevice.number).where(FsaDevice.fsa_id == fsa_id).order_by(FsaDevice.device_id)
    ).all()
    return [(r.device_id, r.number) for r in rows]


def add_fsa_programs(session: Session, fsa_id: int, program_ids: Sequence[int]) -> int:
    have = set(fsa_program_ids(session, fsa_id))
    new = [p for p in dict.fromkeys(program_ids) if p not in have]
    session.add_all(FsaDerProgram(fsa_id=fsa_id, program_id=p) for p in new)
    session.flush()
    return len(new)


def remove_fsa_programs(session: Session, fsa_id: int, program_ids: Sequence[int]) -> int:
    result = session.execute(
        delete(FsaDerProgram).where(FsaDerProgram.fsa_id == fsa_id, FsaDerProgram.program_id.in_(list(program_ids)))
    )
    return result.rowcount or 0


def assign_devices(session: Session, fsa_id: int, device_ids: Sequence[int]) -> int:
    """Assign the FSA to devices that do not have it yet, each under its next number (≥ 2)."""
    wanted = list(dict.fromkeys(device_ids))
    have = {d for d, _ in fsa_devices(session, fsa_id)}
    new = [d for d in wanted if d not in have]
    top: dict[int, int] = {}
    for i in range(0, len(new), 500):
        chunk = new[i:i + 500]
        top.update(session.execute(
            select(FsaDevice.device_id, func.max(FsaDevice.number))
            .where(FsaDevice.device_id.in_(chunk)).group_by(FsaDevice.device_id)
        ).all())
    session.add_all(
        FsaDevice(device_id=d, number=max(top.get(d) or MEMBERSHIP_FSA, MEMBERSHIP_FSA) + 1, fsa_id=fsa_id)
        for d in new
    )
    session.flush()
    return len(new)


def unassign_devices(session: Session, fsa_id: int, device_ids: Sequence[int]) -> int:
    result = session.execute(
        delete(FsaDevice).where(FsaDevice.fsa_id == fsa_id, FsaDevice.device_id.in_(list(device_ids)))
    )
    return result.rowcount or 0


def fsa_follower_ids(session: Reader, program_id: int) -> set[int]:
    """The devices an operator FSA leads to the program (membership aside)."""
    stmt = (
        select(_FD.c.device_id)
        .join(_FP, and_(_FP.c.fsa_id == _FD.c.fsa_id, _FP.c.program_id == bindparam("program_id")))
        .distinct()
    )
    return set(session.scalars(stmt, {"program_id": program_id}))


def follower_ids(session: Reader, program_id: int) -> list[int]:
    """Every device that reaches the program: its members and the devices of FSAs assigning it."""
    members = set(session.scalars(select(_MEMBER.c.device_id).where(_MEMBER.c.program_id == program_id)))
    return sorted(members | fsa_follower_ids(session, program_id))
