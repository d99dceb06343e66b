"""Which handler runs each command of the flexibility context: `execute(session, command, now)` gives
the command's typed result (server.services.flex.results) or raises its CommandError; the caller's
transaction makes a refused command store nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session

from server.services.flex import enrollments, grid_nodes, programs, windows
from server.services.flex.commands import (
    AuthorProgram,
    CancelProgram,
    CancelWindow,
    ChangeEnrollmentState,
    ChangeOffer,
    Command,
    DeleteGridNode,
    Enroll,
    PutGridNode,
    UpdateProgram,
)
from server.services.flex.results import Result

_HANDLERS: dict[type, Callable[[Session, Any, int], Result]] = {
    AuthorProgram: programs.author,
    UpdateProgram: programs.update,
    CancelProgram: programs.cancel,
    PutGridNode: grid_nodes.put,
    DeleteGridNode: lambda session, command, now: grid_nodes.delete(session, command),
    Enroll: enrollments.enroll_device,
    ChangeEnrollmentState: enrollments.change_state,
    ChangeOffer: enrollments.change_offer,
    CancelWindow: windows.cancel,
}


def execute(session: Session, command: Command, now: int) -> Result:
    """Run `command` at `now` (UTC seconds) in the caller's transaction."""
    return _HANDLERS[type(command)](session, command, now)
