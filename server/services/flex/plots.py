"""PNG pictures for people who do not read 2030.5: a program's supply curve and clearing, and
requested vs cleared vs delivered flexibility per interval (the demo, dry runs and M&V reports).

Rules: pure functions returning PNG bytes; matplotlib's object API only (`Figure` +
`FigureCanvasAgg`), never pyplot, never `matplotlib.use`, no global state touched and nothing
done at import (matplotlib is imported on first use, so importing the server stays fast). Images
have a fixed pixel size (default 960 × 600), every axis is labelled in words with its unit, and
the same inputs give the same bytes (no timestamp/software metadata in the file).
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from datetime import datetime, timedelta, tzinfo
from typing import Any

import numpy as np

__all__ = ["delivery_figure", "delivery_png", "envelope_png", "requested_vs_delivered_png", "supply_curve_figure",
           "supply_curve_png"]

DPI = 100
DEFAULT_SIZE_PX = (960, 600)
_COLORS = {"curve": "#1f77b4", "request": "#d62728", "cap": "#7f7f7f", "clear": "#2ca02c", "bad": "#b00020",
           "ok": "#1b6e1b"}


def _figure(size_px: tuple[int, int]) -> tuple[Any, Any]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    w, h = size_px
    if not (isinstance(w, int) and isinstance(h, int) and 200 <= w <= 4000 and 150 <= h <= 4000):
        raise ValueError(f"size_px must be two whole numbers of pixels (200…4000 × 150…4000), got {size_px!r}")
    fig = Figure(figsize=(w / DPI, h / DPI), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.canvas.print_png(buf, metadata={"Software": None})
    return buf.getvalue()


def _finite(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return float(value)


def _wrap(text: str, width_px: int, fontsize: float, weight: str = "normal") -> str:
    """`text` broken at spaces into lines that fit 96 % of `width_px` at `fontsize` (measured with
    matplotlib's own font metrics), so a long program name never runs off the picture."""
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import TextToPath

    prop, measure = FontProperties(size=fontsize, weight=weight), TextToPath()
    limit_pt = 0.96 * width_px * 72 / DPI
    lines = []
    for paragraph in text.split("\n"):
        line = ""
        for word in paragraph.split(" "):
            longer = f"{line} {word}" if line else word
            if line and measure.get_text_width_height_descent(longer, prop, ismath=False)[0] > limit_pt:
                lines.append(line)
                line = word
            else:
                line = longer
        lines.append(line)
    return "\n".join(lines)


def _scale(size_px: tuple[int, int]) -> float:
    """Font scale for a picture size: 1 at the default 960 × 600, smaller pictures smaller text."""
    return max(0.5, min(1.5, size_px[0] / DEFAULT_SIZE_PX[0], size_px[1] / DEFAULT_SIZE_PX[1]))


def _kw(x: float) -> str:
    return f"{x:,.1f} kW"


def supply_curve_png(
    prices: np.ndarray,
    quantities: np.ndarray,
    *,
    requested_kw: float,
    price_cap: float,
    clearing_price: float,
    cleared_kw: float,
    feasible: bool,
    title: str,
    currency: str,
    size_px: tuple[int, int] = DEFAULT_SIZE_PX,
) -> bytes:
    """The fleet's aggregate supply curve F(p): reduction offered (kW, x) against price (y), drawn
    as market people draw supply curves; the request as a vertical line, the price cap as a
    horizontal dashed line, the clearing point marked and annotated (the note placed where it
    covers neither the curve nor a line, inside the axes), and under the title a headline: "Request
    met: …" or "INFEASIBLE: …" when the fleet cannot deliver the request at the cap (shortfall
    shaded). `prices`/`quantities` are points of F (any order; sorted by price here); long
    titles wrap."""
    return _png(supply_curve_figure(
        prices, quantities, requested_kw=requested_kw, price_cap=price_cap, clearing_price=clearing_price,
        cleared_kw=cleared_kw, feasible=feasible, title=title, currency=currency, size_px=size_px,
    ))


def supply_curve_figure(
    prices: np.ndarray,
    quantities: np.ndarray,
    *,
    requested_kw: float,
    price_cap: float,
    clearing_price: float,
    cleared_kw: float,
    feasible: bool,
    title: str,
    currency: str,
    size_px: tuple[int, int] = DEFAULT_SIZE_PX,
) -> Any:
    """The matplotlib Figure of `supply_curve_png` (for tests and callers that want other formats)."""
    p = np.asarray(prices, dtype=np.float64).ravel()
    q = np.asarray(quantities, dtype=np.float64).ravel()
    if p.size == 0 or q.size == 0:
        raise ValueError("the supply curve is empty: give at least one (price, quantity) point")
    if p.size != q.size:
        raise ValueError(f"prices and quantities differ in length ({p.size} vs {q.size})")
    if not (np.all(np.isfinite(p)) and np.all(np.isfinite(q))):
        raise ValueError("the supply curve has a non-finite price or quantity")
    requested_kw = _finite("requested_kw", requested_kw)
    price_cap = _finite("price_cap", price_cap)
    clearing_price = _finite("clearing_price", clearing_price)
    cleared_kw = _finite("cleared_kw", cleared_kw)
    order = np.argsort(p, kind="stable")
    p, q = p[order], q[order]
    unit = f"{currency}/kWh"

    k = _scale(size_px)  # font sizes below are for 960 × 600
    fig, ax = _figure(size_px)
    ax.plot(q, p, color=_COLORS["curve"], lw=2.2, label="Supply curve: kW the fleet offers at each price",
            drawstyle="default", marker="o" if p.size <= 30 else None, ms=3)
    ax.axvline(requested_kw, color=_COLORS["request"], lw=1.8, label=f"Requested reduction ({_kw(requested_kw)})")
    ax.axhline(price_cap, color=_COLORS["cap"], lw=1.6, ls="--", label=f"Price cap ({price_cap:.4f} {unit})")
    ax.plot([cleared_kw], [clearing_price], "o", color=_COLORS["clear"], ms=10 * k, mec="black", zorder=5,
            label="Clearing point (price paid, kW dispatched)")

    x_lo = min(0.0, float(q.min()), cleared_kw, requested_kw)
    x_hi = max(float(q.max()), cleared_kw, requested_kw)
    y_lo = min(0.0, float(p.min()), clearing_price, price_cap)
    y_hi = max(float(p.max()), clearing_price, price_cap)
    x_pad = 0.08 * (x_hi - x_lo or 1.0)
    y_pad = 0.12 * (y_hi - y_lo or 1.0)
    ax.set_xlim(x_lo - 0.02 * (x_hi - x_lo or 1.0), x_hi + x_pad)
    ax.set_ylim(y_lo, y_hi + y_pad)

    note = ax.annotate(
        f"cleared {_kw(cleared_kw)} at {clearing_price:.4f} {unit}",
        xy=(cleared_kw, clearing_price), xytext=_NOTE_SPOTS[0], textcoords="offset points",
        fontsize=12 * k, fontweight="bold", bbox={"boxstyle": "round,pad=0.3", "fc": "white", "ec": _COLORS["clear"]},
        arrowprops={"arrowstyle": "->", "color": "black"}, zorder=6,
    )
    note.set_in_layout(False)  # placed inside the axes below; the layout need not make room
    fig.suptitle(_wrap(title, size_px[0], 15 * k), fontsize=15 * k)
    if feasible:
        ax.set_title(
            _wrap(f"Request met: {_kw(cleared_kw)} of reduction at {clearing_price:.4f} {unit} "
                  f"(cap {price_cap:.4f} {unit})", size_px[0], 12.5 * k, "bold"),
            fontsize=12.5 * k, fontweight="bold", color=_COLORS["ok"],
        )
    else:
        ax.axvspan(min(cleared_kw, requested_kw), max(cleared_kw, requested_kw), color=_COLORS["bad"], alpha=0.08,
                   label="Shortfall: not offered even at the cap")
        ax.set_title(
            _wrap(f"INFEASIBLE: fleet offers only {_kw(cleared_kw)} at the cap "
                  f"({_kw(requested_kw)} requested, {_kw(requested_kw - cleared_kw)} short)", size_px[0],
                  12.5 * k, "bold"),
            fontsize=12.5 * k, fontweight="bold", color=_COLORS["bad"],
        )

    ax.set_xlabel("Load reduction offered by the fleet (kW)", fontsize=13 * k)
    ax.set_ylabel(f"Price paid per kWh of reduction ({unit})", fontsize=13 * k)
    ax.tick_params(labelsize=11 * k)
    ax.grid(True, alpha=0.3)
    fig.legend(loc="outside lower center", ncols=2 if size_px[0] >= 600 else 1, fontsize=11 * k,
               frameon=False)  # below the axes: never over the data
    ax.ticklabel_format(style="plain", useOffset=False)
    _place_note(fig, ax, note, k, [
        (q, p, 3),  # the curve matters most, then the request and cap lines
        (np.full(2, requested_kw), np.array(ax.get_ylim()), 1),
        (np.array(ax.get_xlim()), np.full(2, price_cap), 1),
    ])
    return fig


# Where the clearing note may go, in points from the clearing point: a supply curve rises to the
# right, so below-right and above-left of a point on it are usually empty; farther spots are tried
# when those would leave the axes or cover a line (an infeasible clearing sits at the top right).
_NOTE_SPOTS = sorted(
    ((dx, dy) for dx in (30, -30, 0, 90, -90, 180, -180) for dy in (-40, 40, -100, 100, -170, 170, -250, 250)),
    key=lambda d: (round(math.hypot(*d) / 60), (d[0] > 0) != (d[1] < 0), -d[0], d[1]),
)


def _align(note: Any, dx: float, dy: float) -> None:
    note.xyann = (dx, dy)
    note.set_horizontalalignment("left" if dx > 0 else "right" if dx < 0 else "center")
    note.set_verticalalignment("top" if dy < 0 else "bottom")


def _place_note(fig: Any, ax: Any, note: Any, k: float, lines: list[tuple[np.ndarray, np.ndarray, int]]) -> None:
    """Move the annotation `note` to the nearest of _NOTE_SPOTS where its box stays inside the
    axes and covers the fewest points of `lines` ((x, y, weight) in data units), so the note
    neither hides the curve nor runs off the picture. Deterministic: same figure, same choice."""
    from matplotlib.text import Text

    fig.canvas.draw()  # settle the layout: the axes' pixel box and data transform are final now
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    points, weights = [], []
    for x, y, weight in lines:  # every segment sampled every ~2 px
        xy = ax.transData.transform(np.column_stack([x, y]))
        for a, b in zip(xy[:-1], xy[1:]):
            n = int(min(1000, max(2, np.hypot(*(b - a)) / 2)))
            points.append(a + (b - a) * np.linspace(0.0, 1.0, n)[:, None])
            weights.append(np.full(n, weight))
        points.append(xy)
        weights.append(np.full(len(xy), weight))
    pts, w = np.concatenate(points), np.concatenate(weights)
    best: tuple[Any, ...] | None = None
    for order, (dx, dy) in enumerate(_NOTE_SPOTS):
        _align(note, dx * k, dy * k)
        note.update_positions(renderer)
        box = Text.get_window_extent(note, renderer).padded(6)  # 6 px: the rounded frame
        outside = (max(0.0, frame.x0 - box.x0) + max(0.0, box.x1 - frame.x1)
                   + max(0.0, frame.y0 - box.y0) + max(0.0, box.y1 - frame.y1))
        inside = (pts[:, 0] >= box.x0) & (pts[:, 0] <= box.x1) & (pts[:, 1] >= box.y0) & (pts[:, 1] <= box.y1)
        score = (outside > 0, float(w[inside].sum()), outside, order)
        if best is None or score < best[0]:
            best = (score, dx * k, dy * k)
    assert best is not None
    _align(note, best[1], best[2])


def _series(name: str, values: Sequence[float | None], n: int) -> np.ndarray:
    if len(values) != n:
        raise ValueError(f"{name} has {len(values)} values for {n} intervals")
    out = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    if np.any(np.isinf(out)):
        raise ValueError(f"{name} has an infinite value")
    return out


def _tick_labels(times: Sequence[datetime]) -> list[str]:
    """HH:MM, with the day added under the first label of each day when the times span days."""
    if len({t.date() for t in times}) == 1:
        return [t.strftime("%H:%M") for t in times]
    labels, last_day = [], None
    for t in times:
        labels.append(t.strftime("%H:%M\n%a %d %b") if t.date() != last_day else t.strftime("%H:%M"))
        last_day = t.date()
    return labels


def requested_vs_delivered_png(
    times: list[datetime],
    requested_kw: Sequence[float | None],
    cleared_kw: Sequence[float | None],
    delivered_kw: Sequence[float | None],
    *,
    title: str,
    tz: tzinfo | None = None,
    size_px: tuple[int, int] = DEFAULT_SIZE_PX,
) -> bytes:
    """Grouped bars per interval: requested, cleared and delivered (measured) reduction in kW.
    `times` are the interval starts (timezone-aware); they are labelled in local time — `tz`, or
    the zone of the first time. A None or NaN value (e.g. not measured yet) draws no bar."""
    n = len(times)
    if n == 0:
        raise ValueError("no intervals to plot: times is empty")
    if any(t.tzinfo is None or t.utcoffset() is None for t in times):
        raise ValueError("times must be timezone-aware (they are labelled in local time)")
    series = {
        "Requested": (_series("requested_kw", requested_kw, n), "#9e9e9e"),
        "Cleared (committed by the fleet)": (_series("cleared_kw", cleared_kw, n), "#1f77b4"),
        "Delivered (measured vs baseline)": (_series("delivered_kw", delivered_kw, n), "#2ca02c"),
    }
    zone = tz or times[0].tzinfo
    local = [t.astimezone(zone) for t in times]
    zone_name = "/".join(dict.fromkeys(t.tzname() or "local" for t in local))  # "PDT/PST" across a DST change

    fig, ax = _figure(size_px)
    x = np.arange(n)
    width = 0.8 / len(series)
    for i, (label, (values, color)) in enumerate(series.items()):
        ax.bar(x + (i - 1) * width, np.nan_to_num(values, nan=0.0), width,
               label=label, color=color, edgecolor="white", linewidth=0.5)
    delivered = series["Delivered (measured vs baseline)"][0]
    for i in np.flatnonzero(np.isnan(delivered)):
        ax.text(x[i] + width, 0, " not measured", rotation=90, ha="center", va="bottom", fontsize=9, color="#555555")
    step = max(1, math.ceil(n / 12))  # at most ~12 labels, whatever the number of intervals
    ax.set_xticks(x[::step], _tick_labels(local[::step]))
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xlabel(f"Interval start (local time, {zone_name})", fontsize=13)
    ax.set_ylabel("Load reduction (kW)", fontsize=13)
    ax.set_title(_wrap(title, size_px[0], 15), fontsize=15)
    ax.tick_params(labelsize=11)
    ax.grid(True, axis="y", alpha=0.3)
    ax.set_xlim(-0.6, n - 0.4)
    top = np.nanmax([np.nanmax(np.append(v, 0.0)) for v, _ in series.values()])
    bottom = np.nanmin([np.nanmin(np.append(v, 0.0)) for v, _ in series.values()])
    span = (top - bottom) or 1.0
    ax.set_ylim(bottom - 0.03 * span * (bottom < 0), top + 0.22 * span)  # headroom for the legend
    ax.legend(loc="upper center", ncols=3, fontsize=11, framealpha=0.95)
    ax.ticklabel_format(axis="y", style="plain", useOffset=False)
    return _png(fig)


_DELIVERY_COLORS = {"requested": "#444444", "cleared": "#1f77b4", "delivered": "#2ca02c", "negative": "#d62728",
                    "missing": "#9e9e9e"}


def _edge_labels(edges: Sequence[datetime]) -> list[str]:
    """HH:MM for each interval edge; the weekday and date under the first and at each new day."""
    labels, last_day = [], None
    for t in edges:
        labels.append(t.strftime("%H:%M\n%a %d %b") if t.date() != last_day else t.strftime("%H:%M"))
        last_day = t.date()
    return labels


def delivery_png(
    times: list[datetime],
    requested_kw: Sequence[float | None],
    cleared_kw: Sequence[float | None],
    delivered_kw: Sequence[float | None],
    *,
    interval_s: int,
    title: str,
    requested_kwh: float,
    delivered_kwh: float,
    paid: str,
    currency: str,
    credited_kwh: float | None = None,
    subtitle: str = "",
    tz: tzinfo | None = None,
    size_px: tuple[int, int] = DEFAULT_SIZE_PX,
) -> bytes:
    """A settled window for someone who has never heard of 2030.5: per interval (x, local time)
    the load reduction asked for (dashed black step), what the fleet committed to (cleared, blue
    step) and what the meters show it delivered against its baseline (green bars; red where the
    load went up instead; "no reading" where nothing was measured), in kW. The title names the
    program and the window in local time; the headline under it says "Delivered X of Y kWh asked
    (Z %) — paid CUR N for C kWh" (`paid` is a major-unit text, e.g. "2.56"; C the credited kWh,
    what was paid for: each device's reduction up to its commitment). `times` are
    the interval starts (aware); None or NaN values draw nothing. Fixed pixel size."""
    return _png(delivery_figure(
        times, requested_kw, cleared_kw, delivered_kw, interval_s=interval_s, title=title, requested_kwh=requested_kwh,
        delivered_kwh=delivered_kwh, paid=paid, currency=currency, credited_kwh=credited_kwh, subtitle=subtitle, tz=tz,
        size_px=size_px,
    ))


def delivery_figure(
    times: list[datetime],
    requested_kw: Sequence[float | None],
    cleared_kw: Sequence[float | None],
    delivered_kw: Sequence[float | None],
    *,
    interval_s: int,
    title: str,
    requested_kwh: float,
    delivered_kwh: float,
    paid: str,
    currency: str,
    credited_kwh: float | None = None,
    subtitle: str = "",
    tz: tzinfo | None = None,
    size_px: tuple[int, int] = DEFAULT_SIZE_PX,
) -> Any:
    """The matplotlib Figure of `delivery_png` (for tests and callers that want other formats)."""
    n = len(times)
    if n == 0:
        raise ValueError("no intervals to plot: times is empty")
    if any(t.tzinfo is None or t.utcoffset() is None for t in times):
        raise ValueError("times must be timezone-aware (they are labelled in local time)")
    if isinstance(interval_s, bool) or not isinstance(interval_s, int) or interval_s <= 0:
        raise ValueError(f"interval_s must be a positive whole number of seconds, got {interval_s!r}")
    req = _series("requested_kw", requested_kw, n)
    clr = _series("cleared_kw", cleared_kw, n)
    dlv = _series("delivered_kw", delivered_kw, n)
    requested_kwh = _finite("requested_kwh", requested_kwh)
    delivered_kwh = _finite("delivered_kwh", delivered_kwh)
    zone = tz or times[0].tzinfo
    local = [t.astimezone(zone) for t in times]
    edges = local + [(times[-1] + timedelta(seconds=interval_s)).astimezone(zone)]
    zone_name = "/".join(dict.fromkeys(t.tzname() or "local" for t in edges))

    k = _scale(size_px)
    fig, ax = _figure(size_px)
    x = np.arange(n + 1, dtype=np.float64)  # interval j spans [j, j + 1)
    measured = ~np.isnan(dlv)
    colors = [_DELIVERY_COLORS["negative"] if v < 0 else _DELIVERY_COLORS["delivered"] for v in np.nan_to_num(dlv)]
    if measured.any():
        ax.bar(x[:-1][measured] + 0.5, dlv[measured], 0.72, color=[c for c, m in zip(colors, measured) if m],
               edgecolor="white", linewidth=0.5, zorder=2)
    ax.bar([np.nan], [np.nan], color=_DELIVERY_COLORS["delivered"],  # the legend's entries, whatever was drawn
           label="Delivered: measured reduction vs the baseline (kW)")
    if (np.nan_to_num(dlv) < 0).any():
        ax.bar([np.nan], [np.nan], color=_DELIVERY_COLORS["negative"], label="Load went up instead (kW)")

    def step(values: np.ndarray, **kw: Any) -> None:
        ax.stairs(np.where(np.isnan(values), np.nan, values), x, baseline=None, zorder=3, **kw)

    # cleared as a wide translucent band, requested as a thin dashed line on top: both stay
    # visible where they coincide (the usual case when the fleet can cover the request)
    step(clr, color=_DELIVERY_COLORS["cleared"], lw=7 * k, alpha=0.55, label="Cleared: reduction the fleet committed to (kW)")
    step(req, color=_DELIVERY_COLORS["requested"], lw=1.8 * k, ls=(0, (5, 3)), label="Requested by the program (kW)")
    values = np.concatenate([v[~np.isnan(v)] for v in (req, clr, dlv)] + [np.zeros(1)])
    top, bottom = float(values.max()), float(values.min())
    span = (top - bottom) or 1.0
    ax.set_ylim(bottom - 0.06 * span * (bottom < 0), top + 0.12 * span)
    for j in np.flatnonzero(~measured):
        ax.text(j + 0.5, 0.02 * span, "no reading", rotation=90, ha="center", va="bottom",
                fontsize=10 * k, color=_DELIVERY_COLORS["missing"], zorder=4)
    ax.axhline(0, color="black", lw=0.8, zorder=1)
    # at most ~10 time labels, on round times (every 5, 10, 15, 30 minutes, 1, 2, 3 … hours)
    round_s = [c for c in (60, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)
               if c % interval_s == 0 and c * 10 >= n * interval_s]
    step_labels = round_s[0] // interval_s if round_s else max(1, math.ceil((n + 1) / 10))
    ax.set_xticks(x[::step_labels], _edge_labels(edges[::step_labels]))
    ax.set_xlim(0, n)
    minutes = interval_s // 60 if interval_s % 60 == 0 else interval_s / 60
    ax.set_xlabel(f"Local time ({zone_name}); each bar is one {minutes}-minute interval", fontsize=12.5 * k)
    ax.set_ylabel("Load reduction (kW)", fontsize=12.5 * k)
    ax.tick_params(labelsize=11 * k)
    ax.grid(True, axis="y", alpha=0.3)
    ax.ticklabel_format(axis="y", style="plain", useOffset=False)

    share = delivered_kwh / requested_kwh if requested_kwh > 0 else math.nan
    pct = f" ({share:.0%})".replace("%", " %") if math.isfinite(share) else ""
    credited = "" if credited_kwh is None else f" for {_finite('credited_kwh', credited_kwh):,.1f} kWh"
    headline = f"Delivered {delivered_kwh:,.1f} of {requested_kwh:,.1f} kWh asked{pct} — paid {currency} {paid}{credited}"
    if not measured.any():
        share = math.nan
        headline = f"Not measured: no meter readings cover this window — paid {currency} {paid}"
    good = math.isfinite(share) and share >= 0.9
    colour = _COLORS["ok"] if good else _COLORS["bad"] if not math.isfinite(share) or share < 0.5 else "#a35200"
    fig.suptitle(_wrap(title + (f"\n{subtitle}" if subtitle else ""), size_px[0], 14 * k), fontsize=14 * k)
    ax.set_title(_wrap(headline, size_px[0], 13 * k, "bold"), fontsize=13 * k, fontweight="bold", color=colour)
    fig.legend(loc="outside lower center", ncols=2 if size_px[0] >= 700 else 1, fontsize=10.5 * k, frameon=False)
    return fig


def envelope_png(
    times: Sequence[datetime],
    export_kw: Any,
    *,
    limit_kw: float,
    start: datetime,
    end: datetime,
    title: str,
    tz: tzinfo | None = None,
    size_px: tuple[int, int] = DEFAULT_SIZE_PX,
) -> bytes:
    """An export envelope and what the sites did under it: each site's export at its connection
    point from its mirrored readings (thin lines; `export_kw` is sites × times, NaN = no reading),
    the highest site's (bold), the envelope's limit over the window (red dashed) and the window
    shaded, x in local time (`tz`). `times` are the reading starts (aware). Fixed pixel size."""
    limit = _finite("limit_kw", limit_kw)
    data = np.atleast_2d(np.asarray(export_kw, dtype=np.float64))
    if data.shape[1] != len(times):
        raise ValueError(f"export_kw has {data.shape[1]} columns for {len(times)} times")
    fig, ax = _figure(size_px)
    x = [t.astimezone(tz) for t in times]
    ax.axvspan(start.astimezone(tz), end.astimezone(tz), color="#fff4cc", zorder=0, label="envelope window")
    for row in data:
        ax.plot(x, row, color=_COLORS["curve"], alpha=0.25, linewidth=0.8, drawstyle="steps-post")
    with np.errstate(all="ignore"):
        highest = np.where(np.isnan(data).all(axis=0), np.nan, np.nanmax(np.where(np.isnan(data), -np.inf, data), axis=0))
    ax.plot(x, highest, color=_COLORS["curve"], linewidth=2.2, drawstyle="steps-post",
            label=f"highest of {data.shape[0]} sites")
    ax.plot([start.astimezone(tz), end.astimezone(tz)], [limit, limit], color=_COLORS["request"], linestyle="--",
            linewidth=2.0, label=f"export limit {_kw(limit)} per site")
    inside = [(t >= start) and (t < end) for t in times]
    held = data[:, inside] if any(inside) else np.empty((data.shape[0], 0))
    over = int(np.sum(held > limit + 1e-3))
    measured = int(np.sum(~np.isnan(held)))
    fig.suptitle(_wrap(title, size_px[0], 13, "bold"), fontsize=13, fontweight="bold", x=0.01, ha="left")
    ax.set_title(f"{measured - over} of {measured} site readings in the window held under the envelope",
                 fontsize=10, loc="left", color=_COLORS["ok"] if not over else _COLORS["bad"])
    ax.set_xlabel("time (local)")
    ax.set_ylabel("export at the connection point (kW)")
    ax.set_ylim(bottom=min(0.0, float(np.nanmin(data)) if np.isfinite(data).any() else 0.0))
    from matplotlib.dates import DateFormatter

    span = (max(times) - min(times)).total_seconds() if times else 0
    ax.xaxis.set_major_formatter(DateFormatter("%H:%M:%S" if span < 3600 else "%H:%M", tz=tz))
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper center", fontsize=9)
    return _png(fig)
