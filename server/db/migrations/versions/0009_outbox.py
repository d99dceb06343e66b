"""The transactional outbox: facts, their delivery to each consumer, and consumers' receipts.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "outbox_facts",
        sa.Column("id", BIG_ID, primary_key=True),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("created_time", sa.Float(), nullable=False),
    )
    op.create_table(
        "outbox_deliveries",
        sa.Column("id", BIG_ID, primary_key=True),
        sa.Column("fact_id", BIG_ID, sa.ForeignKey("outbox_facts.id", ondelete="CASCADE"), nullable=False),
        sa.Column("consumer", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("next_attempt_at", sa.Float(), nullable=False),
        sa.Column("claimed_until", sa.Float(), nullable=False, server_default="0"),
        sa.Column("last_error", sa.String(500)),
        sa.Column("idempotency_key", sa.String(100), nullable=False),
        sa.Column("replays", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("updated_time", sa.Float(), nullable=False),
        sa.Column("delivered_time", sa.Float()),
        sa.UniqueConstraint("fact_id", "consumer", name="uq_outbox_deliveries_fact_consumer"),
        sa.UniqueConstraint("idempotency_key", name="uq_outbox_deliveries_idempotency_key"),
    )
    op.create_index("ix_outbox_deliveries_due", "outbox_deliveries", ["state", "next_attempt_at"])
    op.create_table(
        "outbox_receipts",
        sa.Column("ref", sa.String(255), primary_key=True),
        sa.Column("delivery_id", BIG_ID, sa.ForeignKey("outbox_deliveries.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("created_time", sa.Float(), nullable=False),
    )
    op.create_index("ix_outbox_receipts_delivery_id", "outbox_receipts", ["delivery_id"])


def downgrade() -> None:
    for table in ("outbox_receipts", "outbox_deliveries", "outbox_facts"):
        op.drop_table(table)
