"""Who is on the other end of this request: the client certificate, from TLS or from a proxy.

Direct TLS (gunicorn): the peer certificate of the request's SSL socket. Behind a proxy: the
URL-escaped PEM in the configured header, believed only when the request comes from a configured
proxy address and the certificate chains to our trust anchors. Both feed one identity function.
"""

from __future__ import annotations

import ssl
import time
from functools import lru_cache
from urllib.parse import unquote

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from flask import current_app, request
from server.db.repo import Reader

from server.scope import Scope
from server.services.errors import Forbidden
from server.services.identity import CertIdentity, certificate_identity
from server.services.runtime import Runtime
from server.tls import ChainVerifier


def runtime() -> Runtime:
    return current_app.extensions["derflex"]


def now_exact() -> float:
    return time.time()


def now() -> int:
    """2030.5 times are whole seconds."""
    return int(now_exact())


def client_certificate_der() -> bytes | None:
    rt = runtime()
    if rt.settings.proxy_mode:
        return _forwarded_certificate(rt)
    sock = request.environ.get("gunicorn.socket")
    if isinstance(sock, ssl.SSLSocket):
        return sock.getpeercert(binary_form=True)
    return None


def _forwarded_certificate(rt: Runtime) -> bytes | None:
    if request.remote_addr not in rt.settings.trusted_proxies:
        return None
    header = request.headers.get(rt.settings.proxy_cert_header)
    if not header:
        return None
    verifier: ChainVerifier = current_app.extensions["derflex.chain"]
    return _verified_der(header, verifier)


@lru_cache(maxsize=16_384)
def _verified_der(header: str, verifier: ChainVerifier) -> bytes | None:
    # Cached: a device presents the same certificate on every poll. Validity is re-checked by
    # the TTL-free cache only within one process's life, which is acceptable for 9999 certs;
    # shorter-lived certificates are refused at their end by the proxy itself.
    try:
        cert = x509.load_pem_x509_certificate(unquote(header).encode())
    except ValueError:
        return None
    if not verifier.verify(cert):
        return None
    return cert.public_bytes(Encoding.DER)


def client_identity() -> CertIdentity:
    """The caller's identity, or Forbidden — checked before a request body is even read."""
    der = client_certificate_der()
    if der is None:
        raise Forbidden("a client certificate issued by this server's CA is required")
    ident = certificate_identity(der)
    if runtime().is_revoked(ident.lfdi):  # before any cached answer or body: refused at once
        raise Forbidden("this client certificate's access has been revoked by the operator")
    return ident


def client_scope(db: Reader, ident: CertIdentity | None = None) -> Scope:
    return runtime().scope(db, ident or client_identity())
