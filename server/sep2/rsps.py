"""Responses (`rsps`): a device's acknowledgements of events, posted to the event's replyTo.

Status codes: 1 received, 2 started, 3 completed, 4 opt-out, 5 opt-in, 6 cancelled, 7 superseded,
8/9 partially complete (opt-out / opt-in), 10 complete without participation, 11 acknowledged,
12 cannot be displayed, 13 aborted (alternate server event), 14 aborted (alternate program event),
252 rejected: control not applicable, 253 rejected: invalid event, 254 rejected: received late.
"""

from __future__ import annotations

from dataclasses import dataclass

from server.sep2.models import Resource
from server.sep2.types import (
    HexBinary160,
    ListLinkValue,
    MRIDType,
    String32,
    TimeType,
    UInt8,
    UInt32,
    VersionType,
    attr,
    children,
    elem,
    link,
)

RESPONSE_STATUSES = frozenset({1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 252, 253, 254})


@dataclass(kw_only=True, slots=True)
class Response(Resource):
    created_date_time: int | None = elem("createdDateTime", TimeType)
    end_device_lfdi: str = elem("endDeviceLFDI", HexBinary160, required=True, default="")
    status: int | None = elem("status", UInt8)
    subject: str = elem("subject", MRIDType, required=True, default="")


@dataclass(kw_only=True, slots=True)
class DERControlResponse(Response):
    """The Response a DER posts about a DERControl (same content, its own element name)."""


@dataclass(kw_only=True, slots=True)
class ResponseList(Resource):
    all: int = attr("all", UInt32, default=0)
    results: int = attr("results", UInt32, default=0)
    responses: list[Response] = children("Response", Response)


@dataclass(kw_only=True, slots=True)
class ResponseSet(Resource):
    mrid: str = elem("mRID", MRIDType, required=True, default="")
    description: str | None = elem("description", String32)
    version: int | None = elem("version", VersionType)
    response_list_link: ListLinkValue | None = link("ResponseListLink", list_link=True)


@dataclass(kw_only=True, slots=True)
class ResponseSetList(Resource):
    all: int = attr("all", UInt32, default=0)
    results: int = attr("results", UInt32, default=0)
    poll_rate: int | None = attr("pollRate", UInt32)
    response_sets: list[ResponseSet] = children("ResponseSet", ResponseSet)
