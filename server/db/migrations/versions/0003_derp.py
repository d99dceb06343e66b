"""DER programs, their members and events (DERControls).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "der_programs",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("mrid", sa.String(32), nullable=False, unique=True),
        sa.Column("description", sa.String(32)),
        sa.Column("primacy", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_time", sa.BigInteger(), nullable=False),
        sa.Column("default_mrid", sa.String(32)),
        sa.Column("default_version", sa.Integer(), nullable=False),
        sa.Column("default_base", sa.Text()),
    )
    op.create_table(
        "der_program_members",
        sa.Column("program_id", sa.Integer(), sa.ForeignKey("der_programs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("device_id", sa.Integer(), sa.ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True),
    )
    op.create_index("ix_der_program_members_device_id", "der_program_members", ["device_id"])
    op.create_table(
        "der_events",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("mrid", sa.String(32), nullable=False, unique=True),
        sa.Column("program_id", sa.Integer(), sa.ForeignKey("der_programs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("device_id", sa.Integer(), sa.ForeignKey("devices.id", ondelete="CASCADE")),
        sa.Column("description", sa.String(32)),
        sa.Column("creation_time", sa.BigInteger(), nullable=False),
        sa.Column("start", sa.BigInteger(), nullable=False),
        sa.Column("duration", sa.BigInteger(), nullable=False),
        sa.Column("randomize_start", sa.Integer()),
        sa.Column("randomize_duration", sa.Integer()),
        sa.Column("response_required", sa.String(2), nullable=False),
        sa.Column("base", sa.Text(), nullable=False),
        sa.Column("controls", sa.String(400), nullable=False),
        sa.Column("cancelled_at", sa.BigInteger()),
        sa.Column("cancel_randomized", sa.Boolean(), nullable=False),
    )
    op.create_index("ix_der_events_program_device_start", "der_events", ["program_id", "device_id", "start"])


def downgrade() -> None:
    op.drop_index("ix_der_events_program_device_start", "der_events")
    op.drop_table("der_events")
    op.drop_index("ix_der_program_members_device_id", "der_program_members")
    op.drop_table("der_program_members")
    op.drop_table("der_programs")
