"""The operator's view of DER programs and events, shared by the admin API and the CLI.

Input is what an operator typed or posted (JSON values); output is plain JSON-ready dicts. The
rules themselves (ranges, membership, what an event is) live in server.services.sep2.derp; this module
parses, refuses unknown or ambiguous input before anything is stored, and reports.

Times: events take `start` as Int64 UTC seconds or an ISO-8601 string *with* a UTC offset
("2026-11-22T16:00:00-08:00", "…Z"); a time without an offset is refused rather than guessed.

Response summary of an event: for each device, its *latest* Response counts under that status's
name (a device that said "received" and then "completed" counts once, as completed). The headline
keys `received`, `started`, `completed`, `opted_out` and `rejected` are always present; `rejected`
adds up the three rejection codes, each of which is also given by its own name when non-zero, as is
every other status. `responded` is how many devices answered at all, `devices_targeted` how many
devices the event reaches now (every device a program-wide event reaches: the members and the
devices of FunctionSetAssignments that assign the DER program; 1 or 0 for an event addressed to
one device, depending on whether it still reaches the program).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy.orm import Session

from server.db import derp as store
from server.db import fsa as fsa_store
from server.db import repo, rsps
from server.db.models import Device
from server.scope import Scope
from server.sep2.derp import DERControlBase
from server.services.errors import Invalid, NotFound, no_unknown_keys
from server.services.sep2 import connection_points, dc, derp
from server.services.sep2.mappers.derp import default_settings_json, der_control_base_json

# Response status codes (2030.5 Table 27, server/sep2/rsps.py) by the names operators read.
RESPONSE_STATUS_NAMES: Mapping[int, str] = {
    1: "received",
    2: "started",
    3: "completed",
    4: "opted_out",
    5: "opted_in",
    6: "cancelled",
    7: "superseded",
    8: "partially_opted_out",
    9: "partially_opted_in",
    10: "completed_without_participation",
    11: "acknowledged",
    12: "cannot_be_displayed",
    13: "aborted_by_server_event",
    14: "aborted_by_program_event",
    252: "rejected_not_applicable",
    253: "rejected_invalid",
    254: "rejected_late",
}
REJECTED = frozenset({252, 253, 254})
HEADLINE = ("received", "started", "completed", "opted_out", "rejected")
MAX_DEVICE_IDS = 10_000

_DER_PROGRAM_KEYS = frozenset({"description", "primacy", "default_control"})
_EVENT_KEYS = frozenset(
    {"start", "duration", "control", "device_ids", "connection_point_id", "description", "randomize_start",
     "randomize_duration"}
)
_EXAMPLE_TIME = "2026-11-22T16:00:00-08:00"
_EPOCH = re.compile(r"[0-9]{1,19}")
_MRID = re.compile(r"[0-9A-Fa-f]{1,64}")
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")


# ------------------------------------------------------------------------------------ parsing


def parse_time(value: Any, name: str = "start") -> int:
    """UTC seconds from epoch seconds (an integer) or an ISO-8601 string with a UTC offset."""
    if isinstance(value, bool):
        raise Invalid(f"{name} must be epoch seconds or an ISO-8601 time such as {_EXAMPLE_TIME}")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value.strip()
        if _EPOCH.fullmatch(text):
            return int(text)
        try:
            moment = dt.datetime.fromisoformat(text) if len(text) <= 40 else None
        except ValueError:
            moment = None
        if moment is None:
            raise Invalid(
                f"{name} {value[:40]!r} is neither epoch seconds nor an ISO-8601 time such as {_EXAMPLE_TIME}"
            )
        if moment.tzinfo is None or moment.utcoffset() is None:
            raise Invalid(
                f"{name} {value!r} has no UTC offset, so it could be any time zone's; "
                f"write it with one, e.g. {_EXAMPLE_TIME} or 2026-11-23T00:00:00Z"
            )
        try:
            return int(moment.timestamp())
        except (OverflowError, ValueError):
            raise Invalid(f"{name} {value!r} is out of range") from None
    raise Invalid(f"{name} must be epoch seconds or an ISO-8601 time such as {_EXAMPLE_TIME}")


def device_ids(value: Any, name: str = "device_ids") -> list[int]:
    """A non-empty list of EndDevice ids, duplicates dropped, order kept."""
    if not isinstance(value, list) or not value:
        raise Invalid(f"'{name}' must be a non-empty list of EndDevice ids, e.g. [1, 2]")
    if len(value) > MAX_DEVICE_IDS:
        raise Invalid(f"at most {MAX_DEVICE_IDS} device ids at once")
    if not all(derp.is_device_id(d) for d in value):
        raise Invalid(f"'{name}' must hold EndDevice ids (positive integers)")
    return list(dict.fromkeys(value))


# -------------------------------------------------------------------------------- DER programs


def der_program_view(session: Session, row: store.DerProgram, *, members: bool = False) -> dict[str, Any]:
    ids = store.member_ids(session, row.id)
    view: dict[str, Any] = {
        "id": row.id,
        "mrid": row.mrid,
        "description": row.description,
        "primacy": row.primacy,
        "version": row.version,
        "created_time": row.created_time,
        "member_count": len(ids),
        "default_control": der_control_base_json(row.default_base),
        "default_settings": default_settings_json(row.default_settings) if row.default_base else None,
        "default_control_mrid": row.default_mrid,
        "default_control_version": row.default_version if row.default_base else None,
    }
    if members:
        view["members"] = ids
    return view


def _description(body: Mapping[str, Any]) -> Any:
    """The optional description, refused when it holds control characters (PostgreSQL cannot
    store NUL, and no device should have to show a line feed); length is derp's to check."""
    value = body.get("description")
    if isinstance(value, str) and _CONTROL_CHARACTERS.search(value):
        raise Invalid("description must be printable text (no control characters)")
    return value


