"""The 2030.5 documents a simulated device reports, built from its model (pure functions).

- DER function set: DERCapability (type, modes, ratings), DERSettings (= the ratings), DERStatus
  and DERAvailability (from the model's state), per model kind of der_sim/devices.py.
- Metering mirror: the device's MirrorUsagePoint and the MirrorMeterReading that carries its
  average real power per interval.

Conventions the server relies on (server/services/sep2/mup.py, server/db/metering.load_series): the
readings are average W (uom 38, kind 37 power, dataQualifier 2 average, powerOfTenMultiplier 0)
with flowDirection 1 (forward: positive = delivered to the customer), i.e. the value is the
device's `metered_import_w` (negative when it exports). Consecutive readings go in one
MirrorReadingSet without a timePeriod of their own: the server places reading i at the set's start
+ i × the ReadingType's intervalLength. mRIDs are derived from the device's LFDI, so a restarted
simulator finds its usage point again.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from typing import Any

from der_sim.devices import BatteryParams, EVParams, LoadParams, PVParams
from server.sep2.der import (
    ActivePower,
    ConnectStatusType,
    DERAvailability,
    DERCapability,
    DERSettings,
    DERStatus,
    InverterStatusType,
    LocalControlModeStatusType,
    OperationalModeStatusType,
    StateOfChargeStatusType,
    StorageModeStatusType,
    WattHour,
)
from server.sep2.derp import DateTimeInterval
from server.sep2.mup import UOM_W, MirrorMeterReading, MirrorReadingSet, MirrorUsagePoint, Reading, ReadingType

__all__ = [
    "availability",
    "capability",
    "meter_reading",
    "mirror_usage_point",
    "mrid",
    "reading_type",
    "settings",
    "status",
]

# DERControlType bits (2018 schema): 0 charge, 1 discharge, 2 opModConnect, 7 opModFixedW,
# 20 opModMaxLimW, 22 opModTargetW.
_CHARGE, _DISCHARGE, _CONNECT, _FIXED_W, _MAX_LIM_W, _TARGET_W = (1 << b for b in (0, 1, 2, 7, 20, 22))
# DERType by model kind: 80 other storage, 4 PV, 82 EVSE, 0 n/a (a load is not a DER type).
_DER_TYPE = {"battery": 80, "pv": 4, "ev_charger": 82, "load": 0}
_MODES = {
    "battery": _CHARGE | _DISCHARGE | _CONNECT | _FIXED_W | _MAX_LIM_W,
    "pv": _CONNECT | _FIXED_W | _MAX_LIM_W,
    "ev_charger": _CHARGE | _CONNECT | _FIXED_W,
    "load": _CONNECT | _FIXED_W | _TARGET_W,
}
# MirrorUsagePoint roleFlags: bit 0 isMirror, 2 isPEV, 3 isDER, 6 isSubmeter.
_ROLE = {"battery": 0x49, "pv": 0x49, "ev_charger": 0x4D, "load": 0x41}
_CONNECTED, _AVAILABLE, _OPERATING = 0x01, 0x02, 0x04
PEN = 0  # no IANA Private Enterprise Number: the last 32 bits of every mRID are 0


def mrid(*parts: object) -> str:
    """A stable mRID: 96 bits of a hash of `parts`, then the PEN."""
    digest = hashlib.blake2b(":".join(str(p) for p in parts).encode(), digest_size=12).hexdigest().upper()
    return f"{digest}{PEN:08X}"


def _w(amount: float) -> ActivePower:
    return ActivePower.of(int(round(amount)))


def _ratings(kind: str, params: Any) -> tuple[float, float | None, float | None, float | None]:
    """(max W, max charge W, max discharge W, max Wh) of a device, as 2030.5 rates them."""
    if isinstance(params, BatteryParams):
        # setMaxW is what a positive opModFixedW is a share of: the model discharges at
        # fixed_w_pct × max_discharge_w, so that is its maximum active power.
        return (params.max_discharge_w or max(params.max_charge_w, 1.0), params.max_charge_w,
                params.max_discharge_w, params.capacity_wh)
    if isinstance(params, PVParams):
        return max(params.nameplate_w, 1.0), None, None, None
    if isinstance(params, EVParams):
        return params.max_charge_w, params.max_charge_w, 0.0, None
    if isinstance(params, LoadParams):
        return params.rated_w, params.rated_w, None, None
    raise ValueError(f"no 2030.5 ratings for {kind} parameters {type(params).__name__}")


def capability(kind: str, params: Any) -> DERCapability:
    """DERCapability: the DERType of the kind, the modes it follows, its nameplate ratings."""
    max_w, charge, discharge, wh = _ratings(kind, params)
    return DERCapability(
        modes_supported=f"{_MODES[kind]:08X}",
        rtg_max_charge_rate_w=None if charge is None else _w(charge),
        rtg_max_discharge_rate_w=None if discharge is None else _w(discharge),
        rtg_max_w=_w(max_w),
        rtg_max_wh=None if wh is None else WattHour.of(int(round(wh))),
        type=_DER_TYPE[kind],
    )


def settings(kind: str, params: Any, now: int) -> DERSettings:
    """DERSettings: configured at the ratings, every mode enabled, no ramp limit."""
    max_w, charge, discharge, wh = _ratings(kind, params)
    return DERSettings(
        modes_enabled=f"{_MODES[kind]:08X}",
        set_grad_w=0,
        set_max_charge_rate_w=None if charge is None else _w(charge),
        set_max_discharge_rate_w=None if discharge is None else _w(discharge),
        set_max_w=_w(max_w),
        set_max_wh=None if wh is None else WattHour.of(int(round(wh))),
        updated_time=now,
    )


def status(kind: str, params: Any, state: Any, now: int) -> DERStatus:
    """DERStatus: connected and under remote control; operating while it moves power; a battery's
    state of charge and storage mode; a PV inverter producing (MPPT) or sleeping."""
    power = state.power_w
    bits = _CONNECTED | _AVAILABLE | (_OPERATING if abs(power) > 0.5 else 0)
    connect = ConnectStatusType(date_time=now, value=f"{bits:02X}")
    doc = DERStatus(
        gen_connect_status=connect if kind != "battery" else None,
        local_control_mode_status=LocalControlModeStatusType(date_time=now, value=1),
        operational_mode_status=OperationalModeStatusType(date_time=now, value=2),
        reading_time=now,
    )
    if isinstance(params, BatteryParams):
        soc = min(10_000, max(0, round(100 * state.soc_pct(params))))
        mode = 0 if power < -0.5 else 1 if power > 0.5 else 2
        doc.state_of_charge_status = StateOfChargeStatusType(date_time=now, value=soc)
        doc.storage_mode_status = StorageModeStatusType(date_time=now, value=mode)
        doc.stor_connect_status = connect
    elif isinstance(params, PVParams):
        doc.inverter_status = InverterStatusType(date_time=now, value=4 if power > 0.5 else 2)
    return doc


def availability(kind: str, params: Any, state: Any, now: int) -> DERAvailability:
    """DERAvailability: what the device could still deliver now, and for how long.

    Battery: statWAvail its discharge rating while above its reserve, availabilityDuration how
    long that rate lasts on the energy above the reserve, maxChargeDuration how long charging at
    full rate fits, reservePercent its reserve (percent of capacity, as clearing reads it). PV: the
    power the sun allows. A load: the curtailable share of its last demand."""
    doc = DERAvailability(reading_time=now)
    if isinstance(params, BatteryParams):
        eta = params.efficiency
        above = max(0.0, state.soc_wh - params.reserve_wh)
        room = max(0.0, params.capacity_wh - state.soc_wh)
        doc.stat_w_avail = _w(params.max_discharge_w if above > 0 else 0.0)
        doc.availability_duration = _seconds(above * eta, params.max_discharge_w)
        doc.max_charge_duration = _seconds(room / eta, params.max_charge_w)
        doc.reserve_percent = min(10_000, round(100 * params.reserve_pct))
    elif isinstance(params, PVParams):
        doc.stat_w_avail = _w(max(0.0, state.available_w))
    elif isinstance(params, LoadParams):
        doc.stat_w_avail = _w(params.curtailable_share * max(0.0, state.demand_w))
    elif isinstance(params, EVParams):
        doc.stat_w_avail = _w(max(0.0, -state.power_w))
    return doc


def _seconds(energy_wh: float, rate_w: float) -> int:
    if rate_w <= 0:
        return 0
    return min(2**32 - 1, int(energy_wh / rate_w * 3600))


# ---------------------------------------------------------------------------------- metering


def mirror_usage_point(kind: str, lfdi: str) -> MirrorUsagePoint:
    """The device's own meter (no readings: those are posted to its href)."""
    return MirrorUsagePoint(
        mrid=mrid(lfdi, "mup"),
        description=f"derflex sim {kind}"[:32],
        role_flags=f"{_ROLE.get(kind, 0x41):02X}",
        service_category_kind=0,  # electricity
        status=1,  # on
        device_lfdi=lfdi,
    )


