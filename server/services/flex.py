"""Authoring flexibility programs: programs, grid nodes and enrollments, for the admin API, the CLI
and (enrollments) the Beckn facade.

Input is what an operator typed or posted (JSON values); output is JSON-ready dicts. The rules of
what a program, a window rule, a grid tree or a bid curve may be are the domain's (`programs/`);
this module turns its errors into `Invalid` and keeps the 2030.5 side in step:

* each program publishes into a DERProgram of its own (same primacy; description from the
  program), created with it;
* a device is a member of that DERProgram while its enrollment is active or paused (so a paused
  device still hears of cancellations); when the enrollment is cancelled or ended its events that
  have not ended are cancelled and it leaves the program;
* every change that a clearing sees (program, enrollment, curve, grid node) moves an
  `updated_time` or `version`, which is how the scheduler notices it must clear a published window
  again before it starts (server.services.dispatch.input_digest).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from sqlalchemy.orm import Session

from programs import enrollment as lifecycle
from programs.grid import GridNode as DomainNode
from programs.grid import GridTree
from programs.kinds import DeviceKind
from programs.model import Program, ProgramError
from programs.windows import next_window
from server.db import derp as der_store
from server.db import flex as store
from server.db.models import Device
from server.services import derp, dispatch
from server.services.errors import Conflict, Invalid, NotFound, check_text

MAX_PAGE = 1000
_LFDI = re.compile(r"[0-9A-Fa-f]{40}")
_NODE_KEYS = {"name", "parent", "load_percent", "adder_per_percent", "congestion_multiplier",
              "max_forward_kw", "max_reverse_kw", "current_load_kw"}
_ENROLL_KEYS = {"device_id", "lfdi", "customer", "kind", "grid_node", "offer", "state"}


def _no_unknown_keys(body: Mapping[str, Any], allowed: set[str], what: str) -> None:
    if not isinstance(body, Mapping):
        raise Invalid(f"{what} must be a JSON object")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise Invalid(f"unknown fields for {what}: {', '.join(unknown)} (known: {', '.join(sorted(allowed))})")


def _iso(seconds: int | None) -> str | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, timezone.utc).isoformat().replace("+00:00", "Z")


# ------------------------------------------------------------------------------------ programs


def parse_program(body: Any) -> Program:
    """The domain's Program, and texts the database and 2030.5 can carry (no control characters)."""
    try:
        program = Program.from_dict(body)
    except ProgramError as exc:
        raise Invalid(f"invalid program: {exc}") from None
    except ValueError as exc:
        raise Invalid(f"invalid program: {exc}") from None
    except OverflowError:  # float() of an integer beyond the float range
        where = ", ".join(k for k, v in body.items() if _too_large(v)) or "a field"
        raise Invalid(f"invalid program: {where}: a number is too large (the largest is about 1.8e308)") from None
    except OSError:  # ZoneInfo on a name no file system takes (too long, say)
        raise Invalid("invalid program: window.tz: unknown time zone (use an IANA name such as "
                      "'America/New_York')") from None
    check_text(program.name, "name", 100)
    check_text(program.description, "description", 32)
    for node in program.grid_node_ids:
        check_text(node, "grid_node_ids: a grid node name", 64)
    return program


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


def program_of(row: store.FlexProgram) -> Program:
    return Program.from_dict(json.loads(row.spec))


def _program_row(session: Session, program_id: int) -> store.FlexProgram:
    row = session.get(store.FlexProgram, program_id)
    if row is None:
        raise NotFound(f"no flexibility program {program_id}")
    return row


def _check_nodes_exist(session: Session, program: Program) -> None:
    missing = [n for n in program.grid_node_ids if store.grid_node_by_name(session, n) is None]
    if missing:
        raise Invalid(f"grid_node_ids: no grid node {', '.join(missing)} (create it first)")


def _der_description(program: Program) -> str:
    text = program.description or program.name
    while len(text.encode()) > 32:  # 2030.5 String32: 32 octets
        text = text[:-1]
    return text


def create_program(session: Session, body: Any, now: int) -> dict[str, Any]:
    program = parse_program(body)
    if store.program_by_name(session, program.name) is not None:
        raise Conflict(f"a program named {program.name!r} exists already")
    _check_nodes_exist(session, program)
    der = derp.create_program(session, description=_der_description(program), primacy=program.primacy, now=now)
    row = store.FlexProgram(name=program.name, spec=json.dumps(program.to_dict()), der_program_id=der.id,
                            state="active", version=1, created_time=now, updated_time=now)
    session.add(row)
    session.flush()
    dispatch.plan_program(session, row, program, now)
    return program_view(session, row, now)


