"""From a client certificate to a Scope: the one identity function both TLS paths feed.

LFDI and SFDI come only from the certificate (§6.3.4). A certificate is an aggregator's only when
an operator named its LFDI one: a certificate policy alone grants nothing, since any service
provider's certificate under the same SERCA could carry it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from server.db import repo
from server.scope import Role, Scope
from server.sep2.identity import lfdi_from_cert_der, sfdi_from_lfdi


@dataclass(frozen=True, slots=True)
class CertIdentity:
    lfdi: str
    sfdi: int


@lru_cache(maxsize=65_536)
def certificate_identity(cert_der: bytes) -> CertIdentity:
    """LFDI and SFDI of a DER certificate (cached: devices present the same one every poll)."""
    lfdi = lfdi_from_cert_der(cert_der)
    return CertIdentity(lfdi, sfdi_from_lfdi(lfdi))


def scope_for(db: repo.Reader, ident: CertIdentity) -> Scope:
    role = Role.AGGREGATOR if repo.is_aggregator(db, ident.lfdi) else Role.DEVICE
    return Scope(role, ident.lfdi, ident.sfdi)
