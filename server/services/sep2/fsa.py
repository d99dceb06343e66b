"""Function set assignments (`fsa`): the one FunctionSetAssignments of each EndDevice, which
leads it to the DER programs it is a member of (membership is the operator's, via programs)."""

from __future__ import annotations

from server.db import derp as store
from server.db import repo
from server.db.repo import Reader
from server.scope import Scope
from server.sep2 import uris
from server.sep2.fsa import FunctionSetAssignments, FunctionSetAssignmentsList
from server.sep2.paging import Page
from server.sep2.types import ListLinkValue
from server.services.errors import NotFound

FSA_ID = 1


def _fsa(db: Reader, scope: Scope, edev_id: int) -> FunctionSetAssignments:
    if repo.device_row(db, scope, edev_id) is None:
        raise NotFound("no such EndDevice")
    programs = store.programs_of_device(db, scope, edev_id)
    ids = {"edev_id": edev_id, "fsa_id": FSA_ID}
    return FunctionSetAssignments(
        href=uris.href(uris.FSA, **ids),
        der_program_list_link=ListLinkValue(uris.href(uris.DERP_LIST, **ids), len(programs)),
        response_set_list_link=ListLinkValue(uris.RSPS_LIST),
        time_link=uris.TM,
        # Stable per device: "F5A" marks it, then the device id, then PEN 0 (no registered PEN).
        mrid=f"00000F5A{edev_id:016X}00000000",
        description="utility programs",
        version=0,
    )


def fsa_list(db: Reader, scope: Scope, edev_id: int, page: Page, poll_rate: int) -> FunctionSetAssignmentsList:
    items = [_fsa(db, scope, edev_id)][page.start : page.start + page.limit]
    return FunctionSetAssignmentsList(
        href=uris.href(uris.FSA_LIST, edev_id=edev_id),
        all=1,
        results=len(items),
        poll_rate=poll_rate,
        function_set_assignments=items,
    )


def fsa(db: Reader, scope: Scope, edev_id: int, fsa_id: int) -> FunctionSetAssignments:
    if fsa_id != FSA_ID:
        raise NotFound("no such FunctionSetAssignments")
    return _fsa(db, scope, edev_id)
