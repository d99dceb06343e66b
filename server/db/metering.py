"""Metering in domain terms: the meters devices mirror to us (usage points), the quantities each
measures (meter readings, with their reading type), and the measured values (readings).

Sizes. Readings are the big table — months of 5-minute values for many thousands of devices, so
tens of millions of rows — and are kept narrow: no surrogate key, no XML, the primary key
(meter_reading_id, start) is also the index every read uses ("meter reading X between t1 and t2",
one range scan). On SQLite the table is WITHOUT ROWID, so that key is the table's own order. A
row is start, value (the Int48 exactly as posted), duration, quality flags and the power of ten
the value is scaled by: value × 10^multiplier in the reading type's unit.

Reading days. The server groups readings into ReadingSets of one UTC day per meter reading; a
day's row in `reading_days` is written (INSERT … ON CONFLICT DO NOTHING) with its readings, so
listing a meter reading's ReadingSets does not scan its readings.

Reading types are small and few: stored as the canonical document the device posted (so `/rt`
answers exactly that) plus the columns queries need (uom, multiplier, flow direction, …).

Every table is in the "metering" cache family (server.db.changes): reading ingest must not flush
the caches of the "sep2" documents (programs, end devices).

Client reads take a `Reader` and a `Scope` and filter in SQL like server.db.repo: a usage point is
visible when its device is. `load_series` is the unscoped domain query for M&V.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    PrimaryKeyConstraint,
    Row,
    Select,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    bindparam,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, Session, mapped_column

from server.db.models import Base, Device
from server.db.repo import Reader, scope_params, visible_to
from server.scope import Role, Scope

METERING = "metering"
_FAMILY = {"cache_family": METERING}
DAY = 86_400

UOM_W = 38
FLOW_REVERSE = 19
ROLE_PREMISES_AGGREGATION_POINT = 0x02
# dataQualifier values whose readings are the power itself: n/a, average, normal (not a
# maximum, minimum or standard deviation).
_POWER_QUALIFIERS = (0, 2, 12)


class UsagePoint(Base):
    """A meter a device mirrors (MirrorUsagePoint), served back as a UsagePoint with the same id.
    Its mRID is unique per device: the same mRID from another device is another usage point."""

    __tablename__ = "usage_points"
    __table_args__ = (
        UniqueConstraint("device_id", "mrid", name="uq_usage_points_device_mrid"),
        {"info": _FAMILY},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    mrid: Mapped[str] = mapped_column(String(32))
    description: Mapped[str | None] = mapped_column(String(32))
    version: Mapped[int | None] = mapped_column(Integer)
    role_flags: Mapped[int] = mapped_column(Integer)  # RoleFlagsType bitmap (HexBinary16)
    service_category_kind: Mapped[int] = mapped_column(Integer)  # 0 electricity, 1 gas, …
    status: Mapped[int] = mapped_column(Integer)  # 0 off, 1 on
    post_rate: Mapped[int | None] = mapped_column(BigInteger)  # the device's preferred, seconds
    created_time: Mapped[int] = mapped_column(BigInteger)
    changed_time: Mapped[int] = mapped_column(BigInteger)


class MeterReading(Base):
    """One quantity a usage point measures (a MirrorMeterReading / MeterReading) and its reading
    type, which never changes while it has readings (they were posted in its unit).

    A re-posted MirrorMeterReading whose ReadingType changed *retires* the row that has readings
    (`retired_time`): it keeps its readings and its reading type, is no longer served nor found
    by its mRID, and a new row takes the mRID with the new type (server.services.sep2.mup). Only
    one row per (usage point, mRID) is current; `mrid` alone is indexed for the check that a
    MirrorMeterReading mRID belongs to one device."""

    __tablename__ = "meter_readings"
    __table_args__ = (
        Index("uq_meter_readings_usage_point_mrid", "usage_point_id", "mrid", unique=True,
              sqlite_where=text("retired_time IS NULL"), postgresql_where=text("retired_time IS NULL")),
        Index("ix_meter_readings_mrid", "mrid"),
        {"info": _FAMILY},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    usage_point_id: Mapped[int] = mapped_column(ForeignKey("usage_points.id", ondelete="CASCADE"))
    mrid: Mapped[str] = mapped_column(String(32))
    description: Mapped[str | None] = mapped_column(String(32))
    version: Mapped[int | None] = mapped_column(Integer)
    reading_type: Mapped[str] = mapped_column(Text)  # canonical ReadingType document, no href
    uom: Mapped[int | None] = mapped_column(Integer)  # 38 W, 63 var, 29 V, 33 Hz, 72 Wh, …
    multiplier: Mapped[int] = mapped_column(Integer)  # powerOfTenMultiplier (absent: 0)
    flow_direction: Mapped[int | None] = mapped_column(Integer)  # 1 forward, 19 reverse
    kind: Mapped[int | None] = mapped_column(Integer)  # 12 energy, 37 power, …
    accumulation_behaviour: Mapped[int | None] = mapped_column(Integer)  # 4 delta, 12 instantaneous…
    data_qualifier: Mapped[int | None] = mapped_column(Integer)  # 2 average, 8 max, 9 min, 12 normal
    interval_length: Mapped[int | None] = mapped_column(BigInteger)  # seconds
    phase: Mapped[int | None] = mapped_column(Integer)  # PhaseCode; 0/absent: not per phase
    created_time: Mapped[int] = mapped_column(BigInteger)
    retired_time: Mapped[int | None] = mapped_column(BigInteger)  # its ReadingType was replaced


class Reading(Base):
    """One measured value: value × 10^multiplier (the reading type's unit) over [start, start +
    duration). At most one per (meter reading, start): a re-post replaces it."""

    __tablename__ = "readings"
    __table_args__ = (
        PrimaryKeyConstraint("meter_reading_id", "start", name="pk_readings"),
        {"info": _FAMILY, "sqlite_with_rowid": False},
    )

    # Declared widest first: PostgreSQL pads columns to their alignment.
    start: Mapped[int] = mapped_column(BigInteger)
    value: Mapped[int] = mapped_column(BigInteger)  # Int48 as posted
    meter_reading_id: Mapped[int] = mapped_column(ForeignKey("meter_readings.id", ondelete="CASCADE"))
    duration: Mapped[int] = mapped_column(Integer)  # seconds (at most 2^31 − 1)
    quality_flags: Mapped[int | None] = mapped_column(Integer)  # bitmap (HexBinary16)
    multiplier: Mapped[int] = mapped_column(SmallInteger)


class ReadingDay(Base):
    """A UTC day (days since the epoch) on which a meter reading has readings: a ReadingSet."""

    __tablename__ = "reading_days"
    __table_args__ = (
        PrimaryKeyConstraint("meter_reading_id", "day", name="pk_reading_days"),
        {"info": _FAMILY, "sqlite_with_rowid": False},
    )

    meter_reading_id: Mapped[int] = mapped_column(ForeignKey("meter_readings.id", ondelete="CASCADE"))
    day: Mapped[int] = mapped_column(Integer)


_UP = UsagePoint.__table__
_MR = MeterReading.__table__
_R = Reading.__table__
_DAY = ReadingDay.__table__


_CURRENT = _MR.c.retired_time.is_(None)  # meter readings served and found by mRID


def _dialect(db: Reader) -> Any:
    bind = db.get_bind() if isinstance(db, Session) else db
    return postgresql if bind.dialect.name == "postgresql" else sqlite


# ------------------------------------------------------------------------------ usage points


def _meter_reading_count() -> Any:
    return (
        select(func.count())
        .select_from(_MR)
        .where(_MR.c.usage_point_id == _UP.c.id, _CURRENT)
        .correlate(_UP)
        .scalar_subquery()
        .label("meter_readings")
    )


@cache
def _up_one_stmt(role: Role) -> Select[Any]:
    return (
        select(_UP, Device.lfdi.label("device_lfdi"), Device.post_rate.label("device_post_rate"), _meter_reading_count())
        .join(Device, Device.id == _UP.c.device_id)
        .where(_UP.c.id == bindparam("id"), visible_to(role))
    )


@cache
def _up_count_stmt(role: Role) -> Select[Any]:
    return select(func.count()).select_from(_UP).join(Device, Device.id == _UP.c.device_id).where(visible_to(role))


@cache
def _up_page_stmt(role: Role) -> Select[Any]:
    # 2030.5 list order (Tables 39 and 56): mRID descending.
    return (
        select(_UP, Device.lfdi.label("device_lfdi"), Device.post_rate.label("device_post_rate"), _meter_reading_count())
        .join(Device, Device.id == _UP.c.device_id)
        .where(visible_to(role))
        .order_by(_UP.c.mrid.desc(), _UP.c.id.desc())
        .offset(bindparam("start"))
        .limit(bindparam("limit"))
    )


def usage_point(db: Reader, scope: Scope, usage_point_id: int) -> Row[Any] | None:
    """The usage point with its device's LFDI and post rate and its meter reading count; None
    when it does not exist or its device is outside the scope."""
    params = scope_params(scope, id=usage_point_id)
    return None if params is None else db.execute(_up_one_stmt(scope.role), params).first()


@cache
def _up_visible_stmt(role: Role) -> Select[Any]:
    return (
        select(_UP.c.id, _UP.c.device_id)
        .join(Device, Device.id == _UP.c.device_id)
        .where(_UP.c.id == bindparam("id"), visible_to(role))
    )


def usage_point_visible(db: Reader, scope: Scope, usage_point_id: int) -> bool:
    """Whether the usage point exists and its device is in the scope (one key lookup)."""
    params = scope_params(scope, id=usage_point_id)
    return params is not None and db.execute(_up_visible_stmt(scope.role), params).first() is not None


def visible_usage_point_device(db: Reader, scope: Scope, usage_point_id: int) -> int | None:
    """The device of the usage point when the scope sees it; None otherwise."""
    params = scope_params(scope, id=usage_point_id)
    row = None if params is None else db.execute(_up_visible_stmt(scope.role), params).first()
    return None if row is None else row.device_id


def count_usage_points(db: Reader, scope: Scope) -> int:
    params = scope_params(scope)
    return 0 if params is None else db.execute(_up_count_stmt(scope.role), params).scalar_one()


def usage_points(db: Reader, scope: Scope, start: int, limit: int) -> Sequence[Row[Any]]:
    params = scope_params(scope, start=start, limit=limit)
    return [] if params is None else db.execute(_up_page_stmt(scope.role), params).all()


@cache
def _visible_device_stmt(role: Role) -> Select[Any]:
    return select(Device.id).where(Device.lfdi == bindparam("device_lfdi"), visible_to(role))


def visible_device_id(db: Reader, scope: Scope, lfdi: str) -> int | None:
    """The id of the registered device with this LFDI if the scope may see (and so post for) it."""
    params = scope_params(scope, device_lfdi=lfdi)
    return None if params is None else db.execute(_visible_device_stmt(scope.role), params).scalar()


_UP_ID_BY_MRID = select(_UP.c.id).where(_UP.c.device_id == bindparam("device_id"), _UP.c.mrid == bindparam("mrid"))
_UP_COUNT_OF_DEVICE = select(func.count()).select_from(_UP).where(_UP.c.device_id == bindparam("device_id"))


def usage_point_id(session: Session, device_id: int, mrid: str) -> int | None:
    return session.execute(_UP_ID_BY_MRID, {"device_id": device_id, "mrid": mrid}).scalar()


def usage_points_of_device(session: Session, device_id: int) -> int:
    return session.execute(_UP_COUNT_OF_DEVICE, {"device_id": device_id}).scalar_one()


def insert_usage_point(session: Session, values: dict[str, Any]) -> bool:
    """Insert unless (device, mRID) exists — also when a concurrent POST created it first.
    True when this call created it."""
    stmt = _dialect(session).insert(UsagePoint).values(**values)
    result = session.execute(stmt.on_conflict_do_nothing(index_elements=["device_id", "mrid"]))
    return bool(result.rowcount)


def update_usage_point(session: Session, device_id: int, mrid: str, values: dict[str, Any]) -> None:
    session.execute(update(UsagePoint).where(UsagePoint.device_id == device_id, UsagePoint.mrid == mrid).values(**values))


# ---------------------------------------------------------------------------- meter readings

_MR_OF_UP = select(_MR).where(_MR.c.usage_point_id == bindparam("usage_point_id"), _CURRENT)
_MR_ALL_OF_UP = select(func.count()).select_from(_MR).where(_MR.c.usage_point_id == bindparam("usage_point_id"))
_MRID_ELSEWHERE = (
    select(_UP.c.device_id)
    .join(_MR, _MR.c.usage_point_id == _UP.c.id)
    .where(_MR.c.mrid.in_(bindparam("mrids", expanding=True)), _UP.c.device_id != bindparam("device_id"))
    .limit(1)
)
_HAS_READINGS = select(_R.c.start).where(_R.c.meter_reading_id == bindparam("id")).limit(1)


def meter_readings_of(session: Reader, usage_point_id: int) -> dict[str, Row[Any]]:
    """A usage point's current meter readings by mRID (unscoped: check the usage point first)."""
    return {r.mrid: r for r in session.execute(_MR_OF_UP, {"usage_point_id": usage_point_id})}


