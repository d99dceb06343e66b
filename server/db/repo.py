"""Repository functions. Every function that serves a client takes its Scope and filters in SQL.

Reads that devices trigger on every poll take a `Reader` — an ORM Session or a plain Core
Connection (`Database.read()`) — run statements built once per shape with bound parameters, and
return Rows (attribute access by column name). On a plain Connection the per-poll statements go
straight to the driver (`DriverStatement`: SQL compiled once per dialect, executed on the DB-API
connection): SQLAlchemy's execute costs ~20 µs of Python around a 5 µs SQLite lookup. Writes take
a Session and ORM objects.
"""

from __future__ import annotations

import threading
from collections import namedtuple
from collections.abc import Callable, Sequence
from functools import cache
from typing import Any, TypeAlias

from sqlalchemy import ColumnElement, Connection, Row, Select, bindparam, func, or_, select, true
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from server.db.models import AdminToken, Aggregator, Device, PollRate
from server.scope import Role, Scope


def _upsert(session: Session, model: Any, key: str, values: dict[str, Any], update: tuple[str, ...]) -> None:
    """INSERT … ON CONFLICT DO UPDATE: concurrent writers of one key neither fail nor duplicate."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(model).values(**values)
    session.execute(
        stmt.on_conflict_do_update(index_elements=[key], set_={k: values[k] for k in update})
    )


Reader: TypeAlias = Session | Connection
_DEVICE = Device.__table__


class DriverStatement:
    """A read statement run on the driver's own cursor when the reader is a plain Connection.

    Compiled once per dialect to its SQL text, the order of its parameters and its result
    processors (SQLite's booleans); rows come back as named tuples with the statement's column
    names, so `row.id` reads as with SQLAlchemy's Rows. A Session (inside a write transaction,
    whose BEGIN the session owns) and any driver error go through SQLAlchemy's own execute, which
    raises its usual exceptions and invalidates a broken connection. Statements whose parameters
    expand at execution (IN lists) are refused at compile time: keep those on SQLAlchemy."""

    __slots__ = ("stmt", "_compiled", "_lock")

    def __init__(self, stmt: Any):
        self.stmt = stmt
        self._compiled: dict[str, tuple[str, Callable[[dict[str, Any]], Any], Any, tuple[Any, ...], Any]] = {}
        self._lock = threading.Lock()

    def _compile(self, dialect: Any) -> tuple[str, Callable[[dict[str, Any]], Any], Any, tuple[Any, ...], Any]:
        compiled = self.stmt.compile(dialect=dialect)
        sql = compiled.string
        if "POSTCOMPILE" in sql or compiled.literal_execute_params or compiled.post_compile_params:
            raise ValueError("a DriverStatement cannot take parameters that expand at execution")
        if any(compiled._bind_processors.get(name) for name in compiled.binds):
            raise ValueError("a DriverStatement takes only parameters the driver accepts as they are")
        fixed = {name: bp.effective_value for name, bp in compiled.binds.items() if not bp.required}
        order = compiled.positiontup
        if order is not None:  # qmark / numeric: a tuple in order
            def args(params: dict[str, Any]) -> Any:
                return tuple(params[n] if n in params else fixed[n] for n in order)
        else:  # named / pyformat: the dict itself
            def args(params: dict[str, Any]) -> Any:
                return {**fixed, **params} if fixed else params
        columns = [c[0] for c in compiled._result_columns]
        row_type = namedtuple("Row", columns, rename=True)  # type: ignore[misc]
        procs = tuple(
            (i, proc) for i, c in enumerate(compiled._result_columns)
            if (proc := c[3]._cached_result_processor(dialect, None)) is not None
        )
        return sql, args, row_type, procs, dialect.loaded_dbapi.Error

    def _run(self, db: Reader, params: dict[str, Any]) -> list[Any] | None:
        """The rows, or None when this reader must go through SQLAlchemy."""
        if not isinstance(db, Connection):
            return None
        dialect = db.dialect
        compiled = self._compiled.get(dialect.name)
        if compiled is None:
            with self._lock:
                compiled = self._compiled.setdefault(dialect.name, self._compile(dialect))
        sql, args, row_type, procs, error = compiled
        try:
            raw = db.connection.driver_connection.execute(sql, args(params)).fetchall()
        except error:
            return None  # SQLAlchemy's execute raises it as it always has, or succeeds
        if procs:
            out = []
            for r in raw:
                r = list(r)
                for i, proc in procs:
                    r[i] = proc(r[i])
                out.append(row_type._make(r))
            return out
        return [row_type._make(r) for r in raw]

    def all(self, db: Reader, params: dict[str, Any]) -> Sequence[Any]:
        rows = self._run(db, params)
        return db.execute(self.stmt, params).all() if rows is None else rows

    def first(self, db: Reader, params: dict[str, Any]) -> Any:
        rows = self._run(db, params)
        if rows is None:
            return db.execute(self.stmt, params).first()
        return rows[0] if rows else None

    def scalar(self, db: Reader, params: dict[str, Any]) -> Any:
        row = self.first(db, params)
        return None if row is None else row[0]


def visible_to(role: Role) -> ColumnElement[bool]:
    """The devices a scope may see: its own; an aggregator's also those it manages; all for
    operators. The caller's LFDI is the bound parameter `lfdi`."""
    if role is Role.OPERATOR:
        return true()
    if role is Role.AGGREGATOR:
        return or_(Device.lfdi == bindparam("lfdi"), Device.aggregator_lfdi == bindparam("lfdi"))
    return Device.lfdi == bindparam("lfdi")


