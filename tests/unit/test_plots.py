"""server.services.flex.plots: the supply-curve and requested-vs-delivered PNGs."""

from __future__ import annotations

import struct
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from server.services.flex.plots import requested_vs_delivered_png, supply_curve_png

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
LA = ZoneInfo("America/Los_Angeles")


def _png_size(data: bytes) -> tuple[int, int]:
    """Width and height from the IHDR chunk, which the PNG spec puts first."""
    assert data[:8] == PNG_SIGNATURE
    length, chunk = struct.unpack(">I4s", data[8:16])
    assert (length, chunk) == (13, b"IHDR")
    return struct.unpack(">II", data[16:24])


def _curve():
    p = np.linspace(0.0, 0.30, 31)
    q = 900.0 * p / 0.30
    return p, q


def _supply(**overrides):
    p, q = _curve()
    kwargs = dict(
        requested_kw=480.0, price_cap=0.30, clearing_price=0.16, cleared_kw=480.0, feasible=True,
        title="Summer peak dry run", currency="USD",
    )
    kwargs.update(overrides)
    return supply_curve_png(p, q, **kwargs)


def _times(n: int) -> list[datetime]:
    return [datetime(2024, 7, 1, 16, tzinfo=LA) + timedelta(minutes=15 * i) for i in range(n)]


def test_supply_curve_is_a_png_of_the_default_size():
    data = _supply()
    assert data.startswith(PNG_SIGNATURE)
    assert _png_size(data) == (960, 600)


def test_supply_curve_honours_the_requested_pixel_size():
    assert _png_size(_supply(size_px=(800, 500))) == (800, 500)
    with pytest.raises(ValueError, match="size_px"):
        _supply(size_px=(10, 10))


def test_supply_curve_infeasible_case_renders_differently():
    """flexibility.md: say so when the fleet cannot deliver Q (the picture carries an INFEASIBLE note)."""
    bad = _supply(requested_kw=1200.0, clearing_price=0.30, cleared_kw=900.0, feasible=False)
    assert _png_size(bad) == (960, 600)
    same_numbers_feasible = _supply(requested_kw=1200.0, clearing_price=0.30, cleared_kw=900.0, feasible=True)
    assert bad != same_numbers_feasible


def test_same_inputs_give_the_same_bytes():
    assert _supply() == _supply()


def test_supply_curve_accepts_unsorted_points_and_a_single_point():
    p, q = _curve()
    order = np.random.default_rng(1).permutation(p.size)
    assert supply_curve_png(p[order], q[order], **_kw()) == supply_curve_png(p, q, **_kw())
    assert _png_size(supply_curve_png(np.array([0.1]), np.array([50.0]), **_kw())) == (960, 600)


def _kw():
    return dict(requested_kw=480.0, price_cap=0.30, clearing_price=0.16, cleared_kw=480.0, feasible=True,
                title="t", currency="EUR")


def test_supply_curve_rejects_empty_and_malformed_data():
    with pytest.raises(ValueError, match="supply curve is empty"):
        supply_curve_png(np.array([]), np.array([]), **_kw())
    with pytest.raises(ValueError, match="differ in length"):
        supply_curve_png(np.array([0.1, 0.2]), np.array([1.0]), **_kw())
    with pytest.raises(ValueError, match="non-finite"):
        supply_curve_png(np.array([0.1, np.nan]), np.array([1.0, 2.0]), **_kw())
    with pytest.raises(ValueError, match="price_cap must be finite"):
        supply_curve_png(*_curve(), **{**_kw(), "price_cap": float("inf")})


def test_requested_vs_delivered_is_a_png_and_tolerates_missing_measurements():
    n = 20
    data = requested_vs_delivered_png(
        _times(n), [500.0] * n, [480.0] * n, [470.0] * (n - 3) + [None] * 3, title="Event 2024-07-01"
    )
    assert data.startswith(PNG_SIGNATURE)
    assert _png_size(data) == (960, 600)


def test_requested_vs_delivered_over_two_days_in_another_zone():
    times = [datetime(2024, 11, 2, 23, tzinfo=timezone.utc) + timedelta(hours=i) for i in range(30)]
    data = requested_vs_delivered_png(times, [5.0] * 30, [4.5] * 30, [4.0] * 30, title="t", tz=LA, size_px=(1200, 500))
    assert _png_size(data) == (1200, 500)


def test_requested_vs_delivered_rejects_empty_mismatched_or_naive_input():
    with pytest.raises(ValueError, match="times is empty"):
        requested_vs_delivered_png([], [], [], [], title="t")
    with pytest.raises(ValueError, match="cleared_kw has 1 values for 2 intervals"):
        requested_vs_delivered_png(_times(2), [1.0, 2.0], [1.0], [1.0, 2.0], title="t")
    with pytest.raises(ValueError, match="timezone-aware"):
        requested_vs_delivered_png([datetime(2024, 7, 1, 16)], [1.0], [1.0], [1.0], title="t")


