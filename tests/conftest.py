"""Fixtures: a fresh migrated store per test on SQLite and on PostgreSQL, one Prefect harness per session.

PostgreSQL is not optional: when MINYI_TEST_PG_URL's server is unreachable the
postgres half of every store test errors, it is never skipped.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from minyi.tasks.runtime import quiet_third_parties
from minyi.tasks.store.engine import dispose_engines, get_engine, upgrade
from tests.support import Env

# Prefect's home (its settings, its temporary server's database) is the session's own directory, set before
# Prefect is first imported: the tests never write into the checkout, which CI's clone may not let them do.
# CLI subprocesses inherit it, so a run without PREFECT_API_URL starts its temporary server on a database
# this worker has migrated once, not on a fresh one per test.
os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="minyi-test-prefect-")
quiet_third_parties()
PG_ADMIN_URL = os.environ.get("MINYI_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
BACKENDS = ("sqlite", "postgres")


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    engine = get_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()
    return path


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A throwaway database for this test session, migrated once."""
    name = f"minyi_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    upgrade(get_engine(url))
    yield url
    dispose_engines()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _truncate_all(url: str) -> None:
    engine = get_engine(url)
    with engine.begin() as conn:
        tables = [
            r[0]
            for r in conn.execute(
                text("SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'")
            )
        ]
        if tables:
            conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path) -> Iterator[str]:
    """A migrated, empty store: a copy of the template on SQLite, the truncated session database on PostgreSQL."""
    if request.param == "sqlite":
        path = tmp_path / "minyi.db"
        shutil.copy(sqlite_template, path)
        url = f"sqlite:///{path}"
        yield url
        get_engine(url).dispose()
    else:
        url = request.getfixturevalue("pg_database")
        _truncate_all(url)
        yield url


@pytest.fixture
def env(store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Env:
    monkeypatch.setenv("MINYI_DATABASE_URL", store_url)
    monkeypatch.setenv("MINYI_REPORTS_DIR", str(tmp_path / "reports"))
    monkeypatch.setenv("MINYI_HOME", str(tmp_path / "home"))
    return Env(url=store_url, dir=tmp_path, engine=get_engine(store_url), monkeypatch=monkeypatch)


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """One ephemeral Prefect API for the whole session (its start-up costs 10–25 s)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The fault suite's figures (`make faults`), each summed from asserts inside the tests that produced it."""
    import sys

    support = sys.modules.get("tests.faults_support")
    figures = getattr(support, "FIGURES", None)
    if not figures or not any(figures.values()):
        return
    w = terminalreporter.write_line
    w("")
    w("fault-suite figures:")
    w(f"  kills survived per backend: {dict(figures['kills_survived'])}")
    w(f"  fault kinds ({len(figures['fault_kinds'])}): {sorted(figures['fault_kinds'])}")
    w(f"  bad inputs per table: {dict(figures['bad_inputs'])} (total {sum(figures['bad_inputs'].values())})")
    w(f"  re-sent message_ids observed: {figures['resent']} (bound: {figures['resend_bound']} in flight at the kills)")
    w(f"  rows lost: {figures['lost']}, duplicates: {figures['duplicates']}")
