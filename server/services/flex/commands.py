"""The flexibility context's commands: what an operator (admin API, CLI) or a BAP (Beckn) asks it to
do, as frozen values that were checked once, when they were made.

A command is built from its wire in one place: admin JSON by the `parse_*` functions here (the admin
API and the CLI), Beckn by server.services.bpp.orders straight from its own parsed fulfillments.
What a parser can tell from the input alone (types, shapes, texts, a curve's points, an objective)
it checks; what only the database can tell (the device exists, the grid node is in the program's
area, an offer is within the device's ratings) the command's handler checks when it runs
(server.services.flex.handlers.execute(session, command, now) → a typed result of
server.services.flex.results).

Every refusal is a `CommandError` (server.services.flex.command_errors) naming the field at fault,
dotted in the command's admin JSON form ("offer.power[2]", "grid_node", "requested_kw"). An
enrollment's offer is a typed `Offer` (server.services.flex.offers).

Programs have two states, active and cancelled (server.db.flex): a program cannot be paused, so
there is no PauseProgram or ResumeProgram; an enrollment can (ChangeEnrollmentState).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from enum import Enum
from types import MappingProxyType
from typing import Any, Final

from programs import enrollment as lifecycle
from programs.kinds import DeviceKind
from programs.model import Program, ProgramError
from server.services.errors import check_text
from server.services.flex.command_errors import InvalidCommand, about, known_keys
from server.services.flex.offers import Offer, parse_offer

# ----------------------------------------------------------------------------------- programs


@dataclass(frozen=True)
class AuthorProgram:
    program: Program


@dataclass(frozen=True)
class UpdateProgram:
    """Change some fields of a program; the result is checked as a whole against the stored one."""

    program_id: int
    changes: Mapping[str, Any]


@dataclass(frozen=True)
class CancelProgram:
    program_id: int


_PROGRAM_FIELDS: Final = frozenset(f.name for f in fields(Program))


def _program_field(message: str) -> str | None:
    """The field of a ProgramError message ("window.tz: …" → "window.tz"; "program: …" → None)."""
    head = message.split(":", 1)[0].strip()
    return None if head == "program" or " " in head else head


def _too_large(value: Any) -> bool:
    """Whether a JSON value holds an integer no float can hold."""
    if isinstance(value, Mapping):
        return any(_too_large(v) for v in value.values())
    if isinstance(value, list):
        return any(_too_large(v) for v in value)
    if isinstance(value, int):
        try:
            float(value)
        except OverflowError:
            return True
    return False


def parse_program(body: Any) -> Program:
    """The domain's Program, and texts the database and 2030.5 can carry (no control characters)."""
    try:
        program = Program.from_dict(body)
    except ProgramError as exc:
        raise InvalidCommand(_program_field(exc.errors[0]) if exc.errors else None, str(exc)) from None  # "invalid program: …"
    except ValueError as exc:
        raise InvalidCommand(None, f"invalid program: {exc}") from None
    except OverflowError:  # float() of an integer beyond the float range
        where = [k for k, v in body.items() if _too_large(v)]
        raise InvalidCommand(where[0] if where else None, f"invalid program: {', '.join(where) or 'a field'}: a number "
                             "is too large (the largest is about 1.8e308)") from None
    except OSError:  # ZoneInfo on a name no file system takes (too long, say)
        raise InvalidCommand("window.tz", "invalid program: window.tz: unknown time zone (use an IANA name such as "
                             "'America/New_York')") from None
    with about("name"):
        check_text(program.name, "name", 100)
    with about("description"):
        check_text(program.description, "description", 32)
    for i, node in enumerate(program.grid_node_ids):
        with about(f"grid_node_ids[{i}]"):
            check_text(node, "grid_node_ids: a grid node name", 64)
    return program


def parse_author_program(body: Any) -> AuthorProgram:
    return AuthorProgram(parse_program(body))


