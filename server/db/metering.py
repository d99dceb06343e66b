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

from collections.abc import Iterable, Iterator, Sequence
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
FLEET_CHUNK = 10_000  # devices loaded (and measured) at a time: what bounds the memory

# The power meter readings of a chunk of devices, in the order the choice below reads them. The
# ids go as one parameter: a JSON array on SQLite (json_each), an int array on PostgreSQL.
_METERS_WHERE = (f"m.uom = {UOM_W} AND (m.phase IS NULL OR m.phase = 0) AND (m.data_qualifier IS NULL OR "
                 f"m.data_qualifier IN ({', '.join(map(str, _POWER_QUALIFIERS))}))")
_METERS_SQL = {
    "sqlite": "SELECT m.id, u.device_id, m.usage_point_id, m.flow_direction, u.role_flags FROM meter_readings m "
              "JOIN usage_points u ON u.id = m.usage_point_id WHERE u.device_id IN (SELECT value FROM json_each(?)) "
              f"AND {_METERS_WHERE} ORDER BY u.device_id, u.id, m.id",
    "postgresql": "SELECT m.id, u.device_id, m.usage_point_id, m.flow_direction, u.role_flags FROM meter_readings m "
                  "JOIN usage_points u ON u.id = m.usage_point_id WHERE u.device_id = ANY(%s) "
                  f"AND {_METERS_WHERE} ORDER BY u.device_id, u.id, m.id",
}
# The readings of a chunk of meter readings in one time range as ONE value, parsed by numpy: no
# Python object per reading. SQLite: the five columns of every row comma-joined (one text);
# PostgreSQL: each row as 30 big-endian bytes (one bytea), read with _PG_RECORD.
_READINGS_SQL = {
    "sqlite": "SELECT group_concat(meter_reading_id || ',' || start || ',' || duration || ',' || value || ',' || "
              "multiplier, ',') FROM readings WHERE meter_reading_id IN (SELECT value FROM json_each(?)) "
              "AND start >= ? AND start < ?",
    "postgresql": "SELECT string_agg(int8send(meter_reading_id::int8) || int8send(start) || int4send(duration) || "
                  "int8send(value) || int2send(multiplier), ''::bytea) FROM readings "
                  "WHERE meter_reading_id = ANY(%s) AND start >= %s AND start < %s",
}
_PG_RECORD = np.dtype([("m", ">i8"), ("s", ">i8"), ("d", ">i4"), ("v", ">i8"), ("x", ">i2")])
# What readings add up to (`readings_fingerprint`, `reading_sums`): their count and integer sums
# over value, duration and multiplier (split so that every term is below 2^21), each weighted by
# the reading's minute in a 1021-minute cycle — so an added, removed or re-posted reading with
# another value almost surely moves them. Integer sums: the same whatever the order or grouping
# (no overflow: a statement sums terms below 2^31). SQL's integer division truncates toward zero
# and its remainder takes the dividend's sign, on SQLite and PostgreSQL alike; reading_sums does
# the same in numpy, so both give equal answers for equal readings.
_W = "(1 + (start / 60) % 1021)"
_SUMS = (f"count(*), sum((value % 1048576) * {_W}), sum(((value / 1048576) % 1048576) * {_W}), "
         f"sum((value / 1099511627776) * {_W}), sum((duration % 1048576) * {_W}), sum((duration / 1048576) * {_W}), "
         f"sum((multiplier + 256) * {_W})")
_SUMS_SQL = {
    "sqlite": f"SELECT {_SUMS} FROM readings WHERE meter_reading_id IN (SELECT value FROM json_each(?)) "
              "AND start >= ? AND start < ?",
    "postgresql": f"SELECT {_SUMS.replace(' % ', ' %% ')} FROM readings WHERE meter_reading_id = ANY(%s) "
                  "AND start >= %s AND start < %s",
}


@dataclass(frozen=True)
class FleetReadings:
    """Power readings of many devices (one entry per reading, W, positive = drawn from the grid),
    ordered by (device, start, duration): `device_index` into the device list given, and per
    device the usage point and meter readings they came from (`sources`: device_id ->
    (usage_point_id, meter reading ids)); `sums`: what the raw readings add up to
    (`reading_sums`, as `readings_fingerprint` computes them in SQL)."""

    device_index: np.ndarray
    starts: np.ndarray
    durations: np.ndarray
    watts: np.ndarray
    sources: dict[int, tuple[int, tuple[int, ...]]]
    sums: tuple[int, ...] = (0,) * 7


