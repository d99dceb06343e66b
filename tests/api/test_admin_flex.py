"""The flexibility admin API (/admin/api/v1/flex): programs, grid nodes, enrollments, windows,
dry runs and a real publish, each refusal a 4xx problem+json that changes nothing."""

from __future__ import annotations

import dataclasses
import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from programs.measurement import Terms

from server.sep2 import codec
from server.sep2.der import ActivePower, DERCapability, WattHour
from server.sep2.derp import DERControlList, DERProgramList

API = "/admin/api/v1"
NY = ZoneInfo("America/New_York")
EVERY_DAY = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
SEED_CURVE = [[0.08, -11], [0.10, -5]]  # seed §2.2: -11 kW at 0.08, -5 kW at 0.10
REDUCE_3 = {"reduceKW": 3, "minPricePerKWh": 0.2}
DROP = object()  # a key to leave out of program_body

BATTERY = DERCapability(  # DERType 83: PV + storage, dispatched as a battery; 5 kW each way
    modes_supported="0050008C", type=83, rtg_max_w=ActivePower(multiplier=3, value=10),
    rtg_max_charge_rate_w=ActivePower(multiplier=0, value=5000),
    rtg_max_discharge_rate_w=ActivePower(multiplier=0, value=5000), rtg_max_wh=WattHour(multiplier=1, value=1350),
)
EVSE = dataclasses.replace(  # DERType 82: an EVSE, 11.5 kW
    BATTERY, type=82, rtg_max_w=ActivePower(multiplier=2, value=115),
    rtg_max_charge_rate_w=ActivePower(multiplier=2, value=115), rtg_max_discharge_rate_w=None, rtg_max_wh=None,
)


def program_body(**over) -> dict:  # noqa: ANN003
    """A valid program: every day 16:00-21:00 New York time, so a window is never far off."""
    return {
        "name": "Summer evening peak", "currency": "USD",
        "window": {"weekdays": EVERY_DAY, "start": "16:00", "end": "21:00", "tz": "America/New_York"},
        "requested_kw": 5, "price_cap": 0.5, "incentive": {"kind": "pay_as_clear"},
        "eligible_kinds": ["battery", "ev_charger", "load"], "description": "Evening peak", **over,
    }


def problem(resp, status: int) -> str:  # noqa: ANN001
    assert resp.status_code == status, (resp.status_code, resp.data)
    assert resp.content_type == "application/problem+json"
    detail = resp.get_json()["detail"]
    assert detail
    return detail


def ok(resp, status: int = 200) -> dict:  # noqa: ANN001
    assert resp.status_code == status, (resp.status_code, resp.data)
    return resp.get_json()


def snapshot(operator) -> dict:  # noqa: ANN001
    """Everything the flex API shows, to compare before and after a refused request."""
    out: dict = {"grid": ok(operator("GET", "/flex/grid-nodes")), "programs": []}
    for p in ok(operator("GET", "/flex/programs"))["programs"]:
        base = f"/flex/programs/{p['id']}"
        out["programs"].append((ok(operator("GET", base)), ok(operator("GET", f"{base}/enrollments")),
                                ok(operator("GET", f"{base}/windows?include_past=true&limit=1000"))))
    return out


def register(operator, client_for, cred, capability: DERCapability | None) -> int:  # noqa: ANN001
    """An EndDevice registered by the operator that reports its DERCapability (if given)."""
    device = ok(operator("POST", "/devices", json={"lfdi": cred.lfdi}), 201)["id"]
    if capability is not None:
        resp = client_for(cred).put(f"/edev/{device}/der/1/dercap", data=codec.render(capability))
        assert resp.status_code == 204, resp.headers.get("X-Error-Detail")
    return device


def device_programs(client_for, cred, device: int) -> list[str]:  # noqa: ANN001
    """The mRIDs of the DERPrograms the device finds through its FunctionSetAssignments."""
    resp = client_for(cred).get(f"/edev/{device}/fsa/1/derp?l=10")
    assert resp.status_code == 200, resp.data
    return [p.mrid for p in codec.parse(resp.data, DERProgramList).der_programs]


@pytest.fixture
def device_clock(app, monkeypatch):  # noqa: ANN001, ANN201
    """Set the 2030.5 side's clock: a window published at its (future) publishing time is seen by
    devices from then on, not before (events are not listed before their creation time)."""
    import server.api.sep2 as views

    def set_to(t: int) -> None:
        monkeypatch.setattr(views, "now", lambda: t)
        monkeypatch.setattr(views, "now_exact", lambda: float(t))
        app.extensions["derflex"].clock = lambda: float(t)

    return set_to


def device_controls(client_for, cred, device: int, der_program: int) -> list:  # noqa: ANN001
    resp = client_for(cred).get(f"/edev/{device}/derp/{der_program}/derc?l=100")
    assert resp.status_code == 200, resp.data
    return codec.parse(resp.data, DERControlList).der_controls


@pytest.fixture
def world(operator, cast, client_for):  # noqa: ANN001, ANN201
    """A program; the owner's EVSE and the other's battery registered and reporting their type."""
    program = ok(operator("POST", "/flex/programs", json=program_body()), 201)
    return {
        "program": program, "p": f"/flex/programs/{program['id']}",
        "ev": register(operator, client_for, cast["owner"], EVSE),
        "battery": register(operator, client_for, cast["other"], BATTERY),
    }


@pytest.fixture
def enrolled(operator, world):  # noqa: ANN001, ANN201
    """world with the EVSE offering the seed curve and the battery 3 kW from 0.20 (seed §2.5)."""
    p = world["p"]
    world["ev_enr"] = ok(operator("POST", f"{p}/enrollments", json={
        "device_id": world["ev"], "customer": "alice", "offer": {"power": SEED_CURVE}}), 201)
    world["bat_enr"] = ok(operator("POST", f"{p}/enrollments", json={
        "device_id": world["battery"], "customer": "bob", "offer": {"objective": REDUCE_3}}), 201)
    return world


def grid(operator, *nodes: dict) -> list[dict]:  # noqa: ANN001
    return [ok(operator("PUT", "/flex/grid-nodes", json=n)) for n in nodes]


# ------------------------------------------------------------------------------ authentication


