"""Flexibility programs in domain terms: programs, grid nodes, enrollments, peak windows, their
clearings and per-device setpoints; and the scheduler's own tables (APScheduler's job store and
the leadership lease).

A program's definition is kept as its JSON document (programs.model.Program.to_dict), validated
by the domain on the way in, so the admin API, the CLI and the database agree on one format. Each
program publishes into one 2030.5 DERProgram (`der_program_id`); its enrolled devices are that
program's members. Clearings and setpoints are never changed once written: a re-clearing is a new
revision of the window, so every published control can be traced to the clearing that made it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    Unicode,
    UniqueConstraint,
    select,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from server.db import bulk
from server.db.models import Base


class FlexProgram(Base):
    """A flexibility program: its definition (JSON) and the DERProgram it publishes into."""

    __tablename__ = "flex_programs"
    __table_args__ = {"info": {"cache_family": "flex"}}  # the Beckn catalog is cached per its counter

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    spec: Mapped[str] = mapped_column(Text)  # programs.model.Program.to_dict() as JSON
    der_program_id: Mapped[int] = mapped_column(ForeignKey("der_programs.id", ondelete="RESTRICT"))
    state: Mapped[str] = mapped_column(String(16))  # active | cancelled
    version: Mapped[int] = mapped_column(Integer)  # bumped by every change of the definition
    created_time: Mapped[int] = mapped_column(BigInteger)
    updated_time: Mapped[int] = mapped_column(BigInteger)


class GridNode(Base):
    """A substation, feeder or transformer: locational price adder and flow limits."""

    __tablename__ = "grid_nodes"
    __table_args__ = {"info": {"cache_family": "flex"}}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)  # the operator's id for it
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("grid_nodes.id", ondelete="RESTRICT"))
    load_percent: Mapped[float] = mapped_column(Float)
    adder_per_percent: Mapped[float] = mapped_column(Float)
    congestion_multiplier: Mapped[float] = mapped_column(Float)
    max_forward_kw: Mapped[float | None] = mapped_column(Float)
    max_reverse_kw: Mapped[float | None] = mapped_column(Float)
    current_load_kw: Mapped[float | None] = mapped_column(Float)
    updated_time: Mapped[int] = mapped_column(BigInteger)


class Enrollment(Base):
    """A customer's device in a program, with the curve (or objective) it offers and its state."""

    __tablename__ = "enrollments"
    __table_args__ = (UniqueConstraint("program_id", "device_id", name="uq_enrollments_program_device"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("flex_programs.id", ondelete="CASCADE"))
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), index=True)
    customer: Mapped[str] = mapped_column(String(100))
    device_kind: Mapped[str] = mapped_column(String(16))
    grid_node_id: Mapped[int | None] = mapped_column(ForeignKey("grid_nodes.id", ondelete="RESTRICT"))
    # {"power": [[price, kW], ...]} | {"objective": {...}} | None (a default curve from ratings)
    offer: Mapped[str | None] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16))  # programs.enrollment states
    source: Mapped[str] = mapped_column(String(16))  # operator | beckn
    external_ref: Mapped[str | None] = mapped_column(String(100))  # e.g. the Beckn order id
    created_time: Mapped[int] = mapped_column(BigInteger)
    updated_time: Mapped[int] = mapped_column(BigInteger)


class FlexWindow(Base):
    """One occurrence of a program's peak window and where its publishing stands."""

    __tablename__ = "flex_windows"
    __table_args__ = (
        UniqueConstraint("program_id", "window_key", name="uq_flex_windows_program_key"),
        Index("ix_flex_windows_state_publish_at", "state", "publish_at"),
        {"info": {"cache_family": "flex"}},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("flex_programs.id", ondelete="CASCADE"))
    window_key: Mapped[str] = mapped_column(String(32))
    start: Mapped[int] = mapped_column(BigInteger)  # UTC seconds
    end: Mapped[int] = mapped_column(BigInteger)
    publish_at: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(16))  # programs.publishing states
    revision: Mapped[int] = mapped_column(Integer)  # clearings made; 0 = none yet
    input_digest: Mapped[str | None] = mapped_column(String(64))  # what the last clearing saw
    published_time: Mapped[int | None] = mapped_column(BigInteger)
    note: Mapped[str | None] = mapped_column(String(200))  # why it was missed, cancelled…
    updated_time: Mapped[int] = mapped_column(BigInteger)


