"""From a client certificate to a Scope: the one identity function both TLS paths feed.

LFDI and SFDI come only from the certificate (§6.3.4). A certificate is an aggregator's when an
operator registered its LFDI as one, or when it carries the service-provider policy.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from cryptography import x509
from sqlalchemy.orm import Session

from server.db import repo
from server.scope import Role, Scope
from server.sep2.identity import POLICY_SERVICE_PROVIDER, lfdi_from_cert_der, sfdi_from_lfdi


@dataclass(frozen=True, slots=True)
class CertIdentity:
    lfdi: str
    sfdi: int
    service_provider: bool


@lru_cache(maxsize=65_536)
def certificate_identity(cert_der: bytes) -> CertIdentity:
    """LFDI, SFDI and kind of a DER certificate (cached: devices present the same one every poll)."""
    lfdi = lfdi_from_cert_der(cert_der)
    service_provider = False
    try:
        cert = x509.load_der_x509_certificate(cert_der)
        policies = cert.extensions.get_extension_for_class(x509.CertificatePolicies).value
        service_provider = any(
            p.policy_identifier.dotted_string == POLICY_SERVICE_PROVIDER for p in policies
        )
    except (ValueError, x509.ExtensionNotFound):
        pass
    return CertIdentity(lfdi, sfdi_from_lfdi(lfdi), service_provider)


def scope_for(session: Session, ident: CertIdentity) -> Scope:
    aggregator = ident.service_provider or repo.is_aggregator(session, ident.lfdi)
    return Scope(Role.AGGREGATOR if aggregator else Role.DEVICE, ident.lfdi, ident.sfdi)
