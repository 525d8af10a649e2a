"""The work of the ingest stage, without Prefect: pull each source page by page, then report.

The pull itself is `tasks/stages/pull.py` (one page in memory at a time, each stored
with its cursor before the next is asked for); it runs here or in an ingest
worker process (`tasks/stages/ingest_worker.py`, `ingest.workers`).
"""

from __future__ import annotations

import logging
import os
from contextlib import ExitStack
from datetime import date, datetime

from pydantic import BaseModel

from minyi.tasks import texts
from minyi.tasks.config import secret_from_env
from minyi.tasks.runtime import Runtime
from minyi.tasks.stages.ingest_worker import pipelined_pages, pool_for, pull_job, remote_pages
from minyi.tasks.stages.pull import pull_source_day, sqlite_file
from minyi.tasks.store.engine import refresh_statistics
from minyi.tasks.store.outbox import enqueue
from minyi.tasks.store.units import register_unknown_units, sync_units


class SourcePull(BaseModel):
    """What one source's pull did this run; `accepted`/`quarantined` are the day's totals in the store."""

    source: str
    status: str  # ok | failed
    pages: int = 0
    fetched: int = 0
    accepted: int = 0
    quarantined: int = 0
    resumed: bool = False
    seconds: float = 0.0
    error: str | None = None


class IngestSummary(BaseModel):
    business_date: date
    sources: list[SourcePull]
    unknown_units: list[tuple[str, int]] = []

    @property
    def failed(self) -> list[str]:
        return [p.source for p in self.sources if p.status != "ok"]


def prepare_units(rt: Runtime) -> None:
    with rt.engine.begin() as conn:
        sync_units(conn, rt.config)


def pull_source_pages(
    rt: Runtime,
    source: str,
    business_date: date,
    as_of: datetime,
    log: logging.Logger | logging.LoggerAdapter,
    pool: str | None = None,
) -> SourcePull:
    """Pull `source` for the day from where it stopped; a SourceError is recorded and returned as `failed`.

    With `pool` (a key from `ingest_worker.worker_pool`) each page is pulled and
    stored by a worker process; otherwise here. Either way the figures are logged here, masked.
    """
    workers = pool_for(pool)
    with ExitStack() as stack:
        pull_page = None
        if workers is not None:
            job = pull_job(
                rt.settings.resolved_database_url(),
                str(rt.settings.config),
                source,
                business_date,
                as_of,
                secret_from_env(rt.config.source(source).token_env),
            )
            pull_page = (
                stack.enter_context(pipelined_pages(workers, job)) if workers.pipelined else remote_pages(workers, job)
            )
        pull = SourcePull(**pull_source_day(rt.engine, rt.config, source, business_date, as_of, pull_page=pull_page))
    if pull.resumed:
        log.info("source %s: resumed %s after an interrupted pull", source, business_date)
    if pull.status != "ok":
        log.error("source %s failed for %s: %s", source, business_date, pull.error)
        return pull
    log.info(
        "source %s %s: %d rows in %d pages (%.0f rows/s); %d records, %d quarantined",
        source,
        business_date,
        pull.fetched,
        pull.pages,
        pull.fetched / max(pull.seconds, 1e-9),
        pull.accepted,
        pull.quarantined,
    )
    return pull


def ingest_workers(rt: Runtime, sources: int) -> int:
    """How many worker processes to pull with: 0 means in-process (one worker wanted, or in-memory SQLite).

    Several sources: up to one worker each. One source: two, taking turns (`pipelined_pages`).
    """
    wanted = rt.config.ingest.workers if rt.config.ingest.workers is not None else min(2, os.cpu_count() or 1)
    n = min(wanted, max(sources, 2))
    if n < 2 or (rt.engine.dialect.name == "sqlite" and not sqlite_file(rt.engine)):
        return 0
    return n


def announce_ingest(rt: Runtime, business_date: date, as_of: datetime, pulls: list[SourcePull]) -> IngestSummary:
    """Register unknown units and tell the centre channel about failed sources and unknown units."""
    centre = rt.config.center_channel
    with rt.engine.begin() as conn:
        unknown = register_unknown_units(conn, business_date)
        # the day's rows were just bulk-written: the plans of every later stage (the report's counts, the
        # warnings) need their statistics on PostgreSQL, whenever autovacuum gets to them (docs/performance.md,
        # session 5: at 1M the warnings' two statements 8.6 → 1.1 s in EXPLAIN ANALYZE)
        refresh_statistics(conn, "records")
        messages = [
            texts.source_failed(centre, p.source, business_date, p.error or "") for p in pulls if p.status != "ok"
        ]
        if unknown:
            messages.append(texts.unknown_units(centre, business_date, unknown))
        enqueue(conn, messages, as_of)
    return IngestSummary(business_date=business_date, sources=pulls, unknown_units=unknown)
