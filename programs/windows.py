"""Recurring peak windows: a wall-clock rule in a utility's time zone -> concrete UTC windows.

A program's peak window is a `WindowRule` such as "Mon–Fri 16:00–21:00 America/New_York". The
scheduler turns it into `Window`s (aware UTC start/end) with `windows_between` / `next_window`,
and clearing works per interval of a window (`split`).

Rules:

* Weekdays are 0 = Monday … 6 = Sunday and name the LOCAL date on which a window starts.
  end <= start means the window ends on the next local day (22:00–02:00 on a Friday runs from
  Friday 22:00 to Saturday 02:00). start == end is invalid (a rule lasts at most 24 h minus one
  second of wall-clock time).
* Wall-clock times are converted with PEP 495 `fold=0`, which gives exactly these DST rules:
  - spring forward: a start or end that falls in the gap (does not exist on the clock) moves
    forward by the gap (02:30 on 2026-03-08 in New York is 03:30 EDT);
  - fall back: an ambiguous wall time (it occurs twice) is its FIRST occurrence (the daylight
    time one: 01:30 on 2026-11-01 in New York is 01:30 EDT = 05:30 UTC);
  - so a window crossing a change lasts 1 h less (spring) or 1 h more (fall) in real time.
  - A window whose start moves past its end (only possible on a spring-forward day for a
    window shorter than the gap whose start lies in the gap, e.g. 02:30–03:00) does not occur
    that day: it has no real time left.
* `windows_between(rule, a, b)` returns every window that OVERLAPS [a, b) — including one that
  started before `a` — ordered by start. `next_window(rule, t)` is the first window starting at
  or after `t`.
* `split(window, interval_s)` cuts a window into consecutive intervals of `interval_s` REAL
  seconds from its start; the last interval is shorter when the window is not a whole number of
  intervals (which happens on DST days even when it divides the nominal length).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Any, Iterable, Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = [
    "WEEKDAY_NAMES",
    "Window",
    "WindowError",
    "WindowRule",
    "next_window",
    "split",
    "windows_between",
]

WEEKDAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DAY = timedelta(days=1)
# The longest a rule's windows can be apart is a week; DST can remove one occurrence (a window
# entirely in a gap), so two weeks always contain the next window.
_NEXT_HORIZON = timedelta(days=15)
_TIME_RE = re.compile(r"^(\d{2}):(\d{2})(?::(\d{2}))?$")
_RULE_KEYS = ("weekdays", "start", "end", "tz")


class WindowError(ValueError):
    """An invalid window rule; `errors` lists one "field: problem" message per wrong field."""

    def __init__(self, errors: list[str]):
        self.errors = list(errors)
        super().__init__("invalid window: " + "; ".join(self.errors))


def _zone(tz: object) -> ZoneInfo:
    if not isinstance(tz, str) or not tz:
        raise ValueError(f"time zone must be an IANA name such as 'America/New_York', got {tz!r}")
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a name too long for a file name
        raise ValueError(f"unknown time zone {tz!r} (use an IANA name such as 'America/New_York')") from None


def _check_weekdays(weekdays: object) -> frozenset[int]:
    if isinstance(weekdays, (str, bytes)) or not isinstance(weekdays, Iterable):
        raise ValueError(f"must be a set of weekday numbers 0 (Mon) … 6 (Sun), got {weekdays!r}")
    days = list(weekdays)
    if not days:
        raise ValueError("at least one weekday is required")
    for d in days:
        if isinstance(d, bool) or not isinstance(d, int) or not 0 <= d <= 6:
            raise ValueError(f"weekday {d!r} is not a number 0 (Mon) … 6 (Sun)")
    return frozenset(days)


def _check_time(t: object) -> time:
    if not isinstance(t, time):
        raise ValueError(f"must be a time of day, got {t!r}")
    if t.tzinfo is not None:
        raise ValueError(f"must be a wall-clock time without a time zone (the rule's tz applies), got {t!r}")
    if t.microsecond:
        raise ValueError(f"must be whole seconds, got {t.isoformat()}")
    return t


@dataclass(frozen=True)
class WindowRule:
    """A recurring wall-clock window: on each local weekday in `weekdays`, from `start` to `end`
    in time zone `tz` (end <= start: ends the next day). See the module docstring for DST."""

    weekdays: frozenset[int]
    start: time
    end: time
    tz: str

    def __post_init__(self) -> None:
        errors: list[str] = []
        for name, check in (("weekdays", _check_weekdays), ("start", _check_time),
                            ("end", _check_time), ("tz", _zone)):
            try:
                value = check(getattr(self, name))
                if name == "weekdays":
                    object.__setattr__(self, name, value)
            except ValueError as e:
                errors.append(f"{name}: {e}")
        if not errors and self.start == self.end:
            errors.append(f"end: equals start ({self.start.isoformat()}); a window must have a length")
        if errors:
            raise WindowError(errors)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.tz)

    @property
    def crosses_midnight(self) -> bool:
        return self.end <= self.start

    @property
    def nominal_s(self) -> int:
        """Wall-clock length in seconds (what the window lasts on a day without a DST change)."""
        s = _secs(self.end) - _secs(self.start)
        return s + 86400 if s <= 0 else s

    def window_on(self, local_date: date) -> "Window | None":
        """The window starting on `local_date` (ignores `weekdays`); None if DST erases it."""
        zone = self.zone
        start = _to_utc(datetime.combine(local_date, self.start), zone)
        end_date = local_date + _DAY if self.crosses_midnight else local_date
        end = _to_utc(datetime.combine(end_date, self.end), zone)
        if end <= start:
            return None
        return Window(start, end, local_date)

    # --- JSON form ------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "WindowRule":
        """{"weekdays": ["mon", …] or [0, …], "start": "16:00", "end": "21:00", "tz": "…"}.

        Raises WindowError naming every wrong field (unknown keys included).
        """
        if not isinstance(d, Mapping):
            raise WindowError([f"must be an object with {', '.join(_RULE_KEYS)}, got {d!r}"])
        errors = [f"{k}: unknown field (known: {', '.join(_RULE_KEYS)})" for k in d if k not in _RULE_KEYS]
        values: dict[str, Any] = {}
        for key, parse in (("weekdays", _parse_weekdays), ("start", _parse_time),
                           ("end", _parse_time), ("tz", _zone)):
            if key not in d:
                errors.append(f"{key}: required")
                continue
            try:
                parsed = parse(d[key])
                values[key] = d[key] if key == "tz" else parsed
            except ValueError as e:
                errors.append(f"{key}: {e}")
        if errors:
            raise WindowError(errors)
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return {
            "weekdays": [WEEKDAY_NAMES[i] for i in sorted(self.weekdays)],
            "start": _format_time(self.start),
            "end": _format_time(self.end),
            "tz": self.tz,
        }


def _secs(t: time) -> int:
    return t.hour * 3600 + t.minute * 60 + t.second


def _parse_weekdays(v: object) -> frozenset[int]:
    if isinstance(v, (str, bytes)) or not isinstance(v, (list, tuple)):
        raise ValueError(f"must be a list of day names ('mon' … 'sun') or numbers 0 (Mon) … 6 (Sun), got {v!r}")
    days = []
    for d in v:
        if isinstance(d, str) and d.lower() in WEEKDAY_NAMES:
            days.append(WEEKDAY_NAMES.index(d.lower()))
        elif isinstance(d, int) and not isinstance(d, bool) and 0 <= d <= 6:
            days.append(d)
        else:
            raise ValueError(f"{d!r} is not a day name ('mon' … 'sun') or a number 0 (Mon) … 6 (Sun)")
    if len(set(days)) != len(days):
        raise ValueError(f"a day is listed twice in {v!r}")
    return _check_weekdays(days)


def _parse_time(v: object) -> time:
    m = _TIME_RE.match(v) if isinstance(v, str) else None
    if not m:
        raise ValueError(f"must be a wall-clock time 'HH:MM' or 'HH:MM:SS', got {v!r}")
    h, mi, s = int(m[1]), int(m[2]), int(m[3] or 0)
    if h > 23 or mi > 59 or s > 59:
        raise ValueError(f"{v!r} is not a time of day (00:00 … 23:59:59; midnight is '00:00')")
    return time(h, mi, s)


def _format_time(t: time) -> str:
    return t.strftime("%H:%M:%S" if t.second else "%H:%M")


def _to_utc(wall: datetime, zone: ZoneInfo) -> datetime:
    # fold=0: a time in a spring-forward gap is read with the offset before the change, i.e. it
    # moves forward by the gap; an ambiguous fall-back time is its first occurrence.
    return wall.replace(tzinfo=zone, fold=0).astimezone(timezone.utc)


@dataclass(frozen=True)
class Window:
    """One occurrence of a rule: real start/end (aware, normalised to UTC) and the local date on
    which it starts. `key` (the local date, "2026-11-23") identifies it within its program, so
    publishing a window twice is recognised as the same window."""

    start: datetime
    end: datetime
    local_date: date

    def __post_init__(self) -> None:
        for name in ("start", "end"):
            v = getattr(self, name)
            if not isinstance(v, datetime) or v.tzinfo is None or v.utcoffset() is None:
                raise ValueError(f"window {name} must be a time-zone-aware datetime, got {v!r}")
            object.__setattr__(self, name, v.astimezone(timezone.utc))
        if self.end <= self.start:
            raise ValueError(f"window end {self.end.isoformat()} is not after its start {self.start.isoformat()}")

    @property
    def key(self) -> str:
        return self.local_date.isoformat()

    @property
    def duration_s(self) -> float:
        return (self.end - self.start).total_seconds()


def _require_aware(name: str, t: object) -> datetime:
    if not isinstance(t, datetime) or t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"{name} must be a time-zone-aware datetime (UTC), got {t!r}")
    return t.astimezone(timezone.utc)


def windows_between(rule: WindowRule, start_utc: datetime, end_utc: datetime) -> list[Window]:
    """Every window of `rule` that overlaps [start_utc, end_utc), ordered by start."""
    a = _require_aware("start_utc", start_utc)
    b = _require_aware("end_utc", end_utc)
    if b <= a:
        return []
    zone = rule.zone
    # a window that started the previous local day (past midnight, or 25 h long) may still overlap
    day = a.astimezone(zone).date() - _DAY
    last = b.astimezone(zone).date()
    out: list[Window] = []
    while day <= last:
        if day.weekday() in rule.weekdays:
            w = rule.window_on(day)
            if w is not None and w.start < b and w.end > a:
                out.append(w)
        day += _DAY
    out.sort(key=lambda w: w.start)
    return out


def next_window(rule: WindowRule, after_utc: datetime) -> Window | None:
    """The first window of `rule` that starts at or after `after_utc` (None only if DST erased
    every occurrence in two weeks, which no real time zone does)."""
    a = _require_aware("after_utc", after_utc)
    for w in windows_between(rule, a, a + _NEXT_HORIZON):
        if w.start >= a:
            return w
    return None


def split(window: Window, interval_s: int) -> list[tuple[datetime, datetime]]:
    """Consecutive (start, end) intervals of `interval_s` real seconds covering the window; the
    last one is shorter when the window is not a whole number of intervals."""
    if isinstance(interval_s, bool) or not isinstance(interval_s, int) or interval_s <= 0:
        raise ValueError(f"interval_s must be a positive whole number of seconds, got {interval_s!r}")
    step = timedelta(seconds=interval_s)
    n = math.ceil(window.duration_s / interval_s)
    out = []
    for k in range(n):
        s = window.start + k * step
        out.append((s, min(s + step, window.end)))
    return out
