"""CSIP-AUS extensions through the 2030.5 and admin APIs: DOE limits in controls and default
controls, doeModes bitmaps, ConnectionPoint (NMI), the aggregator's own EndDevice, sites as
targets, device removal and client revocation. Every document served is validated against the
2018 schema and, where it carries csipaus elements, against csipaus-core.xsd (sep2_schema)."""

from __future__ import annotations

import dataclasses
import time

import pytest
from lxml import etree

from server.scope import Scope
from server.sep2 import codec
from server.sep2.fsa import FunctionSetAssignmentsList
from server.sep2.csipaus import CSIPAUS_NS, ConnectionPoint, nmi_checksum, nmi_problem
from server.sep2.der import ActivePower, DERCapability, DERSettings
from server.sep2.derp import DefaultDERControl, DERControlBase, DERControlList
from server.sep2.models import NS, EndDevice, EndDeviceList
from server.services.sep2 import edev
from tests.builders import registered_cast

CP_BODY = (f'<csipaus:ConnectionPoint xmlns="{NS}" xmlns:csipaus="{CSIPAUS_NS}" '
           'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="" href="">'
           '<csipaus:id></csipaus:id><csipaus:connectionPointId>{}</csipaus:connectionPointId>'
           '</csipaus:ConnectionPoint>')  # as cactus-client (envoy's schema) sends it
NMI, NMI_2 = "41020000002", "41020000026"


def _csipaus(body: bytes) -> dict[str, str]:
    """The csipaus elements of a document: local name → text (values of nested 2030.5 children)."""
    doc = etree.fromstring(body)
    found = {}
    for el in doc.iter(f"{{{CSIPAUS_NS}}}*"):
        found[etree.QName(el).localname] = el.text if len(el) == 0 else "/".join(c.text for c in el)
    return found


# ---------------------------------------------------------------------------------------- wire


def test_doe_limits_round_trip_and_validate_against_both_schemas(sep2_schema) -> None:  # noqa: ANN001
    base = DERControlBase(op_mod_connect=True, ramp_tms=3000,
                          op_mod_imp_lim_w=ActivePower(multiplier=3, value=5),
                          op_mod_exp_lim_w=ActivePower(multiplier=2, value=15),
                          op_mod_gen_lim_w=ActivePower(multiplier=0, value=0),
                          op_mod_load_lim_w=ActivePower(multiplier=1, value=-32768))
    doc = DefaultDERControl(href="/x", mrid="AB" * 16, der_control_base=base, set_grad_w=100)
    body = codec.render(doc)
    sep2_schema(body)  # csipaus-core.xsd, and 2018 with the extensions left out
    assert codec.parse(body, DefaultDERControl) == doc
    # csipaus-core's order, after every 2030.5 element of DERControlBase
    assert [body.index(f"csipaus:{n}".encode()) for n in ("opModImpLimW", "opModExpLimW", "opModGenLimW",
                                                           "opModLoadLimW")] == sorted(
        body.index(f"csipaus:{n}".encode()) for n in ("opModImpLimW", "opModExpLimW", "opModGenLimW", "opModLoadLimW"))
    assert body.index(b"<rampTms>") < body.index(b"csipaus:opModImpLimW")
    # the validator does check them: a limit outside DERControlBase is not CSIP-AUS
    misplaced = body.replace(b"<mRID>", b'<csipaus:opModExpLimW xmlns:csipaus="https://csipaus.org/ns">'
                             b"<multiplier>0</multiplier><value>1</value></csipaus:opModExpLimW><mRID>")
    with pytest.raises(AssertionError, match="CSIP-AUS"):
        sep2_schema(misplaced)


def test_doe_mode_bitmaps_round_trip(sep2_schema) -> None:  # noqa: ANN001
    cap = DERCapability(modes_supported="00000080", rtg_max_w=ActivePower(multiplier=0, value=5000), type=80,
                        doe_modes_supported="0F")
    sett = DERSettings(set_grad_w=0, set_max_w=ActivePower(multiplier=0, value=5000), updated_time=1,
                       doe_modes_enabled="03")
    for doc in (cap, sett):
        body = codec.render(doc)
        sep2_schema(body)
        assert codec.parse(body, type(doc)) == doc
    with pytest.raises(codec.DecodeError) as err:  # HexBinary8: one byte
        codec.parse(codec.render(cap).replace(b">0F<", b">0F0F<"), DERCapability)
    assert err.value.reason_code == 1