ENDPOINTS = [
    ("POST", "/programs"), ("GET", "/programs"), ("GET", "/programs/1"), ("PATCH", "/programs/1"),
    ("POST", "/programs/1/cancel"), ("GET", "/programs/1/windows"), ("GET", "/programs/1/windows/2030-01-01"),
    ("POST", "/programs/1/windows/2030-01-01/cancel"), ("GET", "/programs/1/dry-run"),
    ("POST", "/programs/1/enrollments"), ("GET", "/programs/1/enrollments"),
    ("POST", "/programs/1/enrollments/1/confirm"), ("PUT", "/programs/1/enrollments/1/offer"),
    ("PUT", "/grid-nodes"), ("GET", "/grid-nodes"), ("DELETE", "/grid-nodes/feeder-12"),
]


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
@pytest.mark.parametrize("header", [None, "Bearer nope", "Basic x"])
def test_every_endpoint_needs_a_token(app, operator, method: str, path: str, header: str | None) -> None:  # noqa: ANN001
    headers = {"Authorization": header} if header else {}
    body = {"name": "feeder-12"} if path == "/grid-nodes" else program_body()
    resp = app.test_client().open(f"{API}/flex{path}", method=method, headers=headers, json=body)
    assert "token" in problem(resp, 401)
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert snapshot(operator) == {"grid": {"grid_nodes": []}, "programs": []}


# ------------------------------------------------------------------------------------ programs


def test_create_a_program_and_its_der_program(operator, client_for) -> None:  # noqa: ANN001
    resp = operator("POST", "/flex/programs", json=program_body(requested_kw=400, primacy=7))
    view = ok(resp, 201)
    assert resp.headers["Location"] == f"{API}/flex/programs/{view['id']}"
    assert (view["name"], view["state"], view["version"], view["enrollments"]) == ("Summer evening peak", "active", 1, {})
    # stored in the canonical form: every key, floats for kW and prices, defaults filled in
    assert view["program"] == {**program_body(requested_kw=400.0, primacy=7, price_cap=0.5), "interval_s": None,
                               "price_floor": 0.0, "lead_time_s": 3600, "randomize_start_s": 0, "grid_node_ids": [],
                               "incentive": {"kind": "pay_as_clear", "rate_per_kwh": None, "under_delivery_per_kwh": 0.0},
                               "measurement": Terms().to_dict()}
    der = ok(operator("GET", f"/der-programs/{view['der_program_id']}"))
    assert (der["primacy"], der["description"], der["members"]) == (7, "Evening peak", [])
    assert ok(operator("GET", resp.headers["Location"].removeprefix(API))) == view


def test_list_programs_is_brief(operator) -> None:  # noqa: ANN001
    a = ok(operator("POST", "/flex/programs", json=program_body()), 201)
    b = ok(operator("POST", "/flex/programs", json=program_body(name="Winter morning")), 201)
    listed = ok(operator("GET", "/flex/programs"))["programs"]
    assert sorted(p["id"] for p in listed) == sorted([a["id"], b["id"]])
    assert all("program" not in p and p["next_windows"] for p in listed)
    assert "exists already" in problem(operator("POST", "/flex/programs", json=program_body()), 409)
    assert len(ok(operator("GET", "/flex/programs"))["programs"]) == 2


def test_next_windows_are_16_to_21_new_york_time(operator, world) -> None:  # noqa: ANN001
    view = ok(operator("GET", world["p"]))
    assert 1 <= len(view["next_windows"]) <= 3
    for w in view["next_windows"]:
        day = dt.date.fromisoformat(w["key"])
        start = dt.datetime.combine(day, dt.time(16), NY)
        end = dt.datetime.combine(day, dt.time(21), NY)
        assert dt.datetime.fromisoformat(w["start"]) == start and dt.datetime.fromisoformat(w["end"]) == end
        assert dt.datetime.fromisoformat(w["publish_at"]) == start - dt.timedelta(hours=1)
        assert w["state"] == "planned" and w["revision"] == 0 and w["start"].endswith("Z")
        assert dt.datetime.fromisoformat(w["end"]) > dt.datetime.now(dt.timezone.utc)


def _next_spring_forward() -> dt.date:
    """The next day New York's clocks go from 02:00 EST to 03:00 EDT (computed: never expires)."""
    day, one = dt.date.today() + dt.timedelta(days=10), dt.timedelta(days=1)
    while dt.datetime.combine(day, dt.time(12), NY).dst() or not dt.datetime.combine(day + one, dt.time(12), NY).dst():
        day += one
    return day + one


def test_windows_across_a_dst_change_keep_their_wall_clock_time(operator, database) -> None:  # noqa: ANN001
    """Planned around the next spring-forward day: 16:00 is 21:00Z before it and 20:00Z from it."""
    from server.services.flex import programs as flex

    sunday = _next_spring_forward()
    planned_at = int(dt.datetime.combine(sunday - dt.timedelta(days=3), dt.time(0), dt.timezone.utc).timestamp())
    with database.transaction() as s:
        pid = flex.create_program(s, program_body(), planned_at)["id"]
    windows = {w["key"]: w for w in ok(operator("GET", f"/flex/programs/{pid}/windows?limit=1000"))["windows"]}
    before, on = (sunday - dt.timedelta(days=1)).isoformat(), sunday.isoformat()
    assert windows[before]["start"] == f"{before}T21:00:00Z" and windows[before]["end"] == f"{sunday}T02:00:00Z"
    assert windows[on]["start"] == f"{on}T20:00:00Z" and windows[on]["end"] == f"{sunday + dt.timedelta(days=1)}T01:00:00Z"


def test_patch_bumps_the_version_and_the_der_program_follows(operator, world) -> None:  # noqa: ANN001
    p, der_id = world["p"], world["program"]["der_program_id"]
    der_before = ok(operator("GET", f"/der-programs/{der_id}"))
    view = ok(operator("PATCH", p, json={"primacy": 3, "description": "Peak 2", "requested_kw": 400}))
    assert (view["version"], view["program"]["primacy"], view["program"]["requested_kw"]) == (2, 3, 400.0)
    der = ok(operator("GET", f"/der-programs/{der_id}"))
    assert (der["primacy"], der["description"], der["version"]) == (3, "Peak 2", der_before["version"] + 1)
    # the same values again change nothing, not even the version
    assert ok(operator("PATCH", p, json={"primacy": 3}))["version"] == 2
    assert ok(operator("PATCH", p, json={"requested_kw": 300}))["version"] == 3
    assert ok(operator("GET", f"/der-programs/{der_id}"))["version"] == der["version"]


def test_patch_moves_planned_windows(operator, world) -> None:  # noqa: ANN001
    view = ok(operator("PATCH", world["p"], json={"window": {**program_body()["window"], "start": "17:30"}}))
    for w in view["next_windows"]:
        assert dt.datetime.fromisoformat(w["start"]) == dt.datetime.combine(dt.date.fromisoformat(w["key"]), dt.time(17, 30), NY)


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [({}, 400, "fields to change"), ({"primacy": 256}, 400, "primacy"), ({"nmae": "x"}, 400, "nmae: unknown field"),
     ({"requested_kw": "400"}, 400, "requested_kw"), ({"price_floor": 0.6}, 400, "below price_cap"),
     ({"grid_node_ids": ["nowhere"]}, 400, "no grid node nowhere"), ({"name": "Other"}, 409, "exists already"),
     ({"description": "é" * 17}, 400, "32 bytes"), ({"description": "a\x00"}, 400, "control characters")],
)
def test_bad_patches_change_nothing(operator, world, body: dict, status: int, message: str) -> None:  # noqa: ANN001
    ok(operator("POST", "/flex/programs", json=program_body(name="Other")), 201)
    before = snapshot(operator)
    assert message in problem(operator("PATCH", world["p"], json=body), status)
    assert snapshot(operator) == before