class Clearing(Base):
    """The result of clearing one interval of a window, for one revision: kept for audit."""

    __tablename__ = "flex_clearings"
    __table_args__ = (
        UniqueConstraint("window_id", "revision", "interval_index", name="uq_flex_clearings_window_rev_interval"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    window_id: Mapped[int] = mapped_column(ForeignKey("flex_windows.id", ondelete="CASCADE"))
    revision: Mapped[int] = mapped_column(Integer)
    interval_index: Mapped[int] = mapped_column(Integer)
    start: Mapped[int] = mapped_column(BigInteger)
    end: Mapped[int] = mapped_column(BigInteger)
    requested_kw: Mapped[float] = mapped_column(Float)
    price: Mapped[float] = mapped_column(Float)
    quantity_kw: Mapped[float] = mapped_column(Float)
    feasible: Mapped[bool] = mapped_column(Boolean)
    available_at_cap_kw: Mapped[float] = mapped_column(Float)
    devices: Mapped[int] = mapped_column(Integer)
    nodes: Mapped[str | None] = mapped_column(Text)  # JSON: node prices, reductions, binding limits
    created_time: Mapped[int] = mapped_column(BigInteger)


class Setpoint(Base):
    """What one device was cleared to do in one interval, from which curve, and its event."""

    __tablename__ = "flex_setpoints"

    clearing_id: Mapped[int] = mapped_column(ForeignKey("flex_clearings.id", ondelete="CASCADE"), primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True, index=True)
    enrollment_id: Mapped[int | None] = mapped_column(ForeignKey("enrollments.id", ondelete="SET NULL"))
    reduction_kw: Mapped[float] = mapped_column(Float)
    power_kw: Mapped[float] = mapped_column(Float)  # baseline + reduction (seed sign convention)
    device_price: Mapped[float] = mapped_column(Float)  # the (node) price the device saw
    curve: Mapped[str] = mapped_column(Text)  # JSON snapshot: {"baseline_kw", "points", "source"}
    event_mrid: Mapped[str | None] = mapped_column(String(32))


class ScheduledJob(Base):
    """APScheduler's SQLAlchemy job store table, declared here so migrations own it."""

    __tablename__ = "apscheduler_jobs"

    id: Mapped[str] = mapped_column(Unicode(191), primary_key=True)
    next_run_time: Mapped[float | None] = mapped_column(Float(25), index=True)
    job_state: Mapped[bytes] = mapped_column(LargeBinary)


class SchedulerLease(Base):
    """Who runs the scheduler (SQLite; PostgreSQL uses an advisory lock instead)."""

    __tablename__ = "scheduler_leases"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    holder: Mapped[str] = mapped_column(String(100))
    expires_at: Mapped[float] = mapped_column(Float)


# ----------------------------------------------------------------------------------- queries


def program_by_name(session: Session, name: str) -> FlexProgram | None:
    return session.scalars(select(FlexProgram).where(FlexProgram.name == name)).first()


def programs(session: Session, *, active_only: bool = False) -> Sequence[FlexProgram]:
    stmt = select(FlexProgram).order_by(FlexProgram.id)
    if active_only:
        stmt = stmt.where(FlexProgram.state == "active")
    return session.scalars(stmt).all()


def grid_nodes(session: Session) -> Sequence[GridNode]:
    return session.scalars(select(GridNode).order_by(GridNode.id)).all()


def grid_node_by_name(session: Session, name: str) -> GridNode | None:
    return session.scalars(select(GridNode).where(GridNode.name == name)).first()


def enrollments(session: Session, program_id: int, *, states: Sequence[str] | None = None) -> Sequence[Enrollment]:
    stmt = select(Enrollment).where(Enrollment.program_id == program_id).order_by(Enrollment.id)
    if states is not None:
        stmt = stmt.where(Enrollment.state.in_(states))
    return session.scalars(stmt).all()


def enrollment_of(session: Session, program_id: int, device_id: int) -> Enrollment | None:
    return session.scalars(
        select(Enrollment).where(Enrollment.program_id == program_id, Enrollment.device_id == device_id)
    ).first()


def window(session: Session, program_id: int, key: str, *, for_update: bool = False) -> FlexWindow | None:
    stmt = select(FlexWindow).where(FlexWindow.program_id == program_id, FlexWindow.window_key == key)
    if for_update:
        stmt = stmt.with_for_update()  # PostgreSQL: one publisher per window; SQLite serialises writers
    return session.scalars(stmt).first()


def windows(session: Session, program_id: int, *, since_end: int | None = None, limit: int = 100) -> Sequence[FlexWindow]:
    stmt = select(FlexWindow).where(FlexWindow.program_id == program_id)
    if since_end is not None:
        stmt = stmt.where(FlexWindow.end > since_end)
    return session.scalars(stmt.order_by(FlexWindow.start).limit(limit)).all()


def due_windows(session: Session, now: int, states: Sequence[str]) -> Sequence[FlexWindow]:
    """Windows in one of `states` whose publishing time has come."""
    stmt = (
        select(FlexWindow)
        .where(FlexWindow.state.in_(states), FlexWindow.publish_at <= now)
        .order_by(FlexWindow.publish_at, FlexWindow.id)
    )
    return session.scalars(stmt).all()


def clearings(session: Session, window_id: int, revision: int | None = None) -> Sequence[Clearing]:
    stmt = select(Clearing).where(Clearing.window_id == window_id)
    if revision is not None:
        stmt = stmt.where(Clearing.revision == revision)
    return session.scalars(stmt.order_by(Clearing.revision, Clearing.interval_index)).all()


def setpoints(session: Session, clearing_id: int, *, limit: int | None = None, order_by_reduction: bool = False) -> Sequence[Setpoint]:
    stmt = select(Setpoint).where(Setpoint.clearing_id == clearing_id)
    stmt = stmt.order_by(Setpoint.reduction_kw.desc(), Setpoint.device_id) if order_by_reduction else stmt.order_by(Setpoint.device_id)
    if limit is not None:
        stmt = stmt.limit(limit)
    return session.scalars(stmt).all()


SETPOINT_COLUMNS = ("clearing_id", "device_id", "enrollment_id", "reduction_kw", "power_kw", "device_price",
                    "curve", "event_mrid")


def add_setpoints(session: Session, rows: Sequence[tuple[Any, ...]]) -> None:
    """Bulk insert, tuples in SETPOINT_COLUMNS order: a window of 100,000 devices writes 100,000 rows."""
    bulk.insert(session, Setpoint.__table__, SETPOINT_COLUMNS, rows)


def enrollments_behind(session: Session, node_id: int) -> bool:
    """Whether any enrollment names this grid node."""
    return session.scalars(select(Enrollment.id).where(Enrollment.grid_node_id == node_id).limit(1)).first() is not None