def test_connection_point_is_a_csipaus_root() -> None:
    posted = codec.parse(CP_BODY.format(NMI).encode(), ConnectionPoint)
    assert posted.posted_id() == NMI
    legacy = f'<csipaus:ConnectionPoint xmlns="{NS}" xmlns:csipaus="{CSIPAUS_NS}"><csipaus:id>{NMI}</csipaus:id></csipaus:ConnectionPoint>'
    assert codec.parse(legacy.encode(), ConnectionPoint).posted_id() == NMI  # CSIP-AUS 1.1's name
    with pytest.raises(codec.DecodeError):  # the csipaus root, not a 2030.5 one
        codec.parse(f'<ConnectionPoint xmlns="{NS}"/>'.encode(), ConnectionPoint)
    with pytest.raises(codec.DecodeError):  # and no other document takes a csipaus root
        codec.parse(CP_BODY.format(NMI).encode(), EndDevice)


def test_nmi_rules() -> None:
    assert nmi_checksum("4102000000") == 2 and nmi_checksum("4102000002") == 6  # cactus-client's examples
    assert nmi_problem(NMI) is None and nmi_problem("4102000000") is None and nmi_problem("QB01234567") is None
    for bad in ("NOTAVALIDID", "41020000003", "410200000", "4102000000000", "41020o0000", "IO01234567"):
        assert nmi_problem(bad) is not None, bad


# ------------------------------------------------------------------------- controls over 2030.5


def _program_with(operator, device_ids: list[int], **body) -> int:  # noqa: ANN001
    resp = operator("POST", "/der-programs", json={"primacy": 1, **body})
    assert resp.status_code == 201, resp.get_json()
    program = resp.get_json()["id"]
    assert operator("POST", f"/der-programs/{program}/members", json={"device_ids": device_ids}).status_code == 200
    return program


def test_an_operators_doe_control_and_default_reach_the_device(operator, cast, client_for, database,
                                                               sep2_schema) -> None:  # noqa: ANN001
    ids = registered_cast(database, cast, client_for)
    program = _program_with(operator, [ids["owner"]])
    limits = {"opModExpLimW": {"value": 15, "multiplier": 2}, "opModImpLimW": {"value": 5, "multiplier": 3},
              "opModGenLimW": {"value": 0, "multiplier": 0}, "opModLoadLimW": {"value": 2000, "multiplier": 0}}
    resp = operator("POST", f"/der-programs/{program}/events",
                    json={"start": int(time.time()) - 1, "duration": 300, "control": limits})
    assert resp.status_code == 201, resp.get_json()
    assert resp.get_json()["events"][0]["control"] == limits  # read back by the 2030.5 names
    assert set(resp.get_json()["events"][0]["controls"]) == set(limits)
    resp = operator("PUT", f"/der-programs/{program}/default-control",
                    json={"opModExpLimW": {"value": 2000, "multiplier": 0}, "setGradW": 100})
    assert resp.status_code == 204, resp.get_json()

    device = client_for(cast["owner"])
    got = device.get(f"/edev/{ids['owner']}/derp/{program}/derc?l=10")
    assert got.status_code == 200
    sep2_schema(got.data)
    (control,) = codec.parse(got.data, DERControlList).der_controls
    assert control.event_status.current_status == 1
    assert control.der_control_base.op_mod_exp_lim_w == ActivePower(value=15, multiplier=2)
    assert _csipaus(got.data) == {"opModImpLimW": "3/5", "opModExpLimW": "2/15", "opModGenLimW": "0/0",
                                  "opModLoadLimW": "0/2000"}
    got = device.get(f"/edev/{ids['owner']}/derp/{program}/dderc")
    sep2_schema(got.data)
    default = codec.parse(got.data, DefaultDERControl)
    assert default.der_control_base.op_mod_exp_lim_w == ActivePower(value=2000, multiplier=0)
    assert default.set_grad_w == 100


