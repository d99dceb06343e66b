"""The other ways to run `derflex serve`: with the GCM fallback asked for, and in proxy mode
(plain HTTP, client certificate in a header believed only from configured proxy addresses)."""

from __future__ import annotations

import http.client
from urllib.parse import quote

import pytest

from server.pki import DevPKI
from server.tls import GCM, client_context

from .conftest import start_server, stop_server

pytestmark = pytest.mark.e2e


def test_gcm_fallback_when_asked_for(tmp_path) -> None:  # noqa: ANN001
    server = start_server(tmp_path, "--allow-gcm", "--demo-devices", "1")
    try:
        demo = server.pki.load("demo-1")
        ctx = client_context(demo.cert_path, demo.key_path, server.pki.trust_path, cipher=GCM)
        conn = http.client.HTTPSConnection("localhost", server.port, context=ctx, timeout=10)
        conn.request("GET", "/dcap")
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 200 and conn.sock.cipher()[0] == GCM
        conn.close()
    finally:
        assert stop_server(server) == 0


def _pem(path) -> str:  # noqa: ANN001
    return path.read_text().split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n"


@pytest.mark.parametrize("trusted", [True, False], ids=["from-trusted-proxy", "from-untrusted-address"])
def test_proxy_mode(tmp_path, trusted: bool) -> None:  # noqa: ANN001
    DevPKI(tmp_path / "certs").ensure()
    demo = DevPKI(tmp_path / "certs").issue("demo-1")
    proxies = "127.0.0.1" if trusted else "10.255.255.1"
    server = start_server(tmp_path, "--proxy-mode", env={"DERFLEX_TRUSTED_PROXIES": proxies})
    try:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        for header, expected in ((quote(_pem(demo.cert_path)), 200 if trusted else 403), (None, 403)):
            headers = {"X-SSL-Client-Cert": header} if header else {}
            conn.request("GET", "/dcap", headers=headers)
            resp = conn.getresponse()
            resp.read()
            assert resp.status == expected
        conn.close()
    finally:
        assert stop_server(server) == 0
