"""RFC 3339 timestamps and ISO 8601 durations as Beckn v1.1.0 context uses them.

Timestamps (`context.timestamp`): `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` — the offset is
mandatory (a local time without one names no instant); `t`/`z` are accepted in lower case as
RFC 3339 allows; more than 6 fraction digits are truncated to microseconds; a leap second `:60` is
read as the first instant of the next second. Rendered in UTC with milliseconds and `Z`, the form
Beckn's own examples use (`2022-01-04T09:17:55.971Z`).

Durations (`context.ttl`): `PnYnMnWnDTnHnMnS`, at least one component, a `T` only before a time
component, no sign; only seconds may carry a fraction (`PT0.5S`). Years and months are calendar
units and are added to a timestamp as such (the day is clamped to the month's end: Jan 31 + P1M is
Feb 28/29); the rest is exact.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,18}))?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))"
)
_DURATION = re.compile(
    r"P(?:(\d{1,9})Y)?(?:(\d{1,9})M)?(?:(\d{1,9})W)?(?:(\d{1,9})D)?"
    r"(?:T(?:(\d{1,9})H)?(?:(\d{1,9})M)?(?:(\d{1,9})(?:[.,](\d{1,9}))?S)?)?"
)


def parse_timestamp(text: str) -> datetime:
    """An aware datetime for an RFC 3339 date-time, or ValueError saying what is wrong."""
    m = _RFC3339.fullmatch(text)
    if m is None:
        raise ValueError(f"{text[:40]!r} is not an RFC 3339 date-time with an offset "
                         "(e.g. 2024-05-01T12:00:00.000Z)")
    year, month, day, hour, minute, second = (int(g) for g in m.group(1, 2, 3, 4, 5, 6))
    micro = int((m.group(7) or "").ljust(6, "0")[:6])
    if m.group(8):
        tz = timezone.utc
    else:
        off_h, off_m = int(m.group(10)), int(m.group(11))
        if off_h > 23 or off_m > 59:
            raise ValueError(f"{text[:40]!r} has an invalid UTC offset")
        sign = 1 if m.group(9) == "+" else -1
        tz = timezone(sign * timedelta(hours=off_h, minutes=off_m))
    leap = second == 60
    try:
        value = datetime(year, month, day, hour, minute, 59 if leap else second, micro, tzinfo=tz)
    except ValueError as exc:
        raise ValueError(f"{text[:40]!r} is not a valid date-time: {exc}") from None
    try:
        if leap:
            value = value.replace(microsecond=0) + timedelta(seconds=1)
        value.astimezone(timezone.utc)  # every time we handle must have a UTC form
    except OverflowError:
        raise ValueError(f"{text[:40]!r} is outside the years 1…9999 in UTC") from None
    return value


def render_timestamp(value: datetime) -> str:
    """RFC 3339 in UTC with milliseconds (the Beckn examples' form); `value` must be aware."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("a Beckn timestamp needs an aware datetime")
    utc = value.astimezone(timezone.utc)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


@dataclass(frozen=True, slots=True, kw_only=True)
class Duration:
    """An ISO 8601 duration; `str()` renders it canonically (`PT30S`, `P1M`, `P1DT2H`)."""

    years: int = 0
    months: int = 0
    weeks: int = 0
    days: int = 0
    hours: int = 0
    minutes: int = 0
    seconds: Decimal = Decimal(0)

    def __post_init__(self) -> None:
        values = (self.years, self.months, self.weeks, self.days, self.hours, self.minutes, self.seconds)
        if any(v < 0 for v in values):
            raise ValueError("a duration has no negative components")

    def add_to(self, start: datetime) -> datetime:
        """`start` + this duration: calendar years and months, then exact weeks…seconds.

        Raises OverflowError when the result is beyond year 9999."""
        total_months = start.month - 1 + self.months + 12 * self.years
        year = start.year + total_months // 12
        month = total_months % 12 + 1
        if year > 9999:
            raise OverflowError("date beyond year 9999")
        day = min(start.day, calendar.monthrange(year, month)[1])
        shifted = start.replace(year=year, month=month, day=day)
        exact = timedelta(weeks=self.weeks, days=self.days, hours=self.hours, minutes=self.minutes,
                          seconds=float(self.seconds))
        return shifted + exact

    def __str__(self) -> str:
        date = "".join(f"{v}{u}" for v, u in ((self.years, "Y"), (self.months, "M"),
                                              (self.weeks, "W"), (self.days, "D")) if v)
        secs = self.seconds.normalize() if self.seconds else Decimal(0)
        time = "".join(f"{v}{u}" for v, u in ((self.hours, "H"), (self.minutes, "M")) if v)
        if secs:
            time += f"{secs:f}S"
        if not date and not time:
            return "PT0S"
        return "P" + date + ("T" + time if time else "")


def parse_duration(text: str) -> Duration:
    """A Duration for an ISO 8601 duration string, or ValueError saying what is wrong."""
    m = _DURATION.fullmatch(text)
    if m is None or text == "P" or text.endswith("T"):
        raise ValueError(f"{text[:40]!r} is not an ISO 8601 duration (e.g. PT30S, PT5M, P1D)")
    y, mo, w, d, h, mi, s, frac = m.groups()
    seconds = Decimal(s or 0) + (Decimal("0." + frac) if frac else Decimal(0))
    return Duration(years=int(y or 0), months=int(mo or 0), weeks=int(w or 0), days=int(d or 0),
                    hours=int(h or 0), minutes=int(mi or 0), seconds=seconds)
