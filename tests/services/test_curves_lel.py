"""The services of DER curves and log events, without HTTP: resolving a control's curve links,
when a curve stops being in use, how stored controls show their links per device, the log bound."""

from __future__ import annotations

import pytest

from server.scope import Scope
from server.sep2 import codec
from server.sep2.derp import DERControlBase
from server.sep2.log import LogEvent
from server.sep2.paging import Page
from server.services.errors import Conflict, Invalid, NotFound
from server.services.sep2 import dc, derp, edev, lel
from server.services.sep2.mappers import dc as dc_mapper
from server.services.sep2.mappers import derp as derp_mapper

T0 = 1_800_000_000
VV = {"curveType": 11, "yRefType": 2, "CurveData": [{"xvalue": 95, "yvalue": 20}, {"xvalue": 105, "yvalue": -20}]}


@pytest.fixture
def world(database, cast):  # noqa: ANN001, ANN201
    with database.transaction() as s:
        device = edev.register_out_of_band(s, cast["owner"].lfdi, 0).id
        program = derp.create_der_program(s, description=None, primacy=1, now=T0).id
        other = derp.create_der_program(s, description=None, primacy=2, now=T0).id
        derp.add_members(s, program, [device])
        curve = dc.add_curve(s, program, VV, T0)["id"]
    return {"device": device, "program": program, "other": other, "curve": curve}


def test_every_form_of_a_link_resolves_to_one_stored_token(world, database) -> None:  # noqa: ANN001
    p, c = world["program"], world["curve"]
    with database.transaction() as s:
        for given in (c, str(c), f"/edev/77/derp/{p}/dc/{c}", f"dc:{c}"):
            base = dc.linked_control(s, p, {"opModVoltVar": given})
            assert base.op_mod_volt_var == f"dc:{c}"
        plain = derp.control_base({"opModFixedW": 10})
        assert dc.link_curves(s, p, plain) is plain  # nothing to resolve: the same object
        with pytest.raises(Invalid, match="names no curve"):
            dc.linked_control(s, world["other"], {"opModVoltVar": f"/edev/1/derp/{p}/dc/{c}"})
        with pytest.raises(Invalid, match="has no curve"):
            dc.linked_control(s, world["other"], {"opModVoltVar": c})  # a curve of another program
        with pytest.raises(NotFound):
            dc.linked_control(s, 999, {"opModVoltVar": c})


def test_unresolved_links_are_never_stored(world, database) -> None:  # noqa: ANN001
    with database.transaction() as s:
        raw = derp.control_base({"opModVoltVar": world["curve"]})
        assert raw.op_mod_volt_var == str(world["curve"])
        with pytest.raises(Invalid, match="must be resolved"):
            derp.set_default_control(s, world["program"], raw)
        with pytest.raises(Invalid, match="must be resolved"):
            derp.create_events(s, world["program"], start=T0 + 100, duration=60, controls=[(None, raw)], now=T0)


def test_a_curve_is_free_again_once_the_events_linking_it_have_ended(world, database) -> None:  # noqa: ANN001
    p, c = world["program"], world["curve"]
    with database.transaction() as s:
        base = dc.linked_control(s, p, {"opModVoltVar": c})
        derp.create_events(s, p, start=T0 + 100, duration=60, controls=[(None, base)], now=T0)
    with database.transaction() as s:
        with pytest.raises(Conflict):
            dc.delete_curve(s, p, c, T0 + 50)
        with pytest.raises(Conflict):  # ended, but still listed for the grace seconds
            dc.delete_curve(s, p, c, T0 + 161)
        dc.delete_curve(s, p, c, T0 + 200)
    with database.transaction() as s:
        assert dc.list_curves(s, p)["all"] == 0


def test_a_stored_control_shows_each_device_its_own_href() -> None:
    stored = derp_mapper.der_control_base_xml(DERControlBase(op_mod_volt_var="dc:5", op_mod_watt_pf="dc:6",
                                                             op_mod_max_lim_w=100))
    base = derp_mapper.stored_der_control_base(stored)
    seen = dc_mapper.device_control_base(base, 3, 2)
    assert (seen.op_mod_volt_var, seen.op_mod_watt_pf, seen.op_mod_max_lim_w) == ("/edev/3/derp/2/dc/5", "/edev/3/derp/2/dc/6", 100)
    assert base.op_mod_volt_var == "dc:5"  # the shared stored model is untouched
    plain = derp_mapper.stored_der_control_base(derp_mapper.der_control_base_xml(DERControlBase(op_mod_fixed_w=1)))
    assert dc_mapper.device_control_base(plain, 3, 2) is plain
    assert derp_mapper.der_control_base_json(stored) == {"opModMaxLimW": 100, "opModVoltVar": 5, "opModWattPF": 6}


def test_the_log_bound_keeps_the_newest_arrivals_whatever_their_clocks_say(world, database) -> None:  # noqa: ANN001
    scope = Scope.operator()
    with database.transaction() as s:
        for i, created in enumerate((500, 100, 400, 200, 300)):  # a device clock all over the place
            posted = LogEvent(created_date_time=created, function_set=0, log_event_code=i, log_event_id=i,
                              log_event_pen=1, profile_id=1)
            lel.post_log_event(s, scope, world["device"], posted, T0 + i, keep=2)
    with database.transaction() as s:
        kept = lel.device_log_events(s, world["device"])["log_events"]
    assert [e["logEventCode"] for e in kept] == [4, 3]  # the last two to arrive, newest createdDateTime first
    with database.read() as conn:
        listing = lel.log_event_list(conn, scope, world["device"], Page(limit=10), 900)
    assert [e.created_date_time for e in listing.log_events] == [300, 200]
    assert listing.all == 2 and b"pollRate=\"900\"" in codec.render(listing)
