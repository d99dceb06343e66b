"""Function set assignments (`fsa`): which DER programs (and other function sets) a device uses.

A device finds its programs by following EndDevice → FunctionSetAssignmentsList →
FunctionSetAssignments → DERProgramList; it never guesses a URI.
"""

from __future__ import annotations

from dataclasses import dataclass

from server.sep2.models import SubscribableResource
from server.sep2.types import (
    ListLinkValue,
    MRIDType,
    String32,
    UInt32,
    VersionType,
    attr,
    children,
    elem,
    link,
)


@dataclass(kw_only=True, slots=True)
class FunctionSetAssignments(SubscribableResource):
    der_program_list_link: ListLinkValue | None = link("DERProgramListLink", list_link=True)
    response_set_list_link: ListLinkValue | None = link("ResponseSetListLink", list_link=True)
    time_link: str | None = link("TimeLink")
    mrid: str = elem("mRID", MRIDType, required=True, default="")
    description: str | None = elem("description", String32)
    version: int | None = elem("version", VersionType)


@dataclass(kw_only=True, slots=True)
class FunctionSetAssignmentsList(SubscribableResource):
    all: int = attr("all", UInt32, default=0)
    results: int = attr("results", UInt32, default=0)
    poll_rate: int | None = attr("pollRate", UInt32)
    function_set_assignments: list[FunctionSetAssignments] = children(
        "FunctionSetAssignments", FunctionSetAssignments
    )
