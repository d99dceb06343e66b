"""Admin API tokens: 32 random bytes, shown once; only their SHA-256 is stored.

The first start writes one to `<home>/var/admin-token` (mode 0600) so the operator on the machine can
use the API at once. Shared by every context's operator surface (admin API, bootstrap, CLI).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from sqlalchemy.orm import Session

from server.db import repo

TOKEN_PREFIX = "dfx_"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(session: Session, name: str, now: int) -> str:
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    repo.add_admin_token(session, name, _digest(token), now)
    return token


def check_token(session: Session, presented: str) -> bool:
    row = repo.find_admin_token(session, _digest(presented))
    # The lookup is by digest; compare again in constant time so timing says nothing either way.
    return row is not None and hmac.compare_digest(row.token_sha256, _digest(presented))
