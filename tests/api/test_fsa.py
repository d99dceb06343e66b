"""FunctionSetAssignments as first-class resources: several per EndDevice, made by operators for a
device or a group, each leading to its own DER programs; FSA 1 keeps leading every device to the
DER programs it is a member of. Walked as a device walks them (links only), every document
validated against the 2018 schema; the operator's refusals store nothing."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import func, select

from server.db import fsa as fsa_store
from server.sep2 import codec
from server.sep2.derp import DERControlList, DERProgram, DERProgramList
from server.sep2.fsa import FunctionSetAssignments, FunctionSetAssignmentsList
from server.sep2.models import EndDevice, EndDeviceList
from server.sep2.rsps import Response as ResponseDoc

HOUR = 3600


def problem(resp, status: int) -> str:  # noqa: ANN001
    assert resp.status_code == status, (resp.status_code, resp.data)
    assert resp.content_type == "application/problem+json"
    return resp.get_json()["detail"]


def get(client, path: str, model: type, sep2_schema):  # noqa: ANN001, ANN201
    resp = client.get(path)
    assert resp.status_code == 200, (path, resp.data)
    sep2_schema(resp.data)
    return codec.parse(resp.data, model)


@pytest.fixture
def world(operator, cast):  # noqa: ANN001, ANN201
    """owner and other are members of DER program `a`; `b` and `c` have no members; `bare` is a
    registered device in no DER program."""
    ids = {who: operator("POST", "/devices", json={"lfdi": cast[who].lfdi}).get_json()["id"]
           for who in ("owner", "other", "managed")}
    programs = {name: operator("POST", "/der-programs", json={"description": f"DER program {name}", "primacy": p})
                .get_json()["id"] for name, p in (("a", 2), ("b", 1), ("c", 5))}
    operator("POST", f"/der-programs/{programs['a']}/members", json={"device_ids": [ids["owner"], ids["other"]]})
    return {**ids, **programs, "bare": ids["managed"]}


def fsas_of(client, edev_id: int, sep2_schema, query: str = "?l=10") -> FunctionSetAssignmentsList:  # noqa: ANN001
    """Through the EndDevice's link, checking its `all` against the list's."""
    ed = get(client, f"/edev/{edev_id}", EndDevice, sep2_schema)
    listing = get(client, ed.function_set_assignments_list_link.href + query, FunctionSetAssignmentsList, sep2_schema)
    assert ed.function_set_assignments_list_link.all == listing.all
    return listing


def programs_of(client, fsa: FunctionSetAssignments, sep2_schema) -> list[DERProgram]:  # noqa: ANN001
    programs = get(client, fsa.der_program_list_link.href + "?l=10", DERProgramList, sep2_schema)
    assert fsa.der_program_list_link.all == programs.all == len(programs.der_programs)
    return programs.der_programs


def test_fsa_1_keeps_leading_members_to_their_der_programs(world, cast, client_for, sep2_schema) -> None:  # noqa: ANN001
    c = client_for(cast["owner"])
    listing = fsas_of(c, world["owner"], sep2_schema)
    assert listing.all == 1 and [f.href for f in listing.function_set_assignments] == [f"/edev/{world['owner']}/fsa/1"]
    assert [p.description for p in programs_of(c, listing.function_set_assignments[0], sep2_schema)] == ["DER program a"]
    # a device in no DER program still has its (empty) FSA 1, as before FSAs were first-class
    bare = fsas_of(client_for(cast["managed"]), world["bare"], sep2_schema)
    assert bare.all == 1 and bare.function_set_assignments[0].der_program_list_link.all == 0


def test_an_operator_fsa_for_a_group_leads_each_device_to_its_der_programs(
    world, cast, client_for, operator, sep2_schema  # noqa: ANN001
) -> None:
    resp = operator("POST", "/fsas", json={"description": "Feeder 12", "device_ids": [world["owner"], world["other"]],
                                           "der_program_ids": [world["c"], world["b"]]})
    assert resp.status_code == 201 and resp.headers["Location"].endswith(f"/fsas/{resp.get_json()['id']}")
    view = resp.get_json()
    assert view["der_program_ids"] == sorted([world["b"], world["c"]]) and view["version"] == 0
    assert [(d["device_id"], d["number"]) for d in view["devices"]] == [(world["owner"], 2), (world["other"], 2)]
    for who in ("owner", "other"):
        c = client_for(cast[who])
        listing = fsas_of(c, world[who], sep2_schema)
        assert listing.all == 2
        one, two = listing.function_set_assignments
        assert (one.href, two.href) == (f"/edev/{world[who]}/fsa/1", f"/edev/{world[who]}/fsa/2")
        assert (two.mrid, two.description, two.version) == (view["mrid"], "Feeder 12", 0)
        assert get(c, two.href, FunctionSetAssignments, sep2_schema) == two
        # by primacy: b (1) before c (5); FSA 1 still holds the memberships
        assert [p.description for p in programs_of(c, two, sep2_schema)] == ["DER program b", "DER program c"]
        assert [p.description for p in programs_of(c, one, sep2_schema)] == ["DER program a"]
    # a device outside the group does not have it, and cannot see the group's
    assert client_for(cast["managed"]).get(f"/edev/{world['bare']}/fsa/2").status_code == 404
    assert client_for(cast["managed"]).get(f"/edev/{world['owner']}/fsa/2").status_code == 404
    assert client_for(cast["managed"]).get(f"/edev/{world['owner']}/fsa/2/derp").status_code == 404


def test_the_fsa_leads_to_the_der_programs_events_and_their_responses(
    world, cast, client_for, operator, sep2_schema  # noqa: ANN001
) -> None:
    operator("POST", "/fsas", json={"device_ids": [world["bare"]], "der_program_ids": [world["b"]]})
    start = int(time.time()) + HOUR
    created = operator("POST", f"/der-programs/{world['b']}/events",
                       json={"start": start, "duration": 1800, "control": {"opModMaxLimW": 5000}})
    assert created.status_code == 201
    event = created.get_json()["events"][0]
    assert event["responses"]["devices_targeted"] == 1  # the FSA's device, though no member
    c = client_for(cast["managed"])
    listing = fsas_of(c, world["bare"], sep2_schema)
    # not a member of anything: FSA 1 is not listed, the operator's FSA is its only one
    assert [f.href for f in listing.function_set_assignments] == [f"/edev/{world['bare']}/fsa/2"]
    assert c.get(f"/edev/{world['bare']}/fsa/1").status_code == 404
    assert c.get(f"/edev/{world['bare']}/fsa/1/derp").status_code == 404
    (program,) = programs_of(c, listing.function_set_assignments[0], sep2_schema)
    controls = get(c, program.der_control_list_link.href + "?l=10", DERControlList, sep2_schema)
    assert [d.mrid for d in controls.der_controls] == [event["mrid"]]
    answer = ResponseDoc(created_date_time=int(time.time()), end_device_lfdi=cast["managed"].lfdi, status=1,
                         subject=event["mrid"])
    resp = c.post(controls.der_controls[0].reply_to, data=codec.render(answer))
    assert resp.status_code == 201
    # an event for that one device may be addressed too (it reaches the program)
    one = operator("POST", f"/der-programs/{world['b']}/events",
                   json={"start": start + HOUR, "duration": 600, "control": {"opModMaxLimW": 1}, "device_ids": [world["bare"]]})
    assert one.status_code == 201
    # taken away: the program is out of its reach again
    fsa_id = operator("GET", f"/fsas?device_id={world['bare']}").get_json()["fsas"][0]["id"]
    assert operator("DELETE", f"/fsas/{fsa_id}").status_code == 204
    assert c.get(program.href).status_code == 404
    assert fsas_of(c, world["bare"], sep2_schema).function_set_assignments[0].href == f"/edev/{world['bare']}/fsa/1"


def test_version_follows_every_change_and_numbers_are_per_device(
    world, cast, client_for, operator, sep2_schema  # noqa: ANN001
) -> None:
    first = operator("POST", "/fsas", json={"device_ids": [world["owner"]], "der_program_ids": [world["b"]]}).get_json()
    second = operator("POST", "/fsas", json={"device_ids": [world["other"], world["owner"]]}).get_json()
    assert {(d["device_id"], d["number"]) for d in second["devices"]} == {(world["other"], 2), (world["owner"], 3)}
    path = f"/fsas/{first['id']}"
    assert operator("POST", f"{path}/der-programs", json={"der_program_ids": [world["c"]]}).get_json() == {"added": 1}
    assert operator("POST", f"{path}/der-programs", json={"der_program_ids": [world["c"]]}).get_json() == {"added": 0}
    assert operator("DELETE", f"{path}/der-programs", json={"der_program_ids": [world["b"]]}).get_json() == {"removed": 1}
    assert operator("PUT", path, json={"description": "renamed"}).get_json()["version"] == 3
    c = client_for(cast["owner"])
    two = get(c, f"/edev/{world['owner']}/fsa/2", FunctionSetAssignments, sep2_schema)
    assert (two.description, two.version, two.der_program_list_link.all) == ("renamed", 3, 1)
    # paging: s and l over the device's numbers
    page = fsas_of(c, world["owner"], sep2_schema, "?s=1&l=1")
    assert (page.all, page.results, page.function_set_assignments[0].href) == (3, 1, f"/edev/{world['owner']}/fsa/2")
    assert fsas_of(c, world["owner"], sep2_schema, "").results == 1  # a bare GET: one entry
    # the EndDeviceList carries each device's count too (operator scope: an aggregator's view)
    assert operator("POST", f"/fsas/{second['id']}/devices", json={"device_ids": [world["bare"]]}).get_json() == {"added": 1}
    assert operator("DELETE", f"/fsas/{second['id']}/devices", json={"device_ids": [world["other"]]}).get_json() == {"removed": 1}
    edevs = get(client_for(cast["managed"]), "/edev?l=10", EndDeviceList, sep2_schema)
    assert [e.function_set_assignments_list_link.all for e in edevs.end_devices] == [1]  # its FSA 2 only
    assert [f.href for f in fsas_of(client_for(cast["managed"]), world["bare"], sep2_schema).function_set_assignments] == [
        f"/edev/{world['bare']}/fsa/2"]
    other = fsas_of(client_for(cast["other"]), world["other"], sep2_schema)  # a member, its FSA taken away
    assert [f.href for f in other.function_set_assignments] == [f"/edev/{world['other']}/fsa/1"]


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"device_ids": []}, 400, "device_ids"),
        ({"der_program_ids": [1]}, 400, "device_ids"),
        ({"device_ids": [True]}, 400, "device_ids"),
        ({"device_ids": [999]}, 404, "device_ids"),
        ({"device_ids": ["1"]}, 400, "device_ids"),
        ({"device_ids": [1], "der_program_ids": [999]}, 404, "der_program_ids"),
        ({"device_ids": [1], "der_program_ids": 5}, 400, "der_program_ids"),
        ({"device_ids": [1], "description": "x" * 33}, 400, "description"),
        ({"device_ids": [1], "colour": "red"}, 400, "colour"),
    ],
)
def test_bad_fsas_are_refused_naming_the_field_and_store_nothing(
    world, operator, database, body, status: int, field: str  # noqa: ANN001
) -> None:
    def count() -> int:
        with database.transaction() as s:
            return sum(s.scalar(select(func.count()).select_from(t))
                       for t in (fsa_store.FunctionSetAssignment, fsa_store.FsaDevice, fsa_store.FsaDerProgram))

    assert field in problem(operator("POST", "/fsas", json=body), status)
    assert count() == 0
    good = operator("POST", "/fsas", json={"device_ids": [world["owner"]]}).get_json()["id"]
    before = count()
    assert "der_program_ids" in problem(operator("POST", f"/fsas/{good}/der-programs", json={"der_program_ids": [999]}), 404)
    assert "device_ids" in problem(operator("POST", f"/fsas/{good}/devices", json={"device_ids": [1, 999]}), 404)
    assert count() == before
    assert problem(operator("GET", "/fsas/999"), 404)
    assert problem(operator("DELETE", "/fsas/999"), 404)


def test_fsa_documents_are_cached_and_refreshed_by_operator_writes(
    world, cast, client_for, operator, sep2_schema  # noqa: ANN001
) -> None:
    c = client_for(cast["owner"])
    assert fsas_of(c, world["owner"], sep2_schema).all == 1
    made = operator("POST", "/fsas", json={"device_ids": [world["owner"]], "der_program_ids": [world["b"]]}).get_json()
    assert fsas_of(c, world["owner"], sep2_schema).all == 2  # the write cleared the cached list
    operator("POST", f"/fsas/{made['id']}/der-programs", json={"der_program_ids": [world["c"]]})
    assert get(c, f"/edev/{world['owner']}/fsa/2", FunctionSetAssignments, sep2_schema).der_program_list_link.all == 2
