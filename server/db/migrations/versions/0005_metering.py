"""Metering: mirrored usage points, their meter readings, readings and reading days.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "usage_points",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("device_id", sa.Integer(), sa.ForeignKey("devices.id", ondelete="CASCADE"), nullable=False),
        sa.Column("mrid", sa.String(32), nullable=False),
        sa.Column("description", sa.String(32)),
        sa.Column("version", sa.Integer()),
        sa.Column("role_flags", sa.Integer(), nullable=False),
        sa.Column("service_category_kind", sa.Integer(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("post_rate", sa.BigInteger()),
        sa.Column("created_time", sa.BigInteger(), nullable=False),
        sa.Column("changed_time", sa.BigInteger(), nullable=False),
        sa.UniqueConstraint("device_id", "mrid", name="uq_usage_points_device_mrid"),
    )
    op.create_table(
        "meter_readings",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("usage_point_id", sa.Integer(), sa.ForeignKey("usage_points.id", ondelete="CASCADE"), nullable=False),
        sa.Column("mrid", sa.String(32), nullable=False),
        sa.Column("description", sa.String(32)),
        sa.Column("version", sa.Integer()),
        sa.Column("reading_type", sa.Text(), nullable=False),
        sa.Column("uom", sa.Integer()),
        sa.Column("multiplier", sa.Integer(), nullable=False),
        sa.Column("flow_direction", sa.Integer()),
        sa.Column("kind", sa.Integer()),
        sa.Column("accumulation_behaviour", sa.Integer()),
        sa.Column("data_qualifier", sa.Integer()),
        sa.Column("interval_length", sa.BigInteger()),
        sa.Column("phase", sa.Integer()),
        sa.Column("created_time", sa.BigInteger(), nullable=False),
        sa.UniqueConstraint("usage_point_id", "mrid", name="uq_meter_readings_usage_point_mrid"),
    )
    # Narrow, keyed by (meter reading, start): the key is the index of every read; on SQLite the
    # table is stored in that order (WITHOUT ROWID).
    op.create_table(
        "readings",
        sa.Column("start", sa.BigInteger(), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.Column("meter_reading_id", sa.Integer(), sa.ForeignKey("meter_readings.id", ondelete="CASCADE"), nullable=False),
        sa.Column("duration", sa.Integer(), nullable=False),
        sa.Column("quality_flags", sa.Integer()),
        sa.Column("multiplier", sa.SmallInteger(), nullable=False),
        sa.PrimaryKeyConstraint("meter_reading_id", "start", name="pk_readings"),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "reading_days",
        sa.Column("meter_reading_id", sa.Integer(), sa.ForeignKey("meter_readings.id", ondelete="CASCADE"), nullable=False),
        sa.Column("day", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("meter_reading_id", "day", name="pk_reading_days"),
        sqlite_with_rowid=False,
    )


def downgrade() -> None:
    op.drop_table("reading_days")
    op.drop_table("readings")
    op.drop_table("meter_readings")
    op.drop_table("usage_points")
