"""The Beckn facade: received messages, the callback outbox, orders and ratings.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "beckn_inbox",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("bap_id", sa.String(255), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("message_id", sa.String(255), nullable=False),
        sa.Column("transaction_id", sa.String(255), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("received_time", sa.Float(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("claimed_until", sa.Float(), nullable=False, server_default="0"),
        sa.Column("processed_time", sa.Float()),
        sa.UniqueConstraint("bap_id", "action", "message_id", name="uq_beckn_inbox_message"),
    )
    op.create_index("ix_beckn_inbox_state", "beckn_inbox", ["state", "id"])
    op.create_table(
        "beckn_outbox",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("inbox_id", sa.Integer(), sa.ForeignKey("beckn_inbox.id", ondelete="SET NULL")),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("url", sa.String(1024), nullable=False),
        sa.Column("bap_id", sa.String(255), nullable=False),
        sa.Column("message_id", sa.String(255), nullable=False),
        sa.Column("transaction_id", sa.String(255), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("next_attempt_at", sa.Float(), nullable=False),
        sa.Column("claimed_until", sa.Float(), nullable=False, server_default="0"),
        sa.Column("deadline", sa.Float(), nullable=False),
        sa.Column("last_error", sa.String(500)),
        sa.Column("created_time", sa.Float(), nullable=False),
        sa.Column("delivered_time", sa.Float()),
    )
    op.create_index("ix_beckn_outbox_due", "beckn_outbox", ["state", "next_attempt_at"])
    op.create_table(
        "beckn_orders",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("bap_id", sa.String(255), nullable=False, index=True),
        sa.Column("bap_uri", sa.String(1024), nullable=False),
        sa.Column("transaction_id", sa.String(255), nullable=False, index=True),
        sa.Column("program_id", sa.Integer(), sa.ForeignKey("flex_programs.id", ondelete="RESTRICT"), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("order", sa.Text(), nullable=False),
        sa.Column("context", sa.Text(), nullable=False),
        sa.Column("created_time", sa.BigInteger(), nullable=False),
        sa.Column("updated_time", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "beckn_ratings",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("bap_id", sa.String(255), nullable=False),
        sa.Column("ref_id", sa.String(255), nullable=False),
        sa.Column("category", sa.String(64), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("created_time", sa.BigInteger(), nullable=False),
    )


def downgrade() -> None:
    for table in ("beckn_ratings", "beckn_orders", "beckn_outbox", "beckn_inbox"):
        op.drop_table(table)
