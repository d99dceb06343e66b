"""The admin plugin's instructions against a real `derflex serve`: each one must make the admin
call it claims, and what derflex cannot do must be refused by name."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from lxml import etree

from server.conformance.admin_api import AdminApi, AdminRefused
from server.conformance.operator import Client, Operator, Unsupported
from tests.e2e.conftest import RunningServer, start_server, stop_server

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("conformance"))
    yield running
    assert stop_server(running) == 0, running.log.read_text()


@pytest.fixture(scope="module")
def api(server: RunningServer) -> AdminApi:
    admin = server.pki.issue("conformance-admin", "operator")
    return AdminApi(
        base_url=f"https://127.0.0.1:{server.port}/admin/api/v1",
        token=(server.home / "var" / "admin-token").read_text().strip(),
        cert_file=str(admin.cert_path),
        key_file=str(admin.key_path),
        ca_file=str(server.pki.root / "serca.pem"),
    )


def _get(server: RunningServer, client: Client, href: str) -> tuple[int, bytes]:
    """A 2030.5 GET with the client's own certificate: (status, body)."""
    import ssl
    import urllib.error
    import urllib.request

    ctx = ssl.create_default_context(cafile=str(server.pki.root / "serca.pem"))
    ctx.check_hostname = False
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers("ECDHE-ECDSA-AES128-CCM8")
    ctx.load_cert_chain(client.cert_file, client.key_file)
    try:
        with urllib.request.urlopen(f"https://127.0.0.1:{server.port}{href}", context=ctx, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def _client(server: RunningServer, name: str, kind: str = "device", der_lfdi: str | None = None) -> Client:
    cred = server.pki.issue(name, kind)
    return Client(
        alias=name, kind=kind, lfdi=der_lfdi or cred.lfdi, cert_lfdi=cred.lfdi, pin=111115, max_watts=5000,
        cert_file=str(cred.cert_path), key_file=str(cred.key_path),
    )


def test_a_device_is_registered_with_its_pin_and_removed_when_asked(server: RunningServer, api: AdminApi) -> None:
    op = Operator(api, fresh_server=True)
    client = _client(server, "cactus-dev-1")
    assert "no EndDevice" in op.apply("ensure-end-device", {"registered": False}, client)
    op.apply("ensure-end-device", {"registered": True, "has_registration_link": True}, client)
    device = op.find_device(client.lfdi)
    assert device is not None and device["has_pin"] and device["aggregator_lfdi"] is None
    assert "already registered" in op.apply("ensure-end-device", {"registered": True}, client)
    assert "removed EndDevice" in op.apply("ensure-end-device", {"registered": False}, client)
    assert op.find_device(client.lfdi) is None
    assert "no EndDevice" in op.apply("ensure-end-device", {"registered": False}, client)
    assert "registered EndDevice" in op.apply("ensure-end-device", {"registered": True}, client)


def test_an_aggregator_is_named_and_its_der_registered_under_it(server: RunningServer, api: AdminApi) -> None:
    op = Operator(api, fresh_server=True)
    der = server.pki.issue("cactus-agg-der", "device")
    agg = _client(server, "cactus-agg", "aggregator", der_lfdi=der.lfdi)
    assert op.setup([agg]) == [f"aggregator {agg.cert_lfdi} named 'cactus-agg'"]
    op.setup([agg])  # naming it again is harmless
    own = op.find_device(agg.cert_lfdi)  # naming it registered the aggregator's own EndDevice
    assert own is not None
    op.apply("ensure-end-device", {"registered": True}, agg)
    device = op.find_device(der.lfdi)
    assert device is not None and device["aggregator_lfdi"] == agg.cert_lfdi
    status, body = _get(server, agg, "/edev")
    listed = etree.fromstring(body)
    ns = {"s": "urn:ieee:std:2030.5:ns"}
    with_subs = [e.findtext("s:lFDI", namespaces=ns) for e in listed.findall("s:EndDevice", ns)
                 if e.find("s:SubscriptionListLink", ns) is not None]
    assert status == 200 and [x.upper() for x in with_subs] == [agg.cert_lfdi]


def test_programs_controls_and_cancellation_go_through_the_admin_api(server: RunningServer, api: AdminApi) -> None:
    now = [time.time()]
    op = Operator(api, fresh_server=True, now=lambda: now[0])
    client = _client(server, "cactus-dev-2")
    op.apply("ensure-end-device", {"registered": True}, client)
    op.apply("ensure-fsa", {"annotation": "fsa1"}, client)
    op.apply("ensure-der-program", {"fsa_annotation": "fsa1", "primacy": 7}, client)
    device = op.device_id(client)
    programs = [p for p in api.get("/der-programs")["programs"] if p["primacy"] == 7]
    assert len(programs) == 1
    program = programs[0]["id"]
    assert device not in api.get(f"/der-programs/{program}")["members"]  # reached through the FSA
    (fsa,) = api.query("/fsas", device_id=device)["fsas"]
    assert fsa["description"] == "fsa1" and fsa["der_program_ids"] == [program]

    op.apply("create-der-control", {"status": "active", "opModConnect": False, "rampTms": 3000}, client)
    op.apply("create-der-control", {"status": "active", "opModConnect": True}, client)  # same second
    op.apply("create-der-control", {"status": "scheduled", "opModEnergize": True}, client)
    op.apply("create-der-control", {"status": "scheduled", "opModEnergize": False, "duration_seconds": 90}, client)
    events = sorted(api.query(f"/der-programs/{program}/events", limit=100)["events"], key=lambda e: e["start"])
    assert [e["device_id"] for e in events] == [device] * 4
    active, later, first, second = events
    assert active["start"] <= now[0] < active["start"] + active["duration"]
    assert active["control"] == {"opModConnect": False, "rampTms": 3000}
    assert later["start"] == active["start"] and later["control"] == {"opModConnect": True}
    assert later["mrid"] > active["mrid"]  # made later: derflex's mRIDs increase with creation time
    assert first["start"] == int(now[0]) + 30 and first["duration"] == 60
    assert second["start"] == first["start"] + first["duration"] + 1 and second["duration"] == 90  # stacked

    op.apply("clear-der-controls", {"all": False}, client)  # the latest made: the second scheduled one
    cancelled = {e["mrid"] for e in api.query(f"/der-programs/{program}/events", limit=100)["events"]
                 if e["cancelled_at"] is not None}
    assert cancelled == {second["mrid"]}
    op.apply("clear-der-controls", {"all": True}, client)
    assert all(e["cancelled_at"] is not None
               for e in api.query(f"/der-programs/{program}/events", limit=100)["events"])

    op.apply("create-default-der-control", {"rampTms": 500}, client)  # lands in the device's program
    assert api.get(f"/der-programs/{program}")["default_control"] == {"rampTms": 500}


def test_two_fsas_each_with_its_program_and_a_revoked_client(server: RunningServer, api: AdminApi) -> None:
    op = Operator(api, fresh_server=True)
    client = _client(server, "cactus-dev-3")
    op.apply("ensure-end-device", {"registered": True}, client)
    op.apply("ensure-fsa", {"annotation": "fsa1", "primacy": 1}, client)
    op.apply("ensure-fsa", {"annotation": "fsa2", "primacy": 2}, client)
    op.apply("ensure-der-program", {"fsa_annotation": "fsa1", "primacy": 1}, client)
    op.apply("ensure-der-program", {"fsa_annotation": "fsa2", "primacy": 2}, client)
    op.apply("create-default-der-control", {"primacy": 1, "opModExpLimW": 1500}, client)
    op.apply("create-der-control", {"status": "active", "primacy": 2, "opModExpLimW": 10000}, client)
    device = op.device_id(client)
    fsas = api.query("/fsas", device_id=device)["fsas"]
    assert [f["description"] for f in fsas] == ["fsa1", "fsa2"]
    primacy = {p["id"]: p["primacy"] for p in api.get("/der-programs")["programs"]}
    assert [[primacy[p] for p in f["der_program_ids"]] for f in fsas] == [[1], [2]]
    one, two = fsas[0]["der_program_ids"][0], fsas[1]["der_program_ids"][0]
    assert api.get(f"/der-programs/{one}")["default_control"] == {"opModExpLimW": {"value": 1500, "multiplier": 0}}
    (event,) = api.query(f"/der-programs/{two}/events")["events"]
    assert event["control"] == {"opModExpLimW": {"value": 10000, "multiplier": 0}}
    # what the device lists: exactly the two FSAs, in order (no membership FSA beside them)
    ns = {"s": "urn:ieee:std:2030.5:ns"}
    status, body = _get(server, client, f"/edev/{device}/fsa?l=10")
    listed = etree.fromstring(body)
    assert status == 200 and listed.get("all") == "2"
    assert [f.findtext("s:description", namespaces=ns) for f in listed.findall("s:FunctionSetAssignments", ns)] == [
        "fsa1", "fsa2"]

    assert "granted" in op.apply("set-client-access", {"granted": True}, client)
    assert _get(server, client, "/dcap")[0] == 200
    assert "revoked" in op.apply("set-client-access", {"granted": False}, client)
    assert any(r["lfdi"] == client.cert_lfdi for r in api.get("/revoked-clients")["revoked_clients"])
    deadline = time.time() + 5  # every server process hears of it within a quarter second
    while _get(server, client, "/dcap")[0] != 403 and time.time() < deadline:
        time.sleep(0.1)
    assert _get(server, client, "/dcap")[0] == 403
    assert "restored" in op.apply("set-client-access", {"granted": True}, client)
    deadline = time.time() + 5
    while _get(server, client, "/dcap")[0] != 200 and time.time() < deadline:
        time.sleep(0.1)
    assert _get(server, client, "/dcap")[0] == 200

    with pytest.raises(Unsupported, match="unknown"):
        op.apply("make-coffee", {}, client)
    with pytest.raises(Unsupported, match="list nor remove MirrorUsagePoints"):
        Operator(api, fresh_server=False).apply("ensure-mup-list-empty", {}, client)


def test_what_derflex_refuses_comes_back_with_its_answer(server: RunningServer, api: AdminApi) -> None:
    op = Operator(api, fresh_server=True)
    client = _client(server, "cactus-dev-4")
    op.apply("ensure-end-device", {"registered": True}, client)
    with pytest.raises(AdminRefused) as refused:
        op.apply("create-der-control", {"status": "active", "opModWatt": 1}, client)  # not a harness mode
    # control_json drops what the harness never sends; an empty control is refused by derflex itself
    assert refused.value.status == 400 and "control" in refused.value.detail


def test_rates_are_set_through_the_admin_api(server: RunningServer, api: AdminApi) -> None:
    op = Operator(api, fresh_server=True)
    client = _client(server, "cactus-dev-5")
    op.apply("ensure-end-device", {"registered": True}, client)
    op.apply("set-poll-rate", {"resource": "EndDeviceList", "rate_seconds": 30}, client)
    op.apply("set-poll-rate", {"resource": "DERProgramList", "rate_seconds": 120}, client)
    rates = api.get("/poll-rates")
    assert rates["edev"] == 30 and rates["derp"] == 120
    op.apply("set-post-rate", {"resource": "MirrorUsagePoint", "rate_seconds": 60}, client)
    assert api.get(f"/devices/{op.device_id(client)}")["post_rate"] == 60
    with pytest.raises(Unsupported, match="no poll rate"):
        op.apply("set-poll-rate", {"resource": "TariffProfileList", "rate_seconds": 5}, client)


def test_the_der_control_list_is_read_with_the_clients_own_certificate(server: RunningServer, api: AdminApi) -> None:
    op = Operator(api, fresh_server=True)
    client = _client(server, "cactus-dev-6")
    op.apply("ensure-end-device", {"registered": True}, client)
    text = op.apply("ensure-der-control-list", {}, client)
    device, program = map(int, re.search(r"EndDevice (\d+) sees DER program (\d+)", text).groups())
    # what the plugin reads is what the device is served (fetched here by hand, with lxml)
    href = f"/edev/{device}/derp/{program}/derc"
    status, body = _get(server, client, href)
    assert status == 200
    served = etree.fromstring(body).get("subscribable")
    assert op._subscribable(client, href) == (int(served) if served is not None else None)
    if served not in ("1", "3"):
        with pytest.raises(Unsupported, match="subscribable"):
            op.apply("ensure-der-control-list", {"subscribable": True}, client)
    else:
        assert f"subscribable={served}" in op.apply("ensure-der-control-list", {"subscribable": True}, client)


def test_the_certificate_identity_matches_the_servers(tmp_path: Path) -> None:
    from server.conformance.driver import cert_identity
    from server.pki import DevPKI
    from server.sep2.identity import sfdi_from_lfdi

    cred = DevPKI(tmp_path / "pki").issue("who", "device")
    lfdi, sfdi = cert_identity(cred.cert_path)
    assert lfdi == cred.lfdi and sfdi == cred.sfdi == sfdi_from_lfdi(lfdi)