def _tdiv(a: np.ndarray, b: int) -> np.ndarray:
    return np.sign(a) * (np.abs(a) // b)  # SQL's integer division: toward zero


def _tmod(a: np.ndarray, b: int) -> np.ndarray:
    return a - b * _tdiv(a, b)  # SQL's remainder: the dividend's sign


def reading_sums(start: np.ndarray, duration: np.ndarray, value: np.ndarray, multiplier: np.ndarray) -> tuple[int, ...]:
    """_SUMS of raw readings (int64 columns), in numpy: equal to what the database gives."""
    w = 1 + _tmod(_tdiv(start, 60), 1021)
    terms = (_tmod(value, 1 << 20), _tmod(_tdiv(value, 1 << 20), 1 << 20), _tdiv(value, 1 << 40),
             _tmod(duration, 1 << 20), _tdiv(duration, 1 << 20), multiplier + 256)
    return (int(start.size), *(int((t * w).sum()) for t in terms))


def add_sums(a: Sequence[int], b: Sequence[int]) -> tuple[int, ...]:
    return tuple(int(x) + int(y) for x, y in zip(a, b))


@dataclass(frozen=True)
class FleetMeters:
    """The meter readings chosen for a list of devices (sorted by id, with the device index and
    the sign of each) and `sources` as in FleetReadings."""

    ids: np.ndarray
    device_index: np.ndarray
    sign: np.ndarray
    sources: dict[int, tuple[int, tuple[int, ...]]]


def _driver(db: Reader) -> tuple[Any, str]:
    """The DB-API connection under `db` (its transaction) and the dialect's name."""
    conn = db.connection() if isinstance(db, Session) else db
    return conn.connection.driver_connection, conn.dialect.name


def _ids_param(dialect: str, ids: Sequence[int]) -> Any:
    return [int(i) for i in ids] if dialect == "postgresql" else "[" + ",".join(str(int(i)) for i in ids) + "]"


def merged_ranges(spans: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """The query ranges [t1 − MAX_READING_S, t2) of `spans`, overlapping ones merged: each reading
    is fetched once."""
    out: list[list[int]] = []
    for t1, t2 in sorted((int(a), int(b)) for a, b in spans):
        lo = t1 - MAX_READING_S
        if out and lo <= out[-1][1]:
            out[-1][1] = max(out[-1][1], t2)
        else:
            out.append([lo, t2])
    return [(a, b) for a, b in out]


def fleet_meters(db: Reader, device_ids: Sequence[int]) -> FleetMeters:
    """Which meter readings `load_series` would read for each device (one usage point per device:
    its premises aggregation point, else its first; W, whole device, the power itself), with the
    sign of each (reverse flow negative). Unscoped (M&V)."""
    raw, dialect = _driver(db)
    index = {int(d): i for i, d in enumerate(device_ids)}
    sources: dict[int, tuple[int, tuple[int, ...]]] = {}
    meters: list[tuple[int, int, int]] = []
    cur = raw.cursor()
    try:
        cur.execute(_METERS_SQL[dialect], (_ids_param(dialect, list(index)),))
        rows = cur.fetchall()
    finally:
        cur.close()
    k, n = 0, len(rows)
    while k < n:  # rows come by device, usage point, meter reading
        dev = rows[k][1]
        j = k
        while j < n and rows[j][1] == dev:
            j += 1
        cands = rows[k:j]
        up = next((c[2] for c in cands if c[4] & ROLE_PREMISES_AGGREGATION_POINT), cands[0][2])
        mine = [c for c in cands if c[2] == up]
        sources[dev] = (up, tuple(c[0] for c in mine))
        meters.extend((c[0], index[dev], -1 if c[3] == FLOW_REVERSE else 1) for c in mine)
        k = j
    m = np.array(sorted(meters), dtype=np.int64).reshape(-1, 3)
    return FleetMeters(m[:, 0].copy(), m[:, 1].copy(), m[:, 2].copy(), sources)


def _fetch(cur: Any, dialect: str, ids: np.ndarray, lo: int, hi: int) -> np.ndarray | None:
    """(meter, start, duration, value, multiplier) × readings of meter readings `ids` with
    lo <= start < hi, as an int64 (5, n) array; None when there are none."""
    cur.execute(_READINGS_SQL[dialect], (_ids_param(dialect, ids.tolist()), lo, hi))
    got = cur.fetchone()[0]
    if not got:
        return None
    if dialect == "postgresql":
        rec = np.frombuffer(bytes(got), dtype=_PG_RECORD)
        return np.stack([rec[f].astype(np.int64) for f in ("m", "s", "d", "v", "x")])
    return np.fromstring(got, dtype=np.int64, sep=",").reshape(-1, 5).T


def _to_fleet(parts: list[np.ndarray], meters: FleetMeters, sources: dict[int, tuple[int, tuple[int, ...]]]
              ) -> FleetReadings:
    """Raw reading columns -> FleetReadings (W, signed, by (device, start, duration); readings
    of several meter readings of a device with the same start and duration added up)."""
    empty_i, empty_f = np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64)
    if not parts:
        return FleetReadings(empty_i, empty_i, empty_i, empty_f, sources)
    meter, start, dur, value, mult = np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]
    sums = reading_sums(start, dur, value, mult)
    pos = np.searchsorted(meters.ids, meter)
    dev = meters.device_index[pos]
    # 10^-m is not exact in binary: divide by 10^m instead (1234 × 10^-1 → exactly 123.4).
    scale = np.power(10.0, np.abs(mult).astype(np.float64))
    v = value.astype(np.float64)
    watts = np.where(mult >= 0, v * scale, v / scale) * meters.sign[pos].astype(np.float64)
    base = int(start.min())
    key = (dev << 32) | (start - base)  # (device, start): starts span far less than 2^32 s
    order = np.argsort(key, kind="stable")
    key = key[order]
    if key.size < 2 or (np.diff(key) != 0).all():  # one reading per (device, start): nothing to add up
        return FleetReadings(dev[order], start[order], dur[order], watts[order], sources, sums)
    # Several meter readings at one start: by (device, start, duration), each group's readings
    # added up in meter reading order (as np.bincount adds them).
    order = np.lexsort((meter, dur, start, dev))
    dev, start, dur, watts = dev[order], start[order], dur[order], watts[order]
    new = np.ones(dev.size, dtype=bool)
    new[1:] = (dev[1:] != dev[:-1]) | (start[1:] != start[:-1]) | (dur[1:] != dur[:-1])
    group = np.cumsum(new) - 1
    summed = np.bincount(group, weights=watts, minlength=int(group[-1]) + 1)
    return FleetReadings(dev[new], start[new], dur[new], summed, sources, sums)


