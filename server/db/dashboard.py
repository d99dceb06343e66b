"""What the operator dashboard reads (server.ui), as paged queries: each page is one or two indexed
queries with OFFSET/LIMIT, never a whole table in Python, so the pages stay fast with a large fleet
and a year of windows. Reads only; the dashboard's writes go through the services' commands."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from server.db.beckn import BecknOrder, BecknOutbox
from server.db.der import DerAvailability, DerCapability, DerSettings, DerStatus
from server.db.derp import DerEvent
from server.db.flex import Clearing, Enrollment, FlexProgram, FlexWindow, GridNode
from server.db.models import Device
from server.db.outbox import OutboxDelivery
from server.db.rsps import DerResponse
from server.db.settlement import SettlementRun
from server.db.sub import Notification


def _count(session: Session, stmt: Any) -> int:
    return session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0


# ------------------------------------------------------------------------------------ programs

def programs_page(session: Session, start: int, limit: int) -> tuple[int, Sequence[FlexProgram]]:
    stmt = select(FlexProgram).order_by(FlexProgram.state, FlexProgram.name)
    return _count(session, stmt), session.scalars(stmt.offset(start).limit(limit)).all()


def enrollment_counts(session: Session, program_ids: Sequence[int]) -> dict[int, dict[str, int]]:
    """Enrollments per state of each of these programs, counted in SQL (one GROUP BY on the
    (program_id, device_id) unique index), never loaded."""
    out: dict[int, dict[str, int]] = {pid: {} for pid in program_ids}
    if program_ids:
        for pid, state, n in session.execute(
                select(Enrollment.program_id, Enrollment.state, func.count())
                .where(Enrollment.program_id.in_(list(program_ids))).group_by(Enrollment.program_id, Enrollment.state)):
            out[pid][state] = n
    return out


def program_names(session: Session) -> list[tuple[int, str]]:
    return [(r.id, r.name) for r in session.execute(select(FlexProgram.id, FlexProgram.name).order_by(FlexProgram.name))]


def windows_page(session: Session, program_id: int, start: int, limit: int, *, since_end: int | None,
                 ) -> tuple[int, Sequence[FlexWindow]]:
    """A program's windows: from `since_end` on (oldest first), or all of them (newest first)."""
    stmt = select(FlexWindow).where(FlexWindow.program_id == program_id)
    if since_end is not None:
        stmt = stmt.where(FlexWindow.end > since_end).order_by(FlexWindow.start)
    else:
        stmt = stmt.order_by(FlexWindow.start.desc())
    return _count(session, stmt), session.scalars(stmt.offset(start).limit(limit)).all()


def next_windows(session: Session, now: int, limit: int) -> Sequence[tuple[FlexWindow, str]]:
    """The coming (or running) windows of every active program, soonest first, with the program's name."""
    rows = session.execute(
        select(FlexWindow, FlexProgram.name).join(FlexProgram, FlexProgram.id == FlexWindow.program_id)
        .where(FlexWindow.end > now, FlexProgram.state == "active")
        .order_by(FlexWindow.start).limit(limit))
    return [(w, name) for w, name in rows]


def window_states(session: Session, program_id: int) -> dict[str, int]:
    rows = session.execute(select(FlexWindow.state, func.count()).where(FlexWindow.program_id == program_id)
                           .group_by(FlexWindow.state))
    return {state: n for state, n in rows}


def enrollments_page(session: Session, program_id: int, start: int, limit: int
                     ) -> tuple[int, Sequence[tuple[Enrollment, str, str | None]]]:
    stmt = (select(Enrollment, Device.lfdi, GridNode.name).join(Device, Device.id == Enrollment.device_id)
            .outerjoin(GridNode, GridNode.id == Enrollment.grid_node_id)
            .where(Enrollment.program_id == program_id).order_by(Enrollment.id))
    return _count(session, stmt), [(e, lfdi, node) for e, lfdi, node in session.execute(stmt.offset(start).limit(limit))]


def setpoints_page(session: Session, clearing_id: int, start: int, limit: int) -> tuple[int, Sequence[Any]]:
    """One clearing's per-device setpoints (largest reduction first), with each device's LFDI and its
    latest Response to the setpoint's event (status, received), if any."""
    from server.db.flex import Setpoint

    latest = (select(DerResponse.status).join(DerEvent, DerEvent.id == DerResponse.event_id)
              .where(DerEvent.mrid == Setpoint.event_mrid, DerResponse.device_id == Setpoint.device_id)
              .order_by(DerResponse.received_time.desc()).limit(1).scalar_subquery())
    stmt = (select(Setpoint, Device.lfdi, latest.label("response"))
            .join(Device, Device.id == Setpoint.device_id)
            .where(Setpoint.clearing_id == clearing_id)
            .order_by(Setpoint.reduction_kw.desc(), Setpoint.device_id))
    total = session.scalar(select(func.count()).select_from(Setpoint).where(Setpoint.clearing_id == clearing_id)) or 0
    return total, session.execute(stmt.offset(start).limit(limit)).all()


