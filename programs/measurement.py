"""A program's measurement-and-settlement terms, and how a window's delivery is measured (pure).

Configuration (`Terms`, the program's optional "measurement" key; every key has a default):

    {"interval_s": null,          # M&V interval Δ; null: gcd(window, clearing interval, 900)
     "delay_s": 900,              # settle this long after the window ends (late readings)
     "resettle_days": 3,          # re-check settled windows this long for late readings
     "baseline": {...},           # programs.baselines.BaselineRule (default 10-in-10)
     "split": {...},              # programs.settlement.RevenueSplit (default: all to the prosumer)
     "allow_net_negative": false, # may penalties exceed what a device earned?
     "holidays": [],              # local dates counted as weekend days ("2026-12-25")
     "excluded_days": []}         # local dates never used as baseline days (outages, other events)

Δ must divide an hour (so a day earlier on a DST change is still on the grid), divide the window's
nominal length and, when the program clears per interval, its interval_s: M&V intervals never
straddle two clearings.

Performance (`performance`), per device d and M&V interval t, from a fleet baseline:
reduction R = BL' − actual (kW, from programs.baselines), setpoint s ≥ 0 (the cleared reduction
of the clearing interval containing t), credited min(max(R, 0), s), shortfall max(0, s − R);
a device's performance = Σ credited / Σ s over intervals with a defined R (NaN when it had no
setpoint or no measurable interval). The window's curve per interval: requested, cleared (Σ s) and
delivered (Σ R over devices with a defined R, how many devices that is, and the measured share).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Mapping

import numpy as np

from programs.baselines import BaselineError, BaselineRule
from programs.settlement import RevenueSplit, SettlementError

__all__ = ["DEFAULT_INTERVAL_S", "Performance", "Terms", "TermsError", "measurement_interval", "performance"]

DEFAULT_INTERVAL_S = 900
MAX_DELAY_S = 7 * 86400
MAX_RESETTLE_DAYS = 31
_KEYS = ("interval_s", "delay_s", "resettle_days", "baseline", "split", "allow_net_negative", "holidays",
         "excluded_days")
MAX_DAYS_LISTED = 1000


class TermsError(ValueError):
    """Invalid measurement terms; `errors` names every wrong field (prefixed "measurement.")."""

    def __init__(self, errors: list[str]):
        self.errors = list(errors)
        super().__init__("invalid measurement terms: " + "; ".join(self.errors))


def _whole(name: str, v: object, lo: int, hi: int, errors: list[str]) -> int | None:
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        errors.append(f"measurement.{name}: must be a whole number from {lo} to {hi}, got {v!r}")
        return None
    return v


@dataclass(frozen=True)
class Terms:
    """How a program's windows are measured and paid (module docstring)."""

    interval_s: int | None = None
    delay_s: int = 900
    resettle_days: int = 3
    baseline: BaselineRule = field(default_factory=BaselineRule)
    split: RevenueSplit = field(default_factory=RevenueSplit)
    allow_net_negative: bool = False
    holidays: tuple[date, ...] = ()
    excluded_days: tuple[date, ...] = ()

    def __post_init__(self) -> None:
        errors: list[str] = []
        for name in ("holidays", "excluded_days"):
            value = getattr(self, name)
            if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)) or len(value) > MAX_DAYS_LISTED:
                errors.append(f"measurement.{name}: must be a list of at most {MAX_DAYS_LISTED} dates, got {value!r}")
                continue
            days = []
            for v in value:
                try:
                    days.append(v if isinstance(v, date) and not isinstance(v, datetime) else date.fromisoformat(v))
                except (TypeError, ValueError):
                    errors.append(f"measurement.{name}: {v!r} is not a date like \"2026-12-25\"")
            object.__setattr__(self, name, tuple(sorted(set(days))))
        if self.interval_s is not None:
            iv = _whole("interval_s", self.interval_s, 60, 3600, errors)
            if iv is not None and 3600 % iv:
                errors.append(f"measurement.interval_s: must divide an hour (60, 300, 900, …), got {iv}")
        _whole("delay_s", self.delay_s, 0, MAX_DELAY_S, errors)
        _whole("resettle_days", self.resettle_days, 0, MAX_RESETTLE_DAYS, errors)
        if not isinstance(self.baseline, BaselineRule):
            errors.append(f"measurement.baseline: must be a BaselineRule, got {self.baseline!r}")
        if not isinstance(self.split, RevenueSplit):
            errors.append(f"measurement.split: must be a RevenueSplit, got {self.split!r}")
        if not isinstance(self.allow_net_negative, bool):
            errors.append(f"measurement.allow_net_negative: must be true or false, got {self.allow_net_negative!r}")
        if errors:
            raise TermsError(errors)

    @classmethod
    def from_dict(cls, d: object) -> "Terms":
        if not isinstance(d, Mapping):
            raise TermsError([f"measurement: must be a JSON object, got {d!r}"])
        errors = [f"measurement.{k}: unknown field (known: {', '.join(_KEYS)})" for k in d if k not in _KEYS]
        kw: dict[str, Any] = {k: d[k] for k in _KEYS if k in d}
        if "baseline" in kw:
            try:
                kw["baseline"] = BaselineRule.from_dict(kw["baseline"])
            except BaselineError as e:
                errors += [f"measurement.baseline.{m}" for m in e.errors]
                del kw["baseline"]
        if "split" in kw:
            try:
                kw["split"] = RevenueSplit.from_dict(kw["split"])
            except SettlementError as e:
                errors += [f"measurement.split.{m}" for m in e.errors]
                del kw["split"]
        try:
            terms = cls(**kw)
        except TermsError as e:
            errors += e.errors
        if errors:
            raise TermsError(errors)
        return terms

    def to_dict(self) -> dict[str, Any]:
        return {"interval_s": self.interval_s, "delay_s": self.delay_s, "resettle_days": self.resettle_days,
                "baseline": self.baseline.to_dict(), "split": self.split.to_dict(),
                "allow_net_negative": self.allow_net_negative,
                "holidays": [d.isoformat() for d in self.holidays],
                "excluded_days": [d.isoformat() for d in self.excluded_days]}


