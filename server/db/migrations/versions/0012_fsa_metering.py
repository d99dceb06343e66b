"""First-class FunctionSetAssignments; retired meter readings; DefaultDERControl settings.

- `function_set_assignments`, `fsa_devices` (a device's number for an FSA), `fsa_der_programs`.
  Existing membership (`der_program_members`) is untouched and keeps leading every device to its
  DER programs through its FSA 1, which is derived from it: nothing to copy.
- `meter_readings.retired_time`: a re-posted MirrorMeterReading whose ReadingType changed after
  readings were stored retires its row (server.services.sep2.mup). The unique key (usage point,
  mRID) becomes a unique index over the current rows only; `mrid` alone is indexed for the check
  that a MirrorMeterReading mRID belongs to one device. Every existing row is current (NULL), and
  the table is recreated on SQLite with its rows (foreign keys are off while migrating: env.py).
- `der_programs.default_settings`: the DefaultDERControl fields beside its DERControlBase
  (setGradW, setSoftGradW, setES*, description) as JSON keyed by their 2030.5 names.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-08
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

CURRENT = sa.text("retired_time IS NULL")


def upgrade() -> None:
    op.create_table(
        "function_set_assignments",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("mrid", sa.String(32), nullable=False, unique=True),
        sa.Column("description", sa.String(32)),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_time", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "fsa_devices",
        sa.Column("device_id", sa.Integer(), sa.ForeignKey("devices.id", ondelete="CASCADE"), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("fsa_id", sa.Integer(), sa.ForeignKey("function_set_assignments.id", ondelete="CASCADE"),
                  nullable=False),
        sa.PrimaryKeyConstraint("device_id", "number", name="pk_fsa_devices"),
        sa.UniqueConstraint("fsa_id", "device_id", name="uq_fsa_devices_fsa_device"),
    )
    op.create_table(
        "fsa_der_programs",
        sa.Column("fsa_id", sa.Integer(), sa.ForeignKey("function_set_assignments.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("program_id", sa.Integer(), sa.ForeignKey("der_programs.id", ondelete="CASCADE"), nullable=False),
        sa.PrimaryKeyConstraint("fsa_id", "program_id", name="pk_fsa_der_programs"),
    )
    op.create_index("ix_fsa_der_programs_program_id", "fsa_der_programs", ["program_id"])

    with op.batch_alter_table("meter_readings") as batch:
        batch.add_column(sa.Column("retired_time", sa.BigInteger()))
        batch.drop_constraint("uq_meter_readings_usage_point_mrid", type_="unique")
    op.create_index("uq_meter_readings_usage_point_mrid", "meter_readings", ["usage_point_id", "mrid"], unique=True,
                    sqlite_where=CURRENT, postgresql_where=CURRENT)
    op.create_index("ix_meter_readings_mrid", "meter_readings", ["mrid"])

    op.add_column("der_programs", sa.Column("default_settings", sa.Text()))


def downgrade() -> None:
    op.drop_column("der_programs", "default_settings")
    op.drop_index("ix_meter_readings_mrid", "meter_readings")
    op.drop_index("uq_meter_readings_usage_point_mrid", "meter_readings")
    # Retired rows hold readings under an older ReadingType: they cannot share the mRID key.
    op.execute("DELETE FROM meter_readings WHERE retired_time IS NOT NULL")
    with op.batch_alter_table("meter_readings") as batch:
        batch.create_unique_constraint("uq_meter_readings_usage_point_mrid", ["usage_point_id", "mrid"])
        batch.drop_column("retired_time")
    op.drop_index("ix_fsa_der_programs_program_id", "fsa_der_programs")
    op.drop_table("fsa_der_programs")
    op.drop_table("fsa_devices")
    op.drop_table("function_set_assignments")
