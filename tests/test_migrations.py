"""Migrations keep data: a SQLite batch migration (which recreates a table) must not cascade
into the rows that refer to it."""

from __future__ import annotations

import shutil
from pathlib import Path

from sqlalchemy import text

from server.db import migrate
from server.db.session import Database

BATCH = '''"""Test-only: alter `devices` the way SQLite must, by recreating it."""
import sqlalchemy as sa
from alembic import op

revision = "9999"
down_revision = "{head}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("devices", recreate="always") as batch:
        batch.add_column(sa.Column("test_only", sa.Integer()))


def downgrade() -> None:
    with op.batch_alter_table("devices", recreate="always") as batch:
        batch.drop_column("test_only")
'''


def test_recreating_devices_keeps_the_rows_that_refer_to_it(tmp_path: Path) -> None:
    from server.services.sep2 import derp, edev

    db = Database(f"sqlite:///{tmp_path / 'm.db'}")
    migrate.upgrade(db.engine)
    with db.transaction() as s:
        dev = edev.register_out_of_band(s, "AB" * 20, 0).id
        prog = derp.create_der_program(s, description=None, primacy=0, now=0).id
        derp.add_members(s, prog, [dev])
    scripts = tmp_path / "migrations"
    shutil.copytree(Path(migrate.__file__).with_name("migrations"), scripts)
    (scripts / "versions" / "9999_batch.py").write_text(BATCH.format(head=migrate.head_revision()))
    migrate.upgrade(db.engine, scripts=scripts)
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM der_program_members")).scalar() == 1
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1  # back on for the app
    db.dispose()
