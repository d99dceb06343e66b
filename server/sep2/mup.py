"""Metering Mirror (`mup`) and Metering (`upt`) function sets: what a device POSTs about its meter
(MirrorUsagePoint, MirrorMeterReading, MirrorReadingSet, Reading, ReadingType) and how it is read
back (UsagePoint → MeterReading → ReadingType, ReadingSet → Reading). Fields are declared in the
2018 schema's order with its types, every element of every type.

As in der.py, an element the schema requires (minOccurs=1) has no default: the constructor asks for
it, so a resource cannot be rendered without it. Enumerations the schema declares as UInt8 with a
documented value list (uom, kind, flowDirection…) are kept as their numbers; the lists are below.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from server.sep2.derp import DateTimeInterval
from server.sep2.models import Resource, SubscribableResource
from server.sep2.types import (
    required,
    LINK,
    Boolean,
    HexBinary160,
    HexType,
    Int32,
    Int48,
    IntType,
    ListLinkValue,
    MRIDType,
    PowerOfTenMultiplierType,
    String32,
    TimeType,
    UInt8,
    UInt32,
    UInt48,
    VersionType,
    attr,
    child,
    children,
    elem,
    link,
)

# ----------------------------------------------------------------------------- simple types

HexBinary16 = HexType("HexBinary16", 2)
# Bit 0 isMirror, 1 isPremisesAggregationPoint, 2 isPEV, 3 isDER, 4 isRevenueQuality, 5 isDC,
# 6 isSubmeter (7–15 reserved). CSIP-AUS: 0x49 for a DER, 0x03 for the site meter.
RoleFlagsType = HexType("RoleFlagsType", 2)
# 0 electricity, 1 gas, 2 water, 3 time, 4 pressure, 5 heat, 6 cooling.
ServiceKind = IntType("ServiceKind", 0, 255)
# 0 n/a, 5 A, 6 K, 23 °C, 29 V, 31 J, 33 Hz, 38 W, 42 m³, 61 VA, 63 var, 65 cos θ, 67 V², 69 A²,
# 71 VAh, 72 Wh, 73 varh, 106 Ah, 119 ft³, 122 ft³/h, 125 m³/h, 128 US gal, 129 US gal/h,
# 130 imp gal, 131 imp gal/h, 132 BTU, 133 BTU/h, 134 l, 137 l/h, 140 Pa gauge, 155 Pa, 169 therm.
UomType = IntType("UomType", 0, 255)
# 0 n/a, 3 currency, 8 demand, 12 energy, 37 power.
KindType = IntType("KindType", 0, 255)
# 0 n/a, 1 forward (delivered to the customer), 19 reverse (received from the customer).
FlowDirectionType = IntType("FlowDirectionType", 0, 255)
# 0 n/a, 3 cumulative, 4 delta data, 6 indicating, 9 summation, 12 instantaneous.
AccumulationBehaviourType = IntType("AccumulationBehaviourType", 0, 255)
# 0 n/a, 1 electricity secondary metered, 2 electricity primary metered, 4 air, 7 natural gas,
# 8 propane, 9 potable water, 10 steam, 11 waste water, 12 heating fluid, 13 cooling fluid.
CommodityType = IntType("CommodityType", 0, 255)
# 0 n/a, 2 average, 8 maximum, 9 minimum, 12 normal, 29 σ of a population, 30 σ of a sample.
DataQualifierType = IntType("DataQualifierType", 0, 255)
# 0 n/a, 32 C, 33 CN, 40 CA, 64 B, 65 BN, 66 BC, 128 A, 129 AN, 132 AB, 224 ABC.
PhaseCode = IntType("PhaseCode", 0, 255)
ConsumptionBlockType = IntType("ConsumptionBlockType", 0, 255)
TOUType = IntType("TOUType", 0, 255)
SubscribableType = IntType("SubscribableType", 0, 255)

UOM_W = 38
FLOW_FORWARD = 1
FLOW_REVERSE = 19
ROLE_PREMISES_AGGREGATION_POINT = 0x02


def _required_link(xml: str) -> Any:
    """A `…Link` element the schema requires (the codec refuses a document without it)."""
    return dataclasses.field(metadata={"xml": xml, "kind": LINK, "type": None, "required": True})


# ----------------------------------------------------------------------------- nested types


@dataclasses.dataclass(kw_only=True, slots=True)
class UnitValueType:
    """A value with its unit: value × 10^multiplier of `unit` (a UomType)."""

    multiplier: int = required(elem("multiplier", PowerOfTenMultiplierType, required=True))
    unit: int = required(elem("unit", UomType, required=True))
    value: int = required(elem("value", Int32, required=True))


@dataclasses.dataclass(kw_only=True, slots=True)
class ReadingType(Resource):
    """What a MeterReading's values are: unit (uom) × 10^powerOfTenMultiplier, direction, kind,
    how they accumulate, and the default interval length in seconds."""

    accumulation_behaviour: int | None = elem("accumulationBehaviour", AccumulationBehaviourType)
    calorific_value: UnitValueType | None = child("calorificValue", UnitValueType)
    commodity: int | None = elem("commodity", CommodityType)
    conversion_factor: UnitValueType | None = child("conversionFactor", UnitValueType)
    data_qualifier: int | None = elem("dataQualifier", DataQualifierType)
    flow_direction: int | None = elem("flowDirection", FlowDirectionType)
    interval_length: int | None = elem("intervalLength", UInt32)
    kind: int | None = elem("kind", KindType)
    max_number_of_intervals: int | None = elem("maxNumberOfIntervals", UInt8)
    number_of_consumption_blocks: int | None = elem("numberOfConsumptionBlocks", UInt8)
    number_of_tou_tiers: int | None = elem("numberOfTouTiers", UInt8)
    phase: int | None = elem("phase", PhaseCode)
    power_of_ten_multiplier: int | None = elem("powerOfTenMultiplier", PowerOfTenMultiplierType)
    sub_interval_length: int | None = elem("subIntervalLength", UInt32)
    supply_limit: int | None = elem("supplyLimit", UInt48)
    tiered_consumption_blocks: bool | None = elem("tieredConsumptionBlocks", Boolean)
    uom: int | None = elem("uom", UomType)


@dataclasses.dataclass(kw_only=True, slots=True)
class Reading(Resource):
    """One value (Int48, in the ReadingType's unit × 10^powerOfTenMultiplier) over timePeriod.

    qualityFlags bits: 0 valid, 1 manually edited, 2 estimated (reference day), 3 estimated
    (interpolated), 4 questionable, 5 derived, 6 projected (forecast)."""

    subscribable: int | None = attr("subscribable", SubscribableType)
    consumption_block: int | None = elem("consumptionBlock", ConsumptionBlockType)
    quality_flags: str | None = elem("qualityFlags", HexBinary16)
    time_period: DateTimeInterval | None = child("timePeriod", DateTimeInterval)
    tou_tier: int | None = elem("touTier", TOUType)
    value: int | None = elem("value", Int48)
    local_id: str | None = elem("localID", HexBinary16)


# ------------------------------------------------------------------ mirror side (device POSTs)


@dataclasses.dataclass(kw_only=True, slots=True)
class MirrorReadingSet(Resource):
    """Readings a device posts together, over timePeriod."""

    mrid: str = required(elem("mRID", MRIDType, required=True))
    description: str | None = elem("description", String32)
    version: int | None = elem("version", VersionType)
    time_period: DateTimeInterval = required(child("timePeriod", DateTimeInterval, required=True))
    readings: list[Reading] = children("Reading", Reading)


@dataclasses.dataclass(kw_only=True, slots=True)
class MirrorMeterReading(Resource):
    """One measured quantity of a mirrored meter: its ReadingType (on first POST) and readings,
    as ReadingSets or one bare Reading."""

    mrid: str = required(elem("mRID", MRIDType, required=True))
    description: str | None = elem("description", String32)
    version: int | None = elem("version", VersionType)
    last_update_time: int | None = elem("lastUpdateTime", TimeType)
    mirror_reading_sets: list[MirrorReadingSet] = children("MirrorReadingSet", MirrorReadingSet)
    next_update_time: int | None = elem("nextUpdateTime", TimeType)
    reading: Reading | None = child("Reading", Reading)
    reading_type: ReadingType | None = child("ReadingType", ReadingType)


@dataclasses.dataclass(kw_only=True, slots=True)
class MirrorMeterReadingList(Resource):
    all: int = attr("all", UInt32, default=0)
    results: int = attr("results", UInt32, default=0)
    mirror_meter_readings: list[MirrorMeterReading] = children("MirrorMeterReading", MirrorMeterReading)


@dataclasses.dataclass(kw_only=True, slots=True)
class MirrorUsagePoint(Resource):
    """A meter a device mirrors to the server. status: 0 off, 1 on."""

    mrid: str = required(elem("mRID", MRIDType, required=True))
    description: str | None = elem("description", String32)
    version: int | None = elem("version", VersionType)
    role_flags: str = required(elem("roleFlags", RoleFlagsType, required=True))
    service_category_kind: int = required(elem("serviceCategoryKind", ServiceKind, required=True))
    status: int = required(elem("status", UInt8, required=True))
    device_lfdi: str = required(elem("deviceLFDI", HexBinary160, required=True))
    mirror_meter_readings: list[MirrorMeterReading] = children("MirrorMeterReading", MirrorMeterReading)
    post_rate: int | None = elem("postRate", UInt32)


@dataclasses.dataclass(kw_only=True, slots=True)
class MirrorUsagePointList(Resource):
    all: int = attr("all", UInt32, default=0)
    results: int = attr("results", UInt32, default=0)
    poll_rate: int | None = attr("pollRate", UInt32)
    mirror_usage_points: list[MirrorUsagePoint] = children("MirrorUsagePoint", MirrorUsagePoint)


# ------------------------------------------------------------------- read side (`upt`)


@dataclasses.dataclass(kw_only=True, slots=True)
class UsagePoint(Resource):
    """A metered point (here: each mirrored one), linking its MeterReadings."""

    mrid: str = required(elem("mRID", MRIDType, required=True))
    description: str | None = elem("description", String32)
    version: int | None = elem("version", VersionType)
    role_flags: str = required(elem("roleFlags", RoleFlagsType, required=True))
    service_category_kind: int = required(elem("serviceCategoryKind", ServiceKind, required=True))
    status: int = required(elem("status", UInt8, required=True))
    device_lfdi: str | None = elem("deviceLFDI", HexBinary160)
    meter_reading_list_link: ListLinkValue | None = link("MeterReadingListLink", list_link=True)


@dataclasses.dataclass(kw_only=True, slots=True)
class UsagePointList(SubscribableResource):
    all: int = attr("all", UInt32, default=0)
    results: int = attr("results", UInt32, default=0)
    poll_rate: int | None = attr("pollRate", UInt32)
    usage_points: list[UsagePoint] = children("UsagePoint", UsagePoint)


@dataclasses.dataclass(kw_only=True, slots=True)
class MeterReading(Resource):
    """One measured quantity of a UsagePoint: its ReadingType and its ReadingSets."""

    mrid: str = required(elem("mRID", MRIDType, required=True))
    description: str | None = elem("description", String32)
    version: int | None = elem("version", VersionType)
    rate_component_list_link: ListLinkValue | None = link("RateComponentListLink", list_link=True)
    reading_link: str | None = link("ReadingLink")
    reading_set_list_link: ListLinkValue | None = link("ReadingSetListLink", list_link=True)
    reading_type_link: str = _required_link("ReadingTypeLink")


@dataclasses.dataclass(kw_only=True, slots=True)
class MeterReadingList(SubscribableResource):
    all: int = attr("all", UInt32, default=0)
    results: int = attr("results", UInt32, default=0)
    meter_readings: list[MeterReading] = children("MeterReading", MeterReading)


@dataclasses.dataclass(kw_only=True, slots=True)
class ReadingSet(Resource):
    """Readings of one MeterReading over timePeriod."""

    mrid: str = required(elem("mRID", MRIDType, required=True))
    description: str | None = elem("description", String32)
    version: int | None = elem("version", VersionType)
    time_period: DateTimeInterval = required(child("timePeriod", DateTimeInterval, required=True))
    reading_list_link: ListLinkValue | None = link("ReadingListLink", list_link=True)


@dataclasses.dataclass(kw_only=True, slots=True)
class ReadingSetList(SubscribableResource):
    all: int = attr("all", UInt32, default=0)
    results: int = attr("results", UInt32, default=0)
    reading_sets: list[ReadingSet] = children("ReadingSet", ReadingSet)


@dataclasses.dataclass(kw_only=True, slots=True)
class ReadingList(SubscribableResource):
    all: int = attr("all", UInt32, default=0)
    results: int = attr("results", UInt32, default=0)
    readings: list[Reading] = children("Reading", Reading)


RESOURCES: tuple[type, ...] = (
    MirrorUsagePointList,
    MirrorUsagePoint,
    MirrorMeterReadingList,
    MirrorMeterReading,
    MirrorReadingSet,
    Reading,
    ReadingType,
    UsagePointList,
    UsagePoint,
    MeterReadingList,
    MeterReading,
    ReadingSetList,
    ReadingSet,
    ReadingList,
)

__all__ = [
    "AccumulationBehaviourType",
    "CommodityType",
    "DataQualifierType",
    "DateTimeInterval",
    "FlowDirectionType",
    "HexBinary16",
    "KindType",
    "PhaseCode",
    "RoleFlagsType",
    "ServiceKind",
    "UomType",
    "UnitValueType",
    "ReadingType",
    "Reading",
    "MirrorReadingSet",
    "MirrorMeterReading",
    "MirrorMeterReadingList",
    "MirrorUsagePoint",
    "MirrorUsagePointList",
    "UsagePoint",
    "UsagePointList",
    "MeterReading",
    "MeterReadingList",
    "ReadingSet",
    "ReadingSetList",
    "ReadingList",
    "RESOURCES",
    "UOM_W",
    "FLOW_FORWARD",
    "FLOW_REVERSE",
    "ROLE_PREMISES_AGGREGATION_POINT",
]
