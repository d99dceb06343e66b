"""The admin API for DER programs and events: every endpoint, its refusals (which store nothing),
the response summary, and that what an operator publishes is what the device then sees."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from server.db import derp as store
from server.db import rsps
from server.sep2 import codec
from server.sep2.derp import DefaultDERControl, DERControlBase, DERControlList

API = "/admin/api/v1"
HOUR = 3600


@pytest.fixture
def world(operator, cast):  # noqa: ANN001, ANN201
    """Two registered devices (the cast's owner and other) in one DER program; a third outside it."""
    owner = operator("POST", "/devices", json={"lfdi": cast["owner"].lfdi}).get_json()["id"]
    other = operator("POST", "/devices", json={"lfdi": cast["other"].lfdi}).get_json()["id"]
    outsider = operator("POST", "/devices", json={"lfdi": "AB" * 20}).get_json()["id"]
    resp = operator("POST", "/der-programs", json={"description": "Peak Saver", "primacy": 2})
    der_program = resp.get_json()["id"]
    assert operator("POST", f"/der-programs/{der_program}/members", json={"device_ids": [owner, other]}).get_json() == {"added": 2}
    return {"owner": owner, "other": other, "outsider": outsider, "der_program": der_program}


def soon(seconds: int = HOUR) -> int:
    return int(time.time()) + seconds


def event_body(**over) -> dict:  # noqa: ANN003
    return {"start": soon(), "duration": 1800, "control": {"opModFixedW": 5000}, **over}


def problem(resp, status: int) -> str:  # noqa: ANN001
    assert resp.status_code == status, (resp.status_code, resp.data)
    assert resp.content_type == "application/problem+json"
    detail = resp.get_json()["detail"]
    assert detail
    return detail


def stored(database) -> tuple[int, int, int]:  # noqa: ANN001
    """(DER programs, members, events) in the database."""
    from sqlalchemy import func, select

    with database.transaction() as s:
        return tuple(
            s.scalar(select(func.count()).select_from(t))
            for t in (store.DerProgram, store.ProgramMember, store.DerEvent)
        )


# ------------------------------------------------------------------------------ authentication


ENDPOINTS = [
    ("GET", "/der-programs"),
    ("POST", "/der-programs"),
    ("GET", "/der-programs/1"),
    ("PUT", "/der-programs/1/default-control"),
    ("GET", "/der-programs/1/members"),
    ("POST", "/der-programs/1/members"),
    ("DELETE", "/der-programs/1/members"),
    ("GET", "/der-programs/1/events"),
    ("POST", "/der-programs/1/events"),
    ("GET", "/events/" + "A" * 32),
    ("POST", "/events/" + "A" * 32 + "/cancel"),
]


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
@pytest.mark.parametrize("header", [None, "Bearer nope"])
def test_every_endpoint_needs_a_token(app, database, method: str, path: str, header: str | None) -> None:  # noqa: ANN001
    headers = {"Authorization": header} if header else {}
    resp = app.test_client().open(API + path, method=method, headers=headers, json={"primacy": 1})
    assert resp.status_code == 401 and resp.content_type == "application/problem+json"
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert stored(database) == (0, 0, 0)


# -------------------------------------------------------------------------------- DER programs


def test_create_list_and_show_der_programs(operator) -> None:  # noqa: ANN001
    resp = operator("POST", "/der-programs", json={"description": "Peak Saver", "primacy": 2,
                                                   "default_control": {"opModMaxLimW": 10000}})
    assert resp.status_code == 201
    view = resp.get_json()
    assert resp.headers["Location"] == f"{API}/der-programs/{view['id']}"
    assert (view["description"], view["primacy"], view["members"], view["member_count"]) == ("Peak Saver", 2, [], 0)
    assert view["default_control"] == {"opModMaxLimW": 10000} and view["default_control_version"] == 1
    assert len(view["mrid"]) == 32
    bare = operator("POST", "/der-programs", json={"primacy": 0}).get_json()
    assert bare["default_control"] is None and bare["description"] is None
    listed = operator("GET", "/der-programs").get_json()["programs"]
    assert [p["id"] for p in listed] == [bare["id"], view["id"]]  # by primacy
    assert "members" not in listed[0] and listed[1]["member_count"] == 0
    assert operator("GET", resp.headers["Location"].removeprefix(API)).get_json() == view


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "'primacy' is required"),
        ({"primacy": 256}, "primacy must be 0…255"),
        ({"primacy": -1}, "primacy must be 0…255"),
        ({"primacy": True}, "primacy must be 0…255"),
        ({"primacy": "2"}, "primacy must be 0…255"),
        ({"primacy": 1, "description": "x" * 33}, "32 characters"),
        ({"primacy": 1, "description": 7}, "32 characters"),
        ({"primacy": 1, "primarcy": 2}, "unknown field in a DER program: primarcy"),
        ({"primacy": 1, "default_control": {"opModFixedW": 10001}}, "out of range"),
        ({"primacy": 1, "default_control": {}}, "at least one mode"),
        ({"primacy": 1, "default_control": {"opModVoltVar": "/x"}}, "names no curve of DER program"),
        ({"primacy": 1, "default_control": {"opModBogus": 1}}, "unsupported"),
        ({"primacy": 1, "default_control": 5}, "at least one mode"),
    ],
)
def test_bad_der_programs_are_400_and_store_nothing(operator, database, body, message: str) -> None:  # noqa: ANN001
    assert message in problem(operator("POST", "/der-programs", json=body), 400)
    assert stored(database) == (0, 0, 0)


