"""Reading a flexibility program's stored row: the lowest floor of the flexibility context."""

from __future__ import annotations

import json

from sqlalchemy.orm import Session

from programs.model import Program
from server.db import flex as store
from server.services.flex.command_errors import CommandNotFound

MAX_PAGE = 1000


def program_of(row: store.FlexProgram) -> Program:
    """The domain's program from its stored definition."""
    return Program.from_dict(json.loads(row.spec))


def program_row(session: Session, program_id: int) -> store.FlexProgram:
    """The program's row, or a not-found naming `program_id` (a NotFound to every transport)."""
    row = session.get(store.FlexProgram, program_id)
    if row is None:
        raise CommandNotFound("program_id", f"no flexibility program {program_id}")
    return row