def parse_update_program(program_id: int, body: Any) -> UpdateProgram:
    """{fields to change}: known program fields only; checked as a whole with the stored program."""
    if not isinstance(body, Mapping) or not body:
        raise InvalidCommand(None, "send a JSON object with the fields to change, e.g. {\"requested_kw\": 400}")
    unknown = sorted(k for k in body if k not in _PROGRAM_FIELDS)
    if unknown:
        raise InvalidCommand(str(unknown[0]), "invalid program: " + "; ".join(f"{k}: unknown field" for k in unknown))
    return UpdateProgram(program_id, MappingProxyType(dict(body)))


# --------------------------------------------------------------------------------- grid nodes


class Keep(Enum):
    """A grid node field not given: it keeps its value (or its default, for a new node)."""

    KEEP = "keep"


KEEP: Final = Keep.KEEP
NODE_NUMBERS: Final = ("load_percent", "adder_per_percent", "congestion_multiplier",
                       "max_forward_kw", "max_reverse_kw", "current_load_kw")
NODE_OPTIONAL: Final = frozenset({"max_forward_kw", "max_reverse_kw", "current_load_kw"})  # null: no limit / unknown
_NODE_KEYS: Final = {"name", "parent", *NODE_NUMBERS}


@dataclass(frozen=True)
class PutGridNode:
    """Create the grid node `name`, or change the fields given of it (KEEP: not given)."""

    name: str
    parent: str | None | Keep = KEEP
    load_percent: float | Keep = KEEP
    adder_per_percent: float | Keep = KEEP
    congestion_multiplier: float | Keep = KEEP
    max_forward_kw: float | None | Keep = KEEP
    max_reverse_kw: float | None | Keep = KEEP
    current_load_kw: float | None | Keep = KEEP


@dataclass(frozen=True)
class DeleteGridNode:
    name: str


def _node_number(key: str, value: Any) -> float | None:
    if value is None:
        if key in NODE_OPTIONAL:
            return None
        raise InvalidCommand(key, f"{key} must be a number")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidCommand(key, f"{key} must be a number")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise InvalidCommand(key, f"{key} must be a finite number")
    return number


def _node_name(value: Any, field: str) -> str:
    with about(field):
        name = check_text(value, field, 64)
    if not name or not name.strip():
        raise InvalidCommand(field, f"{field} is required: the operator's id of the node, e.g. \"feeder-12\"")
    return name


def parse_put_grid_node(body: Any) -> PutGridNode:
    """{name, parent?, load_percent?, adder_per_percent?, congestion_multiplier?, max_forward_kw?,
    max_reverse_kw?, current_load_kw?}; parent null makes it a top-level node."""
    body = known_keys(body, _NODE_KEYS, "a grid node")
    name = _node_name(body.get("name"), "name")
    given: dict[str, Any] = {k: _node_number(k, body[k]) for k in NODE_NUMBERS if k in body}
    if "parent" in body:
        given["parent"] = None if body["parent"] is None else _node_name(body["parent"], "parent")
    return PutGridNode(name, **given)


def parse_delete_grid_node(name: Any) -> DeleteGridNode:
    with about("name"):
        return DeleteGridNode(check_text(name, "name", 64) or "")


# -------------------------------------------------------------------------------- enrollments

_LFDI = re.compile(r"[0-9A-Fa-f]{40}")
_ENROLL_KEYS: Final = {"device_id", "lfdi", "customer", "kind", "grid_node", "offer", "state"}


@dataclass(frozen=True)
class DeviceRef:
    """An EndDevice by its id or by its LFDI (upper case), exactly one."""

    device_id: int | None = None
    lfdi: str | None = None

    @property
    def field(self) -> str:
        return "device_id" if self.device_id is not None else "lfdi"


@dataclass(frozen=True)
class Enroll:
    """A device joins a program. kind None: the kind its DER reported; offer None: the default curve
    from its ratings; state PENDING (confirmed later) or ACTIVE."""

    program_id: int
    device: DeviceRef
    customer: str
    kind: DeviceKind | None = None
    grid_node: str | None = None
    offer: Offer | None = None
    state: lifecycle.State = lifecycle.State.ACTIVE
    source: str = "operator"
    external_ref: str | None = None


@dataclass(frozen=True)
class ChangeEnrollmentState:
    """confirm | pause | resume | cancel | end, as the state table (programs.enrollment) allows."""

    program_id: int
    enrollment_id: int
    event: lifecycle.Event


