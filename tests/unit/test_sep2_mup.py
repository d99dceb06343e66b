"""The metering wire models: faithful to the official XSD (every element, in order, with its type),
round trips through the codec, schema-valid documents, and what the codec refuses."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from server.sep2 import codec, mup
from server.sep2.codec import DecodeError
from server.sep2.derp import DateTimeInterval
from server.sep2.mup import (
    MeterReading,
    MeterReadingList,
    MirrorMeterReading,
    MirrorMeterReadingList,
    MirrorReadingSet,
    MirrorUsagePoint,
    MirrorUsagePointList,
    Reading,
    ReadingList,
    ReadingSet,
    ReadingSetList,
    ReadingType,
    UnitValueType,
    UsagePoint,
    UsagePointList,
)
from server.sep2.types import ListLinkValue

LFDI = "3E4F45AB31EDFE5B67E343E5E4562E31984E23E5"
MRID = "0600006CC80000000000000000000000"


# Faithfulness to the XSD: tests/unit/test_sep2_xsd.py (mup is one of its COMPLETE modules).


def test_every_resource_of_the_function_sets_is_modelled() -> None:
    names = {m.__name__ for m in mup.RESOURCES}
    assert names == {
        "MirrorUsagePointList", "MirrorUsagePoint", "MirrorMeterReadingList", "MirrorMeterReading",
        "MirrorReadingSet", "Reading", "ReadingType", "UsagePointList", "UsagePoint", "MeterReadingList",
        "MeterReading", "ReadingSetList", "ReadingSet", "ReadingList",
    }


# ------------------------------------------------------------------------ samples


READING_TYPE = ReadingType(
    href="/upt/1/mr/2/rt",
    accumulation_behaviour=12,
    calorific_value=UnitValueType(multiplier=-2, unit=31, value=3850),
    commodity=1,
    conversion_factor=UnitValueType(multiplier=0, unit=0, value=1),
    data_qualifier=12,
    flow_direction=19,
    interval_length=300,
    kind=37,
    max_number_of_intervals=255,
    number_of_consumption_blocks=0,
    number_of_tou_tiers=0,
    phase=224,
    power_of_ten_multiplier=-1,
    sub_interval_length=60,
    supply_limit=2**48 - 1,
    tiered_consumption_blocks=False,
    uom=38,
)
READING = Reading(
    href="/upt/1/mr/2/rs/20000/r/300",
    subscribable=0,
    consumption_block=0,
    quality_flags="0041",
    time_period=DateTimeInterval(start=1_728_000_300, duration=300),
    tou_tier=0,
    value=-(2**47),
    local_id="01",
)
MIRROR_READING = MirrorMeterReading(
    mrid="0700006CC8",
    description="Real power",
    version=1,
    last_update_time=1_728_000_600,
    mirror_reading_sets=[
        MirrorReadingSet(mrid="0800006CC8", time_period=DateTimeInterval(start=1_728_000_000, duration=600),
                         readings=[dataclasses.replace(READING, href=None), Reading(value=2**47 - 1)]),
    ],
    next_update_time=1_728_000_900,
    reading=Reading(value=125),
    reading_type=dataclasses.replace(READING_TYPE, href=None),
)
MIRROR = MirrorUsagePoint(
    href="/mup/1",
    mrid=MRID,
    description="Gas Mirroring",
    version=0,
    role_flags="13",
    service_category_kind=1,
    status=1,
    device_lfdi=LFDI,
    mirror_meter_readings=[MIRROR_READING],
    post_rate=300,
)
USAGE_POINT = UsagePoint(
    href="/upt/1", mrid=MRID, description="DER", version=3, role_flags="0049", service_category_kind=0, status=1,
    device_lfdi=LFDI, meter_reading_list_link=ListLinkValue("/upt/1/mr", 7),
)
METER_READING = MeterReading(
    href="/upt/1/mr/2", mrid="0700006CC8", description="W", version=0,
    rate_component_list_link=ListLinkValue("/rc", 0), reading_link="/upt/1/mr/2/rs/20000/r/300",
    reading_set_list_link=ListLinkValue("/upt/1/mr/2/rs", 30), reading_type_link="/upt/1/mr/2/rt",
)
READING_SET = ReadingSet(
    href="/upt/1/mr/2/rs/20000", mrid="0000000000000002000004E200000000", description="a day", version=0,
    time_period=DateTimeInterval(start=20_000 * 86_400, duration=86_400),
    reading_list_link=ListLinkValue("/upt/1/mr/2/rs/20000/r", 288),
)

SAMPLES: dict[str, Any] = {
    "ReadingType": READING_TYPE,
    "Reading": READING,
    "MirrorMeterReading": MIRROR_READING,
    "MirrorMeterReadingList": MirrorMeterReadingList(all=2, results=2, mirror_meter_readings=[MIRROR_READING, MIRROR_READING]),
    "MirrorUsagePoint": MIRROR,
    "MirrorUsagePointList": MirrorUsagePointList(href="/mup", all=3, results=1, poll_rate=900, mirror_usage_points=[MIRROR]),
    "UsagePoint": USAGE_POINT,
    "UsagePointList": UsagePointList(href="/upt", subscribable=0, all=1, results=1, poll_rate=60, usage_points=[USAGE_POINT]),
    "MeterReading": METER_READING,
    "MeterReadingList": MeterReadingList(href="/upt/1/mr", all=1, results=1, meter_readings=[METER_READING]),
    "ReadingSet": READING_SET,
    "ReadingSetList": ReadingSetList(href="/upt/1/mr/2/rs", all=30, results=1, reading_sets=[READING_SET]),
    "ReadingList": ReadingList(href="/upt/1/mr/2/rs/20000/r", all=288, results=1, readings=[READING]),
    "bare MirrorUsagePoint": MirrorUsagePoint(mrid="01", role_flags="00", service_category_kind=0, status=0, device_lfdi=LFDI),
    "empty lists": ReadingList(),
    "bare MeterReading": MeterReading(mrid="02", reading_type_link="/rt"),
}


@pytest.mark.parametrize("doc", SAMPLES.values(), ids=SAMPLES.keys())
def test_round_trip_and_schema_validity(doc: Any, sep2_schema) -> None:  # noqa: ANN001
    body = codec.render(doc)
    sep2_schema(body)
    assert codec.parse(body, type(doc)) == doc
    old = body.replace(b"urn:ieee:std:2030.5:ns", b"http://ieee.org/2030.5")
    assert codec.parse(old, type(doc)) == doc  # the 2013 namespace is read too


def test_the_standards_own_example_parses() -> None:
    """IEEE 2030.5-2018 Table C.15 step 1 (a gas meter's first POST), as a client sends it."""
    body = b"""<MirrorUsagePoint xmlns="urn:ieee:std:2030.5:ns">
      <mRID>0600006CC8</mRID><description>Gas Mirroring</description><roleFlags>13</roleFlags>
      <serviceCategoryKind>1</serviceCategoryKind><status>1</status><deviceLFDI>00</deviceLFDI>
      <MirrorMeterReading><mRID>0700006CC8</mRID><Reading><value>125</value></Reading>
        <ReadingType><accumulationBehaviour>9</accumulationBehaviour><commodity>7</commodity>
          <dataQualifier>0</dataQualifier><flowDirection>1</flowDirection>
          <powerOfTenMultiplier>3</powerOfTenMultiplier><uom>119</uom></ReadingType>
      </MirrorMeterReading></MirrorUsagePoint>"""
    doc = codec.parse(body, MirrorUsagePoint)
    (mmr,) = doc.mirror_meter_readings
    assert (doc.role_flags, doc.device_lfdi, mmr.reading.value, mmr.reading_type.uom) == ("13", "00", 125, 119)
    assert mmr.reading_type.power_of_ten_multiplier == 3 and mmr.reading.time_period is None


REFUSED = {
    "MeterReading without ReadingTypeLink": (MeterReading, b'<MeterReading xmlns="urn:ieee:std:2030.5:ns"><mRID>01</mRID></MeterReading>'),
    "MirrorUsagePoint without deviceLFDI": (MirrorUsagePoint, codec.render(SAMPLES["bare MirrorUsagePoint"]).replace(f"<deviceLFDI>{LFDI}</deviceLFDI>".encode(), b"")),
    "MirrorReadingSet without timePeriod": (MirrorReadingSet, b'<MirrorReadingSet xmlns="urn:ieee:std:2030.5:ns"><mRID>01</mRID></MirrorReadingSet>'),
    # the schema's Int48 facets are -2^47 and +2^47 (sic): one past either end is refused
    "value above Int48": (Reading, b'<Reading xmlns="urn:ieee:std:2030.5:ns"><value>140737488355329</value></Reading>'),
    "value below Int48": (Reading, b'<Reading xmlns="urn:ieee:std:2030.5:ns"><value>-140737488355329</value></Reading>'),
    "roleFlags of three bytes": (MirrorUsagePoint, codec.render(SAMPLES["bare MirrorUsagePoint"]).replace(b"<roleFlags>00</roleFlags>", b"<roleFlags>000000</roleFlags>")),
    "qualityFlags not hex": (Reading, b'<Reading xmlns="urn:ieee:std:2030.5:ns"><qualityFlags>0G</qualityFlags></Reading>'),
    "uom above UInt8": (ReadingType, b'<ReadingType xmlns="urn:ieee:std:2030.5:ns"><uom>256</uom></ReadingType>'),
    "multiplier above Int8": (ReadingType, b'<ReadingType xmlns="urn:ieee:std:2030.5:ns"><powerOfTenMultiplier>128</powerOfTenMultiplier></ReadingType>'),
    "supplyLimit above UInt48": (ReadingType, b'<ReadingType xmlns="urn:ieee:std:2030.5:ns"><supplyLimit>281474976710656</supplyLimit></ReadingType>'),
    "two Readings in a MirrorMeterReading": (MirrorMeterReading, b'<MirrorMeterReading xmlns="urn:ieee:std:2030.5:ns"><mRID>01</mRID><Reading/><Reading/></MirrorMeterReading>'),
    "a list posted as one": (MirrorMeterReading, codec.render(SAMPLES["MirrorMeterReadingList"])),
}


@pytest.mark.parametrize(("model", "body"), REFUSED.values(), ids=REFUSED.keys())
def test_the_codec_refuses(model: type, body: bytes) -> None:
    with pytest.raises(DecodeError):
        codec.parse(body, model)


def test_required_elements_must_be_given_to_the_constructor() -> None:
    with pytest.raises(TypeError):
        MeterReading(mrid="01")  # type: ignore[call-arg]  # no ReadingTypeLink
    with pytest.raises(TypeError):
        MirrorUsagePoint(mrid="01", role_flags="00", service_category_kind=0, status=0)  # type: ignore[call-arg]