@pytest.mark.parametrize("data", [b"{not json", b"[1, 2]", b""])
def test_a_body_that_is_not_a_json_object_is_400(operator, database, data: bytes) -> None:  # noqa: ANN001
    resp = operator("POST", "/der-programs", data=data, content_type="application/json")
    assert "JSON object" in problem(resp, 400)
    assert stored(database) == (0, 0, 0)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/der-programs/999", None),
        ("PUT", "/der-programs/999/default-control", {"opModMaxLimW": 1}),
        ("GET", "/der-programs/999/members", None),
        ("POST", "/der-programs/999/members", {"device_ids": [1]}),
        ("DELETE", "/der-programs/999/members", {"device_ids": [1]}),
        ("GET", "/der-programs/999/events", None),
        ("POST", "/der-programs/999/events", event_body()),
        ("GET", "/events/" + "A" * 32, None),
        ("POST", "/events/" + "A" * 32 + "/cancel", {}),
        ("POST", "/events/not-an-mrid/cancel", {}),
    ],
)
def test_unknown_der_programs_and_events_are_404(operator, database, method: str, path: str, body) -> None:  # noqa: ANN001
    resp = operator(method, path, json=body) if body is not None else operator(method, path)
    problem(resp, 404)
    assert stored(database) == (0, 0, 0)


def test_default_control_is_set_replaced_and_seen_by_devices(operator, world, cast, client_for) -> None:  # noqa: ANN001
    p, owner = world["der_program"], world["owner"]
    device = client_for(cast["owner"])
    unset = codec.parse(device.get(f"/edev/{owner}/derp/{p}/dderc").data, DefaultDERControl)  # none set yet:
    assert (unset.version, unset.der_control_base) == (0, DERControlBase())  # empty, version 0
    assert operator("PUT", f"/der-programs/{p}/default-control", json={"opModMaxLimW": 8000}).status_code == 204
    first = codec.parse(device.get(f"/edev/{owner}/derp/{p}/dderc").data, DefaultDERControl)
    assert first.der_control_base.op_mod_max_lim_w == 8000
    # the wrapped form is accepted too, and a change bumps the version under the same mRID
    body = {"control": {"opModMaxLimW": 6000, "opModTargetW": {"value": 5, "multiplier": 3}}}
    assert operator("PUT", f"/der-programs/{p}/default-control", json=body).status_code == 204
    second = codec.parse(device.get(f"/edev/{owner}/derp/{p}/dderc").data, DefaultDERControl)
    assert (second.mrid, second.version) == (first.mrid, first.version + 1)
    assert second.der_control_base.op_mod_target_w.value == 5
    view = operator("GET", f"/der-programs/{p}").get_json()
    assert view["default_control"] == body["control"]
    assert (view["default_control_mrid"], view["default_control_version"]) == (first.mrid, 2)
    assert first.mrid == unset.mrid and first.version == 1  # the operator's replaces the empty one


