"""derp / fsa / rsps documents: round trips and validity against the official schema."""

from __future__ import annotations

import pytest

from server.sep2 import codec
from server.sep2.codec import DecodeError
from server.sep2.der import ActivePower, ReactivePower
from server.sep2.derp import (
    DateTimeInterval,
    DefaultDERControl,
    DERControl,
    DERControlBase,
    DERControlList,
    DERProgram,
    DERProgramList,
    EventStatus,
    FixedVar,
    FreqDroopType,
    PowerFactorWithExcitation,
)
from server.sep2.fsa import FunctionSetAssignments, FunctionSetAssignmentsList
from server.sep2.rsps import DERControlResponse, Response, ResponseList, ResponseSet, ResponseSetList
from server.sep2.types import ListLinkValue

MRID = "0A1B2C3D4E5F60718293A4B5C6D7E8F9"
LFDI = "3E4F45AB31EDFE5B67E343E5E4562E31984E23E5"

EVERY_MODE = DERControlBase(
    op_mod_connect=True,
    op_mod_energize=True,
    op_mod_fixed_pf_absorb_w=PowerFactorWithExcitation(displacement=950, excitation=True, multiplier=-3),
    op_mod_fixed_pf_inject_w=PowerFactorWithExcitation(displacement=900, excitation=False, multiplier=-3),
    op_mod_fixed_var=FixedVar(ref_type=1, value=-2500),
    op_mod_fixed_w=-10000,
    op_mod_freq_droop=FreqDroopType(db_of=36, db_uf=36, k_of=5, k_uf=5, open_loop_tms=500),
    op_mod_freq_watt="/dc/1", op_mod_hfrt_may_trip="/dc/2", op_mod_hfrt_must_trip="/dc/3",
    op_mod_hvrt_may_trip="/dc/4", op_mod_hvrt_momentary_cessation="/dc/5", op_mod_hvrt_must_trip="/dc/6",
    op_mod_lfrt_may_trip="/dc/7", op_mod_lfrt_must_trip="/dc/8", op_mod_lvrt_may_trip="/dc/9",
    op_mod_lvrt_momentary_cessation="/dc/10", op_mod_lvrt_must_trip="/dc/11",
    op_mod_max_lim_w=10000,
    op_mod_target_var=ReactivePower(value=-300, multiplier=1),
    op_mod_target_w=ActivePower(value=5000, multiplier=0),
    op_mod_volt_var="/dc/12", op_mod_volt_watt="/dc/13", op_mod_watt_pf="/dc/14", op_mod_watt_var="/dc/15",
    ramp_tms=300,
)

CONTROL = DERControl(
    href="/derp/1/derc/7", reply_to="/rsps/1/rsp", response_required="03", subscribable=0,
    mrid=MRID, description="Peak Saver 16:00", version=2, creation_time=1_700_000_000,
    event_status=EventStatus(current_status=4, date_time=1_700_000_100, potentially_superseded=True,
                             potentially_superseded_time=1_700_000_050, reason="re-cleared"),
    interval=DateTimeInterval(duration=3600, start=1_700_003_600),
    randomize_duration=-3600, randomize_start=3600,
    der_control_base=EVERY_MODE, device_category="0000FFFF",
)
MINIMAL_CONTROL = DERControl(
    mrid=MRID, creation_time=0,
    event_status=EventStatus(current_status=0, date_time=0, potentially_superseded=False),
    interval=DateTimeInterval(duration=0, start=0),
    der_control_base=DERControlBase(op_mod_fixed_w=5000),
)

