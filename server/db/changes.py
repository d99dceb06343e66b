"""Change counters: how every process learns, cheaply, that cached answers are stale.

A session hook notes which tables a transaction wrote (ORM flushes and DML statements alike) and,
just before commit, bumps the counter of each affected family in the same transaction. Readers
compare the counters with what they last saw — one primary-key read, done at most every few
hundred milliseconds per process — and drop their caches when a counter moved. Nobody has to
remember to invalidate: a write that reaches the database is enough.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, event, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import ORMExecuteState, Session, UOWTransaction

from server.db.models import ChangeCounter

# A table that feeds cached documents says which family in its info: {"cache_family": SEP2}.
SEP2 = "sep2"
FAMILY = "cache_family"

_PENDING = "derflex.changed_families"
_BUMPING = "derflex.bumping"


def install(session_factory: Any) -> None:
    """Attach the hooks to a sessionmaker (once per Database)."""
    event.listen(session_factory, "after_flush", _after_flush)
    event.listen(session_factory, "do_orm_execute", _on_execute)
    event.listen(session_factory, "before_commit", _before_commit)


def note(session: Session, tables: Any) -> None:
    """Record that this transaction wrote `tables` outside the ORM (a driver-level bulk insert)."""
    _note(session, tables)


def pending(session: Session) -> frozenset[str]:
    """The families this session's transaction has written so far (flushed), not yet counted:
    a cache read inside it must not trust the counters for them."""
    return frozenset(session.info.get(_PENDING, ()))


def _note(session: Session, tables: Any) -> None:
    families = {t.info[FAMILY] for t in tables if FAMILY in t.info}
    if families:
        session.info.setdefault(_PENDING, set()).update(families)


def _after_flush(session: Session, _flush: UOWTransaction) -> None:
    touched = (session.new, session.dirty, session.deleted)
    _note(session, {obj.__table__ for group in touched for obj in group})


def _on_execute(state: ORMExecuteState) -> None:
    if state.session.info.get(_BUMPING) or not (state.is_insert or state.is_update or state.is_delete):
        return
    table = getattr(state.statement, "table", None)
    if table is not None:
        _note(state.session, {table})


def _before_commit(session: Session) -> None:
    # before_commit runs before the commit's own autoflush: flush now, so that changes made to
    # loaded objects without an explicit flush are noted too.
    session.flush()
    families = session.info.pop(_PENDING, None)
    if not families:
        return
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    session.info[_BUMPING] = True
    try:
        for family in sorted(families):  # one order for all writers: no deadlocks between them
            stmt = dialect.insert(ChangeCounter).values(family=family, value=1)
            session.execute(
                stmt.on_conflict_do_update(
                    index_elements=["family"], set_={"value": ChangeCounter.value + 1}
                )
            )
        session.flush()
    finally:
        session.info.pop(_BUMPING, None)


def read(engine: Engine) -> dict[str, int]:
    """The current counters (a Core read: no ORM session on this per-poll path)."""
    with engine.connect() as conn:
        return {family: value for family, value in conn.execute(select(ChangeCounter.family, ChangeCounter.value))}