def scope_params(scope: Scope, **more: Any) -> dict[str, Any] | None:
    """Bound parameters for a scoped statement, or None when the scope can see nothing."""
    if scope.role is not Role.OPERATOR and scope.lfdi is None:
        return None
    return {"lfdi": scope.lfdi, **more}


@cache
def _count_stmt(role: Role) -> Select[Any]:
    return select(func.count()).select_from(_DEVICE).where(visible_to(role))


@cache
def _page_stmt(role: Role) -> Select[Any]:
    return (
        select(_DEVICE)
        .where(visible_to(role))
        .order_by(Device.sfdi, Device.id)
        .offset(bindparam("start"))
        .limit(bindparam("limit"))
    )


@cache
def _one_stmt(role: Role) -> DriverStatement:
    return DriverStatement(select(_DEVICE).where(Device.id == bindparam("id"), visible_to(role)))


def count_devices(db: Reader, scope: Scope) -> int:
    params = scope_params(scope)
    return 0 if params is None else db.execute(_count_stmt(scope.role), params).scalar_one()


def list_devices(db: Reader, scope: Scope, start: int, limit: int) -> Sequence[Row[Any]]:
    params = scope_params(scope, start=start, limit=limit)
    return [] if params is None else db.execute(_page_stmt(scope.role), params).all()


def device_row(db: Reader, scope: Scope, device_id: int) -> Row[Any] | None:
    params = scope_params(scope, id=device_id)
    return None if params is None else _one_stmt(scope.role).first(db, params)


def get_device(session: Session, scope: Scope, device_id: int) -> Device | None:
    """The ORM object, for changing it; None outside the scope."""
    if device_row(session, scope, device_id) is None:
        return None
    return session.get(Device, device_id)


def find_device_by_lfdi(session: Session, lfdi: str) -> Device | None:
    """Unscoped: only for registration (duplicate check) and operator tools."""
    return session.scalars(select(Device).where(Device.lfdi == lfdi)).first()


class Duplicate(Exception):
    """A unique key is taken (e.g. a concurrent registration of the same LFDI won the race)."""


def add_device(session: Session, device: Device) -> Device:
    session.add(device)
    try:
        session.flush()
    except IntegrityError:
        raise Duplicate(device.lfdi) from None
    return device


def delete_device(session: Session, device: Device) -> None:
    session.delete(device)


_IS_AGGREGATOR = select(Aggregator.lfdi).where(Aggregator.lfdi == bindparam("lfdi"))
_POLL_RATES = select(PollRate.resource, PollRate.seconds)


def is_aggregator(db: Reader, lfdi: str) -> bool:
    return db.execute(_IS_AGGREGATOR, {"lfdi": lfdi}).first() is not None


def add_aggregator(session: Session, lfdi: str, name: str, now: int) -> None:
    """Name (or rename) an aggregator."""
    values = {"lfdi": lfdi, "name": name, "created_time": now}
    _upsert(session, Aggregator, "lfdi", values, update=("name",))


def list_aggregators(session: Session) -> Sequence[Aggregator]:
    return session.scalars(select(Aggregator).order_by(Aggregator.name)).all()


def poll_rates(db: Reader) -> dict[str, int]:
    return {row.resource: row.seconds for row in db.execute(_POLL_RATES)}


def set_poll_rate(session: Session, resource: str, seconds: int) -> None:
    values = {"resource": resource, "seconds": seconds}
    _upsert(session, PollRate, "resource", values, update=("seconds",))


def add_admin_token(session: Session, name: str, token_sha256: str, now: int) -> AdminToken:
    row = AdminToken(name=name, token_sha256=token_sha256, created_time=now, revoked=False)
    session.add(row)
    session.flush()
    return row


def find_admin_token(session: Session, token_sha256: str) -> AdminToken | None:
    stmt = select(AdminToken).where(
        AdminToken.token_sha256 == token_sha256, AdminToken.revoked.is_(False)
    )
    return session.scalars(stmt).first()


def list_admin_tokens(session: Session) -> Sequence[AdminToken]:
    return session.scalars(select(AdminToken).order_by(AdminToken.id)).all()


def revoke_admin_token(session: Session, token_id: int) -> bool:
    row = session.get(AdminToken, token_id)
    if row is None:
        return False
    row.revoked = True
    return True
