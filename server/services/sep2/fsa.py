"""Function set assignments (`fsa`): which DER programs a device is led to, as the device sees
them, and the operator's side that makes them.

A device lists FunctionSetAssignments under numbers of its own (server.db.fsa): number 1 holds the
DER programs it is a member of (membership: operators' members, the flexibility scheduler's
enrollments) and is listed when it has any, or when the device has no other FSA; 2, 3, … are the
operator's FSAs assigned to it, each with its own mRID, description, version and DER programs.
An operator FSA is assigned to one device or a group; it keeps one mRID and one version whoever
sees it, and its version is bumped whenever its description or its DER programs change.

Operators create, list, show and delete FSAs, assign them to devices and take them away, and
assign DER programs to them (admin API `/fsas`, `derflex fsa`). Every check happens before
anything is written, so a refused request changes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy.orm import Session

from server.db import derp as derp_store
from server.db import fsa as store
from server.db.repo import Reader
from server.scope import Scope
from server.sep2.fsa import FunctionSetAssignments, FunctionSetAssignmentsList
from server.sep2.identity import new_mrid
from server.sep2.paging import Page
from server.services import outbox
from server.services.errors import Invalid, NotFound, check_text, no_unknown_keys
from server.services.sep2.edev import visible_device
from server.services.sep2.mappers import fsa as mapper

MEMBERSHIP_FSA = store.MEMBERSHIP_FSA
MAX_IDS = 10_000


# --------------------------------------------------------------------------------- device side


def _listed(db: Reader, scope: Scope, edev_id: int) -> list[FunctionSetAssignments]:
    """Every FSA the visible device lists, by number."""
    visible_device(db, scope, edev_id)
    items = []
    if store.shows_membership_fsa(db, scope, edev_id):
        programs = derp_store.der_programs_of_device(db, scope, edev_id)
        items.append(mapper.membership_fsa(edev_id, len(programs)))
    items.extend(mapper.assigned_fsa(edev_id, row) for row in store.assigned_fsas(db, scope, edev_id))
    return items


def fsa_list(db: Reader, scope: Scope, edev_id: int, page: Page, poll_rate: int) -> FunctionSetAssignmentsList:
    """The device's FunctionSetAssignmentsList, ordered by its numbers (`s`, `l`; `a` ignored:
    FSAs are not time-ordered)."""
    items = _listed(db, scope, edev_id)
    return mapper.function_set_assignments_list(
        edev_id, items[page.start : page.start + page.limit], len(items), poll_rate
    )


def fsa(db: Reader, scope: Scope, edev_id: int, fsa_id: int) -> FunctionSetAssignments:
    visible_device(db, scope, edev_id)
    if fsa_id == MEMBERSHIP_FSA:
        if not store.shows_membership_fsa(db, scope, edev_id):
            raise NotFound("no such FunctionSetAssignments")
        return mapper.membership_fsa(edev_id, len(derp_store.der_programs_of_device(db, scope, edev_id)))
    row = store.assigned_fsa(db, scope, edev_id, fsa_id)
    if row is None:
        raise NotFound("no such FunctionSetAssignments")
    return mapper.assigned_fsa(edev_id, row)


def der_programs_of_fsa(db: Reader, scope: Scope, edev_id: int, fsa_id: int) -> Sequence[Any]:
    """The DER program rows FSA `fsa_id` of the visible device leads to, by primacy; NotFound
    when the device does not list that FSA."""
    visible_device(db, scope, edev_id)
    if fsa_id == MEMBERSHIP_FSA:
        if not store.shows_membership_fsa(db, scope, edev_id):
            raise NotFound("no such FunctionSetAssignments")
        return derp_store.der_programs_of_device(db, scope, edev_id)
    if store.assigned_fsa(db, scope, edev_id, fsa_id) is None:
        raise NotFound("no such FunctionSetAssignments")
    return store.der_programs_of_fsa(db, scope, edev_id, fsa_id)


# ------------------------------------------------------------------------------- operator side

_FSA_KEYS = frozenset({"description", "device_ids", "der_program_ids"})


def _ids(value: Any, name: str, *, allow_empty: bool = False) -> list[int]:
    """A list of positive ids, duplicates dropped, order kept; the error names the field."""
    if not isinstance(value, list) or (not value and not allow_empty):
        raise Invalid(f"'{name}' must be a {'' if allow_empty else 'non-empty '}list of ids, e.g. [1, 2]")
    if len(value) > MAX_IDS:
        raise Invalid(f"'{name}': at most {MAX_IDS} ids at once")
    if not all(isinstance(v, int) and not isinstance(v, bool) and 0 < v < 2**31 for v in value):
        raise Invalid(f"'{name}' must hold ids (positive integers)")
    return list(dict.fromkeys(value))


def _check_devices(session: Session, ids: Sequence[int]) -> None:
    missing = set(ids) - derp_store.existing_device_ids(session, ids)
    if missing:
        raise NotFound(f"device_ids: no EndDevice {', '.join(str(d) for d in sorted(missing)[:10])}")


def _check_programs(session: Session, ids: Sequence[int]) -> None:
    missing = sorted(p for p in ids if derp_store.get_der_program(session, p) is None)
    if missing:
        raise NotFound(f"der_program_ids: no DER program {', '.join(str(p) for p in missing[:10])}")


def _description(value: Any) -> str | None:
    return check_text(value, "description", 32)  # String32


def fsa_row(session: Session, fsa_id: int) -> store.FunctionSetAssignment:
    row = store.get_fsa(session, fsa_id) if isinstance(fsa_id, int) and 0 < fsa_id < 2**31 else None
    if row is None:
        raise NotFound(f"no FunctionSetAssignments {fsa_id}")
    return row


def _bump(row: store.FunctionSetAssignment) -> None:
    row.version = (row.version + 1) % 65536  # VersionType is a UInt16


def fsa_view(session: Session, row: store.FunctionSetAssignment) -> dict[str, Any]:
    """An FSA for operators: identity, its DER programs, and each device with its number for it."""
    devices = store.fsa_devices(session, row.id)
    return {
        "id": row.id,
        "mrid": row.mrid,
        "description": row.description,
        "version": row.version,
        "created_time": row.created_time,
        "der_program_ids": store.fsa_program_ids(session, row.id),
        "device_count": len(devices),
        "devices": [{"device_id": d, "number": n, "href": f"/edev/{d}/fsa/{n}"} for d, n in devices],
    }


def create_fsa(session: Session, body: Mapping[str, Any], now: int, *, pen: int = 0) -> dict[str, Any]:
    """{description?, device_ids, der_program_ids?} → the new FSA's view. One FSA for the group:
    each device lists it under its next number (2, 3, …)."""
    no_unknown_keys(body, _FSA_KEYS, "a FunctionSetAssignments")
    if "device_ids" not in body:
        raise Invalid("'device_ids' is required: the EndDevices that get this FunctionSetAssignments")
    devices = _ids(body["device_ids"], "device_ids")
    programs = _ids(body.get("der_program_ids", []), "der_program_ids", allow_empty=True)
    description = _description(body.get("description"))
    _check_devices(session, devices)
    _check_programs(session, programs)
    row = store.add_fsa(session, store.FunctionSetAssignment(
        mrid=new_mrid(pen), description=description, version=0, created_time=now))
    store.add_fsa_programs(session, row.id, programs)
    store.assign_devices(session, row.id, devices)
    _changed(session, devices)
    return fsa_view(session, row)


def _changed(session: Session, device_ids: Sequence[int]) -> None:
    """What these devices' FunctionSetAssignments lead to changed: subscribers hear of it."""
    if device_ids:
        outbox.record(session, outbox.AssignmentsChanged(tuple(device_ids)), time.time())