def test_plots_never_import_pyplot_and_importing_the_module_loads_no_matplotlib():
    """Brief: Figure + FigureCanvasAgg only, no pyplot, no import-time side effects."""
    code = (
        "import sys, numpy as np\n"
        "import server.services.flex.plots as plots\n"
        "assert 'matplotlib' not in sys.modules, 'imported at import time'\n"
        "plots.supply_curve_png(np.array([0.0, 0.3]), np.array([0.0, 9.0]), requested_kw=5, price_cap=0.3,"
        " clearing_price=0.2, cleared_kw=5, feasible=True, title='t', currency='USD')\n"
        "assert 'matplotlib' in sys.modules\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot was imported'\n"
    )
    result = subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_time_labels_are_local_and_name_each_day_once():
    from server.services.flex.plots import _tick_labels

    start = datetime(2024, 7, 1, 23, tzinfo=timezone.utc).astimezone(LA)
    same_day = [start + timedelta(minutes=30 * i) for i in range(3)]
    assert _tick_labels(same_day) == ["16:00", "16:30", "17:00"]
    two_days = [datetime(2024, 7, 1, 22, tzinfo=LA) + timedelta(hours=i) for i in range(4)]
    assert _tick_labels(two_days) == ["22:00\nMon 01 Jul", "23:00", "00:00\nTue 02 Jul", "01:00"]


# --- what the operator reads in the supply-curve picture ----------------------------------------

def _figure_of(**overrides):
    from server.services.flex.plots import supply_curve_figure

    p, q = _curve()
    kwargs = dict(requested_kw=480.0, price_cap=0.30, clearing_price=0.16, cleared_kw=480.0, feasible=True,
                  title="Summer peak dry run", currency="USD")
    kwargs.update(overrides)
    fig = supply_curve_figure(p, q, **kwargs)
    fig.canvas.draw()
    return fig, fig.axes[0]


def test_supply_curve_names_every_element_with_its_unit():
    fig, ax = _figure_of()
    assert ax.get_xlabel() == "Load reduction offered by the fleet (kW)"
    assert ax.get_ylabel() == "Price paid per kWh of reduction (USD/kWh)"
    assert fig.get_suptitle() == "Summer peak dry run"
    assert ax.get_title() == "Request met: 480.0 kW of reduction at 0.1600 USD/kWh (cap 0.3000 USD/kWh)"
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["Supply curve: kW the fleet offers at each price", "Requested reduction (480.0 kW)",
                      "Price cap (0.3000 USD/kWh)", "Clearing point (price paid, kW dispatched)"]
    notes = [c for c in ax.get_children() if type(c).__name__ == "Annotation"]
    assert [n.get_text() for n in notes] == ["cleared 480.0 kW at 0.1600 USD/kWh"]
    assert notes[0].xy == (480.0, 0.16)


def test_infeasible_headline_says_how_much_is_missing():
    fig, ax = _figure_of(requested_kw=1200.0, clearing_price=0.30, cleared_kw=900.0, feasible=False)
    assert ax.get_title() == "INFEASIBLE: fleet offers only 900.0 kW at the cap (1,200.0 kW requested, 300.0 kW short)"
    assert "Shortfall: not offered even at the cap" in [t.get_text() for t in fig.legends[0].get_texts()]


@pytest.mark.parametrize(
    "case",
    [
        dict(),  # mid-curve
        dict(requested_kw=1200.0, clearing_price=0.30, cleared_kw=900.0, feasible=False),  # top right
        dict(requested_kw=20.0, clearing_price=0.0067, cleared_kw=20.0),  # bottom left
        dict(requested_kw=880.0, clearing_price=0.2933, cleared_kw=880.0, size_px=(640, 400)),  # small picture
    ],
)
def test_clearing_note_stays_inside_the_axes_and_off_the_curve(case):
    """The first version put the note of an infeasible clearing across the curve."""
    from matplotlib.text import Text

    fig, ax = _figure_of(**case)
    renderer = fig.canvas.get_renderer()
    note = next(c for c in ax.get_children() if type(c).__name__ == "Annotation")
    box = Text.get_window_extent(note, renderer)
    frame = ax.get_window_extent(renderer)
    assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
    p, q = _curve()
    dense_q = np.linspace(q.min(), q.max(), 2000)
    xy = ax.transData.transform(np.column_stack([dense_q, np.interp(dense_q, q, p)]))
    covered = (xy[:, 0] >= box.x0) & (xy[:, 0] <= box.x1) & (xy[:, 1] >= box.y0) & (xy[:, 1] <= box.y1)
    assert not covered.any(), f"the note covers the curve at {xy[covered][:3]}"


def test_long_titles_wrap_inside_the_picture():
    title = "Northern service territory summer evening peak saver, dry run of 2026-11-23, 16:00–21:00 America/New_York"
    fig, _ = _figure_of(title=title, size_px=(800, 500))
    sup = fig._suptitle
    assert "\n" in sup.get_text() and sup.get_text().replace("\n", " ") == title
    extent = sup.get_window_extent(fig.canvas.get_renderer())
    assert 0 <= extent.x0 and extent.x1 <= 800
