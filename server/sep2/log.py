"""Log events (`lel`, the LogEvent function set): what a device reports happened to it.

A device POSTs LogEvents to its EndDevice's LogEventList and reads them back. Identity is the
(createdDateTime, logEventID, profileID, logEventPEN) a device gives; the server adds only the
href.
"""

from __future__ import annotations

from dataclasses import dataclass

from server.sep2.models import Resource, SubscribableResource
from server.sep2.types import (
    String32,
    TimeType,
    UInt8,
    UInt16,
    UInt32,
    attr,
    children,
    elem,
)

PENType = UInt32  # IANA Private Enterprise Number
IEEE_2030_5_PEN = 40732
PROFILE_IEEE_2030_5 = 2


@dataclass(kw_only=True, slots=True)
class LogEvent(Resource):
    """functionSet: 0 general … 11 DER … 19 security (IEEE 2030.5 table); profileID: 0 none,
    1 vendor, 2 IEEE 2030.5, 3 home automation, 4 building automation."""

    created_date_time: int = elem("createdDateTime", TimeType, required=True, default=0)
    details: str | None = elem("details", String32)
    extended_data: int | None = elem("extendedData", UInt32)
    function_set: int = elem("functionSet", UInt8, required=True, default=0)
    log_event_code: int = elem("logEventCode", UInt8, required=True, default=0)
    log_event_id: int = elem("logEventID", UInt16, required=True, default=0)
    log_event_pen: int = elem("logEventPEN", PENType, required=True, default=0)
    profile_id: int = elem("profileID", UInt8, required=True, default=0)


@dataclass(kw_only=True, slots=True)
class LogEventList(SubscribableResource):
    all: int = attr("all", UInt32, default=0)
    results: int = attr("results", UInt32, default=0)
    poll_rate: int | None = attr("pollRate", UInt32)
    log_events: list[LogEvent] = children("LogEvent", LogEvent)
