"""Wire models of the DER function set: a device's DERList/DER and the four resources it PUTs
(DERCapability, DERSettings, DERStatus, DERAvailability), with the quantity and status types they
nest. Fields are declared in the 2018 schema's order with its types.

Unlike models.py, an element the schema requires (minOccurs=1) has no default here: the
constructor asks for it, so a resource cannot be rendered without it.
"""

from __future__ import annotations

import dataclasses
from typing import Self

from server.sep2.csipaus import DOEControlType
from server.sep2.models import Resource, SubscribableResource
from server.sep2.types import (
    CSIPAUS_NS,
    required,
    HexBinary8,
    HexBinary32,
    HexType,
    Int16,
    IntType,
    ListLinkValue,
    PerCent,
    PowerOfTenMultiplierType,
    String6,
    TimeType,
    UInt8,
    UInt16,
    UInt32,
    attr,
    child,
    children,
    elem,
    link,
)

# UInt8; 0 unknown, 1 virtual/mixed, 2 reciprocating engine, 3 fuel cell, 4 PV, 5 CHP,
# 6 other generation, 80 other storage, 81 EV, 82 EVSE, 83 PV + storage (others reserved).
DERType = IntType("DERType", 0, 255)
# HexBinary32 bitmap of DERControlBase modes (bit 0 charge, 1 discharge, 2 opModConnect, …).
DERControlType = HexType("DERControlType", 4)


# ------------------------------------------------------------------------ quantities (nested)


class _Scaled:
    """A quantity sent as `value` × 10^`multiplier` of its unit (W, var, VA, V, A, Ah, Wh, S)."""

    __slots__ = ()
    multiplier: int
    value: int

    @property
    def amount(self) -> int | float:
        """The quantity in its unit: an int for multipliers ≥ 0, a float below."""
        if self.multiplier >= 0:
            return self.value * 10**self.multiplier
        return self.value / 10**-self.multiplier

    @classmethod
    def of(cls, amount: int) -> Self:
        """The quantity with the smallest multiplier ≥ 0 whose value fits the value's type
        (rounded half to even): 40_001 W → 4000 × 10^1. The standard wants the multiplier raised
        rather than the value overflowed."""
        value_type = next(f for f in dataclasses.fields(cls) if f.name == "value").metadata["type"]
        if amount < 0 and value_type.lo == 0:
            raise ValueError(f"{cls.__name__} cannot be negative ({amount})")
        for multiplier in range(PowerOfTenMultiplierType.hi + 1):
            value, rest = divmod(amount, 10**multiplier)  # exact, even for huge amounts
            if 2 * rest > 10**multiplier or (2 * rest == 10**multiplier and value % 2):
                value += 1
            if value_type.lo <= value <= value_type.hi:
                return cls(multiplier=multiplier, value=value)
        raise ValueError(f"{amount} cannot be expressed as {cls.__name__}")


@dataclasses.dataclass(kw_only=True, slots=True)
class ActivePower(_Scaled):
    """Active power in W: value × 10^multiplier (signed: negative is absorbed)."""

    multiplier: int = required(elem("multiplier", PowerOfTenMultiplierType, required=True))
    value: int = required(elem("value", Int16, required=True))


@dataclasses.dataclass(kw_only=True, slots=True)
class ReactivePower(_Scaled):
    """Reactive power in var: value × 10^multiplier (signed)."""

    multiplier: int = required(elem("multiplier", PowerOfTenMultiplierType, required=True))
    value: int = required(elem("value", Int16, required=True))


@dataclasses.dataclass(kw_only=True, slots=True)
class ApparentPower(_Scaled):
    """Apparent power in VA: value × 10^multiplier (unsigned)."""

    multiplier: int = required(elem("multiplier", PowerOfTenMultiplierType, required=True))
    value: int = required(elem("value", UInt16, required=True))


@dataclasses.dataclass(kw_only=True, slots=True)
class AmpereHour(_Scaled):
    """Charge in Ah: value × 10^multiplier."""

    multiplier: int = required(elem("multiplier", PowerOfTenMultiplierType, required=True))
    value: int = required(elem("value", UInt16, required=True))


@dataclasses.dataclass(kw_only=True, slots=True)
class WattHour(_Scaled):
    """Energy in Wh: value × 10^multiplier."""

    multiplier: int = required(elem("multiplier", PowerOfTenMultiplierType, required=True))
    value: int = required(elem("value", UInt16, required=True))


@dataclasses.dataclass(kw_only=True, slots=True)
class VoltageRMS(_Scaled):
    """RMS voltage in V: value × 10^multiplier."""

    multiplier: int = required(elem("multiplier", PowerOfTenMultiplierType, required=True))
    value: int = required(elem("value", UInt16, required=True))


