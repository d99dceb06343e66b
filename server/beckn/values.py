"""Generic readers and writers of Beckn JSON values, shared by every action.

Readers take a value and the JSON path it came from and raise `BecknError(message, path, code)`
naming that path; writers give the schema's shapes (DecimalValue strings, tags, tag groups,
timestamps). Pure: no database, no Flask.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from server.beckn.errors import BecknError, ErrorCode
from server.beckn.timefmt import render_timestamp


# ----------------------------------------------------------------------------- reading values


def fail(message: str, path: str | None, code: ErrorCode = ErrorCode.INVALID_REQUEST) -> BecknError:
    return BecknError(message, path, code)


def obj(value: Any, path: str, *, required: bool = True) -> dict[str, Any]:
    """A JSON object at `path` ({} when absent and not required)."""
    if value is None:
        if required:
            raise fail("is missing", path)
        return {}
    if not isinstance(value, dict):
        raise fail("must be an object", path)
    return value


def arr(value: Any, path: str, *, required: bool = True, max_len: int = 1000) -> list[Any]:
    if value is None:
        if required:
            raise fail("is missing", path)
        return []
    if not isinstance(value, list):
        raise fail("must be an array", path)
    if len(value) > max_len:
        raise fail(f"has {len(value)} entries; at most {max_len} are accepted", path)
    return value


def text(value: Any, path: str, *, required: bool = True, max_len: int = 255) -> str | None:
    """A string of 1…max_len printable characters (None when absent and not required)."""
    if value is None:
        if required:
            raise fail("is missing", path)
        return None
    if not isinstance(value, str):
        raise fail("must be a string", path)
    if not value or len(value) > max_len or not value.isprintable():
        raise fail(f"must be 1 to {max_len} printable characters", path)
    return value


def number(value: Any, path: str, *, code: ErrorCode = ErrorCode.INVALID_REQUEST) -> float:
    """A finite number, given as a JSON number or a decimal string (the schema's DecimalValue)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise fail("must be a number", path, code)
    try:
        out = float(value)
    except (ValueError, OverflowError):
        raise fail(f"{str(value)[:40]!r} is not a number", path, code) from None
    if not math.isfinite(out):
        raise fail("must be a finite number", path, code)
    return out


def tag_values(groups: Any, path: str) -> Iterator[tuple[str, str | None, Any, str]]:
    """(group code, tag code, value, tag path) of every tag in a TagGroup array."""
    for i, group in enumerate(arr(groups, path, required=False)):
        g = obj(group, f"{path}[{i}]")
        gcode = obj(g.get("descriptor"), f"{path}[{i}].descriptor", required=False).get("code")
        for j, tag in enumerate(arr(g.get("list"), f"{path}[{i}].list", required=False)):
            t = obj(tag, f"{path}[{i}].list[{j}]")
            code = obj(t.get("descriptor"), f"{path}[{i}].list[{j}].descriptor", required=False).get("code")
            yield gcode, code, t.get("value"), f"{path}[{i}].list[{j}]"


# ----------------------------------------------------------------------------- writing values


def dec(value: float) -> str:
    """A float as a plain decimal string (no exponent): the schema's DecimalValue."""
    text_ = format(Decimal(repr(float(value))), "f")
    return text_[:-2] if text_.endswith(".0") else text_


def money(value: float) -> str:
    return dec(round(value, 6))


def ts(seconds: float) -> str:
    return render_timestamp(datetime.fromtimestamp(seconds, timezone.utc))


def tag(code: str, value: str) -> dict[str, Any]:
    return {"descriptor": {"code": code}, "value": value}


def tag_group(code: str, tags: list[dict[str, Any]], name: str | None = None) -> dict[str, Any]:
    descriptor = {"code": code} if name is None else {"code": code, "name": name}
    return {"descriptor": descriptor, "list": tags}


def json_text(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), allow_nan=False)
