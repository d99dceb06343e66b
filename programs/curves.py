"""The bid curve each device offers, in the reduction convention that programs.clearing clears.

Three sources, one result (a `BidCurve` of (price, q) points, q = kW of reduction supplied at
that price, non-decreasing; a vertical step is two consecutive points at one price):

1. POWER curves from customers (Beckn, seed §3.1): points (price, powerKW), powerKW < 0 =
   consumption (charging, load), > 0 = generation / discharge, power non-decreasing in price
   (a higher price: consume less or generate more). `power_to_reduction` takes the baseline as
   the power at the LOWEST price (what the device does without an incentive) and
   q(p) = P(p) - baseline. Seed §2.2: (0.08, -11), (0.10, -5) clears at 0.09 to -8 kW, a 3 kW
   reduction from the -11 kW baseline. The price axis of a power curve is read as the program's
   price axis (incentive per kWh), exactly as given.
2. OBJECTIVES (seed §2.5, §3.6), JSON objects told apart by their key (camelCase as in the seed):
   - {"reduceKW": X, "minPricePerKWh": x}: "reduce X kW if price >= x" -> step [(x, 0), (x, X)].
     When the baseline is known the resulting power must be within the device's ratings.
   - {"targetChargeKWh": E, "deadline": ISO 8601 with offset, "maxPricePerKWh": y,
      optional "preferredSource" (accepted, ignored), "constraints": {"minChargeKWh",
      "maxChargeKWh"} (checked, not used: the curve guarantees the full target)}: an EV that
     still needs E kWh by the deadline. Below y it charges as it would (no reduction); at y it
     steps to its largest SAFE reduction, [(y, 0), (y, q_max)], in energy terms over the part of
     the window not yet past (`now` onward), W hours:
         baseline energy  B = min(c * w, E)   (c = current charging kW, w = window hours before
                                                the deadline: it stops when full)
         must-have energy M = max(0, E - r * t_after)   (r = max charge rate, t_after = hours
                                                from the window end to the deadline)
         q_max = max(0, B - M) / W
     so charging at r after the window always still reaches E: the EV never misses its deadline.
     Energy it may take before the window is ignored (conservative). c is -baseline_kw when the
     baseline is known, else r (an EVSE charges at full rate by default). A step, not a ramp: the
     customer stated one price.
   - {"reservePercent": R, "minPricePerKWh": x}: a battery that keeps at least R % (or its own
     reserve_percent, whichever is higher) -> step [(x, 0), (x, q_max)] with q_max the battery
     bound below using R; it needs soc_percent and max_wh.
3. DEFAULT curves (`default_curve`) for enrollments that give neither, from the ratings:
   - battery: q_max = min(discharge limit, energy above reserve / window hours,
     discharge limit * availability_s / window_s) - baseline_kw. Stopping a baseline charge
     (baseline < 0) costs no stored energy, so the charge is added on top of the discharge bound
     rather than inside the min (the brief's min(max_discharge + charging, energy / h) would
     under-offer a charging battery). Needs the discharge limit and either soc_percent + max_wh
     or availability_s.
   - ev_charger: its current charging, -baseline_kw (held lower, down to 0), capped at its charge
     rate; needs baseline_kw.
   - load: LOAD_CURTAILABLE_SHARE (50 %) of its baseline consumption: the duty-cycle limit of
     classic air-conditioner cycling programs, which keeps comfort; needs baseline_kw.
   - pv: 0. Curtailing PV RAISES net load, so PV has nothing to offer in a load-reduction market.
   Shape: q = 0 at price_floor rising linearly to q_max at price_cap. Many devices with the same
   default would otherwise all switch at one price (a step pile-up: all-or-nothing setpoints and
   an oscillating fleet); a ramp makes every default device marginal and shares the request.
   A rating the bound needs but the server does not know yet gives a ZERO curve (the device
   stays enrolled but promises nothing it might not deliver); `default_max_reduction_kw`
   raises `MissingRating` naming it, for callers that want to tell the operator why.
   A max_w etc. of None means "not reported"; limits fall back as: battery discharge
   max_discharge_w -> max_w, charge max_charge_w -> max_w; EV charge max_charge_w -> max_w.

`check_within_ratings` checks power points against the ratings (battery within
[-charge limit, discharge limit]; EV charger (V1G) and load never above 0, consumption within
their rating; PV within [0, max_w]); a bound whose rating is unknown is not checked.
Ratings are SI (W, Wh, %, s); curves are kW.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping, Sequence, Union, overload

from programs.clearing import BidCurve
from programs.kinds import DeviceKind

__all__ = [
    "CurveError",
    "DerRatings",
    "EvChargeObjective",
    "LOAD_CURTAILABLE_SHARE",
    "MissingRating",
    "Objective",
    "ReduceObjective",
    "ReserveObjective",
    "check_within_ratings",
    "default_curve",
    "default_max_reduction_kw",
    "objective_curve",
    "parse_objective",
    "parse_power_points",
    "power_to_reduction",
    "reduction_to_power",
]

LOAD_CURTAILABLE_SHARE = 0.5
_TOL_KW = 1e-6  # rounding allowance when comparing kW with W ratings


class CurveError(ValueError):
    """A curve, objective or rating a device cannot honour, with the offending point/field."""


class MissingRating(CurveError):
    """A rating needed to bound an offer is not known (yet)."""


# --- power curves ------------------------------------------------------------------------------
def _is_finite_number(v: object) -> bool:
    """An int or float (not a bool) that is finite as a float (an int too large for one is not)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    try:
        return math.isfinite(v)
    except OverflowError:
        return False


