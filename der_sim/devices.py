"""Simulated device physics: home batteries, PV inverters, EV chargers and controllable loads.

Each kind of device is a *model* (a stateless object: `BATTERY`, `PV`, `EV_CHARGER`, `LOAD`, also
in `MODELS` by kind name) over two frozen dataclasses: its parameters and its state. A model
offers `initial(params, now, rng)`, `step(params, state, control, now, dt, rng) -> state` and
`offered_curve(...)`. Everything is pure: time is a parameter, randomness comes from the
`random.Random` passed in, so a seed replays a run exactly.

Rules (stated once, used everywhere):
- Sign convention: power in W, positive = generation / discharge / export, negative =
  consumption / charging (the seeds' bid-curve convention). The site's metered import is the
  opposite, `metered_import_w(state) = -state.power_w` (positive = the site draws from the grid).
- `step` simulates the interval [now, now + dt): `state.power_w` is the average power over it and
  `state.time` becomes now + dt. A step may start after the state's time (the device sat idle in
  between); it may not start before it.
- Controls are 2030.5 DERControlBase values decoded to plain numbers (`Control`); `None` means no
  event: the device follows its own behaviour. opModFixedW is a percent of the maximum discharge /
  generation (positive) or of the maximum charge rate (negative); opModMaxLimW a percent of the
  maximum output; opModTargetW a site-level power in W in the same sign convention; opModConnect
  False stops the device (a load sheds only its curtailable share). A model ignores modes outside
  its `supports` (the event engine rejects events that set them).
- CSIP-AUS dynamic operating envelopes (every model supports them): opModExpLimW / opModImpLimW
  cap the site's export / import in W, opModGenLimW / opModLoadLimW the device's generation
  (discharge) / consumption (charge). Each simulated device is a site of its own, so a PV
  inverter's output, a battery's discharge, an EV charger's rate and a battery's charge are cut to
  the smallest limit that applies (`export_cap_w`, `import_cap_w`); a load cannot shed below its
  uncurtailable share, so its import limit holds down to that floor.
- Battery: state of charge moves by the AC energy times sqrt(round-trip efficiency) when charging
  and divided by it when discharging, so ΔSoC = ∫charge·η − ∫discharge/η with η = sqrt(RTE); it never
  goes below the reserve nor above the capacity (the power is cut to what fits in the step).
- PV: clear-sky bell sin(π x)^1.5 between sunrise and sunset (x the fraction of daylight elapsed,
  local time), attenuated by a persistent cloud cover (AR(1), time constant `cloud_tau_s`); output
  is never negative and never above opModMaxLimW (or a non-negative opModFixedW) × nameplate.
- EV charger (V1G): charges a plugged car at min(charger, car) rate until the session's energy is
  delivered; opModFixedW < 0 holds it at that % of the charger's rate (never above what the car
  needs); a positive value stops charging (it cannot discharge). A session's deadline is met when
  the energy was delivered by its departure.
- Load: a daily profile (base + Gaussian morning and evening peaks, local time) with multiplicative
  noise; opModTargetW (negative W = a consumption target), a negative opModFixedW (% of `rated_w`)
  or opModConnect False reduce consumption, but never below (1 − curtailable share) × demand.
- Bid curves (`offered_curve`): (price, powerKW) points, prices ascending from the floor to the cap,
  power in the seed convention, non-decreasing in price (more price, more flexibility): battery 0 →
  the discharge its SoC above reserve sustains over the window; EV full-rate charging → the slowest
  charging that still meets its deadline; load its expected demand → its uncurtailable share;
  PV offers nothing (curtailing it would raise net load): an empty list.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, fields, replace
from typing import Any, Protocol

__all__ = [
    "BATTERY",
    "EV_CHARGER",
    "LOAD",
    "MODELS",
    "PV",
    "BatteryParams",
    "BatteryState",
    "Control",
    "EVParams",
    "EVSession",
    "EVState",
    "LoadParams",
    "LoadState",
    "Model",
    "PVParams",
    "PVState",
    "SessionResult",
    "backfill",
    "clear_sky_fraction",
    "load_profile_w",
    "metered_import_w",
    "offered_curve",
    "session_results",
]

DAY_S = 86_400
HOUR_S = 3_600


def _need(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def _finite(name: str, value: float) -> None:
    _need(isinstance(value, (int, float)) and math.isfinite(value), f"{name} must be a finite number, got {value!r}")


def _at_least(name: str, value: float, lo: float) -> None:
    _finite(name, value)
    _need(value >= lo, f"{name} must be at least {lo}, got {value}")


def _between(name: str, value: float, lo: float, hi: float) -> None:
    _finite(name, value)
    _need(lo <= value <= hi, f"{name} must be between {lo} and {hi}, got {value}")


# ---------------------------------------------------------------------------------------- controls


@dataclass(frozen=True, slots=True)
class Control:
    """A DERControlBase decoded to plain numbers (None = the mode is not set).

    fixed_w_pct: opModFixedW in percent (7000 on the wire → 70.0), −100…100;
    max_lim_w_pct: opModMaxLimW in percent, 0…100; target_w: opModTargetW in W (sign convention
    above); connect: opModConnect."""

    fixed_w_pct: float | None = None
    max_lim_w_pct: float | None = None
    target_w: float | None = None
    connect: bool | None = None
    exp_lim_w: float | None = None  # csipaus:opModExpLimW, W the site may export at most
    imp_lim_w: float | None = None  # csipaus:opModImpLimW, W the site may import at most
    gen_lim_w: float | None = None  # csipaus:opModGenLimW, W the device may generate / discharge at most
    load_lim_w: float | None = None  # csipaus:opModLoadLimW, W the device may consume / charge at most

    def __post_init__(self) -> None:
        if self.fixed_w_pct is not None:
            _between("opModFixedW (fixed_w_pct)", self.fixed_w_pct, -100.0, 100.0)
        if self.max_lim_w_pct is not None:
            _between("opModMaxLimW (max_lim_w_pct)", self.max_lim_w_pct, 0.0, 100.0)
        if self.target_w is not None:
            _finite("opModTargetW (target_w)", self.target_w)
        for name in DOE_MODES:
            value = getattr(self, name)
            if value is not None:
                _finite(name, value)
                # a negative limit (ActivePower is signed) allows nothing that way, as 0 does
                object.__setattr__(self, name, max(0.0, float(value)))

    def export_cap_w(self) -> float:
        """The most the device may put out (W, ≥ 0): the export and generation limits (inf: none)."""
        return min((v for v in (self.exp_lim_w, self.gen_lim_w) if v is not None), default=math.inf)

    def import_cap_w(self) -> float:
        """The most the device may draw (W, ≥ 0): the import and load limits (inf: none)."""
        return min((v for v in (self.imp_lim_w, self.load_lim_w) if v is not None), default=math.inf)

    @property
    def modes(self) -> frozenset[str]:
        """The names of the modes this control sets."""
        return frozenset(f.name for f in fields(self) if getattr(self, f.name) is not None)

    def or_else(self, fallback: Control) -> Control:
        """This control, with the modes it leaves unset taken from `fallback`."""
        return Control(**{
            f.name: getattr(fallback, f.name) if getattr(self, f.name) is None else getattr(self, f.name)
            for f in fields(self)
        })


MODES = frozenset(f.name for f in fields(Control))
DOE_MODES = ("exp_lim_w", "imp_lim_w", "gen_lim_w", "load_lim_w")


def metered_import_w(state: Any) -> float:
    """The site's metered import caused by the device: −power (positive = drawn from the grid)."""
    return -state.power_w


