"""What the services share for the life of a process: settings, the database, short-lived caches."""

from __future__ import annotations

from sqlalchemy.orm import Session

from server.config import Settings
from server.db import repo
from server.db.session import Database
from server.scope import Scope
from server.services.cache import TTLCache
from server.services.identity import CertIdentity, scope_for

# How long a process may serve a role or pollRate another process has changed.
CACHE_SECONDS = 5.0


class Runtime:
    def __init__(self, settings: Settings, db: Database):
        self.settings = settings
        self.db = db
        self._scopes: TTLCache[Scope] = TTLCache(CACHE_SECONDS)
        self._rates: TTLCache[dict[str, int]] = TTLCache(CACHE_SECONDS)

    def scope(self, session: Session, ident: CertIdentity) -> Scope:
        return self._scopes.get(ident, lambda: scope_for(session, ident))

    def poll_rate(self, session: Session, resource: str) -> int:
        rates = self._rates.get("all", lambda: repo.poll_rates(session))
        return rates.get(resource, self.settings.poll_rate)

    def forget_scopes(self) -> None:
        self._scopes.invalidate()

    def forget_poll_rates(self) -> None:
        self._rates.invalidate()
