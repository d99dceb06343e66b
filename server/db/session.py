"""Engines and sessions: SQLite (WAL) for the embedded default, PostgreSQL via a database URL."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from server.db import changes


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1] if "///" in url else ""
        if path and path != ":memory:":
            _private_file(Path(path))
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


def _private_file(path: Path) -> None:
    """The database holds registration PINs: its folder 0700 and the file 0600 when we create
    them (SQLite gives its -wal and -shm files the database file's mode)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not path.exists():
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))


IMMEDIATE = "derflex_sqlite_immediate"


def _sqlite_begin(conn: Any) -> None:
    """Session transactions on SQLite take the write lock when they begin (waiting up to the busy
    timeout for it). pysqlite's own BEGIN is deferred: a transaction that reads and then writes
    fails at once with "database is locked" when another connection committed in between (its
    WAL snapshot is stale), which concurrent callbacks, polls and the scheduler make likely.
    Plain connections (the poll read path, migrations) keep pysqlite's behaviour."""
    if conn.get_execution_options().get(IMMEDIATE):
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def _sqlite_pragmas(dbapi_conn, _record) -> None:  # noqa: ANN001 (DB-API connection)
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


class Database:
    """One engine and its session factory; `transaction()` commits or rolls back as a unit."""

    def __init__(self, url: str):
        self.url = url
        self.engine = make_engine(url)
        bind = self.engine.execution_options(**{IMMEDIATE: True}) if url.startswith("sqlite") else self.engine
        self._sessions = sessionmaker(bind, expire_on_commit=False)
        changes.install(self._sessions)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        with self._sessions() as session, session.begin():
            yield session

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A plain connection for reads on the poll path (no ORM session); nothing is committed."""
        with self.engine.connect() as conn:
            yield conn

    def dispose(self) -> None:
        self.engine.dispose()
