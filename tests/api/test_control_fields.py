"""Every DERControlBase field (curve links aside: tests/api/test_curves.py) and every
DefaultDERControl field is settable by operators, reaches the device in a schema-valid document,
reads back as written, and a bad value is refused naming its field with nothing stored."""

from __future__ import annotations

import time

import pytest

from server.sep2 import codec
from server.sep2.derp import DefaultDERControl, DERControlBase, DERControlList
from server.services.errors import Invalid
from server.services.sep2 import derp

# every non-curve DERControlBase field, by its 2030.5 name, with a value in range
EVERY_MODE = {
    "opModConnect": True,
    "opModEnergize": False,
    "opModFixedPFAbsorbW": {"displacement": 950, "excitation": True, "multiplier": -3},
    "opModFixedPFInjectW": {"displacement": 900, "excitation": False, "multiplier": -3},
    "opModFixedVar": {"refType": 1, "value": -2500},
    "opModFixedW": -5000,
    "opModFreqDroop": {"dBOF": 36, "dBUF": 36, "kOF": 40, "kUF": 40, "openLoopTms": 500},
    "opModMaxLimW": 8000,
    "opModTargetVar": {"multiplier": 2, "value": -15},
    "opModTargetW": {"multiplier": 3, "value": 5},
    "rampTms": 6000,
    # CSIP-AUS dynamic operating envelope limits (csipaus namespace)
    "opModImpLimW": {"multiplier": 3, "value": 7},
    "opModExpLimW": {"multiplier": 2, "value": 15},
    "opModGenLimW": {"multiplier": 0, "value": 0},
    "opModLoadLimW": {"multiplier": 1, "value": 200},
}
EVERY_SETTING = {
    "description": "Fallback", "setESDelay": 30000, "setESHighFreq": 6010, "setESHighVolt": 10500,
    "setESLowFreq": 5950, "setESLowVolt": 9170, "setESRampTms": 30000, "setESRandomDelay": 12000,
    "setGradW": 50, "setSoftGradW": 25,
}


def test_every_value_mode_is_covered() -> None:
    import dataclasses

    from server.sep2.types import CHILD, ELEM

    assert set(EVERY_MODE) == {f.metadata["xml"] for f in dataclasses.fields(DERControlBase)
                               if f.metadata["kind"] in (ELEM, CHILD)}
    assert set(EVERY_SETTING) == derp.DEFAULT_SETTINGS


@pytest.fixture
def world(operator, cast):  # noqa: ANN001, ANN201
    owner = operator("POST", "/devices", json={"lfdi": cast["owner"].lfdi}).get_json()["id"]
    program = operator("POST", "/der-programs", json={"primacy": 1}).get_json()["id"]
    operator("POST", f"/der-programs/{program}/members", json={"device_ids": [owner]})
    return {"owner": owner, "program": program}


def test_every_mode_reaches_the_device_in_an_event(world, operator, cast, client_for, sep2_schema) -> None:  # noqa: ANN001
    body = {"start": int(time.time()) + 3600, "duration": 600, "control": EVERY_MODE}
    created = operator("POST", f"/der-programs/{world['program']}/events", json=body)
    assert created.status_code == 201, created.data
    assert created.get_json()["events"][0]["control"] == EVERY_MODE
    resp = client_for(cast["owner"]).get(f"/edev/{world['owner']}/derp/{world['program']}/derc?l=5")
    sep2_schema(resp.data)
    (event,) = codec.parse(resp.data, DERControlList).der_controls
    base = event.der_control_base
    assert base.op_mod_freq_droop.k_of == 40 and base.op_mod_fixed_pf_absorb_w.excitation is True
    assert base.op_mod_target_var.value == -15 and base.op_mod_fixed_var.ref_type == 1


