"""DER programs and controls as a device walks them: EndDevice → FunctionSetAssignments →
DERProgramList → DERProgram → DERControlList / ActiveDERControlList / DefaultDERControl, with
EventStatus computed at the moment of the request, and the operator's side that feeds them."""

from __future__ import annotations

import pytest

import server.api.sep2 as views
from server.sep2 import codec
from server.sep2.events import LIST_GRACE_SECONDS
from server.sep2.derp import DefaultDERControl, DERControl, DERControlList, DERProgram, DERProgramList
from server.sep2.fsa import FunctionSetAssignments, FunctionSetAssignmentsList
from server.sep2.models import EndDevice
from server.services.sep2 import derp, edev
from server.services.errors import Invalid, NotFound

T0 = 1_800_000_000


class Clock:
    """The server's wall clock and its cache clock, moved together by the test (as real time
    moves both). `tick()` lets a moment pass, so writes made 'elsewhere' are noticed."""

    def __init__(self, app, monkeypatch):  # noqa: ANN001
        self.t = float(T0)
        monkeypatch.setattr(views, "now", lambda: int(self.t))
        monkeypatch.setattr(views, "now_exact", lambda: self.t)
        app.extensions["derflex"].clock = lambda: self.t

    def __getitem__(self, _i: int) -> int:
        return int(self.t)

    def __setitem__(self, _i: int, value: int) -> None:
        self.t = float(value)

    def tick(self, seconds: float = 1.0) -> None:
        self.t += seconds


@pytest.fixture
def clock(app, monkeypatch) -> Clock:  # noqa: ANN001
    return Clock(app, monkeypatch)


@pytest.fixture
def world(database, cast):  # noqa: ANN001, ANN201
    with database.transaction() as s:
        owner = edev.register_out_of_band(s, cast["owner"].lfdi, 0).id
        other = edev.register_out_of_band(s, cast["other"].lfdi, 0).id
        prog = derp.create_der_program(s, description="Peak Saver", primacy=2, now=T0 - 100).id
        derp.add_members(s, prog, [owner, other])
        derp.set_default_control(s, prog, {"opModMaxLimW": 10000})
    return {"owner": owner, "other": other, "program": prog}


def publish(database, program: int, start: int, duration: int = 600, device: int | None = None,  # noqa: ANN001
            control: dict | None = None, now: int = T0) -> str:
    with database.transaction() as s:
        base = derp.control_base(control or {"opModFixedW": 5000})
        return derp.create_events(s, program, start=start, duration=duration, controls=[(device, base)], now=now)[0].mrid


def get(client, path: str, model: type, sep2_schema):  # noqa: ANN001, ANN201
    resp = client.get(path)
    assert resp.status_code == 200, (path, resp.data)
    sep2_schema(resp.data)
    return codec.parse(resp.data, model)


def walk_to_controls(client, edev_id: int, sep2_schema) -> DERProgram:  # noqa: ANN001
    """Follow links only, never build a URI: as a 2030.5 client must."""
    ed = get(client, f"/edev/{edev_id}", EndDevice, sep2_schema)
    fsa_list = get(client, ed.function_set_assignments_list_link.href + "?l=10", FunctionSetAssignmentsList, sep2_schema)
    fsa = get(client, fsa_list.function_set_assignments[0].href, FunctionSetAssignments, sep2_schema)
    programs = get(client, fsa.der_program_list_link.href + "?l=10", DERProgramList, sep2_schema)
    assert fsa.der_program_list_link.all == programs.all == 1
    return get(client, programs.der_programs[0].href, DERProgram, sep2_schema)


def controls(client, program: DERProgram, sep2_schema, active: bool = False) -> list[DERControl]:  # noqa: ANN001
    link = program.active_der_control_list_link if active else program.der_control_list_link
    return get(client, link.href + "?l=100", DERControlList, sep2_schema).der_controls


