"""Function set assignments (`fsa`): the one FunctionSetAssignments of each EndDevice, which
leads it to the DER programs it is a member of (membership is the operator's, via der_programs)."""

from __future__ import annotations

from server.db import derp as store
from server.db.repo import Reader
from server.scope import Scope
from server.sep2.fsa import FunctionSetAssignments, FunctionSetAssignmentsList
from server.sep2.paging import Page
from server.services.errors import NotFound
from server.services.sep2.edev import visible_device
from server.services.sep2.mappers import fsa as mapper

FSA_ID = 1


def check_fsa_id(fsa_id: int) -> None:
    """Every EndDevice has exactly one FunctionSetAssignments, FSA_ID; any other is not found."""
    if fsa_id != FSA_ID:
        raise NotFound("no such FunctionSetAssignments")


def _fsa(db: Reader, scope: Scope, edev_id: int) -> FunctionSetAssignments:
    visible_device(db, scope, edev_id)
    der_programs = store.der_programs_of_device(db, scope, edev_id)
    return mapper.function_set_assignments(edev_id, FSA_ID, len(der_programs))


def fsa_list(db: Reader, scope: Scope, edev_id: int, page: Page, poll_rate: int) -> FunctionSetAssignmentsList:
    items = [_fsa(db, scope, edev_id)][page.start : page.start + page.limit]
    return mapper.function_set_assignments_list(edev_id, items, 1, poll_rate)


def fsa(db: Reader, scope: Scope, edev_id: int, fsa_id: int) -> FunctionSetAssignments:
    check_fsa_id(fsa_id)
    return _fsa(db, scope, edev_id)
