"""Measurement and settlement: one row per settlement run of a window, one per device in it.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "settlement_runs",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("window_id", sa.Integer(), sa.ForeignKey("flex_windows.id", ondelete="CASCADE"), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("interval_s", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("inputs_digest", sa.String(64), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("created_time", sa.BigInteger(), nullable=False),
        sa.Column("checked_time", sa.BigInteger(), nullable=False),
        sa.Column("superseded_time", sa.BigInteger()),
        sa.UniqueConstraint("window_id", "version", name="uq_settlement_runs_window_version"),
    )
    op.create_index("ix_settlement_runs_current", "settlement_runs", ["superseded_time", "checked_time"])
    op.create_table(
        "settlement_devices",
        sa.Column("run_id", sa.Integer(), sa.ForeignKey("settlement_runs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("device_id", sa.Integer(), sa.ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("enrollment_id", sa.Integer(), sa.ForeignKey("enrollments.id", ondelete="SET NULL")),
        sa.Column("customer", sa.String(100), nullable=False),
        sa.Column("method", sa.String(20), nullable=False),
        sa.Column("energy_kwh", sa.Float(), nullable=False),
        sa.Column("performance", sa.Float()),
        sa.Column("gross_minor", sa.BigInteger(), nullable=False),
        sa.Column("total_minor", sa.BigInteger(), nullable=False),
        sa.Column("readings_digest", sa.String(64), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
    )
    op.create_index("ix_settlement_devices_device_id", "settlement_devices", ["device_id"])
    op.create_index("ix_settlement_devices_enrollment_id", "settlement_devices", ["enrollment_id"])


def downgrade() -> None:
    op.drop_table("settlement_devices")
    op.drop_table("settlement_runs")
