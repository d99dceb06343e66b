"""DER program function set (`derp`), as a device sees it, and the operator's side of it.

A device reaches its DER programs through its FunctionSetAssignments. Each one's DERControlList
holds the events that apply to that device (program-wide or its own), each with the EventStatus
computed at `now` by server/sep2/events.py; the ActiveDERControlList holds those active at `now`.
Documents that depend on `now` say until when they stay true (`Expiring`), so a cache can keep
them exactly that long.

Operators create DER programs, set their members and default control, create events for all
members or for some, and cancel events. Nothing is ever deleted or edited in place: a newer
overlapping event supersedes, a cancellation is recorded.

How rows look on the wire is server.services.sep2.mappers.derp's business.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from server.db import derp as store
from server.db import fsa as fsa_store
from server.db.repo import Reader
from server.scope import Scope
from server.sep2 import events
from server.sep2.codec import DecodeError
from server.sep2.types import CHILD, ELEM, BoolType, IntType, StringType
from server.sep2.derp import DefaultDERControl, DERControlBase, DERProgram, DERProgramList
from server.sep2.identity import new_mrid
from server.sep2.paging import Page
from server.services import outbox
from server.services.errors import Invalid, NotFound, check_text
from server.services.sep2 import fsa as fsa_service
from server.services.sep2.mappers import dc as dc_mapper
from server.services.sep2.mappers import derp as mapper

# CSIP: devices answer received (01) and specific responses (02).
RESPONSE_REQUIRED = "03"
MAX_EVENT_SECONDS = 7 * 86_400
MAX_LEAD_SECONDS = 366 * 86_400


@dataclass(frozen=True, slots=True)
class Expiring:
    """A document that is only true until `until` (UTC seconds), e.g. an event's status."""

    model: Any
    until: int | None


# --------------------------------------------------------------------------------- device side


def _der_program(db: Reader, scope: Scope, edev_id: int, derp_id: int) -> Any:
    row = fsa_store.der_program_reached(db, scope, edev_id, derp_id)  # membership or an FSA
    if row is None:
        raise NotFound("no such DERProgram for this EndDevice")
    return row


def der_program_list(db: Reader, scope: Scope, edev_id: int, fsa_id: int, page: Page, poll_rate: int) -> DERProgramList:
    """The DER programs one of a device's FunctionSetAssignments leads it to (FSA 1: its
    memberships; others: the operator FSA's DER programs), by primacy."""
    rows = fsa_service.der_programs_of_fsa(db, scope, edev_id, fsa_id)
    shown = rows[page.start : page.start + page.limit]
    return mapper.der_program_list(edev_id, fsa_id, shown, len(rows), poll_rate)


def der_program(db: Reader, scope: Scope, edev_id: int, derp_id: int) -> DERProgram:
    return mapper.der_program(edev_id, _der_program(db, scope, edev_id, derp_id))


def _evaluated(db: Reader, program_id: int, edev_id: int, now: int) -> tuple[list[tuple[Any, events.EventState]], int | None]:
    """The listed events at `now` with their states, in list order, and when that next changes."""
    grace = events.LIST_GRACE_SECONDS
    rows = list(store.current_events(db, program_id, edev_id, since=now - grace, now=now))
    if rows:
        # A newer event that has already ended may still have superseded a listed one.
        earliest = min(r.start for r in rows)
        if earliest < now:
            rows = list(store.current_events(db, program_id, edev_id, since=earliest, now=now))
    target = frozenset({str(edev_id)})
    evs = {
        r.mrid: events.Event(
            mrid=r.mrid,
            program=str(program_id),
            creation_time=r.creation_time,
            start=r.start,
            duration=r.duration,
            controls=frozenset(r.controls.split()),
            targets=target,
            cancelled_at=r.cancelled_at,
            cancel_randomized=r.cancel_randomized,
        )
        for r in rows
    }
    states = events.states(list(evs.values()), now, grace=grace)
    listed = [(r, states[r.mrid]) for r in rows if r.mrid in states and states[r.mrid].listed]
    listed.sort(key=lambda pair: events.list_order(evs[pair[0].mrid]))
    moments = [
        t
        for r in rows
        for t in (r.start, r.start + r.duration, r.start + r.duration + grace,
                  max(r.start, r.creation_time), r.cancelled_at or 0)
        if t > now
    ]
    return listed, min(moments) if moments else None


