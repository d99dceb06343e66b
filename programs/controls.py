"""From a cleared power setpoint to the numbers of a device control (2030.5 DERControl, OCPP).

Pure: this module returns integers and plain dicts; the server renders them to XML / JSON.

Sign convention (the seeds'): a setpoint is POWER in kW, positive = generation / discharge /
export, negative = consumption / charging.

Mapping by device kind (`control_for`); D is the rating the percentage is taken of:

    kind        setpoint s (kW)  mode          value                             D (W)
    ----------  ---------------  ------------  --------------------------------  -------------------
    battery     s > 0            opModFixedW   +hundredths of % of D, ≤ +10000   setMaxDischargeRateW,
                                                                                 else setMaxW
    battery     s < 0            opModFixedW   −hundredths of % of D, ≥ −10000   setMaxChargeRateW
    battery     s = 0            opModFixedW   0 (hold idle)                     none needed
    ev_charger  s < 0            opModFixedW   −hundredths of % of D (hold the   setMaxChargeRateW
                                               charging rate), ≥ −10000
    ev_charger  s ≥ 0            opModFixedW   0; s > 0 is clamped (V1G: no V2G) none needed
    pv          s ≥ 0            opModMaxLimW  hundredths of % of D, ≤ 10000     setMaxW
                                               (a ceiling: PV can only curtail)
    pv          s < 0            opModMaxLimW  0, clamped (PV cannot consume)    none needed
    load        s ≤ 0            opModTargetW  ActivePower value × 10^mult W     setMaxW if known
                                               (negative = consumption)          (bounds |s|)
    load        s > 0            opModTargetW  0, clamped (a load cannot export) none needed

How a reduction becomes a setpoint is the clearing's business (programs.clearing); here a battery
reduces net import by discharging (s > 0) or charging less (s closer to 0), an EV charger by
charging at a lower rate, a load by consuming less, a PV inverter's setpoint is the generation
ceiling it may not exceed.

Ratings (`ControlRatings`, W, None when unknown). A setting wins over a rating; each setting falls
back to its own rating, as the 2030.5 schema says ("setMaxW … Defaults to rtgMaxW", likewise for
setMaxChargeRateW and setMaxDischargeRateW), because that is also how the device resolves the
percentage it receives. opModFixedW's schema text allows "%setMaxW or %setMaxDischargeRateW" for
positive values; we use setMaxDischargeRateW (effective) when known and setMaxW (effective)
otherwise. A negative opModFixedW is % of setMaxChargeRateW only: setMaxW is never used for
charging, since the device would not read it that way. A mapping that needs a rating nobody
reported raises `ControlError` naming it.

Rounding (one rule for the scalar and the fleet version, which agree exactly):
1. Power and ratings are quantized to whole milliwatts: m = round-half-away(fl(x × 10^k)) where
   fl is the IEEE double product (k = 6 for kW, 3 for W). This absorbs binary float noise
   (0.35 kW is 350000 mW, not 349999.99…) for any value given with at most 6 decimals in kW / 3
   in W, and changes nothing a device can resolve.
2. Everything after is exact integer arithmetic: hundredths of % = round-half-away(m × 10000 / D_mW)
   (never the half-even of Python's round), clamped to the type's range; `clamped` is True when
   |power| exceeds D or the sign is one the kind cannot follow.
Bound: when not clamped, |commanded − setpoint| ≤ half a unit of the encoding + 0.5 mW (one unit of
opModFixedW is D/10000: 1 W on a 10 kW device, so ≤ 0.5 W plus the 0.5 mW of step 1).

OCPP (`set_charging_profile`): the SetChargingProfile request payload of OCPP 1.6 or 2.0.1 with
one schedule period; amps per phase = W / (voltage × phases); limits have one decimal (rounded
half away from zero).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from typing import Any, Literal

import numpy as np

from programs.kinds import DeviceKind

__all__ = [
    "ControlPlan",
    "ControlRatings",
    "ControlError",
    "active_power",
    "control_for",
    "der_type_kind",
    "fixed_w_hundredths",
    "fleet_controls",
    "percent_hundredths",
    "set_charging_profile",
]

FULL_SCALE = 10_000  # hundredths of a percent in 100 %
INT16_MIN, INT16_MAX = -(2**15), 2**15 - 1
# PowerOfTenMultiplierType values tried for opModTargetW: milli (10^-3) … giga (10^9).
TARGET_W_MULTIPLIERS = range(-3, 10)
_MAX_RATING_MW = 10**14  # 100 GW: keeps the fleet version's int64 products below 2^63

MODE_FIXED_W = "opModFixedW"
MODE_MAX_LIM_W = "opModMaxLimW"
MODE_TARGET_W = "opModTargetW"


class ControlError(ValueError):
    """A setpoint cannot be turned into a control: a missing or invalid rating, a bad value."""


@dataclass(frozen=True, slots=True)
class ControlRatings:
    """A device's limits in W, as reported in DERSettings (set_*) and DERCapability (rtg_*);
    None when the device did not report them."""

    set_max_w: float | None = None
    set_max_charge_rate_w: float | None = None
    set_max_discharge_rate_w: float | None = None
    rtg_max_w: float | None = None
    rtg_max_charge_rate_w: float | None = None
    rtg_max_discharge_rate_w: float | None = None

    def max_w(self) -> tuple[float, str] | None:
        """Effective setMaxW (setMaxW, else rtgMaxW) and the name of the field it came from."""
        return _first(self, ("set_max_w", "setMaxW"), ("rtg_max_w", "rtgMaxW"))

    def max_charge_rate_w(self) -> tuple[float, str] | None:
        return _first(
            self,
            ("set_max_charge_rate_w", "setMaxChargeRateW"),
            ("rtg_max_charge_rate_w", "rtgMaxChargeRateW"),
        )

    def max_discharge_rate_w(self) -> tuple[float, str] | None:
        return _first(
            self,
            ("set_max_discharge_rate_w", "setMaxDischargeRateW"),
            ("rtg_max_discharge_rate_w", "rtgMaxDischargeRateW"),
        )


def _first(ratings: ControlRatings, *fields: tuple[str, str]) -> tuple[float, str] | None:
    for attr, wire_name in fields:
        value = getattr(ratings, attr)
        if value is None:
            continue
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise ControlError(f"{wire_name} must be a positive number of W, got {value!r}")
        return float(value), wire_name
    return None


@dataclass(frozen=True, slots=True)
class ControlPlan:
    """The control for one device: `mode` is the DERControlBase element to set, `value` its
    integer (hundredths of % for opModFixedW / opModMaxLimW, the ActivePower value for
    opModTargetW, with `multiplier`); `commanded_kw` is what those integers mean in kW (seed sign
    convention; for opModMaxLimW a ceiling); `basis` names the rating the % is of (None if none)."""

    kind: DeviceKind
    mode: str
    value: int
    multiplier: int | None
    commanded_kw: float
    clamped: bool
    basis: str | None = None
    basis_w: float | None = None


# --- exact scalar arithmetic --------------------------------------------------------------------
def _to_milli(x: float, scale: float, what: str) -> int:
    """round-half-away(fl(x × scale)) as an int: rule 1 of the module docstring."""
    if not (isinstance(x, (int, float)) and math.isfinite(x)):
        raise ControlError(f"{what} must be a finite number, got {x!r}")
    p = abs(float(x)) * scale
    n = math.floor(p)
    if p - n >= 0.5:  # p − floor(p) is exact in binary floating point
        n += 1
    return -n if x < 0 else n


def _div_half_away(num: int, den: int) -> int:
    """round-half-away(num / den) for den > 0, exactly."""
    q, r = divmod(abs(num), den)
    if 2 * r >= den:
        q += 1
    return -q if num < 0 else q


def percent_hundredths(power_kw: float, denominator_w: float) -> tuple[int, bool]:
    """Signed hundredths of a percent of `denominator_w` closest to `power_kw` (half away from
    zero), clamped to ±10000; returns (value, clamped)."""
    den_mw = _to_milli(denominator_w, 1e3, "the rating")
    if not 0 < den_mw <= _MAX_RATING_MW:
        raise ControlError(f"the rating must be between 1 mW and 100 GW, got {denominator_w!r} W")
    p_mw = _to_milli(power_kw, 1e6, "the setpoint")
    if abs(p_mw) > den_mw:
        return (FULL_SCALE if p_mw > 0 else -FULL_SCALE), True
    return _div_half_away(p_mw * FULL_SCALE, den_mw), False


def _hundredths_to_kw(value: int, denominator_w: float) -> float:
    den_mw = _to_milli(denominator_w, 1e3, "the rating")
    return float(Fraction(value * den_mw, FULL_SCALE * 10**6))


# --- per-kind mappings --------------------------------------------------------------------------
def _need(rating: tuple[float, str] | None, kind: DeviceKind, names: str, why: str) -> tuple[float, str]:
    if rating is None:
        raise ControlError(f"{kind.value}: {why} needs {names}, and the device reported none of them")
    return rating


def _fixed_w(kind: DeviceKind, power_kw: float, rating: tuple[float, str]) -> ControlPlan:
    return _percent_plan(kind, MODE_FIXED_W, power_kw, rating)


def _percent_plan(kind: DeviceKind, mode: str, power_kw: float, rating: tuple[float, str]) -> ControlPlan:
    """A control in hundredths of a percent of `rating` (opModFixedW, opModMaxLimW)."""
    den_w, name = rating
    value, clamped = percent_hundredths(power_kw, den_w)
    return ControlPlan(
        kind=kind,
        mode=mode,
        value=value,
        multiplier=None,
        commanded_kw=_hundredths_to_kw(value, den_w),
        clamped=clamped,
        basis=name,
        basis_w=den_w,
    )


def _zero(kind: DeviceKind, mode: str, clamped: bool, multiplier: int | None = None) -> ControlPlan:
    return ControlPlan(kind=kind, mode=mode, value=0, multiplier=multiplier, commanded_kw=0.0, clamped=clamped)


def _battery(power_kw: float, r: ControlRatings) -> ControlPlan:
    kind = DeviceKind.BATTERY
    if power_kw > 0:
        rating = r.max_discharge_rate_w() or r.max_w()
        names = "setMaxDischargeRateW, rtgMaxDischargeRateW, setMaxW or rtgMaxW"
        return _fixed_w(kind, power_kw, _need(rating, kind, names, "discharging"))
    if power_kw < 0:
        rating = _need(r.max_charge_rate_w(), kind, "setMaxChargeRateW or rtgMaxChargeRateW", "charging")
        return _fixed_w(kind, power_kw, rating)
    return _zero(kind, MODE_FIXED_W, clamped=False)


def _ev_charger(power_kw: float, r: ControlRatings) -> ControlPlan:
    kind = DeviceKind.EV_CHARGER
    if power_kw < 0:
        rating = _need(r.max_charge_rate_w(), kind, "setMaxChargeRateW or rtgMaxChargeRateW", "charging")
        return _fixed_w(kind, power_kw, rating)
    return _zero(kind, MODE_FIXED_W, clamped=power_kw > 0)


def _pv(power_kw: float, r: ControlRatings) -> ControlPlan:
    kind = DeviceKind.PV
    if power_kw <= 0:
        return _zero(kind, MODE_MAX_LIM_W, clamped=power_kw < 0)
    return _percent_plan(kind, MODE_MAX_LIM_W, power_kw,
                         _need(r.max_w(), kind, "setMaxW or rtgMaxW", "a generation limit"))


def active_power(watts_milli: int) -> tuple[int, int]:
    """(value, multiplier) of an ActivePower for `watts_milli` mW: value fits Int16; the multiplier
    in −3…9 with the least rounding error, ties going to the multiplier nearest 0."""
    best: tuple[int, int, int] | None = None  # (error in mW, |multiplier|, multiplier) → value
    best_value = 0
    for m in TARGET_W_MULTIPLIERS:
        unit_mw = 10 ** (m + 3)
        value = _div_half_away(watts_milli, unit_mw)
        if not INT16_MIN <= value <= INT16_MAX:
            continue
        key = (abs(value * unit_mw - watts_milli), abs(m), m)
        if best is None or key < best:
            best, best_value = key, value
    if best is None:
        raise ControlError(f"{watts_milli / 1e3} W does not fit an ActivePower (Int16 × 10^9 at most)")
    return best_value, best[2]


def _load(power_kw: float, r: ControlRatings) -> ControlPlan:
    kind = DeviceKind.LOAD
    if power_kw >= 0:
        return _zero(kind, MODE_TARGET_W, clamped=power_kw > 0, multiplier=0)
    p_mw = _to_milli(power_kw, 1e6, "the setpoint")
    clamped, basis, basis_w = False, None, None
    bound = r.max_w()
    if bound is not None:
        basis_w, basis = bound
        bound_mw = _to_milli(basis_w, 1e3, basis)
        if -p_mw > bound_mw:
            p_mw, clamped = -bound_mw, True
    value, multiplier = active_power(p_mw)
    commanded_kw = float(Fraction(value) * Fraction(10) ** multiplier / 1000)
    return ControlPlan(
        kind=kind,
        mode=MODE_TARGET_W,
        value=value,
        multiplier=multiplier,
        commanded_kw=commanded_kw,
        clamped=clamped,
        basis=basis,
        basis_w=basis_w,
    )


_MAPPINGS = {
    DeviceKind.BATTERY: _battery,
    DeviceKind.EV_CHARGER: _ev_charger,
    DeviceKind.PV: _pv,
    DeviceKind.LOAD: _load,
}


def control_for(kind: DeviceKind | str, power_kw: float, ratings: ControlRatings) -> ControlPlan:
    """The 2030.5 control for one device's cleared setpoint (table in the module docstring)."""
    try:
        kind = DeviceKind(kind)
    except ValueError:
        known = ", ".join(k.value for k in DeviceKind)
        raise ControlError(f"unknown device kind {kind!r} (expected one of {known})") from None
    if isinstance(power_kw, bool) or not isinstance(power_kw, (int, float)) or not math.isfinite(power_kw):
        raise ControlError(f"the setpoint must be a finite number of kW, got {power_kw!r}")
    return _MAPPINGS[kind](float(power_kw), ratings)


