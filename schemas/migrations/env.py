"""Alembic environment: the engine comes from `tasks.store` (no alembic.ini needed)."""

from alembic import context

from minyi.schemas.tables import metadata

config = context.config
engine = config.attributes.get("engine")
if engine is None:  # `alembic` CLI use: fall back to the configured store
    from minyi.tasks.config import Settings
    from minyi.tasks.store.engine import get_engine

    engine = get_engine(Settings().resolved_database_url())

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
