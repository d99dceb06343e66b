"""Flexibility programs: programs, grid nodes, enrollments, windows, clearings, setpoints; the
scheduler's job store and leadership lease.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "flex_programs",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False, unique=True),
        sa.Column("spec", sa.Text(), nullable=False),
        sa.Column("der_program_id", sa.Integer(), sa.ForeignKey("der_programs.id", ondelete="RESTRICT"), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_time", sa.BigInteger(), nullable=False),
        sa.Column("updated_time", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "grid_nodes",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("parent_id", sa.Integer(), sa.ForeignKey("grid_nodes.id", ondelete="RESTRICT")),
        sa.Column("load_percent", sa.Float(), nullable=False),
        sa.Column("adder_per_percent", sa.Float(), nullable=False),
        sa.Column("congestion_multiplier", sa.Float(), nullable=False),
        sa.Column("max_forward_kw", sa.Float()),
        sa.Column("max_reverse_kw", sa.Float()),
        sa.Column("current_load_kw", sa.Float()),
        sa.Column("updated_time", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "enrollments",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("program_id", sa.Integer(), sa.ForeignKey("flex_programs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("device_id", sa.Integer(), sa.ForeignKey("devices.id", ondelete="CASCADE"), nullable=False),
        sa.Column("customer", sa.String(100), nullable=False),
        sa.Column("device_kind", sa.String(16), nullable=False),
        sa.Column("grid_node_id", sa.Integer(), sa.ForeignKey("grid_nodes.id", ondelete="RESTRICT")),
        sa.Column("offer", sa.Text()),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("external_ref", sa.String(100)),
        sa.Column("created_time", sa.BigInteger(), nullable=False),
        sa.Column("updated_time", sa.BigInteger(), nullable=False),
        sa.UniqueConstraint("program_id", "device_id", name="uq_enrollments_program_device"),
    )
    op.create_index("ix_enrollments_device_id", "enrollments", ["device_id"])
    op.create_table(
        "flex_windows",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("program_id", sa.Integer(), sa.ForeignKey("flex_programs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("window_key", sa.String(32), nullable=False),
        sa.Column("start", sa.BigInteger(), nullable=False),
        sa.Column("end", sa.BigInteger(), nullable=False),
        sa.Column("publish_at", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("input_digest", sa.String(64)),
        sa.Column("published_time", sa.BigInteger()),
        sa.Column("note", sa.String(200)),
        sa.Column("updated_time", sa.BigInteger(), nullable=False),
        sa.UniqueConstraint("program_id", "window_key", name="uq_flex_windows_program_key"),
    )
    op.create_index("ix_flex_windows_state_publish_at", "flex_windows", ["state", "publish_at"])
    op.create_table(
        "flex_clearings",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("window_id", sa.Integer(), sa.ForeignKey("flex_windows.id", ondelete="CASCADE"), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("interval_index", sa.Integer(), nullable=False),
        sa.Column("start", sa.BigInteger(), nullable=False),
        sa.Column("end", sa.BigInteger(), nullable=False),
        sa.Column("requested_kw", sa.Float(), nullable=False),
        sa.Column("price", sa.Float(), nullable=False),
        sa.Column("quantity_kw", sa.Float(), nullable=False),
        sa.Column("feasible", sa.Boolean(), nullable=False),
        sa.Column("available_at_cap_kw", sa.Float(), nullable=False),
        sa.Column("devices", sa.Integer(), nullable=False),
        sa.Column("nodes", sa.Text()),
        sa.Column("created_time", sa.BigInteger(), nullable=False),
        sa.UniqueConstraint("window_id", "revision", "interval_index", name="uq_flex_clearings_window_rev_interval"),
    )
    op.create_table(
        "flex_setpoints",
        sa.Column("clearing_id", sa.Integer(), sa.ForeignKey("flex_clearings.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("device_id", sa.Integer(), sa.ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("enrollment_id", sa.Integer(), sa.ForeignKey("enrollments.id", ondelete="SET NULL")),
        sa.Column("reduction_kw", sa.Float(), nullable=False),
        sa.Column("power_kw", sa.Float(), nullable=False),
        sa.Column("device_price", sa.Float(), nullable=False),
        sa.Column("curve", sa.Text(), nullable=False),
        sa.Column("event_mrid", sa.String(32)),
    )
    op.create_index("ix_flex_setpoints_device_id", "flex_setpoints", ["device_id"])
    op.create_table(
        "apscheduler_jobs",
        sa.Column("id", sa.Unicode(191), primary_key=True),
        sa.Column("next_run_time", sa.Float(25)),
        sa.Column("job_state", sa.LargeBinary(), nullable=False),
    )
    op.create_index("ix_apscheduler_jobs_next_run_time", "apscheduler_jobs", ["next_run_time"])
    op.create_table(
        "scheduler_leases",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("holder", sa.String(100), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
    )


def downgrade() -> None:
    for table in ("scheduler_leases", "apscheduler_jobs", "flex_setpoints", "flex_clearings",
                  "flex_windows", "enrollments", "grid_nodes", "flex_programs"):
        op.drop_table(table)
