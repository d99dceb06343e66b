"""Time function set: offsets and DST dates from the configured zone (§ Time: tzOffset excludes DST)."""

from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from server.services.sep2.tm import time_resource


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


@pytest.mark.parametrize("month", [1, 7])
def test_negative_dst_zone_is_served_as_standard_plus_positive_dst(month: int) -> None:
    """zoneinfo calls Dublin's winter a DST of -1 h; 2030.5 wants GMT standard + 1 h in summer."""
    now = ts(2026, month, 15)
    t = time_resource(now, ZoneInfo("Europe/Dublin"), 900)
    assert (t.tz_offset, t.dst_offset) == (0, 3600)
    assert t.dst_start_time == ts(2026, 3, 29, 1) and t.dst_end_time == ts(2026, 10, 25, 1)
    summer = t.dst_start_time <= now < t.dst_end_time
    # what a client computes from the rule equals what the server says the local time is
    assert t.local_time == now + t.tz_offset + (t.dst_offset if summer else 0)
    assert t.local_time == now + (3600 if month == 7 else 0)


@pytest.mark.parametrize("zone", ["America/New_York", "Australia/Sydney", "Europe/Dublin", "Asia/Kolkata"])
def test_client_rule_reproduces_local_time_all_year(zone: str) -> None:
    for day in range(0, 365, 7):
        now = ts(2026, 1, 1) + day * 86_400 + 43_200
        t = time_resource(now, ZoneInfo(zone), 900)
        if t.dst_start_time <= t.dst_end_time:
            summer = t.dst_start_time <= now < t.dst_end_time
        else:  # southern hemisphere: DST spans the new year
            summer = not (t.dst_end_time <= now < t.dst_start_time)
        assert t.local_time == now + t.tz_offset + (t.dst_offset if summer else 0), (zone, day)
