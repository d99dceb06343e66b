"""Time function set: offsets and DST dates from the configured zone (§ Time: tzOffset excludes DST)."""

from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from server.services.tm import time_resource


def ts(*args: int) -> int:
    return int(datetime(*args, tzinfo=timezone.utc).timestamp())


def test_new_york_in_summer() -> None:
    now = ts(2026, 7, 1, 12)
    t = time_resource(now, ZoneInfo("America/New_York"), 900)
    assert t.tz_offset == -5 * 3600
    assert t.dst_offset == 3600
    assert t.dst_start_time == ts(2026, 3, 8, 7)  # 02:00 EST
    assert t.dst_end_time == ts(2026, 11, 1, 6)  # 02:00 EDT
    assert t.local_time == now - 4 * 3600
    assert t.current_time == now


def test_new_york_in_winter_local_time_has_no_dst() -> None:
    now = ts(2026, 12, 1)
    t = time_resource(now, ZoneInfo("America/New_York"), 900)
    assert t.local_time == now - 5 * 3600 and t.dst_offset == 3600


def test_southern_hemisphere_dst_ends_before_it_starts_in_a_calendar_year() -> None:
    t = time_resource(ts(2026, 6, 1), ZoneInfo("Australia/Sydney"), 900)
    assert t.tz_offset == 10 * 3600
    assert t.dst_end_time == ts(2026, 4, 4, 16)  # 03:00 AEDT on 5 April
    assert t.dst_start_time == ts(2026, 10, 3, 16)  # 02:00 AEST on 4 October


@pytest.mark.parametrize("zone", ["UTC", "Asia/Kolkata"])
def test_zone_without_dst(zone: str) -> None:
    t = time_resource(ts(2026, 5, 5), ZoneInfo(zone), 900)
    assert t.dst_offset == 0 and t.dst_start_time == t.dst_end_time
    assert t.tz_offset == (0 if zone == "UTC" else 19800)