def meter_reading_rows(session: Reader, usage_point_id: int) -> int:
    """How many meter reading rows a usage point holds, retired ones included (its limit)."""
    return session.execute(_MR_ALL_OF_UP, {"usage_point_id": usage_point_id}).scalar_one()


def mrid_of_another_device(session: Reader, device_id: int, mrids: Sequence[str]) -> bool:
    """Whether any of `mrids` names a meter reading (current or retired) of a usage point of a
    device other than `device_id` (index ix_meter_readings_mrid). Unscoped on purpose: the
    answer must not depend on what the caller may see."""
    if not mrids:
        return False
    params = {"mrids": list(mrids), "device_id": device_id}
    return session.execute(_MRID_ELSEWHERE, params).first() is not None


def has_readings(session: Reader, meter_reading_id: int) -> bool:
    return session.execute(_HAS_READINGS, {"id": meter_reading_id}).first() is not None


def insert_meter_reading(session: Session, values: dict[str, Any]) -> None:
    """Insert unless (usage point, mRID) has a current row (a concurrent POST may have created it)."""
    stmt = _dialect(session).insert(MeterReading).values(**values)
    session.execute(stmt.on_conflict_do_nothing(index_elements=["usage_point_id", "mrid"], index_where=_CURRENT))


def retire_meter_reading(session: Session, meter_reading_id: int, now: int) -> None:
    """Keep the meter reading's readings under its own reading type, and free its mRID."""
    session.execute(update(MeterReading).where(MeterReading.id == meter_reading_id).values(retired_time=now))


