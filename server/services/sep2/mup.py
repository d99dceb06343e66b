"""Metering Mirror (`/mup`) and Metering (`/upt`) function sets: devices mirror their meters to
the server, and read them back as UsagePoints (IEEE 2030.5 §10.4, §10.11; CSIP).

Who. A MirrorUsagePoint belongs to the EndDevice named by its deviceLFDI. A client may create one
only for an LFDI it may act for: a device for its own (registered) LFDI, an aggregator for its
own and for the devices it manages. Anything else — another device's LFDI, an unregistered one,
the caller's own before it registered — is refused with 403 (reasonCode 1), the same answer
whether or not that LFDI exists, so nothing leaks; a malformed deviceLFDI is 400. Afterwards
everything under `/mup/{id}` and `/upt/{id}` is visible to exactly those who can see the device
(its own certificate, its aggregator); for anyone else it does not exist (404). No certificate:
403 before the body is read.

POST /mup (rule a). The mRID is looked up among the usage points of that device (the same mRID
from another device is another usage point): a new one answers 201, an existing one is written
over — description, version, roleFlags, serviceCategoryKind, status and postRate replaced by what
was posted — and answers 204; both carry `Location: /mup/{id}`. status must be 0 (off) or 1 (on).
MirrorMeterReadings in the body are taken as in a POST to `/mup/{id}`. At most
MAX_USAGE_POINTS_PER_DEVICE usage points per device (more: 400, reasonCode 2).

GET /mup/{id} answers the first-level elements only (§10.11.3 c: no MirrorMeterReadings); its
postRate is the operator's postRate of the EndDevice when set, else the one the device posted.
The lists are ordered by mRID descending (Tables 39 and 56); `a` does not apply to them.

POST /mup/{id} (rule h) takes a MirrorMeterReading or a MirrorMeterReadingList:
- a MirrorMeterReading whose mRID is new to this usage point must carry its ReadingType, with a
  uom (else 400, and nothing of the POST is stored); at most MAX_METER_READINGS_PER_USAGE_POINT
  meter reading rows per usage point, retired ones included (more: 400, reasonCode 2);
- a MirrorMeterReading mRID belongs to one device: an mRID that names a meter reading of another
  device's usage point is refused with 409 (reasonCode 1) and nothing of the POST is stored. mRIDs
  are globally unique identifiers (§ "mRID": 96 bits then the creator's PEN); two clients posting
  one mRID is a clash that would mix two meters' readings, never a legitimate re-post;
- an existing one may omit its ReadingType (later POSTs should); description and version, when
  posted, replace the stored ones;
- an existing one whose ReadingType differs from the stored one is an overwrite (see below).

A changed ReadingType (rule h.1: "the contents of the MirrorMeterReading SHALL overwrite the data
in the associated MeterReading"; the ReadingType is part of that data, so refusing it — what the
server did before, 400 — does not follow the standard). But readings already stored were posted
in the old unit, multiplier, direction and interval, and settlement reads them: they must never be
read in the new one. So, when the stored meter reading has no readings, its ReadingType is simply
replaced; when it has readings, that row is *retired* — it keeps its readings and its ReadingType
(M&V and settlement reports still read them as what they were), it is no longer served under
/upt nor found by its mRID — and a new MeterReading with the same mRID and the new ReadingType
takes the POST's readings; the answer's Location is the new MeterReading. Each reading stays
tied to the ReadingType it was posted under.
It answers 201 with the Location of what the readings now belong to: the MeterReading
(`/upt/{id}/mr/{r}`) for one MirrorMeterReading, the MeterReadingList for a list. 2030.5 gives the
MirrorMeterReading no URI of its own and its readings are served there; clients (py20305, CSIP
test harnesses) check only for a 2xx.

Readings. A Reading is value × 10^powerOfTenMultiplier of the ReadingType's unit over timePeriod
{start, duration}. Readings come as MirrorReadingSets or one bare Reading. Each must have a value;
touTier and consumptionBlock must be absent or 0 (tiered billing registers are not supported);
start must be ≥ 0 and at most MAX_FUTURE_SECONDS ahead of the server's clock; duration below 2^31
s. A Reading without timePeriod takes, in a MirrorReadingSet, the set's start + its position ×
the ReadingType's intervalLength (which must then be given) and that length as duration; a bare
one takes the MirrorMeterReading's lastUpdateTime (else the server's clock) and intervalLength
(else 0). A reading with the same (meter reading, start) as a stored one replaces it: a re-post
after a lost answer stores nothing twice. Any refused reading refuses the whole POST (400,
reasonCode 1) and nothing is stored. localID, and the MirrorReadingSets' own mRIDs and periods,
are not kept.

Reading sets (read side). The server groups a meter reading's readings into one ReadingSet per
UTC day of their start: ReadingSet id = days since 1970-01-01, timePeriod = that day, mRID derived
from (meter reading, day). A Reading's id is its start's second within that day (0…86399), so a
device-day is one range scan of the (meter reading, start) key. ReadingSetList is ordered by
start descending (Table 39); ReadingList by start ascending (the order localIDs would have).

`a` ("after", UTC seconds), on the time-ordered lists: a ReadingList keeps the readings whose
timePeriod.start ≥ a; a ReadingSetList the sets that end after a (those that can hold such
readings). `all` counts what `a` keeps; `s` and `l` then page it.

How rows look on the wire is server.services.sep2.mappers.mup's business.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from server.db import metering
from server.db.repo import Reader
from server.scope import Scope
from server.sep2 import uris
from server.sep2.identity import normalize_lfdi
from server.sep2.mup import (
    MeterReading,
    MeterReadingList,
    MirrorMeterReading,
    MirrorMeterReadingList,
    MirrorUsagePoint,
    MirrorUsagePointList,
    Reading,
    ReadingList,
    ReadingSet,
    ReadingSetList,
    ReadingType,
    UsagePoint,
    UsagePointList,
)
from server.sep2.paging import Page
from server.services.errors import Conflict, Forbidden, Invalid, NotFound
from server.services.sep2.mappers import mup as mapper

MAX_USAGE_POINTS_PER_DEVICE = 16
MAX_METER_READINGS_PER_USAGE_POINT = 128
MAX_FUTURE_SECONDS = 86_400
MAX_DURATION = 2**31 - 1
DAY = metering.DAY


class LimitReached(Invalid):
    reason_code = 2  # 2030.5 Error reasonCode: resource limit reached


# ------------------------------------------------------------------------------ mirror side


def _usage_points_page(db: Reader, scope: Scope, page: Page) -> tuple[int, Any]:
    """The caller's usage points: one store, seen as mirrors (`/mup`) or as usage points (`/upt`)."""
    return metering.count_usage_points(db, scope), metering.usage_points(db, scope, page.start, page.limit)