@pytest.mark.parametrize(
    ("body", "message"),
    [({}, "at least one mode"), ({"opModFixedW": 10001}, "out of range"), ({"opModConnect": 1}, "true or false"),
     ({"control": {"opModMaxLimW": -1}}, "out of range"), ({"opModMaxLimW": 1, "nonsense": 1}, "unsupported")],
)
def test_bad_default_controls_are_400_and_change_nothing(operator, world, body, message: str) -> None:  # noqa: ANN001
    p = world["der_program"]
    assert operator("PUT", f"/der-programs/{p}/default-control", json={"opModMaxLimW": 8000}).status_code == 204
    before = operator("GET", f"/der-programs/{p}").get_json()
    assert message in problem(operator("PUT", f"/der-programs/{p}/default-control", json=body), 400)
    assert operator("GET", f"/der-programs/{p}").get_json() == before


# ------------------------------------------------------------------------------------- members


def test_members_add_list_remove(operator, world) -> None:  # noqa: ANN001
    p = f"/der-programs/{world['der_program']}"
    listing = operator("GET", f"{p}/members").get_json()
    assert listing["all"] == 2 and [m["id"] for m in listing["members"]] == [world["owner"], world["other"]]
    assert set(listing["members"][0]) >= {"id", "lfdi", "sfdi", "label"}
    # adding again is harmless; duplicates in one request count once
    body = {"device_ids": [world["owner"], world["outsider"], world["outsider"]]}
    assert operator("POST", f"{p}/members", json=body).get_json() == {"added": 1}
    assert operator("GET", f"{p}/members?limit=1&start=2").get_json()["members"][0]["id"] == world["outsider"]
    assert operator("GET", p).get_json()["members"] == sorted([world["owner"], world["other"], world["outsider"]])
    resp = operator("DELETE", f"{p}/members", json={"device_ids": [world["outsider"], world["other"]]})
    assert resp.status_code == 200 and resp.get_json() == {"removed": 2}
    assert operator("DELETE", f"{p}/members", json={"device_ids": [world["other"]]}).get_json() == {"removed": 0}
    assert operator("GET", f"{p}").get_json()["members"] == [world["owner"]]
    assert operator("GET", "/der-programs").get_json()["programs"][0]["member_count"] == 1


@pytest.mark.parametrize(
    ("method", "body", "status", "message"),
    [
        ("POST", {}, 400, "non-empty list"),
        ("POST", {"device_ids": []}, 400, "non-empty list"),
        ("POST", {"device_ids": "1"}, 400, "non-empty list"),
        ("POST", {"device_ids": [1, "2"]}, 400, "positive integers"),
        ("POST", {"device_ids": [True]}, 400, "positive integers"),
        ("POST", {"device_ids": [0]}, 400, "positive integers"),
        ("POST", {"device_ids": ["OUTSIDER", 999]}, 404, "no EndDevice 999"),
        ("DELETE", {}, 400, "non-empty list"),
        ("DELETE", {"device_ids": ["x"]}, 400, "positive integers"),
    ],
)
def test_bad_member_changes_store_nothing(operator, world, database, method: str, body, status: int, message: str) -> None:  # noqa: ANN001
    before = stored(database)
    body = {k: [world["outsider"] if d == "OUTSIDER" else d for d in v] if isinstance(v, list) else v for k, v in body.items()}
    assert message in problem(operator(method, f"/der-programs/{world['der_program']}/members", json=body), status)
    assert stored(database) == before