def create_der_program(session: Session, body: Mapping[str, Any], now: int) -> dict[str, Any]:
    """{description?, primacy, default_control?} → the new DER program's view."""
    no_unknown_keys(body, _DER_PROGRAM_KEYS, "a DER program")
    if "primacy" not in body:
        raise Invalid("'primacy' is required: 0…255, lower wins when a device's programs conflict")
    row = derp.create_der_program(session, description=_description(body), primacy=body["primacy"], now=now)
    if body.get("default_control") is not None:
        _set_default(session, row.id, body["default_control"])
    return der_program_view(session, row, members=True)


def list_der_programs(session: Session) -> list[dict[str, Any]]:
    return [der_program_view(session, row) for row in store.list_der_programs(session)]


def get_der_program(session: Session, program_id: int) -> dict[str, Any]:
    return der_program_view(session, derp.der_program_row(session, program_id), members=True)


def _set_default(session: Session, program_id: int, body: Any) -> None:
    """The DefaultDERControl as a whole from an operator's object: the control itself
    ({"opModMaxLimW": 8000}) or {"control": {…}}, with DefaultDERControl's own fields beside it
    ({"opModMaxLimW": 8000, "setGradW": 500, "setESDelay": 30000}: derp.DEFAULT_SETTINGS). With
    only those fields, the DERControlBase is empty (the schema allows it)."""
    settings: dict[str, Any] = {}
    if isinstance(body, dict):
        settings = {k: v for k, v in body.items() if k in derp.DEFAULT_SETTINGS}
        body = {k: v for k, v in body.items() if k not in derp.DEFAULT_SETTINGS}
        if set(body) == {"control"}:
            body = body["control"]
    derp.der_program_row(session, program_id)
    if settings and body == {}:
        derp.set_default_control(session, program_id, DERControlBase(), settings=settings)
    else:
        derp.set_default_control(session, program_id, dc.linked_control(session, program_id, body), settings=settings)


def set_default_control(session: Session, program_id: int, body: Any) -> dict[str, Any]:
    """See `_set_default`; it replaces the previous default as a whole."""
    _set_default(session, program_id, body)
    return der_program_view(session, derp.der_program_row(session, program_id))


def targets(session: Session, body: Mapping[str, Any]) -> Any:
    """The devices an operator names: `device_ids`, or `connection_point_id` — every device at that
    CSIP-AUS connection point (the site's NMI), so a site is addressed as one."""
    if not isinstance(body, Mapping):
        raise Invalid("the body must be a JSON object")
    if body.get("connection_point_id") is not None:
        if body.get("device_ids") is not None:
            raise Invalid("give 'device_ids' or 'connection_point_id', not both")
        return connection_points.devices_at(session, body["connection_point_id"])
    return body.get("device_ids")


def add_members(session: Session, program_id: int, ids: Any) -> int:
    derp.der_program_row(session, program_id)
    return derp.add_members(session, program_id, device_ids(ids))


def remove_members(session: Session, program_id: int, ids: Any) -> int:
    derp.der_program_row(session, program_id)
    return derp.remove_members(session, program_id, device_ids(ids))


def list_members(session: Session, program_id: int, start: int = 0, limit: int = 100) -> dict[str, Any]:
    """The member devices of a DER program (id order), as the device views of the admin API."""
    derp.der_program_row(session, program_id)
    ids = store.member_ids(session, program_id)
    shown: list[dict[str, Any]] = []
    for device_id in ids[start : start + limit]:
        device = repo.get_device(session, Scope.operator(), device_id)
        if device is not None:
            shown.append(_device_brief(device))
    return {"all": len(ids), "members": shown}


def _device_brief(device: Device) -> dict[str, Any]:
    return {"id": device.id, "lfdi": device.lfdi, "sfdi": device.sfdi, "label": device.label,
            "enabled": device.enabled}


# -------------------------------------------------------------------------------------- events


