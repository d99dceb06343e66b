"""A device's DER data in domain terms: what it reported about its DER (ratings, settings, status,
availability), one row per (device, DER) per kind of report.

Each row holds the canonical document the device last PUT (rendered by the codec, so a GET
returns exactly what was stored) and, as columns in SI units (W, Wh, var; seconds; percent as a
float, 55.5 = 55.5 %), the numbers that clearing and setpoint conversion use, so nobody has to
parse XML to find a device's setMaxW. Rows go when their device goes (ON DELETE CASCADE).

Reads take a `Reader` and a `Scope` and filter in SQL like server.db.repo; statements are built
once per (kind, role) with bound parameters.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

from sqlalchemy import BigInteger, Float, ForeignKey, Integer, Row, Select, Text, bindparam, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, Session, mapped_column

from server.db.models import Base, Device
from server.db.repo import Reader, scope_params, visible_to
from server.scope import Role, Scope

# What cached 2030.5 documents show: a write bumps the "sep2" change counter (server.db.changes).
# Their own cache family: a device reports its status every postRate, and that must not empty the
# cached poll documents of every other device (/dcap, /edev, programs, controls).
DER_FAMILY = "der"
_TABLE_ARGS = {"info": {"cache_family": DER_FAMILY}}


def _device_fk() -> Any:
    return mapped_column(Integer, ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True)


class DerCapability(Base):
    """The DER's type and nameplate ratings (DERCapability)."""

    __tablename__ = "der_capabilities"
    __table_args__ = _TABLE_ARGS

    device_id: Mapped[int] = _device_fk()
    der_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    document: Mapped[str] = mapped_column(Text)
    received_time: Mapped[int] = mapped_column(BigInteger)  # when the server stored it
    der_type: Mapped[int] = mapped_column(Integer)  # DERType: 4 PV, 80 storage, 83 PV + storage…
    rtg_max_w: Mapped[float] = mapped_column(Float)
    rtg_max_charge_rate_w: Mapped[float | None] = mapped_column(Float)
    rtg_max_discharge_rate_w: Mapped[float | None] = mapped_column(Float)
    rtg_max_wh: Mapped[float | None] = mapped_column(Float)


class DerSettings(Base):
    """The limits the DER is currently set to (DERSettings); setpoints are percentages of these."""

    __tablename__ = "der_settings"
    __table_args__ = _TABLE_ARGS

    device_id: Mapped[int] = _device_fk()
    der_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    document: Mapped[str] = mapped_column(Text)
    received_time: Mapped[int] = mapped_column(BigInteger)
    updated_time: Mapped[int] = mapped_column(BigInteger)  # the device's updatedTime
    set_max_w: Mapped[float] = mapped_column(Float)
    set_max_charge_rate_w: Mapped[float | None] = mapped_column(Float)
    set_max_discharge_rate_w: Mapped[float | None] = mapped_column(Float)
    set_max_wh: Mapped[float | None] = mapped_column(Float)


class DerStatus(Base):
    """The DER's latest reported states (DERStatus)."""

    __tablename__ = "der_statuses"
    __table_args__ = _TABLE_ARGS

    device_id: Mapped[int] = _device_fk()
    der_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    document: Mapped[str] = mapped_column(Text)
    received_time: Mapped[int] = mapped_column(BigInteger)
    reading_time: Mapped[int] = mapped_column(BigInteger)
    state_of_charge_percent: Mapped[float | None] = mapped_column(Float)
    # 0 unknown, 1 off, 2 operational, 3 test
    operational_mode: Mapped[int | None] = mapped_column(Integer)
    # 0 charging, 1 discharging, 2 holding
    storage_mode: Mapped[int | None] = mapped_column(Integer)
    # 0 n/a, 1 off, 2 sleeping, 3 starting, 4 MPPT, 5 derated, 6 shutting down, 7 fault, …
    inverter_status: Mapped[int | None] = mapped_column(Integer)
    # Bitmaps: bit 0 connected, 1 available, 2 operating, 3 test, 4 fault/error.
    gen_connect_status: Mapped[int | None] = mapped_column(Integer)
    stor_connect_status: Mapped[int | None] = mapped_column(Integer)


class DerAvailability(Base):
    """What the DER can still deliver or absorb, and for how long (DERAvailability)."""

    __tablename__ = "der_availabilities"
    __table_args__ = _TABLE_ARGS

    device_id: Mapped[int] = _device_fk()
    der_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    document: Mapped[str] = mapped_column(Text)
    received_time: Mapped[int] = mapped_column(BigInteger)
    reading_time: Mapped[int] = mapped_column(BigInteger)
    stat_w_avail_w: Mapped[float | None] = mapped_column(Float)
    stat_var_avail_var: Mapped[float | None] = mapped_column(Float)
    reserve_percent: Mapped[float | None] = mapped_column(Float)  # of setMaxW
    reserve_charge_percent: Mapped[float | None] = mapped_column(Float)  # of setMaxChargeRateW
    max_charge_duration_s: Mapped[int | None] = mapped_column(BigInteger)  # UInt32 on the wire
    availability_duration_s: Mapped[int | None] = mapped_column(BigInteger)


DerRecord = type[DerCapability] | type[DerSettings] | type[DerStatus] | type[DerAvailability]
KINDS: tuple[DerRecord, ...] = (DerCapability, DerSettings, DerStatus, DerAvailability)


@cache
def _one_stmt(kind: DerRecord, role: Role) -> Select[Any]:
    table = kind.__table__
    return (
        select(table)
        .join(Device, Device.id == table.c.device_id)
        .where(table.c.device_id == bindparam("device_id"), table.c.der_id == bindparam("der_id"))
        .where(visible_to(role))
    )


def record(db: Reader, scope: Scope, kind: DerRecord, device_id: int, der_id: int) -> Row[Any] | None:
    """The stored row of one kind for a DER, or None: never reported, or outside the scope."""
    params = scope_params(scope, device_id=device_id, der_id=der_id)
    return None if params is None else db.execute(_one_stmt(kind, scope.role), params).first()


@cache
def _all_stmt(kind: DerRecord, role: Role) -> Select[Any]:
    table = kind.__table__
    return (
        select(table)
        .join(Device, Device.id == table.c.device_id)
        .where(visible_to(role))
        .order_by(table.c.device_id, table.c.der_id)
    )


def records(db: Reader, scope: Scope, kind: DerRecord) -> Sequence[Row[Any]]:
    """Every stored row of one kind the scope may see (operators: all), by device and DER."""
    params = scope_params(scope)
    return [] if params is None else db.execute(_all_stmt(kind, scope.role), params).all()


def store(session: Session, kind: DerRecord, values: dict[str, Any]) -> None:
    """Insert or replace the row of (device_id, der_id): INSERT … ON CONFLICT DO UPDATE, so two
    first PUTs racing neither fail nor duplicate. Every other column is replaced; a column not in
    `values` becomes NULL (a report replaces the previous one, it does not merge into it)."""
    values = {c.name: values.get(c.name) for c in kind.__table__.columns}
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    keys = ("device_id", "der_id")
    stmt = dialect.insert(kind).values(**values)
    update = {k: v for k, v in values.items() if k not in keys}
    session.execute(stmt.on_conflict_do_update(index_elements=list(keys), set_=update))
