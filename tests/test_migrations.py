"""The migrations build exactly the schema the models describe, on both databases."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from minyi.schemas.tables import metadata
from tests.support import Env


def test_migrations_match_models(env: Env) -> None:
    with env.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
    assert diff == [], "models changed without a migration: run `make migration MSG=...`"


def test_instants_come_back_tz_aware_and_equal(env: Env) -> None:
    from datetime import date

    from sqlmodel import Session

    from minyi.schemas.records import IngestCheckpoint
    from tests.support import at

    when = at("2026-11-22 09:00")
    with Session(env.engine) as s:
        s.add(IngestCheckpoint(source="s", business_date=date(2026, 11, 21), updated_at=when))
        s.commit()
    with Session(env.engine) as s:
        got = s.get(IngestCheckpoint, ("s", date(2026, 11, 21)))
        assert got is not None and got.updated_at == when and got.updated_at.tzinfo is not None