def summary(session: Session, event_id: int, devices_targeted: int) -> dict[str, int]:
    """The event's responses by status name (see the module docstring)."""
    counts = rsps.summary(session, event_id)
    result: dict[str, int] = {"devices_targeted": devices_targeted, "responded": sum(counts.values())}
    result.update(dict.fromkeys(HEADLINE, 0))
    for status, count in sorted(counts.items()):
        name = RESPONSE_STATUS_NAMES.get(status, f"status_{status}")
        result[name] = result.get(name, 0) + count
        if status in REJECTED:
            result["rejected"] += count
    return result


def _state(row: store.DerEvent, now: int) -> str:
    if row.start + row.duration <= now:
        return "ended"
    if row.cancelled_at is not None:
        return "cancelled"
    return "active" if row.start <= now else "scheduled"


def event_view(session: Session, row: store.DerEvent, now: int, members: Sequence[int] | None = None) -> dict[str, Any]:
    """What, when, for whom, its state at `now` and the devices' responses so far."""
    if members is None:
        members = fsa_store.follower_ids(session, row.program_id)
    if row.device_id is None:
        targeted = len(members)
    else:
        targeted = 1 if row.device_id in set(members) else 0
    view = derp.event_view(row, now)
    view.update(
        end=row.start + row.duration,
        state=_state(row, now),
        control=der_control_base_json(row.base),
        randomize_start=row.randomize_start,
        randomize_duration=row.randomize_duration,
        cancel_randomized=row.cancel_randomized if row.cancelled_at is not None else None,
        responses=summary(session, row.id, targeted),
    )
    return view


def create_events(session: Session, program_id: int, body: Mapping[str, Any], now: int) -> list[dict[str, Any]]:
    """{start, duration, control, device_ids? | connection_point_id?, description?, randomize_start?,
    randomize_duration?}.

    Without device_ids: one event every member of the program follows (members added later too).
    With device_ids: one event per device, each with the same control; with connection_point_id,
    the same for every device at that site (CSIP-AUS: a DOE such as {"opModExpLimW": {"value":
    15, "multiplier": 2}} for the site's NMI). The control takes every DERControlBase field by its
    name, the csipaus limits opModImpLimW, opModExpLimW, opModGenLimW, opModLoadLimW included."""
    no_unknown_keys(body, _EVENT_KEYS, "an event")
    derp.der_program_row(session, program_id)
    for key in ("start", "duration", "control"):
        if key not in body:
            raise Invalid(
                "'start', 'duration' and 'control' are required, e.g. "
                f'{{"start": "{_EXAMPLE_TIME}", "duration": 3600, "control": {{"opModFixedW": 5000}}}}'
            )
    start = parse_time(body["start"])
    duration = body["duration"]
    if isinstance(duration, bool) or not isinstance(duration, int):
        raise Invalid("duration must be a whole number of seconds")
    base = dc.linked_control(session, program_id, body["control"])  # curve links resolved
    if "connection_point_id" in body:
        addressed: list[int | None] = list(device_ids(targets(session, body)))
    elif "device_ids" in body:
        if body["device_ids"] is None:
            raise Invalid("'device_ids' must be a list; leave it out to address every member")
        addressed = list(device_ids(body["device_ids"]))
    else:
        addressed = [None]
    rows = derp.create_events(
        session,
        program_id,
        start=start,
        duration=duration,
        controls=[(t, base) for t in addressed],
        now=now,
        description=_description(body),
        randomize_start=body.get("randomize_start"),
        randomize_duration=body.get("randomize_duration"),
    )
    members = fsa_store.follower_ids(session, program_id)
    return [event_view(session, r, now, members) for r in rows]


def list_events(
    session: Session, program_id: int, now: int, *, include_ended: bool = False, start: int = 0, limit: int = 100
) -> dict[str, Any]:
    """A DER program's events by start (those not yet over, or all), with their response summaries."""
    derp.der_program_row(session, program_id)
    rows = store.der_program_events(session, program_id, 0 if include_ended else now)
    members = fsa_store.follower_ids(session, program_id)
    return {"all": len(rows), "events": [event_view(session, r, now, members) for r in rows[start : start + limit]]}


def _event(session: Session, mrid: Any) -> store.DerEvent:
    valid = isinstance(mrid, str) and _MRID.fullmatch(mrid)
    row = store.get_event_by_mrid(session, mrid.upper()) if valid else None
    if row is None:
        raise NotFound(f"no event {str(mrid)[:64]!r}")
    return row


def get_event(session: Session, mrid: str, now: int) -> dict[str, Any]:
    return event_view(session, _event(session, mrid), now)


def cancel_event(session: Session, mrid: str, now: int, body: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """{randomized?: bool}: cancel (status 2), or with randomization (3) so devices spread their
    return over the event's randomization window. Cancelling twice changes nothing."""
    body = body or {}
    no_unknown_keys(body, {"randomized"}, "a cancellation")
    randomized = body.get("randomized", False)
    if not isinstance(randomized, bool):
        raise Invalid("'randomized' must be true or false")
    _event(session, mrid)
    row = derp.cancel_event(session, mrid, now, randomized=randomized)
    return event_view(session, row, now)