SAMPLES = {
    "DERControl, every element": CONTROL,
    "DERControl, minimal": MINIMAL_CONTROL,
    "DERControlList": DERControlList(href="/derp/1/derc", all=2, results=2, der_controls=[CONTROL, MINIMAL_CONTROL]),
    "ActiveDERControlList (a DERControlList document)": DERControlList(href="/derp/1/actderc", all=0, results=0),
    "DefaultDERControl": DefaultDERControl(
        href="/derp/1/dderc", mrid=MRID, description="default", version=3,
        der_control_base=DERControlBase(op_mod_max_lim_w=10000, op_mod_connect=True),
        set_es_delay=300, set_es_high_freq=6010, set_es_high_volt=10500, set_es_low_freq=5950,
        set_es_low_volt=-100, set_es_ramp_tms=3000, set_es_random_delay=60, set_grad_w=100, set_soft_grad_w=50,
    ),
    "DERProgram": DERProgram(
        href="/derp/1", mrid=MRID, description="Peak Saver", version=1,
        active_der_control_list_link=ListLinkValue("/derp/1/actderc", 0), default_der_control_link="/derp/1/dderc",
        der_control_list_link=ListLinkValue("/derp/1/derc", 2), der_curve_list_link=ListLinkValue("/derp/1/dc", 0),
        primacy=2,
    ),
    "DERProgramList": DERProgramList(href="/edev/1/fsa/1/derp", all=1, results=1, poll_rate=60,
                                     der_programs=[DERProgram(mrid=MRID, primacy=0)]),
    "FunctionSetAssignmentsList": FunctionSetAssignmentsList(
        href="/edev/1/fsa", all=1, results=1, poll_rate=900,
        function_set_assignments=[FunctionSetAssignments(
            href="/edev/1/fsa/1", der_program_list_link=ListLinkValue("/edev/1/fsa/1/derp", 1),
            response_set_list_link=ListLinkValue("/rsps", 1), time_link="/tm", mrid=MRID, description="utility", version=0,
        )],
    ),
    "Response": Response(href="/rsps/1/rsp/9", created_date_time=5, end_device_lfdi=LFDI, status=254, subject=MRID),
    "DERControlResponse": DERControlResponse(end_device_lfdi=LFDI, status=1, subject=MRID),
    "ResponseList": ResponseList(href="/rsps/1/rsp", all=1, results=1,
                                 responses=[Response(end_device_lfdi=LFDI, subject=MRID, status=3)]),
    "ResponseSetList": ResponseSetList(href="/rsps", all=1, results=1, poll_rate=900, response_sets=[
        ResponseSet(href="/rsps/1", mrid=MRID, response_list_link=ListLinkValue("/rsps/1/rsp", 0))]),
}


@pytest.mark.parametrize("model", SAMPLES.values(), ids=SAMPLES.keys())
def test_round_trip_and_schema(model: object, sep2_schema) -> None:
    body = codec.render(model)
    sep2_schema(body)
    assert codec.parse(body, type(model)) == model


@pytest.mark.parametrize(
    ("inner", "reason"),
    [
        ("<opModFixedW>10001</opModFixedW>", 1),
        ("<opModFixedW>-10001</opModFixedW>", 1),
        ("<opModMaxLimW>-1</opModMaxLimW>", 1),
        ("<rampTms>65536</rampTms>", 1),
        ("<opModTargetW><multiplier>0</multiplier><value>32768</value></opModTargetW>", 1),
        ("<opModTargetW><multiplier>0</multiplier></opModTargetW>", 0),
        ("<opModVoltVar/>", 0),
    ],
)
def test_bad_control_bases_are_refused(inner: str, reason: int) -> None:
    body = f'<DefaultDERControl xmlns="urn:ieee:std:2030.5:ns"><mRID>{MRID}</mRID><DERControlBase>{inner}</DERControlBase></DefaultDERControl>'
    with pytest.raises(DecodeError) as err:
        codec.parse(body.encode(), DefaultDERControl)
    assert err.value.reason_code == reason


@pytest.mark.parametrize("randomize", [-3601, 3601])
def test_randomization_beyond_an_hour_is_refused(randomize: int) -> None:
    body = codec.render(MINIMAL_CONTROL).replace(b"<DERControlBase>", f"<randomizeStart>{randomize}</randomizeStart><DERControlBase>".encode())
    with pytest.raises(DecodeError):
        codec.parse(body, DERControl)
