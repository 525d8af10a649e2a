"""The work of the ingest stage, without Prefect: pull a source page by page, then report.

`pull_source_pages` streams: one page in memory at a time, each stored with its
cursor before the next is asked for.
"""

from __future__ import annotations

import logging
import time
from datetime import date, datetime

from pydantic import BaseModel
from sqlalchemy import text

from minyi.tasks.errors import SourceError
from minyi.tasks.intake import Accepted, Quarantined, intake
from minyi.tasks.masking import mask_text
from minyi.tasks.outbox import Message, enqueue
from minyi.tasks.record_store import begin_pull, record_failure, store_page
from minyi.tasks.runtime import Runtime
from minyi.tasks.sources import SourceClient
from minyi.tasks.units import register_unknown_units, sync_units


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
) -> SourcePull:
    """Pull `source` for the day from where it stopped; a SourceError is recorded and returned as `failed`."""
    cfg = rt.config.source(source)
    started = time.perf_counter()
    resume = begin_pull(rt.engine, source, business_date, as_of)
    cursor = resume.cursor
    pages = fetched = 0
    if resume.resumed:
        log.info("source %s: resuming %s after an interrupted pull", source, business_date)
    try:
        with SourceClient(cfg, rt.config.ingest) as client:
            while True:
                page = client.fetch_page(business_date, cursor)
                accepted: list[Accepted] = []
                quarantined: list[Quarantined] = []
                for row in page.records:
                    out = intake(row, business_date, rt.tz, cfg.fields)
                    (accepted if isinstance(out, Accepted) else quarantined).append(out)
                store_page(
                    rt.engine,
                    source,
                    business_date,
                    accepted,
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
    except SourceError as exc:
        message = mask_text(str(exc))
        record_failure(rt.engine, source, business_date, message, as_of)
        log.error("source %s failed for %s: %s", source, business_date, message)
        return SourcePull(
            source=source,
            status="failed",
            pages=pages,
            fetched=fetched,
            resumed=resume.resumed,
            seconds=round(time.perf_counter() - started, 3),
            error=message,
            **_day_counts(rt, source, business_date),
        )
    pull = SourcePull(
        source=source,
        status="ok",
        pages=pages,
        fetched=fetched,
        resumed=resume.resumed,
        seconds=round(time.perf_counter() - started, 3),
        **_day_counts(rt, source, business_date),
    )
    log.info(
        "source %s %s: %d rows in %d pages (%.0f rows/s); %d records, %d quarantined",
        source,
        business_date,
        fetched,
        pages,
        fetched / max(pull.seconds, 1e-9),
        pull.accepted,
        pull.quarantined,
    )
    return pull


def _day_counts(rt: Runtime, source: str, business_date: date) -> dict[str, int]:
    with rt.engine.connect() as conn:
        accepted = conn.execute(
            text("SELECT COUNT(*) FROM records WHERE source = :s AND business_date = :d"),
            {"s": source, "d": business_date},
        ).scalar_one()
        quarantined = conn.execute(
            text("SELECT COUNT(*) FROM quarantine WHERE source = :s AND business_date = :d"),
            {"s": source, "d": business_date},
        ).scalar_one()
    return {"accepted": accepted, "quarantined": quarantined}


def announce_ingest(rt: Runtime, business_date: date, as_of: datetime, pulls: list[SourcePull]) -> IngestSummary:
    """Register unknown units and tell the centre channel about failed sources and unknown units."""
    centre = rt.config.slack.center_channel
    with rt.engine.begin() as conn:
        unknown = register_unknown_units(conn, business_date)
        messages = [
            Message(
                key=f"source-failed:{p.source}:{business_date}",
                kind="source_failed",
                channel=centre,
                text=f"⚠️ 数据源 {p.source} 拉取 {business_date} 失败：{p.error}（其他数据源已照常入库）",
            )
            for p in pulls
            if p.status != "ok"
        ]
        if unknown:
            listing = "，".join(f"{code}（{n}条）" for code, n in unknown)
            messages.append(
                Message(
                    key=f"unknown-units:{business_date}:{','.join(c for c, _ in unknown)}",
                    kind="unknown_units",
                    channel=centre,
                    text=f"⚠️ {business_date} 的记录含未配置的单位代码：{listing}。相关事项转中心处理，请在配置中补充单位。",
                )
            )
        enqueue(conn, messages, as_of)
    return IngestSummary(business_date=business_date, sources=pulls, unknown_units=unknown)
