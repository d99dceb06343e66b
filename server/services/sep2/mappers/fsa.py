"""Function set assignments (`fsa`): a device's one FunctionSetAssignments and its list."""

from __future__ import annotations

from collections.abc import Sequence

from server.sep2 import uris
from server.sep2.fsa import FunctionSetAssignments, FunctionSetAssignmentsList
from server.sep2.types import ListLinkValue

DESCRIPTION = "utility programs"


def function_set_assignments(edev_id: int, fsa_id: int, der_programs: int) -> FunctionSetAssignments:
    """The assignments of `edev_id`: its `der_programs` DER programs, the response sets, the time."""
    ids = {"edev_id": edev_id, "fsa_id": fsa_id}
    return FunctionSetAssignments(
        href=uris.href(uris.FSA, **ids),
        der_program_list_link=ListLinkValue(uris.href(uris.DERP_LIST, **ids), der_programs),
        response_set_list_link=ListLinkValue(uris.RSPS_LIST),
        time_link=uris.TM,
        # Stable per device: "F5A" marks it, then the device id, then PEN 0 (no registered PEN).
        mrid=f"00000F5A{edev_id:016X}00000000",
        description=DESCRIPTION,
        version=0,
    )


def function_set_assignments_list(
    edev_id: int, items: Sequence[FunctionSetAssignments], all_: int, poll_rate: int
) -> FunctionSetAssignmentsList:
    """A page of `edev_id`'s assignments out of `all_`."""
    return FunctionSetAssignmentsList(
        href=uris.href(uris.FSA_LIST, edev_id=edev_id),
        all=all_,
        results=len(items),
        poll_rate=poll_rate,
        function_set_assignments=list(items),
    )
