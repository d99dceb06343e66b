"""Measurement and verification: baselines (what a device would have drawn without the event).

Pure: numpy arrays and plain data in, plain data out. Times are UTC epoch seconds (an aware
datetime is accepted for a single instant); loads are average kW per interval; NaN = missing.

Resampling (`resample`) meter readings into the program's intervals [start + jΔ, start + (j+1)Δ):

* A reading covers [t_i, t_i + d_i) with d = `reading_s` (one number or one per reading; default
  the smallest spacing of the readings, so a skipped reading is a gap, not a longer reading).
  Readings must not overlap. A NaN reading covers nothing.
* kind "energy": the value is kWh for its whole span, spread uniformly over it (a reading that
  straddles a boundary is split by overlap) and SUMMED per interval; kind "power": the value is
  the average kW over its span, TIME-WEIGHTED per interval. Both give average kW over the
  covered part of the interval: measured energy / covered time (never scaled up to the gaps).
* Coverage = covered seconds / Δ. An interval covered less than `min_coverage` (default 0.9) is
  missing: NaN and `missing` True. Nothing is invented.

Baselines (`baseline` for one device, `fleet_baselines` for devices × intervals on one time grid):

* Intervals: the event [start, end) is cut into n = (end − start) / Δ intervals (a whole number
  is required); the pre-event window W is [start − adjust_from_h, start − adjust_to_h) in REAL
  hours, m intervals of Δ (whole number required). A reading is found by its exact start time.
* Day types are LOCAL (the program's zone): a local date is a "weekday" (Mon–Fri, not in
  `holidays`) or "weekend" (Sat, Sun, holidays). With day_types "weekday_weekend" a candidate
  must have the event day's type; with "any" every day qualifies.
* Candidates are the local dates 1 … lookback_days before the event's local date, most recent
  first, minus the `excluded` dates (other event days, outages). A candidate is ELIGIBLE for a
  device when it has the right type and a reading for every interval the baseline needs there:
  the n event intervals and, when an adjustment is configured, the m window intervals.
* Same time of day = same LOCAL WALL-CLOCK time: interval k of the event day starts at wall time
  w_k (with a day offset when it crosses midnight); on candidate day d it is the reading starting
  at wall time w_k on d, converted with PEP 495 fold=0 as programs.windows does: a wall time in a
  spring-forward gap moves forward by the gap (02:30 → the 03:30 EDT reading); an ambiguous
  fall-back time is its first (daylight) occurrence. So on a 25-hour event day both repeated
  01:xx intervals get the same baseline, and a 23-hour event day simply has no 02:xx intervals.
* X-of-Y: the Y most recent eligible days; keep all (X = Y, e.g. 10-in-10) or the X with the
  highest load over the event intervals (sum of their kW; a tie goes to the more recent day).
  BL_t = mean over kept days of the reading at t's wall-clock time.
* Short history: with n_e < Y eligible days and n_e >= min_days (default min(5, X)) the n_e days
  are used and the highest min(X, n_e) kept: method "x_of_y_short". With n_e < min_days the
  baseline is FLAT: the mean actual load over W on the event day, method "pre_event_window",
  no adjustment; if W has a missing interval there is no baseline: method "none", NaN.
  `fallback_reason` says why; it is None for "x_of_y".
* Day-of adjustment (X-of-Y methods only), over W: "multiplicative" α = clip(ΣW actual / ΣW BL,
  1 − cap, 1 + cap), BL' = α BL (ΣW BL <= 0: α = 1, flag "adjustment_undefined"); "additive"
  δ = mean over W of (actual − BL), BL' = BL + δ (cap does not apply). upward_only: α >= 1,
  δ >= 0 (only raises the baseline). A missing actual in W: no adjustment, flag
  "adjustment_missing_data". Flags "adjustment_capped" / "adjustment_upward_only" say a limit bound.
* Results: reduction R_t = BL'_t − actual_t (kW; NaN where the actual is missing, flag
  "actual_missing"); energy E = Σ R_t Δt in kWh over the intervals where R_t is defined (NaN
  when no interval has one: no baseline, or no actual at all).
* Fleets: the gather, day selection, means and adjustments are numpy on (devices × days ×
  intervals) arrays (`x_of_y_days` is the core); only the result labels are built per device.
  Every figure is per device, so a large fleet is computed a chunk of devices at a time and the
  chunks joined (`FleetBaseline.concat`): memory is bounded by the chunk, not the fleet.

`BaselineRule` is a program's configuration; its JSON form (`to_dict`/`from_dict`) writes every key,
from_dict rejects unknown keys, and BaselineError names every wrong field.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from datetime import date, datetime, timedelta
from typing import Any, Iterable, Mapping, Sequence
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np

__all__ = [
    "ADJUSTMENTS", "DAY_TYPES", "KINDS", "METHODS",
    "BaselineError", "BaselineResult", "BaselineRule", "FleetBaseline", "Resampled",
    "baseline", "fleet_baselines", "grid_average", "needed_instants", "resample", "x_of_y_days",
]

KINDS = ("energy", "power")
METHODS = ("x_of_y",)
ADJUSTMENTS = ("none", "multiplicative", "additive")
DAY_TYPES = ("weekday_weekend", "any")
_RESULT_METHODS = ("x_of_y", "x_of_y_short", "pre_event_window", "none")
MAX_LOOKBACK_DAYS = 366


class BaselineError(ValueError):
    """Invalid baseline input or rule; `errors` lists one "field: problem" message per wrong field."""

    def __init__(self, errors: list[str]):
        self.errors = list(errors)
        super().__init__("invalid baseline: " + "; ".join(self.errors))


# --- field checks ------------------------------------------------------------------------------
def _number(v: object) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"must be a number, got {v!r}")
    x = float(v)
    if not math.isfinite(x):
        raise ValueError(f"must be a finite number, got {v!r}")
    return x


def _whole(v: object, lo: int, hi: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError(f"must be a whole number, got {v!r}")
    if not lo <= v <= hi:
        raise ValueError(f"must be between {lo} and {hi}, got {v}")
    return v


def _choice(options: tuple[str, ...]):
    def check(v: object) -> str:
        if v not in options:
            raise ValueError(f"must be one of {', '.join(options)}, got {v!r}")
        return str(v)
    return check


def _bool(v: object) -> bool:
    if not isinstance(v, bool):
        raise ValueError(f"must be true or false, got {v!r}")
    return v


def _hours(v: object) -> float:
    x = _number(v)
    if not 0 <= x <= 24:
        raise ValueError(f"must be between 0 and 24 hours, got {v!r}")
    return x


def _cap(v: object) -> float:
    x = _number(v)
    if not 0 <= x < 1:
        raise ValueError(f"must be at least 0 and below 1 (α stays within [1 − cap, 1 + cap]), got {v!r}")
    return x


_CHECKS = {
    "x": lambda v: _whole(v, 1, MAX_LOOKBACK_DAYS),
    "y": lambda v: _whole(v, 1, MAX_LOOKBACK_DAYS),
    "method": _choice(METHODS),
    "adjustment": _choice(ADJUSTMENTS),
    "cap": _cap,
    "upward_only": _bool,
    "adjust_from_h": _hours,
    "adjust_to_h": _hours,
    "min_days": lambda v: None if v is None else _whole(v, 1, MAX_LOOKBACK_DAYS),
    "lookback_days": lambda v: _whole(v, 1, MAX_LOOKBACK_DAYS),
    "day_types": _choice(DAY_TYPES),
}


@dataclass(frozen=True)
class BaselineRule:
    """A program's baseline (module docstring). Defaults: 10-in-10, no adjustment, cap 0.2,
    W = hours −4 … −2 before the start ([start − 4 h, start − 1 h)), min_days min(5, X),
    45 days of look-back, weekday vs weekend/holiday."""

    x: int = 10
    y: int = 10
    method: str = "x_of_y"
    adjustment: str = "none"
    cap: float = 0.2
    upward_only: bool = False
    adjust_from_h: float = 4.0
    adjust_to_h: float = 1.0
    min_days: int | None = None
    lookback_days: int = 45
    day_types: str = "weekday_weekend"

    def __post_init__(self) -> None:
        out: dict[str, Any] = {}
        errors: list[str] = []
        for f in fields(self):
            try:
                out[f.name] = _CHECKS[f.name](getattr(self, f.name))
            except ValueError as e:
                errors.append(f"{f.name}: {e}")
        ok = lambda *names: all(n in out for n in names)  # noqa: E731
        if ok("x", "y") and out["x"] > out["y"]:
            errors.append(f"x: keeps more days than it looks at (x {out['x']} > y {out['y']})")
        if ok("x", "min_days") and out["min_days"] is None:
            out["min_days"] = min(5, out["x"])
        if ok("y", "min_days") and out["min_days"] is not None and out["min_days"] > out["y"]:
            errors.append(f"min_days: must be at most y ({out['y']}), got {out['min_days']}")
        if ok("y", "lookback_days") and out["lookback_days"] < out["y"]:
            errors.append(f"lookback_days: must be at least y ({out['y']}), got {out['lookback_days']}")
        if ok("adjust_from_h", "adjust_to_h") and out["adjust_to_h"] >= out["adjust_from_h"]:
            errors.append(f"adjust_to_h: the window must end after it starts (adjust_to_h "
                          f"{out['adjust_to_h']!r} >= adjust_from_h {out['adjust_from_h']!r} hours before)")
        if errors:
            raise BaselineError(errors)
        for k, v in out.items():
            object.__setattr__(self, k, v)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "BaselineRule":
        if not isinstance(d, Mapping):
            raise BaselineError([f"baseline: must be a JSON object, got {type(d).__name__}"])
        known = [f.name for f in fields(cls)]
        unknown = [f"{k}: unknown field (known: {', '.join(known)})" for k in d if k not in known]
        try:
            rule = cls(**{k: v for k, v in d.items() if k in known})
        except BaselineError as e:
            raise BaselineError(unknown + e.errors) from None
        if unknown:
            raise BaselineError(unknown)
        return rule

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


# --- input checks ------------------------------------------------------------------------------
def _epoch(name: str, v: object) -> int:
    if isinstance(v, datetime):
        if v.tzinfo is None or v.utcoffset() is None:
            raise BaselineError([f"{name}: must be time-zone aware, got {v!r}"])
        v = v.timestamp()
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) \
            or not math.isfinite(v) or v != int(v):
        raise BaselineError([f"{name}: must be whole UTC epoch seconds or an aware datetime, got {v!r}"])
    return int(v)


def _interval(v: object) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v <= 0:
        raise BaselineError([f"interval_s: must be a positive whole number of seconds, got {v!r}"])
    return int(v)


def _times(times: object) -> np.ndarray:
    t = np.asarray(times, dtype=float)
    if t.ndim != 1 or not np.isfinite(t).all() or (t.size > 1 and (np.diff(t) <= 0).any()):
        raise BaselineError(["times: must be a 1-D array of finite, strictly increasing epoch seconds"])
    return t


def _values(values: object, n: int, ndim: tuple[int, ...]) -> np.ndarray:
    v = np.asarray(values, dtype=float)
    if v.ndim not in ndim or v.shape[-1] != n:
        shapes = " or ".join({1: f"({n},)", 2: f"(devices, {n})"}[k] for k in ndim)
        raise BaselineError([f"values: must have shape {shapes} to match times, got {v.shape}"])
    return v


def _zone(tz: object) -> ZoneInfo:
    try:
        if not isinstance(tz, str) or not tz:
            raise ValueError
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise BaselineError([f"tz: unknown time zone {tz!r} (use an IANA name such as 'America/New_York')"]) from None


def _count(name: str, span: float, interval_s: int) -> int:
    n = span / interval_s
    if n < 1 or n != int(n):
        raise BaselineError([f"{name}: must give a whole, positive number of {interval_s} s intervals "
                             f"({span:g} s)"])
    return int(n)


# --- resampling --------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Resampled:
    """Program intervals: `times` their starts, `kw` average kW ((n,) or (devices, n)), `missing`
    True where coverage < min_coverage (kw is NaN there), `coverage` the covered fraction."""

    times: np.ndarray
    kw: np.ndarray
    missing: np.ndarray
    coverage: np.ndarray


def resample(times: Any, values: Any, interval_s: int, start: Any, end: Any, kind: str, *,
             reading_s: Any = None, min_coverage: float = 0.9) -> Resampled:
    """Readings (starts `times`, `values` (R,) or (devices, R)) → average kW per program interval
    of [start, end). See the module docstring for the rules."""
    dt = _interval(interval_s)
    a, b = _epoch("start", start), _epoch("end", end)
    n = _count("end", b - a, dt)
    if kind not in KINDS:
        raise BaselineError([f"kind: must be one of {', '.join(KINDS)}, got {kind!r}"])
    if isinstance(min_coverage, bool) or not isinstance(min_coverage, (int, float)) or not 0 < min_coverage <= 1:
        raise BaselineError([f"min_coverage: must be a fraction in (0, 1], got {min_coverage!r}"])
    t = _times(times)
    v = _values(values, t.size, (1, 2))
    if reading_s is None:
        if t.size < 2:
            raise BaselineError(["reading_s: required when there are fewer than two readings"])
        d = np.full(t.size, np.diff(t).min())
    else:
        d = np.broadcast_to(np.asarray(reading_s, dtype=float), t.shape).astype(float)
        if not (np.isfinite(d) & (d > 0)).all():
            raise BaselineError(["reading_s: every reading must last a positive, finite time"])
    if (t[:-1] + d[:-1] > t[1:]).any():
        raise BaselineError(["reading_s: readings overlap (a reading lasts past the next one's start)"])
    ok = ~np.isnan(v)
    rate = np.where(ok, v * 3600.0 / d if kind == "energy" else v, 0.0)  # kW over the reading
    before_e = np.cumsum(rate * d, axis=-1) - rate * d                    # kW·s before reading i
    before_c = np.cumsum(ok * d, axis=-1) - ok * d                        # covered s before reading i

    edges = a + dt * np.arange(n + 1, dtype=float)
    i = np.searchsorted(t, edges, side="right") - 1
    inside = np.clip(edges - t[np.maximum(i, 0)], 0, d[np.maximum(i, 0)])
    ic = np.maximum(i, 0)
    cum_e = np.where(i >= 0, before_e[..., ic] + rate[..., ic] * inside, 0.0)
    cum_c = np.where(i >= 0, before_c[..., ic] + ok[..., ic] * inside, 0.0)
    energy, covered = np.diff(cum_e, axis=-1), np.diff(cum_c, axis=-1)
    coverage = covered / dt
    missing = coverage < min_coverage - 1e-12
    with np.errstate(invalid="ignore", divide="ignore"):
        kw = np.where(missing, np.nan, energy / np.where(covered > 0, covered, 1.0))
    return Resampled(edges[:-1], kw, missing, coverage)


@dataclass(frozen=True, eq=False)
class _Plan:
    dt: int
    n: int
    points: np.ndarray   # the event day: n event interval starts, then the m pre-event window ones
    k_need: int          # how many of `points` a candidate day must have (n, or n + m with adjustment)
    day0: date
    cands: list[date]    # candidate local dates, most recent first
    wanted: np.ndarray   # (C, k_need) the same wall-clock instants on each candidate day


def _plan(interval_s: Any, start: Any, end: Any, tz: Any, rule: BaselineRule) -> _Plan:
    dt = _interval(interval_s)
    a, b = _epoch("start", start), _epoch("end", end)
    zone = _zone(tz)
    n = _count("end", b - a, dt)
    w_from, w_to = round(rule.adjust_from_h * 3600), round(rule.adjust_to_h * 3600)
    m = _count("adjust_from_h", w_from - w_to, dt)
    points = np.concatenate([a + dt * np.arange(n), a - w_from + dt * np.arange(m)]).astype(np.int64)
    k_need = n + m if rule.adjustment != "none" else n
    day0 = datetime.fromtimestamp(a, zone).date()
    walls = [datetime.fromtimestamp(int(p), zone).replace(tzinfo=None) for p in points[:k_need]]
    offsets = [((w.date() - day0).days, w.time()) for w in walls]
    cands = [day0 - timedelta(days=i) for i in range(1, rule.lookback_days + 1)]
    wanted = np.array([[datetime.combine(d + timedelta(days=o), tm).replace(tzinfo=zone, fold=0).timestamp()
                        for o, tm in offsets] for d in cands], dtype=float).reshape(len(cands), k_need)
    return _Plan(dt, n, points, k_need, day0, cands, wanted)


def needed_instants(interval_s: int, start: Any, end: Any, tz: str, rule: BaselineRule) -> np.ndarray:
    """Every interval start `fleet_baselines` may look up for the event [start, end) (sorted,
    unique, int64 epoch s): the event and pre-event window intervals on the event day and the
    same wall-clock instants on every candidate day. Readings covering [t, t + Δ) for these t are
    all a baseline reads, so a loader need fetch nothing else."""
    p = _plan(interval_s, start, end, tz, rule)
    return np.unique(np.concatenate([p.points, p.wanted.ravel().astype(np.int64)]))


def grid_average(device_index: Any, starts: Any, durations: Any, watts: Any, n_devices: int,
                 grid: Any, interval_s: int, *, min_coverage: float = 0.9) -> np.ndarray:
    """Power readings of many devices → average kW per (device, grid interval), NaN = missing.

    Reading i of device `device_index[i]` is the average `watts[i]` over [starts[i], starts[i] +
    durations[i]); it counts in grid interval [g, g + Δ) by its overlap (time-weighted, as
    `resample` kind "power"); an interval covered less than `min_coverage` is NaN. `grid` (T,)
    holds interval starts Δ apart from grid[0] by whole multiples (gaps allowed); readings of one
    device must not overlap. Vectorised over all readings at once."""
    dt = _interval(interval_s)
    g = np.asarray(grid, dtype=np.int64)
    if g.ndim != 1 or (g.size > 1 and (np.diff(g) <= 0).any()) or (g.size and ((g - g[0]) % dt).any()):
        raise BaselineError(["grid: must be increasing interval starts a whole number of intervals apart"])
    dev = np.asarray(device_index, dtype=np.int64)
    st = np.asarray(starts, dtype=np.int64)
    du = np.asarray(durations, dtype=np.int64)
    w = np.asarray(watts, dtype=np.float64)
    if not (dev.shape == st.shape == du.shape == w.shape) or dev.ndim != 1:
        raise BaselineError(["readings: device_index, starts, durations and watts must be 1-D and equal in length"])
    if (du <= 0).any():
        raise BaselineError(["durations: every reading must last a positive time"])
    T = g.size
    out = np.full((n_devices, T), np.nan)
    if T == 0 or st.size == 0:
        return out
    origin = int(g[0])
    gk = (g - origin) // dt
    first = (st - origin) // dt
    nb = (st + du - 1 - origin) // dt - first + 1
    rep = np.repeat(np.arange(st.size), nb)
    k = first[rep] + (np.arange(rep.size) - np.repeat(np.cumsum(nb) - nb, nb))
    bin_start = origin + k * dt
    overlap = (np.minimum(st[rep] + du[rep], bin_start + dt) - np.maximum(st[rep], bin_start)).astype(np.float64)
    col = np.clip(np.searchsorted(gk, k), 0, T - 1)
    keep = (gk[col] == k) & (overlap > 0) & ~np.isnan(w[rep])
    flat = dev[rep][keep] * T + col[keep]
    energy = np.bincount(flat, weights=(w[rep] * overlap)[keep], minlength=n_devices * T).reshape(n_devices, T)
    covered = np.bincount(flat, weights=overlap[keep], minlength=n_devices * T).reshape(n_devices, T)
    ok = covered >= (min_coverage * dt - 1e-9)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(ok, energy / np.where(covered > 0, covered, 1.0) / 1000.0, np.nan)
    return out


# --- the core: X-of-Y over (devices × days × intervals) -----------------------------------------
def x_of_y_days(days: np.ndarray, usable: np.ndarray, x: int, y: int, n_event: int
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`days` (D, C, K): each device's readings on C candidate days (most recent first) at the K
    needed wall-clock times (the first `n_event` are the event's); `usable` (C,) or (D, C): the
    day has the right type and is not excluded. Returns (baseline (D, K), kept (D, C) bool,
    n_eligible (D,) = eligible days among the Y most recent, <= Y). Rules: module docstring."""
    days = np.asarray(days, dtype=float)
    eligible = np.broadcast_to(usable, days.shape[:2]) & ~np.isnan(days).any(axis=2)
    in_y = eligible & (np.cumsum(eligible, axis=1) <= y)
    n_el = in_y.sum(axis=1)
    score = np.where(in_y, np.nan_to_num(days[:, :, :n_event]).sum(axis=2), -np.inf)
    order = np.argsort(-score, axis=1, kind="stable")        # ties: the more recent (lower index)
    rank = np.argsort(order, axis=1, kind="stable")
    kept = in_y & (rank < np.minimum(x, n_el)[:, None])
    k = kept.sum(axis=1)
    total = np.where(kept[:, :, None], days, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        base = np.where(k[:, None] > 0, total / np.maximum(k, 1)[:, None], np.nan)
    return base, kept, n_el


# --- results -----------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class BaselineResult:
    """One device's M&V over the event intervals (starts `interval_starts`, epoch s): `baseline`
    BL_t, `adjusted` BL'_t = alpha·BL_t + delta_kw, `actual`, `reduction` R_t (kW), `energy_kwh` E,
    `days_used` (kept local dates, most recent first), `method`, `fallback_reason`, `flags`."""

    interval_starts: np.ndarray
    baseline: np.ndarray
    adjusted: np.ndarray
    actual: np.ndarray
    reduction: np.ndarray
    energy_kwh: float
    alpha: float
    delta_kw: float
    days_used: tuple[date, ...]
    n_eligible: int
    method: str
    fallback_reason: str | None
    flags: tuple[str, ...]


@dataclass(frozen=True, eq=False)
class FleetBaseline:
    """The same for D devices: arrays (D, n) / (D,), labels one tuple entry per device."""

    interval_starts: np.ndarray
    baseline: np.ndarray
    adjusted: np.ndarray
    actual: np.ndarray
    reduction: np.ndarray
    energy_kwh: np.ndarray
    alpha: np.ndarray
    delta_kw: np.ndarray
    days_used: tuple[tuple[date, ...], ...]
    n_eligible: np.ndarray
    method: tuple[str, ...]
    fallback_reason: tuple[str | None, ...]
    flags: tuple[tuple[str, ...], ...]

    @classmethod
    def concat(cls, parts: "Sequence[FleetBaseline]") -> "FleetBaseline":
        """Fleets computed a chunk of devices at a time (same grid, rule and event), joined in
        order: the same as one `fleet_baselines` over all their devices (every figure is per
        device)."""
        if not parts:
            raise BaselineError(["parts: need at least one fleet"])
        if len(parts) == 1:
            return parts[0]
        arrays = {name: np.concatenate([getattr(p, name) for p in parts]) for name in (
            "baseline", "adjusted", "actual", "reduction", "energy_kwh", "alpha", "delta_kw", "n_eligible")}
        labels = {name: tuple(x for p in parts for x in getattr(p, name)) for name in (
            "days_used", "method", "fallback_reason", "flags")}
        return cls(interval_starts=parts[0].interval_starts, **arrays, **labels)

    def device(self, i: int) -> BaselineResult:
        return BaselineResult(
            self.interval_starts, self.baseline[i], self.adjusted[i], self.actual[i], self.reduction[i],
            float(self.energy_kwh[i]), float(self.alpha[i]), float(self.delta_kw[i]), self.days_used[i],
            int(self.n_eligible[i]), self.method[i], self.fallback_reason[i], self.flags[i])


# --- baselines ---------------------------------------------------------------------------------
def _day_type(d: date, holidays: frozenset[date]) -> str:
    return "weekend" if d.weekday() >= 5 or d in holidays else "weekday"


def _dates(name: str, v: Iterable[date]) -> frozenset[date]:
    out = frozenset(v)
    bad = [d for d in out if not isinstance(d, date) or isinstance(d, datetime)]
    if bad:
        raise BaselineError([f"{name}: must be local dates, got {bad[0]!r}"])
    return out


def baseline(times: Any, values: Any, interval_s: int, start: Any, end: Any, tz: str,
             rule: BaselineRule, excluded: Iterable[date] = (), holidays: Iterable[date] = ()
             ) -> BaselineResult:
    """One device: `values` (T,) average kW at interval starts `times`. See `fleet_baselines`."""
    v = _values(values, _times(times).size, (1,))
    return fleet_baselines(times, v[None, :], interval_s, start, end, tz, rule, excluded, holidays).device(0)


def fleet_baselines(times: Any, values: Any, interval_s: int, start: Any, end: Any, tz: str,
                    rule: BaselineRule, excluded: Iterable[date] = (), holidays: Iterable[date] = ()
                    ) -> FleetBaseline:
    """D devices on one grid: `values` (D, T) average kW per program interval starting at `times`
    (1-D), the event [start, end), the program's zone `tz`, `excluded` and `holidays` local dates."""
    if not isinstance(rule, BaselineRule):
        raise BaselineError([f"rule: must be a BaselineRule, got {rule!r}"])
    t = _times(times)
    vals = _values(values, t.size, (2,))
    excl, hol = _dates("excluded", excluded), _dates("holidays", holidays)
    p = _plan(interval_s, start, end, tz, rule)
    dt, n, points, k_need, day0, cands, wanted = p.dt, p.n, p.points, p.k_need, p.day0, p.cands, p.wanted
    want_type = _day_type(day0, hol)
    usable = np.array([d not in excl and (rule.day_types == "any" or _day_type(d, hol) == want_type)
                       for d in cands], dtype=bool)

    def gather(instants: np.ndarray) -> np.ndarray:  # (..., ) instants -> (D, ...) values, NaN if absent
        pos = np.clip(np.searchsorted(t, instants), 0, max(t.size - 1, 0))
        found = (t[pos] == instants) if t.size else np.zeros(instants.shape, bool)
        got = vals[:, pos] if t.size else np.full((vals.shape[0],) + instants.shape, np.nan)
        return np.where(found, got, np.nan)

    days = gather(wanted)                                    # (D, C, k_need)
    base, kept, n_el = x_of_y_days(days, usable, rule.x, rule.y, n)
    actual_all = gather(points.astype(float))                # (D, n + m)
    actual, act_w = actual_all[:, :n], actual_all[:, n:]
    w_ok = ~np.isnan(act_w).any(axis=1)

    code = np.where(n_el >= rule.y, 0, np.where(n_el >= rule.min_days, 1, np.where(w_ok, 2, 3)))
    D = vals.shape[0]
    alpha, delta = np.ones(D), np.zeros(D)
    capped, clamped, undefined = np.zeros(D, bool), np.zeros(D, bool), np.zeros(D, bool)
    adjustable = (code <= 1) & w_ok
    if rule.adjustment != "none":
        bl_w = base[:, n:]
        if rule.adjustment == "multiplicative":
            s_bl = bl_w.sum(axis=1)
            undefined = adjustable & ~(s_bl > 0)
            with np.errstate(invalid="ignore", divide="ignore"):
                raw = np.where(adjustable & ~undefined, act_w.sum(axis=1) / np.where(s_bl > 0, s_bl, 1.0), 1.0)
            alpha = np.clip(raw, 1 - rule.cap, 1 + rule.cap)
            capped = alpha != raw
            if rule.upward_only:
                clamped, alpha = alpha < 1, np.maximum(alpha, 1.0)
        else:
            raw = np.where(adjustable, np.nan_to_num((act_w - bl_w).mean(axis=1)), 0.0)
            delta = np.maximum(raw, 0.0) if rule.upward_only else raw
            clamped = delta != raw
    flat = np.where(w_ok, np.where(w_ok[:, None], act_w, 0.0).mean(axis=1), np.nan)
    bl = np.where((code <= 1)[:, None], base[:, :n], np.where((code == 2)[:, None], flat[:, None], np.nan))
    adjusted = alpha[:, None] * bl + delta[:, None]
    reduction = adjusted - actual
    defined = ~np.isnan(reduction).all(axis=1)
    energy = np.where(defined, np.nansum(reduction, axis=1) * dt / 3600.0, np.nan)

    methods, reasons, flags, used = [], [], [], []
    for i in range(D):  # labels only; every number above is computed for the whole fleet at once
        c, ne = int(code[i]), int(n_el[i])
        have = f"{ne} eligible day{'s' if ne != 1 else ''} in the last {rule.lookback_days} days ({rule.y} wanted)"
        methods.append(_RESULT_METHODS[c])
        reasons.append(None if c == 0 else
                       f"{have}: used those (min_days {rule.min_days})" if c == 1 else
                       f"{have} < min_days {rule.min_days}: flat baseline = mean load of the pre-event window"
                       if c == 2 else
                       f"{have} < min_days {rule.min_days} and the pre-event window has missing data: no baseline")
        f = [name for name, on in (
            ("short_history", c == 1), ("flat_fallback", c == 2), ("no_baseline", c == 3),
            ("adjustment_missing_data", rule.adjustment != "none" and c <= 1 and not w_ok[i]),
            ("adjustment_undefined", undefined[i]), ("adjustment_capped", capped[i]),
            ("adjustment_upward_only", clamped[i]), ("actual_missing", bool(np.isnan(actual[i]).any())),
        ) if on]
        flags.append(tuple(f))
        used.append(tuple(d for d, k in zip(cands, kept[i]) if k) if c <= 1 else ())
    return FleetBaseline(points[:n].astype(float), bl, adjusted, actual, reduction, energy, alpha, delta,
                         tuple(used), n_el, tuple(methods), tuple(reasons), tuple(flags))