# -------------------------------------------------------------------------------------- events


def test_an_event_for_all_members_is_what_the_devices_see(operator, world, cast, client_for) -> None:  # noqa: ANN001
    p, owner = world["der_program"], world["owner"]
    start = soon()
    body = event_body(start=start, description="Evening peak", randomize_start=60)
    resp = operator("POST", f"/der-programs/{p}/events", json=body)
    assert resp.status_code == 201, resp.data
    [view] = resp.get_json()["events"]
    assert resp.headers["Location"] == f"{API}/events/{view['mrid']}"
    assert view["device_id"] is None and view["state"] == "scheduled" and view["control"] == {"opModFixedW": 5000}
    assert (view["start"], view["duration"], view["end"], view["randomize_start"]) == (start, 1800, start + 1800, 60)
    assert view["responses"]["devices_targeted"] == 2 and view["responses"]["responded"] == 0
    for who, edev_id in (("owner", owner), ("other", world["other"])):
        listing = codec.parse(client_for(cast[who]).get(f"/edev/{edev_id}/derp/{p}/derc?l=10").data, DERControlList)
        [ctl] = listing.der_controls
        assert (ctl.mrid, ctl.interval.start, ctl.interval.duration) == (view["mrid"], start, 1800)
        assert ctl.der_control_base.op_mod_fixed_w == 5000 and ctl.description == "Evening peak"
        assert ctl.randomize_start == 60 and ctl.event_status.current_status == 0
    assert operator("GET", resp.headers["Location"].removeprefix(API)).get_json() == view


def test_events_for_some_devices_one_each(operator, world, cast, client_for) -> None:  # noqa: ANN001
    p, owner = world["der_program"], world["owner"]
    start = soon()
    resp = operator("POST", f"/der-programs/{p}/events",
                    json=event_body(start=start, device_ids=[owner], control={"opModMaxLimW": 2500}))
    assert resp.status_code == 201 and "Location" in resp.headers
    [view] = resp.get_json()["events"]
    assert view["device_id"] == owner and view["responses"]["devices_targeted"] == 1
    mine = codec.parse(client_for(cast["owner"]).get(f"/edev/{owner}/derp/{p}/derc?l=10").data, DERControlList)
    assert [c.mrid for c in mine.der_controls] == [view["mrid"]]
    assert mine.der_controls[0].der_control_base.op_mod_max_lim_w == 2500
    theirs = codec.parse(client_for(cast["other"]).get(f"/edev/{world['other']}/derp/{p}/derc?l=10").data, DERControlList)
    assert theirs.der_controls == []
    both = operator("POST", f"/der-programs/{p}/events", json=event_body(device_ids=[owner, world["other"]]))
    assert both.status_code == 201 and "Location" not in both.headers
    assert [e["device_id"] for e in both.get_json()["events"]] == [owner, world["other"]]
    assert len({e["mrid"] for e in both.get_json()["events"]}) == 2


# A day a month from now (never a fixed date: the test must not expire), at 16:00 local time.
_DAY = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=30)).date()
_ISO = _DAY.isoformat()


@pytest.mark.parametrize(
    ("text", "offset"),
    [(f"{_ISO}T16:00:00-08:00", 8 * HOUR), (f"{_ISO}T16:00-08:00", 8 * HOUR), (f"{_ISO}T16:00:00Z", 0),
     (f"{_ISO}T16:00:00+00:00", 0), ("epoch", None)],
)
def test_start_as_iso_8601_with_an_offset_or_epoch(operator, world, text: str, offset: int | None) -> None:  # noqa: ANN001
    import datetime as dt

    sixteen = int(dt.datetime(_DAY.year, _DAY.month, _DAY.day, 16, tzinfo=dt.timezone.utc).timestamp())
    if text == "epoch":
        text = str(sixteen)
    resp = operator("POST", f"/der-programs/{world['der_program']}/events", json=event_body(start=text))
    assert resp.status_code == 201, resp.data
    expected = sixteen if offset is None else sixteen + offset
    assert resp.get_json()["events"][0]["start"] == expected