def latest_clearing_nodes(session: Session) -> dict[str, Any]:
    """The node prices of the newest clearing that had grid nodes: (clearing, program name)."""
    row = session.execute(
        select(Clearing, FlexProgram.name).join(FlexWindow, FlexWindow.id == Clearing.window_id)
        .join(FlexProgram, FlexProgram.id == FlexWindow.program_id)
        .where(Clearing.nodes.is_not(None)).order_by(Clearing.created_time.desc(), Clearing.id.desc()).limit(1)
    ).first()
    return {} if row is None else {"clearing": row[0], "program": row[1]}


# --------------------------------------------------------------------------------------- fleet

def fleet_status(session: Session, now: int, seen_within: int) -> dict[str, int]:
    """Devices, how many reported DER status within `seen_within` seconds, active controls now, and
    Responses of the last day by status."""
    devices = session.scalar(select(func.count()).select_from(Device)) or 0
    enabled = session.scalar(select(func.count()).select_from(Device).where(Device.enabled.is_(True))) or 0
    seen = session.scalar(select(func.count(func.distinct(DerStatus.device_id)))
                          .where(DerStatus.received_time >= now - seen_within)) or 0
    active = session.scalar(select(func.count()).select_from(DerEvent).where(
        DerEvent.start <= now, DerEvent.start + DerEvent.duration > now, DerEvent.cancelled_at.is_(None))) or 0
    responses = dict(session.execute(select(DerResponse.status, func.count()).where(
        DerResponse.received_time >= now - 86_400).group_by(DerResponse.status)).all())
    return {"devices": devices, "enabled": enabled, "seen": seen, "active_controls": active,
            "received": responses.get(1, 0), "started": responses.get(2, 0), "completed": responses.get(3, 0),
            "other_responses": sum(n for s, n in responses.items() if s not in (1, 2, 3))}


def alerts(session: Session, now: int, since: int, limit: int) -> dict[str, Any]:
    """What needs an operator: missed windows and infeasible clearings since `since`, dead outbox
    deliveries, dead 2030.5 notifications, expired Beckn callbacks."""
    missed = session.execute(
        select(FlexWindow, FlexProgram.name).join(FlexProgram, FlexProgram.id == FlexWindow.program_id)
        .where(FlexWindow.state == "missed", FlexWindow.end >= since).order_by(FlexWindow.end.desc()).limit(limit)).all()
    infeasible = session.execute(
        select(Clearing, FlexWindow.window_key, FlexProgram.id, FlexProgram.name)
        .join(FlexWindow, and_(FlexWindow.id == Clearing.window_id, FlexWindow.revision == Clearing.revision))
        .join(FlexProgram, FlexProgram.id == FlexWindow.program_id)
        .where(Clearing.feasible.is_(False), Clearing.end >= since).order_by(Clearing.start.desc()).limit(limit)).all()
    dead = session.scalar(select(func.count()).select_from(OutboxDelivery).where(OutboxDelivery.state == "dead")) or 0
    dead_notes = session.scalar(select(func.count()).select_from(Notification).where(Notification.state == "dead")) or 0
    expired = session.scalar(select(func.count()).select_from(BecknOutbox).where(
        BecknOutbox.state.in_(("expired", "unanswered")))) or 0
    return {"missed": missed, "infeasible": infeasible, "dead_outbox": dead, "dead_notifications": dead_notes,
            "expired_callbacks": expired}


DER_KINDS = {"battery": (80, 81, 82, 83), "pv": (4,), "ev_charger": (83, 85), "load": (1, 2, 3)}


def devices_page(session: Session, *, query: str, kind: str, program_id: int | None, node: str, status: str,
                 now: int, seen_within: int, start: int, limit: int) -> tuple[int, Sequence[Any]]:
    """Devices filtered by LFDI/label text, enrolled kind, program, grid node and status (seen: DER
    status within `seen_within`; silent; disabled), by id."""
    last = (select(func.max(DerStatus.received_time)).where(DerStatus.device_id == Device.id)
            .correlate(Device).scalar_subquery())
    stmt = select(Device, last.label("last_status"))
    if query:
        like = f"%{query.replace('%', '').replace('_', '')}%"
        stmt = stmt.where(or_(Device.lfdi.ilike(like), Device.label.ilike(like)))
    if kind or program_id is not None or node:
        enr = select(Enrollment.device_id)
        if kind:
            enr = enr.where(Enrollment.device_kind == kind)
        if program_id is not None:
            enr = enr.where(Enrollment.program_id == program_id)
        if node:
            enr = enr.join(GridNode, GridNode.id == Enrollment.grid_node_id).where(GridNode.name == node)
        stmt = stmt.where(Device.id.in_(enr))
    if status == "disabled":
        stmt = stmt.where(Device.enabled.is_(False))
    elif status == "seen":
        stmt = stmt.where(Device.id.in_(select(DerStatus.device_id).where(DerStatus.received_time >= now - seen_within)))
    elif status == "silent":
        stmt = stmt.where(Device.id.not_in(select(DerStatus.device_id).where(DerStatus.received_time >= now - seen_within)))
    stmt = stmt.order_by(Device.id)
    return _count(session, stmt), session.execute(stmt.offset(start).limit(limit)).all()


