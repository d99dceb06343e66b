"""Measurement and settlement records: one row per settlement run of a window (a *version*) and
one per device in it, in domain terms.

Nothing here is ever updated in place except the run's `checked_time` (when late readings were
last looked for) and `readings_fingerprint` (what that look found, so the next one can be cheap): a re-settlement is a new version with its reason, the old one is kept with
`superseded_time` set, so every figure ever reported can be found again. The per-device `detail`
(JSON) holds each interval's baseline, actual, reduction, setpoint, price and money lines, and the
meter readings behind them (usage point, meter reading ids, a digest of the values used).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import BigInteger, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from server.db import bulk
from server.db.models import Base


class SettlementRun(Base):
    """One settlement of one window: what was measured, paid and split, and why it was run."""

    __tablename__ = "settlement_runs"
    __table_args__ = (
        UniqueConstraint("window_id", "version", name="uq_settlement_runs_window_version"),
        Index("ix_settlement_runs_current", "superseded_time", "checked_time"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    window_id: Mapped[int] = mapped_column(ForeignKey("flex_windows.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)  # 1, 2, … per window
    reason: Mapped[str] = mapped_column(String(32))  # scheduled | late_readings | operator
    revision: Mapped[int] = mapped_column(Integer)  # the clearing revision measured
    interval_s: Mapped[int] = mapped_column(Integer)  # the M&V interval
    currency: Mapped[str] = mapped_column(String(3))
    inputs_digest: Mapped[str] = mapped_column(String(64))  # readings, setpoints, prices and terms used
    # what the measurement read, as cheap to recompute as possible (services.flex.settlement
    # .fingerprint): a re-check that finds it unchanged measures nothing; None before 0016
    readings_fingerprint: Mapped[str | None] = mapped_column(String(64))
    summary: Mapped[str] = mapped_column(Text)  # JSON: curve per interval, totals, flows, terms, changes
    created_time: Mapped[int] = mapped_column(BigInteger)
    checked_time: Mapped[int] = mapped_column(BigInteger)  # last look for late readings
    superseded_time: Mapped[int | None] = mapped_column(BigInteger)  # a newer version replaced it


class SettlementDevice(Base):
    """One device in a settlement run: its M&V, lines, flows and the readings behind them."""

    __tablename__ = "settlement_devices"

    run_id: Mapped[int] = mapped_column(ForeignKey("settlement_runs.id", ondelete="CASCADE"), primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True, index=True)
    enrollment_id: Mapped[int | None] = mapped_column(ForeignKey("enrollments.id", ondelete="SET NULL"), index=True)
    customer: Mapped[str] = mapped_column(String(100))
    method: Mapped[str] = mapped_column(String(20))  # programs.baselines result method
    energy_kwh: Mapped[float] = mapped_column(Float)  # credited
    performance: Mapped[float | None] = mapped_column(Float)  # credited / setpoint; None if undefined
    gross_minor: Mapped[int] = mapped_column(BigInteger)
    total_minor: Mapped[int] = mapped_column(BigInteger)
    readings_digest: Mapped[str] = mapped_column(String(64))
    detail: Mapped[str] = mapped_column(Text)  # JSON (module docstring)


# ----------------------------------------------------------------------------------- queries


def current_run(session: Session, window_id: int) -> SettlementRun | None:
    return session.scalars(
        select(SettlementRun).where(SettlementRun.window_id == window_id, SettlementRun.superseded_time.is_(None))
    ).first()


def runs(session: Session, window_id: int) -> Sequence[SettlementRun]:
    return session.scalars(
        select(SettlementRun).where(SettlementRun.window_id == window_id).order_by(SettlementRun.version)
    ).all()


def run(session: Session, window_id: int, version: int) -> SettlementRun | None:
    return session.scalars(
        select(SettlementRun).where(SettlementRun.window_id == window_id, SettlementRun.version == version)
    ).first()


def device_rows(session: Session, run_id: int, *, device_ids: Sequence[int] | None = None,
                enrollment_ids: Sequence[int] | None = None) -> Sequence[SettlementDevice]:
    stmt = select(SettlementDevice).where(SettlementDevice.run_id == run_id)
    if device_ids is not None:
        stmt = stmt.where(SettlementDevice.device_id.in_(list(device_ids)))
    if enrollment_ids is not None:
        stmt = stmt.where(SettlementDevice.enrollment_id.in_(list(enrollment_ids)))
    return session.scalars(stmt.order_by(SettlementDevice.device_id)).all()


DEVICE_COLUMNS = ("run_id", "device_id", "enrollment_id", "customer", "method", "energy_kwh", "performance",
                  "gross_minor", "total_minor", "readings_digest", "detail")


def add_devices(session: Session, rows: Sequence[Sequence[Any]]) -> None:
    """Insert many device rows (tuples in DEVICE_COLUMNS order) at the driver's speed."""
    bulk.insert(session, SettlementDevice.__table__, DEVICE_COLUMNS, rows)
