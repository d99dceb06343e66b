"""Time function set (`/tm`): the server's clock and the configured zone's offsets and DST dates."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo

from server.sep2 import uris
from server.sep2.models import Time

# Time.quality 4: time obtained from a level-3 source (the host's NTP-disciplined clock).
QUALITY = 4


def _offset(zone: ZoneInfo, t: int) -> tuple[int, int]:
    """(standard offset, DST amount) in seconds at UTC second t."""
    local = datetime.fromtimestamp(t, timezone.utc).astimezone(zone)
    total = int(local.utcoffset().total_seconds())  # type: ignore[union-attr]
    dst = int((local.dst() or timedelta(0)).total_seconds())
    return total - dst, dst


def _find_change(zone: ZoneInfo, lo: int, hi: int) -> int:
    """The first second in (lo, hi] whose DST amount differs from lo's."""
    before = _offset(zone, lo)[1]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _offset(zone, mid)[1] == before:
            lo = mid
        else:
            hi = mid
    return hi


@lru_cache(maxsize=64)
def dst_rule(zone: ZoneInfo, year: int) -> tuple[int, int, int]:
    """(dstOffset, dstStartTime, dstEndTime) for a calendar year, in UTC seconds.

    A zone without DST that year answers (0, t, t) with t the start of the year, as the standard
    asks start and end to be equal when DST does not apply.
    """
    start_of_year = int(datetime(year, 1, 1, tzinfo=timezone.utc).timestamp())
    end_of_year = int(datetime(year + 1, 1, 1, tzinfo=timezone.utc).timestamp())
    day = 86_400
    dst_amount = 0
    start = end = None
    t = start_of_year
    previous = _offset(zone, t)[1]
    while t < end_of_year:
        nxt = min(t + day, end_of_year)
        current = _offset(zone, nxt)[1]
        if current != previous:
            change = _find_change(zone, t, nxt)
            if current > previous:
                start, dst_amount = change, current
            else:
                end = change
        previous, t = current, nxt
    if start is None or end is None:
        return 0, start_of_year, start_of_year
    return dst_amount, start, end


def time_resource(now: int, zone: ZoneInfo, poll_rate: int) -> Time:
    standard, dst_now = _offset(zone, now)
    dst_amount, start, end = dst_rule(zone, datetime.fromtimestamp(now, timezone.utc).year)
    return Time(
        href=uris.TM,
        poll_rate=poll_rate,
        current_time=now,
        dst_end_time=end,
        dst_offset=dst_amount,
        dst_start_time=start,
        local_time=now + standard + dst_now,
        quality=QUALITY,
        tz_offset=standard,
    )
