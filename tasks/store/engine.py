"""The store: engines, migrations, and the bulk paths for the large tables.

Why raw DBAPI here: the ORM's `add_all` is ~30x slower than `executemany` at a
million rows, so the large tables (records, follow-ups, orders) are written with
`executemany` on SQLite and `COPY` into a staging table + one merge on PostgreSQL.
Everything else may use SQLModel sessions.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, inspect, text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, OperationalError

from minyi.tasks.errors import ConfigError, StoreUnavailable

_engines: dict[str, Engine] = {}
_lock = threading.Lock()


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # WAL lets reporting read while ingest writes; busy_timeout makes concurrent writers wait, not fail.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=60000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def get_engine(url: str) -> Engine:
    """One engine per URL per process; SQLite files get their directory and pragmas.

    `hide_parameters`: a failed statement's error (logged by Prefect with its traceback)
    must not carry the bound values, which are citizens' numbers and names on the bulk paths.
    """
    with _lock:
        engine = _engines.get(url)
        if engine is not None:
            return engine
        try:
            parsed = make_url(url)
        except ArgumentError:
            raise ConfigError(f"MINYI_DATABASE_URL: not a database URL: {url!r}") from None
        if parsed.get_backend_name() == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False}, hide_parameters=True)
            event.listen(engine, "connect", _sqlite_pragmas)
        elif parsed.get_backend_name() == "postgresql":
            if parsed.drivername == "postgresql":
                parsed = parsed.set(drivername="postgresql+psycopg")
            engine = create_engine(
                parsed, pool_pre_ping=True, connect_args={"connect_timeout": 10}, hide_parameters=True
            )
        else:
            raise ConfigError(f"MINYI_DATABASE_URL: unsupported database {parsed.get_backend_name()!r}")
        _engines[url] = engine
        return engine


def dispose_engines() -> None:
    """Close pooled connections (tests that drop databases need this)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


def _alembic_config(engine: Engine) -> Any:
    from alembic.config import Config

    import minyi.schemas.migrations as migrations  # located by package, not by this file's place in the tree

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(migrations.__file__).resolve().parent))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine) -> str:
    """Bring the schema to the newest migration (`minyi db upgrade`); returns the revision."""
    from alembic import command

    ensure_reachable(engine)
    command.upgrade(_alembic_config(engine), "head")
    return current_revision(engine) or ""


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision(engine: Engine) -> str:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config(engine)).get_current_head() or ""


def ensure_reachable(engine: Engine) -> None:
    """Fail with one line when the database cannot be reached."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc).splitlines()[0]
        raise StoreUnavailable(
            f"database unreachable ({engine.url.render_as_string(hide_password=True)}): {reason}"
        ) from None


def ensure_ready(engine: Engine) -> None:
    """Reachable and migrated to head, or a one-line refusal before any work starts."""
    ensure_reachable(engine)
    current, head = current_revision(engine), head_revision(engine)
    if current != head:
        raise StoreUnavailable(f"database schema is at {current or 'nothing'}, needs {head}: run `minyi db upgrade`")


def table_names(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names())


def is_sqlite(conn_or_engine: Connection | Engine) -> bool:
    return conn_or_engine.dialect.name == "sqlite"


def instant_param(dialect_name: str, value: datetime | None) -> Any:
    """The DBAPI parameter for an instant on the bulk paths, matching `UtcDateTime`'s storage."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("naive datetime refused on the bulk path")
    value = value.astimezone(UTC)
    if dialect_name == "sqlite":
        # isoformat is ~4x faster than strftime, and this runs once per row on the bulk paths
        return value.replace(tzinfo=None).isoformat(" ", "microseconds")
    return value


def refresh_statistics(conn: Connection, *tables: str) -> None:
    """ANALYZE tables a bulk write just filled, on PostgreSQL, in the caller's transaction.

    Why: autovacuum analyses a table only some time after a bulk load; until it
    has, the planner believes a freshly loaded table is nearly empty and picks
    plans that scan every row per query (the SMS relay's next-batch query went
    from 0.3 ms to 24 ms per batch at 100k queued, and grows with the queue).
    SQLite's planner needs no statistics for our queries.
    """
    if conn.dialect.name == "postgresql":
        for table in tables:
            conn.execute(text(f"ANALYZE {table}"))


@contextmanager
def raw_transaction(engine: Engine, wait_for_flush: bool = True) -> Iterator[Any]:
    """A raw DBAPI connection in one transaction: commit on success, roll back on any error.

    `wait_for_flush=False`: on PostgreSQL the commit does not wait for the WAL flush (`SET LOCAL
    synchronous_commit = off`), as SQLite's synchronous=NORMAL in WAL mode never does. A server crash may
    then lose the last ~0.6 s of such commits, never part of one: only for writes whose loss the next run
    repairs by itself (an ingest page with its cursor, the SMS relay's claims and answers; each caller says
    why; figures in docs/performance.md, session 11).
    """
    raw = engine.raw_connection()
    try:
        dbapi = raw.driver_connection
        if engine.dialect.name == "sqlite":
            # pysqlite's implicit transactions don't cover every statement; be explicit.
            dbapi.isolation_level = None
            dbapi.execute("BEGIN IMMEDIATE")
            try:
                yield dbapi
                dbapi.execute("COMMIT")
            except BaseException:
                dbapi.execute("ROLLBACK")
                raise
            finally:
                dbapi.isolation_level = ""
        else:
            try:
                if not wait_for_flush:
                    dbapi.execute("SET LOCAL synchronous_commit = off")
                yield dbapi
                dbapi.commit()
            except BaseException:
                dbapi.rollback()
                raise
    finally:
        raw.close()
