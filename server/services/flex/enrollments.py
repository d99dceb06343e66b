"""Enrollments: a device joins a program (and its DERProgram) with a kind, a grid node and an offer;
pause, resume, cancel and end it by its state table (programs.enrollment); change its offer.

The handlers take the typed commands of server.services.flex.commands (Enroll,
ChangeEnrollmentState, ChangeOffer), whose input was checked when they were made, check what only
the database can tell (the program takes enrollments, the device is registered and eligible, its
grid node lies in the program's area, it can honour its offer) and give typed results
(server.services.flex.results); a refusal is a CommandError naming the field.

An Enroll is checked (`check_enroll`, reads only) and then stored (`store_enrollment`), so a caller
enrolling several devices at once (a Beckn confirm) checks every one before it stores any.
`enroll`, `enrollment_event` and `update_offer` take admin JSON, for scripts and tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from sqlalchemy.orm import Session
from programs import enrollment as lifecycle
from programs.curves import check_within_ratings, objective_curve
from programs.kinds import DeviceKind
from programs.model import Program
from programs.windows import next_window
from server.db import derp as der_store
from server.db import flex as store
from server.db.models import Device
from server.services import clock, outbox
from server.services.flex.cancelling import cancel_device_events
from server.services.flex.command_errors import CommandConflict, CommandNotFound, InvalidCommand
from server.services.flex.commands import (
    ChangeEnrollmentState,
    ChangeOffer,
    DeviceRef,
    Enroll,
    parse_enroll,
    parse_enrollment_event,
)
from server.services.flex.offers import Offer, offer_error, parse_offer
from server.services.flex.gathering import ratings_of, reported_kind
from server.services.flex.grid_nodes import grid_tree
from server.services.flex.results import EnrollmentResult
from server.services.flex.stored import MAX_PAGE, program_of, program_row


def _device(session: Session, ref: DeviceRef) -> Device:
    if ref.device_id is not None:
        device = session.get(Device, ref.device_id)
    else:
        device = session.query(Device).filter(Device.lfdi == ref.lfdi).first()
    if device is None:
        raise CommandNotFound(ref.field, "no such EndDevice: register it first")
    return device


def _kind(session: Session, given: DeviceKind | None, device: Device, program: Program) -> DeviceKind:
    kind = given if given is not None else reported_kind(session, device.id)
    if kind is None:
        raise InvalidCommand("kind", "kind is required for this device (it has not reported a DERType that says): "
                             + ", ".join(k.value for k in DeviceKind))
    if kind not in program.eligible_kinds:
        raise InvalidCommand("kind", f"a {kind.value} is not eligible for this program "
                             f"(eligible: {', '.join(sorted(k.value for k in program.eligible_kinds))})")
    return kind


def _grid_node(session: Session, name: str | None, program: Program) -> store.GridNode | None:
    if name is None:
        if program.grid_node_ids:
            raise InvalidCommand("grid_node", f"grid_node is required: this program covers "
                                 f"{', '.join(program.grid_node_ids)}")
        return None
    node = store.grid_node_by_name(session, name)
    if node is None:
        raise InvalidCommand("grid_node", f"grid_node: no grid node {name!r}")
    if program.grid_node_ids:
        tree, _ = grid_tree(session)
        if not any(a in program.grid_node_ids for a in tree.path(node.name)):
            raise InvalidCommand("grid_node", f"grid node {name!r} is outside this program's area "
                                 f"({', '.join(program.grid_node_ids)})")
    return node


def _check_offer(session: Session, offer: Offer | None, kind: DeviceKind, device_id: int, program: Program,
                 now: int) -> None:
    """Whether the device can honour its offer (its ratings; an objective over the program's next
    window), so a curve it cannot follow is refused at enrollment, not at clearing time. The offer's
    shape was checked when the command was made."""
    if offer is None:
        return
    ratings = ratings_of(session, device_id, kind)
    try:
        if offer.intervals is not None:
            for k, curve in enumerate(offer.intervals):
                try:
                    check_within_ratings(curve, ratings)
                except ValueError as exc:
                    raise InvalidCommand(f"offer.intervals[{k}]", f"offer.intervals[{k}]: {exc}") from None
        elif offer.power is not None:
            check_within_ratings(offer.power, ratings)
        else:
            start, end = _sample_window(program, now)
            objective_curve(offer.objective, ratings, clock.utc(start), clock.utc(end), clock.utc(now))
    except (ValueError, OverflowError) as exc:
        raise offer_error(exc) from None


def _sample_window(program: Program, now: int) -> tuple[int, int]:
    w = next_window(program.window, datetime.fromtimestamp(now, timezone.utc))
    if w is None:
        return now, now + 3600
    return int(w.start.timestamp()), int(w.end.timestamp())


@dataclass(frozen=True)
class CheckedEnrollment:
    """An Enroll that passed every check, with what the checks found: what `store_enrollment` writes."""

    command: Enroll
    row: store.FlexProgram
    device_id: int
    kind: DeviceKind
    grid_node_id: int | None
    replaces: store.Enrollment | None  # the device's closed enrollment in the program, made afresh


def check_enroll(session: Session, command: Enroll, now: int) -> CheckedEnrollment:
    """Every check of an Enroll against the database, writing nothing."""
    row = program_row(session, command.program_id)
    if row.state != "active":
        raise CommandConflict("program_id", f"program {command.program_id} is {row.state}: it takes no enrollments")
    program = program_of(row)
    device = _device(session, command.device)
    existing = store.enrollment_of(session, command.program_id, device.id)
    if existing is not None and not lifecycle.is_closed(existing.state):
        raise CommandConflict(command.device.field, f"device {device.id} is enrolled in program "
                              f"{command.program_id} already (enrollment {existing.id})")
    kind = _kind(session, command.kind, device, program)
    node = _grid_node(session, command.grid_node, program)
    _check_offer(session, command.offer, kind, device.id, program, now)
    return CheckedEnrollment(command, row, device.id, kind, node.id if node else None, existing)


def store_enrollment(session: Session, checked: CheckedEnrollment, now: int) -> EnrollmentResult:
    """Write a checked Enroll: the enrollment, made pending and confirmed at once when it asks to be
    active (then the device joins the program's DERProgram)."""
    command = checked.command
    if checked.replaces is not None:  # re-enrolling after a cancellation: a fresh start on the same row
        session.delete(checked.replaces)
        session.flush()
    enr = store.Enrollment(
        program_id=command.program_id, device_id=checked.device_id, customer=command.customer,
        device_kind=checked.kind.value, grid_node_id=checked.grid_node_id,
        offer=command.offer.text if command.offer is not None else None, state=lifecycle.State.PENDING.value,
        source=command.source, external_ref=command.external_ref, created_time=now, updated_time=now,
    )
    session.add(enr)
    session.flush()
    if command.state is not lifecycle.State.PENDING:
        _apply(session, checked.row, enr, lifecycle.Event.CONFIRM, now)
    return enrollment_result(session, enr)


def enroll_device(session: Session, command: Enroll, now: int) -> EnrollmentResult:
    """The Enroll command: checked, then stored."""
    return store_enrollment(session, check_enroll(session, command, now), now)


def enroll(session: Session, program_id: int, body: Any, now: int) -> dict[str, Any]:
    """Enroll a device from admin JSON (for scripts and tests; transports execute Enroll):
    {device_id | lfdi, customer, kind?, grid_node?, offer?, state?}.

    offer: {"power": [[price, kW], …]} (the seed's bid curve: kW negative = consumption),
    {"objective": {…}} (programs.curves), or absent (a default curve from the device's ratings).
    state: "active" (default) or "pending" (confirmed later)."""
    return enroll_device(session, parse_enroll(program_id, body), now).view()


def _enrollment(session: Session, program_id: int, enrollment_id: int) -> store.Enrollment:
    enr = session.get(store.Enrollment, enrollment_id)
    if enr is None or enr.program_id != program_id:
        raise CommandNotFound("enrollment_id", f"no enrollment {enrollment_id} in program {program_id}")
    return enr


def _apply(session: Session, row: store.FlexProgram, enr: store.Enrollment, event: lifecycle.Event, now: int) -> None:
    try:
        new = lifecycle.transition(enr.state, event)
    except ValueError as exc:
        raise CommandConflict("event", str(exc)) from None
    enr.state = str(new)
    enr.updated_time = now
    if lifecycle.is_member(new):
        der_store.add_members(session, row.der_program_id, [enr.device_id])
    else:
        cancel_device_events(session, row, enr.device_id, now)
        der_store.remove_members(session, row.der_program_id, [enr.device_id])
    outbox.record(session, outbox.EnrollmentChanged(row.id, enr.id, enr.device_id, enr.state), now)
    outbox.record(session, outbox.AssignmentsChanged((enr.device_id,)), now)


def change_state(session: Session, command: ChangeEnrollmentState, now: int) -> EnrollmentResult:
    """The ChangeEnrollmentState command, as the enrollment state table allows (else a conflict)."""
    row = program_row(session, command.program_id)
    enr = _enrollment(session, command.program_id, command.enrollment_id)
    _apply(session, row, enr, command.event, now)
    return enrollment_result(session, enr)


def enrollment_event(session: Session, program_id: int, enrollment_id: int, event: str, now: int) -> dict[str, Any]:
    """confirm | pause | resume | cancel | end (for scripts and tests; transports execute
    ChangeEnrollmentState)."""
    return change_state(session, parse_enrollment_event(program_id, enrollment_id, event), now).view()


def change_offer(session: Session, command: ChangeOffer, now: int) -> EnrollmentResult:
    """The ChangeOffer command: a live enrollment's offer replaced, if its device can honour it."""
    row = program_row(session, command.program_id)
    enr = _enrollment(session, command.program_id, command.enrollment_id)
    if lifecycle.is_closed(enr.state):
        raise CommandConflict("enrollment_id", f"enrollment {command.enrollment_id} is {enr.state}")
    _check_offer(session, command.offer, DeviceKind(enr.device_kind), enr.device_id, program_of(row), now)
    enr.offer = command.offer.text if command.offer is not None else None
    enr.updated_time = now
    return enrollment_result(session, enr)


def update_offer(session: Session, program_id: int, enrollment_id: int, offer: Any, now: int) -> dict[str, Any]:
    """Replace an enrollment's offer (None: back to the default curve from ratings; for scripts and
    tests, transports execute ChangeOffer)."""
    return change_offer(session, ChangeOffer(program_id, enrollment_id, parse_offer(offer)), now).view()


def enrollment_result(session: Session, enr: store.Enrollment) -> EnrollmentResult:
    node = session.get(store.GridNode, enr.grid_node_id) if enr.grid_node_id else None
    return EnrollmentResult(
        id=enr.id, program_id=enr.program_id, device_id=enr.device_id, customer=enr.customer, kind=enr.device_kind,
        grid_node=node.name if node else None, offer=enr.offer, state=enr.state, source=enr.source,
        external_ref=enr.external_ref, created=enr.created_time, updated=enr.updated_time,
    )


def list_enrollments(session: Session, program_id: int, start: int = 0, limit: int = 100) -> dict[str, Any]:
    program_row(session, program_id)
    rows = store.enrollments(session, program_id)
    limit = max(0, min(limit, MAX_PAGE))
    return {"all": len(rows), "enrollments": [enrollment_result(session, e).view() for e in rows[start:start + limit]]}
