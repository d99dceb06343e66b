"""DER curves of DER programs, and the log events devices post.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-08
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "der_curves",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("program_id", sa.Integer(), sa.ForeignKey("der_programs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("mrid", sa.String(32), nullable=False, unique=True),
        sa.Column("description", sa.String(32)),
        sa.Column("curve_type", sa.Integer(), nullable=False),
        sa.Column("creation_time", sa.BigInteger(), nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
    )
    op.create_index("ix_der_curves_program_id", "der_curves", ["program_id"])
    op.create_table(
        "log_events",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("device_id", sa.Integer(), sa.ForeignKey("devices.id", ondelete="CASCADE"), nullable=False),
        sa.Column("received_time", sa.BigInteger(), nullable=False),
        sa.Column("created_date_time", sa.BigInteger(), nullable=False),
        sa.Column("details", sa.String(32)),
        sa.Column("extended_data", sa.BigInteger()),
        sa.Column("function_set", sa.Integer(), nullable=False),
        sa.Column("log_event_code", sa.Integer(), nullable=False),
        sa.Column("log_event_id", sa.Integer(), nullable=False),
        sa.Column("log_event_pen", sa.BigInteger(), nullable=False),
        sa.Column("profile_id", sa.Integer(), nullable=False),
    )
    op.create_index("ix_log_events_device_id", "log_events", ["device_id", "id"])
    op.create_index("ix_log_events_device_created", "log_events", ["device_id", "created_date_time", "log_event_id"])


def downgrade() -> None:
    op.drop_index("ix_log_events_device_created", "log_events")
    op.drop_index("ix_log_events_device_id", "log_events")
    op.drop_table("log_events")
    op.drop_index("ix_der_curves_program_id", "der_curves")
    op.drop_table("der_curves")