def test_doe_limits_out_of_range_are_refused_naming_the_field(operator, cast, client_for, database) -> None:  # noqa: ANN001
    ids = registered_cast(database, cast, client_for)
    program = _program_with(operator, [ids["owner"]])
    for control, field in (({"opModExpLimW": {"value": 40000, "multiplier": 0}}, "opModExpLimW.value"),
                           ({"opModImpLimW": {"value": 1, "multiplier": 10}}, "opModImpLimW.multiplier"),
                           ({"opModGenLimW": 5}, "opModGenLimW"),
                           ({"opModLoadLimW": {"value": 1}}, "opModLoadLimW.multiplier")):
        resp = operator("POST", f"/der-programs/{program}/events",
                        json={"start": int(time.time()) + 60, "duration": 60, "control": control})
        assert resp.status_code == 400 and field in resp.get_json()["detail"], (control, resp.get_json())
    assert operator("GET", f"/der-programs/{program}/events").get_json()["all"] == 0


def test_doe_modes_are_stored_and_served_back(cast, client_for, database, sep2_schema) -> None:  # noqa: ANN001
    ids = registered_cast(database, cast, client_for)
    device = client_for(cast["owner"])
    cap = DERCapability(modes_supported="00000080", rtg_max_w=ActivePower(multiplier=0, value=5000), type=80,
                        doe_modes_supported="03")
    sett = DERSettings(set_grad_w=0, set_max_w=ActivePower(multiplier=0, value=5000), updated_time=int(time.time()),
                       doe_modes_enabled="04")
    for doc, path in ((cap, "dercap"), (sett, "derg")):
        href = f"/edev/{ids['owner']}/der/1/{path}"
        assert device.put(href, data=codec.render(doc)).status_code == 204
        got = device.get(href)
        sep2_schema(got.data)
        assert codec.parse(got.data, type(doc)) == dataclasses.replace(doc, href=href)
        assert _csipaus(got.data) == ({"doeModesSupported": "03"} if path == "dercap" else {"doeModesEnabled": "04"})


# ------------------------------------------------------------------------------ ConnectionPoint


def test_a_device_sets_its_connection_point(cast, client_for, database, sep2_schema) -> None:  # noqa: ANN001
    ids = registered_cast(database, cast, client_for)
    device = client_for(cast["owner"])
    ed = device.get(f"/edev/{ids['owner']}")
    sep2_schema(ed.data)
    link = codec.parse(ed.data, EndDevice).connection_point_link
    assert link == f"/edev/{ids['owner']}/cp"
    assert device.get(link).status_code == 404  # nothing set yet

    resp = device.put(link, data=CP_BODY.format(NMI))
    assert resp.status_code == 201 and resp.headers["Location"] == link
    got = device.get(resp.headers["Location"])
    assert got.status_code == 200
    sep2_schema(got.data)
    assert got.data.startswith(b"<csipaus:ConnectionPoint")
    assert codec.parse(got.data, ConnectionPoint).connection_point_id == NMI

    resp = device.post(link, data=CP_BODY.format(NMI_2))  # POST does the same; an update is 204
    assert resp.status_code == 204 and resp.headers["Location"] == link
    assert codec.parse(device.get(link).data, ConnectionPoint).connection_point_id == NMI_2

    bad = device.put(link, data=CP_BODY.format("NOTAVALIDID"))
    assert bad.status_code == 400 and b"<reasonCode>1</reasonCode>" in bad.data
    assert codec.parse(device.get(link).data, ConnectionPoint).connection_point_id == NMI_2  # unchanged

    # another device neither sees nor sets it; the aggregator sets that of a device it manages
    assert client_for(cast["other"]).get(link).status_code == 404
    assert client_for(cast["other"]).put(link, data=CP_BODY.format(NMI)).status_code == 404
    agg = client_for(cast["aggregator"])
    managed_link = f"/edev/{ids['managed']}/cp"
    assert agg.put(managed_link, data=CP_BODY.format(NMI)).status_code == 201
    assert agg.put(link, data=CP_BODY.format(NMI)).status_code == 404