def reading_type(interval_s: int) -> ReadingType:
    """Average real power in W per interval, signed, positive = imported by the site."""
    return ReadingType(
        accumulation_behaviour=12,  # indicating: each value stands alone
        commodity=1,  # electricity, secondary metered
        data_qualifier=2,  # average
        flow_direction=1,  # forward; negative values are exports
        interval_length=interval_s,
        kind=37,  # power
        phase=0,
        power_of_ten_multiplier=0,
        uom=UOM_W,
    )


def meter_reading_mrid(lfdi: str, interval_s: int) -> str:
    """One MirrorMeterReading per interval length (a ReadingType can never change)."""
    return mrid(lfdi, "W", interval_s)


def meter_reading(lfdi: str, interval_s: int, readings: Sequence[tuple[int, float]], *, with_type: bool,
                  now: int | None = None, next_update: int | None = None) -> MirrorMeterReading:
    """The MirrorMeterReading carrying `readings` ((interval start, average W), ascending starts),
    one MirrorReadingSet per run of consecutive intervals."""
    sets: list[MirrorReadingSet] = []
    run: list[tuple[int, float]] = []
    for start, watts in readings:
        if run and start != run[-1][0] + interval_s:
            sets.append(_reading_set(lfdi, interval_s, run))
            run = []
        run.append((start, watts))
    if run:
        sets.append(_reading_set(lfdi, interval_s, run))
    return MirrorMeterReading(
        mrid=meter_reading_mrid(lfdi, interval_s),
        description="average real power",
        last_update_time=now,
        mirror_reading_sets=sets,
        next_update_time=next_update,
        reading_type=reading_type(interval_s) if with_type else None,
    )


def _reading_set(lfdi: str, interval_s: int, run: list[tuple[int, float]]) -> MirrorReadingSet:
    first = run[0][0]
    return MirrorReadingSet(
        mrid=mrid(lfdi, "rs", interval_s, first),
        time_period=DateTimeInterval(start=first, duration=interval_s * len(run)),
        readings=[Reading(value=_value(w)) for _, w in run],
    )


def _value(watts: float) -> int:
    if not math.isfinite(watts):
        raise ValueError(f"a reading must be a finite number of W, got {watts}")
    return int(round(watts))
