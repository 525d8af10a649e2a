"""Alembic environment: the engine comes from `tasks.store` (no alembic.ini needed)."""

from alembic import context
from sqlalchemy.engine import Connection

from minyi.schemas.tables import metadata

config = context.config
engine = config.attributes.get("engine")
if engine is None:  # `alembic` CLI use: fall back to the configured store
    from minyi.tasks.config import Settings
    from minyi.tasks.store.engine import get_engine

    engine = get_engine(Settings().resolved_database_url())


def _check_foreign_keys(connection: Connection) -> None:
    bad = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if bad:
        raise RuntimeError(f"migration left {len(bad)} rows whose foreign key points nowhere (first: {bad[0]!r})")


with engine.connect() as connection:
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        # SQLite changes a constraint by rebuilding the table; with foreign keys on, dropping the old table would
        # first delete its rows and cascade into every table that references it. So, as SQLite's own procedure
        # says: keys off outside the transaction, checked inside it before commit, back on for the pooled connection.
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
        connection.commit()  # end SQLAlchemy's autobegun transaction, or alembic would not commit its own
    try:
        context.configure(
            connection=connection,
            target_metadata=metadata,
            render_as_batch=sqlite,
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
            if sqlite:
                _check_foreign_keys(connection)
    finally:
        if sqlite:
            connection.rollback()  # nothing open after a commit; after a failure, the pragma needs no transaction
            connection.exec_driver_sql("PRAGMA foreign_keys=ON")
            connection.commit()