def test_operators_set_and_list_connection_points(operator, cast, client_for, database) -> None:  # noqa: ANN001
    ids = registered_cast(database, cast, client_for)
    for device, nmi in ((ids["owner"], NMI), (ids["other"], NMI), (ids["managed"], NMI_2)):
        resp = operator("PUT", f"/devices/{device}/connection-point", json={"connection_point_id": nmi})
        assert resp.status_code == 200 and resp.get_json()["connection_point_id"] == nmi
    assert operator("GET", "/connection-points").get_json() == {"all": 2, "connection_points": [
        {"connection_point_id": NMI, "device_ids": sorted([ids["owner"], ids["other"]])},
        {"connection_point_id": NMI_2, "device_ids": [ids["managed"]]}]}
    assert operator("GET", f"/devices/{ids['owner']}").get_json()["connection_point_id"] == NMI
    bad = operator("PUT", f"/devices/{ids['owner']}/connection-point", json={"connection_point_id": "41020000003"})
    assert bad.status_code == 400 and "checksum" in bad.get_json()["detail"]
    assert operator("PUT", f"/devices/{ids['owner']}/connection-point", json={"nmi": NMI}).status_code == 400
    assert operator("PUT", f"/devices/{ids['owner']}/connection-point", json={"connection_point_id": None}
                    ).get_json()["connection_point_id"] is None
    assert client_for(cast["owner"]).get(f"/edev/{ids['owner']}/cp").status_code == 404


def test_a_site_is_addressed_by_its_connection_point(operator, cast, client_for, database) -> None:  # noqa: ANN001
    ids = registered_cast(database, cast, client_for)
    for device in (ids["owner"], ids["other"]):
        operator("PUT", f"/devices/{device}/connection-point", json={"connection_point_id": NMI})
    program = _program_with(operator, [ids["managed"]])
    added = operator("POST", f"/der-programs/{program}/members", json={"connection_point_id": NMI})
    assert added.get_json() == {"added": 2}
    resp = operator("POST", f"/der-programs/{program}/events", json={
        "start": int(time.time()) - 1, "duration": 300, "connection_point_id": NMI,
        "control": {"opModExpLimW": {"value": 1500, "multiplier": 0}}})
    assert resp.status_code == 201
    assert sorted(e["device_id"] for e in resp.get_json()["events"]) == sorted([ids["owner"], ids["other"]])
    for role, count in (("owner", 1), ("other", 1)):
        got = client_for(cast[role]).get(f"/edev/{ids[role]}/derp/{program}/derc?l=10")
        assert len(codec.parse(got.data, DERControlList).der_controls) == count
    got = client_for(cast["aggregator"]).get(f"/edev/{ids['managed']}/derp/{program}/derc?l=10")
    assert codec.parse(got.data, DERControlList).der_controls == []  # not at that site
    for body in ({"connection_point_id": NMI_2}, {"connection_point_id": NMI, "device_ids": [1]},
                 {"connection_point_id": "nope"}):
        resp = operator("POST", f"/der-programs/{program}/events",
                        json={"start": int(time.time()), "duration": 60, "control": {"opModConnect": False}, **body})
        assert resp.status_code in (400, 404), body


# ----------------------------------------------------------------- the aggregator's own EndDevice