def _finite(v: object, what: str) -> float:
    if not _is_finite_number(v):
        raise CurveError(f"{what} must be a finite number, got {v!r}")
    return float(v)


def parse_power_points(points: Iterable[Any]) -> list[tuple[float, float]]:
    """Check a power curve: (price, powerKW) pairs or Beckn {"price", "powerKW"} objects.

    Rules: at least one point; finite numbers; prices non-decreasing with at most two points at
    one price (a vertical step); power non-decreasing in price.
    """
    if isinstance(points, (str, bytes, Mapping)) or not isinstance(points, Iterable):
        raise CurveError(f"power curve must be a list of points, got {points!r}")
    out: list[tuple[float, float]] = []
    for j, pt in enumerate(points):
        if isinstance(pt, Mapping):
            extra = set(pt) - {"price", "powerKW"}
            if extra or not {"price", "powerKW"} <= set(pt):
                raise CurveError(f"power curve point {j}: expected {{'price', 'powerKW'}}, got {dict(pt)!r}")
            raw = (pt["price"], pt["powerKW"])
        elif isinstance(pt, Sequence) and not isinstance(pt, (str, bytes)) and len(pt) == 2:
            raw = (pt[0], pt[1])
        else:
            raise CurveError(f"power curve point {j}: expected (price, powerKW), got {pt!r}")
        p = _finite(raw[0], f"power curve point {j}: price")
        w = _finite(raw[1], f"power curve point {j}: powerKW")
        if out:
            p0, w0 = out[-1]
            if p < p0:
                raise CurveError(f"power curve point {j}: price {p!r} after {p0!r}; prices must not decrease")
            if p == p0 and len(out) >= 2 and out[-2][0] == p:
                raise CurveError(f"power curve point {j}: a third point at price {p!r}; a step has two")
            if w < w0:
                raise CurveError(
                    f"power curve point {j}: powerKW {w!r} is below {w0!r} at a lower price; a higher "
                    "price must mean less consumption or more generation (non-decreasing power)")
        out.append((p, w))
    if not out:
        raise CurveError("power curve has no points")
    return out


def power_to_reduction(points: Iterable[Any]) -> tuple[BidCurve, float]:
    """(reduction curve, baseline_kw): baseline = power at the lowest price, q = P - baseline."""
    pts = parse_power_points(points)
    baseline = pts[0][1]
    return BidCurve([(p, _finite(w - baseline, f"power curve point {j}: powerKW - baseline"))
                     for j, (p, w) in enumerate(pts)]), baseline


