"""The admin API: bearer-token authentication, out-of-band registration, run-time poll rates."""

from __future__ import annotations

import pytest

from server.sep2 import codec
from server.sep2.models import DeviceCapability, EndDeviceList

API = "/admin/api/v1"


@pytest.mark.parametrize("header", [None, "Bearer", "Bearer nope", "Basic dXNlcjpwYXNz"])
def test_no_valid_token_no_access(app, header: str | None) -> None:  # noqa: ANN001
    headers = {"Authorization": header} if header else {}
    resp = app.test_client().get(f"{API}/devices", headers=headers)
    assert resp.status_code == 401
    assert resp.content_type == "application/problem+json"
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")


def test_revoked_token_is_refused(app, database, token) -> None:  # noqa: ANN001
    from server.db import repo

    with database.transaction() as s:
        repo.revoke_admin_token(s, repo.list_admin_tokens(s)[0].id)
    resp = app.test_client().get(f"{API}/devices", headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 401


def test_out_of_band_registration_is_what_the_device_then_sees(operator, cast, client_for) -> None:  # noqa: ANN001
    resp = operator("POST", "/devices", json={"lfdi": cast["owner"].lfdi.lower(), "pin": 111115, "label": "house 7"})
    assert resp.status_code == 201
    view = resp.get_json()
    assert view["lfdi"] == cast["owner"].lfdi and view["sfdi"] == cast["owner"].sfdi and view["has_pin"]
    assert operator("GET", resp.headers["Location"].removeprefix(API)).get_json()["label"] == "house 7"
    listing = codec.parse(client_for(cast["owner"]).get("/edev").data, EndDeviceList)
    assert [d.lfdi for d in listing.end_devices] == [cast["owner"].lfdi]
    assert operator("GET", "/devices").get_json()["all"] == 1


@pytest.mark.parametrize(
    "body",
    [
        {"lfdi": "XYZ"},
        {"lfdi": "AB" * 20, "pin": 111116},
        {"lfdi": "AB" * 20, "pin": "111115"},
        {"lfdi": "AB" * 20, "post_rate": 0},
        {"lfdi": "AB" * 20, "aggregator_lfdi": "nope"},
        {"pin": 111115},
        [],
    ],
)
def test_bad_registrations_are_400_and_store_nothing(operator, body) -> None:  # noqa: ANN001
    resp = operator("POST", "/devices", json=body)
    assert resp.status_code == 400 and resp.content_type == "application/problem+json"
    assert resp.get_json()["detail"]
    assert operator("GET", "/devices").get_json()["all"] == 0


def test_not_json_is_400(operator) -> None:  # noqa: ANN001
    resp = operator("POST", "/devices", data=b"{not json", content_type="application/json")
    assert resp.status_code == 400


def test_duplicate_is_409(operator) -> None:  # noqa: ANN001
    assert operator("POST", "/devices", json={"lfdi": "AB" * 20}).status_code == 201
    assert operator("POST", "/devices", json={"lfdi": "AB" * 20}).status_code == 409


def test_poll_rate_change_reaches_devices(operator, cast, client_for) -> None:  # noqa: ANN001
    c = client_for(cast["owner"])
    assert codec.parse(c.get("/dcap").data, DeviceCapability).poll_rate == 900
    assert operator("PUT", "/poll-rates/dcap", json={"seconds": 60}).status_code == 204
    assert codec.parse(c.get("/dcap").data, DeviceCapability).poll_rate == 60
    assert operator("GET", "/poll-rates").get_json()["dcap"] == 60
    assert operator("PUT", "/poll-rates/nothing", json={"seconds": 60}).status_code == 400
    assert operator("PUT", "/poll-rates/tm", json={"seconds": -5}).status_code == 400


def test_post_rate(operator) -> None:  # noqa: ANN001
    dev = operator("POST", "/devices", json={"lfdi": "CD" * 20}).get_json()
    assert operator("PUT", f"/devices/{dev['id']}/post-rate", json={"seconds": 300}).status_code == 204
    assert operator("GET", f"/devices/{dev['id']}").get_json()["post_rate"] == 300
    assert operator("PUT", "/devices/999/post-rate", json={"seconds": 300}).status_code == 404


def test_named_aggregator_gets_aggregator_scope(operator, cast, client_for) -> None:  # noqa: ANN001
    # "other" is an ordinary device certificate; once named an aggregator it may register others.
    from server.sep2.models import EndDevice

    body = codec.render(EndDevice(lfdi=cast["managed"].lfdi, sfdi=cast["managed"].sfdi, changed_time=0))
    assert client_for(cast["other"]).post("/edev", data=body).status_code == 400
    assert operator("POST", "/aggregators", json={"lfdi": cast["other"].lfdi, "name": "fleet co"}).status_code == 201
    assert client_for(cast["other"]).post("/edev", data=body).status_code == 201


def test_unknown_admin_path_answers_json(operator) -> None:  # noqa: ANN001
    resp = operator("GET", "/nothing-here")
    assert resp.status_code == 404 and resp.content_type == "application/problem+json"


def test_service_provider_policy_alone_grants_nothing(app, pki, client_for) -> None:  # noqa: ANN001
    """Any service provider's certificate under the same SERCA may carry the policy; only the
    operator's list makes an aggregator."""
    from server.sep2.models import EndDevice

    unnamed = pki.issue("unnamed-sp", kind="aggregator")
    victim = pki.issue("victim-device")
    body = codec.render(EndDevice(lfdi=victim.lfdi, sfdi=victim.sfdi, changed_time=0))
    assert client_for(unnamed).post("/edev", data=body).status_code == 400


def test_concurrent_admin_upserts_neither_fail_nor_duplicate(operator, database) -> None:  # noqa: ANN001
    from concurrent.futures import ThreadPoolExecutor

    from sqlalchemy import func, select

    from server.db.models import Aggregator

    def name_it(i: int) -> int:
        return operator("POST", "/aggregators", json={"lfdi": "EF" * 20, "name": f"co {i}"}).status_code

    def rate(i: int) -> int:
        return operator("PUT", "/poll-rates/edev", json={"seconds": 60 + i}).status_code

    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(name_it, range(16))) == {201}
        assert set(pool.map(rate, range(16))) == {204}
    with database.transaction() as s:
        count = select(func.count()).select_from(Aggregator).where(Aggregator.lfdi == "EF" * 20)
        assert s.scalar(count) == 1
    assert 60 <= operator("GET", "/poll-rates").get_json()["edev"] < 76


@pytest.mark.parametrize("label", ["nul\x00byte", "bell\x07", "x" * 101, 5])
def test_labels_with_control_characters_are_refused(operator, label) -> None:  # noqa: ANN001
    """PostgreSQL cannot store NUL and XML cannot carry control characters: a 400, not a 500."""
    resp = operator("POST", "/devices", json={"lfdi": "AB" * 20, "label": label})
    assert resp.status_code == 400
    assert operator("GET", "/devices").get_json()["all"] == 0