def update_program(session: Session, program_id: int, body: Any, now: int) -> dict[str, Any]:
    """Change some fields of a program (a JSON object of the fields to change)."""
    row = _program_row(session, program_id)
    if row.state != "active":
        raise Conflict(f"program {program_id} is {row.state}: it cannot change")
    if not isinstance(body, Mapping) or not body:
        raise Invalid("send a JSON object with the fields to change, e.g. {\"requested_kw\": 400}")
    program = parse_program({**json.loads(row.spec), **body})
    other = store.program_by_name(session, program.name)
    if other is not None and other.id != row.id:
        raise Conflict(f"a program named {program.name!r} exists already")
    _check_nodes_exist(session, program)
    spec = json.dumps(program.to_dict())
    if spec == row.spec:
        return program_view(session, row, now)
    row.spec, row.name = spec, program.name
    row.version += 1
    row.updated_time = now
    der = der_store.get_program(session, row.der_program_id)
    if der is not None and (der.primacy, der.description) != (program.primacy, _der_description(program)):
        der.primacy, der.description = program.primacy, _der_description(program)
        der.version = (der.version + 1) % 65536
    dispatch.plan_program(session, row, program, now, replan=True)
    return program_view(session, row, now)


def cancel_program(session: Session, program_id: int, now: int) -> dict[str, Any]:
    """End a program: its windows that have not ended are cancelled, with their events."""
    row = _program_row(session, program_id)
    if row.state == "active":
        for w in store.windows(session, row.id, since_end=now, limit=10_000):
            if w.state in ("planned", "published"):
                dispatch.cancel_window_row(session, w, now, "program cancelled")
        row.state = "cancelled"
        row.version += 1
        row.updated_time = now
    return program_view(session, row, now)


def list_programs(session: Session, now: int) -> list[dict[str, Any]]:
    return [program_view(session, r, now, brief=True) for r in store.programs(session)]


def get_program(session: Session, program_id: int, now: int) -> dict[str, Any]:
    return program_view(session, _program_row(session, program_id), now)


def program_view(session: Session, row: store.FlexProgram, now: int, *, brief: bool = False) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for e in store.enrollments(session, row.id):
        counts[e.state] = counts.get(e.state, 0) + 1
    view: dict[str, Any] = {
        "id": row.id,
        "name": row.name,
        "state": row.state,
        "version": row.version,
        "der_program_id": row.der_program_id,
        "enrollments": counts,
        "created": _iso(row.created_time),
        "updated": _iso(row.updated_time),
    }
    upcoming = [w for w in store.windows(session, row.id, since_end=now, limit=3)]
    view["next_windows"] = [dispatch.window_brief(w) for w in upcoming]
    if not brief:
        view["program"] = json.loads(row.spec)
    return view


# ---------------------------------------------------------------------------------- grid nodes


def _domain_nodes(rows: list[store.GridNode]) -> list[DomainNode]:
    names = {r.id: r.name for r in rows}
    return [
        DomainNode(
            id=r.name, parent=names.get(r.parent_id) if r.parent_id else None, load_percent=r.load_percent,
            adder_per_percent=r.adder_per_percent, congestion_multiplier=r.congestion_multiplier,
            max_forward_kw=r.max_forward_kw, max_reverse_kw=r.max_reverse_kw, current_load_kw=r.current_load_kw,
        )
        for r in rows
    ]


def grid_tree(session: Session) -> tuple[GridTree, dict[int, int]]:
    """The grid as the domain sees it, and each node row's index in it."""
    rows = list(store.grid_nodes(session))
    tree = GridTree(_domain_nodes(rows))
    index = {n.id: i for i, n in enumerate(tree.nodes)}
    return tree, {r.id: index[r.name] for r in rows}


def _number(body: Mapping[str, Any], key: str, default: float | None) -> float | None:
    value = body.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Invalid(f"{key} must be a number")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise Invalid(f"{key} must be a finite number")
    return number


