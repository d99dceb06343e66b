"""server/services/sep2/mappers: rows and domain values to 2030.5 wire models, without a database.

The function sets' API tests show the mappers end to end; these pin what the services and
publishing rely on: a control's stored text for each mode programs.controls plans, the JSON an
operator reads back being the JSON they wrote, and what a DER document stores."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from programs.controls import MODES
from server.sep2 import codec, events
from server.sep2.der import ActivePower, DERSettings, DERStatus, StateOfChargeStatusType
from server.sep2.derp import DERControl, DERControlBase
from server.services.errors import Invalid
from server.services.sep2 import derp
from server.services.sep2.mappers import der as der_mapper
from server.services.sep2.mappers import derp as derp_mapper
from server.services.sep2.mappers import mup as mup_mapper

NS = 'xmlns="urn:ieee:std:2030.5:ns"'


@pytest.mark.parametrize(
    ("mode", "value", "multiplier", "expected"),
    [
        ("opModFixedW", -2500, None, DERControlBase(op_mod_fixed_w=-2500)),
        ("opModMaxLimW", 10000, None, DERControlBase(op_mod_max_lim_w=10000)),
        ("opModTargetW", -45, 2, DERControlBase(op_mod_target_w=ActivePower(value=-45, multiplier=2))),
        ("opModTargetW", 0, None, DERControlBase(op_mod_target_w=ActivePower(value=0, multiplier=0))),
    ],
)
def test_a_planned_control_is_stored_as_its_canonical_control_base(mode: str, value: int, multiplier, expected) -> None:  # noqa: ANN001
    text = derp_mapper.control_base_xml(mode, value, multiplier)
    assert text.startswith(f"<DERControlBase {NS}>")
    assert codec.parse(text.encode(), DERControlBase) == expected
    assert text == derp_mapper.der_control_base_xml(expected)
    assert derp_mapper.control_modes(expected) == mode  # the mode list publishing stores beside it


def test_every_mode_programs_controls_plans_has_a_stored_form_and_nothing_else_does() -> None:
    for mode in MODES:
        assert mode in derp_mapper.control_base_xml(mode, 1, 0)
    with pytest.raises(ValueError, match="not a control mode"):
        derp_mapper.control_base_xml("opModConnect", 1, None)


@pytest.mark.parametrize(
    "spec",
    [
        {"opModFixedW": 5000},
        {"opModMaxLimW": 8000, "rampTms": 3000},
        {"opModTargetW": {"multiplier": 1, "value": -5000}},
        {"opModConnect": False, "opModEnergize": True},
    ],
)
def test_an_operators_control_reads_back_as_written(spec: dict) -> None:
    text = derp_mapper.der_control_base_xml(derp.control_base(spec))
    assert derp_mapper.der_control_base_json(text) == spec
    assert derp_mapper.der_control_base_json(None) is None


def test_a_control_out_of_its_schema_range_is_refused_by_the_wire_types() -> None:
    with pytest.raises(Invalid, match="out of range"):
        derp.control_base({"opModFixedW": 10001})  # SignedPerCent: at most 10000
    with pytest.raises(Invalid, match="out of range"):
        derp.control_base({"opModTargetW": {"value": 40000, "multiplier": 0}})  # Int16


def test_stored_controls_are_parsed_once_and_shared() -> None:
    text = derp_mapper.control_base_xml("opModFixedW", 1234, None)
    assert derp_mapper.stored_der_control_base(text) is derp_mapper.stored_der_control_base(text)


def test_an_event_row_as_the_device_sees_it() -> None:
    row = SimpleNamespace(id=7, mrid="AB" * 16, description="Evening peak", creation_time=100, start=200,
                          duration=3600, randomize_start=60, randomize_duration=None, response_required="03",
                          base=derp_mapper.control_base_xml("opModFixedW", 5000, None))
    state = events.EventState(status=events.Status.ACTIVE, date_time=200, listed=True,
                              potentially_superseded=False, potentially_superseded_time=None)
    control = derp_mapper.der_control(3, 2, row, state)
    assert isinstance(control, DERControl)
    assert (control.href, control.reply_to) == ("/edev/3/derp/2/derc/7", "/rsps/2/rsp")
    assert (control.event_status.current_status, control.interval.start, control.interval.duration) == (1, 200, 3600)
    assert control.der_control_base.op_mod_fixed_w == 5000
    listed = derp_mapper.der_control_list(3, 2, [(row, state)], 5, active_only=True)
    assert (listed.href, listed.all, listed.results) == ("/edev/3/derp/2/actderc", 5, 1)


def test_a_der_document_is_stored_canonical_with_its_si_columns() -> None:
    posted = DERSettings(href="/somewhere/else", subscribable=1, set_max_w=ActivePower(multiplier=3, value=5),
                         set_max_charge_rate_w=ActivePower(multiplier=2, value=46), set_grad_w=100, updated_time=50)
    doc = der_mapper.canonical(posted, "/edev/4/der/1/derg")
    row = der_mapper.document_row(4, 1, doc, now=60)
    assert (row["device_id"], row["der_id"], row["received_time"]) == (4, 1, 60)
    assert (row["set_max_w"], row["set_max_charge_rate_w"], row["set_max_discharge_rate_w"]) == (5000.0, 4600.0, None)
    stored = der_mapper.stored_document(row["document"], DERSettings)
    assert stored.href == "/edev/4/der/1/derg" and stored.subscribable is None
    assert stored.set_max_w == posted.set_max_w
    status = DERStatus(reading_time=10, state_of_charge_status=StateOfChargeStatusType(date_time=10, value=5550))
    assert der_mapper.status_columns(status)["state_of_charge_percent"] == 55.5


@pytest.mark.parametrize(("bits", "text"), [(None, None), (0, "00"), (0xFF, "FF"), (0x100, "0100"), (0xBEEF, "BEEF")])
def test_bitmaps_are_one_byte_when_they_fit(bits, text) -> None:  # noqa: ANN001
    assert mup_mapper.hex_bits(bits) == text
    assert mup_mapper.bits(text) == bits