# --- fleets -------------------------------------------------------------------------------------
def _to_milli_array(x: np.ndarray, scale: float) -> np.ndarray:
    p = np.abs(x) * scale
    n = np.floor(p)
    n = n + (p - n >= 0.5)
    if np.any(n > 2.0**62):
        raise ControlError("a value is too large for a control (more than 4.6e12 kW)")
    out = n.astype(np.int64)
    return np.where(x < 0, -out, out)


def fixed_w_hundredths(
    power_kw: np.ndarray, pos_denominator_w: np.ndarray, neg_denominator_w: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """opModFixedW for a fleet: signed hundredths of % of `pos_denominator_w` (s > 0) or
    `neg_denominator_w` (s < 0), half away from zero, clamped to ±10000. Arrays broadcast; a
    denominator is only read where the setpoint has its sign (NaN elsewhere is fine).
    Returns (int64 values, bool clamped mask); equal to `percent_hundredths` element by element."""
    p = np.asarray(power_kw, dtype=np.float64)
    pos = np.asarray(pos_denominator_w, dtype=np.float64)
    neg = np.asarray(neg_denominator_w, dtype=np.float64)
    p, pos, neg = np.broadcast_arrays(p, pos, neg)
    if not np.all(np.isfinite(p)):
        i = int(np.flatnonzero(~np.isfinite(p.ravel()))[0])
        raise ControlError(f"setpoint #{i} is not a finite number of kW ({p.ravel()[i]})")
    p_mw = _to_milli_array(p, 1e6)
    den_w = np.where(p_mw > 0, pos, np.where(p_mw < 0, neg, 1.0))
    bad = ~(np.isfinite(den_w) & (den_w > 0))
    if np.any(bad):
        i = int(np.flatnonzero(bad.ravel())[0])
        which = "discharge (positive)" if p_mw.ravel()[i] > 0 else "charge (negative)"
        raise ControlError(
            f"device #{i}: the {which} rating must be a positive number of W, got {den_w.ravel()[i]}"
        )
    den_mw = _to_milli_array(den_w, 1e3)
    out_of_range = (den_mw <= 0) | (den_mw > _MAX_RATING_MW)
    if np.any(out_of_range):
        i = int(np.flatnonzero(out_of_range.ravel())[0])
        raise ControlError(f"device #{i}: the rating {den_w.ravel()[i]} W is below 1 mW or above 100 GW")
    mag = np.abs(p_mw)
    clamped = mag > den_mw
    safe = np.minimum(mag, den_mw)  # ≤ den ≤ 1e14 mW, so 2 × safe × 10000 fits int64
    q, r = np.divmod(safe * FULL_SCALE, den_mw)
    q = q + (2 * r >= den_mw)
    q = np.where(clamped, FULL_SCALE, q)
    return np.where(p_mw < 0, -q, q).astype(np.int64), clamped


# Candidate ActivePower multipliers in order of preference on equal rounding error: nearest 0 first.
_PREFERRED_MULTIPLIERS = sorted(TARGET_W_MULTIPLIERS, key=lambda m: (abs(m), m))


def _active_power_array(mw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`active_power` for many mW values at once (same values, same tie rule)."""
    best_err = np.full(mw.shape, np.inf)
    value = np.zeros(mw.shape, dtype=np.int64)
    mult = np.zeros(mw.shape, dtype=np.int64)
    mag = np.abs(mw)
    for m in _PREFERRED_MULTIPLIERS:
        unit = 10 ** (m + 3)
        q, r = np.divmod(mag, unit)
        q = q + (2 * r >= unit)
        v = np.where(mw < 0, -q, q)
        ok = (v >= INT16_MIN) & (v <= INT16_MAX)
        err = np.where(ok, np.abs(v * unit - mw).astype(np.float64), np.inf)
        better = err < best_err  # strict: an equal error keeps the more preferred multiplier
        best_err = np.where(better, err, best_err)
        value = np.where(better, v, value)
        mult = np.where(better, m, mult)
    if np.any(~np.isfinite(best_err)):
        i = int(np.flatnonzero(~np.isfinite(best_err))[0])
        raise ControlError(f"{mw[i] / 1e3} W does not fit an ActivePower (Int16 × 10^9 at most)")
    return value, mult


def _lenient(get: Any) -> float:
    try:
        got = get()
    except ControlError:
        return math.nan
    return math.nan if got is None else got[0]


def fleet_controls(kinds: np.ndarray, power_kw: np.ndarray, ratings: list[ControlRatings]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`control_for` for a whole fleet, vectorised: (mode index into MODES, value, multiplier)
    per device, equal element by element to the scalar mapping (multiplier 0 where the mode has
    none). `kinds` holds KIND_INDEX codes; a rating the mapping needs must be known (as
    `control_for` it raises ControlError otherwise)."""
    kinds = np.asarray(kinds, dtype=np.int64)
    p = np.asarray(power_kw, dtype=np.float64)
    n = p.size
    if not np.all(np.isfinite(p)):
        raise ControlError("a setpoint is not a finite number of kW")
    cache: dict[ControlRatings, tuple[float, float, float]] = {}
    den = np.empty((n, 3))
    for i, r in enumerate(ratings):  # fleets share a handful of rating sets: resolve each once
        d = cache.get(r)
        if d is None:
            # a rating this device's kind does not use may be anything (an EV charger reports a
            # discharge rate of 0): NaN here; the ones it needs were checked by `control_for`
            dis, chg, mx = _lenient(r.max_discharge_rate_w), _lenient(r.max_charge_rate_w), _lenient(r.max_w)
            d = cache[r] = (mx if math.isnan(dis) else dis, chg, mx)
        den[i] = d
    mode = np.zeros(n, dtype=np.int64)
    value = np.zeros(n, dtype=np.int64)
    mult = np.zeros(n, dtype=np.int64)
    for code, k in enumerate(KINDS):
        sel = np.flatnonzero(kinds == code)
        if not sel.size:
            continue
        ps = p[sel]
        if k is DeviceKind.BATTERY:
            mode[sel] = MODES.index(MODE_FIXED_W)
            value[sel] = fixed_w_hundredths(ps, den[sel, 0], den[sel, 1])[0]
        elif k is DeviceKind.EV_CHARGER:
            mode[sel] = MODES.index(MODE_FIXED_W)
            value[sel] = fixed_w_hundredths(np.minimum(ps, 0.0), np.nan, den[sel, 1])[0]
        elif k is DeviceKind.PV:
            mode[sel] = MODES.index(MODE_MAX_LIM_W)
            value[sel] = fixed_w_hundredths(np.maximum(ps, 0.0), den[sel, 2], np.nan)[0]
        else:
            mode[sel] = MODES.index(MODE_TARGET_W)
            mw = np.minimum(_to_milli_array(ps, 1e6), 0)
            known = np.isfinite(den[sel, 2])
            bound = np.where(known, den[sel, 2], 0.0)
            bound_mw = _to_milli_array(bound, 1e3)
            mw = np.where(known & (-mw > bound_mw), -bound_mw, mw)
            value[sel], mult[sel] = _active_power_array(mw)
    return mode, value, mult


MODES = (MODE_FIXED_W, MODE_MAX_LIM_W, MODE_TARGET_W)
KINDS = (DeviceKind.BATTERY, DeviceKind.EV_CHARGER, DeviceKind.PV, DeviceKind.LOAD)
KIND_INDEX = {k: i for i, k in enumerate(KINDS)}


# --- OCPP ---------------------------------------------------------------------------------------
def _one_decimal(x: float) -> float:
    return float(Decimal(repr(x)).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP))


def _iso_utc(t: datetime) -> str:
    if t.tzinfo is None or t.utcoffset() is None:
        raise ControlError("start must be timezone-aware (OCPP wants an absolute UTC time)")
    return t.astimezone(timezone.utc).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def set_charging_profile(
    limit_w: float,
    *,
    version: Literal["1.6", "2.0.1"] = "1.6",
    unit: Literal["W", "A"] = "W",
    voltage_v: float = 230.0,
    phases: int = 1,
    profile_id: int,
    stack_level: int = 0,
    start: datetime | None,
    duration_s: int | None,
    connector_id: int = 1,
) -> dict[str, Any]:
    """The request payload of SetChargingProfile holding a charger at `limit_w`.

    OCPP limits are charging rates (≥ 0), so the magnitude of `limit_w` is used: a cleared
    charging setpoint (negative in the seed convention) and the seed §4.2 example (50 kW written
    positive) both mean "charge at most this fast". unit "A": amps per phase = W / (voltage ×
    phases). The limit is rounded half away from zero to one decimal (the schemas' multipleOf 0.1).
    Purpose TxDefaultProfile; kind Absolute with startSchedule = `start` (UTC), or Relative (to
    the start of charging) when `start` is None. 1.6: connectorId + csChargingProfiles; 2.0.1:
    evseId (= `connector_id`) + chargingProfile whose single chargingSchedule has id `profile_id`.
    """
    if isinstance(limit_w, bool) or not isinstance(limit_w, (int, float)) or not math.isfinite(limit_w):
        raise ControlError(f"limit_w must be a finite number of W, got {limit_w!r}")
    if version not in ("1.6", "2.0.1"):
        raise ControlError(f"OCPP version must be '1.6' or '2.0.1', got {version!r}")
    if unit not in ("W", "A"):
        raise ControlError(f"chargingRateUnit must be 'W' or 'A', got {unit!r}")
    if phases not in (1, 2, 3):
        raise ControlError(f"numberPhases must be 1, 2 or 3, got {phases!r}")
    if not (math.isfinite(voltage_v) and voltage_v > 0):
        raise ControlError(f"voltage_v must be a positive number of V, got {voltage_v!r}")
    if duration_s is not None and (isinstance(duration_s, bool) or not isinstance(duration_s, int) or duration_s <= 0):
        raise ControlError(f"duration_s must be a positive whole number of seconds, got {duration_s!r}")
    for name, v in (("profile_id", profile_id), ("stack_level", stack_level), ("connector_id", connector_id)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ControlError(f"{name} must be a whole number ≥ 0, got {v!r}")

    watts = abs(float(limit_w))
    limit = _one_decimal(watts / (voltage_v * phases) if unit == "A" else watts)
    schedule: dict[str, Any] = {}
    if duration_s is not None:
        schedule["duration"] = duration_s
    if start is not None:
        schedule["startSchedule"] = _iso_utc(start)
    schedule["chargingRateUnit"] = unit
    schedule["chargingSchedulePeriod"] = [{"startPeriod": 0, "limit": limit, "numberPhases": phases}]
    kind = "Absolute" if start is not None else "Relative"

    if version == "1.6":
        return {
            "connectorId": connector_id,
            "csChargingProfiles": {
                "chargingProfileId": profile_id,
                "stackLevel": stack_level,
                "chargingProfilePurpose": "TxDefaultProfile",
                "chargingProfileKind": kind,
                "chargingSchedule": schedule,
            },
        }
    return {
        "evseId": connector_id,
        "chargingProfile": {
            "id": profile_id,
            "stackLevel": stack_level,
            "chargingProfilePurpose": "TxDefaultProfile",
            "chargingProfileKind": kind,
            "chargingSchedule": [{"id": profile_id, **schedule}],
        },
    }


# --- DERType ------------------------------------------------------------------------------------
_DER_TYPE_KINDS = {
    4: DeviceKind.PV,  # Photovoltaic system
    80: DeviceKind.BATTERY,  # Other storage system
    81: DeviceKind.EV_CHARGER,  # Electric vehicle (controlled as V1G, like its EVSE)
    82: DeviceKind.EV_CHARGER,  # EVSE
    83: DeviceKind.BATTERY,  # Combined PV and storage: opModFixedW steers its storage
}


def der_type_kind(der_type: int) -> DeviceKind | None:
    """The kind a 2030.5 DERType (DERCapability.type) is controlled as, or None when the type has
    no flexibility mapping (0 unknown, 1 virtual/mixed, 2 engine, 3 fuel cell, 5 CHP, 6 other
    generation, reserved values). 83 (PV + storage) is a battery: its storage is what moves."""
    if isinstance(der_type, bool) or not isinstance(der_type, int) or not 0 <= der_type <= 255:
        raise ControlError(f"DERType must be a whole number 0…255, got {der_type!r}")
    return _DER_TYPE_KINDS.get(der_type)