def measurement_interval(terms: Terms, window_s: int, clearing_interval_s: int | None) -> int:
    """Δ for a program: the configured one, else gcd(window, clearing interval, 900) (≥ 60 s).

    Raises TermsError when Δ does not fit the window or the clearing intervals."""
    base = math.gcd(window_s, clearing_interval_s or window_s)
    dt = terms.interval_s if terms.interval_s is not None else math.gcd(base, DEFAULT_INTERVAL_S)
    if dt < 60 or 3600 % dt:
        raise TermsError([f"measurement.interval_s: set it: the window ({window_s} s) has no M&V interval "
                          f"of 60 s or more that divides both it and an hour"])
    errors = []
    if window_s % dt:
        errors.append(f"measurement.interval_s: {dt} s does not divide the window ({window_s} s)")
    if clearing_interval_s is not None and clearing_interval_s % dt:
        errors.append(f"measurement.interval_s: {dt} s does not divide the program's interval_s "
                      f"({clearing_interval_s} s): an M&V interval would straddle two clearings")
    if errors:
        raise TermsError(errors)
    return dt


@dataclass(frozen=True, eq=False)
class Performance:
    """Per device (D, n) arrays and per interval (n,) window totals (module docstring)."""

    setpoint_kw: np.ndarray       # (D, n)
    credited_kw: np.ndarray       # (D, n), NaN where R is undefined
    shortfall_kw: np.ndarray      # (D, n), NaN where R is undefined
    performance: np.ndarray       # (D,)
    requested_kw: np.ndarray      # (n,)
    cleared_kw: np.ndarray        # (n,)
    delivered_kw: np.ndarray      # (n,) Σ R over measured devices
    credited_total_kw: np.ndarray  # (n,)
    measured_devices: np.ndarray  # (n,) how many devices have a defined R


def performance(reduction_kw: Any, setpoint_kw: Any, requested_kw: Any) -> Performance:
    """reduction (D, n) kW (NaN = not measurable), setpoint (D, n) kW >= 0, requested (n,) kW."""
    r = np.asarray(reduction_kw, dtype=np.float64)
    s = np.asarray(setpoint_kw, dtype=np.float64)
    req = np.asarray(requested_kw, dtype=np.float64)
    if r.ndim != 2 or s.shape != r.shape or req.shape != (r.shape[1],):
        raise ValueError(f"shapes: reduction {r.shape}, setpoint {s.shape}, requested {req.shape}")
    if np.isnan(s).any() or (s < 0).any():
        raise ValueError("setpoint_kw: must be 0 or more everywhere")
    defined = ~np.isnan(r)
    credited = np.where(defined, np.minimum(np.maximum(np.nan_to_num(r), 0.0), s), np.nan)
    shortfall = np.where(defined, np.maximum(s - np.nan_to_num(r), 0.0), np.nan)
    s_meas = np.where(defined, s, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        perf = np.where(s_meas > 0, np.nansum(credited, axis=1) / np.where(s_meas > 0, s_meas, 1.0), np.nan)
    return Performance(
        setpoint_kw=s, credited_kw=credited, shortfall_kw=shortfall, performance=perf,
        requested_kw=req, cleared_kw=s.sum(axis=0), delivered_kw=np.where(defined, r, 0.0).sum(axis=0),
        credited_total_kw=np.nansum(credited, axis=0), measured_devices=defined.sum(axis=0),
    )
