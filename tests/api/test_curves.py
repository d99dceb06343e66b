"""DER curves: operators author them (admin API), link them from default controls and events by
id or href, and devices follow those links to curves of their own DER programs only."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import func, select

from server.db.curves import DerCurve
from server.db.derp import DerEvent
from server.sep2 import codec
from server.sep2.curves import DERCurve, DERCurveList
from server.sep2.derp import DefaultDERControl, DERControlList, DERProgram, DERProgramList
from server.sep2.fsa import FunctionSetAssignments, FunctionSetAssignmentsList
from server.sep2.models import EndDevice

VOLT_VAR = {"curveType": "opModVoltVar", "yRefType": 2, "description": "VV 2018",
            "CurveData": [{"xvalue": 92, "yvalue": 30}, {"xvalue": 98, "yvalue": 0},
                          {"xvalue": 102, "yvalue": 0}, {"xvalue": 108, "yvalue": -30}],
            "vRef": 10000, "openLoopTms": 500}
FREQ_WATT = {"curveType": 0, "yRefType": 1, "xMultiplier": -2,
             "CurveData": [{"xvalue": 6036, "yvalue": 100}, {"xvalue": 6200, "yvalue": 0}]}


@pytest.fixture
def world(operator, cast):  # noqa: ANN001, ANN201
    owner = operator("POST", "/devices", json={"lfdi": cast["owner"].lfdi}).get_json()["id"]
    other = operator("POST", "/devices", json={"lfdi": cast["other"].lfdi}).get_json()["id"]
    program = operator("POST", "/der-programs", json={"primacy": 1}).get_json()["id"]
    elsewhere = operator("POST", "/der-programs", json={"primacy": 2}).get_json()["id"]
    operator("POST", f"/der-programs/{program}/members", json={"device_ids": [owner, other]})
    operator("POST", f"/der-programs/{elsewhere}/members", json={"device_ids": [other]})
    return {"owner": owner, "other": other, "program": program, "elsewhere": elsewhere}


def add(operator, program: int, body: dict) -> int:  # noqa: ANN001
    resp = operator("POST", f"/der-programs/{program}/curves", json=body)
    assert resp.status_code == 201, resp.get_json()
    assert resp.headers["Location"].endswith(f"/der-programs/{program}/curves/{resp.get_json()['id']}")
    return resp.get_json()["id"]


def get(client, path: str, model: type, sep2_schema):  # noqa: ANN001, ANN201
    resp = client.get(path)
    assert resp.status_code == 200, (path, resp.data)
    sep2_schema(resp.data)
    return codec.parse(resp.data, model)


def program_of(client, edev: int, sep2_schema, number: int = 0) -> DERProgram:  # noqa: ANN001
    """Follow links from the EndDevice, as a 2030.5 client must."""
    ed = get(client, f"/edev/{edev}", EndDevice, sep2_schema)
    fsas = get(client, ed.function_set_assignments_list_link.href + "?l=10", FunctionSetAssignmentsList, sep2_schema)
    fsa = get(client, fsas.function_set_assignments[0].href, FunctionSetAssignments, sep2_schema)
    programs = get(client, fsa.der_program_list_link.href + "?l=10", DERProgramList, sep2_schema)
    return get(client, programs.der_programs[number].href, DERProgram, sep2_schema)


def problem(resp, status: int) -> str:  # noqa: ANN001
    assert resp.status_code == status, (resp.status_code, resp.data)
    assert resp.content_type == "application/problem+json"
    return resp.get_json()["detail"]


def counts(database) -> tuple[int, int]:  # noqa: ANN001
    with database.transaction() as s:
        return (s.scalar(select(func.count()).select_from(DerCurve)),
                s.scalar(select(func.count()).select_from(DerEvent)))


def test_a_device_walks_to_the_curves_of_its_program(world, operator, cast, client_for, sep2_schema) -> None:  # noqa: ANN001
    vv = add(operator, world["program"], VOLT_VAR)
    c = client_for(cast["owner"])
    program = program_of(c, world["owner"], sep2_schema)
    assert program.der_curve_list_link.href == f"/edev/{world['owner']}/derp/{world['program']}/dc"
    listing = get(c, program.der_curve_list_link.href + "?l=10", DERCurveList, sep2_schema)
    assert (listing.all, listing.results) == (1, 1)
    [curve] = listing.der_curves
    assert curve.href == f"/edev/{world['owner']}/derp/{world['program']}/dc/{vv}"
    assert (curve.curve_type, curve.y_ref_type, curve.v_ref, curve.open_loop_tms) == (11, 2, 10000, 500)
    assert [(p.xvalue, p.yvalue) for p in curve.curve_data] == [(92, 30), (98, 0), (102, 0), (108, -30)]
    assert get(c, curve.href, DERCurve, sep2_schema) == curve
    # a write through this process shows at once; newest first; a bare GET shows one
    fw = add(operator, world["program"], FREQ_WATT)
    listing = get(c, program.der_curve_list_link.href + "?l=10", DERCurveList, sep2_schema)
    assert listing.all == 2 and {x.curve_type for x in listing.der_curves} == {0, 11}
    assert get(c, program.der_curve_list_link.href, DERCurveList, sep2_schema).results == 1
    assert get(c, program.der_curve_list_link.href + "?s=1&l=5", DERCurveList, sep2_schema).results == 1
    assert operator("GET", f"/der-programs/{world['program']}/curves/{fw}").get_json()["xMultiplier"] == -2


def test_controls_link_curves_and_each_device_gets_its_own_href(world, operator, cast, client_for, database, sep2_schema) -> None:  # noqa: ANN001
    p = world["program"]
    vv, fw = add(operator, p, VOLT_VAR), add(operator, p, FREQ_WATT)
    assert operator("PUT", f"/der-programs/{p}/default-control",
                    json={"opModVoltVar": vv, "opModMaxLimW": 9000}).status_code == 204
    href_given = f"/edev/{world['other']}/derp/{p}/dc/{fw}"  # any device's href of this program's curve
    resp = operator("POST", f"/der-programs/{p}/events",
                    json={"start": int(time.time()) + 3600, "duration": 600, "control": {"opModFreqWatt": href_given}})
    assert resp.status_code == 201, resp.get_json()
    assert resp.get_json()["events"][0]["control"] == {"opModFreqWatt": fw}
    assert operator("GET", f"/der-programs/{p}").get_json()["default_control"] == {"opModMaxLimW": 9000, "opModVoltVar": vv}
    for who in ("owner", "other"):
        c = client_for(cast[who])
        program = program_of(c, world[who], sep2_schema)
        default = get(c, program.default_der_control_link, DefaultDERControl, sep2_schema)
        assert default.der_control_base.op_mod_volt_var == f"/edev/{world[who]}/derp/{p}/dc/{vv}"
        assert get(c, default.der_control_base.op_mod_volt_var, DERCurve, sep2_schema).curve_type == 11
        [event] = get(c, program.der_control_list_link.href + "?l=10", DERControlList, sep2_schema).der_controls
        assert event.der_control_base.op_mod_freq_watt == f"/edev/{world[who]}/derp/{p}/dc/{fw}"
        assert get(c, event.der_control_base.op_mod_freq_watt, DERCurve, sep2_schema).curve_type == 0


@pytest.mark.parametrize(("control", "message"), [
    ({"opModVoltVar": "FREQ"}, "needs a curve of curveType 11"),  # the freq-watt curve's id
    ({"opModVoltVar": 999}, "has no curve 999"),
    ({"opModVoltVar": "/edev/1/derp/ELSEWHERE/dc/VV"}, "names no curve of DER program"),
    ({"opModVoltVar": "/edev/1/derp/PROGRAM/derc/VV"}, "names no curve of DER program"),
    ({"opModVoltVar": "https://elsewhere.example/dc/1"}, "names no curve of DER program"),
    ({"opModVoltVar": 1.5}, "names a DER curve"),
])
def test_links_to_no_curve_of_the_program_are_refused_and_store_nothing(world, operator, database, control, message) -> None:  # noqa: ANN001
    p = world["program"]
    vv, fw = add(operator, p, VOLT_VAR), add(operator, p, FREQ_WATT)
    other_vv = add(operator, world["elsewhere"], VOLT_VAR)
    value = control["opModVoltVar"]
    if isinstance(value, str):
        value = (value.replace("FREQ", str(fw)).replace("ELSEWHERE", str(world["elsewhere"]))
                 .replace("PROGRAM", str(p)).replace("VV", str(other_vv if "ELSEWHERE" in value else vv)))
        if value.isdigit():
            value = int(value)
    before = counts(database)
    resp = operator("POST", f"/der-programs/{p}/events",
                    json={"start": int(time.time()) + 3600, "duration": 600, "control": {"opModVoltVar": value}})
    assert message in problem(resp, 400)
    assert message in problem(operator("PUT", f"/der-programs/{p}/default-control", json={"opModVoltVar": value}), 400)
    assert counts(database) == before
    assert operator("GET", f"/der-programs/{p}").get_json()["default_control"] is None


def test_a_curve_in_use_cannot_be_deleted(world, operator, database) -> None:  # noqa: ANN001
    p = world["program"]
    vv, fw, spare = add(operator, p, VOLT_VAR), add(operator, p, FREQ_WATT), add(operator, p, VOLT_VAR)
    operator("PUT", f"/der-programs/{p}/default-control", json={"opModVoltVar": vv})
    start = int(time.time()) + 3600
    operator("POST", f"/der-programs/{p}/events", json={"start": start, "duration": 600, "control": {"opModFreqWatt": fw}})
    for curve in (vv, fw):
        assert "default control or by one of its events" in problem(operator("DELETE", f"/der-programs/{p}/curves/{curve}"), 409)
    assert counts(database)[0] == 3
    assert operator("DELETE", f"/der-programs/{p}/curves/{spare}").status_code == 204
    assert operator("GET", f"/der-programs/{p}/curves/{spare}").status_code == 404
    assert operator("DELETE", f"/der-programs/{p}/curves/{spare}").status_code == 404
    operator("PUT", f"/der-programs/{p}/default-control", json={"opModMaxLimW": 10000})
    assert operator("DELETE", f"/der-programs/{p}/curves/{vv}").status_code == 204
    listing = operator("GET", f"/der-programs/{p}/curves").get_json()
    assert listing["all"] == 1 and listing["curves"][0]["id"] == fw and listing["curves"][0]["curveTypeName"] == "opModFreqWatt"


@pytest.mark.parametrize(("over", "message"), [
    ({"CurveData": []}, "1…10 points"),
    ({"CurveData": [{"xvalue": i, "yvalue": 0} for i in range(11)]}, "1…10 points"),
    ({"CurveData": [{"xvalue": 100, "yvalue": 0}, {"xvalue": 100, "yvalue": 5}]}, "strictly increasing"),
    ({"CurveData": [{"xvalue": 100, "yvalue": 0}, {"xvalue": 90, "yvalue": 5}]}, "strictly increasing"),
    ({"CurveData": [{"xvalue": 1, "yvalue": 2 ** 31}]}, "yvalue must be an integer"),
    ({"CurveData": [{"xvalue": 1}]}, "needs xvalue and yvalue"),
    ({"CurveData": [{"xvalue": 1, "yvalue": 1, "excitation": True}]}, "only for watt-PF"),
    ({"CurveData": [{"xvalue": 1, "yvalue": 1, "x": 1}]}, "unknown field"),
    ({"xMultiplier": 10}, "xMultiplier must be an integer -9…9"),
    ({"yMultiplier": -10}, "yMultiplier must be an integer -9…9"),
    ({"yRefType": 0}, "volt-var curve's yRefType"),
    ({"yRefType": 8}, "yRefType must be"),
    ({"curveType": 15}, "curveType must be one of"),
    ({"curveType": "opModFixedW"}, "curveType must be one of"),
    ({"curveType": 0, "yRefType": 1}, "only for volt-var curves"),  # VOLT_VAR carries vRef
    ({"curveType": 13, "yRefType": 0, "vRef": None}, "need excitation"),
    ({"vRef": 10001}, "vRef must be an integer 0…10000"),
    ({"openLoopTms": 70000}, "openLoopTms"),
    ({"description": "x" * 33}, "32 characters"),
    ({"colour": "red"}, "unknown field"),
    ({"CurveData": None}, "1…10 points"),
])
def test_bad_curves_are_400_and_store_nothing(world, operator, database, over: dict, message: str) -> None:  # noqa: ANN001
    body = {**VOLT_VAR, **over}
    assert message in problem(operator("POST", f"/der-programs/{world['program']}/curves", json=body), 400)
    assert counts(database) == (0, 0)


def test_curve_rules_that_are_accepted(world, operator) -> None:  # noqa: ANN001
    p = world["program"]
    must_trip = {"curveType": "opModHVRTMustTrip", "yRefType": 0,  # a step repeats a duration
                 "CurveData": [{"xvalue": 0, "yvalue": 120}, {"xvalue": 16, "yvalue": 120},
                               {"xvalue": 16, "yvalue": 110}, {"xvalue": 200, "yvalue": 110}]}
    watt_pf = {"curveType": 13, "yRefType": 0, "yMultiplier": -2,
               "CurveData": [{"xvalue": 0, "yvalue": 100, "excitation": False},
                             {"xvalue": 100, "yvalue": 90, "excitation": True}]}
    one_point = {"curveType": 12, "yRefType": 1, "CurveData": [{"xvalue": 106, "yvalue": 100}]}
    for body in (must_trip, watt_pf, one_point):
        add(operator, p, body)
    assert "must not decrease" in problem(operator("POST", f"/der-programs/{p}/curves", json={
        **must_trip, "CurveData": [{"xvalue": 16, "yvalue": 120}, {"xvalue": 0, "yvalue": 110}]}), 400)


def test_curves_are_seen_only_through_a_program_the_device_reaches(world, operator, cast, client_for) -> None:  # noqa: ANN001
    vv = add(operator, world["program"], VOLT_VAR)
    elsewhere = add(operator, world["elsewhere"], VOLT_VAR)
    owner, other = client_for(cast["owner"]), client_for(cast["other"])
    o, p, e = world["owner"], world["program"], world["elsewhere"]
    assert owner.get(f"/edev/{o}/derp/{p}/dc/{vv}").status_code == 200
    assert owner.get(f"/edev/{o}/derp/{e}/dc").status_code == 404  # not a member
    assert owner.get(f"/edev/{o}/derp/{e}/dc/{elsewhere}").status_code == 404
    assert owner.get(f"/edev/{o}/derp/{p}/dc/{elsewhere}").status_code == 404  # another program's curve
    assert owner.get(f"/edev/{world['other']}/derp/{p}/dc").status_code == 404  # another device's path
    assert other.get(f"/edev/{world['other']}/derp/{e}/dc/{elsewhere}").status_code == 200
    assert client_for(cast["unregistered"]).get(f"/edev/{o}/derp/{p}/dc").status_code == 404
    resp = owner.post(f"/edev/{o}/derp/{p}/dc", data=b"<DERCurve/>")
    assert resp.status_code == 405 and "GET" in resp.headers["Allow"]
    assert operator("POST", "/der-programs/999/curves", json=VOLT_VAR).status_code == 404
    assert operator("GET", f"/der-programs/{p}/curves/{elsewhere}").status_code == 404