def test_cancel_a_program_cancels_its_windows(operator, world) -> None:  # noqa: ANN001
    p = world["p"]
    view = ok(operator("POST", f"{p}/cancel"))
    assert view["state"] == "cancelled" and view["version"] == 2
    assert view["next_windows"] and {w["state"] for w in view["next_windows"]} == {"cancelled"}
    assert {w["note"] for w in view["next_windows"]} == {"program cancelled"}
    assert ok(operator("POST", f"{p}/cancel"))["version"] == 2  # twice: no change
    assert "cancelled" in problem(operator("PATCH", p, json={"primacy": 1}), 409)
    body = {"device_id": world["ev"], "customer": "alice"}
    assert "takes no enrollments" in problem(operator("POST", f"{p}/enrollments", json=body), 409)


@pytest.mark.parametrize(
    ("over", "message"),
    [({"colour": "red"}, "colour: unknown field"), ({"requested_kw": 0}, "requested_kw"),
     ({"requested_kw": 10**400}, "requested_kw"), ({"requested_kw": 1e308, "price_cap": 1e308 * 10}, "price_cap"),
     ({"price_cap": "0.5"}, "price_cap"), ({"primacy": 2**70}, "primacy"), ({"lead_time_s": 1.5}, "lead_time_s"),
     ({"window": {"weekdays": ["someday"], "start": "16:00", "end": "21:00", "tz": "America/New_York"}}, "window"),
     ({"window": {**program_body()["window"], "tz": "Mars/Olympus"}}, "window"), ({"window": "evenings"}, "window"),
     ({"eligible_kinds": ["toaster"]}, "toaster"), ({"eligible_kinds": "battery"}, "eligible_kinds"),
     ({"currency": "usd"}, "currency"), ({"name": " "}, "name"), ({"incentive": {"kind": "fixed"}}, "rate"),
     ({"requested_kw": [1, 2]}, "interval_s"), ({"interval_s": 900, "requested_kw": [1, 2]}, "20 intervals"),
     ({"grid_node_ids": ["feeder-12"]}, "no grid node feeder-12"), ({"grid_node_ids": ["a\x00"]}, "control characters"),
     ({"name": "a\x00b"}, "control characters"), ({"description": "a\x00b"}, "control characters"),
     ({"window": {**program_body()["window"], "tz": "x" * 300}}, "unknown time zone")]
    + [({key: DROP}, f"{key}: required") for key in ("name", "window", "requested_kw", "price_cap", "incentive", "eligible_kinds")],
)
def test_bad_programs_are_400_and_store_nothing(operator, over: dict, message: str) -> None:  # noqa: ANN001
    body = {k: v for k, v in program_body(**over).items() if v is not DROP}
    assert message in problem(operator("POST", "/flex/programs", json=body), 400)
    assert snapshot(operator) == {"grid": {"grid_nodes": []}, "programs": []}
    assert ok(operator("GET", "/der-programs"))["programs"] == []


@pytest.mark.parametrize(("method", "path"), [("POST", "/programs"), ("PATCH", "/programs/ID"), ("PUT", "/grid-nodes"),
                                              ("POST", "/programs/ID/enrollments"), ("PUT", "/programs/ID/enrollments/1/offer")])
@pytest.mark.parametrize("data", [b"{not json", b"[1, 2]", b"", b'"text"', b"[" * 50_000])
def test_a_body_that_is_not_a_json_object_is_400(operator, world, method: str, path: str, data: bytes) -> None:  # noqa: ANN001
    before = snapshot(operator)
    resp = operator(method, "/flex" + path.replace("ID", str(world["program"]["id"])), data=data,
                    content_type="application/json")
    assert "JSON object" in problem(resp, 400)
    assert snapshot(operator) == before


# ---------------------------------------------------------------------------------- grid nodes


def test_grid_node_adders(operator) -> None:  # noqa: ANN001
    """adder = congestion_multiplier × load_percent × adder_per_percent; path_adder sums to the root."""
    sub, feeder = grid(operator, {"name": "sub-1", "load_percent": 75, "adder_per_percent": 0.001},
                       {"name": "feeder-12", "parent": "sub-1", "load_percent": 50, "adder_per_percent": 0.002,
                        "congestion_multiplier": 1.5})
    assert sub["adder"] == pytest.approx(0.075) and sub["path_adder"] == pytest.approx(0.075)  # the seed's example
    assert (sub["parent"], sub["congestion_multiplier"], sub["max_forward_kw"]) == (None, 1.0, None)
    assert feeder["parent"] == "sub-1" and feeder["adder"] == pytest.approx(0.15)
    assert feeder["path_adder"] == pytest.approx(0.225)
    listed = {n["name"]: n for n in ok(operator("GET", "/flex/grid-nodes"))["grid_nodes"]}
    assert listed == {"sub-1": sub, "feeder-12": feeder}


def test_changing_a_grid_node_keeps_what_is_not_given(operator) -> None:  # noqa: ANN001
    grid(operator, {"name": "sub-1", "load_percent": 75, "adder_per_percent": 0.001},
         {"name": "feeder-12", "parent": "sub-1", "load_percent": 10, "adder_per_percent": 0.01})
    changed = grid(operator, {"name": "sub-1", "load_percent": 90})[0]
    assert (changed["load_percent"], changed["adder_per_percent"]) == (90.0, 0.001)
    feeder = {n["name"]: n for n in ok(operator("GET", "/flex/grid-nodes"))["grid_nodes"]}["feeder-12"]
    assert feeder["path_adder"] == pytest.approx(0.09 + 0.1)
    moved = grid(operator, {"name": "feeder-12", "parent": None, "current_load_kw": 800, "max_forward_kw": 700})[0]
    assert (moved["parent"], moved["path_adder"], moved["max_forward_kw"]) == (None, pytest.approx(0.1), 700.0)


