"""DER curves (`dc`, part of the DER program function set): DERCurve, its CurveData points and the
DERCurveList a DERProgram links to.

A curve is the shape a curve-linked mode of DERControlBase follows (opModVoltVar, opModFreqWatt,
the ride-through trip curves …): points (xvalue, yvalue) scaled by 10^xMultiplier and
10^yMultiplier, the y axis in the units `yRefType` names. DERCurveList extends the schema's
plain `List` (not SubscribableList), so it has no `subscribable` attribute; DERCurve is an
IdentifiedObject (not subscribable either).
"""

from __future__ import annotations

from dataclasses import dataclass

from server.sep2.models import Resource
from server.sep2.types import (
    Boolean,
    Int32,
    MRIDType,
    PerCent,
    PowerOfTenMultiplierType,
    String32,
    TimeType,
    UInt8,
    UInt16,
    UInt32,
    VersionType,
    attr,
    children,
    elem,
)

# DERCurveType (schema enumeration): the value and the DERControlBase mode it serves, in order.
CURVE_TYPES: dict[int, str] = {
    0: "opModFreqWatt",
    1: "opModHFRTMayTrip",
    2: "opModHFRTMustTrip",
    3: "opModHVRTMayTrip",
    4: "opModHVRTMomentaryCessation",
    5: "opModHVRTMustTrip",
    6: "opModLFRTMayTrip",
    7: "opModLFRTMustTrip",
    8: "opModLVRTMayTrip",
    9: "opModLVRTMomentaryCessation",
    10: "opModLVRTMustTrip",
    11: "opModVoltVar",
    12: "opModVoltWatt",
    13: "opModWattPF",
    14: "opModWattVar",
}
CURVE_TYPE_OF_MODE: dict[str, int] = {mode: value for value, mode in CURVE_TYPES.items()}
VOLT_VAR = 11
WATT_PF = 13

# DERUnitRefType: what the y axis is a percentage of.
Y_REF_TYPES: dict[int, str] = {
    0: "N/A",
    1: "%setMaxW",
    2: "%setMaxVar",
    3: "%statVarAvail",
    4: "%setEffectiveV",
    5: "%setMaxChargeRateW",
    6: "%setMaxDischargeRateW",
    7: "%statWAvail",
}

MIN_POINTS, MAX_POINTS = 1, 10  # CurveData minOccurs / maxOccurs


@dataclass(kw_only=True, slots=True)
class CurveData:
    """One point. `excitation` is present exactly when yvalue is a power factor (watt-PF curves)."""

    excitation: bool | None = elem("excitation", Boolean)
    xvalue: int = elem("xvalue", Int32, required=True, default=0)
    yvalue: int = elem("yvalue", Int32, required=True, default=0)


@dataclass(kw_only=True, slots=True)
class DERCurve(Resource):
    """A curve: its points (1…10), type, axis multipliers and y units; vRef and the autonomous
    vRef fields only for volt-var curves."""

    mrid: str = elem("mRID", MRIDType, required=True, default="")
    description: str | None = elem("description", String32)
    version: int | None = elem("version", VersionType)
    autonomous_v_ref_enable: bool | None = elem("autonomousVRefEnable", Boolean)
    autonomous_v_ref_time_constant: int | None = elem("autonomousVRefTimeConstant", UInt32)
    creation_time: int = elem("creationTime", TimeType, required=True, default=0)
    curve_data: list[CurveData] = children("CurveData", CurveData)
    curve_type: int = elem("curveType", UInt8, required=True, default=0)
    open_loop_tms: int | None = elem("openLoopTms", UInt16)
    ramp_dec_tms: int | None = elem("rampDecTms", UInt16)
    ramp_inc_tms: int | None = elem("rampIncTms", UInt16)
    ramp_pt1_tms: int | None = elem("rampPT1Tms", UInt16)
    v_ref: int | None = elem("vRef", PerCent)
    x_multiplier: int = elem("xMultiplier", PowerOfTenMultiplierType, required=True, default=0)
    y_multiplier: int = elem("yMultiplier", PowerOfTenMultiplierType, required=True, default=0)
    y_ref_type: int = elem("yRefType", UInt8, required=True, default=0)


@dataclass(kw_only=True, slots=True)
class DERCurveList(Resource):
    all: int = attr("all", UInt32, default=0)
    results: int = attr("results", UInt32, default=0)
    der_curves: list[DERCurve] = children("DERCurve", DERCurve)
