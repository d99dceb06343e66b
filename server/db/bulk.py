"""Bulk inserts at the driver's speed, inside the session's transaction.

Publishing a window writes one event and one setpoint row per device: 100,000 rows each for a
large program. SQLAlchemy's executemany spends more time building parameters than the database
spends inserting, so these rows go straight to the driver on the session's own connection (same
transaction, same rollback): PostgreSQL's COPY, SQLite's executemany. The change counters are
told about the table, as for any other write.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table
from sqlalchemy.orm import Session

from server.db import changes


def insert(session: Session, table: Table, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Insert `rows` (tuples in `columns` order) into `table`."""
    if not rows:
        return
    for name in columns:
        table.c[name]  # noqa: B018 - a KeyError here names a column the table does not have
    conn = session.connection()
    raw = conn.connection.driver_connection
    cols = ", ".join(columns)
    if conn.dialect.name == "postgresql":
        with raw.cursor() as cur, cur.copy(f"COPY {table.name} ({cols}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
    else:
        marks = ", ".join("?" * len(columns))
        raw.executemany(f"INSERT INTO {table.name} ({cols}) VALUES ({marks})", rows)
    changes.note(session, {table})