def fleet_reading_chunks(db: Reader, device_ids: Sequence[int], spans: Iterable[tuple[int, int]], *,
                         chunk: int = FLEET_CHUNK) -> Iterator[tuple[int, FleetReadings]]:
    """`load_fleet_readings` a chunk of devices at a time: yields (offset, the readings of
    device_ids[offset:offset + chunk], device_index relative to the chunk), so a caller holds one
    chunk's readings at a time. Driver-level statements, one per chunk and merged range, each
    returning its readings as one value parsed by numpy (no Python object per reading)."""
    ranges = merged_ranges(spans)
    ids = list(device_ids)
    raw, dialect = _driver(db)
    for k in range(0, len(ids), chunk):
        part = ids[k:k + chunk]
        meters = fleet_meters(db, part)
        cols: list[np.ndarray] = []
        if meters.ids.size:
            cur = raw.cursor()
            try:
                for lo, hi in ranges:
                    got = _fetch(cur, dialect, meters.ids, lo, hi)
                    if got is not None:
                        cols.append(got)
            finally:
                cur.close()
        yield k, _to_fleet(cols, meters, meters.sources)
        del cols


def load_fleet_readings(db: Reader, device_ids: Sequence[int], spans: Iterable[tuple[int, int]]) -> FleetReadings:
    """Readings of `device_ids` that may overlap any of `spans` ([t1, t2) UTC seconds), chosen as
    `load_series` chooses them (one usage point per device: its premises aggregation point, else
    its first; W, whole device, the power itself; reverse flow negative); readings of several meter
    readings with the same start and duration are added up. Unscoped (M&V). All at once: for a
    large fleet, `fleet_reading_chunks`."""
    parts = list(fleet_reading_chunks(db, device_ids, list(spans)))
    sources: dict[int, tuple[int, tuple[int, ...]]] = {}
    for _, fr in parts:
        sources.update(fr.sources)
    if not parts:
        empty_i, empty_f = np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64)
        return FleetReadings(empty_i, empty_i, empty_i, empty_f, sources)
    sums: tuple[int, ...] = (0,) * 7
    for _, fr in parts:
        sums = add_sums(sums, fr.sums)
    return FleetReadings(np.concatenate([fr.device_index + k for k, fr in parts]),
                         np.concatenate([fr.starts for _, fr in parts]),
                         np.concatenate([fr.durations for _, fr in parts]),
                         np.concatenate([fr.watts for _, fr in parts]), sources, sums)


def readings_fingerprint(db: Reader, meter_ids: np.ndarray, spans: Iterable[tuple[int, int]], *,
                         chunk: int = FLEET_CHUNK) -> tuple[int, ...]:
    """What the readings `fleet_reading_chunks` would load for these meter readings add up to
    (the `sums` of their FleetReadings, totalled), computed by the database: one statement per
    chunk of meter readings and merged range, no reading leaves it. Equal answers: the same
    readings, almost surely (a change that moves none of the sums is not seen; a settlement's
    digest still guards what is stored)."""
    raw, dialect = _driver(db)
    ids = np.sort(np.asarray(meter_ids, dtype=np.int64))
    out: tuple[int, ...] = (0,) * 7
    cur = raw.cursor()
    try:
        for k in range(0, ids.size, chunk):
            param = _ids_param(dialect, ids[k:k + chunk].tolist())
            for lo, hi in merged_ranges(spans):
                cur.execute(_SUMS_SQL[dialect], (param, lo, hi))
                out = add_sums(out, [int(x or 0) for x in cur.fetchone()])
    finally:
        cur.close()
    return out
