"""Subscription/Notification: subscriptions, the notifications queued for them, the clock scan's
cursor, and indexes on event start and end for that scan.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "subscriptions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("device_id", sa.Integer(), sa.ForeignKey("devices.id", ondelete="CASCADE"), nullable=False),
        sa.Column("subscriber_lfdi", sa.String(40), nullable=False),
        sa.Column("resource", sa.String(255), nullable=False),
        sa.Column("target", sa.String(16), nullable=False),
        sa.Column("target_device_id", sa.Integer(), nullable=False),
        sa.Column("program_id", sa.Integer()),
        sa.Column("fsa_id", sa.Integer()),
        sa.Column("der_doc", sa.String(8)),
        sa.Column("notification_uri", sa.String(255), nullable=False),
        sa.Column("receiver", sa.String(255), nullable=False),
        sa.Column("limit", sa.Integer(), nullable=False),
        sa.Column("level", sa.String(16), nullable=False),
        sa.Column("encoding", sa.Integer(), nullable=False),
        sa.Column("created_time", sa.BigInteger(), nullable=False),
        sa.Column("updated_time", sa.BigInteger(), nullable=False),
        sa.UniqueConstraint("device_id", "subscriber_lfdi", "resource", name="uq_subscriptions_resource"),
    )
    op.create_index("ix_subscriptions_device_id", "subscriptions", ["device_id"])
    op.create_index("ix_subscriptions_target", "subscriptions", ["target", "target_device_id", "program_id"])
    op.create_table(
        "notifications",
        sa.Column("id", BIG_ID, primary_key=True),
        sa.Column("subscription_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(100), nullable=False),
        sa.Column("receiver", sa.String(255), nullable=False),
        sa.Column("uri", sa.String(255), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.Float(), nullable=False),
        sa.Column("last_error", sa.String(500)),
        sa.Column("created_time", sa.Float(), nullable=False),
        sa.Column("delivered_time", sa.Float()),
        sa.Column("replays", sa.Integer(), nullable=False),
        sa.UniqueConstraint("subscription_id", "key", name="uq_notifications_subscription_key"),
    )
    op.create_index("ix_notifications_due", "notifications", ["state", "next_attempt_at"])
    op.create_index("ix_notifications_receiver", "notifications", ["receiver", "state"])
    op.create_table(
        "notification_cursors",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("at", sa.Float(), nullable=False),
    )
    op.create_index("ix_der_events_start", "der_events", ["start"])
    op.create_index("ix_der_events_end", "der_events", [sa.text("(start + duration)")])


def downgrade() -> None:
    op.drop_index("ix_der_events_end", "der_events")
    op.drop_index("ix_der_events_start", "der_events")
    for table in ("notification_cursors", "notifications", "subscriptions"):
        op.drop_table(table)
