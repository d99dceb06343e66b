"""Repository functions. Every function that serves a client takes its Scope and filters in SQL."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, false, func, or_, select
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


def _visible(scope: Scope) -> ColumnElement[bool]:
    """The devices a scope may see: its own; an aggregator's also those it manages; all for operators."""
    if scope.role is Role.OPERATOR:
        return Device.id.is_not(None)
    if scope.lfdi is None:
        return false()
    if scope.role is Role.AGGREGATOR:
        return or_(Device.lfdi == scope.lfdi, Device.aggregator_lfdi == scope.lfdi)
    return Device.lfdi == scope.lfdi


def count_devices(session: Session, scope: Scope) -> int:
    return session.scalar(select(func.count()).select_from(Device).where(_visible(scope))) or 0


def list_devices(session: Session, scope: Scope, start: int, limit: int) -> Sequence[Device]:
    stmt = select(Device).where(_visible(scope)).order_by(Device.sfdi, Device.id)
    return session.scalars(stmt.offset(start).limit(limit)).all()


def get_device(session: Session, scope: Scope, device_id: int) -> Device | None:
    return session.scalars(select(Device).where(Device.id == device_id, _visible(scope))).first()


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


def is_aggregator(session: Session, lfdi: str) -> bool:
    return session.get(Aggregator, lfdi) is not None


def add_aggregator(session: Session, lfdi: str, name: str, now: int) -> None:
    """Name (or rename) an aggregator."""
    values = {"lfdi": lfdi, "name": name, "created_time": now}
    _upsert(session, Aggregator, "lfdi", values, update=("name",))


def list_aggregators(session: Session) -> Sequence[Aggregator]:
    return session.scalars(select(Aggregator).order_by(Aggregator.name)).all()


def poll_rates(session: Session) -> dict[str, int]:
    return {row.resource: row.seconds for row in session.scalars(select(PollRate))}


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
