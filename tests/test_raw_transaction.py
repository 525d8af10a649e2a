"""`raw_transaction(engine, wait_for_flush=False)`: the relaxed commit stays inside its own transaction."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import Engine

from minyi.tasks.store.engine import get_engine, raw_transaction


def _commit_mode(engine: Engine, **kw: bool) -> str | None:
    with raw_transaction(engine, **kw) as db:
        if engine.dialect.name != "postgresql":
            return None
        return db.execute("SHOW synchronous_commit").fetchone()[0]


def test_only_the_transaction_that_asks_for_it_skips_the_flush_and_it_still_commits(store_url: str) -> None:
    engine = get_engine(store_url)
    p = "?" if engine.dialect.name == "sqlite" else "%s"
    before = _commit_mode(engine)
    relaxed = _commit_mode(engine, wait_for_flush=False)
    after = _commit_mode(engine)  # the same pooled connection: SET LOCAL ended with its transaction
    if engine.dialect.name == "postgresql":
        assert (before, relaxed, after) == ("on", "off", "on")
    with raw_transaction(engine, wait_for_flush=False) as db:
        db.execute(
            f"INSERT INTO opt_outs (phone_norm, opted_out_at, reply_id) VALUES ({p}, {p}, {p})",
            ("13800000001", "2026-11-22 01:00:00.000000", "r-1"),
        )
    with pytest.raises(RuntimeError), raw_transaction(engine, wait_for_flush=False) as db:
        db.execute(
            f"INSERT INTO opt_outs (phone_norm, opted_out_at, reply_id) VALUES ({p}, {p}, {p})",
            ("13800000002", "2026-11-22 01:00:00.000000", "r-2"),
        )
        raise RuntimeError("a page failed half-way")
    with engine.connect() as conn:
        got = conn.exec_driver_sql("SELECT phone_norm FROM opt_outs ORDER BY phone_norm").all()
    assert [r[0] for r in got] == ["13800000001"]  # committed; the failed one rolled back whole
