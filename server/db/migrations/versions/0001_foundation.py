"""Foundation: devices, aggregators, poll-rate overrides, change counters, admin tokens.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "devices",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("lfdi", sa.String(40), nullable=False, unique=True),
        sa.Column("sfdi", sa.BigInteger(), nullable=False),
        sa.Column("device_category", sa.String(8)),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("post_rate", sa.BigInteger()),
        sa.Column("changed_time", sa.BigInteger(), nullable=False),
        sa.Column("registered_time", sa.BigInteger(), nullable=False),
        sa.Column("registered_by", sa.String(40), nullable=False),
        sa.Column("aggregator_lfdi", sa.String(40)),
        sa.Column("pin", sa.Integer()),
        sa.Column("pin_time", sa.BigInteger()),
        sa.Column("label", sa.String(100)),
    )
    op.create_index("ix_devices_sfdi", "devices", ["sfdi"])
    op.create_index("ix_devices_aggregator_lfdi", "devices", ["aggregator_lfdi"])
    op.create_table(
        "aggregators",
        sa.Column("lfdi", sa.String(40), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("created_time", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "poll_rates",
        sa.Column("resource", sa.String(32), primary_key=True),
        sa.Column("seconds", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "change_counters",
        sa.Column("family", sa.String(32), primary_key=True),
        sa.Column("value", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "admin_tokens",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("token_sha256", sa.String(64), nullable=False, unique=True),
        sa.Column("created_time", sa.BigInteger(), nullable=False),
        sa.Column("revoked", sa.Boolean(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("admin_tokens")
    op.drop_table("change_counters")
    op.drop_table("poll_rates")
    op.drop_table("aggregators")
    op.drop_index("ix_devices_aggregator_lfdi", "devices")
    op.drop_index("ix_devices_sfdi", "devices")
    op.drop_table("devices")
