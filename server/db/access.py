"""Who may connect, where devices are connected, and what a device's removal would erase.

- Revoked clients (`revoked_clients`): certificate LFDIs an operator shut out. Read as one set
  per process (services.runtime caches it; the table is in the `sep2` cache family, so every
  process drops that cache within a quarter second of a change).
- Connection points (`devices.connection_point_id`): the CSIP-AUS site (NMI) of each device.
- A device's records that its removal would cascade away but that are not the 2030.5 server's to
  drop: flexibility enrollments, cleared setpoints and settlement rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from sqlalchemy import delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from server.db.flex import Enrollment, Setpoint
from server.db.models import Device, RevokedClient
from server.db.repo import Reader
from server.db.settlement import SettlementDevice

_REVOKED = select(RevokedClient.lfdi)


# ---------------------------------------------------------------------------- revoked clients


def revoked_lfdis(db: Reader) -> frozenset[str]:
    """Every revoked certificate LFDI (a handful: one indexed scan)."""
    return frozenset(db.execute(_REVOKED).scalars())


def revoke(session: Session, lfdi: str, now: int, reason: str | None) -> bool:
    """Revoke a certificate; False when it already was (its time and reason are kept)."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(RevokedClient).values(lfdi=lfdi, revoked_time=now, reason=reason)
    result = session.execute(stmt.on_conflict_do_nothing(index_elements=["lfdi"]))
    return bool(result.rowcount)  # type: ignore[attr-defined]


def restore(session: Session, lfdi: str) -> bool:
    """Restore a revoked certificate's access; False when it was not revoked."""
    result = session.execute(delete(RevokedClient).where(RevokedClient.lfdi == lfdi))
    return bool(result.rowcount)  # type: ignore[attr-defined]


def revoked_clients(session: Session) -> Sequence[RevokedClient]:
    return session.scalars(select(RevokedClient).order_by(RevokedClient.revoked_time, RevokedClient.lfdi)).all()


# --------------------------------------------------------------------------- connection points


def connection_points(session: Session, start: int, limit: int) -> tuple[int, list[tuple[str, list[int]]]]:
    """(how many connection points, a page of (id, its device ids)) in id order."""
    total = session.execute(
        select(func.count(func.distinct(Device.connection_point_id))).where(Device.connection_point_id.is_not(None))
    ).scalar_one()
    ids = session.execute(
        select(Device.connection_point_id)
        .where(Device.connection_point_id.is_not(None))
        .group_by(Device.connection_point_id)
        .order_by(Device.connection_point_id)
        .offset(start)
        .limit(limit)
    ).scalars().all()
    devices: dict[str, list[int]] = {cp: [] for cp in ids}
    if ids:
        rows = session.execute(
            select(Device.connection_point_id, Device.id).where(Device.connection_point_id.in_(ids)).order_by(Device.id)
        )
        for cp, device_id in rows:
            devices[cp].append(device_id)
    return total, list(devices.items())


def devices_at(session: Session, connection_point_id: str) -> list[int]:
    """The ids of the devices at one connection point (site), in id order."""
    return list(
        session.execute(
            select(Device.id).where(Device.connection_point_id == connection_point_id).order_by(Device.id)
        ).scalars()
    )


# ------------------------------------------------------------------------ what removal erases


def kept_records(db: Reader, device_id: int) -> dict[str, int]:
    """The device's flexibility records a removal would erase (by kind, only those it has):
    enrollments, cleared setpoints, settlement rows."""
    counts: dict[str, int] = {}
    for name, column in (
        ("flexibility enrollments", Enrollment.device_id),
        ("cleared setpoints", Setpoint.device_id),
        ("settlement rows", SettlementDevice.device_id),
    ):
        n = db.execute(select(func.count()).where(column == device_id)).scalar_one()
        if n:
            counts[name] = n
    return counts