def _bad_event_cases() -> list[tuple[dict, int, str]]:
    return [
        ({"start": "2031-11-22T16:00:00"}, 400, "no UTC offset"),
        ({"start": "2031-11-22"}, 400, "no UTC offset"),
        ({"start": "tomorrow"}, 400, "neither epoch seconds nor an ISO-8601"),
        ({"start": 1.8e9}, 400, "epoch seconds or an ISO-8601"),
        ({"start": True}, 400, "epoch seconds or an ISO-8601"),
        ({"start": None}, 400, "epoch seconds or an ISO-8601"),
        ({"start": -5}, 400, "non-negative"),
        ({"start": 1_000_000_000}, 400, "already be over"),
        ({"duration": 0}, 400, "duration must be 1…604800"),
        ({"duration": 8 * 86_400}, 400, "duration must be 1…604800"),
        ({"duration": "3600"}, 400, "whole number of seconds"),
        ({"duration": 3600.5}, 400, "whole number of seconds"),
        ({"control": {}}, 400, "at least one mode"),
        ({"control": {"opModFixedW": -10001}}, 400, "out of range"),
        ({"control": {"opModFixedW": "5000"}}, 400, "integer"),
        ({"control": {"opModVoltVar": 1}}, 400, "has no curve 1"),
        ({"control": {"opModBogus": 1}}, 400, "unsupported"),
        ({"device_ids": []}, 400, "non-empty list"),
        ({"device_ids": None}, 400, "leave it out"),
        ({"device_ids": ["1"]}, 400, "positive integers"),
        ({"device_id": 1}, 400, "unknown field in an event: device_id"),
        ({"description": "x" * 33}, 400, "32 characters"),
        ({"randomize_start": 3601}, 400, "randomizeStart must be -3600…3600"),
        ({"randomize_duration": "60"}, 400, "randomizeDuration must be -3600…3600"),
    ]


@pytest.mark.parametrize(("over", "status", "message"), _bad_event_cases())
def test_bad_events_are_400_and_store_nothing(operator, world, database, over: dict, status: int, message: str) -> None:  # noqa: ANN001
    before = stored(database)
    resp = operator("POST", f"/der-programs/{world['der_program']}/events", json=event_body(**over))
    assert message in problem(resp, status)
    assert stored(database) == before


@pytest.mark.parametrize("missing", ["start", "duration", "control"])
def test_events_need_start_duration_and_control(operator, world, database, missing: str) -> None:  # noqa: ANN001
    body = event_body()
    del body[missing]
    before = stored(database)
    assert "are required" in problem(operator("POST", f"/der-programs/{world['der_program']}/events", json=body), 400)
    assert stored(database) == before


def test_an_event_for_a_non_member_stores_nothing_at_all(operator, world, database) -> None:  # noqa: ANN001
    before = stored(database)
    body = event_body(device_ids=[world["owner"], world["outsider"]])
    assert "not members" in problem(operator("POST", f"/der-programs/{world['der_program']}/events", json=body), 400)
    assert stored(database) == before  # not even the member's event