@overload
def reduction_to_power(q: float, baseline_kw: float) -> float: ...
@overload
def reduction_to_power(q: BidCurve, baseline_kw: float) -> list[tuple[float, float]]: ...
def reduction_to_power(q: float | BidCurve, baseline_kw: float) -> float | list[tuple[float, float]]:
    """Back to power: a setpoint (kW reduction) -> kW; a BidCurve -> its (price, powerKW) points."""
    b = _finite(baseline_kw, "baseline_kw")
    if isinstance(q, BidCurve):
        return [(p, b + r) for p, r in q.points]
    return b + _finite(q, "reduction")


# --- ratings -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class DerRatings:
    """What the server knows of a device (DERCapability, DERSettings, DERAvailability, DERStatus),
    SI units; None = not reported. baseline_kw is the expected power without an event in the
    seed's sign convention (< 0 consuming)."""

    kind: DeviceKind
    max_w: float | None = None
    max_charge_w: float | None = None
    max_discharge_w: float | None = None
    max_wh: float | None = None
    soc_percent: float | None = None
    reserve_percent: float | None = None
    availability_s: float | None = None
    baseline_kw: float | None = None

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "kind", DeviceKind(self.kind))
        except ValueError:
            raise CurveError(f"ratings.kind: {self.kind!r} is not a device kind "
                             f"({', '.join(k.value for k in DeviceKind)})") from None
        for name in ("max_w", "max_charge_w", "max_discharge_w", "max_wh", "availability_s"):
            v = getattr(self, name)
            if v is not None and _finite(v, f"ratings.{name}") < 0:
                raise CurveError(f"ratings.{name} must be 0 or more, got {v!r}")
        for name in ("soc_percent", "reserve_percent"):
            v = getattr(self, name)
            if v is not None and not 0 <= _finite(v, f"ratings.{name}") <= 100:
                raise CurveError(f"ratings.{name} must be between 0 and 100, got {v!r}")
        if self.baseline_kw is not None:
            _finite(self.baseline_kw, "ratings.baseline_kw")

    def discharge_limit_kw(self) -> float | None:
        """Most it can generate/discharge (kW); None = unknown."""
        return _discharge(self)[0]

    def charge_limit_kw(self) -> float | None:
        """Most it can consume/charge (kW, positive); None = unknown."""
        return _charge(self)[0]


def _kw(w: float | None) -> float | None:
    return None if w is None else w / 1000.0


def _discharge(r: DerRatings) -> tuple[float | None, str]:
    """(discharge limit kW or None, the rating it comes from)."""
    if r.kind == DeviceKind.BATTERY and r.max_discharge_w is not None:
        return _kw(r.max_discharge_w), "max_discharge_w"
    if r.kind in (DeviceKind.BATTERY, DeviceKind.PV):
        return _kw(r.max_w), "max_w"
    return 0.0, "kind"


def _charge(r: DerRatings) -> tuple[float | None, str]:
    """(charge/consumption limit kW or None, the rating it comes from)."""
    if r.kind in (DeviceKind.BATTERY, DeviceKind.EV_CHARGER) and r.max_charge_w is not None:
        return _kw(r.max_charge_w), "max_charge_w"
    if r.kind != DeviceKind.PV:
        return _kw(r.max_w), "max_w"
    return 0.0, "kind"


_NAMES = {DeviceKind.BATTERY: "battery", DeviceKind.PV: "PV inverter",
          DeviceKind.EV_CHARGER: "EV charger", DeviceKind.LOAD: "load"}


def check_within_ratings(power_points: Iterable[Any], ratings: DerRatings) -> None:
    """Raise CurveError naming the first point whose power the device cannot reach."""
    pts = parse_power_points(power_points)
    who = _NAMES[ratings.kind]
    (up, up_from), (down, down_from) = _discharge(ratings), _charge(ratings)
    for j, (p, w) in enumerate(pts):
        at = f"power curve point {j} (price {p!r}, {w!r} kW)"
        if w > _TOL_KW and up == 0.0:
            raise CurveError(f"{at}: a {who} cannot generate or discharge (power must be 0 or below)")
        if w < -_TOL_KW and down == 0.0:
            raise CurveError(f"{at}: a {who} cannot consume (power must be 0 or above)")
        if up is not None and w > up + _TOL_KW:
            raise CurveError(f"{at}: generation/discharge {w!r} kW is above the {who}'s limit "
                             f"{up!r} kW ({up_from})")
        if down is not None and -w > down + _TOL_KW:
            raise CurveError(f"{at}: consumption {-w!r} kW is above the {who}'s limit {down!r} kW ({down_from})")


