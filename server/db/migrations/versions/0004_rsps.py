"""Responses to DER events.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "der_responses",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("event_id", sa.Integer(), sa.ForeignKey("der_events.id", ondelete="CASCADE"), nullable=False),
        sa.Column("device_id", sa.Integer(), sa.ForeignKey("devices.id", ondelete="CASCADE"), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("created_date_time", sa.BigInteger()),
        sa.Column("received_time", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_der_responses_event_device", "der_responses", ["event_id", "device_id"])
    op.create_index("ix_der_responses_device_id", "der_responses", ["device_id"])


def downgrade() -> None:
    op.drop_index("ix_der_responses_device_id", "der_responses")
    op.drop_index("ix_der_responses_event_device", "der_responses")
    op.drop_table("der_responses")
