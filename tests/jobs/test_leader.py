"""server.db.leader: exactly one scheduler per database, and hand-over when the leader goes."""

from __future__ import annotations

import pytest

from server.db.leader import Leadership
from server.db.session import Database


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_only_one_of_two_contenders_leads(database: Database) -> None:
    clock = Clock()
    a = Leadership(database.engine, "scheduler", "a", clock=clock)
    b = Leadership(database.engine, "scheduler", "b", clock=clock)
    try:
        assert a.acquire() is True
        assert b.acquire() is False
        assert a.acquire() is True  # renewing keeps it
        assert b.acquire() is False
    finally:
        a.release()
        b.release()


def test_stepping_down_hands_over(database: Database) -> None:
    a = Leadership(database.engine, "scheduler", "a")
    b = Leadership(database.engine, "scheduler", "b")
    try:
        assert a.acquire()
        assert not b.acquire()
        a.release()
        assert b.acquire()
        assert not a.acquire()
    finally:
        a.release()
        b.release()


def test_different_names_do_not_contend(database: Database) -> None:
    a = Leadership(database.engine, "scheduler", "a")
    b = Leadership(database.engine, "other", "b")
    try:
        assert a.acquire() and b.acquire()
    finally:
        a.release()
        b.release()


def test_a_leader_that_stops_renewing_loses_its_lease_on_sqlite(database: Database) -> None:
    if database.engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL leadership is a lock on a connection, not a lease (next test)")
    clock = Clock()
    a = Leadership(database.engine, "scheduler", "a", clock=clock, lease_seconds=15)
    b = Leadership(database.engine, "scheduler", "b", clock=clock, lease_seconds=15)
    assert a.acquire()
    clock.t += 14
    assert not b.acquire()
    clock.t += 2  # a has not renewed for 16 s
    assert b.acquire()
    assert not a.acquire()


def test_a_leader_whose_connection_dies_hands_over_on_postgresql(database: Database) -> None:
    if database.engine.dialect.name != "postgresql":
        pytest.skip("needs PostgreSQL (DERFLEX_TEST_DATABASE_URL)")
    a = Leadership(database.engine, "scheduler", "a")
    b = Leadership(database.engine, "scheduler", "b")
    try:
        assert a.acquire() and not b.acquire()
        # what a dying process does to its connection: the server ends the session, the lock goes
        a._conn.connection.dbapi_connection.close()  # type: ignore[union-attr]
        assert b.acquire()
        assert not a.acquire()  # a notices it lost the connection, and does not lead
    finally:
        a.release()
        b.release()
