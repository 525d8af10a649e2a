"""Bulk writes of pulled pages: records upserted, rows quarantined, cursor advanced, in one transaction.

Why one transaction per page: the cursor is committed with the rows it follows,
so a run killed at any instant either has the page and its cursor or neither,
and the re-run resumes exactly after the last stored page (SPEC §3).
SQLite uses `executemany` with ON CONFLICT; PostgreSQL uses COPY into a temp
staging table and one INSERT … SELECT … ON CONFLICT merge.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlalchemy.engine import Engine

from minyi.tasks.rules.intake import BULK_COLUMNS, Accepted, PageIntake, Quarantined
from minyi.tasks.store.engine import instant_param, raw_transaction

_COLUMNS = ", ".join(BULK_COLUMNS)
_UTC = ZoneInfo("UTC")
# Fields a re-pull may change: all but the key, the date the record was first pulled for, and the two stamps
# (updated_at is set when a field changed).
_UPDATABLE = tuple(
    c for c in BULK_COLUMNS if c not in ("source", "record_id", "business_date", "ingested_at", "updated_at")
)
_SET = ", ".join(f"{c} = excluded.{c}" for c in _UPDATABLE) + ", updated_at = excluded.updated_at"

_SQLITE_UPSERT = (
    f"INSERT INTO records ({_COLUMNS}) VALUES ({', '.join('?' * 15)}) "
    f"ON CONFLICT (source, record_id) DO UPDATE SET {_SET} "
    f"WHERE {' OR '.join(f'records.{c} IS NOT excluded.{c}' for c in _UPDATABLE)}"
)
_PG_STAGE = (
    "CREATE TEMP TABLE IF NOT EXISTS stage_records (seq bigserial, source text, record_id text, "
    "business_date date, channel text, matter text, handled_at timestamptz, unit_code text, officer_id text, "
    "citizen_name text, phone_norm text, phone_kind text, summary text, confidential boolean, "
    "ingested_at timestamptz, updated_at timestamptz) ON COMMIT DELETE ROWS"
)
_PG_MERGE = (
    f"INSERT INTO records ({_COLUMNS}) "
    f"SELECT DISTINCT ON (source, record_id) {_COLUMNS} FROM stage_records ORDER BY source, record_id, seq DESC "
    f"ON CONFLICT (source, record_id) DO UPDATE SET {_SET} "
    f"WHERE ({', '.join(f'records.{c}' for c in _UPDATABLE)}) IS DISTINCT FROM "
    f"({', '.join(f'excluded.{c}' for c in _UPDATABLE)})"
)
_QUARANTINE = (
    "INSERT INTO quarantine (source, business_date, record_id, reasons, raw, fingerprint, received_at) "
    "VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p}) ON CONFLICT (source, business_date, fingerprint) DO NOTHING"
)
_CHECKPOINT = (
    "INSERT INTO ingest_checkpoints (source, business_date, cursor, complete, pages, fetched, updated_at) "
    "VALUES ({p}, {p}, {p}, {p}, 1, {p}, {p}) ON CONFLICT (source, business_date) DO UPDATE SET "
    "cursor = excluded.cursor, complete = excluded.complete, pages = ingest_checkpoints.pages + 1, "
    "fetched = ingest_checkpoints.fetched + excluded.fetched, updated_at = excluded.updated_at, last_error = NULL"
)


@dataclass(frozen=True)
class Resume:
    """Where to start a pull: `cursor` None means from the first page."""

    cursor: str | None
    resumed: bool


def begin_pull(engine: Engine, source: str, business_date: date, now: datetime) -> Resume:
    """Resume an unfinished pull from its cursor; a finished one is pulled again from the start."""
    with engine.begin() as conn:
        row = conn.execute(
            text("SELECT cursor, complete FROM ingest_checkpoints WHERE source = :s AND business_date = :d"),
            {"s": source, "d": business_date},
        ).first()
        if row is not None and not row.complete:
            return Resume(row.cursor, row.cursor is not None)
        if row is not None:
            conn.execute(
                text(
                    "UPDATE ingest_checkpoints SET cursor = NULL, complete = :f, updated_at = :now "
                    "WHERE source = :s AND business_date = :d"
                ),
                {"s": source, "d": business_date, "f": False, "now": instant_param(conn.dialect.name, now)},
            )
    return Resume(None, False)


def record_failure(engine: Engine, source: str, business_date: date, error: str, now: datetime) -> None:
    """Remember why a source failed (shown in quality and ingest summaries); the cursor is untouched."""
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO ingest_checkpoints (source, business_date, complete, pages, fetched, last_error, "
                "updated_at) VALUES (:s, :d, :f, 0, 0, :e, :now) ON CONFLICT (source, business_date) "
                "DO UPDATE SET last_error = excluded.last_error, updated_at = excluded.updated_at"
            ),
            {
                "s": source,
                "d": business_date,
                "f": False,
                "e": error,
                "now": instant_param(conn.dialect.name, now),
            },
        )


def bulk_instant(dialect: str, value: datetime) -> str:
    """An instant as the bulk paths send it: `instant_param`'s UTC text on SQLite, ISO text with offset for COPY.

    Why text for COPY: psycopg formats a `datetime` for COPY at ~2.5 µs a row, a
    string at a tenth of that, and PostgreSQL reads either as the same instant.
    """
    if dialect == "sqlite":
        return instant_param(dialect, value)
    return instant_param(dialect, value).isoformat(" ")


def page_intake(
    dialect: str,
    source: str,
    business_date: date,
    tz: ZoneInfo,
    fields: dict[str, str] | None,
    instants: dict[str, Any] | None = None,
) -> PageIntake:
    """A `PageIntake` whose rows carry this dialect's bulk parameters (dates and instants as text).

    `instants`: a handled_at cache to share with the other sources of the same day, zone and dialect.
    """
    return PageIntake(
        source,
        business_date,
        tz,
        fields,
        instant_param=partial(bulk_instant, dialect),
        day_param=business_date.isoformat(),
        instants=instants,
    )


def store_page(
    engine: Engine,
    source: str,
    business_date: date,
    accepted: Sequence[Accepted],
    quarantined: Sequence[Quarantined],
    fetched: int,
    next_cursor: str | None,
    now: datetime,
) -> None:
    """Write one page and advance the source's cursor, atomically."""
    dialect = engine.dialect.name
    ts = bulk_instant(dialect, now)
    conv = page_intake(dialect, source, business_date, _UTC, None)  # the zone is unused by bulk_row
    rows = [conv.bulk_row(a, ts) for a in accepted]
    store_rows(engine, source, business_date, rows, quarantined, fetched, next_cursor, now)


