"""Enrollments: a device joins a program (and its DERProgram) with a kind, a grid node and an offer;
pause, resume, cancel and end it by its state table (programs.enrollment); change its offer."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any
from sqlalchemy.orm import Session
from programs import enrollment as lifecycle
from programs.kinds import DeviceKind
from programs.model import Program
from programs.windows import next_window
from server.db import derp as der_store
from server.db import flex as store
from server.db.models import Device
from server.services import clock
from server.services.errors import Conflict, Invalid, NotFound, check_text, no_unknown_keys
from server.services.flex.cancelling import cancel_device_events
from server.services.flex.gathering import offer_curve, ratings_of, reported_kind
from server.services.flex.grid_nodes import grid_tree
from server.services.flex.stored import MAX_PAGE, program_of, program_row


_LFDI = re.compile(r"[0-9A-Fa-f]{40}")


_ENROLL_KEYS = {"device_id", "lfdi", "customer", "kind", "grid_node", "offer", "state"}


def _device(session: Session, body: Mapping[str, Any]) -> Device:
    if ("device_id" in body) == ("lfdi" in body):
        raise Invalid("give the device as exactly one of device_id (EndDevice id) or lfdi (40 hex digits)")
    if "device_id" in body:
        did = body["device_id"]
        if isinstance(did, bool) or not isinstance(did, int) or not 0 < did < 2**31:
            raise Invalid("device_id must be an EndDevice id (a positive integer)")
        device = session.get(Device, did)
    else:
        lfdi = body["lfdi"]
        if not isinstance(lfdi, str) or not _LFDI.fullmatch(lfdi):
            raise Invalid("lfdi must be the device's 40 hex digit LFDI")
        device = session.query(Device).filter(Device.lfdi == lfdi.upper()).first()
    if device is None:
        raise NotFound("no such EndDevice: register it first")
    return device


def _kind(session: Session, body: Mapping[str, Any], device: Device, program: Program) -> DeviceKind:
    raw = body.get("kind")
    if raw is None:
        kind = reported_kind(session, device.id)
        if kind is None:
            raise Invalid("kind is required for this device (it has not reported a DERType that says): "
                          + ", ".join(k.value for k in DeviceKind))
    else:
        try:
            kind = DeviceKind(raw)
        except ValueError:
            raise Invalid(f"kind must be one of {', '.join(k.value for k in DeviceKind)}") from None
    if kind not in program.eligible_kinds:
        raise Invalid(f"a {kind.value} is not eligible for this program "
                      f"(eligible: {', '.join(sorted(k.value for k in program.eligible_kinds))})")
    return kind


def _grid_node(session: Session, body: Mapping[str, Any], program: Program) -> store.GridNode | None:
    name = body.get("grid_node")
    if name is None:
        if program.grid_node_ids:
            raise Invalid(f"grid_node is required: this program covers {', '.join(program.grid_node_ids)}")
        return None
    node = store.grid_node_by_name(session, check_text(name, "grid_node", 64) or "")
    if node is None:
        raise Invalid(f"grid_node: no grid node {name!r}")
    if program.grid_node_ids:
        tree, _ = grid_tree(session)
        if not any(a in program.grid_node_ids for a in tree.path(node.name)):
            raise Invalid(f"grid node {name!r} is outside this program's area ({', '.join(program.grid_node_ids)})")
    return node


def _offer(session: Session, offer: Any, kind: DeviceKind, device: Device, program: Program, now: int) -> str | None:
    """Check an offer now (so a bad curve is refused at enrollment, not at clearing time)."""
    if offer is None:
        return None
    try:
        offer_curve(offer, kind, ratings_of(session, device.id, kind), program,
                             _sample_window(program, now), now)
    except ValueError as exc:
        raise Invalid(f"offer: {exc}") from None
    except OverflowError:  # an integer beyond the float range
        raise Invalid("offer: a number is too large (the largest is about 1.8e308)") from None
    return json.dumps(offer)


def _sample_window(program: Program, now: int) -> tuple[int, int]:
    w = next_window(program.window, datetime.fromtimestamp(now, timezone.utc))
    if w is None:
        return now, now + 3600
    return int(w.start.timestamp()), int(w.end.timestamp())


def enroll(session: Session, program_id: int, body: Any, now: int, *, source: str = "operator",
           external_ref: str | None = None) -> dict[str, Any]:
    """Enroll a device: {device_id | lfdi, customer, kind?, grid_node?, offer?, state?}.

    offer: {"power": [[price, kW], …]} (the seed's bid curve: kW negative = consumption),
    {"objective": {…}} (programs.curves), or absent (a default curve from the device's ratings).
    state: "active" (default) or "pending" (confirmed later)."""
    no_unknown_keys(body, _ENROLL_KEYS, "an enrollment")
    row = program_row(session, program_id)
    if row.state != "active":
        raise Conflict(f"program {program_id} is {row.state}: it takes no enrollments")
    program = program_of(row)
    device = _device(session, body)
    customer = check_text(body.get("customer"), "customer", 100)
    if not customer:
        raise Invalid("customer is required: who enrolls the device (a name or account id)")
    state = body.get("state", "active")
    if state not in ("active", "pending"):
        raise Invalid("state must be \"active\" or \"pending\"")
    existing = store.enrollment_of(session, program_id, device.id)
    if existing is not None and existing.state not in ("cancelled", "ended"):
        raise Conflict(f"device {device.id} is enrolled in program {program_id} already (enrollment {existing.id})")
    kind = _kind(session, body, device, program)
    node = _grid_node(session, body, program)
    offer = _offer(session, body.get("offer"), kind, device, program, now)
    if existing is not None:  # re-enrolling after a cancellation: a fresh start on the same row
        session.delete(existing)
        session.flush()
    enr = store.Enrollment(
        program_id=program_id, device_id=device.id, customer=customer, device_kind=kind.value,
        grid_node_id=node.id if node else None, offer=offer, state="pending", source=source,
        external_ref=external_ref, created_time=now, updated_time=now,
    )
    session.add(enr)
    session.flush()
    if state == "active":
        _apply(session, row, enr, "confirm", now)
    return enrollment_view(session, enr)


def _enrollment(session: Session, program_id: int, enrollment_id: int) -> store.Enrollment:
    enr = session.get(store.Enrollment, enrollment_id)
    if enr is None or enr.program_id != program_id:
        raise NotFound(f"no enrollment {enrollment_id} in program {program_id}")
    return enr


def _apply(session: Session, row: store.FlexProgram, enr: store.Enrollment, event: str, now: int) -> None:
    try:
        new = lifecycle.transition(enr.state, event)
    except ValueError as exc:
        raise Conflict(str(exc)) from None
    enr.state = str(new)
    enr.updated_time = now
    member = new in (lifecycle.State.ACTIVE, lifecycle.State.PAUSED)
    if member:
        der_store.add_members(session, row.der_program_id, [enr.device_id])
    else:
        cancel_device_events(session, row, enr.device_id, now)
        der_store.remove_members(session, row.der_program_id, [enr.device_id])


def enrollment_event(session: Session, program_id: int, enrollment_id: int, event: str, now: int) -> dict[str, Any]:
    """confirm | pause | resume | cancel | end, as the enrollment state table allows."""
    row = program_row(session, program_id)
    enr = _enrollment(session, program_id, enrollment_id)
    _apply(session, row, enr, event, now)
    return enrollment_view(session, enr)


def update_offer(session: Session, program_id: int, enrollment_id: int, offer: Any, now: int) -> dict[str, Any]:
    """Replace an enrollment's offer (None: back to the default curve from ratings)."""
    row = program_row(session, program_id)
    enr = _enrollment(session, program_id, enrollment_id)
    if enr.state in ("cancelled", "ended"):
        raise Conflict(f"enrollment {enrollment_id} is {enr.state}")
    device = session.get(Device, enr.device_id)
    assert device is not None  # the enrollment goes with its device (ON DELETE CASCADE)
    enr.offer = _offer(session, offer, DeviceKind(enr.device_kind), device, program_of(row), now)
    enr.updated_time = now
    return enrollment_view(session, enr)


def enrollment_view(session: Session, enr: store.Enrollment) -> dict[str, Any]:
    node = session.get(store.GridNode, enr.grid_node_id) if enr.grid_node_id else None
    return {
        "id": enr.id,
        "program_id": enr.program_id,
        "device_id": enr.device_id,
        "customer": enr.customer,
        "kind": enr.device_kind,
        "grid_node": node.name if node else None,
        "offer": json.loads(enr.offer) if enr.offer else None,
        "state": enr.state,
        "source": enr.source,
        "external_ref": enr.external_ref,
        "created": clock.iso(enr.created_time),
        "updated": clock.iso(enr.updated_time),
    }


def list_enrollments(session: Session, program_id: int, start: int = 0, limit: int = 100) -> dict[str, Any]:
    program_row(session, program_id)
    rows = store.enrollments(session, program_id)
    limit = max(0, min(limit, MAX_PAGE))
    return {"all": len(rows), "enrollments": [enrollment_view(session, e) for e in rows[start:start + limit]]}