def mirror_usage_point_list(db: Reader, scope: Scope, page: Page, poll_rate: int) -> MirrorUsagePointList:
    total, rows = _usage_points_page(db, scope, page)
    return mapper.mirror_usage_point_list(rows, total, poll_rate)


def _usage_point_row(db: Reader, scope: Scope, usage_point_id: int) -> Any:
    row = metering.usage_point(db, scope, usage_point_id)
    if row is None:
        raise NotFound("no such usage point")
    return row


def mirror_usage_point(db: Reader, scope: Scope, mup_id: int) -> MirrorUsagePoint:
    return mapper.mirror_usage_point(_usage_point_row(db, scope, mup_id))


def post_mirror_usage_point(session: Session, scope: Scope, posted: MirrorUsagePoint, now: int) -> tuple[int, bool]:
    """POST /mup: create or write over the usage point; (its id, whether it was created)."""
    try:
        lfdi = normalize_lfdi(posted.device_lfdi)
    except ValueError as exc:
        raise Invalid(f"deviceLFDI: {exc}") from None
    device_id = metering.visible_device_id(session, scope, lfdi)
    if device_id is None:
        raise Forbidden("this client may not mirror a meter for that deviceLFDI (not its own or managed, or not registered)")
    if posted.status not in (0, 1):
        raise Invalid("status must be 0 (off) or 1 (on)")
    values = {
        "description": posted.description,
        "version": posted.version,
        "role_flags": mapper.bits(posted.role_flags) or 0,
        "service_category_kind": posted.service_category_kind,
        "status": posted.status,
        "post_rate": posted.post_rate,
        "changed_time": now,
    }
    created = False
    if metering.usage_point_id(session, device_id, posted.mrid) is None:
        if metering.usage_points_of_device(session, device_id) >= MAX_USAGE_POINTS_PER_DEVICE:
            raise LimitReached(f"a device may mirror at most {MAX_USAGE_POINTS_PER_DEVICE} usage points")
        created = metering.insert_usage_point(
            session, {"device_id": device_id, "mrid": posted.mrid, "created_time": now, **values}
        )
    if not created:  # it existed, or a concurrent POST created it first: write over it
        metering.update_usage_point(session, device_id, posted.mrid, values)
    usage_point_id = metering.usage_point_id(session, device_id, posted.mrid)
    assert usage_point_id is not None
    _ingest(session, usage_point_id, device_id, posted.mirror_meter_readings, now)
    return usage_point_id, created