def control_list(db: Reader, scope: Scope, edev_id: int, derp_id: int, page: Page, now: int, *, active_only: bool = False) -> Expiring:
    _der_program(db, scope, edev_id, derp_id)
    listed, until = _evaluated(db, derp_id, edev_id, now)
    if active_only:  # the grace after an end keeps an event listed, never active
        listed = [(r, s) for r, s in listed if s.status is events.Status.ACTIVE and now < r.start + r.duration]
    shown = listed[page.start : page.start + page.limit]
    return Expiring(mapper.der_control_list(edev_id, derp_id, shown, len(listed), active_only=active_only), until)


def control(db: Reader, scope: Scope, edev_id: int, derp_id: int, derc_id: int, now: int) -> Expiring:
    _der_program(db, scope, edev_id, derp_id)
    listed, until = _evaluated(db, derp_id, edev_id, now)
    for row, state in listed:
        if row.id == derc_id:
            return Expiring(mapper.der_control(edev_id, derp_id, row, state), until)
    raise NotFound("no such DERControl (or it has ended)")


def default_control(db: Reader, scope: Scope, edev_id: int, derp_id: int) -> DefaultDERControl:
    row = _der_program(db, scope, edev_id, derp_id)
    if not row.default_base:
        return mapper.default_der_control(edev_id, _Unset(row.id, default_mrid_of(row),
                                                          default_base=mapper.der_control_base_xml(DERControlBase())))
    return mapper.default_der_control(edev_id, row)


@dataclass(frozen=True, slots=True)
class _Unset:
    """The DefaultDERControl of a program nobody set one for: empty (the device keeps its own
    settings), version 0, under the mRID the program's default will keep (`default_mrid_of`).
    Served rather than 404 so a client can subscribe to it before an operator sets it."""

    id: int
    default_mrid: str
    default_version: int = 0
    default_base: str = ""
    default_settings: str | None = None


def default_mrid_of(row: Any) -> str:
    """The DefaultDERControl's mRID: the stored one, or — before the first is set — one derived
    from the program's mRID (the same PEN), so it does not change when an operator sets it."""
    if row.default_mrid:
        return str(row.default_mrid)
    digest = hashlib.sha256(f"dderc:{row.mrid}".encode()).hexdigest().upper()
    return digest[:24] + str(row.mrid)[-8:]


# ------------------------------------------------------------------------------- operator side

# Every DERControlBase field that is not a curve link (those are server.services.sep2.dc's), by
# its 2030.5 name: values (booleans, integers in their schema type) and objects (opModTargetW,
# opModFixedPFInjectW …) whose own fields are named the same way.
_VALUE_MODES: dict[str, Any] = {
    f.metadata["xml"]: f for f in dataclasses.fields(DERControlBase) if f.metadata["kind"] in (ELEM, CHILD)
}


def _wire_value(xtype: Any, value: Any, name: str) -> Any:
    """An operator's JSON value for a simple schema type; Invalid naming the field otherwise."""
    if isinstance(xtype, BoolType):
        if not isinstance(value, bool):
            raise Invalid(f"{name} must be true or false")
        return value
    if isinstance(xtype, IntType):
        if isinstance(value, bool) or not isinstance(value, int):
            raise Invalid(f"{name} must be an integer ({xtype.name}: {xtype.lo}…{xtype.hi})")
        if not xtype.lo <= value <= xtype.hi:
            raise Invalid(f"{name} out of range: {value} is outside {xtype.name} ({xtype.lo}…{xtype.hi})")
        return value
    if isinstance(xtype, StringType):
        return check_text(value, name, xtype.max_len)
    raise Invalid(f"{name} cannot be set")  # no other simple type occurs in these documents


