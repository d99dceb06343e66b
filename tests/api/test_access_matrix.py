"""Every URI × every kind of caller: owner, another device, an aggregator, a registered-nowhere
device, a certificate from another CA, and no certificate. Other clients' resources never leak:
outside its scope a resource is simply not found, and a stranger is refused outright."""

from __future__ import annotations

import pytest

from server.sep2 import codec
from server.sep2.models import EndDevice, EndDeviceList
from server.services.sep2 import edev

PIN = 111115


@pytest.fixture
def world(app, database, cast, client_for):  # noqa: ANN001, ANN201
    with database.transaction() as s:
        owner = edev.register_out_of_band(s, cast["owner"].lfdi, 100, pin=PIN).id
        edev.register_out_of_band(s, cast["other"].lfdi, 100, pin=PIN)
    agg = client_for(cast["aggregator"])
    body = codec.render(EndDevice(lfdi=cast["managed"].lfdi, sfdi=cast["managed"].sfdi, changed_time=0))
    resp = agg.post("/edev", data=body)
    assert resp.status_code == 201, resp.headers
    managed = int(resp.headers["Location"].rsplit("/", 1)[1])
    return {"owner": owner, "managed": managed}


CALLERS = ["owner", "other", "aggregator", "unregistered", "foreign", None]
REFUSED = {"foreign": 403, None: 403}


def _expected(uri: str, caller: str | None) -> int:
    if caller in REFUSED:
        return REFUSED[caller]
    if uri in ("/dcap", "/tm", "/edev"):
        return 200
    if uri.startswith("{owner}"):
        return 200 if caller == "owner" else 404
    if uri == "{managed}":
        return 200 if caller == "aggregator" else 404
    if uri == "{managed}/rg":
        return 404  # the aggregator registered it in-band: no PIN, so no Registration
    raise AssertionError(uri)


URIS = ["/dcap", "/tm", "/edev", "{owner}", "{owner}/rg", "{managed}", "{managed}/rg"]


@pytest.mark.parametrize("caller", CALLERS, ids=lambda c: c or "no-cert")
@pytest.mark.parametrize("uri", URIS)
def test_access_matrix(world, cast, client_for, sep2_schema, uri: str, caller: str | None) -> None:  # noqa: ANN001
    path = uri.replace("{owner}", f"/edev/{world['owner']}").replace("{managed}", f"/edev/{world['managed']}")
    client = client_for(cast[caller] if caller else None)
    resp = client.get(path)
    assert resp.status_code == _expected(uri, caller), resp.data
    assert resp.content_type == "application/sep+xml"
    sep2_schema(resp.data)  # answers and errors alike are valid 2030.5 documents
    if resp.status_code == 200:
        head = client.open("HEAD", path)
        assert head.status_code == 200 and head.data == b""


def _lfdis(resp) -> set[str]:  # noqa: ANN001
    return {d.lfdi for d in codec.parse(resp.data, EndDeviceList).end_devices}


def test_each_caller_lists_only_its_own_devices(world, cast, client_for) -> None:  # noqa: ANN001
    assert _lfdis(client_for(cast["owner"]).get("/edev?l=100")) == {cast["owner"].lfdi}
    assert _lfdis(client_for(cast["other"]).get("/edev?l=100")) == {cast["other"].lfdi}
    assert _lfdis(client_for(cast["aggregator"]).get("/edev?l=100")) == {cast["managed"].lfdi}
    listing = codec.parse(client_for(cast["unregistered"]).get("/edev?l=100").data, EndDeviceList)
    assert listing.all == 0 and listing.end_devices == []


@pytest.mark.parametrize("caller", ["other", "unregistered", "aggregator"])
def test_nobody_changes_or_removes_anothers_end_device(world, cast, client_for, database, caller) -> None:  # noqa: ANN001
    owner = world["owner"]
    client = client_for(cast[caller])
    body = codec.render(EndDevice(lfdi=cast["owner"].lfdi, sfdi=cast["owner"].sfdi, changed_time=0, post_rate=1))
    assert client.put(f"/edev/{owner}", data=body).status_code == 404
    assert client.delete(f"/edev/{owner}").status_code == 404
    got = codec.parse(client_for(cast["owner"]).get(f"/edev/{owner}").data, EndDevice)
    assert got.post_rate is None


def test_certificate_header_from_an_untrusted_address_is_ignored(app, cast, settings) -> None:  # noqa: ANN001
    from urllib.parse import quote

    pem = cast["owner"].cert_path.read_text().split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n"
    resp = app.test_client().get(
        "/dcap", headers={settings.proxy_cert_header: quote(pem)}, environ_base={"REMOTE_ADDR": "10.9.9.9"}
    )
    assert resp.status_code == 403
