"""List query parameters of 2030.5: `s` start index, `a` after (a time), `l` limit.

A bare GET of a list returns one entry (the standard's default); `l` is capped at MAX_LIMIT.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from server.sep2.codec import INVALID_VALUES, DecodeError
from server.sep2.uris import DEFAULT_LIMIT, MAX_LIMIT


@dataclass(frozen=True, slots=True)
class Page:
    start: int = 0
    limit: int = DEFAULT_LIMIT
    after: int | None = None


_DIGITS = re.compile(r"[0-9]{1,19}")


def _number(args: Mapping[str, str], name: str, lo: int, hi: int) -> int | None:
    raw = args.get(name)
    if raw is None:
        return None
    if not _DIGITS.fullmatch(raw):  # ASCII only: str.isdigit() also accepts "²"
        raise DecodeError(f"query parameter {name!r} must be a non-negative integer", INVALID_VALUES)
    return min(max(int(raw), lo), hi)


def parse_page(args: Mapping[str, str]) -> Page:
    start = _number(args, "s", 0, 2**32 - 1)
    limit = _number(args, "l", 0, MAX_LIMIT)
    after = _number(args, "a", 0, 2**63 - 1)
    return Page(
        start=0 if start is None else start,
        limit=DEFAULT_LIMIT if limit is None else limit,
        after=after,
    )