def update_meter_reading(session: Session, meter_reading_id: int, values: dict[str, Any]) -> None:
    session.execute(update(MeterReading).where(MeterReading.id == meter_reading_id).values(**values))


def _day_count() -> Any:
    return (
        select(func.count())
        .select_from(_DAY)
        .where(_DAY.c.meter_reading_id == _MR.c.id)
        .correlate(_MR)
        .scalar_subquery()
        .label("days")
    )


@cache
def _mr_one_stmt(role: Role) -> Select[Any]:
    return (
        select(_MR, _day_count())
        .join(_UP, _UP.c.id == _MR.c.usage_point_id)
        .join(Device, Device.id == _UP.c.device_id)
        .where(_MR.c.id == bindparam("id"), _MR.c.usage_point_id == bindparam("usage_point_id"), _CURRENT,
               visible_to(role))
    )


_MR_COUNT = select(func.count()).select_from(_MR).where(_MR.c.usage_point_id == bindparam("usage_point_id"), _CURRENT)
_MR_PAGE = (
    select(_MR, _day_count())
    .where(_MR.c.usage_point_id == bindparam("usage_point_id"), _CURRENT)
    .order_by(_MR.c.mrid.desc(), _MR.c.id.desc())  # 2030.5 Table 39: mRID descending
    .offset(bindparam("start"))
    .limit(bindparam("limit"))
)