def test_list_events_with_their_response_summary(operator, world, database) -> None:  # noqa: ANN001
    p, owner, other = world["der_program"], world["owner"], world["other"]
    now = int(time.time())
    late = operator("POST", f"/der-programs/{p}/events", json=event_body(start=now + 2 * HOUR)).get_json()["events"][0]
    early = operator("POST", f"/der-programs/{p}/events", json=event_body(start=now + HOUR, device_ids=[owner])).get_json()["events"][0]
    with database.transaction() as s:
        event_id = store.get_event_by_mrid(s, late["mrid"]).id
        for device, status in ((owner, 1), (owner, 3), (other, 1), (other, 252)):
            rsps.add(s, rsps.DerResponse(event_id=event_id, device_id=device, status=status,
                                         created_date_time=now, received_time=now))
    listing = operator("GET", f"/der-programs/{p}/events").get_json()
    assert listing["all"] == 2 and [e["mrid"] for e in listing["events"]] == [early["mrid"], late["mrid"]]
    summary = listing["events"][1]["responses"]
    assert summary == {"devices_targeted": 2, "responded": 2, "received": 0, "started": 0, "completed": 1,
                       "opted_out": 0, "rejected": 1, "rejected_not_applicable": 1}
    assert listing["events"][0]["responses"]["responded"] == 0
    assert operator("GET", f"/events/{late['mrid'].lower()}").get_json()["responses"] == summary
    paged = operator("GET", f"/der-programs/{p}/events?start=1&limit=1").get_json()
    assert paged["all"] == 2 and [e["mrid"] for e in paged["events"]] == [late["mrid"]]


def test_ended_events_are_listed_only_on_request(operator, world, database) -> None:  # noqa: ANN001
    from server.services.sep2 import derp

    p = world["der_program"]
    with database.transaction() as s:  # an event from the past, written directly
        derp.create_events(s, p, start=1_000_000_000, duration=60, now=1_000_000_000,
                           controls=[(None, derp.control_base({"opModConnect": False}))])
    live = operator("POST", f"/der-programs/{p}/events", json=event_body()).get_json()["events"][0]
    assert [e["mrid"] for e in operator("GET", f"/der-programs/{p}/events").get_json()["events"]] == [live["mrid"]]
    assert [e["mrid"] for e in operator("GET", f"/der-programs/{p}/events?include_ended=false").get_json()["events"]] == [live["mrid"]]
    everything = operator("GET", f"/der-programs/{p}/events?include_ended=true").get_json()["events"]
    assert [e["state"] for e in everything] == ["ended", "scheduled"]
    assert everything[0]["control"] == {"opModConnect": False}
    assert "include_ended" in problem(operator("GET", f"/der-programs/{p}/events?include_ended=maybe"), 400)
    assert "start" in problem(operator("GET", f"/der-programs/{p}/events?start=-1"), 400)


def test_cancel_an_event(operator, world, cast, client_for) -> None:  # noqa: ANN001
    p, owner = world["der_program"], world["owner"]
    device = client_for(cast["owner"])
    ev = operator("POST", f"/der-programs/{p}/events", json=event_body()).get_json()["events"][0]
    assert codec.parse(device.get(f"/edev/{owner}/derp/{p}/derc?l=10").data, DERControlList).der_controls[0].event_status.current_status == 0
    resp = operator("POST", f"/events/{ev['mrid']}/cancel", json={"randomized": True})
    assert resp.status_code == 200
    view = resp.get_json()
    assert view["state"] == "cancelled" and view["cancelled_at"] and view["cancel_randomized"] is True
    [ctl] = codec.parse(device.get(f"/edev/{owner}/derp/{p}/derc?l=10").data, DERControlList).der_controls
    assert ctl.event_status.current_status == 3
    # twice changes nothing; no body at all is a plain cancellation
    again = operator("POST", f"/events/{ev['mrid']}/cancel")
    assert again.status_code == 200 and again.get_json()["cancelled_at"] == view["cancelled_at"]
    other = operator("POST", f"/der-programs/{p}/events", json=event_body()).get_json()["events"][0]
    plain = operator("POST", f"/events/{other['mrid']}/cancel").get_json()
    assert plain["state"] == "cancelled" and plain["cancel_randomized"] is False


