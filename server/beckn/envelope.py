"""Beckn v1.1.0 envelopes: the request `{"context", "message"}`, the synchronous ACK/NACK answer,
and the callback body.

- ACK: `{"message":{"ack":{"status":"ACK"}}}` — the request passed JSON, signature and context
  checks and a callback will follow (possibly carrying a business error).
- NACK: `{"message":{"ack":{"status":"NACK"}},"error":{"code":…,"path":…,"message":…}}` — a protocol
  fault; no callback ever. `path` is left out when the fault concerns the body as a whole. (The
  official schema spells the field `paths`; it does not forbid `path`, which BECKN-005 and this
  project's design use.)
- A request body is a JSON object with an object `context` and, except for the meta API's
  `get_…` actions, an object `message`. Other top-level keys are ignored.
- A callback body is `{"context", "message"}` plus `error` when the BPP reports a business fault.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from server.beckn.codec import DEFAULT_MAX_BYTES, DEFAULT_MAX_DEPTH, parse_json, render_json
from server.beckn.context import META_ACTIONS, Context, parse_context
from server.beckn.errors import BecknError, ErrorCode

MAX_ERROR_MESSAGE_CHARS = 500
#: Callbacks whose official schema requires `message` even beside an error: it is sent empty.
MESSAGE_REQUIRED = frozenset({"on_rating"})


class EnvelopeError(BecknError):
    """The body is JSON but not a Beckn request envelope (code 30000)."""


@dataclass(frozen=True, slots=True)
class Request:
    """A validated request: its typed context and its `message` object (empty for meta actions)."""

    context: Context
    message: dict[str, Any]


def parse_request(body: bytes, *, action: str, bpp_id: str, now: datetime,
                  skew: timedelta = timedelta(seconds=5), domains: Collection[str] | None = None,
                  max_bytes: int = DEFAULT_MAX_BYTES, max_depth: int = DEFAULT_MAX_DEPTH) -> Request:
    """The raw body of a request to this BPP's `action` endpoint as a Request.

    Raises a BecknError (JsonError, ContextError or EnvelopeError) carrying the NACK's code, path
    and message; `nack_for(exc)` renders it."""
    doc = parse_json(body, max_bytes=max_bytes, max_depth=max_depth)
    context = parse_context(doc.get("context"), action=action, bpp_id=bpp_id, now=now, skew=skew,
                            domains=domains)
    message = doc.get("message")
    if message is None:
        if action not in META_ACTIONS:
            raise EnvelopeError("is missing", "message")
        message = {}
    if not isinstance(message, dict):
        raise EnvelopeError("must be an object", "message")
    return Request(context=context, message=message)


def error_object(code: ErrorCode | str, message: str, path: str | None = None) -> dict[str, Any]:
    """`{"code", "path", "message"}` for a NACK or a callback (path omitted when None)."""
    out: dict[str, Any] = {"code": str(code)}
    if path is not None:
        out["path"] = path
    out["message"] = message[:MAX_ERROR_MESSAGE_CHARS]
    return out


def ack() -> dict[str, Any]:
    """The ACK answer."""
    return {"message": {"ack": {"status": "ACK"}}}


def nack(code: ErrorCode | str, message: str, path: str | None = None) -> dict[str, Any]:
    """A NACK answer with its error."""
    return {"message": {"ack": {"status": "NACK"}}, "error": error_object(code, message, path)}


def nack_for(exc: BecknError) -> dict[str, Any]:
    """The NACK answering a refused request."""
    return nack(exc.code, exc.message if exc.path is None else f"{exc.path} {exc.message}", exc.path)


def callback_body(context: Context, message: dict[str, Any] | None = None,
                  error: dict[str, Any] | None = None) -> dict[str, Any]:
    """The body of a callback: its context, its message (when there is one) and an optional error."""
    out: dict[str, Any] = {"context": context.to_json()}
    if message is None and error is not None and context.action in MESSAGE_REQUIRED:
        message = {}
    if message is not None:
        out["message"] = message
    if error is not None:
        out["error"] = error
    return out


def render(body: dict[str, Any]) -> bytes:
    """The exact bytes to send (and to sign)."""
    return render_json(body)