def test_every_default_field_reaches_the_device(world, operator, cast, client_for, sep2_schema) -> None:  # noqa: ANN001
    p = world["program"]
    assert operator("PUT", f"/der-programs/{p}/default-control", json={**EVERY_MODE, **EVERY_SETTING}).status_code == 204
    view = operator("GET", f"/der-programs/{p}").get_json()
    assert (view["default_control"], view["default_settings"]) == (EVERY_MODE, EVERY_SETTING)
    c = client_for(cast["owner"])
    resp = c.get(f"/edev/{world['owner']}/derp/{p}/dderc")
    sep2_schema(resp.data)
    doc = codec.parse(resp.data, DefaultDERControl)
    assert (doc.set_grad_w, doc.set_soft_grad_w, doc.set_es_delay, doc.set_es_low_volt, doc.description) == (
        50, 25, 30000, 9170, "Fallback")
    assert doc.der_control_base.op_mod_fixed_pf_inject_w.displacement == 900
    # {"control": …} with the fields beside it; absent fields are cleared; the version follows
    body = {"control": {"opModMaxLimW": 5000}, "setGradW": 100}
    assert operator("PUT", f"/der-programs/{p}/default-control", json=body).status_code == 204
    doc = codec.parse(c.get(f"/edev/{world['owner']}/derp/{p}/dderc").data, DefaultDERControl)
    assert (doc.set_grad_w, doc.set_es_delay, doc.version) == (100, None, 2)
    # only DefaultDERControl fields: an empty DERControlBase, which the schema allows
    assert operator("PUT", f"/der-programs/{p}/default-control", json={"setGradW": 7}).status_code == 204
    resp = c.get(f"/edev/{world['owner']}/derp/{p}/dderc")
    sep2_schema(resp.data)
    doc = codec.parse(resp.data, DefaultDERControl)
    assert (doc.set_grad_w, doc.der_control_base, doc.version) == (7, DERControlBase(), 3)
    # the same again changes nothing
    assert operator("PUT", f"/der-programs/{p}/default-control", json={"setGradW": 7}).status_code == 204
    assert operator("GET", f"/der-programs/{p}").get_json()["default_control_version"] == 3


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"opModMaxLimW": 1, "setGradW": 70000}, "setGradW"),
        ({"opModMaxLimW": 1, "setESHighVolt": -40000}, "setESHighVolt"),
        ({"opModMaxLimW": 1, "setESDelay": "soon"}, "setESDelay"),
        ({"opModMaxLimW": 1, "description": "x" * 33}, "description"),
        ({"opModFixedPFInjectW": {"displacement": 900, "excitation": False}}, "opModFixedPFInjectW.multiplier"),
        ({"opModFixedPFInjectW": {"displacement": 900, "excitation": 1, "multiplier": 0}}, "opModFixedPFInjectW.excitation"),
        ({"opModFreqDroop": {"dBOF": 1, "dBUF": 1, "kOF": -1, "kUF": 1, "openLoopTms": 1}}, "opModFreqDroop.kOF"),
        ({"opModFixedVar": {"refType": 1, "value": 1, "extra": 2}}, "opModFixedVar: unknown field(s) extra"),
        ({"opModTargetVar": 5}, "opModTargetVar"),
        ({"opModFixedW": 10001}, "opModFixedW out of range"),
    ],
)
def test_bad_fields_are_refused_naming_the_field_and_change_nothing(world, operator, body, field: str) -> None:  # noqa: ANN001
    p = world["program"]
    assert operator("PUT", f"/der-programs/{p}/default-control", json={"opModMaxLimW": 8000, "setGradW": 9}).status_code == 204
    before = operator("GET", f"/der-programs/{p}").get_json()
    resp = operator("PUT", f"/der-programs/{p}/default-control", json=body)
    assert resp.status_code == 400 and field in resp.get_json()["detail"], resp.get_json()
    assert operator("GET", f"/der-programs/{p}").get_json() == before
    event = operator("POST", f"/der-programs/{p}/events",
                     json={"start": int(time.time()) + 60, "duration": 60, "control": body})
    assert event.status_code == 400


def test_the_service_names_nested_fields() -> None:
    with pytest.raises(Invalid, match=r"opModFreqDroop\.dBOF is required"):
        derp.control_base({"opModFreqDroop": {"dBUF": 1, "kOF": 1, "kUF": 1, "openLoopTms": 1}})
    with pytest.raises(Invalid, match="setSoftGradW"):
        derp.default_settings({"setSoftGradW": -1})
