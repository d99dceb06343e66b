"""Server-side paging for every list of the dashboard: ?page=N (from 1) and ?size=N (10–200)."""

from __future__ import annotations

from dataclasses import dataclass

from flask import request

MAX_SIZE = 200


@dataclass(frozen=True)
class Page:
    number: int
    size: int
    total: int = 0

    @property
    def start(self) -> int:
        return (self.number - 1) * self.size

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.size))

    def of(self, total: int) -> "Page":
        return Page(self.number, self.size, total)


def _int(name: str, default: int, lo: int, hi: int) -> int:
    raw = request.args.get(name, "")
    if not raw.isascii() or not raw.isdigit() or len(raw) > 9:
        return default
    return min(max(int(raw), lo), hi)


def page(prefix: str = "", size: int = 50) -> Page:
    """The page asked for by ?{prefix}page and ?{prefix}size."""
    return Page(_int(prefix + "page", 1, 1, 10**8), _int(prefix + "size", size, 10, MAX_SIZE))
