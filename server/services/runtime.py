"""What the services share for the life of a process: settings, the database, short-lived caches.

Caches are per process: roles, poll rates, and rendered GET bodies per (certificate, URL) — the
documents devices poll over and over. They are dropped when anything they show changes: at once
for a write through this process (`changed`), and within CHECK_EVERY seconds for a write through
any other process or the CLI, which every process learns from the database's change counters
(`sync`, see server.db.changes). Their lifetimes only bound what bypasses derflex (hand-made SQL).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from server.config import Settings
from server.db import changes, repo
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
        ticks = lambda: self.clock()  # noqa: E731 (late-bound: tests may swap the clock)
        self._scopes: TTLCache[Scope] = TTLCache(CACHE_SECONDS, clock=ticks)
        self._rates: TTLCache[dict[str, int]] = TTLCache(CACHE_SECONDS, clock=ticks)
        self.responses: TTLCache[bytes] = TTLCache(settings.response_cache_seconds, clock=ticks)
        self._seen: dict[str, int] | None = None
        self._next_check = 0.0
        self._sync_lock = threading.Lock()

    def sync(self) -> None:
        """Drop every cache if another process changed something (checked at most every
        CHECK_EVERY seconds; one primary-key read)."""
        now = self.clock()
        if now < self._next_check:
            return
        with self._sync_lock:
            if now < self._next_check:
                return
            self._next_check = now + CHECK_EVERY
        seen = changes.read(self.db.engine)
        if seen != self._seen:
            self._seen = seen
            self.changed()

    def scope(self, db: repo.Reader, ident: CertIdentity) -> Scope:
        return self._scopes.get(ident, lambda: scope_for(db, ident))

    def poll_rate(self, db: repo.Reader, resource: str) -> int:
        rates = self._rates.get("all", lambda: repo.poll_rates(db))
        return rates.get(resource, self.settings.poll_rate)

    def changed(self) -> None:
        """Something was written: forget every cached answer of this process."""
        self._scopes.invalidate()
        self._rates.invalidate()
        self.responses.invalidate()