def json_fields(model: type, spec: dict[str, Any], path: str = "", *, check_required: bool = True) -> dict[str, Any]:
    """The dataclass fields of `model` (ELEM and CHILD kinds) from a JSON object keyed by their
    2030.5 names, each checked against its schema type; errors name the field (`path.name`).
    The caller refuses keys `model` does not have."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(model):
        key, kind = f.metadata["xml"], f.metadata["kind"]
        name = f"{path}.{key}" if path else key
        if key not in spec or kind not in (ELEM, CHILD):
            if check_required and f.metadata.get("required") and kind in (ELEM, CHILD):
                raise Invalid(f"{name} is required")
            continue
        value = spec[key]
        if kind == ELEM:
            out[f.name] = _wire_value(f.metadata["type"], value, name)
            continue
        sub = f.metadata["type"]
        keys = [g.metadata["xml"] for g in dataclasses.fields(sub)]
        if not isinstance(value, dict):
            raise Invalid(f"{name} must be an object with {', '.join(keys)}")
        unknown = sorted(set(value) - set(keys))
        if unknown:
            raise Invalid(f"{name}: unknown field(s) {', '.join(unknown)} (allowed: {', '.join(keys)})")
        out[f.name] = sub(**json_fields(sub, value, name))
    return out


def control_base(spec: Any) -> DERControlBase:
    """A DERControlBase from an operator's JSON object keyed by the 2030.5 names, every field of
    the 2018 schema settable, each checked against its schema type (errors name the field).

    Values: opModConnect, opModEnergize (booleans); opModFixedW (SignedPerCent, hundredths of a
    percent), opModMaxLimW (PerCent), rampTms (UInt16, hundredths of a second). Objects:
    opModTargetW, opModTargetVar ({"multiplier", "value"}: value × 10^multiplier W or var),
    opModFixedPFAbsorbW, opModFixedPFInjectW ({"displacement", "excitation", "multiplier"}),
    opModFixedVar ({"refType", "value"}), opModFreqDroop ({"dBOF", "dBUF", "kOF", "kUF",
    "openLoopTms"}). Curve-linked modes (opModVoltVar, opModFreqWatt, the trip curves …) name a
    DER curve of the program: server.services.sep2.dc."""
    if not isinstance(spec, dict) or not spec:
        raise Invalid("'control' must be an object with at least one mode, e.g. {\"opModFixedW\": 5000}")
    unknown = set(spec) - set(_VALUE_MODES) - dc_mapper.CURVE_MODES
    if unknown:
        raise Invalid(f"unsupported control modes: {', '.join(sorted(unknown))}")
    fields: dict[str, Any] = json_fields(DERControlBase, spec)
    try:  # curve-linked modes (opModVoltVar …) name a curve; services.sep2.dc.link_curves resolves it
        fields.update(dc_mapper.curve_fields(spec))
    except ValueError as exc:
        raise Invalid(str(exc)) from None
    base = DERControlBase(**fields)
    try:  # the wire types are the judges of ranges (SignedPerCent, PerCent, Int16, UInt16…)
        return mapper.parse_der_control_base(mapper.der_control_base_xml(base))
    except (DecodeError, ValueError) as exc:
        raise Invalid(f"control out of range: {exc}") from None


def _check_curves_linked(base: DERControlBase) -> None:
    """Refuse a control whose curve links were not resolved (server.services.sep2.dc.linked_control)."""
    unresolved = dc_mapper.unresolved_curve_links(base)
    if unresolved:
        raise Invalid(f"{', '.join(unresolved)}: curve links must be resolved for their DER program first")


def create_der_program(session: Session, *, description: str | None, primacy: int, now: int, pen: int = 0) -> store.DerProgram:
    if isinstance(primacy, bool) or not isinstance(primacy, int) or not 0 <= primacy <= 255:
        raise Invalid("primacy must be 0…255 (lower wins across DER programs)")
    description = check_text(description, "description", 32)  # String32
    return store.add_der_program(
        session,
        store.DerProgram(mrid=new_mrid(pen), description=description, primacy=primacy, version=0,
                         created_time=now, default_version=0),
    )


def der_program_row(session: Session, program_id: int) -> store.DerProgram:
    """The stored DER program, for the operator (no scope); NotFound when there is none."""
    row = store.get_der_program(session, program_id)
    if row is None:
        raise NotFound(f"no DER program {program_id}")
    return row


# DefaultDERControl's own fields beside its DERControlBase, by their 2030.5 names (mRID and
# version are the server's): description, setESDelay … setESRandomDelay, setGradW, setSoftGradW.
DEFAULT_SETTINGS: frozenset[str] = frozenset(
    f.metadata["xml"] for f in dataclasses.fields(DefaultDERControl)
    if f.metadata["kind"] == ELEM and f.metadata["xml"] not in ("mRID", "version")
)


def default_settings(spec: Any) -> dict[str, Any]:
    """An operator's DefaultDERControl fields (keys of DEFAULT_SETTINGS), each checked against its
    schema type (setGradW UInt16 in hundredths of a percent of setMaxW per second, setESDelay
    UInt32 in hundredths of a second, setESHighVolt Int16 in hundredths of a percent of nominal
    voltage, …); errors name the field. Returns them by 2030.5 name, in schema order."""
    if spec is None:
        return {}
    if not isinstance(spec, dict):
        raise Invalid(f"the DefaultDERControl fields must be an object with some of {', '.join(sorted(DEFAULT_SETTINGS))}")
    unknown = sorted(set(spec) - DEFAULT_SETTINGS)
    if unknown:
        raise Invalid(f"unknown DefaultDERControl field(s): {', '.join(unknown)} (allowed: {', '.join(sorted(DEFAULT_SETTINGS))})")
    values = json_fields(DefaultDERControl, {k: v for k, v in spec.items() if v is not None}, check_required=False)
    names = {f.name: f.metadata["xml"] for f in dataclasses.fields(DefaultDERControl)}
    return {names[k]: v for k, v in values.items() if k != "der_control_base"}


def set_default_control(session: Session, program_id: int, spec: Any, *, settings: Any = None, pen: int = 0) -> None:
    """Set or change a DER program's DefaultDERControl as a whole: its DERControlBase (`spec`: an
    operator's control object, or a DERControlBase already linked by services.sep2.dc) and its own
    fields (`settings`, see `default_settings`; absent ones are cleared). Same mRID, version
    bumped on every change."""
    row = der_program_row(session, program_id)
    base = spec if isinstance(spec, DERControlBase) else control_base(spec)  # linked: services.sep2.dc
    _check_curves_linked(base)
    values = default_settings(settings)
    text = json.dumps(values, separators=(",", ":")) if values else None
    xml = mapper.der_control_base_xml(base)
    if xml == row.default_base and text == row.default_settings:
        return
    if row.default_mrid is None:  # the empty default (version 0) is replaced: same mRID, version 1
        row.default_mrid = default_mrid_of(row)
    row.default_version = (row.default_version + 1) % 65536
    row.default_base = xml
    row.default_settings = text
    outbox.record(session, outbox.DefaultControlChanged(program_id), time.time())


def add_members(session: Session, program_id: int, device_ids: Sequence[int]) -> int:
    der_program_row(session, program_id)
    _check_devices(session, device_ids)
    added = store.add_members(session, program_id, device_ids)
    if added:
        outbox.record(session, outbox.AssignmentsChanged(tuple(device_ids)), time.time())
    return added


def remove_members(session: Session, program_id: int, device_ids: Sequence[int]) -> int:
    der_program_row(session, program_id)
    removed = store.remove_members(session, program_id, device_ids)
    if removed:
        outbox.record(session, outbox.AssignmentsChanged(tuple(device_ids)), time.time())
    return removed


def is_device_id(value: Any) -> bool:
    """Whether `value` can name an EndDevice: a positive integer the database's INTEGER holds."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**31