@pytest.mark.parametrize(
    ("body", "message"),
    [({"randomized": "yes"}, "true or false"), ({"randomise": True}, "unknown field in a cancellation"), ([], "JSON object")],
)
def test_bad_cancellations_change_nothing(operator, world, body, message: str) -> None:  # noqa: ANN001
    ev = operator("POST", f"/der-programs/{world['der_program']}/events", json=event_body()).get_json()["events"][0]
    assert message in problem(operator("POST", f"/events/{ev['mrid']}/cancel", json=body), 400)
    assert operator("GET", f"/events/{ev['mrid']}").get_json()["cancelled_at"] is None


def test_an_ended_event_cannot_be_cancelled(operator, world, database) -> None:  # noqa: ANN001
    from server.services.sep2 import derp

    with database.transaction() as s:
        [row] = derp.create_events(s, world["der_program"], start=1_000_000_000, duration=60, now=1_000_000_000,
                                   controls=[(None, derp.control_base({"opModFixedW": 1}))])
        mrid = row.mrid
    assert "already over" in problem(operator("POST", f"/events/{mrid}/cancel", json={}), 400)
    assert operator("GET", f"/events/{mrid}").get_json()["cancelled_at"] is None


def test_members_removed_no_longer_count_as_targeted(operator, world) -> None:  # noqa: ANN001
    p = world["der_program"]
    ev = operator("POST", f"/der-programs/{p}/events", json=event_body(device_ids=[world["other"]])).get_json()["events"][0]
    assert operator("DELETE", f"/der-programs/{p}/members", json={"device_ids": [world["other"]]}).status_code == 200
    assert operator("GET", f"/events/{ev['mrid']}").get_json()["responses"]["devices_targeted"] == 0


def test_odd_input_never_gets_a_5xx(operator, world) -> None:  # noqa: ANN001
    """A bounded probe of every endpoint with odd ids and bodies (test_no_5xx does the others)."""
    p = world["der_program"]
    mrid = operator("POST", f"/der-programs/{p}/events", json=event_body()).get_json()["events"][0]["mrid"]
    ids = [str(p), "0", "2147483648", "-1", "abc", "%00", "²"]
    mrids = [mrid, "%00", "²", "Z" * 33, "a" * 500, "%FF"]
    odd = ["x\x00y", "²", 10**30, -(10**30), 1e308, None, True, [], {}, "9" * 50, "0001-01-01T00:00:00+14:00",
           "9999-12-31T23:59:59-14:00", "2031-01-01T00:00:00+99:00", "x" * 10_000]
    bodies = [{}, {"primacy": 1, "description": "a\x00b"}, {"device_ids": [2**31, -1, 1.5]},
              {"opModTargetW": {"value": 10**30, "multiplier": -(10**30)}}, {"control": {"rampTms": 1e400}}]
    for value in odd:
        bodies += [{"primacy": value}, {"primacy": 1, "description": value, "default_control": value},
                   {"device_ids": [value]}, {"opModFixedW": value}, {"randomized": value},
                   event_body(start=value), event_body(duration=value), event_body(description=value),
                   event_body(device_ids=value), event_body(randomize_start=value), event_body(control=value)]
    paths = [("POST", "/der-programs"), ("GET", "/der-programs")]
    for i in ids:
        paths += [("GET", f"/der-programs/{i}"), ("PUT", f"/der-programs/{i}/default-control"),
                  ("GET", f"/der-programs/{i}/members?start={i}&limit={i}"), ("POST", f"/der-programs/{i}/members"),
                  ("DELETE", f"/der-programs/{i}/members"), ("POST", f"/der-programs/{i}/events"),
                  ("GET", f"/der-programs/{i}/events?include_ended={i}")]
    for m in mrids:
        paths += [("GET", f"/events/{m}"), ("POST", f"/events/{m}/cancel")]
    for method, path in paths:
        for body in bodies if method in ("POST", "PUT", "DELETE") else [None]:
            resp = operator(method, path, json=body) if body is not None else operator(method, path)
            assert resp.status_code < 500, (method, path, body, resp.data)
            if resp.status_code >= 400:
                assert resp.content_type == "application/problem+json", (method, path)