def _check_step(state: Any, now: float, dt: float) -> None:
    _finite("now", now)
    _need(isinstance(dt, (int, float)) and math.isfinite(dt) and dt > 0, f"dt must be a positive number of seconds, got {dt!r}")
    _need(now >= state.time, f"a step cannot start at {now}, before the state's time {state.time}")


def _local_hour(t: float, tz_offset_s: int) -> float:
    return ((t + tz_offset_s) % DAY_S) / HOUR_S


def _check_prices(window_s: float, price_floor: float, price_cap: float) -> None:
    _need(math.isfinite(window_s) and window_s > 0, f"window_s must be a positive number of seconds, got {window_s}")
    _finite("price_floor", price_floor)
    _finite("price_cap", price_cap)
    _need(price_floor < price_cap, f"price_floor ({price_floor}) must be below price_cap ({price_cap})")


def _curve(price_floor: float, price_cap: float, at_floor_w: float, at_cap_w: float) -> list[tuple[float, float]]:
    """A two-point curve in kW, or one point when the device has no flexibility to offer."""
    lo, hi = at_floor_w / 1000.0, at_cap_w / 1000.0
    if math.isclose(lo, hi, rel_tol=0.0, abs_tol=1e-9):
        return [(price_floor, lo)]
    return [(price_floor, lo), (price_cap, hi)]