def _followers(session: Session, fsa_id: int) -> list[int]:
    return [d for d, _ in store.fsa_devices(session, fsa_id)]


def list_fsas(session: Session, device_id: int | None = None) -> list[dict[str, Any]]:
    """Every operator FSA, or those assigned to `device_id`."""
    return [fsa_view(session, row) for row in store.list_fsas(session, device_id)]


def get_fsa(session: Session, fsa_id: int) -> dict[str, Any]:
    return fsa_view(session, fsa_row(session, fsa_id))


def update_fsa(session: Session, fsa_id: int, body: Mapping[str, Any]) -> dict[str, Any]:
    """{description}: a new description (version bumped when it changes)."""
    no_unknown_keys(body, {"description"}, "a FunctionSetAssignments change")
    row = fsa_row(session, fsa_id)
    description = _description(body.get("description"))
    if description != row.description:
        row.description = description
        _bump(row)
        _changed(session, _followers(session, fsa_id))
    return fsa_view(session, row)


def delete_fsa(session: Session, fsa_id: int) -> None:
    """Delete the FSA: its devices no longer list it (nor reach its DER programs through it)."""
    row = fsa_row(session, fsa_id)
    _changed(session, _followers(session, fsa_id))
    store.delete_fsa(session, row)


def assign_der_programs(session: Session, fsa_id: int, ids: Any) -> int:
    row = fsa_row(session, fsa_id)
    programs = _ids(ids, "der_program_ids")
    _check_programs(session, programs)
    added = store.add_fsa_programs(session, row.id, programs)
    if added:
        _bump(row)
        _changed(session, _followers(session, fsa_id))
    return added


def unassign_der_programs(session: Session, fsa_id: int, ids: Any) -> int:
    row = fsa_row(session, fsa_id)
    removed = store.remove_fsa_programs(session, row.id, _ids(ids, "der_program_ids"))
    if removed:
        _bump(row)
        _changed(session, _followers(session, fsa_id))
    return removed


def assign_devices(session: Session, fsa_id: int, ids: Any) -> int:
    row = fsa_row(session, fsa_id)
    devices = _ids(ids, "device_ids")
    _check_devices(session, devices)
    added = store.assign_devices(session, row.id, devices)
    _changed(session, devices if added else [])
    return added


def unassign_devices(session: Session, fsa_id: int, ids: Any) -> int:
    row = fsa_row(session, fsa_id)
    devices = _ids(ids, "device_ids")
    removed = store.unassign_devices(session, row.id, devices)
    _changed(session, devices if removed else [])
    return removed