@pytest.mark.parametrize(
    ("body", "message"),
    [({"name": "b", "parent": "c"}, "cycle"), ({"name": "a", "parent": "a"}, "cycle"),
     ({"name": "x", "parent": "nowhere"}, "no grid node 'nowhere'"), ({"name": "a", "load_percent": -1}, "load_percent"),
     ({"name": "a", "load_percent": "75"}, "load_percent must be a number"), ({"name": "a", "adder_per_percent": None}, "adder_per_percent"),
     ({"name": "a", "congestion_multiplier": 10**400}, "congestion_multiplier"), ({"name": "a", "max_forward_kw": 5}, "current_load_kw"),
     ({"name": "a", "colour": "red"}, "unknown field in a grid node: colour"), ({}, "name is required"),
     ({"name": " "}, "name is required"), ({"name": "x" * 65}, "at most 64"), ({"name": 5}, "name must be text"),
     ({"name": "a\x00"}, "control characters"), ({"name": "a", "parent": 7}, "parent")],
)
def test_bad_grid_nodes_change_nothing(operator, body: dict, message: str) -> None:  # noqa: ANN001
    grid(operator, {"name": "a"}, {"name": "b", "parent": "a"}, {"name": "c", "parent": "b"})
    before = snapshot(operator)
    assert message in problem(operator("PUT", "/flex/grid-nodes", json=body), 400)
    assert snapshot(operator) == before


def test_delete_grid_nodes(operator, world) -> None:  # noqa: ANN001
    """409 while a child node, an enrollment or an active program uses the node; 204 after."""
    grid(operator, {"name": "sub-1"}, {"name": "feeder-12", "parent": "sub-1"}, {"name": "spare"})
    p = world["p"]
    ok(operator("PATCH", p, json={"grid_node_ids": ["sub-1"]}))
    enr = ok(operator("POST", f"{p}/enrollments", json={"device_id": world["ev"], "customer": "a", "grid_node": "feeder-12"}), 201)
    assert "child nodes" in problem(operator("DELETE", "/flex/grid-nodes/sub-1"), 409)
    assert "enrolled devices" in problem(operator("DELETE", "/flex/grid-nodes/feeder-12"), 409)
    assert problem(operator("DELETE", "/flex/grid-nodes/nowhere"), 404)
    assert "control characters" in problem(operator("DELETE", "/flex/grid-nodes/a%00b"), 400)
    assert len(ok(operator("GET", "/flex/grid-nodes"))["grid_nodes"]) == 3
    assert operator("DELETE", "/flex/grid-nodes/spare").status_code == 204
    ok(operator("POST", f"{p}/enrollments/{enr['id']}/cancel"))
    # a closed enrollment still names its node (the record is kept for settlement)
    assert "enrolled devices" in problem(operator("DELETE", "/flex/grid-nodes/feeder-12"), 409)


def test_a_node_in_an_active_programs_area_cannot_be_deleted(operator, world) -> None:  # noqa: ANN001
    grid(operator, {"name": "feeder-12"})
    ok(operator("PATCH", world["p"], json={"grid_node_ids": ["feeder-12"]}))
    assert "active program" in problem(operator("DELETE", "/flex/grid-nodes/feeder-12"), 409)
    ok(operator("POST", f"{world['p']}/cancel"))
    assert operator("DELETE", "/flex/grid-nodes/feeder-12").status_code == 204
    assert ok(operator("GET", "/flex/grid-nodes")) == {"grid_nodes": []}


@pytest.mark.parametrize(("path", "text"), [("/flex/grid-nodes", b'{"name": "a", "load_percent": NaN}'),
                                            ("/flex/grid-nodes", b'{"name": "a", "max_reverse_kw": -Infinity}'),
                                            ("/flex/programs", b'{"price_cap": Infinity}')])
def test_nan_and_infinity_are_refused(operator, path: str, text: bytes) -> None:  # noqa: ANN001
    method = "PUT" if "grid" in path else "POST"
    assert "finite" in problem(operator(method, path, data=text, content_type="application/json"), 400)
    assert snapshot(operator) == {"grid": {"grid_nodes": []}, "programs": []}


# --------------------------------------------------------------------------------- enrollments


def test_enroll_by_device_id_with_the_kind_its_der_reported(operator, world) -> None:  # noqa: ANN001
    p = world["p"]
    resp = operator("POST", f"{p}/enrollments", json={"device_id": world["ev"], "customer": "alice"})
    enr = ok(resp, 201)
    assert (enr["device_id"], enr["kind"], enr["state"], enr["offer"], enr["grid_node"]) == (world["ev"], "ev_charger", "active", None, None)
    assert (enr["program_id"], enr["customer"], enr["source"]) == (world["program"]["id"], "alice", "operator")
    assert ok(operator("GET", f"{p}/enrollments")) == {"all": 1, "enrollments": [enr]}
    assert ok(operator("GET", p))["enrollments"] == {"active": 1}
    assert ok(operator("GET", f"/der-programs/{world['program']['der_program_id']}"))["members"] == [world["ev"]]


def test_enroll_by_lfdi_with_a_given_kind_and_pending(operator, world, cast) -> None:  # noqa: ANN001
    body = {"lfdi": cast["other"].lfdi.lower(), "customer": "bob", "kind": "load", "state": "pending"}
    enr = ok(operator("POST", f"{world['p']}/enrollments", json=body), 201)
    assert (enr["device_id"], enr["kind"], enr["state"]) == (world["battery"], "load", "pending")
    assert ok(operator("GET", f"/der-programs/{world['program']['der_program_id']}"))["members"] == []  # not yet


def test_the_device_finds_the_program_while_active_or_paused(operator, world, cast, client_for) -> None:  # noqa: ANN001
    p, ev, mrid = world["p"], world["ev"], ok(operator("GET", f"/der-programs/{world['program']['der_program_id']}"))["mrid"]
    enr = ok(operator("POST", f"{p}/enrollments", json={"device_id": ev, "customer": "a", "state": "pending"}), 201)
    assert device_programs(client_for, cast["owner"], ev) == []
    for event, member in (("confirm", True), ("pause", True), ("resume", True), ("end", False)):
        ok(operator("POST", f"{p}/enrollments/{enr['id']}/{event}"))
        assert device_programs(client_for, cast["owner"], ev) == ([mrid] if member else []), event
    again = ok(operator("POST", f"{p}/enrollments", json={"device_id": ev, "customer": "a"}), 201)  # re-enrolling
    assert again["state"] == "active" and device_programs(client_for, cast["owner"], ev) == [mrid]


# programs/enrollment.py's state table: the state after each allowed event (any other is a 409)
TABLE = {
    "pending": {"confirm": "active", "cancel": "cancelled", "end": "ended"},
    "active": {"pause": "paused", "cancel": "cancelled", "end": "ended"},
    "paused": {"resume": "active", "cancel": "cancelled", "end": "ended"},
    "cancelled": {}, "ended": {},
}
REACH = {"pending": [], "active": ["confirm"], "paused": ["confirm", "pause"], "cancelled": ["cancel"], "ended": ["end"]}