class Model(Protocol):
    """What every device model offers (see the module docstring for the rules)."""

    kind: str
    supports: frozenset[str]

    def initial(self, params: Any, now: float, rng: random.Random) -> Any: ...

    def step(self, params: Any, state: Any, control: Control | None, now: float, dt: float, rng: random.Random) -> Any: ...

    def offered_curve(self, params: Any, state: Any, now: float, window_s: float,
                      price_floor: float, price_cap: float) -> list[tuple[float, float]]: ...


# ----------------------------------------------------------------------------------------- battery


@dataclass(frozen=True, slots=True)
class BatteryParams:
    capacity_wh: float
    max_charge_w: float
    max_discharge_w: float
    round_trip_efficiency: float = 0.9
    reserve_pct: float = 20.0
    initial_soc_pct: float = 50.0

    def __post_init__(self) -> None:
        _need(isinstance(self.capacity_wh, (int, float)) and self.capacity_wh > 0, f"battery capacity_wh must be positive, got {self.capacity_wh}")
        _at_least("battery max_charge_w", self.max_charge_w, 0.0)
        _at_least("battery max_discharge_w", self.max_discharge_w, 0.0)
        _finite("battery round_trip_efficiency", self.round_trip_efficiency)
        _need(0.0 < self.round_trip_efficiency <= 1.0,
              f"battery round_trip_efficiency must be in (0, 1], got {self.round_trip_efficiency}")
        _between("battery reserve_pct", self.reserve_pct, 0.0, 100.0)
        _between("battery initial_soc_pct", self.initial_soc_pct, 0.0, 100.0)

    @property
    def efficiency(self) -> float:
        """One-way efficiency: the round trip split evenly between charging and discharging."""
        return math.sqrt(self.round_trip_efficiency)

    @property
    def reserve_wh(self) -> float:
        return self.capacity_wh * self.reserve_pct / 100.0


@dataclass(frozen=True, slots=True)
class BatteryState:
    time: float
    soc_wh: float
    power_w: float = 0.0
    charged_wh: float = 0.0  # AC energy taken from the site, cumulative
    discharged_wh: float = 0.0  # AC energy delivered to the site, cumulative

    def soc_pct(self, params: BatteryParams) -> float:
        return 100.0 * self.soc_wh / params.capacity_wh


