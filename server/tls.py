"""TLS for 2030.5: the server's SSL context and the check of a certificate forwarded by a proxy.

Strict mode offers TLS 1.2 with ECDHE-ECDSA-AES128-CCM8 only; `allow_gcm` adds
ECDHE-ECDSA-AES128-GCM-SHA256 for tools that cannot do CCM8. A client certificate is required.
"""

from __future__ import annotations

import ssl
from datetime import datetime, timezone
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature

CCM8 = "ECDHE-ECDSA-AES128-CCM8"
GCM = "ECDHE-ECDSA-AES128-GCM-SHA256"


def server_context(cert: Path, key: Path, trust: Path, *, allow_gcm: bool = False) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(f"{CCM8}:{GCM}" if allow_gcm else CCM8)
    ctx.set_ecdh_curve("prime256v1")
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cafile=str(trust))
    ctx.load_cert_chain(str(cert), str(key))
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    return ctx


def client_context(cert: Path, key: Path, trust: Path, *, cipher: str = CCM8) -> ssl.SSLContext:
    """What a 2030.5 client uses against this server (the simulator, tests, benchmarks)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(cipher)
    ctx.load_verify_locations(cafile=str(trust))
    ctx.load_cert_chain(str(cert), str(key))
    return ctx


class ChainVerifier:
    """Checks that a forwarded leaf certificate was issued, directly or via an intermediate held in
    the trust file, by a trusted self-signed root, and is within its validity period."""

    def __init__(self, trust: Path):
        certs = x509.load_pem_x509_certificates(trust.read_bytes())
        self._by_subject: dict[bytes, list[x509.Certificate]] = {}
        for cert in certs:
            self._by_subject.setdefault(cert.subject.public_bytes(), []).append(cert)

    def verify(self, leaf: x509.Certificate, now: datetime | None = None) -> bool:
        now = now or datetime.now(timezone.utc)
        if self._is_valid_ca(leaf, now):
            return False  # a CA certificate is never a client
        cert = leaf
        for _ in range(6):
            if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
                return False
            issuer = self._issuer_of(cert)
            if issuer is None:
                return False
            if issuer.subject == issuer.issuer:
                return self._is_valid_ca(issuer, now)
            if not self._is_valid_ca(issuer, now):
                return False
            cert = issuer
        return False

    def _issuer_of(self, cert: x509.Certificate) -> x509.Certificate | None:
        for candidate in self._by_subject.get(cert.issuer.public_bytes(), []):
            try:
                cert.verify_directly_issued_by(candidate)
            except (ValueError, TypeError, InvalidSignature):
                continue
            return candidate
        return None

    @staticmethod
    def _is_valid_ca(cert: x509.Certificate, now: datetime) -> bool:
        try:
            bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        except x509.ExtensionNotFound:
            return False
        return bc.ca and cert.not_valid_before_utc <= now <= cert.not_valid_after_utc