def test_an_event_through_its_life(world, cast, client_for, database, clock, sep2_schema) -> None:  # noqa: ANN001
    c = client_for(cast["owner"])
    mrid = publish(database, world["program"], start=T0 + 300)
    program = walk_to_controls(c, world["owner"], sep2_schema)
    assert program.primacy == 2
    [ev] = controls(c, program, sep2_schema)
    assert (ev.mrid, ev.event_status.current_status, ev.event_status.date_time) == (mrid, 0, T0)
    assert ev.response_required == "03" and ev.reply_to and ev.der_control_base.op_mod_fixed_w == 5000
    assert controls(c, program, sep2_schema, active=True) == []
    clock[0] = T0 + 300  # the cached list must not outlive the transition
    [ev] = controls(c, program, sep2_schema)
    assert (ev.event_status.current_status, ev.event_status.date_time) == (1, T0 + 300)
    assert [e.mrid for e in controls(c, program, sep2_schema, active=True)] == [mrid]
    assert get(c, ev.href, DERControl, sep2_schema).mrid == mrid
    clock[0] = T0 + 900  # ended: listed a few seconds more (clients' clocks lag), never active
    assert [e.event_status.current_status for e in controls(c, program, sep2_schema)] == [1]
    assert controls(c, program, sep2_schema, active=True) == []
    clock[0] = T0 + 900 + LIST_GRACE_SECONDS  # no "completed": it drops out
    assert controls(c, program, sep2_schema) == []
    assert c.get(ev.href).status_code == 404


def test_cancellation_stays_listed_until_the_original_end(world, cast, client_for, database, clock, sep2_schema) -> None:  # noqa: ANN001
    c = client_for(cast["owner"])
    mrid = publish(database, world["program"], start=T0 + 300)
    program = walk_to_controls(c, world["owner"], sep2_schema)
    assert controls(c, program, sep2_schema)[0].event_status.current_status == 0
    with database.transaction() as s:
        derp.cancel_event(s, mrid, T0 + 10, randomized=True)
    clock[0] = T0 + 800  # the cancellation was written elsewhere; time passed since
    [ev] = controls(c, program, sep2_schema)
    assert (ev.event_status.current_status, ev.event_status.date_time) == (3, T0 + 10)
    assert controls(c, program, sep2_schema, active=True) == []
    clock[0] = T0 + 900 + LIST_GRACE_SECONDS
    assert controls(c, program, sep2_schema) == []


def test_a_newer_event_for_the_same_device_supersedes(world, cast, client_for, database, clock, sep2_schema) -> None:  # noqa: ANN001
    c = client_for(cast["owner"])
    old = publish(database, world["program"], start=T0 + 300, device=world["owner"])
    new = publish(database, world["program"], start=T0 + 400, device=world["owner"], control={"opModFixedW": 2500}, now=T0 + 1)
    program = walk_to_controls(c, world["owner"], sep2_schema)
    clock[0] = T0 + 450
    listed = {e.mrid: e for e in controls(c, program, sep2_schema)}
    assert (listed[old].event_status.current_status, listed[old].event_status.date_time) == (4, T0 + 400)
    assert listed[new].event_status.current_status == 1
    # the other member sees neither: they were for the owner alone
    other = walk_to_controls(client_for(cast["other"]), world["other"], sep2_schema)
    assert controls(client_for(cast["other"]), other, sep2_schema) == []


def test_list_order_and_paging(world, cast, client_for, database, clock, sep2_schema) -> None:  # noqa: ANN001
    c = client_for(cast["owner"])
    for i in range(24):
        publish(database, world["program"], start=T0 + 1000 + 100 * (i % 12), duration=50, now=T0 + i)
    clock[0] = T0 + 30
    program = walk_to_controls(c, world["owner"], sep2_schema)
    page = get(c, program.der_control_list_link.href + "?l=10", DERControlList, sep2_schema)
    assert (page.all, page.results) == (24, 10)
    everything = controls(c, program, sep2_schema)
    keys = [(e.interval.start, -e.creation_time) for e in everything]
    assert keys == sorted(keys)
    assert get(c, program.der_control_list_link.href, DERControlList, sep2_schema).results == 1


def test_default_control_keeps_its_mrid_and_bumps_its_version(world, cast, client_for, database, clock, sep2_schema) -> None:  # noqa: ANN001
    c = client_for(cast["owner"])
    program = walk_to_controls(c, world["owner"], sep2_schema)
    first = get(c, program.default_der_control_link, DefaultDERControl, sep2_schema)
    assert first.der_control_base.op_mod_max_lim_w == 10000
    with database.transaction() as s:
        derp.set_default_control(s, world["program"], {"opModMaxLimW": 5000})
        derp.set_default_control(s, world["program"], {"opModMaxLimW": 5000})  # no change, no bump
    clock.tick()
    second = get(c, program.default_der_control_link, DefaultDERControl, sep2_schema)
    assert second.mrid == first.mrid and second.version == first.version + 1
    assert second.der_control_base.op_mod_max_lim_w == 5000


