"""One source's pull for a business date, page by page (SPEC §3), without Prefect.

Runs in the flow's own process (`ingest.workers = 1`) or in an ingest worker
process (tasks/ingest_worker.py), which is why it imports only what a pull
needs: the worker starts in well under a second and never loads Prefect.

Each page is fetched, passed through the intake rules straight to DBAPI rows
(`PageIntake`), and stored with its cursor in one transaction, before the next
page is asked for: one page in memory at a time, and a killed run resumes after
the last stored page.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Engine

from minyi.tasks.config import MinyiConfig
from minyi.tasks.errors import SourceError
from minyi.tasks.masking import mask_text
from minyi.tasks.record_store import begin_pull, bulk_instant, page_intake, record_failure, store_rows
from minyi.tasks.sources import UNSET, SourceClient

log = logging.getLogger("minyi.ingest")


def pull_source_day(
    engine: Engine,
    config: MinyiConfig,
    source: str,
    business_date: date,
    as_of: datetime,
    *,
    token: str | None = UNSET,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Pull `source` from where it stopped; a SourceError is recorded and reported as `failed`.

    Returns the figures of `tasks.ingest.SourcePull` as a plain dict (it crosses a
    process boundary as JSON).
    """
    cfg = config.source(source)
    started = time.perf_counter()
    resume = begin_pull(engine, source, business_date, as_of)
    dialect = engine.dialect.name
    intake = page_intake(dialect, source, business_date, config.tz, cfg.fields)
    now = bulk_instant(dialect, as_of)
    cursor = resume.cursor
    pages = fetched = 0
    figures: dict[str, Any] = {"source": source, "resumed": resume.resumed}
    try:
        with SourceClient(cfg, config.ingest, token=token, sleep=sleep) as client:
            while True:
                page = client.fetch_page(business_date, cursor)
                rows, quarantined = intake.run(page.records, now)
                store_rows(
                    engine,
                    source,
                    business_date,
                    rows,
                    quarantined,
                    len(page.records),
                    page.next_cursor,
                    as_of,
                )
                pages += 1
                fetched += len(page.records)
                cursor = page.next_cursor
                if cursor is None:
                    break
        figures.update(status="ok", error=None)
    except SourceError as exc:
        message = mask_text(str(exc))
        record_failure(engine, source, business_date, message, as_of)
        figures.update(status="failed", error=message)
    figures.update(
        pages=pages,
        fetched=fetched,
        seconds=round(time.perf_counter() - started, 3),
        **day_counts(engine, source, business_date),
    )
    return figures


def day_counts(engine: Engine, source: str, business_date: date) -> dict[str, int]:
    """The day's totals for a source in the store: records and quarantined rows."""
    with engine.connect() as conn:
        accepted = conn.execute(
            text("SELECT COUNT(*) FROM records WHERE source = :s AND business_date = :d"),
            {"s": source, "d": business_date},
        ).scalar_one()
        quarantined = conn.execute(
            text("SELECT COUNT(*) FROM quarantine WHERE source = :s AND business_date = :d"),
            {"s": source, "d": business_date},
        ).scalar_one()
    return {"accepted": accepted, "quarantined": quarantined}


def sqlite_file(engine: Engine) -> str | None:
    """The database file of a SQLite engine (None for PostgreSQL or an in-memory store)."""
    if engine.dialect.name != "sqlite":
        return None
    db = engine.url.database
    return db if db and db != ":memory:" else None