def put_grid_node(session: Session, body: Any, now: int) -> dict[str, Any]:
    """Create a grid node, or change the one of that name (fields not given keep their value)."""
    _no_unknown_keys(body, _NODE_KEYS, "a grid node")
    name = check_text(body.get("name"), "name", 64)
    if not name or not name.strip():
        raise Invalid("name is required: the operator's id of the node, e.g. \"feeder-12\"")
    row = store.grid_node_by_name(session, name)
    old = {c: getattr(row, c) for c in ("load_percent", "adder_per_percent", "congestion_multiplier",
                                         "max_forward_kw", "max_reverse_kw", "current_load_kw")} if row else {
        "load_percent": 0.0, "adder_per_percent": 0.0, "congestion_multiplier": 1.0,
        "max_forward_kw": None, "max_reverse_kw": None, "current_load_kw": None}
    values = {k: _number(body, k, v) for k, v in old.items()}
    for k in ("load_percent", "adder_per_percent", "congestion_multiplier"):
        if values[k] is None:
            raise Invalid(f"{k} must be a number")
    parent_id = row.parent_id if row else None
    if "parent" in body:
        parent_name = body["parent"]
        if parent_name is None:
            parent_id = None
        else:
            parent = store.grid_node_by_name(session, check_text(parent_name, "parent", 64) or "")
            if parent is None:
                raise Invalid(f"parent: no grid node {parent_name!r}")
            parent_id = parent.id
    if row is None:
        row = store.GridNode(name=name, updated_time=now)
        session.add(row)
    row.parent_id = parent_id
    for k, v in values.items():
        setattr(row, k, v)
    row.updated_time = now
    session.flush()
    try:
        GridTree(_domain_nodes(list(store.grid_nodes(session))))
    except ValueError as exc:
        raise Invalid(f"invalid grid node: {exc}") from None
    return grid_node_view(session, row)


def grid_node_view(session: Session, row: store.GridNode) -> dict[str, Any]:
    tree, index = grid_tree(session)
    node = tree.nodes[index[row.id]]
    parent = session.get(store.GridNode, row.parent_id) if row.parent_id else None
    return {
        "name": row.name,
        "parent": parent.name if parent else None,
        "load_percent": row.load_percent,
        "adder_per_percent": row.adder_per_percent,
        "congestion_multiplier": row.congestion_multiplier,
        "adder": node.adder,
        "path_adder": tree.path_adder(node.id),
        "max_forward_kw": row.max_forward_kw,
        "max_reverse_kw": row.max_reverse_kw,
        "current_load_kw": row.current_load_kw,
        "updated": _iso(row.updated_time),
    }


def list_grid_nodes(session: Session) -> list[dict[str, Any]]:
    return [grid_node_view(session, r) for r in store.grid_nodes(session)]


def delete_grid_node(session: Session, name: str) -> None:
    row = store.grid_node_by_name(session, check_text(name, "name", 64) or "")
    if row is None:
        raise NotFound(f"no grid node {name!r}")
    if any(r.parent_id == row.id for r in store.grid_nodes(session)):
        raise Conflict(f"grid node {name!r} has child nodes: move or delete them first")
    if store.enrollments_behind(session, row.id):
        raise Conflict(f"grid node {name!r} has enrolled devices behind it")
    if any(name in json.loads(p.spec).get("grid_node_ids", []) for p in store.programs(session, active_only=True)):
        raise Conflict(f"grid node {name!r} is in an active program's service area")
    session.delete(row)


# --------------------------------------------------------------------------------- enrollments


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
        kind = dispatch.reported_kind(session, device.id)
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
        dispatch.offer_curve(offer, kind, dispatch.ratings_of(session, device.id, kind), program,
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
    _no_unknown_keys(body, _ENROLL_KEYS, "an enrollment")
    row = _program_row(session, program_id)
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
        dispatch.cancel_device_events(session, row, enr.device_id, now)
        der_store.remove_members(session, row.der_program_id, [enr.device_id])


def enrollment_event(session: Session, program_id: int, enrollment_id: int, event: str, now: int) -> dict[str, Any]:
    """confirm | pause | resume | cancel | end, as the enrollment state table allows."""
    row = _program_row(session, program_id)
    enr = _enrollment(session, program_id, enrollment_id)
    _apply(session, row, enr, event, now)
    return enrollment_view(session, enr)


def update_offer(session: Session, program_id: int, enrollment_id: int, offer: Any, now: int) -> dict[str, Any]:
    """Replace an enrollment's offer (None: back to the default curve from ratings)."""
    row = _program_row(session, program_id)
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
        "created": _iso(enr.created_time),
        "updated": _iso(enr.updated_time),
    }


def list_enrollments(session: Session, program_id: int, start: int = 0, limit: int = 100) -> dict[str, Any]:
    _program_row(session, program_id)
    rows = store.enrollments(session, program_id)
    limit = max(0, min(limit, MAX_PAGE))
    return {"all": len(rows), "enrollments": [enrollment_view(session, e) for e in rows[start:start + limit]]}