@pytest.mark.parametrize("state", TABLE)
@pytest.mark.parametrize("event", ["confirm", "pause", "resume", "cancel", "end"])
def test_enrollment_life_cycle_follows_the_state_table(operator, world, state: str, event: str) -> None:  # noqa: ANN001
    p = world["p"]
    enr = ok(operator("POST", f"{p}/enrollments", json={"device_id": world["ev"], "customer": "a", "state": "pending"}), 201)
    url = f"{p}/enrollments/{enr['id']}"
    for step in REACH[state]:
        ok(operator("POST", f"{url}/{step}"))
    expected = TABLE[state].get(event)
    resp = operator("POST", f"{url}/{event}")
    if expected is None:
        assert f"cannot {event}" in problem(resp, 409)
        expected = state
    else:
        assert ok(resp)["state"] == expected
    assert ok(operator("GET", f"{p}/enrollments"))["enrollments"][0]["state"] == expected


def test_unknown_enrollments_and_actions(operator, world) -> None:  # noqa: ANN001
    p = world["p"]
    enr = ok(operator("POST", f"{p}/enrollments", json={"device_id": world["ev"], "customer": "a"}), 201)
    other = ok(operator("POST", "/flex/programs", json=program_body(name="Other")), 201)["id"]
    assert "unknown enrollment action" in problem(operator("POST", f"{p}/enrollments/{enr['id']}/explode"), 400)
    problem(operator("POST", f"{p}/enrollments/{enr['id'] + 1}/pause"), 404)
    problem(operator("POST", f"/flex/programs/{other}/enrollments/{enr['id']}/pause"), 404)  # not that program's
    problem(operator("PUT", f"/flex/programs/{other}/enrollments/{enr['id']}/offer", json={"offer": None}), 404)
    assert ok(operator("GET", f"{p}/enrollments"))["enrollments"] == [enr]


def test_offers_the_seed_power_curve_and_an_objective(operator, enrolled) -> None:  # noqa: ANN001
    ev, bat = enrolled["ev_enr"], enrolled["bat_enr"]
    assert (ev["kind"], ev["offer"]) == ("ev_charger", {"power": SEED_CURVE})
    assert (bat["kind"], bat["offer"]) == ("battery", {"objective": REDUCE_3})
    url = f"{enrolled['p']}/enrollments/{bat['id']}/offer"
    changed = ok(operator("PUT", url, json={"offer": {"power": [[0.1, 0], [0.3, 4]]}}))
    assert changed["offer"] == {"power": [[0.1, 0], [0.3, 4]]} and changed["updated"] >= bat["updated"]
    assert ok(operator("PUT", url, json={"offer": None}))["offer"] is None
    assert "send {\"offer\"" in problem(operator("PUT", url, json={"ofer": None}), 400)


BAD_OFFERS = [
    ({"power": [[0.08, -11], [0.10, -5]]}, "consumption 11.0 kW is above"),  # the battery charges at 5 kW at most
    ({"power": [[0.1, 1], [0.2, 6]]}, "above"),
    ({"power": [[0.10, -5], [0.08, -4]]}, "prices must not decrease"),
    ({"power": [[0.08, -4], [0.10, -5]]}, "non-decreasing power"),
    ({"power": []}, "non-empty list"), ({"power": "cheap"}, "non-empty list"),
    ({"power": [[0.1]]}, "expected (price, powerKW)"), ({"power": [["0.1", 1]]}, "price must be a finite number"),
    ({"power": [[0.1, 10**400]]}, "powerKW must be a finite number"),
    ({"objective": {"reduceKW": -3, "minPricePerKWh": 0.2}}, "objective.reduceKW"),
    ({"objective": {"reduceKW": 3}}, "objective.minPricePerKWh: required"),
    ({"objective": {"reduceKW": 3, "minPricePerKWh": 0.2, "colour": 1}}, "objective.colour: unknown field"),
    ({"objective": {"reduceKW": 10**400, "minPricePerKWh": 0.2}}, "objective.reduceKW: must be a finite"),
    ({"objective": {"targetChargeKWh": 20, "deadline": "2030-01-01T07:00:00Z", "maxPricePerKWh": 0.3}}, "only an EV charger"),
    ({"objective": "save"}, "objective must be a JSON object"),
    ({"power": SEED_CURVE, "objective": REDUCE_3}, "an offer is"), ({}, "an offer is"), ("cheap", "an offer is"),
]


@pytest.mark.parametrize(("offer", "message"), BAD_OFFERS)
def test_bad_offers_are_refused_and_change_nothing(operator, world, offer, message: str) -> None:  # noqa: ANN001
    p = world["p"]
    body = {"device_id": world["battery"], "customer": "bob", "offer": offer}
    assert message in problem(operator("POST", f"{p}/enrollments", json=body), 400)
    enr = ok(operator("POST", f"{p}/enrollments", json={**body, "offer": {"objective": REDUCE_3}}), 201)
    before = snapshot(operator)
    assert message in problem(operator("PUT", f"{p}/enrollments/{enr['id']}/offer", json={"offer": offer}), 400)
    assert snapshot(operator) == before


