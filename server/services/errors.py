"""Errors a service raises; each transport renders them in its own protocol's error format."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


class ServiceError(Exception):
    status = 400
    reason_code = 1  # 2030.5 Error reasonCode: invalid values

    def __init__(self, message: str, *, location: str | None = None):
        super().__init__(message)
        self.message = message
        self.location = location


class Invalid(ServiceError):
    status = 400


class Forbidden(ServiceError):
    status = 403


class NotFound(ServiceError):
    status = 404


class Conflict(ServiceError):
    status = 409


def check_text(value: object, name: str, max_len: int) -> str | None:
    """An optional free-text field from a client or operator: a string of at most `max_len`
    printable characters (no control characters: XML cannot carry them, PostgreSQL no NUL)."""
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > max_len:
        raise Invalid(f"{name} must be text of at most {max_len} characters")
    if any(ord(c) < 32 or 0x7F <= ord(c) < 0xA0 or 0xD800 <= ord(c) <= 0xDFFF for c in value):
        raise Invalid(f"{name} must not contain control characters")
    return value


class UnsupportedMediaType(ServiceError):
    status = 415
    reason_code = 0  # invalid request format


def no_unknown_keys(body: Mapping[str, Any], allowed: Iterable[str], what: str) -> None:
    """Refuse a JSON object that is not one, or that names a field `what` does not have: a typo is
    an error, never silently ignored."""
    if not isinstance(body, Mapping):
        raise Invalid(f"{what} must be a JSON object")
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise Invalid(
            f"unknown field{'s' if len(unknown) > 1 else ''} in {what}: {', '.join(unknown)} "
            f"(allowed: {', '.join(sorted(allowed))})"
        )
