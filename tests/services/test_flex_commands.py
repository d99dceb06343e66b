"""The flexibility context's typed commands (server.services.flex.commands, .handlers, .results):
every parse error names its field; a valid command gives its typed result; a refused command
changes nothing; a Beckn confirm checks every device before it stores any.

"Changes nothing" is checked strictly: the refused command runs in a transaction that then COMMITS
(the error is caught inside it), and every table of the schema is compared before and after — so a
handler must refuse before it writes, not rely on the caller's rollback. Runs on SQLite, and on
PostgreSQL with DERFLEX_TEST_DATABASE_URL set (tests/conftest.py).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import pytest
from sqlalchemy import select

from programs import enrollment as lifecycle
from programs import publishing
from server.beckn.context import Context, Location
from server.beckn.envelope import Request
from server.beckn.errors import BecknError, ErrorCode
from server.beckn.timefmt import parse_duration
from server.db import tables
from server.services.bpp.actions import Provider, handle
from server.services.errors import Conflict, Invalid, NotFound
from server.services.flex import commands as c
from server.services.flex import enrollments, handlers
from server.services.flex.command_errors import CommandError
from server.services.flex.results import EnrollmentResult, GridNodeDeleted, GridNodeResult, ProgramResult, WindowResult
from server.services.sep2 import edev
from tests.builders import lfdi, rated_battery

START = int(datetime(2026, 11, 30, 21, 0, tzinfo=timezone.utc).timestamp())  # Monday 16:00 New York
PUBLISH_AT = START - 3600
KEY = "2026-11-30"
SETUP = PUBLISH_AT - 86_400
PROVIDER = Provider(bpp_id="bpp.flex.example", bpp_uri="https://bpp.flex.example/beckn")

PEAK = {
    "name": "Peak Saver", "currency": "USD", "description": "Evening peak",
    "window": {"weekdays": ["mon", "tue", "wed", "thu", "fri"], "start": "16:00", "end": "18:00",
               "tz": "America/New_York"},
    "requested_kw": 6.0, "interval_s": 3600, "price_cap": 0.5,
    "incentive": {"kind": "pay_as_clear"}, "eligible_kinds": ["battery", "ev_charger"],
    "lead_time_s": 3600, "grid_node_ids": ["sub-1"],
}
CURVE = [[0.10, 0.0], [0.50, 5.0]]
TOO_MUCH = [[0.10, 0.0], [0.50, 50.0]]  # the batteries discharge 5 kW at most


def snapshot(database) -> dict[str, list[tuple[Any, ...]]]:  # noqa: ANN001
    """Every row of every table of the schema."""
    with database.transaction() as s:
        return {t.name: sorted((tuple(r) for r in s.execute(select(t))), key=repr)
                for t in tables.metadata.sorted_tables}


@pytest.fixture
def world(database):  # noqa: ANN001, ANN201
    """Grid sub-1 ← feeder-1 and a separate `other`; batteries 0-2 with 5 kW ratings and a load
    that reported nothing; Peak Saver (area sub-1) with battery-0 enrolled; a cancelled program."""
    with database.transaction() as s:
        for name, parent in (("sub-1", None), ("feeder-1", "sub-1"), ("other", None)):
            handlers.execute(s, c.PutGridNode(name, parent=parent), SETUP)
        devices = {}
        for name in ("battery-0", "battery-1", "battery-2", "load-0"):
            devices[name] = (rated_battery(s, lfdi(name), SETUP) if name.startswith("battery")
                             else edev.register_out_of_band(s, lfdi(name), SETUP).id)
        peak = handlers.execute(s, c.parse_author_program(PEAK), SETUP)
        gone = handlers.execute(s, c.parse_author_program({**PEAK, "name": "Gone", "grid_node_ids": []}), SETUP)
        handlers.execute(s, c.CancelProgram(gone.id), SETUP)
        enrolled = handlers.execute(s, c.parse_enroll(peak.id, {"device_id": devices["battery-0"], "customer": "Ann",
                                                                 "grid_node": "feeder-1", "offer": {"power": CURVE}}),
                                    SETUP)
    return {"peak": peak.id, "gone": gone.id, "devices": devices, "enrollment": enrolled.id}


# ------------------------------------------------------------------------------ parse errors

PROGRAM = {k: v for k, v in PEAK.items() if k != "grid_node_ids"}


@pytest.mark.parametrize(
    ("parse", "field"),
    [
        (lambda: c.parse_author_program({**PROGRAM, "requested_kw": 0}), "requested_kw"),
        (lambda: c.parse_author_program({k: v for k, v in PROGRAM.items() if k != "name"}), "name"),
        (lambda: c.parse_author_program({**PROGRAM, "window": {**PROGRAM["window"], "tz": "Mars/Olympus"}}), "window.tz"),
        (lambda: c.parse_author_program({**PROGRAM, "incentive": {"kind": "fixed"}}), "incentive.rate_per_kwh"),
        (lambda: c.parse_author_program({**PROGRAM, "price_floor": 0.6}), "price_floor"),
        (lambda: c.parse_author_program({**PROGRAM, "primacy": 2**70}), "primacy"),
        (lambda: c.parse_author_program({**PROGRAM, "name": "a\x00b"}), "name"),
        (lambda: c.parse_author_program({**PROGRAM, "grid_node_ids": ["sub-1", "b\x00"]}), "grid_node_ids[1]"),
        (lambda: c.parse_update_program(1, {"nmae": "x"}), "nmae"),
        (lambda: c.parse_put_grid_node({"name": "a", "colour": "red"}), "colour"),
        (lambda: c.parse_put_grid_node({}), "name"),
        (lambda: c.parse_put_grid_node({"name": "a", "load_percent": "75"}), "load_percent"),
        (lambda: c.parse_put_grid_node({"name": "a", "adder_per_percent": None}), "adder_per_percent"),
        (lambda: c.parse_put_grid_node({"name": "a", "max_forward_kw": float("nan")}), "max_forward_kw"),
        (lambda: c.parse_put_grid_node({"name": "a", "parent": 7}), "parent"),
        (lambda: c.parse_delete_grid_node("a\x00"), "name"),
        (lambda: c.parse_enroll(1, {"customer": "a"}), "device_id"),
        (lambda: c.parse_enroll(1, {"device_id": True, "customer": "a"}), "device_id"),
        (lambda: c.parse_enroll(1, {"lfdi": "AB", "customer": "a"}), "lfdi"),
        (lambda: c.parse_enroll(1, {"device_id": 1, "customer": ""}), "customer"),
        (lambda: c.parse_enroll(1, {"device_id": 1, "customer": "x" * 101}), "customer"),
        (lambda: c.parse_enroll(1, {"device_id": 1, "customer": "a", "kind": "toaster"}), "kind"),
        (lambda: c.parse_enroll(1, {"device_id": 1, "customer": "a", "state": "paused"}), "state"),
        (lambda: c.parse_enroll(1, {"device_id": 1, "customer": "a", "grid_node": 5}), "grid_node"),
        (lambda: c.parse_enroll(1, {"device_id": 1, "customer": "a", "colour": "red"}), "colour"),
        (lambda: c.parse_enroll(1, {"device_id": 1, "customer": "a", "offer": "cheap"}), "offer"),
        (lambda: c.parse_enroll(1, {"device_id": 1, "customer": "a", "offer": {"power": []}}), "offer.power"),
        (lambda: c.parse_enroll(1, {"device_id": 1, "customer": "a", "offer": {"power": [[0.1, 0], [0.2, 1], [0.3, "2"]]}}),
         "offer.power[2]"),
        (lambda: c.parse_enroll(1, {"device_id": 1, "customer": "a", "offer": {"power": [[0.10, -5], [0.08, -4]]}}),
         "offer.power[1]"),
        (lambda: c.parse_enroll(1, {"device_id": 1, "customer": "a",
                                    "offer": {"objective": {"reduceKW": -3, "minPricePerKWh": 0.2}}}),
         "offer.objective.reduceKW"),
        (lambda: c.parse_enrollment_event(1, 1, "explode"), "event"),
        (lambda: c.parse_change_offer(1, 1, {"offer": {"power": [[0.1, 10**400]]}}), "offer.power[0]"),
        (lambda: c.parse_cancel_window(1, "a\x00b"), "key"),
    ],
)
def test_parse_errors_name_their_field(parse: Callable[[], Any], field: str) -> None:
    with pytest.raises(CommandError) as info:
        parse()
    assert (info.value.kind, info.value.field) == ("invalid", field), info.value.message
    assert isinstance(info.value, Invalid) and info.value.status == 400  # every transport renders it as before
    assert info.value.message


@pytest.mark.parametrize("parse", [lambda: c.parse_update_program(1, {}), lambda: c.parse_change_offer(1, 1, {"ofer": None})])
def test_a_malformed_body_is_refused_as_a_whole(parse: Callable[[], Any]) -> None:
    with pytest.raises(CommandError) as info:
        parse()
    assert (info.value.kind, info.value.field) == ("invalid", None)


def test_a_parsed_command_is_typed_and_frozen() -> None:
    enroll = c.parse_enroll(7, {"lfdi": "ab" * 20, "customer": "Ann", "kind": "battery", "state": "pending",
                                "offer": {"power": [{"price": 0.1, "powerKW": 0}, {"price": 0.5, "powerKW": 5}]}})
    assert enroll.device == c.DeviceRef(lfdi="AB" * 20) and enroll.kind == "battery"
    assert enroll.state is lifecycle.State.PENDING and enroll.offer is not None
    assert enroll.offer.power == ((0.1, 0.0), (0.5, 5.0))
    assert enroll.offer.json() == {"power": [{"price": 0.1, "powerKW": 0}, {"price": 0.5, "powerKW": 5}]}
    node = c.parse_put_grid_node({"name": "f", "load_percent": 75, "parent": None})
    assert (node.load_percent, node.parent, node.adder_per_percent) == (75.0, None, c.KEEP)
    with pytest.raises(AttributeError):
        enroll.customer = "Bob"  # type: ignore[misc]


# ------------------------------------------------------------------- refused commands, unchanged


def _refusals(w: dict[str, Any]) -> list[tuple[str, Any, type, str]]:
    """(what, command, kind of error, field) — each command valid as input, refused by the database."""
    d, peak, enr = w["devices"], w["peak"], w["enrollment"]

    def enroll(**body: Any) -> c.Enroll:
        return c.parse_enroll(peak, {"customer": "Bob", "grid_node": "feeder-1", **body})

    return [
        ("a program name taken", c.parse_author_program({**PEAK, "grid_node_ids": []}), Conflict, "name"),
        ("an unknown grid node in the area", c.parse_author_program({**PEAK, "name": "X", "grid_node_ids": ["nowhere"]}),
         Invalid, "grid_node_ids"),
        ("an unknown program", c.parse_update_program(999, {"primacy": 3}), NotFound, "program_id"),
        ("a cancelled program", c.parse_update_program(w["gone"], {"primacy": 3}), Conflict, "program_id"),
        ("a floor at the cap once merged", c.parse_update_program(peak, {"price_floor": 0.5}), Invalid, "price_floor"),
        ("cancel an unknown program", c.CancelProgram(999), NotFound, "program_id"),
        ("an unknown parent", c.parse_put_grid_node({"name": "x", "parent": "nowhere"}), Invalid, "parent"),
        ("a cycle", c.parse_put_grid_node({"name": "sub-1", "parent": "feeder-1"}), Invalid, "parent"),
        ("a negative load", c.parse_put_grid_node({"name": "feeder-1", "load_percent": -1}), Invalid, "load_percent"),
        ("a limit without the load", c.parse_put_grid_node({"name": "other", "max_forward_kw": 5}), Invalid,
         "current_load_kw"),
        ("delete an unknown node", c.parse_delete_grid_node("nowhere"), NotFound, "name"),
        ("delete a node with a child", c.parse_delete_grid_node("sub-1"), Conflict, "name"),
        ("an unregistered LFDI", enroll(lfdi=lfdi("never")), NotFound, "lfdi"),
        ("an unknown device id", enroll(device_id=999_999), NotFound, "device_id"),
        ("a kind nobody reported", enroll(device_id=d["load-0"]), Invalid, "kind"),
        ("an ineligible kind", enroll(device_id=d["battery-1"], kind="pv"), Invalid, "kind"),
        ("no grid node", c.parse_enroll(peak, {"device_id": d["battery-1"], "customer": "Bob"}), Invalid, "grid_node"),
        ("a grid node outside the area", enroll(device_id=d["battery-1"], grid_node="other"), Invalid, "grid_node"),
        ("a curve beyond the ratings", enroll(device_id=d["battery-1"], offer={"power": TOO_MUCH}), Invalid,
         "offer.power[1]"),
        ("an EV's objective for a battery", enroll(device_id=d["battery-1"], offer={"objective": {
            "targetChargeKWh": 20, "deadline": "2026-12-01T07:00:00Z", "maxPricePerKWh": 0.3}}), Invalid,
         "offer.objective.targetChargeKWh"),
        ("enrolled already", enroll(device_id=d["battery-0"]), Conflict, "device_id"),
        ("a cancelled program's enrollment", c.parse_enroll(w["gone"], {"device_id": d["battery-1"], "customer": "B"}),
         Conflict, "program_id"),
        ("resume an active enrollment", c.parse_enrollment_event(peak, enr, "resume"), Conflict, "event"),
        ("an unknown enrollment", c.parse_enrollment_event(peak, 999, "pause"), NotFound, "enrollment_id"),
        ("another program's enrollment", c.parse_change_offer(w["gone"], enr, {"offer": None}), NotFound,
         "enrollment_id"),
        ("an offer beyond the ratings", c.parse_change_offer(peak, enr, {"offer": {"power": TOO_MUCH}}), Invalid,
         "offer.power[1]"),
        ("an unknown window", c.parse_cancel_window(peak, "1999-01-01"), NotFound, "key"),
    ]


@pytest.mark.parametrize("case", range(27))
def test_a_refused_command_names_its_field_and_changes_nothing(world, database, case: int) -> None:  # noqa: ANN001
    cases = _refusals(world)
    assert len(cases) == 27  # the parametrization covers every case
    what, command, kind, field = cases[case]
    before = snapshot(database)
    with database.transaction() as s:  # committed: the handler itself must not have written anything
        with pytest.raises(CommandError) as info:
            handlers.execute(s, command, SETUP + 60)
    assert isinstance(info.value, kind), (what, info.value)
    assert info.value.field == field, (what, info.value.message)
    assert snapshot(database) == before, what


def test_refusals_that_need_a_state_first_change_nothing(world, database) -> None:  # noqa: ANN001
    """A closed enrollment takes no new offer; a cancelled window cannot be cancelled again."""
    peak, enr = world["peak"], world["enrollment"]
    with database.transaction() as s:
        handlers.execute(s, c.parse_enrollment_event(peak, enr, "cancel"), SETUP + 10)
        handlers.execute(s, c.parse_cancel_window(peak, KEY), SETUP + 10)
    for command, kind, field in ((c.parse_change_offer(peak, enr, {"offer": None}), Conflict, "enrollment_id"),
                                 (c.parse_enrollment_event(peak, enr, "pause"), Conflict, "event"),
                                 (c.parse_cancel_window(peak, KEY), Conflict, "key")):
        before = snapshot(database)
        with database.transaction() as s:
            with pytest.raises(CommandError) as info:
                handlers.execute(s, command, SETUP + 20)
        assert isinstance(info.value, kind) and info.value.field == field, info.value.message
        assert snapshot(database) == before


# ------------------------------------------------------------------------ valid commands, typed


def test_valid_commands_give_typed_results(world, database) -> None:  # noqa: ANN001
    d, peak, enr = world["devices"], world["peak"], world["enrollment"]
    with database.transaction() as s:
        node = handlers.execute(s, c.parse_put_grid_node({"name": "feeder-2", "parent": "sub-1", "load_percent": 50,
                                                          "adder_per_percent": 0.002}), SETUP)
        assert isinstance(node, GridNodeResult) and node.parent == "sub-1"
        assert node.adder == pytest.approx(0.1) and node.view()["path_adder"] == pytest.approx(0.1)

        updated = handlers.execute(s, c.parse_update_program(peak, {"requested_kw": 8}), SETUP)
        assert isinstance(updated, ProgramResult) and updated.version == 2
        assert json.loads(updated.definition)["requested_kw"] == 8.0 and updated.view()["program"]["requested_kw"] == 8.0
        assert updated.enrollments == {"active": 1} and "program" not in updated.view(brief=True)
        assert [w.key for w in updated.next_windows][0] == KEY

        joined = handlers.execute(s, c.parse_enroll(peak, {"lfdi": lfdi("battery-1").lower(), "customer": "Bob",
                                                           "grid_node": "feeder-2", "state": "pending"}), SETUP)
        assert isinstance(joined, EnrollmentResult)
        assert (joined.device_id, joined.kind, joined.state, joined.grid_node, joined.offer) == (
            d["battery-1"], "battery", "pending", "feeder-2", None)  # the kind its DER reported
        confirmed = handlers.execute(s, c.parse_enrollment_event(peak, joined.id, "confirm"), SETUP + 1)
        assert confirmed.state == "active" and confirmed.view()["updated"] == "2026-11-29T20:00:01Z"

        offered = handlers.execute(s, c.parse_change_offer(peak, enr, {"offer": {"objective": {
            "reduceKW": 3, "minPricePerKWh": 0.2}}}), SETUP + 2)
        assert offered.view()["offer"] == {"objective": {"reduceKW": 3, "minPricePerKWh": 0.2}}

        window = handlers.execute(s, c.parse_cancel_window(peak, KEY), SETUP + 3)
        assert isinstance(window, WindowResult) and (window.key, window.state) == (KEY, "cancelled")
        assert window.note == "cancelled by the operator" and window.view()["start"] == "2026-11-30T21:00:00Z"

        ended = handlers.execute(s, c.CancelProgram(peak), SETUP + 4)
        assert ended.state == "cancelled" and not any(publishing.is_open(w.state) for w in ended.next_windows)

        gone = handlers.execute(s, c.parse_delete_grid_node("other"), SETUP + 5)
        assert gone == GridNodeDeleted("other") and gone.view() == {"name": "other", "deleted": True}
    json.dumps([r.view() for r in (node, updated, joined, confirmed, offered, window, ended, gone)])  # JSON-ready


# --------------------------------------------------------------------------- the state tables


def test_the_state_tables_answer_their_callers() -> None:
    assert [s for s in publishing.WindowState if publishing.is_open(s)] == ["planned", "published"]
    assert publishing.can("planned", publishing.Action.CANCEL) and not publishing.can("missed", "cancel")
    assert publishing.is_published("published") and not publishing.is_published("planned")
    assert [s for s in lifecycle.State if lifecycle.is_closed(s)] == ["cancelled", "ended"]
    assert [s for s in lifecycle.State if lifecycle.is_member(s)] == ["active", "paused"]
    assert lifecycle.can("paused", "resume") and not lifecycle.can("active", "resume")
    assert lifecycle.START_STATES == {"pending", "active"}
    with pytest.raises(ValueError):
        publishing.is_open("republished")
    with pytest.raises(lifecycle.EnrollmentError):
        lifecycle.is_closed("gone")


# ------------------------------------------------------------------- Beckn: N devices, device k


def _request(action: str, message: dict[str, Any], transaction_id: str, now: int) -> Request:
    ctx = Context(domain="deg:flex", location=Location(country_code="USA", city_code="std:212"), action=action,
                  version="1.1.0", bap_id="bap.example.org", bap_uri="https://bap.example.org/beckn",
                  bpp_id=PROVIDER.bpp_id, bpp_uri=PROVIDER.bpp_uri, transaction_id=transaction_id,
                  message_id=str(uuid.uuid4()), timestamp=datetime.fromtimestamp(now, timezone.utc),
                  ttl=parse_duration("PT30S"))
    return Request(ctx, message)


def _fulfillment(name: str, *, kind: str | None = None, curve: Any = None) -> dict[str, Any]:
    tags = [("lfdi", lfdi(name)), ("kind", kind), ("grid-node", "feeder-1"),
            ("bid-curve", None if curve is None else json.dumps(curve))]
    return {"type": "DER", "tags": [{"descriptor": {"code": "der"}, "list": [
        {"descriptor": {"code": code}, "value": v} for code, v in tags if v is not None]}]}


def _order(program_id: int, fulfillments: list[dict[str, Any]]) -> dict[str, Any]:
    return {"order": {"provider": {"id": PROVIDER.bpp_id}, "items": [{"id": f"program-{program_id}"}],
                      "billing": {"name": "Ada Lovelace"}, "fulfillments": fulfillments}}


@pytest.mark.parametrize(
    ("name", "bad", "code", "path"),
    [("battery-2", {"kind": "pv"}, ErrorCode.FULFILLMENT_UNAVAILABLE, "message.order.fulfillments[2]"),
     ("never-registered", {}, ErrorCode.FULFILLMENT_UNAVAILABLE, "message.order.fulfillments[2]"),
     ("battery-2", {"curve": TOO_MUCH}, ErrorCode.INVALID_REQUEST, "message.order.fulfillments[2].tags[0].list[2].value")],
)
def test_a_confirm_with_a_bad_kth_device_stores_nothing(world, database, monkeypatch, name: str, bad: dict[str, Any],  # noqa: ANN001
                                                         code: ErrorCode, path: str) -> None:
    """Devices 0 and 1 are fine, device 2 is not: nothing is stored — no device is even written
    before every one is checked — and the error names device 2's path."""
    with database.transaction() as s:  # battery-0 leaves the operator's enrollment, so the order may take it
        handlers.execute(s, c.parse_enrollment_event(world["peak"], world["enrollment"], "cancel"), SETUP)
    tx = str(uuid.uuid4())
    good = [_fulfillment("battery-0", curve=CURVE), _fulfillment("battery-1")]
    with database.transaction() as s:
        draft = handle(s, _request("init", _order(world["peak"], good), tx, SETUP + 10), PROVIDER, SETUP + 10)
    stored: list[int] = []
    real_store = enrollments.store_enrollment
    monkeypatch.setattr(enrollments, "store_enrollment",
                        lambda session, checked, now: stored.append(checked.device_id) or real_store(session, checked, now))
    before = snapshot(database)
    with database.transaction() as s:
        with pytest.raises(BecknError) as info:
            handle(s, _request("confirm", _order(world["peak"], [*good, _fulfillment(name, **bad)]), tx, SETUP + 20),
                   PROVIDER, SETUP + 20)
    assert (info.value.code, info.value.path) == (code, path), info.value
    assert lfdi(name) in info.value.message
    assert stored == []  # device 2 was refused before device 0 or 1 was stored
    assert snapshot(database) == before
    # the same order without device 2 confirms, every device stored
    with database.transaction() as s:
        confirmed = handle(s, _request("confirm", _order(world["peak"], good), tx, SETUP + 30), PROVIDER, SETUP + 30)
    assert confirmed["order"]["id"] == draft["order"]["id"] and confirmed["order"]["status"] == "ACTIVE"
    assert sorted(stored) == sorted([world["devices"]["battery-0"], world["devices"]["battery-1"]])