# --- objectives --------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReduceObjective:
    """"Reduce reduce_kw if price >= min_price" (seed §2.5)."""

    reduce_kw: float
    min_price: float


@dataclass(frozen=True)
class EvChargeObjective:
    """"Charge target_kwh by deadline at <= max_price per kWh" (seed §2.2, §3.6)."""

    target_kwh: float
    deadline: datetime
    max_price: float
    min_charge_kwh: float | None = None
    max_charge_kwh: float | None = None


@dataclass(frozen=True)
class ReserveObjective:
    """A battery that keeps at least reserve_percent, discharging if price >= min_price."""

    reserve_percent: float
    min_price: float


Objective = Union[ReduceObjective, EvChargeObjective, ReserveObjective]

_KINDS_OF_OBJECTIVE = {
    "reduceKW": ("reduceKW", "minPricePerKWh"),
    "targetChargeKWh": ("targetChargeKWh", "deadline", "maxPricePerKWh", "preferredSource", "constraints"),
    "reservePercent": ("reservePercent", "minPricePerKWh"),
}
_REQUIRED_OF_OBJECTIVE = {
    "reduceKW": ("reduceKW", "minPricePerKWh"),
    "targetChargeKWh": ("targetChargeKWh", "deadline", "maxPricePerKWh"),
    "reservePercent": ("reservePercent", "minPricePerKWh"),
}


def parse_objective(d: Mapping[str, Any] | Objective) -> Objective:
    """Check an objective's JSON (module docstring); CurveError names every wrong field."""
    if isinstance(d, (ReduceObjective, EvChargeObjective, ReserveObjective)):
        return d
    if not isinstance(d, Mapping):
        raise CurveError(f"objective must be a JSON object, got {d!r}")
    which = [k for k in _KINDS_OF_OBJECTIVE if k in d]
    if len(which) != 1:
        how = "several" if which else "none"
        raise CurveError(f"objective: give exactly one of {', '.join(_KINDS_OF_OBJECTIVE)} "
                         f"(what it asks for), got {how}: {sorted(map(str, d))}")
    kind = which[0]
    errors = [f"objective.{k}: unknown field (known here: {', '.join(_KINDS_OF_OBJECTIVE[kind])})"
              for k in d if k not in _KINDS_OF_OBJECTIVE[kind]]
    errors += [f"objective.{k}: required" for k in _REQUIRED_OF_OBJECTIVE[kind] if k not in d]
    vals: dict[str, Any] = {}

    def num(key: str, lo: float = 0.0, hi: float | None = None, positive: bool = False) -> None:
        if key not in d:
            return
        v = d[key]
        if not _is_finite_number(v):
            errors.append(f"objective.{key}: must be a finite number, got {v!r}")
        elif (positive and v <= 0) or v < lo or (hi is not None and v > hi):
            rng = f"greater than {lo:g}" if positive else f"at least {lo:g}"
            rng += f" and at most {hi:g}" if hi is not None else ""
            errors.append(f"objective.{key}: must be {rng}, got {v!r}")
        else:
            vals[key] = float(v)

    if kind == "reduceKW":
        num("reduceKW", positive=True)
        num("minPricePerKWh")
    elif kind == "reservePercent":
        num("reservePercent", 0.0, 100.0)
        num("minPricePerKWh")
    else:
        num("targetChargeKWh", positive=True)
        num("maxPricePerKWh")
        if "deadline" in d:
            try:
                vals["deadline"] = _parse_instant(d["deadline"])
            except CurveError as e:
                errors.append(f"objective.deadline: {e}")
        if "preferredSource" in d and not isinstance(d["preferredSource"], str):
            errors.append(f"objective.preferredSource: must be a text, got {d['preferredSource']!r}")
        errors += _check_constraints(d.get("constraints"), vals)
    if errors:
        raise CurveError("invalid objective: " + "; ".join(errors))
    if kind == "reduceKW":
        return ReduceObjective(vals["reduceKW"], vals["minPricePerKWh"])
    if kind == "reservePercent":
        return ReserveObjective(vals["reservePercent"], vals["minPricePerKWh"])
    return EvChargeObjective(vals["targetChargeKWh"], vals["deadline"], vals["maxPricePerKWh"],
                             vals.get("minChargeKWh"), vals.get("maxChargeKWh"))