@dataclasses.dataclass(kw_only=True, slots=True)
class CurrentRMS(_Scaled):
    """RMS current in A: value × 10^multiplier."""

    multiplier: int = required(elem("multiplier", PowerOfTenMultiplierType, required=True))
    value: int = required(elem("value", UInt16, required=True))


@dataclasses.dataclass(kw_only=True, slots=True)
class ReactiveSusceptance(_Scaled):
    """Reactive susceptance in S: value × 10^multiplier."""

    multiplier: int = required(elem("multiplier", PowerOfTenMultiplierType, required=True))
    value: int = required(elem("value", UInt16, required=True))


@dataclasses.dataclass(kw_only=True, slots=True)
class PowerFactor:
    """Displacement power factor cos θ = displacement × 10^multiplier (0.95 = 950, −3)."""

    # Note the order: displacement first, unlike the value/multiplier quantities.
    displacement: int = required(elem("displacement", UInt16, required=True))
    multiplier: int = required(elem("multiplier", PowerOfTenMultiplierType, required=True))

    @property
    def amount(self) -> int | float:
        if self.multiplier >= 0:
            return self.displacement * 10**self.multiplier
        return self.displacement / 10**-self.multiplier


# ---------------------------------------------------------------- status values (DERStatus)


@dataclasses.dataclass(kw_only=True, slots=True)
class ConnectStatusType:
    """Connect status bitmap (HexBinary8): bit 0 connected, 1 available, 2 operating, 3 test,
    4 fault/error; `date_time` is when that state began."""

    date_time: int = required(elem("dateTime", TimeType, required=True))
    value: str = required(elem("value", HexBinary8, required=True))


@dataclasses.dataclass(kw_only=True, slots=True)
class InverterStatusType:
    """Inverter state: 0 n/a, 1 off, 2 sleeping, 3 starting, 4 MPPT, 5 derated, 6 shutting down,
    7 fault, 8 standby, 9 test, 10 see manufacturer status."""

    date_time: int = required(elem("dateTime", TimeType, required=True))
    value: int = required(elem("value", UInt8, required=True))


@dataclasses.dataclass(kw_only=True, slots=True)
class LocalControlModeStatusType:
    """Who is in control: 0 local, 1 remote."""

    date_time: int = required(elem("dateTime", TimeType, required=True))
    value: int = required(elem("value", UInt8, required=True))


@dataclasses.dataclass(kw_only=True, slots=True)
class ManufacturerStatusType:
    """A manufacturer's status code, at most 6 characters."""

    date_time: int = required(elem("dateTime", TimeType, required=True))
    value: str = required(elem("value", String6, required=True))


@dataclasses.dataclass(kw_only=True, slots=True)
class OperationalModeStatusType:
    """Operational mode: 0 unknown, 1 off, 2 operational, 3 test."""

    date_time: int = required(elem("dateTime", TimeType, required=True))
    value: int = required(elem("value", UInt8, required=True))


@dataclasses.dataclass(kw_only=True, slots=True)
class StateOfChargeStatusType:
    """Storage state of charge, in hundredths of a percent."""

    date_time: int = required(elem("dateTime", TimeType, required=True))
    value: int = required(elem("value", PerCent, required=True))


@dataclasses.dataclass(kw_only=True, slots=True)
class StorageModeStatusType:
    """Storage mode: 0 charging, 1 discharging, 2 holding."""

    date_time: int = required(elem("dateTime", TimeType, required=True))
    value: int = required(elem("value", UInt8, required=True))


# ------------------------------------------------------------------------------- resources


@dataclasses.dataclass(kw_only=True, slots=True)
class DER(SubscribableResource):
    """`/edev/{id}/der/{d}`: one DER of an EndDevice, linking to its program and four resources."""

    associated_der_program_list_link: ListLinkValue | None = link(
        "AssociatedDERProgramListLink", list_link=True
    )
    associated_usage_point_link: str | None = link("AssociatedUsagePointLink")
    current_der_program_link: str | None = link("CurrentDERProgramLink")
    der_availability_link: str | None = link("DERAvailabilityLink")
    der_capability_link: str | None = link("DERCapabilityLink")
    der_settings_link: str | None = link("DERSettingsLink")
    der_status_link: str | None = link("DERStatusLink")


@dataclasses.dataclass(kw_only=True, slots=True)
class DERList(Resource):
    """`/edev/{id}/der`: an EndDevice's DERs (a List, so unlike EndDeviceList not subscribable)."""

    all: int = attr("all", UInt32, default=0)
    results: int = attr("results", UInt32, default=0)
    poll_rate: int | None = attr("pollRate", UInt32)
    ders: list[DER] = children("DER", DER)