class Battery:
    kind = "battery"
    supports = frozenset({"fixed_w_pct", "max_lim_w_pct", "connect", *DOE_MODES})

    def initial(self, params: BatteryParams, now: float, rng: random.Random) -> BatteryState:
        return BatteryState(time=now, soc_wh=params.capacity_wh * params.initial_soc_pct / 100.0)

    def requested_w(self, params: BatteryParams, control: Control | None) -> float:
        """What the control asks for, within the ratings (idle without a fixed setpoint)."""
        if control is None or control.connect is False or control.fixed_w_pct is None:
            return 0.0
        pct = control.fixed_w_pct
        if pct >= 0:
            w = pct / 100.0 * params.max_discharge_w
            if control.max_lim_w_pct is not None:
                w = min(w, control.max_lim_w_pct / 100.0 * params.max_discharge_w)
            return min(w, control.export_cap_w())
        return max(pct / 100.0 * params.max_charge_w, -control.import_cap_w())

    def step(self, params: BatteryParams, state: BatteryState, control: Control | None, now: float, dt: float,
             rng: random.Random) -> BatteryState:
        _check_step(state, now, dt)
        want = self.requested_w(params, control)
        eta, hours = params.efficiency, dt / HOUR_S
        if want > 0:
            above_reserve = max(0.0, state.soc_wh - params.reserve_wh)
            power = min(want, above_reserve * eta / hours)
            stored = -power * hours / eta
            soc = max(state.soc_wh + stored, min(state.soc_wh, params.reserve_wh))
            return replace(state, time=now + dt, soc_wh=soc, power_w=power,
                           discharged_wh=state.discharged_wh + power * hours)
        if want < 0:
            room = max(0.0, params.capacity_wh - state.soc_wh)
            power = max(want, -room / eta / hours)
            soc = min(state.soc_wh - power * hours * eta, params.capacity_wh)
            return replace(state, time=now + dt, soc_wh=soc, power_w=power,
                           charged_wh=state.charged_wh - power * hours)
        return replace(state, time=now + dt, power_w=0.0)

    def offered_curve(self, params: BatteryParams, state: BatteryState, now: float, window_s: float,
                      price_floor: float, price_cap: float) -> list[tuple[float, float]]:
        _check_prices(window_s, price_floor, price_cap)
        above_reserve = max(0.0, state.soc_wh - params.reserve_wh)
        sustain = min(params.max_discharge_w, above_reserve * params.efficiency * HOUR_S / window_s)
        return _curve(price_floor, price_cap, 0.0, sustain)


# -------------------------------------------------------------------------------------------- PV


def clear_sky_fraction(local_hour: float, sunrise_h: float, sunset_h: float) -> float:
    """The clear-sky output as a fraction of nameplate: sin(π x)^1.5 over daylight, 0 at night."""
    if not sunrise_h < local_hour < sunset_h:
        return 0.0
    x = (local_hour - sunrise_h) / (sunset_h - sunrise_h)
    return math.sin(math.pi * x) ** 1.5


@dataclass(frozen=True, slots=True)
class PVParams:
    nameplate_w: float
    sunrise_h: float = 6.0
    sunset_h: float = 18.0
    tz_offset_s: int = 0
    cloudiness: float = 0.0  # how much of the output a full cloud cover takes away, 0…1
    cloud_tau_s: float = 1800.0  # how long a cloud cover persists

    def __post_init__(self) -> None:
        _at_least("pv nameplate_w", self.nameplate_w, 0.0)
        _between("pv sunrise_h", self.sunrise_h, 0.0, 24.0)
        _between("pv sunset_h", self.sunset_h, 0.0, 24.0)
        _need(self.sunrise_h < self.sunset_h, f"pv sunrise_h ({self.sunrise_h}) must be before sunset_h ({self.sunset_h})")
        _between("pv cloudiness", self.cloudiness, 0.0, 1.0)
        _need(math.isfinite(self.cloud_tau_s) and self.cloud_tau_s > 0, f"pv cloud_tau_s must be positive, got {self.cloud_tau_s}")


@dataclass(frozen=True, slots=True)
class PVState:
    time: float
    power_w: float = 0.0
    available_w: float = 0.0  # what the sun allowed in the last step, before any limit
    cloud: float = 0.0  # cloud cover 0…1