def _check_constraints(c: object, vals: dict[str, Any]) -> list[str]:
    if c is None:
        return []
    if not isinstance(c, Mapping):
        return [f"objective.constraints: must be an object with minChargeKWh/maxChargeKWh, got {c!r}"]
    errors = [f"objective.constraints.{k}: unknown field (known: minChargeKWh, maxChargeKWh)"
              for k in c if k not in ("minChargeKWh", "maxChargeKWh")]
    for k in ("minChargeKWh", "maxChargeKWh"):
        if k in c:
            v = c[k]
            if not _is_finite_number(v) or v < 0:
                errors.append(f"objective.constraints.{k}: must be a number 0 or more, got {v!r}")
            else:
                vals[k] = float(v)
    if not errors and vals.get("minChargeKWh", 0.0) > vals.get("maxChargeKWh", math.inf):
        errors.append("objective.constraints.minChargeKWh: is above maxChargeKWh")
    return errors


def _parse_instant(v: object) -> datetime:
    if isinstance(v, str):
        try:
            t = datetime.fromisoformat(v)
        except ValueError:
            raise CurveError(f"must be an ISO 8601 date-time such as '2024-12-15T18:00:00Z', got {v!r}") from None
    elif isinstance(v, datetime):
        t = v
    else:
        raise CurveError(f"must be an ISO 8601 date-time such as '2024-12-15T18:00:00Z', got {v!r}")
    if t.tzinfo is None or t.utcoffset() is None:
        raise CurveError(f"must include a UTC offset or 'Z', got {v!r}")
    try:
        return t.astimezone(timezone.utc)
    except OverflowError:
        raise CurveError(f"is outside the range of date-times in UTC, got {v!r}") from None


def _aware(name: str, t: object) -> datetime:
    if not isinstance(t, datetime) or t.tzinfo is None or t.utcoffset() is None:
        raise CurveError(f"{name} must be a time-zone-aware datetime, got {t!r}")
    try:
        return t.astimezone(timezone.utc)
    except OverflowError:
        raise CurveError(f"{name} is outside the range of date-times in UTC, got {t!r}") from None


def _step(price: float, q: float) -> BidCurve:
    return BidCurve([(price, 0.0), (price, q)]) if q > 0 else BidCurve([(price, 0.0)])


def objective_curve(objective: Mapping[str, Any] | Objective, ratings: DerRatings,
                    window_start: datetime, window_end: datetime, now: datetime) -> BidCurve:
    """The reduction curve an objective offers for the window [window_start, window_end)."""
    obj = parse_objective(objective)
    ws, we, t = (_aware("window_start", window_start), _aware("window_end", window_end), _aware("now", now))
    if we <= ws:
        raise CurveError(f"window_end {we.isoformat()} is not after window_start {ws.isoformat()}")
    if t >= we:
        raise CurveError(f"the window ended at {we.isoformat()}, before now ({t.isoformat()})")
    start = max(ws, t)
    hours = (we - start).total_seconds() / 3600.0
    if isinstance(obj, ReduceObjective):
        if ratings.baseline_kw is not None:
            b = ratings.baseline_kw
            check_within_ratings([(obj.min_price, b), (obj.min_price, b + obj.reduce_kw)], ratings)
        return _step(obj.min_price, obj.reduce_kw)
    if isinstance(obj, ReserveObjective):
        if ratings.kind != DeviceKind.BATTERY:
            raise CurveError(f"objective.reservePercent: only a battery keeps a reserve, this device is a {_NAMES[ratings.kind]}")
        return _step(obj.min_price, _battery_max_kw(ratings, hours, obj.reserve_percent))
    if ratings.kind != DeviceKind.EV_CHARGER:
        raise CurveError(f"objective.targetChargeKWh: only an EV charger has a charging target, this device is a {_NAMES[ratings.kind]}")
    return _step(obj.max_price, _ev_max_kw(obj, ratings, start, we, t))


