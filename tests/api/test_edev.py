"""EndDevice rules: in-band registration from the certificate's identity only, duplicates, what a
PUT may change, who may DELETE, Registration PINs, paging, methods, and bad input changing nothing."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from server.db.models import Device
from server.sep2 import codec
from server.sep2.models import EndDevice, EndDeviceList, Error, Registration
from server.services.sep2 import edev


def _count(database) -> int:  # noqa: ANN001
    with database.transaction() as s:
        return s.scalar(select(func.count()).select_from(Device))


def _body(cred, **kw) -> bytes:  # noqa: ANN001
    fields = {"lfdi": cred.lfdi, "sfdi": cred.sfdi, "changed_time": 0, **kw}
    return codec.render(EndDevice(**fields))


def _reason(resp) -> int:  # noqa: ANN001
    return codec.parse(resp.data, Error).reason_code


def test_device_registers_itself_in_band(cast, client_for, database) -> None:  # noqa: ANN001
    c = client_for(cast["owner"])
    resp = c.post("/edev", data=_body(cast["owner"], device_category="0F"))
    assert resp.status_code == 201
    location = resp.headers["Location"]
    got = codec.parse(c.get(location).data, EndDevice)
    assert (got.lfdi, got.sfdi, got.href, got.device_category) == (cast["owner"].lfdi, cast["owner"].sfdi, location, "0F")
    assert got.changed_time > 1_700_000_000


def test_device_may_omit_its_lfdi(cast, client_for) -> None:  # noqa: ANN001
    c = client_for(cast["owner"])
    resp = c.post("/edev", data=codec.render(EndDevice(sfdi=cast["owner"].sfdi, changed_time=0)))
    assert resp.status_code == 201


def test_duplicate_registration_is_refused_and_points_at_the_original(cast, client_for, database) -> None:  # noqa: ANN001
    c = client_for(cast["owner"])
    first = c.post("/edev", data=_body(cast["owner"]))
    again = c.post("/edev", data=_body(cast["owner"]))
    assert again.status_code == 409 and again.headers["Location"] == first.headers["Location"]
    assert _count(database) == 1


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda own, other: _body(other), id="someone-elses-lfdi-and-sfdi"),
        pytest.param(lambda own, other: _body(own, sfdi=other.sfdi), id="wrong-sfdi"),
        pytest.param(lambda own, other: _body(own, lfdi=other.lfdi), id="lfdi-not-matching-sfdi"),
        pytest.param(lambda own, other: _body(own, lfdi="AB" * 19), id="short-lfdi"),
        pytest.param(lambda own, other: _body(own).replace(own.lfdi.encode(), b"G" * 40), id="non-hex-lfdi"),
    ],
)
def test_device_cannot_register_an_identity_not_its_certificates(cast, client_for, database, tamper) -> None:  # noqa: ANN001
    resp = client_for(cast["owner"]).post("/edev", data=tamper(cast["owner"], cast["other"]))
    assert resp.status_code == 400 and _reason(resp) == 1
    assert _count(database) == 0


def test_aggregator_registers_and_removes_devices_it_manages(cast, client_for, database) -> None:  # noqa: ANN001
    agg = client_for(cast["aggregator"])
    assert agg.post("/edev", data=codec.render(EndDevice(sfdi=cast["managed"].sfdi, changed_time=0))).status_code == 400
    resp = agg.post("/edev", data=_body(cast["managed"]))
    assert resp.status_code == 201
    # the device itself now sees the EndDevice its aggregator registered, but may not delete it
    own = client_for(cast["managed"])
    assert own.get(resp.headers["Location"]).status_code == 200
    assert own.delete(resp.headers["Location"]).status_code == 403
    assert agg.delete(resp.headers["Location"]).status_code == 204
    assert _count(database) == 0


def test_inband_registration_can_be_switched_off(app, cast, client_for, database) -> None:  # noqa: ANN001
    rt = app.extensions["derflex"]
    rt.settings = rt.settings.with_(allow_inband_registration=False)
    resp = client_for(cast["owner"]).post("/edev", data=_body(cast["owner"]))
    assert resp.status_code == 403 and _count(database) == 0


def test_put_changes_the_category_and_never_server_owned_fields(cast, client_for, database) -> None:  # noqa: ANN001
    """postRate and enabled are the server's: the operator set postRate 300; a device echoing its
    EndDevice without postRate and with enabled=false changes neither."""
    c = client_for(cast["owner"])
    loc = c.post("/edev", data=_body(cast["owner"])).headers["Location"]
    with database.transaction() as s:
        s.get(Device, int(loc.rsplit("/", 1)[1])).post_rate = 300
    assert c.put(loc, data=_body(cast["owner"], device_category="04", enabled=False)).status_code == 204
    got = codec.parse(c.get(loc).data, EndDevice)
    assert (got.post_rate, got.enabled, got.device_category) == (300, True, "04")
    bad = c.put(loc, data=_body(cast["owner"], sfdi=cast["other"].sfdi, device_category="08"))
    assert bad.status_code == 400
    assert codec.parse(c.get(loc).data, EndDevice).device_category == "04"


def test_registration_pin(cast, client_for, database) -> None:  # noqa: ANN001
    with database.transaction() as s:
        dev_id = edev.register_out_of_band(s, cast["owner"].lfdi, 1_700_000_000, pin=111115).id
    c = client_for(cast["owner"])
    ed = codec.parse(c.get(f"/edev/{dev_id}").data, EndDevice)
    assert ed.registration_link == f"/edev/{dev_id}/rg"
    rg = codec.parse(c.get(ed.registration_link).data, Registration)
    assert (rg.pin, rg.date_time_registered) == (111115, 1_700_000_000)


def test_pin_with_a_wrong_check_digit_is_refused(cast, database) -> None:  # noqa: ANN001
    from server.services.errors import Invalid

    with pytest.raises(Invalid), database.transaction() as s:
        edev.register_out_of_band(s, cast["owner"].lfdi, 0, pin=111116)


@pytest.fixture
def fleet(cast, client_for, pki, database):  # noqa: ANN001, ANN201
    """24 devices registered by the aggregator."""
    from server.sep2.identity import lfdi_from_cert_der, sfdi_from_lfdi

    with database.transaction() as s:
        for i in range(24):
            lfdi = lfdi_from_cert_der(f"device {i}".encode())
            edev.register_out_of_band(s, lfdi, 0, aggregator_lfdi=cast["aggregator"].lfdi)
            assert sfdi_from_lfdi(lfdi) > 0
    return client_for(cast["aggregator"])


def test_paging(fleet) -> None:  # noqa: ANN001
    page = codec.parse(fleet.get("/edev?l=10").data, EndDeviceList)
    assert (page.all, page.results, len(page.end_devices)) == (24, 10, 10)
    bare = codec.parse(fleet.get("/edev").data, EndDeviceList)
    assert (bare.all, bare.results) == (24, 1)  # a bare GET returns one entry, as the standard says
    rest = codec.parse(fleet.get("/edev?s=20&l=10").data, EndDeviceList)
    assert rest.results == 4
    seen = [d.href for s in (0, 10, 20) for d in codec.parse(fleet.get(f"/edev?s={s}&l=10").data, EndDeviceList).end_devices]
    assert len(seen) == len(set(seen)) == 24
    beyond = codec.parse(fleet.get("/edev?s=99&l=10").data, EndDeviceList)
    assert (beyond.all, beyond.results) == (24, 0)
    capped = codec.parse(fleet.get("/edev?l=100000").data, EndDeviceList)
    assert capped.results == 24


@pytest.mark.parametrize("query", ["s=-1", "l=ten", "a=1.5", "s=" + "9" * 30])
def test_bad_paging_parameters(fleet, query: str) -> None:  # noqa: ANN001
    resp = fleet.get(f"/edev?{query}")
    assert resp.status_code == 400 and _reason(resp) == 1


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/dcap"), ("PUT", "/tm"), ("DELETE", "/edev"), ("PUT", "/edev"), ("POST", "/edev/1/rg"),
     ("PATCH", "/edev/1"), ("OPTIONS", "/dcap")],
)
def test_methods_the_resource_does_not_have_get_405(cast, client_for, method: str, path: str) -> None:  # noqa: ANN001
    resp = client_for(cast["owner"]).open(method, path)
    assert resp.status_code == 405 and "GET" in resp.headers["Allow"]
    assert _reason(resp) == 0


def test_unknown_uri_is_404_in_2030_5_format(cast, client_for, sep2_schema) -> None:  # noqa: ANN001
    resp = client_for(cast["owner"]).get("/nowhere")
    assert resp.status_code == 404
    sep2_schema(resp.data)


HOSTILE = {
    "entity bomb": b'<!DOCTYPE x [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;&a;">]><EndDevice xmlns="urn:ieee:std:2030.5:ns"><sFDI>&b;</sFDI><changedTime>0</changedTime></EndDevice>',
    "xxe": b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><EndDevice xmlns="urn:ieee:std:2030.5:ns"><sFDI>&e;</sFDI><changedTime>0</changedTime></EndDevice>',
    "truncated": b'<EndDevice xmlns="urn:ieee:std:2030.5:ns"><sFDI>1',
    "wrong namespace": b'<EndDevice xmlns="urn:x"><sFDI>1</sFDI><changedTime>0</changedTime></EndDevice>',
    "wrong type": b'<EndDevice xmlns="urn:ieee:std:2030.5:ns"><sFDI>one</sFDI><changedTime>0</changedTime></EndDevice>',
    "binary": bytes(range(256)),
}


@pytest.mark.parametrize("body", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_bodies_get_400_and_change_nothing(cast, client_for, database, sep2_schema, body: bytes) -> None:  # noqa: ANN001
    resp = client_for(cast["owner"]).post("/edev", data=body)
    assert resp.status_code == 400
    sep2_schema(resp.data)
    assert _count(database) == 0


def test_oversize_body_gets_413(cast, client_for, database) -> None:  # noqa: ANN001
    resp = client_for(cast["owner"]).post("/edev", data=b"<" + b"x" * (300 * 1024))
    assert resp.status_code == 413 and _count(database) == 0


def test_wrong_content_type_gets_415(cast, client_for, database) -> None:  # noqa: ANN001
    resp = client_for(cast["owner"]).post("/edev", data=_body(cast["owner"]), content_type="application/json")
    assert resp.status_code == 415 and _count(database) == 0


def test_registration_race_is_a_409_not_a_500(cast, client_for, database, monkeypatch) -> None:  # noqa: ANN001
    """Two registrations of one LFDI both pass the duplicate check; the loser must get 409."""
    c = client_for(cast["owner"])
    assert c.post("/edev", data=_body(cast["owner"])).status_code == 201
    monkeypatch.setattr("server.db.repo.find_device_by_lfdi", lambda session, lfdi: None)
    resp = c.post("/edev", data=_body(cast["owner"]))
    assert resp.status_code == 409 and _reason(resp) == 1
    assert _count(database) == 1


def test_concurrent_registrations_of_one_lfdi(cast, client_for, database) -> None:  # noqa: ANN001
    from concurrent.futures import ThreadPoolExecutor

    body = _body(cast["owner"])
    with ThreadPoolExecutor(8) as pool:
        codes = sorted(pool.map(lambda _: client_for(cast["owner"]).post("/edev", data=body).status_code, range(8)))
    assert codes == [201] + [409] * 7
    assert _count(database) == 1


def test_stranger_gets_403_before_its_body_is_read(client_for, database) -> None:  # noqa: ANN001
    assert client_for(None).post("/edev", data=b"<not xml", content_type="text/plain").status_code == 403


def test_201_and_204_carry_no_media_type(cast, client_for) -> None:  # noqa: ANN001
    c = client_for(cast["owner"])
    created = c.post("/edev", data=_body(cast["owner"]))
    assert created.status_code == 201 and "Content-Type" not in created.headers and created.data == b""
    updated = c.put(created.headers["Location"], data=_body(cast["owner"]))
    assert updated.status_code == 204 and "Content-Type" not in updated.headers


def test_largest_uint32_post_rate_is_served_on_every_database(app, cast, client_for, database) -> None:  # noqa: ANN001
    """UInt32 does not fit PostgreSQL's INTEGER; the column is BIGINT. A postRate the device posts
    itself is ignored: it is the server's to set."""
    c = client_for(cast["owner"])
    loc = c.post("/edev", data=_body(cast["owner"], post_rate=5)).headers["Location"]
    assert codec.parse(c.get(loc).data, EndDevice).post_rate is None
    from server.services.sep2 import devices

    with database.transaction() as s:
        devices.set_post_rate(s, int(loc.rsplit("/", 1)[1]), 2**32 - 1, 0)
        devices.set_poll_rate(s, "edev", 2**32 - 1)
    app.extensions["derflex"].changed()  # written behind the app's back, as another process would
    assert codec.parse(c.get(loc).data, EndDevice).post_rate == 2**32 - 1