def meter_reading(db: Reader, scope: Scope, usage_point_id: int, meter_reading_id: int) -> Row[Any] | None:
    """The meter reading (with its number of reading days) if it belongs to that usage point and
    the usage point's device is in the scope."""
    params = scope_params(scope, id=meter_reading_id, usage_point_id=usage_point_id)
    return None if params is None else db.execute(_mr_one_stmt(scope.role), params).first()


def meter_reading_page(db: Reader, usage_point_id: int, start: int, limit: int) -> tuple[int, Sequence[Row[Any]]]:
    """(count, page) of a usage point's meter readings (unscoped: check the usage point first)."""
    total = db.execute(_MR_COUNT, {"usage_point_id": usage_point_id}).scalar_one()
    rows = db.execute(_MR_PAGE, {"usage_point_id": usage_point_id, "start": start, "limit": limit}).all()
    return total, rows


# ------------------------------------------------------------------------------- readings


@dataclass(frozen=True, slots=True)
class NewReading:
    meter_reading_id: int
    start: int
    duration: int
    value: int
    multiplier: int
    quality_flags: int | None


@cache
def _upsert_readings(dialect_name: str) -> Any:
    dialect = postgresql if dialect_name == "postgresql" else sqlite
    stmt = dialect.insert(_R)  # the Table, not the entity: Core's executemany, not the ORM's bulk path
    return stmt.on_conflict_do_update(
        index_elements=["meter_reading_id", "start"],
        set_={
            "value": stmt.excluded.value,
            "duration": stmt.excluded.duration,
            "multiplier": stmt.excluded.multiplier,
            "quality_flags": stmt.excluded.quality_flags,
        },
    )


