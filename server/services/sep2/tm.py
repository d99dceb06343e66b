"""Time function set (`/tm`): the server's clock and the configured zone's offsets and DST dates."""

from __future__ import annotations

from datetime import datetime, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo

from server.sep2 import uris
from server.sep2.models import Time

# Time.quality 4: time obtained from a level-3 source (the host's NTP-disciplined clock).
QUALITY = 4


def _utc_offset(zone: ZoneInfo, t: int) -> int:
    """Seconds the zone's wall clock is ahead of UTC at UTC second t."""
    local = datetime.fromtimestamp(t, timezone.utc).astimezone(zone)
    return int(local.utcoffset().total_seconds())  # type: ignore[union-attr]


def _find_change(zone: ZoneInfo, lo: int, hi: int) -> int:
    """The first second in (lo, hi] whose offset differs from lo's."""
    before = _utc_offset(zone, lo)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _utc_offset(zone, mid) == before:
            lo = mid
        else:
            hi = mid
    return hi


@lru_cache(maxsize=64)
def year_rule(zone: ZoneInfo, year: int) -> tuple[int, int, int, int]:
    """(tzOffset, dstOffset, dstStartTime, dstEndTime) for a calendar year, in seconds.

    2030.5 wants the standard offset plus a non-negative DST amount. Python's zoneinfo reports
    some zones' winter as *negative* DST (Europe/Dublin), so both are derived from the offsets
    themselves: the smaller one of the year is standard time, the larger one daylight time, and
    DST starts and ends at the switches into and out of the larger. A zone without a switch that
    year answers (offset, 0, t, t), t the start of the year: start equal to end means no DST.
    """
    start_of_year = int(datetime(year, 1, 1, tzinfo=timezone.utc).timestamp())
    end_of_year = int(datetime(year + 1, 1, 1, tzinfo=timezone.utc).timestamp())
    changes: list[tuple[int, int]] = []  # (when, offset from then on)
    t, previous = start_of_year, _utc_offset(zone, start_of_year)
    offsets = {previous}
    while t < end_of_year:
        nxt = min(t + 86_400, end_of_year)
        current = _utc_offset(zone, nxt)
        if current != previous:
            changes.append((_find_change(zone, t, nxt), current))
            offsets.add(current)
        previous, t = current, nxt
    standard, daylight = min(offsets), max(offsets)
    if standard == daylight:
        return standard, 0, start_of_year, start_of_year
    start = next((when for when, off in changes if off == daylight), start_of_year)
    end = next((when for when, off in changes if off != daylight), start_of_year)
    return standard, daylight - standard, start, end


def time_resource(now: int, zone: ZoneInfo, poll_rate: int) -> Time:
    year = datetime.fromtimestamp(now, timezone.utc).year
    standard, dst_amount, start, end = year_rule(zone, year)
    return Time(
        href=uris.TM,
        poll_rate=poll_rate,
        current_time=now,
        dst_end_time=end,
        dst_offset=dst_amount,
        dst_start_time=start,
        local_time=now + _utc_offset(zone, now),
        quality=QUALITY,
        tz_offset=standard,
    )