def test_naming_an_aggregator_registers_its_own_end_device(operator, pki, client_for, sep2_schema) -> None:  # noqa: ANN001
    agg = pki.issue("csip-agg", kind="aggregator")
    der_lfdi = "C0" * 20
    resp = operator("POST", "/aggregators", json={"lfdi": agg.lfdi, "name": "Envelope Co"})
    assert resp.status_code == 201
    own_id = resp.get_json()["device_id"]
    assert operator("POST", "/aggregators", json={"lfdi": agg.lfdi, "name": "Envelope Co 2"}
                    ).get_json()["device_id"] == own_id  # naming again registers nothing new
    assert operator("POST", "/devices", json={"lfdi": der_lfdi, "aggregator_lfdi": agg.lfdi}).status_code == 201
    listing = client_for(agg).get("/edev?l=10")
    sep2_schema(listing.data)
    devices = codec.parse(listing.data, EndDeviceList).end_devices
    assert sorted(d.lfdi for d in devices) == sorted([agg.lfdi, der_lfdi])
    # exactly one SubscriptionList: under its own EndDevice (CSIP-AUS)
    assert [d.lfdi for d in devices if d.subscription_list_link is not None] == [agg.lfdi]
    assert all(d.connection_point_link for d in devices)
    # it has no DER and follows no program: no (empty) FunctionSetAssignments to mislead a client
    # that walks every EndDevice's FSAs (cactus S-ALL-25 took such an empty FSA 1 as the latest)
    own = next(d for d in devices if d.lfdi == agg.lfdi)
    assert own.function_set_assignments_list_link.all == 0
    fsas = client_for(agg).get(f"/edev/{own_id}/fsa?l=10")
    sep2_schema(fsas.data)
    assert codec.parse(fsas.data, FunctionSetAssignmentsList).all == 0
    der = next(d for d in devices if d.lfdi == der_lfdi)  # its DER's device keeps its FSA 1
    assert der.function_set_assignments_list_link.all == 1


# ------------------------------------------------------------------------------ removing a device


def test_removing_a_device_takes_its_2030_5_data_and_frees_its_lfdi(operator, cast, client_for, database,
                                                                    sep2_schema) -> None:  # noqa: ANN001
    from sqlalchemy import func, select

    from server.db.der import DerCapability
    from server.db.metering import UsagePoint
    from server.db.models import Device
    from tests.builders import CAPABILITY, mirror

    ids = registered_cast(database, cast, client_for)
    device = client_for(cast["owner"])
    href = f"/edev/{ids['owner']}"
    assert device.put(f"{href}/der/1/dercap", data=codec.render(CAPABILITY)).status_code == 204
    assert device.put(f"{href}/cp", data=CP_BODY.format(NMI)).status_code == 201
    mirror(database, cast["owner"].lfdi, 1_700_000_000, [100, 200])
    program = _program_with(operator, [ids["owner"], ids["other"]])
    operator("POST", f"/der-programs/{program}/events", json={"start": int(time.time()) - 1, "duration": 300,
                                                               "device_ids": [ids["owner"]],
                                                               "control": {"opModEnergize": False}})
    with database.transaction() as s:
        assert s.scalar(select(func.count()).select_from(UsagePoint)) == 1

    assert operator("DELETE", f"/devices/{ids['owner']}").status_code == 204
    assert operator("GET", f"/devices/{ids['owner']}").status_code == 404
    assert operator("DELETE", f"/devices/{ids['owner']}").status_code == 404
    assert device.get(href).status_code == 404
    assert codec.parse(device.get("/edev?l=10").data, EndDeviceList).all == 0
    with database.transaction() as s:
        assert s.scalar(select(func.count()).select_from(UsagePoint)) == 0
        assert s.scalar(select(func.count()).select_from(DerCapability)) == 0
        assert s.get(Device, ids["other"]) is not None  # the rest of the program's world stays
    assert operator("GET", f"/der-programs/{program}").get_json()["members"] == [ids["other"]]
    # the LFDI registers afresh, with nothing of the old device
    again = operator("POST", "/devices", json={"lfdi": cast["owner"].lfdi})
    assert again.status_code == 201
    new = again.get_json()["id"]
    assert device.get(f"/edev/{new}/cp").status_code == 404
    assert device.get(f"/edev/{new}/der/1/dercap").status_code == 404


def test_a_device_with_flexibility_records_is_not_removed(operator, database) -> None:  # noqa: ANN001
    from tests.builders import make_world

    world = make_world(database)
    device = world["devices"][0]
    resp = operator("DELETE", f"/devices/{device}")
    assert resp.status_code == 409
    assert "flexibility enrollments" in resp.get_json()["detail"]
    assert operator("GET", f"/devices/{device}").status_code == 200