@pytest.mark.parametrize(
    ("over", "status", "message"),
    [({"colour": "red"}, 400, "unknown field in an enrollment: colour"), ({"device_id": None}, 400, "device_id"),
     ({"device_id": "1"}, 400, "device_id"), ({"device_id": True}, 400, "device_id"), ({"device_id": 2**31}, 400, "device_id"),
     ({"device_id": 999}, 404, "register it first"), ({"lfdi": "AB" * 20}, 404, "register it first"),
     ({"lfdi": "AB"}, 400, "40 hex"), ({"lfdi": "\x00" * 40}, 400, "40 hex"), ({"lfdi": 5}, 400, "40 hex"),
     ({"lfdi": "AB" * 20, "device_id": 1}, 400, "exactly one of"),
     ({"customer": None}, 400, "customer is required"), ({"customer": ""}, 400, "customer is required"),
     ({"customer": "x" * 101}, 400, "customer"), ({"customer": 7}, 400, "customer"),
     ({"kind": "pv"}, 400, "not eligible"), ({"kind": "toaster"}, 400, "kind must be one of"), ({"kind": 1}, 400, "kind"),
     ({"state": "paused"}, 400, "state must be"), ({"state": ["active"]}, 400, "state must be"),
     ({"grid_node": "nowhere"}, 400, "no grid node 'nowhere'"), ({"grid_node": 5}, 400, "grid_node")],
)
def test_bad_enrollments_are_refused_and_store_nothing(operator, world, over: dict, status: int, message: str) -> None:  # noqa: ANN001
    body = {**({"customer": "alice"} if "lfdi" in over else {"device_id": world["ev"], "customer": "alice"}), **over}
    before = snapshot(operator)
    assert message in problem(operator("POST", f"{world['p']}/enrollments", json=body), status)
    assert snapshot(operator) == before


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "title", "field"),
    [("POST", "/enrollments", {"customer": "bob", "offer": {"power": [[0.10, -5], [0.08, -4]]}}, 400, "Invalid",
      "offer.power[1]"),
     ("POST", "/enrollments", {"customer": "bob", "offer": {"power": [[0.08, -11], [0.10, -5]]}}, 400, "Invalid",
      "offer.power[0]"),  # beyond the battery's 5 kW: found against its ratings, not by the parser
     ("POST", "/enrollments", {"customer": "bob", "kind": "toaster"}, 400, "Invalid", "kind"),
     ("POST", "/enrollments", {"customer": "bob", "grid_node": "nowhere"}, 400, "Invalid", "grid_node"),
     ("POST", "/enrollments/999/pause", None, 404, "NotFound", "enrollment_id"),
     ("PATCH", "", {"price_floor": 0.6}, 400, "Invalid", "price_floor"),
     ("PUT", "/flex/grid-nodes", {"name": "x", "parent": "nowhere"}, 400, "Invalid", "parent"),
     ("DELETE", "/flex/grid-nodes/nowhere", None, 404, "NotFound", "name"),
     ("POST", "/flex/programs", program_body(), 409, "Conflict", "name")],
)
def test_a_refused_command_names_its_field_in_the_problem(operator, world, method: str, path: str, body: dict | None,  # noqa: ANN001
                                                          status: int, title: str, field: str) -> None:
    url = path if path.startswith("/flex") else world["p"] + path
    if url.endswith("/enrollments"):
        body = {"device_id": world["battery"], **(body or {})}
    before = snapshot(operator)
    resp = operator(method, url, json=body) if body is not None else operator(method, url)
    assert problem(resp, status)
    assert (resp.get_json()["title"], resp.get_json()["field"]) == (title, field)
    assert snapshot(operator) == before


def test_a_device_is_enrolled_once(operator, world) -> None:  # noqa: ANN001
    body = {"device_id": world["ev"], "customer": "alice"}
    first = ok(operator("POST", f"{world['p']}/enrollments", json=body), 201)
    assert f"enrollment {first['id']}" in problem(operator("POST", f"{world['p']}/enrollments", json=body), 409)


def test_a_device_without_a_reported_type_needs_a_kind(operator, client_for, cast, world) -> None:  # noqa: ANN001
    quiet = register(operator, client_for, cast["managed"], None)
    body = {"device_id": quiet, "customer": "carol"}
    assert "kind is required" in problem(operator("POST", f"{world['p']}/enrollments", json=body), 400)
    assert ok(operator("POST", f"{world['p']}/enrollments", json={**body, "kind": "load"}), 201)["kind"] == "load"


def test_an_ineligible_reported_kind_is_refused(operator, world) -> None:  # noqa: ANN001
    ok(operator("PATCH", world["p"], json={"eligible_kinds": ["load"]}))
    body = {"device_id": world["ev"], "customer": "alice"}
    assert "ev_charger is not eligible" in problem(operator("POST", f"{world['p']}/enrollments", json=body), 400)


def test_the_grid_node_must_be_inside_the_programs_area(operator, world) -> None:  # noqa: ANN001
    grid(operator, {"name": "sub-1"}, {"name": "feeder-12", "parent": "sub-1"},
         {"name": "xfmr-3", "parent": "feeder-12"}, {"name": "sub-2"})
    p = world["p"]
    ok(operator("PATCH", p, json={"grid_node_ids": ["feeder-12"]}))
    body = {"device_id": world["ev"], "customer": "alice"}
    assert "grid_node is required" in problem(operator("POST", f"{p}/enrollments", json=body), 400)
    for outside in ("sub-2", "sub-1"):  # elsewhere, or above the area
        assert "outside this program's area" in problem(operator("POST", f"{p}/enrollments", json={**body, "grid_node": outside}), 400)
    assert ok(operator("GET", f"{p}/enrollments"))["all"] == 0
    assert ok(operator("POST", f"{p}/enrollments", json={**body, "grid_node": "xfmr-3"}), 201)["grid_node"] == "xfmr-3"


# ------------------------------------------------------------------------------------- windows


def next_window(operator, p: str) -> dict:  # noqa: ANN001
    """The program's first window that has not started yet (every day has one)."""
    now = dt.datetime.now(dt.timezone.utc)
    return next(w for w in ok(operator("GET", f"{p}/windows"))["windows"] if dt.datetime.fromisoformat(w["start"]) > now)


def epoch(iso: str) -> int:
    return int(dt.datetime.fromisoformat(iso).timestamp())


def test_list_windows_and_one_window(operator, world) -> None:  # noqa: ANN001
    p, now = world["p"], dt.datetime.now(dt.timezone.utc)
    upcoming = ok(operator("GET", f"{p}/windows"))["windows"]
    assert 6 <= len(upcoming) <= 8 and all(dt.datetime.fromisoformat(w["start"]) > now for w in upcoming)  # a week
    assert [w["key"] for w in upcoming] == sorted(w["key"] for w in upcoming)
    assert all(w["state"] == "planned" and w["intervals"] == [] for w in upcoming)
    assert len(ok(operator("GET", f"{p}/windows?limit=2"))["windows"]) == 2
    w = next_window(operator, p)
    view = ok(operator("GET", f"{p}/windows/{w['key']}"))
    assert view == {**{k: v for k, v in w.items() if k != "intervals"}, "intervals": []}
    assert problem(operator("GET", f"{p}/windows/1999-01-01"), 404)
    assert problem(operator("GET", f"{p}/windows/soon"), 404)
    assert "control characters" in problem(operator("GET", f"{p}/windows/a%00b"), 400)


def old_program(database) -> str:  # noqa: ANN001
    """A program made three days ago (through the service: the API's clock is now)."""
    from server.services.flex import programs as flex

    three_days_ago = int(dt.datetime.now(dt.timezone.utc).timestamp()) - 3 * 86_400
    with database.transaction() as s:
        return f"/flex/programs/{flex.create_program(s, program_body(), three_days_ago)['id']}"


def test_past_windows_are_listed_on_request_and_cannot_be_cancelled(operator, database) -> None:  # noqa: ANN001
    p, now = old_program(database), dt.datetime.now(dt.timezone.utc)
    upcoming = ok(operator("GET", f"{p}/windows"))["windows"]
    everything = ok(operator("GET", f"{p}/windows?include_past=true&limit=1000"))["windows"]
    past = [w for w in everything if dt.datetime.fromisoformat(w["end"]) <= now]
    assert len(past) >= 2 and everything == past + upcoming
    assert all(dt.datetime.fromisoformat(w["end"]) > now for w in upcoming)
    assert "has ended" in problem(operator("POST", f"{p}/windows/{past[0]['key']}/cancel"), 409)
    assert ok(operator("GET", f"{p}/windows/{past[0]['key']}"))["state"] == past[0]["state"]


