"""CSIP-AUS: a device's connection point (NMI), and operators' revocation of client certificates.

- `devices.connection_point_id` (indexed): the csipaus ConnectionPoint of an EndDevice, set by the
  device (PUT/POST /edev/{id}/cp) or an operator; devices of one site share it. A plain nullable
  column: added in place, no table rebuild, existing rows have none.
- `revoked_clients`: certificate LFDIs an operator shut out (every 2030.5 request refused) until
  restored. In the `sep2` cache family, so every process forgets cached answers at once.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-10
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("devices", sa.Column("connection_point_id", sa.String(32)))
    op.create_index("ix_devices_connection_point_id", "devices", ["connection_point_id"])
    op.create_table(
        "revoked_clients",
        sa.Column("lfdi", sa.String(40), primary_key=True),
        sa.Column("revoked_time", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.String(200)),
    )


def downgrade() -> None:
    op.drop_table("revoked_clients")
    op.drop_index("ix_devices_connection_point_id", table_name="devices")
    with op.batch_alter_table("devices") as batch:
        batch.drop_column("connection_point_id")