def _check_devices(session: Session, device_ids: Sequence[int]) -> None:
    if not isinstance(device_ids, list) or not all(is_device_id(d) for d in device_ids):
        raise Invalid("device ids must be a list of EndDevice ids")
    missing = set(device_ids) - store.existing_device_ids(session, device_ids)
    if missing:
        raise NotFound(f"no EndDevice {', '.join(str(d) for d in sorted(missing))}")


def create_events(
    session: Session,
    program_id: int,
    *,
    start: int,
    duration: int,
    controls: Sequence[tuple[int | None, DERControlBase]],
    now: int,
    description: str | None = None,
    randomize_start: int | None = None,
    randomize_duration: int | None = None,
    pen: int = 0,
) -> list[store.DerEvent]:
    """New events of one DER program and interval: one per (device or None = every member, control).

    The scheduler publishes one per device with its own setpoint; an operator may publish one for
    all members. Devices must be members of the DER program."""
    der_program_row(session, program_id)
    for name, value in (("start", start), ("duration", duration)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0 or value >= 2**62:
            raise Invalid(f"{name} must be a non-negative number of seconds")
    if not 0 < duration <= MAX_EVENT_SECONDS:
        raise Invalid(f"duration must be 1…{MAX_EVENT_SECONDS} seconds")
    if start + duration <= now:
        raise Invalid("the event would already be over")
    for name, value in (("randomizeStart", randomize_start), ("randomizeDuration", randomize_duration)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not -3600 <= value <= 3600):
            raise Invalid(f"{name} must be -3600…3600 seconds")
    description = check_text(description, "description", 32)  # String32
    if start > now + MAX_LEAD_SECONDS:
        raise Invalid("start must be within a year from now")
    targeted = [d for d, _ in controls if d is not None]
    if targeted:
        members = set(store.member_ids(session, program_id))
        outside = set(targeted) - members
        if outside:  # a device an operator FSA leads to the program is addressed too
            outside = sorted(outside - fsa_store.fsa_follower_ids(session, program_id))
        if outside:
            raise Invalid(f"devices {outside[:5]} are not members of DER program {program_id} "
                          "(nor assigned it by a FunctionSetAssignments)")
    for _, base in controls:
        _check_curves_linked(base)
    rows = [
        store.DerEvent(
            mrid=new_mrid(pen), program_id=program_id, device_id=device_id, description=description,
            creation_time=now, start=start, duration=duration, randomize_start=randomize_start,
            randomize_duration=randomize_duration, response_required=RESPONSE_REQUIRED,
            base=mapper.der_control_base_xml(base), controls=mapper.control_modes(base), cancelled_at=None,
            cancel_randomized=False,
        )
        for device_id, base in controls
    ]
    store.add_events(session, rows)
    # an operator's events: no flexibility program (0); for every member: device 0
    outbox.record_controls(session, outbox.ControlCreated, 0, [r.device_id or 0 for r in rows],
                           [r.mrid for r in rows], now)
    return rows


def cancel_event(session: Session, mrid: str, now: int, *, randomized: bool = False) -> store.DerEvent:
    """Cancel an event (status 2, or 3 with randomization); it stays listed until its end."""
    row = store.get_event_by_mrid(session, mrid.upper())
    if row is None:
        raise NotFound(f"no event {mrid}")
    if row.cancelled_at is not None:
        return row  # cancelling twice changes nothing
    if row.start + row.duration <= now:
        raise Invalid("the event is already over")
    row.cancelled_at = now
    row.cancel_randomized = randomized
    outbox.record(session, outbox.ControlCancelled(0, row.device_id or 0, row.mrid), now)
    return row


def event_view(row: store.DerEvent, now: int) -> dict[str, Any]:
    """An event for operators: what, when, for whom, cancelled or not (status is per device)."""
    return {
        "mrid": row.mrid,
        "program_id": row.program_id,
        "device_id": row.device_id,
        "description": row.description,
        "creation_time": row.creation_time,
        "start": row.start,
        "duration": row.duration,
        "controls": row.controls.split(),
        "cancelled_at": row.cancelled_at,
        "ended": row.start + row.duration <= now,
    }