@dataclasses.dataclass(kw_only=True, slots=True)
class DERCapability(Resource):
    """`…/der/{d}/dercap`: the DER's type and nameplate ratings, as the device reports them."""

    modes_supported: str = required(elem("modesSupported", DERControlType, required=True))
    rtg_abnormal_category: int | None = elem("rtgAbnormalCategory", UInt8)
    rtg_max_a: CurrentRMS | None = child("rtgMaxA", CurrentRMS)
    rtg_max_ah: AmpereHour | None = child("rtgMaxAh", AmpereHour)
    rtg_max_charge_rate_va: ApparentPower | None = child("rtgMaxChargeRateVA", ApparentPower)
    rtg_max_charge_rate_w: ActivePower | None = child("rtgMaxChargeRateW", ActivePower)
    rtg_max_discharge_rate_va: ApparentPower | None = child("rtgMaxDischargeRateVA", ApparentPower)
    rtg_max_discharge_rate_w: ActivePower | None = child("rtgMaxDischargeRateW", ActivePower)
    rtg_max_v: VoltageRMS | None = child("rtgMaxV", VoltageRMS)
    rtg_max_va: ApparentPower | None = child("rtgMaxVA", ApparentPower)
    rtg_max_var: ReactivePower | None = child("rtgMaxVar", ReactivePower)
    rtg_max_var_neg: ReactivePower | None = child("rtgMaxVarNeg", ReactivePower)
    rtg_max_w: ActivePower = required(child("rtgMaxW", ActivePower, required=True))
    rtg_max_wh: WattHour | None = child("rtgMaxWh", WattHour)
    rtg_min_pf_over_excited: PowerFactor | None = child("rtgMinPFOverExcited", PowerFactor)
    rtg_min_pf_under_excited: PowerFactor | None = child("rtgMinPFUnderExcited", PowerFactor)
    rtg_min_v: VoltageRMS | None = child("rtgMinV", VoltageRMS)
    rtg_normal_category: int | None = elem("rtgNormalCategory", UInt8)
    rtg_over_excited_pf: PowerFactor | None = child("rtgOverExcitedPF", PowerFactor)
    rtg_over_excited_w: ActivePower | None = child("rtgOverExcitedW", ActivePower)
    rtg_reactive_susceptance: ReactiveSusceptance | None = child(
        "rtgReactiveSusceptance", ReactiveSusceptance
    )
    rtg_under_excited_pf: PowerFactor | None = child("rtgUnderExcitedPF", PowerFactor)
    rtg_under_excited_w: ActivePower | None = child("rtgUnderExcitedW", ActivePower)
    rtg_v_nom: VoltageRMS | None = child("rtgVNom", VoltageRMS)
    type: int = required(elem("type", DERType, required=True))
    # CSIP-AUS: the DOE modes the device supports (bitmap, server/sep2/csipaus.py).
    doe_modes_supported: str | None = elem("doeModesSupported", DOEControlType, ns=CSIPAUS_NS)


@dataclasses.dataclass(kw_only=True, slots=True)
class DERSettings(SubscribableResource):
    """`…/der/{d}/derg`: the limits the DER is currently configured to (≤ its ratings)."""

    modes_enabled: str | None = elem("modesEnabled", DERControlType)
    set_es_delay: int | None = elem("setESDelay", UInt32)  # hundredths of a second
    set_es_high_freq: int | None = elem("setESHighFreq", UInt16)  # hundredths of a Hz
    set_es_high_volt: int | None = elem("setESHighVolt", Int16)  # hundredths of a % of setVRef
    set_es_low_freq: int | None = elem("setESLowFreq", UInt16)
    set_es_low_volt: int | None = elem("setESLowVolt", Int16)
    set_es_ramp_tms: int | None = elem("setESRampTms", UInt32)
    set_es_random_delay: int | None = elem("setESRandomDelay", UInt32)
    # Default ramp rate, hundredths of a % of setMaxW per second; 0 = no limit.
    set_grad_w: int = required(elem("setGradW", UInt16, required=True))
    set_max_a: CurrentRMS | None = child("setMaxA", CurrentRMS)
    set_max_ah: AmpereHour | None = child("setMaxAh", AmpereHour)
    set_max_charge_rate_va: ApparentPower | None = child("setMaxChargeRateVA", ApparentPower)
    set_max_charge_rate_w: ActivePower | None = child("setMaxChargeRateW", ActivePower)
    set_max_discharge_rate_va: ApparentPower | None = child("setMaxDischargeRateVA", ApparentPower)
    set_max_discharge_rate_w: ActivePower | None = child("setMaxDischargeRateW", ActivePower)
    set_max_v: VoltageRMS | None = child("setMaxV", VoltageRMS)
    set_max_va: ApparentPower | None = child("setMaxVA", ApparentPower)
    set_max_var: ReactivePower | None = child("setMaxVar", ReactivePower)
    set_max_var_neg: ReactivePower | None = child("setMaxVarNeg", ReactivePower)
    set_max_w: ActivePower = required(child("setMaxW", ActivePower, required=True))
    set_max_wh: WattHour | None = child("setMaxWh", WattHour)
    set_min_pf_over_excited: PowerFactor | None = child("setMinPFOverExcited", PowerFactor)
    set_min_pf_under_excited: PowerFactor | None = child("setMinPFUnderExcited", PowerFactor)
    set_min_v: VoltageRMS | None = child("setMinV", VoltageRMS)
    set_soft_grad_w: int | None = elem("setSoftGradW", UInt16)
    set_v_nom: VoltageRMS | None = child("setVNom", VoltageRMS)
    set_v_ref: VoltageRMS | None = child("setVRef", VoltageRMS)
    set_v_ref_ofs: VoltageRMS | None = child("setVRefOfs", VoltageRMS)
    updated_time: int = required(elem("updatedTime", TimeType, required=True))
    # CSIP-AUS: the DOE modes the device has enabled (bitmap, server/sep2/csipaus.py).
    doe_modes_enabled: str | None = elem("doeModesEnabled", DOEControlType, ns=CSIPAUS_NS)


