"""Function set assignments (`fsa`): a device's FunctionSetAssignments and their list.

FSA 1 is derived from the device's memberships (no row: its mRID is derived from the device id,
as it always was); the others are operator FSAs (server.db.fsa rows: number, id, mrid,
description, version, programs)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from server.sep2 import uris
from server.sep2.sub import SUBSCRIBABLE
from server.sep2.fsa import FunctionSetAssignments, FunctionSetAssignmentsList
from server.sep2.types import ListLinkValue

DESCRIPTION = "utility programs"
MEMBERSHIP_FSA = 1


def _fsa(edev_id: int, number: int, der_programs: int, *, mrid: str, description: str | None,
         version: int) -> FunctionSetAssignments:
    ids = {"edev_id": edev_id, "fsa_id": number}
    return FunctionSetAssignments(
        href=uris.href(uris.FSA, **ids),
        der_program_list_link=ListLinkValue(uris.href(uris.DERP_LIST, **ids), der_programs),
        response_set_list_link=ListLinkValue(uris.RSPS_LIST),
        time_link=uris.TM,
        mrid=mrid,
        description=description,
        version=version,
    )


def membership_fsa(edev_id: int, der_programs: int) -> FunctionSetAssignments:
    """FSA 1 of `edev_id`: the `der_programs` DER programs it is a member of."""
    # Stable per device: "F5A" marks it, then the device id, then PEN 0 (no registered PEN).
    return _fsa(edev_id, MEMBERSHIP_FSA, der_programs, mrid=f"00000F5A{edev_id:016X}00000000",
                description=DESCRIPTION, version=0)


def assigned_fsa(edev_id: int, row: Any) -> FunctionSetAssignments:
    """An operator FSA as `edev_id` sees it, under its number for it."""
    return _fsa(edev_id, row.number, row.programs, mrid=row.mrid, description=row.description,
                version=row.version)


def function_set_assignments_list(
    edev_id: int, items: Sequence[FunctionSetAssignments], all_: int, poll_rate: int
) -> FunctionSetAssignmentsList:
    """A page of `edev_id`'s assignments out of `all_`."""
    return FunctionSetAssignmentsList(
        href=uris.href(uris.FSA_LIST, edev_id=edev_id),
        subscribable=SUBSCRIBABLE,
        all=all_,
        results=len(items),
        poll_rate=poll_rate,
        function_set_assignments=list(items),
    )
