"""UTC seconds as the services show them: one way to turn stored epoch seconds into datetimes and
ISO-8601 text, for every context."""

from __future__ import annotations

from datetime import datetime, timezone


def utc(seconds: float) -> datetime:
    """The aware UTC datetime of epoch seconds."""
    return datetime.fromtimestamp(seconds, timezone.utc)


def iso(seconds: float | None) -> str | None:
    """'2026-11-23T00:00:00Z' for UTC seconds (None stays None; a time no calendar can show says so)."""
    if seconds is None:
        return None
    try:
        return utc(seconds).isoformat().replace("+00:00", "Z")
    except (OverflowError, ValueError, OSError):
        return "(beyond what a calendar date can show)"