@dataclasses.dataclass(kw_only=True, slots=True)
class DERStatus(SubscribableResource):
    """`…/der/{d}/ders`: the DER's latest connection, inverter, storage and alarm states."""

    # A bare HexBinary32 bitmap, not a {dateTime, value} status like its siblings.
    alarm_status: str | None = elem("alarmStatus", HexBinary32)
    gen_connect_status: ConnectStatusType | None = child("genConnectStatus", ConnectStatusType)
    inverter_status: InverterStatusType | None = child("inverterStatus", InverterStatusType)
    local_control_mode_status: LocalControlModeStatusType | None = child(
        "localControlModeStatus", LocalControlModeStatusType
    )
    manufacturer_status: ManufacturerStatusType | None = child(
        "manufacturerStatus", ManufacturerStatusType
    )
    operational_mode_status: OperationalModeStatusType | None = child(
        "operationalModeStatus", OperationalModeStatusType
    )
    reading_time: int = required(elem("readingTime", TimeType, required=True))
    state_of_charge_status: StateOfChargeStatusType | None = child(
        "stateOfChargeStatus", StateOfChargeStatusType
    )
    storage_mode_status: StorageModeStatusType | None = child(
        "storageModeStatus", StorageModeStatusType
    )
    stor_connect_status: ConnectStatusType | None = child("storConnectStatus", ConnectStatusType)


@dataclasses.dataclass(kw_only=True, slots=True)
class DERAvailability(SubscribableResource):
    """`…/der/{d}/dera`: the reserve the DER can still deliver or absorb, and for how long."""

    availability_duration: int | None = elem("availabilityDuration", UInt32)  # seconds
    max_charge_duration: int | None = elem("maxChargeDuration", UInt32)  # seconds
    reading_time: int = required(elem("readingTime", TimeType, required=True))
    # Of setMaxChargeRateW and of setMaxW respectively.
    reserve_charge_percent: int | None = elem("reserveChargePercent", PerCent)
    reserve_percent: int | None = elem("reservePercent", PerCent)
    stat_var_avail: ReactivePower | None = child("statVarAvail", ReactivePower)
    stat_w_avail: ActivePower | None = child("statWAvail", ActivePower)


RESOURCES: tuple[type, ...] = (DERList, DER, DERCapability, DERSettings, DERStatus, DERAvailability)

__all__ = [
    "PerCent",
    "PowerOfTenMultiplierType",
    "DERType",
    "DERControlType",
    "String6",
    "ActivePower",
    "ReactivePower",
    "ApparentPower",
    "AmpereHour",
    "WattHour",
    "VoltageRMS",
    "CurrentRMS",
    "ReactiveSusceptance",
    "PowerFactor",
    "ConnectStatusType",
    "InverterStatusType",
    "LocalControlModeStatusType",
    "ManufacturerStatusType",
    "OperationalModeStatusType",
    "StateOfChargeStatusType",
    "StorageModeStatusType",
    "DER",
    "DERList",
    "DERCapability",
    "DERSettings",
    "DERStatus",
    "DERAvailability",
    "RESOURCES",
]