@pytest.mark.parametrize("query", ["include_past=maybe", "limit=-1", "limit=x", "include_past=true&limit=1.5"])
def test_bad_window_queries_are_400(operator, world, query: str) -> None:  # noqa: ANN001
    problem(operator("GET", f"{world['p']}/windows?{query}"), 400)


def test_cancel_a_window(operator, world) -> None:  # noqa: ANN001
    p = world["p"]
    w = next_window(operator, p)
    view = ok(operator("POST", f"{p}/windows/{w['key']}/cancel"))
    assert (view["key"], view["state"], view["note"]) == (w["key"], "cancelled", "cancelled by the operator")
    assert ok(operator("GET", f"{p}/windows/{w['key']}"))["state"] == "cancelled"
    assert "is cancelled" in problem(operator("POST", f"{p}/windows/{w['key']}/cancel"), 409)
    problem(operator("POST", f"{p}/windows/1999-01-01/cancel"), 404)
    assert [x["state"] for x in ok(operator("GET", f"{p}/windows"))["windows"]].count("cancelled") == 1


def test_dry_run_as_json(operator, enrolled) -> None:  # noqa: ANN001
    """8 kW asked: the EVSE's seed curve gives 6 kW by 0.10, the battery's 3 kW step at 0.20 the
    rest, so the price is 0.20 and the setpoints are 6 + 2. Nothing is written."""
    p = enrolled["p"]
    ok(operator("PATCH", p, json={"requested_kw": 8}))
    w = next_window(operator, p)
    before = snapshot(operator)
    run = ok(operator("GET", f"{p}/dry-run?window={w['key']}"))
    assert (run["program"], run["window"], run["state"], run["devices"], run["skipped"]) == ("Summer evening peak", w["key"], "planned", 2, [])
    [iv] = run["intervals"]
    assert (epoch(iv["start"]), epoch(iv["end"]), iv["requested_kw"]) == (epoch(w["start"]), epoch(w["end"]), 8.0)
    assert iv["feasible"] is True and iv["price"] == pytest.approx(0.2) and iv["quantity_kw"] == pytest.approx(8)
    assert iv["available_at_cap_kw"] == pytest.approx(9)
    top = {s["device_id"]: s["reduction_kw"] for s in iv["top_setpoints"]}
    assert top == {enrolled["ev"]: pytest.approx(6), enrolled["battery"]: pytest.approx(2)}
    assert iv["top_setpoints"][0]["device_id"] == enrolled["ev"]  # largest first
    assert [s["device_id"] for s in ok(operator("GET", f"{p}/dry-run?window={w['key']}&top=1"))["intervals"][0]["top_setpoints"]] == [enrolled["ev"]]
    assert snapshot(operator) == before


@pytest.mark.parametrize(("asked", "price", "cleared", "feasible"), [(5, 0.08 + 0.02 * 5 / 6, 5, True), (50, 0.5, 9, False)])
def test_dry_run_of_the_next_window(operator, enrolled, asked: int, price: float, cleared: float, feasible: bool) -> None:  # noqa: ANN001
    """5 kW: only the EVSE moves, along its seed ramp from 0.08 to 0.10. 50 kW: more than the
    fleet has (9 kW), cleared best effort at the cap."""
    ok(operator("PATCH", enrolled["p"], json={"requested_kw": asked}))
    [iv] = ok(operator("GET", f"{enrolled['p']}/dry-run"))["intervals"]  # no window given: the next one
    assert (iv["price"], iv["quantity_kw"], iv["feasible"]) == (pytest.approx(price), pytest.approx(cleared), feasible)
    assert sum(s["reduction_kw"] for s in iv["top_setpoints"]) == pytest.approx(cleared)


def test_dry_run_as_png(operator, enrolled) -> None:  # noqa: ANN001
    resp = operator("GET", f"{enrolled['p']}/dry-run?format=png")
    assert resp.status_code == 200 and resp.content_type == "image/png"
    assert resp.data.startswith(b"\x89PNG\r\n\x1a\n") and len(resp.data) > 1000


def test_dry_run_without_devices(operator, world) -> None:  # noqa: ANN001
    run = ok(operator("GET", f"{world['p']}/dry-run"))
    assert run["devices"] == 0 and [set(iv) for iv in run["intervals"]] == [{"start", "end", "requested_kw"}]
    assert "nothing to draw" in problem(operator("GET", f"{world['p']}/dry-run?format=png"), 404)


@pytest.mark.parametrize(("query", "status"), [("format=gif", 400), ("window=1999-01-01", 404), ("top=-1", 400),
                                               ("window=" + "9" * 40, 400)])
def test_bad_dry_runs(operator, enrolled, query: str, status: int) -> None:  # noqa: ANN001
    problem(operator("GET", f"{enrolled['p']}/dry-run?{query}"), status)


# ------------------------------------------------------------------------------------- publish


def publish(database, operator, world) -> dict:  # noqa: ANN001
    """Run the next window as the scheduler would at its publish time."""
    from server.services.flex import publishing

    w = next_window(operator, world["p"])
    outcome = publishing.run_window(database, world["program"]["id"], w["key"], epoch(w["publish_at"]))
    assert outcome is not None and outcome["action"] == "publish" and outcome["devices"] == 2, outcome
    return ok(operator("GET", f"{world['p']}/windows/{w['key']}"))


def test_a_published_window_shows_its_clearing_and_the_devices_their_controls(operator, enrolled, database, cast, client_for, device_clock) -> None:  # noqa: ANN001
    from server.services.flex import publishing

    ok(operator("PATCH", enrolled["p"], json={"requested_kw": 8}))
    view = publish(database, operator, enrolled)
    device_clock(epoch(view["publish_at"]) + 1)
    assert (view["state"], view["revision"]) == ("published", 1) and view["published"] == view["publish_at"]
    [iv] = view["intervals"]
    assert (iv["price"], iv["quantity_kw"], iv["feasible"], iv["devices"]) == (pytest.approx(0.2), pytest.approx(8), True, 2)
    top = {s["device_id"]: s for s in iv["top_setpoints"]}
    assert top[enrolled["ev"]]["power_kw"] == pytest.approx(-5)  # -11 kW baseline, 6 kW less
    assert top[enrolled["battery"]]["power_kw"] == pytest.approx(2)  # discharging 2 kW
    listed = ok(operator("GET", f"{enrolled['p']}/windows"))["windows"]
    assert [w["intervals"] for w in listed if w["key"] == view["key"]] == [[{k: v for k, v in iv.items() if k != "top_setpoints"}]]
    der = enrolled["program"]["der_program_id"]
    for who, device, fixed in (("owner", enrolled["ev"], -4348), ("other", enrolled["battery"], 4000)):
        [ctl] = device_controls(client_for, cast[who], device, der)  # % of 11.5 kW charging, 5 kW discharging
        assert ctl.mrid == top[device]["event_mrid"] and ctl.der_control_base.op_mod_fixed_w == fixed
        assert (ctl.interval.start, ctl.interval.duration) == (epoch(view["start"]), 5 * 3600)
        assert ctl.event_status.current_status == 0 and ctl.description == "Evening peak"
    # the scheduler running it again changes nothing
    assert publishing.run_window(database, enrolled["program"]["id"], view["key"], epoch(view["publish_at"])) is None
    assert ok(operator("GET", f"{enrolled['p']}/windows/{view['key']}")) == view


