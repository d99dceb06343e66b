"""Metering Mirror (`mup`) and Metering (`upt`) function sets: MirrorUsagePoint, UsagePoint,
MeterReading, ReadingType, ReadingSet, Reading and their lists from the stored rows
(server.db.metering), and a posted ReadingType as the text and columns stored for it.

One store seen twice: a usage point is a MirrorUsagePoint at `/mup/{id}` and a UsagePoint at
`/upt/{id}`. A meter reading's readings are grouped into one ReadingSet per UTC day of their
start: ReadingSet id = days since 1970-01-01, mRID derived from (meter reading, day); a Reading's
id is its start's second within that day.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from server.db.metering import DAY
from server.sep2 import codec, uris
from server.sep2.derp import DateTimeInterval
from server.sep2.mup import (
    MeterReading,
    MeterReadingList,
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
from server.sep2.types import ListLinkValue


def hex_bits(bits: int | None) -> str | None:
    """A bitmap as HexBinary16: one byte when it fits, else two."""
    if bits is None:
        return None
    return f"{bits:02X}" if bits < 0x100 else f"{bits:04X}"


def bits(text: str | None) -> int | None:
    """A HexBinary bitmap as its integer (None when absent or empty)."""
    return int(text, 16) if text else None


# ------------------------------------------------------------------------------ usage points


def _usage_point_fields(row: Any) -> dict[str, Any]:
    """What a MirrorUsagePoint and a UsagePoint of the same stored row both say."""
    return {
        "mrid": row.mrid,
        "description": row.description,
        "version": row.version,
        "role_flags": hex_bits(row.role_flags) or "00",
        "service_category_kind": row.service_category_kind,
        "status": row.status,
        "device_lfdi": row.device_lfdi,
    }


def mirror_usage_point(row: Any) -> MirrorUsagePoint:
    """A usage point as its device mirrors it; postRate is the operator's for the device when set."""
    return MirrorUsagePoint(
        href=uris.href(uris.MUP, mup_id=row.id),
        **_usage_point_fields(row),
        post_rate=row.device_post_rate if row.device_post_rate is not None else row.post_rate,
    )


def mirror_usage_point_list(rows: Sequence[Any], all_: int, poll_rate: int) -> MirrorUsagePointList:
    return MirrorUsagePointList(
        href=uris.MUP_LIST,
        all=all_,
        results=len(rows),
        poll_rate=poll_rate,
        mirror_usage_points=[mirror_usage_point(r) for r in rows],
    )


def usage_point(row: Any) -> UsagePoint:
    """A usage point as it is read back, with the count of its meter readings."""
    return UsagePoint(
        href=uris.href(uris.UPT, upt_id=row.id),
        **_usage_point_fields(row),
        meter_reading_list_link=ListLinkValue(uris.href(uris.MR_LIST, upt_id=row.id), row.meter_readings),
    )


def usage_point_list(rows: Sequence[Any], all_: int, poll_rate: int) -> UsagePointList:
    return UsagePointList(
        href=uris.UPT_LIST,
        all=all_,
        results=len(rows),
        poll_rate=poll_rate,
        usage_points=[usage_point(r) for r in rows],
    )


# ---------------------------------------------------------------------------- meter readings


def meter_reading(upt_id: int, row: Any) -> MeterReading:
    """A meter reading of usage point `upt_id`, with the count of its reading days."""
    ids = {"upt_id": upt_id, "mr_id": row.id}
    return MeterReading(
        href=uris.href(uris.MR, **ids),
        mrid=row.mrid,
        description=row.description,
        version=row.version,
        reading_set_list_link=ListLinkValue(uris.href(uris.RS_LIST, **ids), row.days),
        reading_type_link=uris.href(uris.RT, **ids),
    )


def meter_reading_list(upt_id: int, rows: Sequence[Any], all_: int) -> MeterReadingList:
    return MeterReadingList(
        href=uris.href(uris.MR_LIST, upt_id=upt_id),
        all=all_,
        results=len(rows),
        meter_readings=[meter_reading(upt_id, r) for r in rows],
    )


def reading_type_text(reading_type: ReadingType) -> str:
    """The stored (canonical) text of a posted ReadingType: without its href."""
    return codec.render(dataclasses.replace(reading_type, href=None)).decode("utf-8")


def reading_type_columns(rt: ReadingType) -> dict[str, Any]:
    """The columns readings are interpreted by (unit, multiplier, interval length …)."""
    return {
        "uom": rt.uom,
        "multiplier": rt.power_of_ten_multiplier or 0,
        "flow_direction": rt.flow_direction,
        "kind": rt.kind,
        "accumulation_behaviour": rt.accumulation_behaviour,
        "data_qualifier": rt.data_qualifier,
        "interval_length": rt.interval_length,
        "phase": rt.phase,
    }


def reading_type(upt_id: int, mr_id: int, text: str) -> ReadingType:
    """A stored ReadingType (its text) served at its meter reading's `rt`."""
    data = text.encode("utf-8")
    stored = codec.parse(data, ReadingType, max_bytes=len(data))
    return dataclasses.replace(stored, href=uris.href(uris.RT, upt_id=upt_id, mr_id=mr_id))


# ---------------------------------------------------------------------------------- readings


def reading_set(upt_id: int, mr_id: int, day: int) -> ReadingSet:
    """The ReadingSet of one UTC day (days since 1970-01-01) of a meter reading."""
    ids = {"upt_id": upt_id, "mr_id": mr_id, "rs_id": day}
    return ReadingSet(
        href=uris.href(uris.RS, **ids),
        mrid=f"{mr_id:016X}{day:08X}00000000",  # stable: (meter reading, day), then PEN 0
        time_period=DateTimeInterval(start=day * DAY, duration=DAY),
        reading_list_link=ListLinkValue(uris.href(uris.R_LIST, **ids)),
    )


def reading_set_list(upt_id: int, mr_id: int, days: Sequence[int], all_: int) -> ReadingSetList:
    return ReadingSetList(
        href=uris.href(uris.RS_LIST, upt_id=upt_id, mr_id=mr_id),
        all=all_,
        results=len(days),
        reading_sets=[reading_set(upt_id, mr_id, d) for d in days],
    )


def reading(upt_id: int, mr_id: int, day: int, row: Any) -> Reading:
    """A stored reading (row: start, duration, value, quality_flags) in the ReadingSet of `day`."""
    return Reading(
        href=uris.href(uris.R, upt_id=upt_id, mr_id=mr_id, rs_id=day, r_id=row.start - day * DAY),
        quality_flags=hex_bits(row.quality_flags),
        time_period=DateTimeInterval(start=row.start, duration=row.duration),
        value=row.value,
    )


def reading_list(upt_id: int, mr_id: int, day: int, rows: Sequence[Any], all_: int) -> ReadingList:
    return ReadingList(
        href=uris.href(uris.R_LIST, upt_id=upt_id, mr_id=mr_id, rs_id=day),
        all=all_,
        results=len(rows),
        readings=[reading(upt_id, mr_id, day, r) for r in rows],
    )
