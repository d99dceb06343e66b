"""Repository functions. Every function that serves a client takes its Scope and filters in SQL.

Reads that devices trigger on every poll take a `Reader` — an ORM Session or a plain Core
Connection (`Database.read()`) — run statements built once per shape with bound parameters, and
return Rows (attribute access by column name). Writes take a Session and ORM objects.
"""

from __future__ import annotations

from collections.abc import Sequence
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
def _one_stmt(role: Role) -> Select[Any]:
    return select(_DEVICE).where(Device.id == bindparam("id"), visible_to(role))


def count_devices(db: Reader, scope: Scope) -> int:
    params = scope_params(scope)
    return 0 if params is None else db.execute(_count_stmt(scope.role), params).scalar_one()


def list_devices(db: Reader, scope: Scope, start: int, limit: int) -> Sequence[Row[Any]]:
    params = scope_params(scope, start=start, limit=limit)
    return [] if params is None else db.execute(_page_stmt(scope.role), params).all()


def device_row(db: Reader, scope: Scope, device_id: int) -> Row[Any] | None:
    params = scope_params(scope, id=device_id)
    return None if params is None else db.execute(_one_stmt(scope.role), params).first()


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
