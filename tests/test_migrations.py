"""The migrations build exactly the schema the models describe, on both databases."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from minyi.schemas.tables import metadata
from minyi.tasks.store.engine import get_engine
from tests.conftest import BACKENDS
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


_NOW = "2026-11-22 09:00:00+00:00"
_POPULATE = [
    "INSERT INTO records (id, source, record_id, business_date, channel, matter, handled_at, unit_code, phone_kind, "
    "confidential, ingested_at, updated_at) VALUES (1, 'police110', 'R-1', '2026-11-21', '110', 'police_call', "
    f"'{_NOW}', 'U1', 'mobile', false, '{_NOW}', '{_NOW}')",
    "INSERT INTO followups (id, record_pk, source, record_id, business_date, unit_code, phone_norm, plan, message_id, "
    f"sms_status, planned_at, sent_at) VALUES (7, 1, 'police110', 'R-1', '2026-11-21', 'U1', '13900000001', 'sms', "
    f"'minyi:police110:R-1', 'sent', '{_NOW}', '{_NOW}')",
    "INSERT INTO answers (followup_id, via, ref, value, answered_at, backdated) "
    f"VALUES (7, 'sms', 'sms:r1', 'dissatisfied', '{_NOW}', false)",
    "INSERT INTO sms_replies (reply_id, phone_norm, text, value, message_id, received_at, window_start, status, "
    f"ingested_at, followup_id) VALUES ('r1', '13900000001', '3', 'dissatisfied', 'minyi:police110:R-1', '{_NOW}', "
    f"'{_NOW}', 'matched', '{_NOW}', 7)",
    "INSERT INTO orders (followup_id, source, record_id, unit_code, opened_at, status, created_at, updated_at, period) "
    f"VALUES (7, 'police110', 'R-1', 'U1', '{_NOW}', 'open', '{_NOW}', '{_NOW}', 1)",
]


@pytest.fixture(params=BACKENDS)
def unmigrated_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """An empty database of its own, no schema yet (the shared stores are migrated to head already)."""
    from benchmarks.common import throwaway_store

    with throwaway_store(request.param) as url:
        yield url


def test_upgrade_rebuilds_followups_without_losing_what_references_them(unmigrated_url: str) -> None:
    """A store at 0009 with an answered, ordered follow-up: after the upgrade every row is still there.

    Why it could fail: SQLite drops a constraint by rebuilding the table, and with foreign keys on, dropping
    the old `followups` first deletes its rows, cascading into answers and orders and nulling replies' link.
    """
    from alembic import command

    from minyi.tasks.store.engine import _alembic_config, head_revision, upgrade

    engine = get_engine(unmigrated_url)
    command.upgrade(_alembic_config(engine), "0009")
    with engine.begin() as conn:
        for sql in _POPULATE:
            conn.execute(text(sql))
    assert upgrade(engine) == head_revision(engine)
    with engine.connect() as conn:
        got = {
            t: conn.execute(text(f"SELECT COUNT(*) FROM {t}")).scalar_one()
            for t in ("records", "followups", "answers", "orders")
        }
        assert got == {"records": 1, "followups": 1, "answers": 1, "orders": 1}
        assert conn.execute(text("SELECT followup_id FROM sms_replies")).scalar_one() == 7
        assert conn.execute(text("SELECT message_id FROM followups WHERE id = 7")).scalar_one() == "minyi:police110:R-1"
    # answers still refer to follow-ups: an answer for a follow-up that does not exist is refused
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO answers (followup_id, via, ref, value, answered_at, backdated) "
                f"VALUES (999, 'sms', 'sms:r2', 'satisfied', '{_NOW}', false)"
            )
        )