class PVInverter:
    kind = "pv"
    supports = frozenset({"fixed_w_pct", "max_lim_w_pct", "connect", *DOE_MODES})

    def initial(self, params: PVParams, now: float, rng: random.Random) -> PVState:
        return PVState(time=now, cloud=rng.random() if params.cloudiness > 0 else 0.0)

    def limit_w(self, params: PVParams, control: Control | None) -> float:
        if control is None:
            return params.nameplate_w
        if control.connect is False:
            return 0.0
        limit = params.nameplate_w
        if control.max_lim_w_pct is not None:
            limit = min(limit, control.max_lim_w_pct / 100.0 * params.nameplate_w)
        if control.fixed_w_pct is not None:
            limit = min(limit, max(0.0, control.fixed_w_pct) / 100.0 * params.nameplate_w)
        return min(limit, control.export_cap_w())

    def step(self, params: PVParams, state: PVState, control: Control | None, now: float, dt: float,
             rng: random.Random) -> PVState:
        _check_step(state, now, dt)
        cloud = state.cloud
        if params.cloudiness > 0:
            keep = math.exp(-dt / params.cloud_tau_s)
            cloud = keep * cloud + (1.0 - keep) * rng.random()
        sun = clear_sky_fraction(_local_hour(now + dt / 2, params.tz_offset_s), params.sunrise_h, params.sunset_h)
        available = params.nameplate_w * sun * (1.0 - params.cloudiness * cloud)
        power = max(0.0, min(available, self.limit_w(params, control)))
        return replace(state, time=now + dt, power_w=power, available_w=available, cloud=cloud)

    def offered_curve(self, params: PVParams, state: PVState, now: float, window_s: float,
                      price_floor: float, price_cap: float) -> list[tuple[float, float]]:
        _check_prices(window_s, price_floor, price_cap)
        return []


# ------------------------------------------------------------------------------------ EV charger


@dataclass(frozen=True, slots=True)
class EVSession:
    """A car plugged from `arrival` to `departure` (UTC seconds) that needs `energy_wh`."""

    arrival: float
    departure: float
    energy_wh: float
    max_rate_w: float

    def __post_init__(self) -> None:
        _finite("ev session arrival", self.arrival)
        _finite("ev session departure", self.departure)
        _need(self.departure > self.arrival, f"ev session departure ({self.departure}) must be after its arrival ({self.arrival})")
        _at_least("ev session energy_wh", self.energy_wh, 0.0)
        _need(math.isfinite(self.max_rate_w) and self.max_rate_w > 0, f"ev session max_rate_w must be positive, got {self.max_rate_w}")


@dataclass(frozen=True, slots=True)
class EVParams:
    max_charge_w: float
    sessions: tuple[EVSession, ...] = ()

    def __post_init__(self) -> None:
        _need(isinstance(self.max_charge_w, (int, float)) and self.max_charge_w > 0,
              f"ev charger max_charge_w must be positive, got {self.max_charge_w}")
        for i in range(1, len(self.sessions)):
            _need(self.sessions[i].arrival >= self.sessions[i - 1].departure,
                  f"ev session {i} arrives ({self.sessions[i].arrival}) before session {i - 1} departs "
                  f"({self.sessions[i - 1].departure}): sessions must be in order and not overlap")

    def rate_w(self, session: EVSession) -> float:
        return min(self.max_charge_w, session.max_rate_w)

    def plugged(self, t: float) -> int | None:
        """The index of the session plugged in at t, if any."""
        for i, s in enumerate(self.sessions):
            if s.arrival <= t < s.departure:
                return i
        return None


@dataclass(frozen=True, slots=True)
class EVState:
    time: float
    power_w: float = 0.0
    delivered_wh: tuple[float, ...] = ()  # per session, in the order of params.sessions


@dataclass(frozen=True, slots=True)
class SessionResult:
    session: EVSession
    delivered_wh: float
    met: bool  # the energy was delivered by the departure