def _ev_max_kw(obj: EvChargeObjective, r: DerRatings, start: datetime, we: datetime, now: datetime) -> float:
    if obj.deadline <= now:
        raise CurveError(f"objective.deadline: {obj.deadline.isoformat()} has passed (now {now.isoformat()})")
    rate = r.charge_limit_kw()
    if rate is None:
        raise MissingRating("EV charger: its maximum charge rate (max_charge_w or max_w) is not known")
    if obj.deadline <= start:
        return 0.0  # it is full before the window: nothing drawn, nothing to reduce
    c = rate if r.baseline_kw is None else max(0.0, -r.baseline_kw)
    window_h = (we - start).total_seconds() / 3600.0
    before_deadline_h = (min(we, obj.deadline) - start).total_seconds() / 3600.0
    after_h = max(0.0, (obj.deadline - we).total_seconds() / 3600.0)
    baseline_kwh = min(c * before_deadline_h, obj.target_kwh)
    must_kwh = max(0.0, obj.target_kwh - rate * after_h)
    return max(0.0, baseline_kwh - must_kwh) / window_h


def _battery_max_kw(r: DerRatings, hours: float, reserve_percent: float | None) -> float:
    """Largest reduction from baseline a battery can hold for `hours` (module docstring)."""
    dis = r.discharge_limit_kw()
    if dis is None:
        raise MissingRating("battery: its maximum discharge rate (max_discharge_w or max_w) is not known")
    bounds = [dis]
    if r.soc_percent is not None and r.max_wh is not None:
        keep = max(reserve_percent or 0.0, r.reserve_percent or 0.0)
        bounds.append(max(0.0, r.soc_percent - keep) / 100.0 * r.max_wh / 1000.0 / hours)
    elif reserve_percent is not None:
        missing = "soc_percent" if r.soc_percent is None else "max_wh"
        raise MissingRating(f"battery: its {missing} is not known, so the energy above a "
                            f"{reserve_percent:g} % reserve cannot be computed")
    if r.availability_s is not None:
        bounds.append(dis * min(1.0, r.availability_s / (hours * 3600.0)))
    if len(bounds) == 1:
        raise MissingRating("battery: neither its state of charge and capacity (soc_percent, max_wh) "
                            "nor its availability_s is known, so its energy is unbounded")
    return max(0.0, min(bounds) - (r.baseline_kw or 0.0))


# --- default curves ----------------------------------------------------------------------------
def default_max_reduction_kw(ratings: DerRatings, window_s: float) -> float:
    """The reduction a device without a curve offers at the price cap (module docstring);
    raises MissingRating naming a rating it needs and the server does not know."""
    w = _finite(window_s, "window_s")
    if w / 3600.0 <= 0:  # also a window so short that it is 0 h in floating point
        raise CurveError(f"window_s must be greater than 0, got {window_s!r}")
    kind = ratings.kind
    if kind == DeviceKind.PV:
        return 0.0
    if kind == DeviceKind.BATTERY:
        return _battery_max_kw(ratings, w / 3600.0, None)
    if ratings.baseline_kw is None:
        raise MissingRating(f"{_NAMES[kind]}: its baseline power (baseline_kw) is not known")
    draw = max(0.0, -ratings.baseline_kw)
    if kind == DeviceKind.EV_CHARGER:
        limit = ratings.charge_limit_kw()
        return draw if limit is None else min(draw, limit)
    return LOAD_CURTAILABLE_SHARE * draw


def default_curve(ratings: DerRatings, price_floor: float, price_cap: float, window_s: float) -> BidCurve:
    """0 at price_floor rising linearly to the device's default maximum at price_cap; a zero
    curve when that maximum is 0 or a rating it needs is unknown."""
    lo = _finite(price_floor, "price_floor")
    hi = _finite(price_cap, "price_cap")
    if not 0 <= lo < hi:
        raise CurveError(f"need 0 <= price_floor < price_cap, got {lo!r} and {hi!r}")
    try:
        q = default_max_reduction_kw(ratings, window_s)
    except MissingRating:
        q = 0.0
    return BidCurve([(lo, 0.0), (hi, q)]) if q > 0 else BidCurve([(lo, 0.0)])