@cache
def _insert_days(dialect_name: str) -> Any:
    dialect = postgresql if dialect_name == "postgresql" else sqlite
    return dialect.insert(_DAY).on_conflict_do_nothing(index_elements=["meter_reading_id", "day"])


def store_readings(session: Session, readings: Iterable[NewReading]) -> int:
    """Insert readings, replacing any of the same (meter reading, start): a re-post after a lost
    answer changes nothing. The last of duplicates within `readings` wins. Returns how many
    distinct readings were written."""
    latest = {(r.meter_reading_id, r.start): r for r in readings}
    if not latest:
        return 0
    name = session.get_bind().dialect.name
    rows = [
        {"meter_reading_id": r.meter_reading_id, "start": r.start, "duration": r.duration,
         "value": r.value, "multiplier": r.multiplier, "quality_flags": r.quality_flags}
        for r in latest.values()
    ]
    session.execute(_upsert_readings(name), rows)
    days = {(r.meter_reading_id, r.start // DAY) for r in latest.values()}
    session.execute(_insert_days(name), [{"meter_reading_id": m, "day": d} for m, d in sorted(days)])
    return len(rows)


_DAY_COUNT = select(func.count()).select_from(_DAY).where(
    _DAY.c.meter_reading_id == bindparam("meter_reading_id"), _DAY.c.day >= bindparam("min_day")
)
_DAY_PAGE = (
    select(_DAY.c.day)
    .where(_DAY.c.meter_reading_id == bindparam("meter_reading_id"), _DAY.c.day >= bindparam("min_day"))
    .order_by(_DAY.c.day.desc())  # 2030.5 Table 39: timePeriod.start descending
    .offset(bindparam("start"))
    .limit(bindparam("limit"))
)
_DAY_ONE = select(_DAY.c.day).where(_DAY.c.meter_reading_id == bindparam("meter_reading_id"), _DAY.c.day == bindparam("day"))


def reading_days(db: Reader, meter_reading_id: int, min_day: int, start: int, limit: int) -> tuple[int, list[int]]:
    """(count, page) of the days ≥ min_day with readings, newest first."""
    params = {"meter_reading_id": meter_reading_id, "min_day": min_day}
    total = db.execute(_DAY_COUNT, params).scalar_one()
    days = list(db.execute(_DAY_PAGE, {**params, "start": start, "limit": limit}).scalars())
    return total, days


def has_reading_day(db: Reader, meter_reading_id: int, day: int) -> bool:
    return db.execute(_DAY_ONE, {"meter_reading_id": meter_reading_id, "day": day}).first() is not None


_R_RANGE = (_R.c.meter_reading_id == bindparam("meter_reading_id"), _R.c.start >= bindparam("lo"), _R.c.start < bindparam("hi"))
_R_COUNT = select(func.count()).select_from(_R).where(*_R_RANGE)
_R_PAGE = select(_R).where(*_R_RANGE).order_by(_R.c.start).offset(bindparam("start")).limit(bindparam("limit"))
_R_ONE = select(_R).where(_R.c.meter_reading_id == bindparam("meter_reading_id"), _R.c.start == bindparam("at"))


def readings(db: Reader, meter_reading_id: int, lo: int, hi: int, start: int, limit: int) -> tuple[int, Sequence[Row[Any]]]:
    """(count, page) of a meter reading's readings with lo ≤ start < hi, oldest first."""
    params = {"meter_reading_id": meter_reading_id, "lo": lo, "hi": hi}
    total = db.execute(_R_COUNT, params).scalar_one()
    rows = db.execute(_R_PAGE, {**params, "start": start, "limit": limit}).all()
    return total, rows


def reading(db: Reader, meter_reading_id: int, at: int) -> Row[Any] | None:
    return db.execute(_R_ONE, {"meter_reading_id": meter_reading_id, "at": at}).first()


# ------------------------------------------------------------------------------ M&V query

_POWER_READINGS = (
    select(_MR.c.id, _MR.c.usage_point_id, _MR.c.flow_direction, _UP.c.role_flags)
    .join(_UP, _UP.c.id == _MR.c.usage_point_id)
    .where(
        _UP.c.device_id == bindparam("device_id"),
        _MR.c.uom == UOM_W,
        or_(_MR.c.phase.is_(None), _MR.c.phase == 0),
        or_(_MR.c.data_qualifier.is_(None), _MR.c.data_qualifier.in_(_POWER_QUALIFIERS)),
    )
    .order_by(_UP.c.id, _MR.c.id)
)
_SERIES = (
    select(_R.c.start, _R.c.value, _R.c.multiplier, _R.c.meter_reading_id)
    .where(
        _R.c.meter_reading_id.in_(bindparam("ids", expanding=True)),
        _R.c.start >= bindparam("t1"),
        _R.c.start < bindparam("t2"),
    )
    .order_by(_R.c.start)
)


def load_series(
    db: Reader, device_id: int, t1: int, t2: int, *, usage_point_id: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The device's real power in W per reading interval with t1 ≤ start < t2: (starts, watts),
    numpy arrays (int64 UTC seconds ascending, float64 W). Unscoped (for M&V and operators).

    Which readings: the device's meter readings in W (uom 38) for the whole device (phase absent
    or 0) that are the power itself (dataQualifier absent, 0 n/a, 2 average or 12 normal; not a
    maximum, minimum or deviation), of one usage point: `usage_point_id` if given, else the
    device's premises aggregation point (roleFlags bit 1) if it mirrors one, else its first. Each
    value is value × 10^powerOfTenMultiplier. Sign: positive is power delivered to the customer
    (flowDirection forward, 1); a reading with flowDirection reverse (19) counts negative; any
    other direction is taken as signed by the device. Readings of several meter readings with the
    same start (e.g. a forward and a reverse one) are added up.
    """
    candidates = db.execute(_POWER_READINGS, {"device_id": device_id}).all()
    if usage_point_id is None and candidates:
        premises = [c for c in candidates if c.role_flags & ROLE_PREMISES_AGGREGATION_POINT]
        usage_point_id = (premises or candidates)[0].usage_point_id
    chosen = {c.id: c for c in candidates if c.usage_point_id == usage_point_id}
    if not chosen:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64)
    rows = db.execute(_SERIES, {"ids": sorted(chosen), "t1": t1, "t2": t2}).all()
    if not rows:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64)
    starts = np.fromiter((r.start for r in rows), dtype=np.int64, count=len(rows))
    values = np.fromiter((r.value for r in rows), dtype=np.float64, count=len(rows))
    powers = np.fromiter((r.multiplier for r in rows), dtype=np.float64, count=len(rows))
    signs = np.fromiter(
        (-1.0 if chosen[r.meter_reading_id].flow_direction == FLOW_REVERSE else 1.0 for r in rows),
        dtype=np.float64,
        count=len(rows),
    )
    # 10^-m is not exact in binary: divide by 10^m instead (1234 × 10^-1 → exactly 123.4).
    scale = np.power(10.0, np.abs(powers))
    watts = np.where(powers >= 0, values * scale, values / scale) * signs
    unique, first = np.unique(starts, return_index=True)
    if len(unique) == len(starts):
        return starts, watts
    return unique, np.add.reduceat(watts, first)


# ----------------------------------------------------------------------------- fleets (M&V)
MAX_READING_S = 3600  # a reading longer than this that starts before a span is not looked for
_FLEET_CHUNK = 900

_FLEET_POWER_READINGS = (
    select(_MR.c.id, _UP.c.device_id, _MR.c.usage_point_id, _MR.c.flow_direction, _UP.c.role_flags)
    .join(_UP, _UP.c.id == _MR.c.usage_point_id)
    .where(
        _UP.c.device_id.in_(bindparam("device_ids", expanding=True)),
        _MR.c.uom == UOM_W,
        or_(_MR.c.phase.is_(None), _MR.c.phase == 0),
        or_(_MR.c.data_qualifier.is_(None), _MR.c.data_qualifier.in_(_POWER_QUALIFIERS)),
    )
    .order_by(_UP.c.device_id, _UP.c.id, _MR.c.id)
)
_FLEET_SERIES = (
    select(_R.c.meter_reading_id, _R.c.start, _R.c.duration, _R.c.value, _R.c.multiplier)
    .where(
        _R.c.meter_reading_id.in_(bindparam("ids", expanding=True)),
        _R.c.start >= bindparam("t1"),
        _R.c.start < bindparam("t2"),
    )
)


@dataclass(frozen=True)
class FleetReadings:
    """Power readings of many devices (one entry per reading, W, positive = drawn from the grid):
    `device_index` into the device list given, and per device the usage point and meter readings
    they came from (`sources`: device_id -> (usage_point_id, meter reading ids))."""

    device_index: np.ndarray
    starts: np.ndarray
    durations: np.ndarray
    watts: np.ndarray
    sources: dict[int, tuple[int, tuple[int, ...]]]


def load_fleet_readings(db: Reader, device_ids: Sequence[int], spans: Iterable[tuple[int, int]]) -> FleetReadings:
    """Readings of `device_ids` that may overlap any of `spans` ([t1, t2) UTC seconds), chosen as
    `load_series` chooses them (one usage point per device: its premises aggregation point, else
    its first; W, whole device, the power itself; reverse flow negative); readings of several meter
    readings with the same start and duration are added up. Unscoped (M&V)."""
    index = {d: i for i, d in enumerate(device_ids)}
    chosen: dict[int, tuple[int, int]] = {}  # meter reading id -> (device index, sign)
    sources: dict[int, tuple[int, tuple[int, ...]]] = {}
    ids = list(device_ids)
    for k in range(0, len(ids), _FLEET_CHUNK):
        rows = db.execute(_FLEET_POWER_READINGS, {"device_ids": ids[k:k + _FLEET_CHUNK]}).all()
        by_device: dict[int, list[Any]] = {}
        for r in rows:
            by_device.setdefault(r.device_id, []).append(r)
        for dev, cands in by_device.items():
            premises = [c for c in cands if c.role_flags & ROLE_PREMISES_AGGREGATION_POINT]
            up = (premises or cands)[0].usage_point_id
            mine = [c for c in cands if c.usage_point_id == up]
            sources[dev] = (up, tuple(c.id for c in mine))
            for c in mine:
                chosen[c.id] = (index[dev], -1 if c.flow_direction == FLOW_REVERSE else 1)
    parts: list[tuple[Any, ...]] = []
    mr_ids = sorted(chosen)
    for t1, t2 in spans:
        for k in range(0, len(mr_ids), _FLEET_CHUNK):
            parts.extend(db.execute(_FLEET_SERIES, {"ids": mr_ids[k:k + _FLEET_CHUNK],
                                                    "t1": t1 - MAX_READING_S, "t2": t2}).all())
    n = len(parts)
    if not n:
        empty_i, empty_f = np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64)
        return FleetReadings(empty_i, empty_i, empty_i, empty_f, sources)
    arr = np.array([(chosen[p[0]][0], p[1], p[2], p[3], p[4], chosen[p[0]][1]) for p in parts], dtype=np.float64)
    dev, start, dur = arr[:, 0].astype(np.int64), arr[:, 1].astype(np.int64), arr[:, 2].astype(np.int64)
    mult = arr[:, 4]
    scale = np.power(10.0, np.abs(mult))
    watts = np.where(mult >= 0, arr[:, 3] * scale, arr[:, 3] / scale) * arr[:, 5]
    # one entry per (device, start, duration); spans that overlap fetch a reading twice: keep it once
    meter = np.array([p[0] for p in parts], dtype=np.int64)
    _, first = np.unique(np.stack([meter, start]), axis=1, return_index=True)
    dev, start, dur, watts = dev[first], start[first], dur[first], watts[first]
    key = np.stack([dev, start, dur])
    uniq, inverse = np.unique(key, axis=1, return_inverse=True)
    summed = np.bincount(inverse.ravel(), weights=watts, minlength=uniq.shape[1])
    return FleetReadings(uniq[0], uniq[1], uniq[2], summed, sources)
