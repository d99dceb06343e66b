"""The kinds of device a flexibility program can enroll, by one name in every layer.

A device's kind decides how a cleared setpoint becomes a control (programs.controls) and what curve
it offers when its enrollment gives none (programs.curves). The server learns it from the
enrollment or, failing that, from the DERType the device reported in its DERCapability.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["DeviceKind"]


class DeviceKind(StrEnum):
    """battery: home or commercial storage; pv: a PV inverter; ev_charger: an EVSE (V1G);
    load: a controllable load (heat pump, water heater, pool pump…)."""

    BATTERY = "battery"
    PV = "pv"
    EV_CHARGER = "ev_charger"
    LOAD = "load"
