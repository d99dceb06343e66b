"""DER function set: what each device reported about its DER (capability, settings, status,
availability), one row per (device, DER) per kind, removed with the device.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _keys() -> list[sa.Column[Any]]:
    """The columns every DER table shares: its key, the stored document, when it arrived."""
    return [
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.Column("der_id", sa.Integer(), nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.Column("received_time", sa.BigInteger(), nullable=False),
    ]


def _constraints() -> list[sa.Constraint]:
    return [
        sa.PrimaryKeyConstraint("device_id", "der_id"),
        sa.ForeignKeyConstraint(["device_id"], ["devices.id"], ondelete="CASCADE"),
    ]


def upgrade() -> None:
    op.create_table(
        "der_capabilities",
        *_keys(),
        sa.Column("der_type", sa.Integer(), nullable=False),
        sa.Column("rtg_max_w", sa.Float(), nullable=False),
        sa.Column("rtg_max_charge_rate_w", sa.Float()),
        sa.Column("rtg_max_discharge_rate_w", sa.Float()),
        sa.Column("rtg_max_wh", sa.Float()),
        *_constraints(),
    )
    op.create_table(
        "der_settings",
        *_keys(),
        sa.Column("updated_time", sa.BigInteger(), nullable=False),
        sa.Column("set_max_w", sa.Float(), nullable=False),
        sa.Column("set_max_charge_rate_w", sa.Float()),
        sa.Column("set_max_discharge_rate_w", sa.Float()),
        sa.Column("set_max_wh", sa.Float()),
        *_constraints(),
    )
    op.create_table(
        "der_statuses",
        *_keys(),
        sa.Column("reading_time", sa.BigInteger(), nullable=False),
        sa.Column("state_of_charge_percent", sa.Float()),
        sa.Column("operational_mode", sa.Integer()),
        sa.Column("storage_mode", sa.Integer()),
        sa.Column("inverter_status", sa.Integer()),
        sa.Column("gen_connect_status", sa.Integer()),
        sa.Column("stor_connect_status", sa.Integer()),
        *_constraints(),
    )
    op.create_table(
        "der_availabilities",
        *_keys(),
        sa.Column("reading_time", sa.BigInteger(), nullable=False),
        sa.Column("stat_w_avail_w", sa.Float()),
        sa.Column("stat_var_avail_var", sa.Float()),
        sa.Column("reserve_percent", sa.Float()),
        sa.Column("reserve_charge_percent", sa.Float()),
        sa.Column("max_charge_duration_s", sa.BigInteger()),
        sa.Column("availability_duration_s", sa.BigInteger()),
        *_constraints(),
    )


def downgrade() -> None:
    op.drop_table("der_availabilities")
    op.drop_table("der_statuses")
    op.drop_table("der_settings")
    op.drop_table("der_capabilities")