def post_readings(
    session: Session, scope: Scope, mup_id: int, posted: MirrorMeterReading | MirrorMeterReadingList, now: int
) -> str:
    """POST /mup/{id}: store meter readings; returns the Location to answer with."""
    device_id = metering.visible_usage_point_device(session, scope, mup_id)
    if device_id is None:
        raise NotFound("no such usage point")
    if isinstance(posted, MirrorMeterReadingList):
        _ingest(session, mup_id, device_id, posted.mirror_meter_readings, now)
        return uris.href(uris.MR_LIST, upt_id=mup_id)
    ids = _ingest(session, mup_id, device_id, [posted], now)
    return uris.href(uris.MR, upt_id=mup_id, mr_id=ids[posted.mrid])


def _ingest(session: Session, usage_point_id: int, device_id: int, posted: Sequence[MirrorMeterReading],
            now: int) -> dict[str, int]:
    """Create new meter readings, overwrite or retire changed ones, store every reading;
    {mRID: meter reading id}. Everything is checked before the first write."""
    if not posted:
        return {}
    known = metering.meter_readings_of(session, usage_point_id)
    new: dict[str, MirrorMeterReading] = {}  # mRIDs new to this usage point
    retyped: dict[str, MirrorMeterReading] = {}  # known mRIDs posted with another ReadingType
    for mmr in posted:
        if mmr.mrid in known:
            posted_type = mmr.reading_type
            if posted_type is not None and mapper.reading_type_text(posted_type) != known[mmr.mrid].reading_type:
                if posted_type.uom is None:
                    raise Invalid(f"the ReadingType of MirrorMeterReading {mmr.mrid} needs a uom")
                retyped[mmr.mrid] = mmr  # the last one posted wins, as a later POST would
            continue
        if mmr.mrid in new:
            continue
        if mmr.reading_type is None:
            raise Invalid(f"MirrorMeterReading {mmr.mrid} is new to this usage point: it needs its ReadingType")
        if mmr.reading_type.uom is None:
            raise Invalid(f"the ReadingType of MirrorMeterReading {mmr.mrid} needs a uom")
        new[mmr.mrid] = mmr
    if new and metering.mrid_of_another_device(session, device_id, list(new)):
        raise Conflict("a MirrorMeterReading mRID of this POST belongs to another device's meter; "
                       "mRIDs are unique: post a new one")
    retire = [m for m in retyped if metering.has_readings(session, known[m].id)]
    if new or retire:
        rows = metering.meter_reading_rows(session, usage_point_id)
        if rows + len(new) + len(retire) > MAX_METER_READINGS_PER_USAGE_POINT:
            raise LimitReached(f"a usage point may have at most {MAX_METER_READINGS_PER_USAGE_POINT} meter readings "
                               "(ReadingTypes replaced after readings were stored count too)")
    for mrid, mmr in retyped.items():
        assert mmr.reading_type is not None
        if mrid in retire:  # its readings keep their ReadingType under the retired row
            metering.retire_meter_reading(session, known[mrid].id, now)
            new[mrid] = mmr
        else:  # nothing was posted in the old unit: overwrite it in place
            metering.update_meter_reading(session, known[mrid].id, {
                "reading_type": mapper.reading_type_text(mmr.reading_type),
                **mapper.reading_type_columns(mmr.reading_type),
            })
    if new:
        for mrid, mmr in new.items():
            assert mmr.reading_type is not None
            metering.insert_meter_reading(session, {
                "usage_point_id": usage_point_id,
                "mrid": mrid,
                "description": mmr.description,
                "version": mmr.version,
                "reading_type": mapper.reading_type_text(mmr.reading_type),
                "created_time": now,
                **mapper.reading_type_columns(mmr.reading_type),
            })
    if new or retyped:
        known = metering.meter_readings_of(session, usage_point_id)
    readings: list[metering.NewReading] = []
    for mmr in posted:
        row = known[mmr.mrid]
        if mmr.mrid not in new:
            changes = {
                k: v for k, v in (("description", mmr.description), ("version", mmr.version))
                if v is not None and v != getattr(row, k)
            }
            if changes:
                metering.update_meter_reading(session, row.id, changes)
        readings.extend(_readings(row, mmr, now))
    metering.store_readings(session, readings)
    return {mrid: row.id for mrid, row in known.items()}