def session_results(params: EVParams, state: EVState) -> list[SessionResult]:
    """The sessions whose departure has passed by the state's time, and whether each met its deadline."""
    out = []
    for s, got in zip(params.sessions, state.delivered_wh):
        if s.departure <= state.time:
            out.append(SessionResult(s, got, got >= s.energy_wh - 1e-6))
    return out


class EVCharger:
    kind = "ev_charger"
    supports = frozenset({"fixed_w_pct", "connect", *DOE_MODES})

    def initial(self, params: EVParams, now: float, rng: random.Random) -> EVState:
        return EVState(time=now, delivered_wh=(0.0,) * len(params.sessions))

    def allowed_w(self, params: EVParams, session: EVSession, control: Control | None) -> float:
        rate = params.rate_w(session)
        if control is None:
            return rate
        if control.connect is False:
            return 0.0
        rate = min(rate, control.import_cap_w())
        if control.fixed_w_pct is not None:
            return min(rate, max(0.0, -control.fixed_w_pct) / 100.0 * params.max_charge_w)
        return rate

    def step(self, params: EVParams, state: EVState, control: Control | None, now: float, dt: float,
             rng: random.Random) -> EVState:
        _check_step(state, now, dt)
        delivered = list(state.delivered_wh)
        energy = 0.0
        for i, s in enumerate(params.sessions):
            plugged_s = min(now + dt, s.departure) - max(now, s.arrival)
            if plugged_s <= 0:
                continue
            e = min(max(0.0, s.energy_wh - delivered[i]), self.allowed_w(params, s, control) * plugged_s / HOUR_S)
            delivered[i] += e
            energy += e
        return replace(state, time=now + dt, power_w=-energy * HOUR_S / dt, delivered_wh=tuple(delivered))

    def offered_curve(self, params: EVParams, state: EVState, now: float, window_s: float,
                      price_floor: float, price_cap: float) -> list[tuple[float, float]]:
        _check_prices(window_s, price_floor, price_cap)
        i = params.plugged(now)
        if i is None:
            return [(price_floor, 0.0)]
        s = params.sessions[i]
        remaining = max(0.0, s.energy_wh - state.delivered_wh[i])
        rate = params.rate_w(s)
        window = min(window_s, s.departure - now)
        after = s.departure - now - window
        full = min(remaining, rate * window / HOUR_S) * HOUR_S / window
        # charge as little in the window as the time left after it still allows
        least = max(0.0, remaining - rate * after / HOUR_S) * HOUR_S / window
        return _curve(price_floor, price_cap, -full, -min(least, full))


# ------------------------------------------------------------------------------------------ load


@dataclass(frozen=True, slots=True)
class LoadParams:
    base_w: float = 400.0
    morning_peak_w: float = 1200.0
    evening_peak_w: float = 2000.0
    morning_peak_h: float = 7.5
    evening_peak_h: float = 19.0
    peak_width_h: float = 1.5  # standard deviation of each peak
    noise: float = 0.05  # relative standard deviation of the demand
    curtailable_share: float = 0.5
    rated_w: float = 5000.0  # the 100 % of opModFixedW
    tz_offset_s: int = 0

    def __post_init__(self) -> None:
        for name in ("base_w", "morning_peak_w", "evening_peak_w", "noise"):
            _at_least(f"load {name}", getattr(self, name), 0.0)
        _between("load morning_peak_h", self.morning_peak_h, 0.0, 24.0)
        _between("load evening_peak_h", self.evening_peak_h, 0.0, 24.0)
        _need(math.isfinite(self.peak_width_h) and self.peak_width_h > 0, f"load peak_width_h must be positive, got {self.peak_width_h}")
        _between("load curtailable_share", self.curtailable_share, 0.0, 1.0)
        _need(math.isfinite(self.rated_w) and self.rated_w > 0, f"load rated_w must be positive, got {self.rated_w}")


