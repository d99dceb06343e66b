"""Dynamic operating envelopes in flexibility programs: per-site export / import limits for each of
a program's windows, the CSIP-AUS controls that carry them, and how curtailment is measured (pure).

JSON form (a program's optional "envelope" key, programs.model):

    {"export_limit_kw": 1.5,        # the site may export at most this (kW), or null
     "import_limit_kw": null}       # the site may import at most this (kW), or null

Rules:

* Limits are per site: at the connection point (CSIP-AUS: the NMI), as opModExpLimW /
  opModImpLimW are. Each is null (no limit that way) or a number of kW from 0 (no export / import
  at all) to MAX_LIMIT_KW; at least one is given. A device not placed at a connection point is a
  site of its own.
* An envelope program asks for limits, not for a reduction: it has no clearing, its
  requested_kw is 0 (left out), and it pays a "fixed" incentive (programs.model checks this).
* Publishing (`limit_controls`): every member device gets one DERControl per window (per
  interval with interval_s) whose DERControlBase sets csipaus:opModExpLimW and/or
  csipaus:opModImpLimW, each an ActivePower value × 10^multiplier W (programs.controls.
  active_power: the value fits Int16, the least rounding error); the limit published is what M&V
  uses (`published_kw`).

M&V (`curtailment`), per device and M&V interval, from the meter's sign (import positive, kW) and
the program's baseline (programs.baselines: what the site would have done without the envelope):

* export: baseline export E_b = max(0, −BL'), actual export E_a = max(0, −actual);
  required curtailment s = max(0, E_b − L_exp); curtailed R = E_b − E_a where s > 0, else 0;
  excess above the envelope = max(0, E_a − L_exp);
* import: the same with BL' and actual themselves (B_b = max(0, BL'), B_a = max(0, actual)).
* Both directions add up (a site is rarely on both sides of its baseline in one interval).

Paid as programs.settlement pays a fixed incentive: rate_per_kwh × min(max(R, 0), s) × Δt — the
kWh of export (import) given up against the baseline, up to what the envelope required; nothing is
paid where the baseline was already inside the envelope. under_delivery_per_kwh × max(0, s − R)
× Δt = the kWh the site spent outside the envelope (s − R = E_a − L when s > 0). A missing reading
or baseline leaves the interval unmeasured (NaN): neither paid nor charged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Mapping

import numpy as np

from programs.controls import active_power

__all__ = ["Envelope", "EnvelopeError", "MAX_LIMIT_KW", "curtailment", "limit_controls", "published_kw"]

MAX_LIMIT_KW = 1_000_000.0  # 1 GW: a connection point, not a country
_KEYS = ("export_limit_kw", "import_limit_kw")
EXPORT_MODE, IMPORT_MODE = "opModExpLimW", "opModImpLimW"


class EnvelopeError(ValueError):
    """An invalid envelope; `errors` lists "envelope.<field>: problem" messages."""

    def __init__(self, errors: list[str]):
        self.errors = list(errors)
        super().__init__("invalid envelope: " + "; ".join(self.errors))


def _limit(name: str, v: object, errors: list[str]) -> float | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        errors.append(f"envelope.{name}: must be a number of kW or null, got {v!r}")
        return None
    try:
        x = float(v)
    except OverflowError:
        errors.append(f"envelope.{name}: must be at most {MAX_LIMIT_KW:g} kW")
        return None
    if not math.isfinite(x) or not 0.0 <= x <= MAX_LIMIT_KW:
        errors.append(f"envelope.{name}: must be from 0 to {MAX_LIMIT_KW:g} kW, got {v!r}")
        return None
    return x


@dataclass(frozen=True)
class Envelope:
    """Per-site export / import limits (kW) a program asks for in each window (module docstring)."""

    export_limit_kw: float | None = None
    import_limit_kw: float | None = None

    def __post_init__(self) -> None:
        errors: list[str] = []
        for name in _KEYS:
            object.__setattr__(self, name, _limit(name, getattr(self, name), errors))
        if not errors and self.export_limit_kw is None and self.import_limit_kw is None:
            errors.append("envelope.export_limit_kw: give export_limit_kw, import_limit_kw or both")
        if errors:
            raise EnvelopeError(errors)

    @classmethod
    def from_dict(cls, d: object) -> "Envelope":
        if not isinstance(d, Mapping):
            raise EnvelopeError([f"envelope: must be an object with {', '.join(_KEYS)}, got {d!r}"])
        unknown = [f"envelope.{k}: unknown field (known: {', '.join(_KEYS)})" for k in d if k not in _KEYS]
        if unknown:
            raise EnvelopeError(unknown)
        return cls(**dict(d))

    def to_dict(self) -> dict[str, Any]:
        return {"export_limit_kw": self.export_limit_kw, "import_limit_kw": self.import_limit_kw}


def _watts(kw: float) -> tuple[int, int]:
    """(value, multiplier) of the ActivePower closest to `kw` kW (programs.controls.active_power)."""
    return active_power(round(kw * 1e6))


def limit_controls(envelope: Envelope) -> dict[str, tuple[int, int]]:
    """The DERControlBase modes that carry the envelope: {"opModExpLimW": (value, multiplier), …}
    in the schema's order (opModImpLimW before opModExpLimW)."""
    out: dict[str, tuple[int, int]] = {}
    if envelope.import_limit_kw is not None:
        out[IMPORT_MODE] = _watts(envelope.import_limit_kw)
    if envelope.export_limit_kw is not None:
        out[EXPORT_MODE] = _watts(envelope.export_limit_kw)
    return out


