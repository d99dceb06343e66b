"""How the flexibility context refuses a command: a `CommandError` naming the field at fault,
dotted in the command's admin JSON form ("offer.power[2]", "grid_node", "requested_kw"; None for
the command as a whole). It is an Invalid, NotFound or Conflict of server.services.errors, so every
transport renders it in its own protocol's error format; the admin API adds the field to its
problem JSON and the Beckn BPP maps it onto the JSON path it came from."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, ClassVar, Literal

from server.services.errors import Conflict, Invalid, NotFound, ServiceError, no_unknown_keys


class CommandError(ServiceError):
    """A command refused: `kind` says how (invalid | not_found | conflict), `field` names what."""

    kind: ClassVar[Literal["invalid", "not_found", "conflict"]]

    def __init__(self, field: str | None, message: str):
        super().__init__(message)
        self.field = field

    @staticmethod
    def of(exc: ServiceError, field: str | None) -> CommandError:
        """The CommandError of `exc`'s kind, about `field` (a CommandError keeps its own field)."""
        if isinstance(exc, CommandError):
            return exc
        if isinstance(exc, NotFound):
            return CommandNotFound(field, exc.message)
        if isinstance(exc, Conflict):
            return CommandConflict(field, exc.message)
        return InvalidCommand(field, exc.message)


class InvalidCommand(CommandError, Invalid):
    kind = "invalid"


class CommandNotFound(CommandError, NotFound):
    kind = "not_found"


class CommandConflict(CommandError, Conflict):
    kind = "conflict"


@contextmanager
def about(field: str | None) -> Iterator[None]:
    """A ServiceError raised inside becomes the CommandError of its kind naming `field`."""
    try:
        yield
    except ServiceError as exc:
        raise CommandError.of(exc, field) from None


def known_keys(body: Any, allowed: set[str], what: str) -> Mapping[str, Any]:
    """`body` as a JSON object with no key `what` does not have (the first unknown key is the field)."""
    try:
        no_unknown_keys(body, allowed, what)
    except Invalid as exc:
        unknown = sorted(set(body) - allowed) if isinstance(body, Mapping) else []
        raise InvalidCommand(str(unknown[0]) if unknown else None, exc.message) from None
    return body
