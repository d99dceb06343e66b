"""Flexibility programs: the AuthorProgram, UpdateProgram and CancelProgram commands
(server.services.flex.commands) and how programs read back (server.services.flex.results).

The rules of what a program, a window rule, a grid tree or a bid curve may be are the domain's
(`programs/`); the commands carry what the input alone can tell, checked once, and this module
checks what only the database can (a free name, grid nodes that exist) and keeps the 2030.5 side in
step:

* each program publishes into a DERProgram of its own (same primacy; description from the
  program), created with it;
* a device is a member of that DERProgram while its enrollment is active or paused (so a paused
  device still hears of cancellations); when the enrollment is cancelled or ended its events that
  have not ended are cancelled and it leaves the program (server.services.flex.enrollments);
* every change that a clearing sees (program, enrollment, curve, grid node) moves an
  `updated_time` or `version`, which is how the scheduler notices it must clear a published window
  again before it starts (server.services.flex.windows.input_digest);
* a program authored, changed or cancelled records the outbox fact ProgramChanged in its
  transaction (the Beckn v2 catalog is published again: server.services.bpp.catalog_publish).

A program is active or cancelled: there is no pausing a program (its enrollments pause).
`create_program`, `update_program` and `cancel_program` take admin JSON, for scripts and tests.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy.orm import Session

from programs.model import Program
from programs.publishing import is_open
from server.db import derp as der_store
from server.db import flex as store
from server.services import outbox
from server.services.sep2 import derp
from server.services.flex.cancelling import cancel_window_row
from server.services.flex.command_errors import CommandConflict, InvalidCommand
from server.services.flex.commands import (
    AuthorProgram,
    CancelProgram,
    UpdateProgram,
    parse_author_program,
    parse_program,
    parse_update_program,
)
from server.services.flex.results import ProgramResult
from server.services.flex.stored import program_row
from server.services.flex.windows import plan_program, window_result


# ------------------------------------------------------------------------------------ programs


def _check_nodes_exist(session: Session, program: Program) -> None:
    missing = [n for n in program.grid_node_ids if store.grid_node_by_name(session, n) is None]
    if missing:
        raise InvalidCommand("grid_node_ids", f"grid_node_ids: no grid node {', '.join(missing)} (create it first)")


def _der_description(program: Program) -> str:
    text = program.description or program.name
    while len(text.encode()) > 32:  # 2030.5 String32: 32 octets
        text = text[:-1]
    return text


def author(session: Session, command: AuthorProgram, now: int) -> ProgramResult:
    """The AuthorProgram command: the program, its DERProgram and its windows of the coming week."""
    program = command.program
    if store.program_by_name(session, program.name) is not None:
        raise CommandConflict("name", f"a program named {program.name!r} exists already")
    _check_nodes_exist(session, program)
    der = derp.create_der_program(session, description=_der_description(program), primacy=program.primacy, now=now)
    row = store.FlexProgram(name=program.name, spec=json.dumps(program.to_dict()), der_program_id=der.id,
                            state="active", version=1, created_time=now, updated_time=now)
    session.add(row)
    session.flush()
    plan_program(session, row, program, now)
    outbox.record(session, outbox.ProgramChanged(row.id, row.version, "authored"), now)
    return program_result(session, row, now)


def update(session: Session, command: UpdateProgram, now: int) -> ProgramResult:
    """The UpdateProgram command: the stored program with the changes, checked as a whole; windows
    not yet started follow a changed rule. The same values again change nothing, not the version."""
    row = program_row(session, command.program_id)
    if row.state != "active":
        raise CommandConflict("program_id", f"program {command.program_id} is {row.state}: it cannot change")
    program = parse_program({**json.loads(row.spec), **command.changes})
    other = store.program_by_name(session, program.name)
    if other is not None and other.id != row.id:
        raise CommandConflict("name", f"a program named {program.name!r} exists already")
    _check_nodes_exist(session, program)
    spec = json.dumps(program.to_dict())
    if spec == row.spec:
        return program_result(session, row, now)
    row.spec, row.name = spec, program.name
    row.version += 1
    row.updated_time = now
    der = der_store.get_der_program(session, row.der_program_id)
    if der is not None and (der.primacy, der.description) != (program.primacy, _der_description(program)):
        der.primacy, der.description = program.primacy, _der_description(program)
        der.version = (der.version + 1) % 65536
    plan_program(session, row, program, now, replan=True)
    outbox.record(session, outbox.ProgramChanged(row.id, row.version, "updated"), now)
    return program_result(session, row, now)


def cancel(session: Session, command: CancelProgram, now: int) -> ProgramResult:
    """The CancelProgram command: its windows that have not ended are cancelled, with their events
    (a cancelled program stays cancelled: again is no change)."""
    row = program_row(session, command.program_id)
    if row.state == "active":
        for w in store.windows(session, row.id, since_end=now, limit=10_000):
            if is_open(w.state):
                cancel_window_row(session, w, now, "program cancelled")
        row.state = "cancelled"
        row.version += 1
        row.updated_time = now
        outbox.record(session, outbox.ProgramChanged(row.id, row.version, "cancelled"), now)
    return program_result(session, row, now)


def create_program(session: Session, body: Any, now: int) -> dict[str, Any]:
    """Author a program from its JSON (for scripts and tests; transports execute AuthorProgram)."""
    return author(session, parse_author_program(body), now).view()


def update_program(session: Session, program_id: int, body: Any, now: int) -> dict[str, Any]:
    """Change some fields of a program (a JSON object of the fields to change)."""
    return update(session, parse_update_program(program_id, body), now).view()


def cancel_program(session: Session, program_id: int, now: int) -> dict[str, Any]:
    """End a program: its windows that have not ended are cancelled, with their events."""
    return cancel(session, CancelProgram(program_id), now).view()


def list_programs(session: Session, now: int) -> list[dict[str, Any]]:
    return [program_result(session, r, now).view(brief=True) for r in store.programs(session)]


def get_program(session: Session, program_id: int, now: int) -> dict[str, Any]:
    return program_result(session, program_row(session, program_id), now).view()


def program_result(session: Session, row: store.FlexProgram, now: int) -> ProgramResult:
    counts: dict[str, int] = {}
    for e in store.enrollments(session, row.id):
        counts[e.state] = counts.get(e.state, 0) + 1
    upcoming = store.windows(session, row.id, since_end=now, limit=3)
    return ProgramResult(id=row.id, name=row.name, state=row.state, version=row.version,
                         der_program_id=row.der_program_id, enrollments=counts, created=row.created_time,
                         updated=row.updated_time, next_windows=tuple(window_result(w) for w in upcoming),
                         definition=row.spec)
