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
  again before it starts (server.services.flex.publishing.input_digest).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session

from programs.model import Program, ProgramError
from server.db import derp as der_store
from server.db import flex as store
from server.services import clock
from server.services.sep2 import derp
from server.services.errors import Conflict, Invalid, check_text
from server.services.flex.cancelling import cancel_window_row
from server.services.flex.stored import program_row
from server.services.flex.windows import plan_program, window_brief





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
    der = derp.create_der_program(session, description=_der_description(program), primacy=program.primacy, now=now)
    row = store.FlexProgram(name=program.name, spec=json.dumps(program.to_dict()), der_program_id=der.id,
                            state="active", version=1, created_time=now, updated_time=now)
    session.add(row)
    session.flush()
    plan_program(session, row, program, now)
    return program_view(session, row, now)


def update_program(session: Session, program_id: int, body: Any, now: int) -> dict[str, Any]:
    """Change some fields of a program (a JSON object of the fields to change)."""
    row = program_row(session, program_id)
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
    plan_program(session, row, program, now, replan=True)
    return program_view(session, row, now)


def cancel_program(session: Session, program_id: int, now: int) -> dict[str, Any]:
    """End a program: its windows that have not ended are cancelled, with their events."""
    row = program_row(session, program_id)
    if row.state == "active":
        for w in store.windows(session, row.id, since_end=now, limit=10_000):
            if w.state in ("planned", "published"):
                cancel_window_row(session, w, now, "program cancelled")
        row.state = "cancelled"
        row.version += 1
        row.updated_time = now
    return program_view(session, row, now)


def list_programs(session: Session, now: int) -> list[dict[str, Any]]:
    return [program_view(session, r, now, brief=True) for r in store.programs(session)]


def get_program(session: Session, program_id: int, now: int) -> dict[str, Any]:
    return program_view(session, program_row(session, program_id), now)


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
        "created": clock.iso(row.created_time),
        "updated": clock.iso(row.updated_time),
    }
    upcoming = [w for w in store.windows(session, row.id, since_end=now, limit=3)]
    view["next_windows"] = [window_brief(w) for w in upcoming]
    if not brief:
        view["program"] = json.loads(row.spec)
    return view


# ---------------------------------------------------------------------------------- grid nodes


# --------------------------------------------------------------------------------- enrollments