def load_profile_w(params: LoadParams, t: float) -> float:
    """The expected (noiseless) consumption at t, in W (positive)."""
    h = _local_hour(t, params.tz_offset_s)

    def peak(center: float) -> float:
        d = abs(h - center)
        d = min(d, 24.0 - d)  # hours on a circle: a 23:00 peak is near 01:00
        return math.exp(-0.5 * (d / params.peak_width_h) ** 2)

    return params.base_w + params.morning_peak_w * peak(params.morning_peak_h) + params.evening_peak_w * peak(params.evening_peak_h)


@dataclass(frozen=True, slots=True)
class LoadState:
    time: float
    power_w: float = 0.0
    demand_w: float = 0.0  # what the site would have consumed in the last step without control


class ControllableLoad:
    kind = "load"
    supports = frozenset({"fixed_w_pct", "target_w", "connect", *DOE_MODES})

    def initial(self, params: LoadParams, now: float, rng: random.Random) -> LoadState:
        return LoadState(time=now)

    def consumption_w(self, params: LoadParams, demand_w: float, control: Control | None) -> float:
        floor = (1.0 - params.curtailable_share) * demand_w
        if control is None:
            return demand_w
        use = demand_w
        if control.connect is False:
            use = floor
        if control.target_w is not None:
            use = min(use, max(0.0, -control.target_w))
        if control.fixed_w_pct is not None:
            use = min(use, max(0.0, -control.fixed_w_pct) / 100.0 * params.rated_w)
        return max(floor, min(use, control.import_cap_w()))

    def step(self, params: LoadParams, state: LoadState, control: Control | None, now: float, dt: float,
             rng: random.Random) -> LoadState:
        _check_step(state, now, dt)
        noise = rng.gauss(0.0, params.noise) if params.noise > 0 else 0.0
        demand = max(0.0, load_profile_w(params, now + dt / 2) * (1.0 + noise))
        return replace(state, time=now + dt, power_w=-self.consumption_w(params, demand, control), demand_w=demand)

    def offered_curve(self, params: LoadParams, state: LoadState, now: float, window_s: float,
                      price_floor: float, price_cap: float) -> list[tuple[float, float]]:
        _check_prices(window_s, price_floor, price_cap)
        samples = max(1, int(window_s // 300))
        expected = sum(load_profile_w(params, now + (k + 0.5) * window_s / samples) for k in range(samples)) / samples
        return _curve(price_floor, price_cap, -expected, -(1.0 - params.curtailable_share) * expected)


BATTERY = Battery()
PV = PVInverter()
EV_CHARGER = EVCharger()
LOAD = ControllableLoad()
# Keyed by the same names as programs.kinds.DeviceKind (which der_sim may not import).
MODELS: dict[str, Model] = {m.kind: m for m in (BATTERY, PV, EV_CHARGER, LOAD)}


def offered_curve(model: Model, params: Any, state: Any, now: float, *, window_s: float,
                  price_floor: float, price_cap: float) -> list[tuple[float, float]]:
    """The bid curve the device would offer for [now, now + window_s): (price, powerKW) points."""
    return model.offered_curve(params, state, now, window_s, price_floor, price_cap)


def backfill(model: Model, params: Any, start: float, days: float, interval_s: float,
             rng: random.Random) -> list[tuple[float, float]]:
    """History without events: (interval start, average metered import W) for `days` days."""
    _finite("start", start)
    _need(math.isfinite(days) and days > 0, f"days must be positive, got {days}")
    _need(math.isfinite(interval_s) and interval_s > 0, f"interval_s must be a positive number of seconds, got {interval_s}")
    state = model.initial(params, start, rng)
    out = []
    for k in range(int(days * DAY_S // interval_s)):
        t = start + k * interval_s
        state = model.step(params, state, None, t, interval_s, rng)
        out.append((t, metered_import_w(state)))
    return out
