"""server.services.flex.plots.delivery_png: a settled window's requested vs cleared vs delivered kW,
readable without knowing 2030.5 (title, local times, units, legend, a headline in words)."""

from __future__ import annotations

import io
import math
import struct
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from server.services.flex.plots import delivery_figure, delivery_png

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
NY = ZoneInfo("America/New_York")
GREEN, RED = "#2ca02c", "#d62728"


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_SIGNATURE
    length, chunk = struct.unpack(">I4s", data[8:16])
    assert (length, chunk) == (13, b"IHDR")
    return struct.unpack(">II", data[16:24])


def pixels(data: bytes) -> np.ndarray:
    from matplotlib.image import imread

    return imread(io.BytesIO(data), format="png")


def count(px: np.ndarray, hex_rgb: str) -> int:
    rgb = np.array([int(hex_rgb[i:i + 2], 16) for i in (1, 3, 5)]) / 255.0
    return int((np.abs(px[..., :3] - rgb).max(axis=-1) < 0.02).sum())


def times(n: int, step: int = 900, start: datetime = datetime(2026, 11, 30, 21, tzinfo=timezone.utc)) -> list[datetime]:
    return [start + timedelta(seconds=step * i) for i in range(n)]


def args(n: int = 8, **over):  # noqa: ANN003, ANN201
    a = dict(times=times(n), requested_kw=[6.0] * n, cleared_kw=[6.0] * n, delivered_kw=[6.0] * n, interval_s=900,
             title="Peak Saver — Mon 30 Nov 2026 16:00–18:00 EST", requested_kwh=12.0, delivered_kwh=12.0,
             credited_kwh=10.0, paid="2.56", currency="USD", tz=NY)
    a.update(over)
    return a


def texts(fig) -> list[str]:  # noqa: ANN001
    return [t.get_text() for t in fig.findobj(lambda o: hasattr(o, "get_text") and o.get_text())]


def test_a_png_of_the_default_size_with_green_bars() -> None:
    data = delivery_png(**args())
    assert png_size(data) == (960, 600)
    assert count(pixels(data), GREEN) > 20_000  # eight bars of 6 kW
    assert count(pixels(data), RED) == 0
    assert delivery_png(**args()) == data  # same inputs, same bytes


def test_the_picture_says_what_it_shows_in_words() -> None:
    fig = delivery_figure(**args(subtitle="3 devices · settlement v1"))
    words = " ".join(texts(fig))
    assert "Peak Saver — Mon 30 Nov 2026 16:00–18:00 EST\n3 devices · settlement v1" in words
    assert "Delivered 12.0 of 12.0 kWh asked (100 %) — paid USD 2.56 for 10.0 kWh" in words
    ax = fig.axes[0]
    assert ax.get_ylabel() == "Load reduction (kW)"
    assert ax.get_xlabel() == "Local time (EST); each bar is one 15-minute interval"
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels[0] == "16:00\nMon 30 Nov" and labels[-1] == "18:00"
    legend = " ".join(t.get_text() for t in fig.legends[0].get_texts())
    for words in ("Requested by the program (kW)", "Cleared: reduction the fleet committed to (kW)",
                  "Delivered: measured reduction vs the baseline (kW)"):
        assert words in legend


def test_the_example_headline_of_the_brief() -> None:
    fig = delivery_figure(**args(delivered_kwh=11.2, credited_kwh=None))
    assert "Delivered 11.2 of 12.0 kWh asked (93 %) — paid USD 2.56" in texts(fig)


@pytest.mark.parametrize("missing", [None, math.nan, float("nan")])
def test_nothing_measured_draws_no_bars_and_says_so(missing) -> None:  # noqa: ANN001
    a = args(4, delivered_kw=[missing] * 4, delivered_kwh=0.0, credited_kwh=0.0, paid="0.00")
    data = delivery_png(**a)
    assert png_size(data) == (960, 600)
    words = texts(delivery_figure(**a))
    assert "Not measured: no meter readings cover this window — paid USD 0.00" in words
    assert words.count("no reading") == 4


def test_gaps_and_load_that_went_up() -> None:
    a = args(delivered_kw=[5.5, 6.2, None, -1.0, 2.0, math.nan, 3.0, 4.0], delivered_kwh=4.9, credited_kwh=4.5)
    data = delivery_png(**a)
    assert count(pixels(data), RED) > 500
    words = texts(delivery_figure(**a))
    assert words.count("no reading") == 2
    assert "Load went up instead (kW)" in words


def test_many_intervals_small_picture_and_round_time_labels() -> None:
    n = 48
    a = args(n, times=times(n, 300), requested_kw=[100.0] * n, cleared_kw=[80.0] * n,
             delivered_kw=[70 + 10 * math.sin(i / 5) for i in range(n)], interval_s=300, size_px=(640, 400))
    assert png_size(delivery_png(**a)) == (640, 400)
    labels = [t.get_text().split("\n")[0] for t in delivery_figure(**a).axes[0].get_xticklabels()]
    assert labels == ["16:00", "16:30", "17:00", "17:30", "18:00", "18:30", "19:00", "19:30", "20:00"]


def test_nothing_requested_has_no_percentage() -> None:
    words = texts(delivery_figure(**args(2, requested_kw=[0.0, 0.0], cleared_kw=[0.0, 0.0],
                                         delivered_kw=[0.0, 0.0], requested_kwh=0.0, delivered_kwh=0.0)))
    assert "Delivered 0.0 of 0.0 kWh asked — paid USD 2.56 for 10.0 kWh" in words


def test_bad_input_is_refused_clearly() -> None:
    with pytest.raises(ValueError, match="times is empty"):
        delivery_png(**args(0))
    with pytest.raises(ValueError, match="cleared_kw has 1 values for 8 intervals"):
        delivery_png(**args(cleared_kw=[1.0]))
    with pytest.raises(ValueError, match="timezone-aware"):
        delivery_png(**args(1, times=[datetime(2026, 11, 30, 16)]))
    with pytest.raises(ValueError, match="delivered_kw has an infinite value"):
        delivery_png(**args(delivered_kw=[math.inf] * 8))
    with pytest.raises(ValueError, match="interval_s"):
        delivery_png(**args(interval_s=0))
    with pytest.raises(ValueError, match="requested_kwh must be finite"):
        delivery_png(**args(requested_kwh=math.nan))
    with pytest.raises(ValueError, match="size_px"):
        delivery_png(**args(size_px=(10, 10)))
