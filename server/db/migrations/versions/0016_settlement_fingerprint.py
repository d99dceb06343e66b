"""Settlement re-checks by fingerprint: `settlement_runs.readings_fingerprint`, what the run's
measurement read (services.flex.settlement.fingerprint). A re-check that finds it unchanged only
moves `checked_time` instead of measuring the window again. A plain nullable column: added in
place, existing runs have none (their next re-check measures once and records it).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-11
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("settlement_runs", sa.Column("readings_fingerprint", sa.String(64)))


def downgrade() -> None:
    with op.batch_alter_table("settlement_runs") as batch:
        batch.drop_column("readings_fingerprint")
