"""Flexibility programs: what a utility asks for, when, at what price, and from which devices.

A `Program` is authored by an operator (admin API or CLI) as JSON and stored as that JSON; it is
validated here, once, and every wrong field is named in one `ProgramError`. Example (every key
the format knows; those marked optional may be left out and take the default shown):

    {
      "name": "Summer evening peak",
      "currency": "USD",
      "window": {"weekdays": ["mon", "tue", "wed", "thu", "fri"],
                 "start": "16:00", "end": "21:00", "tz": "America/New_York"},
      "requested_kw": 500.0,              # or a profile, one kW per interval: [300, 500, ...]
      "interval_s": 900,                  # optional, default null = one request for the window
      "price_cap": 0.50,                  # currency per kWh
      "price_floor": 0.0,                 # optional
      "incentive": {"kind": "pay_as_clear", "rate_per_kwh": null,
                    "under_delivery_per_kwh": 0.0},
      "primacy": 128,                     # optional; 2030.5 primacy, lower wins
      "lead_time_s": 3600,                # optional; publish this long before the window
      "randomize_start_s": 0,             # optional; 2030.5 randomizeStart
      "eligible_kinds": ["battery", "ev_charger", "load"],
      "grid_node_ids": [],                # optional; empty = the whole service area
      "description": "Evening peak",      # optional; <= 32 bytes, the DERProgram description
      "measurement": {...},               # optional; M&V and settlement terms (programs.measurement)
      "envelope": null                    # optional; per-site export/import limits (programs.envelopes)
    }

Rules:

* Window: see programs.windows ("weekdays" as names "mon"…"sun" or numbers 0 = Mon … 6 = Sun;
  times "HH:MM" or "HH:MM:SS" wall clock in "tz"; end <= start ends the next day).
* Requested flexibility (kW of reduction): a single number > 0, or a profile: a list of numbers
  > 0, one per interval, with "interval_s" set; the list has exactly
  ceil(nominal window length / interval_s) entries (the last interval may be shorter). With a
  number and "interval_s" the same kW is requested in every interval. Entry k belongs to the
  WALL-CLOCK interval starting at window start + k * interval_s; on a DST day each real interval
  takes the entry of the wall-clock time it starts at, so on a spring-forward day the entries of
  the skipped hour go unused and on a fall-back day the repeated hour uses its entries twice.
* 0 <= price_floor < price_cap; incentive "pay_as_clear" pays the clearing price (rate_per_kwh
  must be null), "fixed" pays rate_per_kwh > 0; under_delivery_per_kwh >= 0 is charged per kWh
  short of the setpoint.
* primacy 0…255, lead_time_s 0…7 days, randomize_start_s 0…3600 (whole seconds), interval_s
  60 s … the window's nominal length.
* name 1…100 characters (not blank); currency ISO 4217 (three capital letters); description at
  most 32 bytes in UTF-8 (2030.5 String32: stored in 32 octets); eligible_kinds a non-empty set
  of programs.kinds.DeviceKind values; grid_node_ids distinct non-empty strings.
* Envelope programs (programs.envelopes): with "envelope" set the program asks for per-site
  export / import limits in each window instead of a reduction: requested_kw is left out (or 0;
  to_dict writes 0.0), there is no clearing, and the incentive is "fixed": rate_per_kwh is paid per
  kWh of export (import) curtailed against the baseline, up to what the envelope required, and
  under_delivery_per_kwh is charged per kWh outside the envelope.
* `from_dict` rejects unknown keys; `to_dict` writes every key in the canonical form above
  (weekday names, floats for kW and prices; "envelope" only when the program has one), and
  from_dict(to_dict(p)) == p.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from typing import Any, Callable, Mapping, cast

from programs.envelopes import Envelope, EnvelopeError
from programs.kinds import DeviceKind
from programs.measurement import Terms, TermsError, measurement_interval
from programs.windows import Window, WindowError, WindowRule, split

__all__ = ["Incentive", "Program", "ProgramError", "Request", "INCENTIVE_KINDS"]

INCENTIVE_KINDS = ("pay_as_clear", "fixed")
MAX_LEAD_TIME_S = 7 * 86400
MAX_RANDOMIZE_S = 3600
MIN_INTERVAL_S = 60
DEFAULT_PRIMACY = 128
DEFAULT_LEAD_TIME_S = 3600
_CURRENCY_RE = re.compile(r"^[A-Z]{3}$")


class ProgramError(ValueError):
    """An invalid program; `errors` lists one "field: problem" message per wrong field."""

    def __init__(self, errors: list[str]):
        self.errors = list(errors)
        super().__init__("invalid program: " + "; ".join(self.errors))


# --- field checks: value -> normalised value, or ValueError -----------------------------------
def _number(v: object) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"must be a number, got {v!r}")
    try:
        x = float(v)
    except OverflowError:  # an int from JSON too large for a float
        raise ValueError(f"must be a finite number, got an integer of {len(str(v))} digits") from None
    if not math.isfinite(x):
        raise ValueError(f"must be a finite number, got {v!r}")
    return x


def _whole(v: object, lo: int, hi: int, unit: str = "") -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError(f"must be a whole number{unit}, got {v!r}")
    if not lo <= v <= hi:
        raise ValueError(f"must be between {lo} and {hi}{unit}, got {v}")
    return v


def _positive(v: object) -> float:
    x = _number(v)
    if x <= 0:
        raise ValueError(f"must be greater than 0, got {v!r}")
    return x


def _non_negative(v: object) -> float:
    x = _number(v)
    if x < 0:
        raise ValueError(f"must be 0 or more, got {v!r}")
    return x


def _name(v: object) -> str:
    if not isinstance(v, str) or not v.strip():
        raise ValueError(f"must be a non-blank text, got {v!r}")
    if len(v) > 100:
        raise ValueError(f"must be at most 100 characters, got {len(v)}")
    return v


def _currency(v: object) -> str:
    if not isinstance(v, str) or not _CURRENCY_RE.match(v):
        raise ValueError(f"must be an ISO 4217 code of three capital letters such as 'USD', got {v!r}")
    return v


def _description(v: object) -> str:
    if not isinstance(v, str):
        raise ValueError(f"must be a text, got {v!r}")
    n = len(v.encode("utf-8"))
    if n > 32:
        raise ValueError(f"must fit the 2030.5 DERProgram description: at most 32 bytes in UTF-8, got {n}")
    return v


def _requested(v: object) -> float | tuple[float, ...]:
    if isinstance(v, (list, tuple)):
        if not v:
            raise ValueError("a profile needs at least one entry")
        out = []
        for k, x in enumerate(v):
            try:
                out.append(_positive(x))
            except ValueError as e:
                raise ValueError(f"profile entry {k}: {e}") from None
        return tuple(out)
    return _positive(v)


def _interval(v: object) -> int | None:
    if v is None:
        return None
    return _whole(v, MIN_INTERVAL_S, 86400, " seconds")


def _kinds(v: object) -> frozenset[DeviceKind]:
    if isinstance(v, (str, bytes)) or not isinstance(v, (list, tuple, set, frozenset)):
        raise ValueError(f"must be a list of device kinds ({_kind_names()}), got {v!r}")
    out = set()
    for k in v:
        try:
            out.add(DeviceKind(k))
        except ValueError:
            raise ValueError(f"{k!r} is not a device kind ({_kind_names()})") from None
    if not out:
        raise ValueError(f"at least one device kind is required ({_kind_names()})")
    return frozenset(out)


def _kind_names() -> str:
    return ", ".join(k.value for k in DeviceKind)


def _node_ids(v: object) -> tuple[str, ...]:
    if isinstance(v, (str, bytes)) or not isinstance(v, (list, tuple)):
        raise ValueError(f"must be a list of grid node ids, got {v!r}")
    for n in v:
        if not isinstance(n, str) or not n.strip():
            raise ValueError(f"grid node id {n!r} must be a non-blank text")
    if len(set(v)) != len(v):
        raise ValueError("a grid node id is listed twice")
    return tuple(v)


def _instance(cls: type) -> Callable[[object], Any]:
    def check(v: object) -> Any:
        if not isinstance(v, cls):
            raise ValueError(f"must be a {cls.__name__}, got {v!r}")
        return v
    return check


# --- incentive ---------------------------------------------------------------------------------
_INCENTIVE_KEYS = ("kind", "rate_per_kwh", "under_delivery_per_kwh")


@dataclass(frozen=True)
class Incentive:
    """How a delivered kWh is paid: "pay_as_clear" (the clearing price) or "fixed" (rate_per_kwh);
    under_delivery_per_kwh is charged per kWh delivered short of the setpoint."""

    kind: str
    rate_per_kwh: float | None = None
    under_delivery_per_kwh: float = 0.0

    def __post_init__(self) -> None:
        errors = []
        if self.kind not in INCENTIVE_KINDS:
            errors.append(f"incentive.kind: must be one of {', '.join(INCENTIVE_KINDS)}, got {self.kind!r}")
        if self.kind == "fixed":
            try:
                object.__setattr__(self, "rate_per_kwh", _positive(self.rate_per_kwh))
            except ValueError as e:
                errors.append(f"incentive.rate_per_kwh: a fixed incentive needs a rate: {e}")
        elif self.kind == "pay_as_clear" and self.rate_per_kwh is not None:
            errors.append("incentive.rate_per_kwh: must be null for pay_as_clear (the clearing price is paid)")
        try:
            object.__setattr__(self, "under_delivery_per_kwh", _non_negative(self.under_delivery_per_kwh))
        except ValueError as e:
            errors.append(f"incentive.under_delivery_per_kwh: {e}")
        if errors:
            raise ProgramError(errors)

    @classmethod
    def from_dict(cls, d: object) -> "Incentive":
        if not isinstance(d, Mapping):
            raise ProgramError([f"incentive: must be an object with {', '.join(_INCENTIVE_KEYS)}, got {d!r}"])
        errors = [f"incentive.{k}: unknown field (known: {', '.join(_INCENTIVE_KEYS)})"
                  for k in d if k not in _INCENTIVE_KEYS]
        if "kind" not in d:
            errors.append("incentive.kind: required")
        if errors:
            raise ProgramError(errors)
        return cls(**dict(d))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "rate_per_kwh": self.rate_per_kwh,
                "under_delivery_per_kwh": self.under_delivery_per_kwh}


# --- requests ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Request:
    """The reduction (kW) wanted from start to end (aware UTC): what one clearing solves for."""

    start: datetime
    end: datetime
    requested_kw: float

    @property
    def duration_s(self) -> float:
        return (self.end - self.start).total_seconds()


# --- program -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Program:
    """A flexibility program (see the module docstring for the JSON form and every rule)."""

    name: str
    currency: str
    window: WindowRule
    requested_kw: float | tuple[float, ...]
    price_cap: float
    incentive: Incentive
    eligible_kinds: frozenset[DeviceKind]
    interval_s: int | None = None
    price_floor: float = 0.0
    primacy: int = DEFAULT_PRIMACY
    lead_time_s: int = DEFAULT_LEAD_TIME_S
    randomize_start_s: int = 0
    grid_node_ids: tuple[str, ...] = field(default=())
    description: str = ""
    measurement: Terms = field(default_factory=Terms)
    envelope: Envelope | None = None

    def __post_init__(self) -> None:
        values, errors = _validate({f.name: getattr(self, f.name) for f in fields(self)})
        if errors:
            raise ProgramError(errors)
        for k, v in values.items():
            object.__setattr__(self, k, v)

    # --- JSON form ---------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Program":
        """Parse the JSON form (module docstring); ProgramError names every wrong field."""
        if not isinstance(d, Mapping):
            raise ProgramError([f"program: must be a JSON object, got {type(d).__name__}"])
        known = [f.name for f in fields(cls)]
        errors = [f"{k}: unknown field" for k in d if k not in known]
        values: dict[str, Any] = {}
        enveloped = d.get("envelope") is not None
        for f in fields(cls):
            if f.name not in d:
                if f.name == "requested_kw" and enveloped:
                    values[f.name] = 0.0  # an envelope program asks for limits, not a reduction
                elif f.name in _REQUIRED:
                    errors.append(f"{f.name}: required")
                continue
            v = d[f.name]
            try:
                if f.name == "window":
                    if not isinstance(v, Mapping):
                        raise ValueError(f"must be an object with weekdays, start, end, tz, got {v!r}")
                    v = WindowRule.from_dict(v)
                elif f.name == "incentive":
                    v = Incentive.from_dict(v)
                elif f.name == "measurement":
                    v = Terms.from_dict(v)
                elif f.name == "envelope" and v is not None:
                    v = Envelope.from_dict(v)
                elif f.name in ("eligible_kinds", "grid_node_ids") and not isinstance(v, list):
                    raise ValueError(f"must be a JSON list, got {v!r}")
            except WindowError as e:
                errors.extend(f"window.{m}" for m in e.errors)
                continue
            except (ProgramError, TermsError, EnvelopeError) as e:
                errors.extend(e.errors)
                continue
            except ValueError as e:
                errors.append(f"{f.name}: {e}")
                continue
            values[f.name] = v
        if enveloped and "envelope" not in values and "requested_kw" not in d:
            values.pop("requested_kw", None)  # the envelope is wrong (named): no second error about 0 kW
        checked, more = _validate(values)
        errors.extend(more)
        if errors:
            raise ProgramError(errors)
        return cls(**checked)

    def to_dict(self) -> dict[str, Any]:
        """The canonical JSON-safe form (every key, "envelope" when set; see the module docstring)."""
        req = self.requested_kw
        return {
            "name": self.name,
            "currency": self.currency,
            "window": self.window.to_dict(),
            "requested_kw": list(req) if isinstance(req, tuple) else req,
            "interval_s": self.interval_s,
            "price_cap": self.price_cap,
            "price_floor": self.price_floor,
            "incentive": self.incentive.to_dict(),
            "primacy": self.primacy,
            "lead_time_s": self.lead_time_s,
            "randomize_start_s": self.randomize_start_s,
            "eligible_kinds": sorted(k.value for k in self.eligible_kinds),
            "grid_node_ids": list(self.grid_node_ids),
            "description": self.description,
            "measurement": self.measurement.to_dict(),
        } | ({} if self.envelope is None else {"envelope": self.envelope.to_dict()})

    # --- scheduling --------------------------------------------------------------------------
    @property
    def is_profile(self) -> bool:
        return isinstance(self.requested_kw, tuple)

    def requests(self, window: Window) -> list[Request]:
        """One Request per interval of `window` (one for the whole window without interval_s).

        Profile entries map to intervals by wall-clock time (module docstring, DST rule)."""
        if self.interval_s is None:
            # a profile always has interval_s (_check_profile), so this is the single number
            return [Request(window.start, window.end, cast(float, self.requested_kw))]
        parts = split(window, self.interval_s)
        if not isinstance(self.requested_kw, tuple):
            return [Request(s, e, self.requested_kw) for s, e in parts]
        zone = self.window.zone
        wall0 = datetime.combine(window.local_date, self.window.start)
        last = len(self.requested_kw) - 1
        out = []
        for s, e in parts:
            offset = (s.astimezone(zone).replace(tzinfo=None) - wall0).total_seconds()
            k = min(max(int(offset // self.interval_s), 0), last)
            out.append(Request(s, e, self.requested_kw[k]))
        return out

    @property
    def mv_interval_s(self) -> int:
        """The M&V interval Δ (programs.measurement.measurement_interval)."""
        return measurement_interval(self.measurement, self.window.nominal_s, self.interval_s)

    def publish_at(self, window: Window) -> datetime:
        """When to publish the events of `window`: its start minus the lead time."""
        return window.start - timedelta(seconds=self.lead_time_s)


_REQUIRED = ("name", "currency", "window", "requested_kw", "price_cap", "incentive", "eligible_kinds")

_CHECKS: dict[str, Callable[[Any], Any]] = {
    "name": _name,
    "currency": _currency,
    "window": _instance(WindowRule),
    "requested_kw": _requested,
    "price_cap": _positive,
    "incentive": _instance(Incentive),
    "eligible_kinds": _kinds,
    "interval_s": _interval,
    "price_floor": _non_negative,
    "primacy": lambda v: _whole(v, 0, 255),
    "lead_time_s": lambda v: _whole(v, 0, MAX_LEAD_TIME_S, " seconds (7 days)"),
    "randomize_start_s": lambda v: _whole(v, 0, MAX_RANDOMIZE_S, " seconds"),
    "grid_node_ids": _node_ids,
    "description": _description,
    "measurement": _instance(Terms),
    "envelope": lambda v: v if v is None else _instance(Envelope)(v),
}


def _validate(values: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Check each given field and the rules between fields; returns (normalised, errors)."""
    out: dict[str, Any] = {}
    errors: list[str] = []
    enveloped = values.get("envelope") is not None
    for k, v in values.items():
        try:
            out[k] = _no_request(v) if k == "requested_kw" and enveloped else _CHECKS[k](v)
        except ValueError as e:
            errors.append(f"{k}: {e}")
    bad = {e.split(":", 1)[0] for e in errors}
    if enveloped and "incentive" in out and out["incentive"].kind != "fixed":
        errors.append("incentive.kind: an envelope program has no clearing price to pay: use \"fixed\" with "
                      "rate_per_kwh, paid per kWh curtailed against the baseline (programs.envelopes)")
    if {"price_cap", "price_floor"} <= out.keys() and out["price_floor"] >= out["price_cap"]:
        errors.append(f"price_floor: must be below price_cap ({out['price_floor']!r} >= {out['price_cap']!r})")
    if not {"requested_kw", "interval_s", "window"} & bad:
        errors.extend(_check_profile(out.get("requested_kw"), out.get("interval_s"), out.get("window")))
    if not {"interval_s", "window", "measurement"} & bad and "window" in out:
        try:
            measurement_interval(out.get("measurement") or Terms(), out["window"].nominal_s, out.get("interval_s"))
        except TermsError as e:
            errors.extend(e.errors)
    return out, errors


def _no_request(v: object) -> float:
    """requested_kw of an envelope program: 0 (it asks for limits, not for a reduction)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != 0:
        raise ValueError(f"an envelope program asks for limits, not for a reduction: leave requested_kw out "
                         f"(or 0), got {v!r}")
    return 0.0


def _check_profile(req: object, interval_s: int | None, rule: WindowRule | None) -> list[str]:
    if rule is None:
        return []
    if interval_s is not None and interval_s > rule.nominal_s:
        return [f"interval_s: {interval_s} s is longer than the window ({rule.nominal_s} s)"]
    if not isinstance(req, tuple):
        return []
    if interval_s is None:
        return ["interval_s: required when requested_kw is a profile (a list, one kW per interval)"]
    n = math.ceil(rule.nominal_s / interval_s)
    if len(req) != n:
        return [f"requested_kw: the profile has {len(req)} entries but the window "
                f"({rule.nominal_s} s in intervals of {interval_s} s) has {n} intervals"]
    return []
