"""DERCurve, DERCurveList, LogEvent and LogEventList on the wire: schema order, round trips,
the 2018 schema's verdict, and values outside their types refused while parsing."""

from __future__ import annotations

import pytest

from server.sep2 import codec
from server.sep2.codec import DecodeError
from server.sep2.curves import CURVE_TYPE_OF_MODE, CURVE_TYPES, CurveData, DERCurve, DERCurveList
from server.sep2.derp import DERControlBase
from server.sep2.log import LogEvent, LogEventList
from server.sep2.models import EndDevice
from server.sep2.types import ListLinkValue

NS = 'xmlns="urn:ieee:std:2030.5:ns"'


def volt_var(**over) -> DERCurve:  # noqa: ANN003
    fields = dict(
        href="/edev/1/derp/2/dc/3", mrid="AB" * 16, description="VV", version=1,
        autonomous_v_ref_enable=True, autonomous_v_ref_time_constant=6000, creation_time=1_800_000_000,
        curve_data=[CurveData(xvalue=92, yvalue=30), CurveData(xvalue=108, yvalue=-30)],
        curve_type=11, open_loop_tms=500, ramp_dec_tms=10, ramp_inc_tms=20, ramp_pt1_tms=30, v_ref=10_000,
        x_multiplier=0, y_multiplier=-1, y_ref_type=2,
    )
    fields.update(over)
    return DERCurve(**fields)


def test_curve_type_names_are_the_curve_linked_modes_of_der_control_base() -> None:
    links = {name for name in DERControlBase.__dataclass_fields__.values()
             if name.metadata["kind"] == "link"}
    assert {f.metadata["xml"] for f in links} == set(CURVE_TYPES.values()) == set(CURVE_TYPE_OF_MODE)
    assert len(CURVE_TYPES) == 15 and CURVE_TYPE_OF_MODE["opModVoltVar"] == 11


def test_a_full_curve_round_trips_and_is_valid(sep2_schema) -> None:  # noqa: ANN001
    curve = volt_var()
    body = codec.render(curve)
    sep2_schema(body)
    assert codec.parse(body, DERCurve) == curve
    # schema order: autonomousVRef* before creationTime, CurveData before curveType, yRefType last
    text = body.decode()
    order = [text.index(t) for t in ("<autonomousVRefEnable>", "<creationTime>", "<CurveData>", "<curveType>",
                                      "<openLoopTms>", "<vRef>", "<xMultiplier>", "<yRefType>")]
    assert order == sorted(order)


def test_a_watt_pf_point_carries_excitation_and_a_list_is_valid(sep2_schema) -> None:  # noqa: ANN001
    pf = volt_var(href="/edev/1/derp/2/dc/4", curve_type=13, autonomous_v_ref_enable=None,
                  autonomous_v_ref_time_constant=None, v_ref=None, y_ref_type=0, y_multiplier=-2,
                  curve_data=[CurveData(excitation=False, xvalue=0, yvalue=100),
                              CurveData(excitation=True, xvalue=100, yvalue=90)])
    listing = DERCurveList(href="/edev/1/derp/2/dc", all=2, results=2, der_curves=[volt_var(), pf])
    body = codec.render(listing)
    sep2_schema(body)
    assert codec.parse(body, DERCurveList) == listing
    empty = codec.render(DERCurveList(href="/edev/1/derp/2/dc", all=0, results=0))
    sep2_schema(empty)
    assert b"subscribable" not in empty  # a plain List in the schema


@pytest.mark.parametrize("bad", [
    "<xMultiplier>128</xMultiplier>",  # Int8
    "<vRef>10001</vRef>",  # PerCent
])
def test_values_outside_their_types_are_refused(bad: str) -> None:
    body = codec.render(volt_var()).decode()
    tag = bad[1:bad.index(">")]
    start, end = body.index(f"<{tag}>"), body.index(f"</{tag}>") + len(tag) + 3
    with pytest.raises(DecodeError) as err:
        codec.parse((body[:start] + bad + body[end:]).encode(), DERCurve)
    assert err.value.reason_code == 1


def log_event(**over) -> LogEvent:  # noqa: ANN003
    fields = dict(href="/edev/1/lel/7", created_date_time=1_800_000_000, details="over-voltage trip",
                  extended_data=4_000_000_000, function_set=11, log_event_code=3, log_event_id=65535,
                  log_event_pen=40732, profile_id=2)
    fields.update(over)
    return LogEvent(**fields)


def test_log_events_round_trip_and_are_valid(sep2_schema) -> None:  # noqa: ANN001
    one = log_event()
    sep2_schema(codec.render(one))
    assert codec.parse(codec.render(one), LogEvent) == one
    listing = LogEventList(href="/edev/1/lel", all=5, results=1, poll_rate=900, log_events=[one])
    body = codec.render(listing)
    sep2_schema(body)
    assert codec.parse(body, LogEventList) == listing


@pytest.mark.parametrize(("element", "value"), [
    ("functionSet", "256"), ("logEventID", "65536"), ("logEventCode", "-1"), ("logEventPEN", "4294967296"),
    ("details", "x" * 33), ("createdDateTime", "soon"),
])
def test_a_bad_log_event_is_refused_with_reason_1(element: str, value: str) -> None:
    body = codec.render(log_event()).decode()
    start = body.index(f"<{element}>") + len(element) + 2
    end = body.index(f"</{element}>")
    with pytest.raises(DecodeError) as err:
        codec.parse((body[:start] + value + body[end:]).encode(), LogEvent)
    assert err.value.reason_code == 1


def test_a_log_event_missing_a_required_element_is_refused() -> None:
    body = f"<LogEvent {NS}><createdDateTime>1</createdDateTime><functionSet>0</functionSet></LogEvent>"
    with pytest.raises(DecodeError, match="requires"):
        codec.parse(body.encode(), LogEvent)


def test_end_device_links_its_log_event_list_in_schema_order(sep2_schema) -> None:  # noqa: ANN001
    ed = EndDevice(href="/edev/1", lfdi="AB" * 20, sfdi=123, changed_time=5,
                   log_event_list_link=ListLinkValue("/edev/1/lel"),
                   function_set_assignments_list_link=ListLinkValue("/edev/1/fsa", 1))
    body = codec.render(ed)
    sep2_schema(body)
    assert body.index(b"<lFDI>") < body.index(b"<LogEventListLink") < body.index(b"<sFDI>")
