"""What the services share for the life of a process: settings, the database, short-lived caches.

Caches are per process: roles, poll rates, and rendered GET bodies per (certificate, URL) — the
documents devices poll over and over — kept per *family* of documents. A family's caches are
dropped when its change counter in the database moves (server.db.changes): at once after a write
through this process, within CHECK_EVERY seconds after one through any other process or the CLI.
So reading ingest (family "metering") never empties the program documents ("sep2"). Lifetimes
only bound what bypasses derflex (hand-made SQL); the response caches outlive the pollRate
(DERFLEX_RESPONSE_CACHE_SECONDS, 1800 s) and are bounded LRUs (DERFLEX_RESPONSE_CACHE_ENTRIES).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from server.config import Settings
from server.db import access, changes, repo
from server.db.der import DER_FAMILY
from server.db.session import Database
from server.scope import Scope
from server.services.cache import TTLCache
from server.services.identity import CertIdentity, scope_for

# Lifetime of cached roles and poll rates, and how often a process reads the change counters.
CACHE_SECONDS = 60.0
CHECK_EVERY = 0.25


class Runtime:
    def __init__(self, settings: Settings, db: Database, clock: Callable[[], float] = time.monotonic):
        self.settings = settings
        self.db = db
        self.clock = clock
        self._ticks = lambda: self.clock()  # late-bound: tests may swap the clock
        # Roles and poll rates are shown by "sep2" documents and change with them.
        self._scopes: TTLCache[Scope] = TTLCache(CACHE_SECONDS, clock=self._ticks)
        self._rates: TTLCache[dict[str, int]] = TTLCache(CACHE_SECONDS, clock=self._ticks)
        # Revoked certificates (db.access; table in the "sep2" family): checked on every request.
        self._revoked: TTLCache[frozenset[str]] = TTLCache(CACHE_SECONDS, clock=self._ticks)
        self._responses: dict[str, TTLCache[bytes]] = {}
        self._seen: dict[str, int] | None = None
        self._next_check = 0.0
        self._sync_lock = threading.Lock()

    def responses(self, family: str) -> TTLCache[bytes]:
        """The cache of rendered documents of one family (see server.db.changes)."""
        cache = self._responses.get(family)
        if cache is None:
            cache = self._responses.setdefault(
                family, TTLCache(self.settings.response_cache_seconds,
                                 max_entries=self.settings.response_cache_entries, clock=self._ticks)
            )
        return cache

    def sync(self, *, force: bool = False) -> None:
        """Drop the caches of every family whose change counter moved. Checked at most every
        CHECK_EVERY seconds (one primary-key read), or now with `force` — after a write of this
        process, so exactly what it changed is dropped and nothing else."""
        now = self.clock()
        with self._sync_lock:
            if not force and now < self._next_check:
                return
            self._next_check = now + CHECK_EVERY
        seen = changes.read(self.db.engine)
        previous, self._seen = self._seen, seen
        if previous is None:
            self.changed()
            return
        for family in set(seen) | set(previous):
            if seen.get(family) != previous.get(family):
                self.changed(family)

    def scope(self, db: repo.Reader, ident: CertIdentity) -> Scope:
        return self._scopes.get(ident, lambda: scope_for(db, ident))

    def is_revoked(self, lfdi: str) -> bool:
        """Whether an operator revoked this certificate. The set is read once and kept until a
        change of the "sep2" family (any process's revoke or restore) drops it: at once in the
        process that made it, within CHECK_EVERY elsewhere."""

        def load() -> frozenset[str]:
            with self.db.read() as conn:
                return access.revoked_lfdis(conn)

        return lfdi in self._revoked.get("all", load)

    def poll_rate(self, db: repo.Reader, resource: str) -> int:
        rates = self._rates.get("all", lambda: repo.poll_rates(db))
        return rates.get(resource, self.settings.poll_rate)

    def changed(self, family: str | None = None) -> None:
        """Forget what this process cached of one family, or of all."""
        if family in (None, changes.SEP2):
            self._scopes.invalidate()
            self._rates.invalidate()
            self._revoked.invalidate()
        # DER documents hang off devices: a change of devices (sep2) drops them too, not the reverse
        dropped = {family, DER_FAMILY} if family == changes.SEP2 else {family}
        for name, cache in list(self._responses.items()):
            if family is None or name in dropped:
                cache.invalidate()
