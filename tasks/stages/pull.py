"""One source's pull for a business date, page by page (SPEC §3), without Prefect.

The pages of a source are pulled in the flow's own process (`ingest.workers = 1`)
or by the ingest worker processes (tasks/stages/ingest_worker.py), which is why this
module imports only what a pull needs: a worker starts in well under a second
and never loads Prefect.

Each page is fetched, passed through the intake rules straight to DBAPI rows
(`PageIntake`), and stored with its cursor in one transaction, one page at a time in
cursor order: a killed run resumes after the last stored page. In the flow's own
process the next page is fetched while this one is stored (`SourcePuller` prefetch).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import date, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Engine

from minyi.tasks.adapters.sources import UNSET, Page, SourceClient
from minyi.tasks.config import MinyiConfig
from minyi.tasks.errors import SourceError
from minyi.tasks.rules.masking import mask_text
from minyi.tasks.store.records import begin_pull, bulk_instant, page_intake, record_failure, store_rows

log = logging.getLogger("minyi.ingest")


class SourcePuller:
    """One source's pull for a business date in this process: its HTTP client and its intake.

    `pull_page` fetches the page at a cursor, passes it through intake and stores
    it with its cursor in one transaction. With worker processes, the pages of
    one source may be pulled by either worker, one at a time, in cursor order.

    With `prefetch` (the in-process pull: one source, or no workers) the next page
    is asked for as soon as its cursor is known, on a thread, while this page goes
    through intake and into the store: the source renders and sends page N+1 while
    the one writer stores page N. Pages are still stored one at a time, in cursor
    order, each with its cursor, so a killed run resumes exactly as before; at most
    one page waits in memory beside the one being stored. A prefetched page whose
    fetch failed raises its SourceError when the loop asks for it, after the page
    before it is stored, as a sequential pull would.
    """

    def __init__(
        self,
        engine: Engine,
        config: MinyiConfig,
        source: str,
        business_date: date,
        as_of: datetime,
        *,
        token: str | None = UNSET,
        sleep: Callable[[float], None] = time.sleep,
        instants: dict[str, Any] | None = None,
        prefetch: bool = False,
    ) -> None:
        cfg = config.source(source)
        dialect = engine.dialect.name
        self.engine, self.source, self.business_date, self.as_of = engine, source, business_date, as_of
        self.intake = page_intake(dialect, source, business_date, config.tz, cfg.fields, instants)
        self.now = bulk_instant(dialect, as_of)
        self.client = SourceClient(cfg, config.ingest, token=token, sleep=sleep)
        self._ahead: tuple[str, Future[Page]] | None = None
        self._prepared: tuple[list[tuple[Any, ...]], list[Any], int, str | None] | None = None
        self._fetcher = ThreadPoolExecutor(1, thread_name_prefix=f"prefetch-{source}") if prefetch else None

    def _page(self, cursor: str | None) -> Page:
        ahead, self._ahead = self._ahead, None
        if ahead is not None and ahead[0] == cursor:
            return ahead[1].result()
        if ahead is not None:
            ahead[1].cancel()
        return self.client.fetch_page(self.business_date, cursor)

    def pull_page(self, cursor: str | None) -> tuple[int, str | None]:
        """Fetch, check and store the page at `cursor`: (rows fetched, next cursor), or SourceError."""
        fetched, next_cursor = self.prepare(cursor)
        self.store_prepared()
        return fetched, next_cursor

    def prepare(self, cursor: str | None) -> tuple[int, str | None]:
        """Fetch the page at `cursor` and pass it through intake, not stored yet: (rows fetched, next cursor).

        The page waits here for `store_prepared`; a second `prepare` replaces it.
        """
        self._prepared = None
        page = self._page(cursor)
        if self._fetcher is not None and page.next_cursor is not None:
            nxt = page.next_cursor
            self._ahead = (nxt, self._fetcher.submit(self.client.fetch_page, self.business_date, nxt))
        rows, quarantined = self.intake.run(page.records, self.now)
        self._prepared = (rows, quarantined, len(page.records), page.next_cursor)
        return len(page.records), page.next_cursor

    def store_prepared(self) -> None:
        """Store the page `prepare` made ready, with its cursor, in one transaction."""
        if self._prepared is None:
            raise RuntimeError(f"source {self.source}: no prepared page to store")
        (rows, quarantined, fetched, next_cursor), self._prepared = self._prepared, None
        store_rows(self.engine, self.source, self.business_date, rows, quarantined, fetched, next_cursor, self.as_of)

    def close(self) -> None:
        if self._fetcher is not None:
            # a fetch still on its way is abandoned: its page was never stored, so the cursor still points at it
            self._fetcher.shutdown(wait=False, cancel_futures=True)
        self.client.close()


def pull_source_day(
    engine: Engine,
    config: MinyiConfig,
    source: str,
    business_date: date,
    as_of: datetime,
    *,
    token: str | None = UNSET,
    sleep: Callable[[float], None] = time.sleep,
    pull_page: Callable[[str | None], tuple[int, str | None]] | None = None,
) -> dict[str, Any]:
    """Pull `source` from where it stopped; a SourceError is recorded and reported as `failed`.

    `pull_page(cursor) -> (fetched, next_cursor)` pulls and stores one page
    somewhere else (an ingest worker); by default a `SourcePuller` does it here.
    Returns the figures of `tasks.ingest.SourcePull` as a plain dict.
    """
    started = time.perf_counter()
    resume = begin_pull(engine, source, business_date, as_of)
    puller = None
    if pull_page is None:
        puller = SourcePuller(engine, config, source, business_date, as_of, token=token, sleep=sleep, prefetch=True)
        pull_page = puller.pull_page
    cursor = resume.cursor
    pages = fetched = 0
    figures: dict[str, Any] = {"source": source, "resumed": resume.resumed}
    try:
        while True:
            n, cursor = pull_page(cursor)
            pages += 1
            fetched += n
            if cursor is None:
                break
        figures.update(status="ok", error=None)
    except SourceError as exc:
        message = mask_text(str(exc))
        record_failure(engine, source, business_date, message, as_of)
        figures.update(status="failed", error=message)
    finally:
        if puller is not None:
            puller.close()
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