def store_rows(
    engine: Engine,
    source: str,
    business_date: date,
    rows: Sequence[tuple[Any, ...]],
    quarantined: Sequence[Quarantined],
    fetched: int,
    next_cursor: str | None,
    now: datetime,
) -> None:
    """`store_page` for rows already in `BULK_COLUMNS` order (`PageIntake.run`), atomically."""
    dialect = engine.dialect.name
    ts = instant_param(dialect, now)
    day = business_date.isoformat() if dialect == "sqlite" else business_date
    qrows = [(source, day, q.record_id, ",".join(q.reasons), q.raw, q.fingerprint, ts) for q in quarantined]
    # Without waiting for the WAL flush: a crash that loses the last pages loses each with its cursor, so the
    # stored cursor still matches the stored rows and a re-run pulls them again (upsert and quarantine idempotent).
    with raw_transaction(engine, wait_for_flush=False) as db:
        if dialect == "sqlite":
            if rows:
                db.executemany(_SQLITE_UPSERT, rows)
            if qrows:
                db.executemany(_QUARANTINE.format(p="?"), qrows)
            db.execute(_CHECKPOINT.format(p="?"), (source, day, next_cursor, next_cursor is None, fetched, ts))
        else:
            with db.cursor() as cur:
                if rows:
                    _pg_upsert(cur, rows)
                if qrows:
                    cur.executemany(_QUARANTINE.format(p="%s"), qrows)
                cur.execute(_CHECKPOINT.format(p="%s"), (source, day, next_cursor, next_cursor is None, fetched, ts))


def _pg_upsert(cur: Any, rows: Sequence[tuple[Any, ...]]) -> None:
    """Records of a page into `records`: straight COPY when none is stored yet, else stage and merge.

    Why: the merge (`INSERT … SELECT DISTINCT ON … ON CONFLICT`) costs more than the
    COPY into the staging table before it; on a day's first pull no row is stored
    yet, and a COPY straight into `records` (inside a savepoint) does the page in
    about half the time. The first row already stored (a re-pull, an upstream
    re-delivery, another run pulling the same source) fails that COPY with a
    unique violation; the savepoint is rolled back and the page goes the merge way,
    which updates only rows whose fields changed. Checking the page's ids first
    would cost as much as the merge saves. A record_id twice in one page: the
    later row wins, as in the merge.
    """
    from psycopg import errors

    latest = list({r[1]: r for r in rows}.values()) if len(rows) > 1 else list(rows)
    cur.execute("SAVEPOINT page_copy")
    try:
        with cur.copy(f"COPY records ({_COLUMNS}) FROM STDIN") as copy:
            for r in latest:
                copy.write_row(r)
    except errors.UniqueViolation:
        cur.execute("ROLLBACK TO SAVEPOINT page_copy")
    else:
        cur.execute("RELEASE SAVEPOINT page_copy")
        return
    cur.execute(_PG_STAGE)
    with cur.copy(f"COPY stage_records ({_COLUMNS}) FROM STDIN") as copy:
        for r in rows:
            copy.write_row(r)
    cur.execute(_PG_MERGE)
