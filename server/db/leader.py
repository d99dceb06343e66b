"""Electing the one process that runs the scheduler, through the database every process shares.

PostgreSQL: a session-level advisory lock held on a connection of its own. The lock goes the
moment its holder's connection does — a process that dies hands over at once, with no lease to
expire.

SQLite (the embedded default: one host, possibly several worker processes): a lease row in
`scheduler_leases` that the holder renews; another process may take it once it has expired.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, Engine, text, update
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import DBAPIError

from server.db.flex import SchedulerLease

LEASE_SECONDS = 15.0


def _lock_key(name: str) -> int:
    """A stable signed 64-bit advisory lock key for a name."""
    return int.from_bytes(hashlib.sha256(f"derflex:{name}".encode()).digest()[:8], "big", signed=True)


class Leadership:
    """`acquire()` tries to become (or stay) the leader and says whether we are; `release()` steps
    down. Call `acquire()` again well within LEASE_SECONDS to keep an SQLite lease."""

    def __init__(self, engine: Engine, name: str, holder: str, *, lease_seconds: float = LEASE_SECONDS,
                 clock: Callable[[], float] = time.time):
        self.engine = engine
        self.name = name
        self.holder = holder
        self.lease_seconds = lease_seconds
        self.clock = clock
        self._postgres = engine.dialect.name == "postgresql"
        self._conn: Connection | None = None
        self.leader = False

    def acquire(self) -> bool:
        try:
            self.leader = self._acquire_pg() if self._postgres else self._acquire_lease()
        except DBAPIError:
            self._drop_connection()
            self.leader = False
        return self.leader

    def release(self) -> None:
        try:
            if self._postgres:
                if self._conn is not None and self.leader:
                    self._conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _lock_key(self.name)})
            elif self.leader:
                with self.engine.begin() as conn:
                    conn.execute(
                        update(SchedulerLease)
                        .where(SchedulerLease.name == self.name, SchedulerLease.holder == self.holder)
                        .values(expires_at=0.0)
                    )
        except DBAPIError:
            pass  # going away anyway: the lock or lease lapses on its own
        finally:
            self._drop_connection()
            self.leader = False

    # ------------------------------------------------------------------------------------
    def _acquire_pg(self) -> bool:
        if self._conn is not None and self.leader:
            self._conn.execute(text("SELECT 1"))  # raises if the connection (and so the lock) is gone
            return True
        if self._conn is None:
            self._conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        got = self._conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": _lock_key(self.name)}).scalar()
        return bool(got)

    def _acquire_lease(self) -> bool:
        now = self.clock()
        values: dict[str, Any] = {"name": self.name, "holder": self.holder, "expires_at": now + self.lease_seconds}
        with self.engine.begin() as conn:
            stmt = sqlite.insert(SchedulerLease).values(**values)
            stmt = stmt.on_conflict_do_update(
                index_elements=["name"],
                set_={"holder": self.holder, "expires_at": values["expires_at"]},
                where=(SchedulerLease.holder == self.holder) | (SchedulerLease.expires_at < now),
            )
            conn.execute(stmt)
            holder = conn.execute(
                text("SELECT holder FROM scheduler_leases WHERE name = :n"), {"n": self.name}
            ).scalar()
        return holder == self.holder

    def _drop_connection(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except DBAPIError:
                pass
            self._conn = None