@dataclass(frozen=True)
class ChangeOffer:
    """Replace an enrollment's offer (None: back to the default curve from its ratings)."""

    program_id: int
    enrollment_id: int
    offer: Offer | None


def _device_id(value: Any) -> DeviceRef:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2**31:
        raise InvalidCommand("device_id", "device_id must be an EndDevice id (a positive integer)")
    return DeviceRef(device_id=value)


def _lfdi(value: Any) -> DeviceRef:
    if not isinstance(value, str) or not _LFDI.fullmatch(value):
        raise InvalidCommand("lfdi", "lfdi must be the device's 40 hex digit LFDI")
    return DeviceRef(lfdi=value.upper())


def _one_device() -> InvalidCommand:
    return InvalidCommand("device_id", "give the device as exactly one of device_id (EndDevice id) or lfdi "
                          "(40 hex digits)")


def _customer(value: Any) -> str:
    with about("customer"):
        customer = check_text(value, "customer", 100)
    if not customer:
        raise InvalidCommand("customer", "customer is required: who enrolls the device (a name or account id)")
    return customer


def _kind(value: Any) -> DeviceKind | None:
    if value is None:
        return None
    try:
        return DeviceKind(value)
    except ValueError:
        raise InvalidCommand("kind", f"kind must be one of {', '.join(k.value for k in DeviceKind)}") from None


def _start_state(value: Any) -> lifecycle.State:
    """The state an enrollment is made in (programs.enrollment.START_STATES)."""
    try:
        state = lifecycle.State(value) if isinstance(value, str) else None
    except ValueError:
        state = None
    if state in lifecycle.START_STATES:
        return state
    raise InvalidCommand("state", "state must be " + " or ".join(f'"{s}"' for s in sorted(lifecycle.START_STATES)))


def _grid_node(value: Any) -> str | None:
    if value is None:
        return None
    with about("grid_node"):
        return check_text(value, "grid_node", 64) or ""


def parse_enroll(program_id: int, body: Any) -> Enroll:
    """{device_id | lfdi, customer, kind?, grid_node?, offer?, state?} (server.services.flex.enrollments)."""
    body = known_keys(body, _ENROLL_KEYS, "an enrollment")
    if ("device_id" in body) == ("lfdi" in body):
        raise _one_device()
    device = _device_id(body["device_id"]) if "device_id" in body else _lfdi(body["lfdi"])
    return Enroll(
        program_id=program_id, device=device, customer=_customer(body.get("customer")), kind=_kind(body.get("kind")),
        grid_node=_grid_node(body.get("grid_node")), offer=parse_offer(body.get("offer")),
        state=_start_state(body.get("state", "active")),
    )


def parse_enrollment_event(program_id: int, enrollment_id: int, event: Any) -> ChangeEnrollmentState:
    try:
        return ChangeEnrollmentState(program_id, enrollment_id, lifecycle.Event(event))
    except ValueError:
        raise InvalidCommand("event", f"unknown enrollment action {str(event)[:20]!r}: one of "
                             f"{', '.join(e.value for e in lifecycle.Event)}") from None


def parse_change_offer(program_id: int, enrollment_id: int, body: Any) -> ChangeOffer:
    """{"offer": {…} | null}."""
    if not isinstance(body, Mapping) or set(body) != {"offer"}:
        raise InvalidCommand(None, "send {\"offer\": {...}} or {\"offer\": null} (back to the default curve)")
    return ChangeOffer(program_id, enrollment_id, parse_offer(body["offer"]))


# ------------------------------------------------------------------------------------ windows


@dataclass(frozen=True)
class CancelWindow:
    """Cancel one window of a program (by its key, the window's local date) with its events."""

    program_id: int
    window_key: str


def parse_cancel_window(program_id: int, window_key: Any) -> CancelWindow:
    with about("key"):
        return CancelWindow(program_id, check_text(window_key, "window key", 32) or "")


Command = (AuthorProgram | UpdateProgram | CancelProgram | PutGridNode | DeleteGridNode | Enroll
           | ChangeEnrollmentState | ChangeOffer | CancelWindow)