def published_kw(envelope: Envelope) -> Envelope:
    """The envelope as devices receive it: each limit as its ActivePower says, in kW."""
    modes = limit_controls(envelope)

    def kw(mode: str) -> float | None:
        if mode not in modes:
            return None
        value, multiplier = modes[mode]
        return float(Fraction(value) * Fraction(10) ** multiplier / 1000)

    return Envelope(export_limit_kw=kw(EXPORT_MODE), import_limit_kw=kw(IMPORT_MODE))


@dataclass(frozen=True, eq=False)
class Curtailment:
    """Per device and M&V interval (arrays shaped like the baseline), kW: what the envelope
    required against the baseline, what was curtailed (NaN = not measurable), and the excess
    above the envelope (NaN = not measurable)."""

    required_kw: np.ndarray
    curtailed_kw: np.ndarray
    excess_kw: np.ndarray


def curtailment(baseline_kw: Any, actual_kw: Any, envelope: Envelope) -> Curtailment:
    """The envelope's M&V (module docstring): import-positive baseline BL' and actual, in kW."""
    b = np.asarray(baseline_kw, dtype=np.float64)
    a = np.asarray(actual_kw, dtype=np.float64)
    if b.shape != a.shape:
        raise ValueError(f"shapes: baseline {b.shape}, actual {a.shape}")
    required = np.zeros(b.shape)
    curtailed = np.zeros(b.shape)
    excess = np.zeros(b.shape)
    for limit, sign in ((envelope.export_limit_kw, -1.0), (envelope.import_limit_kw, 1.0)):
        if limit is None:
            continue
        with np.errstate(invalid="ignore"):
            flow_b = np.maximum(0.0, sign * b)  # NaN stays NaN
            flow_a = np.maximum(0.0, sign * a)
            need = np.maximum(0.0, np.nan_to_num(flow_b, nan=0.0) - limit)
            required += np.where(np.isnan(b), 0.0, need)
            curtailed += np.where(need > 0, flow_b - flow_a, 0.0)
            excess += np.maximum(0.0, flow_a - limit)
    unmeasured = np.isnan(a) | np.isnan(b)
    curtailed = np.where(unmeasured, np.nan, curtailed)
    excess = np.where(np.isnan(a), np.nan, excess)
    return Curtailment(required, curtailed, excess)
