"""Responses function set (`rsps`): devices acknowledge events at the event's replyTo.

One ResponseSet per DER program (`/rsps/{program}`), its ResponseList the replyTo of the DER
program's events. A Response is accepted when (IEEE 2030.5 §12.1.3 "Response", CSIP):
- endDeviceLFDI names a device the caller may act for: its own, or one its aggregator manages
  (otherwise 400, reasonCode 1 — identity is never taken from a body);
- subject is the mRID of an event of this DER program that applies to that device (all members,
  or that device) and existed when posted (otherwise 400);
- status is present and one of the defined codes (otherwise 400).
Answers 201 with the new Response's Location. Reads show only the caller's devices' responses.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from server.db import fsa as fsa_store
from server.db import repo
from server.db import rsps as store
from server.db.derp import DerEvent
from server.db.models import Device
from server.db.repo import Reader
from server.scope import Scope
from server.sep2.paging import Page
from server.sep2.rsps import RESPONSE_STATUSES, Response, ResponseList, ResponseSet, ResponseSetList
from server.services.errors import Invalid, NotFound
from server.services.sep2.mappers import rsps as mapper


def _visible_device_ids(db: Reader, scope: Scope) -> list[int]:
    return [row.id for row in repo.list_devices(db, scope, 0, 2**31 - 1)]


def _der_programs(db: Reader, scope: Scope) -> list[Any]:
    """The DER programs of the devices the client may see, by id."""
    seen: dict[int, Any] = {}
    for device_id in _visible_device_ids(db, scope):
        for row in fsa_store.der_programs_reached(db, scope, device_id):  # membership or an FSA
            seen.setdefault(row.id, row)
    return sorted(seen.values(), key=lambda r: r.id)


def response_set_list(db: Reader, scope: Scope, page: Page, poll_rate: int) -> ResponseSetList:
    rows = _der_programs(db, scope)
    return mapper.response_set_list(rows[page.start : page.start + page.limit], len(rows), poll_rate)


def _der_program(db: Reader, scope: Scope, program_id: int) -> Any:
    for row in _der_programs(db, scope):
        if row.id == program_id:
            return row
    raise NotFound("no such ResponseSet")


def response_set(db: Reader, scope: Scope, program_id: int) -> ResponseSet:
    return mapper.response_set(_der_program(db, scope, program_id))


def response_list(db: Reader, scope: Scope, program_id: int, page: Page) -> ResponseList:
    _der_program(db, scope, program_id)
    total, rows = store.for_devices(db, program_id, _visible_device_ids(db, scope), page.start, page.limit)
    return mapper.response_list(program_id, rows, total)


def response(db: Reader, scope: Scope, program_id: int, response_id: int) -> Response:
    _der_program(db, scope, program_id)
    _total, rows = store.for_devices(db, program_id, _visible_device_ids(db, scope), 0, 2**31 - 1)
    for row in rows:
        if row.id == response_id:
            return mapper.response(program_id, row)
    raise NotFound("no such Response")


def post_response(session: Session, scope: Scope, program_id: int, posted: Response, now: int) -> int:
    """Record a device's Response; returns its id."""
    device = session.scalars(select(Device).where(Device.lfdi == posted.end_device_lfdi.upper())).first()
    if device is None or repo.device_row(session, scope, device.id) is None:
        raise Invalid("endDeviceLFDI is not a device this client may answer for")
    if posted.status is None or posted.status not in RESPONSE_STATUSES:
        raise Invalid(f"status must be one of {sorted(RESPONSE_STATUSES)}")
    event = session.scalars(
        select(DerEvent).where(
            DerEvent.mrid == posted.subject.upper(),
            DerEvent.program_id == program_id,
            DerEvent.creation_time <= now,
            (DerEvent.device_id.is_(None)) | (DerEvent.device_id == device.id),
        )
    ).first()
    member = fsa_store.reaches(session, program_id, device.id)
    if event is None or not member:
        raise Invalid("subject is not an event of this DER program for that device")
    row = store.add(
        session,
        store.DerResponse(
            event_id=event.id,
            device_id=device.id,
            status=posted.status,
            created_date_time=posted.created_date_time,
            received_time=now,
        ),
    )
    return row.id
