"""Pure `parse_json(bytes) -> dict` and `render_json(value) -> bytes` for Beckn messages.

Hostile input is refused before it costs much, with a message a NACK can carry:
- at most `max_bytes` bytes (256 KiB by default), strict UTF-8, no byte-order mark;
- the top level is a JSON object;
- nesting at most `max_depth` levels (64 by default);
- no NaN, Infinity or -Infinity, and no number that overflows to one (1e400);
- no integer longer than Python's digit limit, no lone UTF-16 surrogate in a string;
- no duplicate key in an object (JSON leaves their meaning open; two readers could disagree).

Rendering is compact UTF-8 with no NaN; the bytes rendered are the bytes to sign and send.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from server.beckn.errors import BecknError

DEFAULT_MAX_BYTES = 256 * 1024
DEFAULT_MAX_DEPTH = 64

_SURROGATE = re.compile("[\ud800-\udfff]")


class JsonError(BecknError):
    """The body is not acceptable JSON (code 30000, path None: the body as a whole)."""


def _no_constant(name: str) -> Any:
    raise JsonError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise JsonError(f"number {text[:40]} is out of range")
    return value


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise JsonError(f"duplicate key {key[:60]!r} in an object")
        obj[key] = value
    return obj


def parse_json(body: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES,
               max_depth: int = DEFAULT_MAX_DEPTH) -> dict[str, Any]:
    """Parse a request body into a dict, or raise JsonError (never another exception)."""
    if len(body) > max_bytes:
        raise JsonError(f"body is {len(body)} bytes; at most {max_bytes} are accepted")
    if body.startswith(b"\xef\xbb\xbf"):
        raise JsonError("body starts with a byte-order mark")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JsonError(f"body is not UTF-8 (byte {exc.start})") from None
    try:
        value = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant,
                           parse_float=_finite_float)
    except JsonError:
        raise
    except json.JSONDecodeError as exc:
        raise JsonError(f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except RecursionError:
        # The C scanner guards its recursion; hitting the interpreter limit means far too deep.
        raise JsonError(f"JSON nested deeper than {max_depth} levels") from None
    except ValueError as exc:  # e.g. an integer beyond sys.get_int_max_str_digits()
        raise JsonError(f"invalid JSON: {str(exc)[:120]}") from None
    if not isinstance(value, dict):
        raise JsonError(f"the body must be a JSON object, not {_kind(value)}")
    _check_tree(value, max_depth)
    return value


def _check_tree(root: dict[str, Any], max_depth: int) -> None:
    """Depth and string checks, iteratively so that no input can exhaust the stack."""
    stack: list[tuple[Any, int]] = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > max_depth:
            raise JsonError(f"JSON nested deeper than {max_depth} levels")
        if isinstance(node, dict):
            for key, child in node.items():
                if _SURROGATE.search(key):
                    raise JsonError("a key contains a lone UTF-16 surrogate")
                stack.append((child, depth + 1))
        elif isinstance(node, list):
            stack.extend((child, depth + 1) for child in node)
        elif isinstance(node, str) and _SURROGATE.search(node):
            raise JsonError("a string contains a lone UTF-16 surrogate")


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return "a number"


def render_json(value: Any) -> bytes:
    """Compact UTF-8 JSON; raises ValueError for NaN/Infinity rather than emitting invalid JSON."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")