def test_cancelling_a_published_window_cancels_its_controls(operator, enrolled, database, cast, client_for, device_clock) -> None:  # noqa: ANN001
    view = publish(database, operator, enrolled)
    # after the publishing, and not before now: between a window's publish time and its start
    # (the hour before 16:00 New York) the cancellation below is stamped now, later than publish_at + 1
    device_clock(max(epoch(view["publish_at"]), int(dt.datetime.now(dt.timezone.utc).timestamp())) + 1)
    ok(operator("POST", f"{enrolled['p']}/windows/{view['key']}/cancel"))
    der = enrolled["program"]["der_program_id"]
    for who, device in (("owner", enrolled["ev"]), ("other", enrolled["battery"])):  # 2: cancelled
        assert [c.event_status.current_status for c in device_controls(client_for, cast[who], device, der)] == [2]


def test_cancelling_a_program_cancels_its_published_controls(operator, enrolled, database) -> None:  # noqa: ANN001
    publish(database, operator, enrolled)
    ok(operator("POST", f"{enrolled['p']}/cancel"))
    events = ok(operator("GET", f"/der-programs/{enrolled['program']['der_program_id']}/events"))["events"]
    assert len(events) == 2 and {e["state"] for e in events} == {"cancelled"}


def test_a_device_that_leaves_loses_its_controls(operator, enrolled, database) -> None:  # noqa: ANN001
    publish(database, operator, enrolled)
    ok(operator("POST", f"{enrolled['p']}/enrollments/{enrolled['ev_enr']['id']}/cancel"))
    der = enrolled["program"]["der_program_id"]
    events = {e["device_id"]: e["state"] for e in ok(operator("GET", f"/der-programs/{der}/events"))["events"]}
    assert events == {enrolled["ev"]: "cancelled", enrolled["battery"]: "scheduled"}
    assert ok(operator("GET", f"/der-programs/{der}"))["members"] == [enrolled["battery"]]


# ---------------------------------------------------------------------------------- odd input


@pytest.mark.parametrize(("method", "path"), [(m, p) for m, p in ENDPOINTS if "/programs/1" in p])
def test_unknown_programs_are_404(operator, method: str, path: str) -> None:  # noqa: ANN001
    body = {"offer": None} if path.endswith("/offer") else {"device_id": 1, "customer": "a"} if "enroll" in path else {"primacy": 1}
    problem(operator(method, f"/flex{path.replace('/programs/1', '/programs/999')}", json=body), 404)
    assert snapshot(operator) == {"grid": {"grid_nodes": []}, "programs": []}


def test_odd_input_never_gets_a_5xx(operator, enrolled) -> None:  # noqa: ANN001
    """A bounded probe: odd values in every field of every body, odd ids, keys and queries."""
    pid, enr, ev = enrolled["program"]["id"], enrolled["ev_enr"]["id"], enrolled["ev"]
    odd = ["x\x00y", "²", 10**30, -(10**30), 10**400, 1e308, None, True, [], {}, [[1, 2]], "9" * 50, "x" * 10_000]
    probes: list[tuple[str, str, object]] = []
    for v in odd:
        probes += [("PUT", "/grid-nodes", b) for b in ({"name": v}, {"name": "n", "parent": v}, {"name": "n", "load_percent": v},
                                                       {"name": "n", "current_load_kw": v, "max_reverse_kw": v})]
        probes += [(m, path, b) for m, path in (("POST", "/programs"), ("PATCH", f"/programs/{pid}"))
                   for b in (program_body(name=v), program_body(name="n", grid_node_ids=[v]), program_body(name="n", description=v),
                             program_body(name="n", window={**program_body()["window"], "tz": v, "start": v}),
                             program_body(name="n", requested_kw=v), program_body(name="n", window=v),
                             program_body(name="n", interval_s=v), program_body(name="n", incentive={"kind": "fixed", "rate_per_kwh": v}))]
        probes += [("PUT", f"/programs/{pid}/enrollments/{enr}/offer", {"offer": o}) for o in
                   (v, {"power": v}, {"power": [[v, v]]}, {"objective": v}, {"objective": {"reduceKW": v, "minPricePerKWh": v}})]
        probes += [("POST", f"/programs/{pid}/enrollments", b) for b in (
            {"device_id": v, "customer": "a"}, {"lfdi": v, "customer": "a"}, {"lfdi": f"{v}{'0' * 40}"[:40], "customer": "a"}, {"device_id": enrolled["battery"], "customer": v},
            {"device_id": ev, "customer": "a", "grid_node": v, "kind": v, "state": v})]
    for i in [str(pid), "0", "2147483648", "-1", "abc", "%00", "a%00b", "%FF", "²", "x" * 40]:
        probes += [("GET", f"/programs/{i}", None), ("PATCH", f"/programs/{i}", {"primacy": 1}),
                   ("POST", f"/programs/{i}/cancel", None), ("DELETE", f"/grid-nodes/{i}", None),
                   ("PUT", f"/programs/{pid}/enrollments/{i}/offer", {"offer": None}),
                   ("POST", f"/programs/{pid}/enrollments/{i}/{i}", None), ("GET", f"/programs/{pid}/windows/{i}", None),
                   ("POST", f"/programs/{pid}/windows/{i}/cancel", None),
                   ("GET", f"/programs/{i}/windows?include_past={i}&limit={i}", None),
                   ("GET", f"/programs/{pid}/dry-run?window={i}&top={i}&format={i}", None),
                   ("GET", f"/programs/{i}/enrollments?start={i}&limit={i}", None)]
    for method, path, body in probes:
        resp = operator(method, "/flex" + path, json=body) if body is not None else operator(method, "/flex" + path)
        assert resp.status_code < 500, (method, path, body, resp.data)
        if resp.status_code >= 400:
            assert resp.content_type == "application/problem+json", (method, path)