# ---------------------------------------------------------------------------- revoking a client


def test_a_revoked_client_is_refused_until_restored(operator, cast, client_for, database) -> None:  # noqa: ANN001
    ids = registered_cast(database, cast, client_for)
    device = client_for(cast["owner"])
    assert device.get("/dcap").status_code == 200  # cached now
    assert device.get(f"/edev/{ids['owner']}").status_code == 200
    resp = operator("POST", "/revoked-clients", json={"lfdi": cast["owner"].lfdi.lower(), "reason": "stolen"})
    assert resp.status_code == 201 and resp.get_json()["lfdi"] == cast["owner"].lfdi
    for method, path in (("GET", "/dcap"), ("GET", f"/edev/{ids['owner']}"), ("GET", "/edev"),
                         ("PUT", f"/edev/{ids['owner']}/cp")):
        got = device.open(method, path, data=CP_BODY.format(NMI) if method == "PUT" else None)
        assert got.status_code == 403 and b"<Error" in got.data, (method, path)
    with database.transaction() as s:
        assert edev.visible_device(s, Scope.operator(), ids["owner"]).connection_point_id is None
    assert client_for(cast["other"]).get("/dcap").status_code == 200  # only that certificate
    assert operator("GET", "/revoked-clients").get_json()["revoked_clients"][0]["reason"] == "stolen"
    assert operator("POST", "/revoked-clients", json={"lfdi": "XYZ"}).status_code == 400
    assert operator("DELETE", f"/revoked-clients/{cast['owner'].lfdi}").status_code == 204
    assert operator("DELETE", f"/revoked-clients/{cast['owner'].lfdi}").status_code == 404
    assert device.get("/dcap").status_code == 200
    assert operator("GET", "/revoked-clients").get_json() == {"revoked_clients": []}


def test_a_revocation_reaches_another_process_within_a_second(app, settings, database, cast, client_for,
                                                              operator) -> None:  # noqa: ANN001
    """Two apps on one database stand for two server processes: the revocation goes through one,
    the other — with the client's answers cached — refuses it within its change-counter check."""
    from server.app import create_app
    from tests.conftest import CertClient

    registered_cast(database, cast, client_for)
    other_process = create_app(settings, database)
    there = CertClient(other_process, cast["owner"], settings.proxy_cert_header)
    assert there.get("/dcap").status_code == 200
    assert operator("POST", "/revoked-clients", json={"lfdi": cast["owner"].lfdi}).status_code == 201
    t0 = time.monotonic()
    while there.get("/dcap").status_code != 403:
        assert time.monotonic() - t0 < 1.0, "the other process still answers a revoked client"
        time.sleep(0.02)


def test_bad_connection_point_bodies_get_a_4xx_error_and_change_nothing(cast, client_for, database) -> None:  # noqa: ANN001
    ids = registered_cast(database, cast, client_for)
    device = client_for(cast["owner"])
    link = f"/edev/{ids['owner']}/cp"
    bodies = [b"", b"<x/>", b"\xff\xfe<", CP_BODY.format("4" * 33).encode(), CP_BODY.format("").encode(),
              f'<csipaus:ConnectionPoint xmlns="{NS}" xmlns:csipaus="{CSIPAUS_NS}"><mRID>00</mRID>'
              '</csipaus:ConnectionPoint>'.encode(),
              f'<ConnectionPoint xmlns="{NS}"><connectionPointId>{NMI}</connectionPointId></ConnectionPoint>'.encode(),
              codec.render(EndDevice(sfdi=cast["owner"].sfdi, changed_time=0))]
    for body in bodies:
        resp = device.put(link, data=body)
        assert 400 <= resp.status_code < 500 and b"<reasonCode>" in resp.data, (body, resp.status_code)
    assert device.get(link).status_code == 404
    assert device.put(f"/edev/{ids['owner'] + 100}/cp", data=CP_BODY.format(NMI)).status_code == 404
    assert device.delete(link).status_code == 405