def test_nobody_sees_another_devices_programs(world, cast, client_for, sep2_schema) -> None:  # noqa: ANN001
    owner = world["owner"]
    for caller in ("other", "aggregator", "unregistered"):
        c = client_for(cast[caller])
        for path in (f"/edev/{owner}/fsa", f"/edev/{owner}/fsa/1", f"/edev/{owner}/fsa/1/derp",
                     f"/edev/{owner}/derp/{world['program']}", f"/edev/{owner}/derp/{world['program']}/derc",
                     f"/edev/{owner}/derp/{world['program']}/actderc", f"/edev/{owner}/derp/{world['program']}/dderc"):
            assert c.get(path).status_code == 404, (caller, path)
    assert client_for(None).get(f"/edev/{owner}/fsa").status_code == 403


def test_a_device_outside_the_program_does_not_reach_it(database, cast, client_for, sep2_schema) -> None:  # noqa: ANN001
    with database.transaction() as s:
        dev = edev.register_out_of_band(s, cast["owner"].lfdi, 0).id
        prog = derp.create_der_program(s, description=None, primacy=0, now=0).id
    c = client_for(cast["owner"])
    assert get(c, f"/edev/{dev}/fsa/1/derp", DERProgramList, sep2_schema).all == 0
    assert c.get(f"/edev/{dev}/derp/{prog}").status_code == 404


@pytest.mark.parametrize(
    ("spec", "message"),
    [({}, "at least one"), ({"opModFixedW": 10001}, "out of range"), ({"opModFixedW": True}, "integer"),
     ({"opModConnect": 1}, "true or false"), ({"opModBogus": 1}, "unsupported"),
     ({"opModVoltVar": True}, "names a DER curve"), ({"opModVoltVar": 0}, "names a DER curve"),
     ({"opModTargetW": {"value": 40000, "multiplier": 0}}, "out of range"), ({"opModTargetW": 5}, "opModTargetW")],
)
def test_bad_controls_are_refused(spec: dict, message: str) -> None:
    with pytest.raises(Invalid, match=message):
        derp.control_base(spec)


def test_bad_events_are_refused_and_store_nothing(world, database) -> None:  # noqa: ANN001
    base = derp.control_base({"opModFixedW": 1})
    cases = [dict(start=T0, duration=0), dict(start=T0 - 1000, duration=10), dict(start=-5, duration=10),
             dict(start=T0, duration=10, randomize_start=4000)]
    for kw in cases:
        with pytest.raises(Invalid), database.transaction() as s:
            derp.create_events(s, world["program"], controls=[(None, base)], now=T0, **kw)
    with pytest.raises(Invalid, match="not members"), database.transaction() as s:
        stranger = edev.register_out_of_band(s, "AB" * 20, 0).id
        derp.create_events(s, world["program"], start=T0, duration=10, controls=[(stranger, base)], now=T0)
    with pytest.raises(NotFound), database.transaction() as s:
        derp.create_events(s, 999, start=T0, duration=10, controls=[(None, base)], now=T0)
    with database.transaction() as s:
        from server.db import derp as store

        assert store.der_program_events(s, world["program"], 0) == []


@pytest.mark.parametrize("description", ["nul\x00", "tab\tand", "x" * 33])
def test_descriptions_must_be_printable_string32(database, description: str) -> None:  # noqa: ANN001
    with pytest.raises(Invalid), database.transaction() as s:
        derp.create_der_program(s, description=description, primacy=0, now=0)


def test_events_more_than_a_year_ahead_are_refused(world, database) -> None:  # noqa: ANN001
    with pytest.raises(Invalid, match="within a year"), database.transaction() as s:
        derp.create_events(s, world["program"], start=T0 + 400 * 86_400, duration=60,
                           controls=[(None, derp.control_base({"opModFixedW": 1}))], now=T0)


def test_a_cached_list_turns_active_at_the_start_not_a_second_later(world, cast, client_for, database, clock, sep2_schema) -> None:  # noqa: ANN001
    """The cached document's life ends at the transition itself (exact clock, not whole seconds)."""
    c = client_for(cast["owner"])
    publish(database, world["program"], start=T0 + 300)
    program = walk_to_controls(c, world["owner"], sep2_schema)
    clock.t = T0 + 299.6
    assert controls(c, program, sep2_schema)[0].event_status.current_status == 0  # cached now
    clock.t = T0 + 300.0
    assert controls(c, program, sep2_schema)[0].event_status.current_status == 1