def device_documents(session: Session, device_id: int) -> dict[str, Any]:
    return {
        "capability": session.scalars(select(DerCapability).where(DerCapability.device_id == device_id)).first(),
        "settings": session.scalars(select(DerSettings).where(DerSettings.device_id == device_id)).first(),
        "status": session.scalars(select(DerStatus).where(DerStatus.device_id == device_id)).first(),
        "availability": session.scalars(select(DerAvailability).where(DerAvailability.device_id == device_id)).first(),
    }


def device_enrollments(session: Session, device_id: int) -> Sequence[tuple[Enrollment, str]]:
    return session.execute(select(Enrollment, FlexProgram.name).join(FlexProgram, FlexProgram.id == Enrollment.program_id)
                           .where(Enrollment.device_id == device_id).order_by(Enrollment.id)).all()


def device_events(session: Session, device_id: int, start: int, limit: int) -> tuple[int, Sequence[Any]]:
    """Events addressed to this device (newest first), with its latest Response status to each."""
    latest = (select(DerResponse.status).where(DerResponse.event_id == DerEvent.id, DerResponse.device_id == device_id)
              .order_by(DerResponse.received_time.desc()).limit(1).correlate(DerEvent).scalar_subquery())
    stmt = (select(DerEvent, latest.label("response")).where(DerEvent.device_id == device_id)
            .order_by(DerEvent.start.desc(), DerEvent.id.desc()))
    return _count(session, stmt), session.execute(stmt.offset(start).limit(limit)).all()


def device_settlements(session: Session, device_id: int, limit: int) -> Sequence[Any]:
    """The device's rows in current settlements, newest window first: (row, window start, end, key,
    program id, program name); the row's detail holds its baseline and metered load per interval."""
    from server.db.settlement import SettlementDevice

    return session.execute(
        select(SettlementDevice, FlexWindow.start, FlexWindow.end, FlexWindow.window_key, FlexProgram.id, FlexProgram.name)
        .join(SettlementRun, SettlementRun.id == SettlementDevice.run_id)
        .join(FlexWindow, FlexWindow.id == SettlementRun.window_id)
        .join(FlexProgram, FlexProgram.id == FlexWindow.program_id)
        .where(SettlementDevice.device_id == device_id, SettlementRun.superseded_time.is_(None))
        .order_by(FlexWindow.start.desc()).limit(limit)).all()


# ---------------------------------------------------------------------------------- settlement

def settlement_page(session: Session, start: int, limit: int) -> tuple[int, Sequence[Any]]:
    """Current settlement runs, newest window first, with the window key and program.

    Two steps: the page's run ids are chosen on narrow rows (run id, window start), then only
    those runs are read with their summaries — sorting every current run with its summary text
    (a few kB each) cost 0.5 s for page 300 of a year of 50 programs' windows (bench/bench_ui.py)."""
    current = SettlementRun.superseded_time.is_(None)
    ids = [i for (i,) in session.execute(
        select(SettlementRun.id).join(FlexWindow, FlexWindow.id == SettlementRun.window_id).where(current)
        .order_by(FlexWindow.start.desc(), SettlementRun.id.desc()).offset(start).limit(limit))]
    total = session.scalar(select(func.count()).select_from(SettlementRun).where(current)) or 0
    if not ids:
        return total, []
    rows = session.execute(
        select(SettlementRun, FlexWindow.window_key, FlexWindow.start, FlexProgram.id, FlexProgram.name)
        .join(FlexWindow, FlexWindow.id == SettlementRun.window_id)
        .join(FlexProgram, FlexProgram.id == FlexWindow.program_id)
        .where(SettlementRun.id.in_(ids))).all()
    order = {run_id: k for k, run_id in enumerate(ids)}
    return total, sorted(rows, key=lambda r: order[r[0].id])


# --------------------------------------------------------------------------------------- beckn

def orders_page(session: Session, start: int, limit: int) -> tuple[int, Sequence[Any]]:
    stmt = (select(BecknOrder, FlexProgram.name).join(FlexProgram, FlexProgram.id == BecknOrder.program_id)
            .order_by(BecknOrder.updated_time.desc(), BecknOrder.id))
    return _count(session, stmt), session.execute(stmt.offset(start).limit(limit)).all()


def callbacks_page(session: Session, state: str | None, start: int, limit: int) -> tuple[int, Sequence[BecknOutbox]]:
    stmt = select(BecknOutbox).order_by(BecknOutbox.id.desc())
    if state:
        stmt = stmt.where(BecknOutbox.state == state)
    return _count(session, stmt), session.scalars(stmt.offset(start).limit(limit)).all()