def _readings(row: Any, mmr: MirrorMeterReading, now: int) -> list[metering.NewReading]:
    interval = row.interval_length or 0
    out = []
    for rs in mmr.mirror_reading_sets:
        for position, r in enumerate(rs.readings):
            if r.time_period is not None:
                start, duration = r.time_period.start, r.time_period.duration
            elif interval:
                start, duration = rs.time_period.start + position * interval, interval
            else:
                raise Invalid("a Reading in a MirrorReadingSet needs a timePeriod when the ReadingType has no intervalLength")
            out.append(_reading(row, r, start, duration, now))
    if mmr.reading is not None:
        r = mmr.reading
        if r.time_period is not None:
            start, duration = r.time_period.start, r.time_period.duration
        else:
            start = mmr.last_update_time if mmr.last_update_time is not None else now
            duration = interval
        out.append(_reading(row, r, start, duration, now))
    return out


def _reading(row: Any, r: Reading, start: int, duration: int, now: int) -> metering.NewReading:
    if r.value is None:
        raise Invalid("a Reading needs a value")
    if r.tou_tier or r.consumption_block:
        raise Invalid("tiered readings (touTier, consumptionBlock) are not supported")
    if start < 0:
        raise Invalid("a Reading's timePeriod.start must not be before 1970")
    if start > now + MAX_FUTURE_SECONDS:
        raise Invalid(f"a Reading's timePeriod.start is more than {MAX_FUTURE_SECONDS} s ahead of the server's clock")
    if duration > MAX_DURATION:
        raise Invalid("a Reading's timePeriod.duration is too long")
    return metering.NewReading(
        meter_reading_id=row.id,
        start=start,
        duration=duration,
        value=r.value,
        multiplier=row.multiplier,
        quality_flags=mapper.bits(r.quality_flags),
    )


# -------------------------------------------------------------------------------- read side


def usage_point_list(db: Reader, scope: Scope, page: Page, poll_rate: int) -> UsagePointList:
    total, rows = _usage_points_page(db, scope, page)
    return mapper.usage_point_list(rows, total, poll_rate)


def usage_point(db: Reader, scope: Scope, upt_id: int) -> UsagePoint:
    return mapper.usage_point(_usage_point_row(db, scope, upt_id))


def meter_reading_list(db: Reader, scope: Scope, upt_id: int, page: Page) -> MeterReadingList:
    _usage_point_row(db, scope, upt_id)
    total, rows = metering.meter_reading_page(db, upt_id, page.start, page.limit)
    return mapper.meter_reading_list(upt_id, rows, total)


def _meter_reading_row(db: Reader, scope: Scope, upt_id: int, mr_id: int) -> Any:
    row = metering.meter_reading(db, scope, upt_id, mr_id)
    if row is None:
        raise NotFound("no such MeterReading")
    return row


def meter_reading(db: Reader, scope: Scope, upt_id: int, mr_id: int) -> MeterReading:
    return mapper.meter_reading(upt_id, _meter_reading_row(db, scope, upt_id, mr_id))


def reading_type(db: Reader, scope: Scope, upt_id: int, mr_id: int) -> ReadingType:
    return mapper.reading_type(upt_id, mr_id, _meter_reading_row(db, scope, upt_id, mr_id).reading_type)


def reading_set_list(db: Reader, scope: Scope, upt_id: int, mr_id: int, page: Page) -> ReadingSetList:
    _meter_reading_row(db, scope, upt_id, mr_id)
    min_day = 0 if page.after is None else page.after // DAY
    total, days = metering.reading_days(db, mr_id, min_day, page.start, page.limit)
    return mapper.reading_set_list(upt_id, mr_id, days, total)


def _day(db: Reader, scope: Scope, upt_id: int, mr_id: int, rs_id: int) -> None:
    _meter_reading_row(db, scope, upt_id, mr_id)
    if not metering.has_reading_day(db, mr_id, rs_id):
        raise NotFound("no such ReadingSet")


def reading_set(db: Reader, scope: Scope, upt_id: int, mr_id: int, rs_id: int) -> ReadingSet:
    _day(db, scope, upt_id, mr_id, rs_id)
    return mapper.reading_set(upt_id, mr_id, rs_id)


def reading_list(db: Reader, scope: Scope, upt_id: int, mr_id: int, rs_id: int, page: Page) -> ReadingList:
    _day(db, scope, upt_id, mr_id, rs_id)
    lo, hi = rs_id * DAY, (rs_id + 1) * DAY
    if page.after is not None:
        lo = max(lo, page.after)
    total, rows = metering.readings(db, mr_id, lo, hi, page.start, page.limit)
    return mapper.reading_list(upt_id, mr_id, rs_id, rows, total)


def reading(db: Reader, scope: Scope, upt_id: int, mr_id: int, rs_id: int, r_id: int) -> Reading:
    _meter_reading_row(db, scope, upt_id, mr_id)
    row = metering.reading(db, mr_id, rs_id * DAY + r_id) if r_id < DAY else None
    if row is None:
        raise NotFound("no such Reading")
    return mapper.reading(upt_id, mr_id, rs_id, row)
