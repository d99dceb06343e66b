"""`derflex serve` as a real process, spoken to over TLS 1.2 / ECDHE-ECDSA-AES128-CCM8 with client
certificates — and what it must refuse: TLS 1.3, no client certificate, another CA, GCM in strict
mode."""

from __future__ import annotations

import http.client
import socket
import ssl

import pytest

from server.pki import Credential
from server.sep2 import codec
from server.sep2.models import DeviceCapability, EndDevice, EndDeviceList
from server.tls import CCM8, GCM, client_context

pytestmark = pytest.mark.e2e


_open: list[http.client.HTTPSConnection] = []


@pytest.fixture(autouse=True)
def _close_connections():  # noqa: ANN202
    yield
    while _open:
        _open.pop().close()


def connect(server, cred: Credential, *, cipher: str = CCM8) -> http.client.HTTPSConnection:  # noqa: ANN001
    ctx = client_context(cred.cert_path, cred.key_path, server.pki.trust_path, cipher=cipher)
    conn = http.client.HTTPSConnection("localhost", server.port, context=ctx, timeout=10)
    _open.append(conn)
    return conn


def request(conn: http.client.HTTPSConnection, method: str, path: str, body: bytes | None = None):  # noqa: ANN201
    headers = {"Accept": "application/sep+xml"}
    if body is not None:
        headers["Content-Type"] = "application/sep+xml"
    conn.request(method, path, body=body, headers=headers)
    resp = conn.getresponse()
    return resp, resp.read()


def test_demo_device_walks_from_dcap_over_one_keep_alive_connection(server, sep2_schema) -> None:  # noqa: ANN001
    demo = server.pki.load("demo-1")
    conn = connect(server, demo)
    resp, body = request(conn, "GET", "/dcap")
    assert resp.status == 200 and resp.getheader("Content-Type") == "application/sep+xml"
    sep2_schema(body)
    dcap = codec.parse(body, DeviceCapability)
    _, body = request(conn, "GET", dcap.end_device_list_link.href + "?l=10")
    listing = codec.parse(body, EndDeviceList)
    assert [d.lfdi for d in listing.end_devices] == [demo.lfdi]
    _, body = request(conn, "GET", dcap.time_link)
    sep2_schema(body)
    peer = conn.sock.getpeercert()
    assert conn.sock.version() == "TLSv1.2" and conn.sock.cipher()[0] == CCM8 and peer


def test_new_device_registers_in_band_over_tls(server) -> None:  # noqa: ANN001
    cred = server.pki.issue("fresh")
    conn = connect(server, cred)
    body = codec.render(EndDevice(lfdi=cred.lfdi, sfdi=cred.sfdi, changed_time=0))
    resp, _ = request(conn, "POST", "/edev", body)
    assert resp.status == 201
    resp, body = request(conn, "GET", resp.getheader("Location"))
    assert resp.status == 200 and codec.parse(body, EndDevice).lfdi == cred.lfdi


def test_identity_comes_from_the_certificate_not_the_body(server) -> None:  # noqa: ANN001
    cred, victim = server.pki.issue("liar"), server.pki.load("demo-2")
    conn = connect(server, cred)
    body = codec.render(EndDevice(lfdi=victim.lfdi, sfdi=victim.sfdi, changed_time=0))
    resp, _ = request(conn, "POST", "/edev", body)
    assert resp.status == 400


def _handshake(server, ctx: ssl.SSLContext) -> None:  # noqa: ANN001
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            # With TLS 1.2 the server's refusal of our certificate arrives during the handshake;
            # read so an alert sent just after it is seen too.
            tls.sendall(b"GET /dcap HTTP/1.1\r\nHost: localhost\r\n\r\n")
            if not tls.recv(1):
                raise ConnectionResetError("closed")


REFUSALS = (ssl.SSLError, ConnectionResetError, BrokenPipeError)


def test_tls_13_is_refused(server) -> None:  # noqa: ANN001
    demo = server.pki.load("demo-1")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_verify_locations(server.pki.trust_path)
    ctx.load_cert_chain(demo.cert_path, demo.key_path)
    with pytest.raises(REFUSALS):
        _handshake(server, ctx)


def test_no_client_certificate_is_refused(server) -> None:  # noqa: ANN001
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(CCM8)
    ctx.load_verify_locations(server.pki.trust_path)
    with pytest.raises(REFUSALS):
        _handshake(server, ctx)


def test_certificate_from_another_ca_is_refused(server) -> None:  # noqa: ANN001
    stranger = server.pki.issue_other_ca_device("stranger")
    ctx = client_context(stranger.cert_path, stranger.key_path, server.pki.trust_path)
    with pytest.raises(REFUSALS):
        _handshake(server, ctx)


def test_gcm_is_refused_in_strict_mode(server) -> None:  # noqa: ANN001
    demo = server.pki.load("demo-1")
    ctx = client_context(demo.cert_path, demo.key_path, server.pki.trust_path, cipher=GCM)
    with pytest.raises(REFUSALS):
        _handshake(server, ctx)


def test_server_certificate_names_localhost_and_verifies(server) -> None:  # noqa: ANN001
    demo = server.pki.load("demo-1")
    conn = connect(server, demo)
    resp, _ = request(conn, "GET", "/tm")
    assert resp.status == 200
    san = dict((k, v) for k, v in conn.sock.getpeercert()["subjectAltName"])
    assert san.get("DNS") == "localhost"


@pytest.mark.parametrize("length", [10**7, 2**62])
def test_huge_declared_body_is_refused_without_being_read(server, length: int) -> None:  # noqa: ANN001
    demo = server.pki.load("demo-1")
    conn = connect(server, demo)
    conn.putrequest("POST", "/edev")
    conn.putheader("Content-Type", "application/sep+xml")
    conn.putheader("Content-Length", str(length))
    conn.endheaders(b"<EndDevice")
    resp = conn.getresponse()
    assert resp.status == 413
    assert b"<reasonCode>" in resp.read()


def test_a_change_made_by_another_process_reaches_the_server(server) -> None:  # noqa: ANN001
    """The CLI is another process writing the same database; the server's cached /dcap must
    follow within a moment, not after the cache's lifetime."""
    import subprocess
    import sys
    import time

    demo = server.pki.load("demo-1")
    conn = connect(server, demo)
    _, body = request(conn, "GET", "/dcap")
    before = codec.parse(body, DeviceCapability).poll_rate
    subprocess.run(
        [sys.executable, "-m", "server.cli", "--home", str(server.home), "admin", "poll-rate", "dcap", str(before + 7)],
        check=True, capture_output=True, timeout=60,
    )
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        _, body = request(conn, "GET", "/dcap")
        if codec.parse(body, DeviceCapability).poll_rate == before + 7:
            break
        time.sleep(0.05)
    assert codec.parse(body, DeviceCapability).poll_rate == before + 7
