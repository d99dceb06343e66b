"""Alembic environment: the engine is handed in by server.db.migrate (no ini file, no URL here).

SQLite alters tables by recreating them ("batch" mode). With foreign keys enforced, dropping the
old table would cascade and delete every row that refers to it, so foreign keys are switched off
for the migration (outside its transaction, where SQLite honours the pragma) and checked after.
"""

from alembic import context

from server.db.tables import metadata

engine = context.config.attributes["engine"]
with engine.connect() as connection:
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
        connection.commit()  # ends SQLAlchemy's implicit transaction; SQLite began none
    try:
        with connection.begin():
            context.configure(connection=connection, target_metadata=metadata, render_as_batch=sqlite)
            context.run_migrations()
        if sqlite:
            broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
            connection.commit()
            if broken:
                raise RuntimeError(f"migration left rows whose references are broken: {broken[:5]}")
    finally:
        if sqlite:
            connection.exec_driver_sql("PRAGMA foreign_keys=ON")
            connection.commit()
