"""Stage 1 of the daily loop: pull every configured source for a business date (SPEC §3)."""

from __future__ import annotations

from datetime import date, datetime

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_progress_artifact, create_table_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed

from minyi.flows.naming import by_business_date
from minyi.tasks.rules.days import resolve_day
from minyi.tasks.runtime import load_runtime
from minyi.tasks.stages.ingest import (
    IngestSummary,
    SourcePull,
    announce_ingest,
    ingest_workers,
    prepare_units,
    pull_source_pages,
)
from minyi.tasks.stages.ingest_worker import worker_pool


@task(name="pull-source", task_run_name="pull-{source}-{business_date}", cache_policy=NO_CACHE)
def pull_source(source: str, business_date: date, as_of: datetime, pool: str | None = None) -> SourcePull:
    """Pull one source page by page (in a worker process of `pool`, if any); a failure is returned, not raised."""
    return pull_source_pages(load_runtime(), source, business_date, as_of, get_run_logger(), pool)


@flow(name="ingest", flow_run_name=by_business_date("ingest"))
def ingest(
    business_date: date | None = None, as_of: datetime | None = None, sources: list[str] | None = None
) -> IngestSummary:
    """Pull every configured source (or only `sources`) for the business date, page by page.

    Sources are pulled concurrently, in `ingest.workers` worker processes (default:
    one per core, at most two) or, with one worker or one source, in this process.

    Args:
        business_date: Local business date to pull. Empty = the day before as_of.
        as_of: The instant "now", with its UTC offset. Empty = the real clock.
        sources: Only these source names (as in the config). Empty = every configured source.
    """
    day, now = resolve_day(business_date, as_of, load_runtime().tz)
    return ingest_stage(day, now, sources)


def ingest_stage(day: date, now: datetime, sources: list[str] | None = None) -> IngestSummary:
    """The ingest flow's steps, as tasks of whichever flow calls it (the daily loop runs them in its own run)."""
    rt = load_runtime()
    names = sources or [s.name for s in rt.config.sources]
    for name in names:
        rt.config.source(name)  # an unknown name stops here, before any work
    with worker_pool(ingest_workers(rt, len(names)), len(names)) as pool:
        prepare_units(rt)
        progress = create_progress_artifact(0.0, description=f"ingest {day}: sources pulled")
        futures = [pull_source.submit(name, day, now, pool) for name in names]
        pulls: list[SourcePull] = []
        for fut in as_completed(futures):
            pulls.append(fut.result())
            if progress:
                update_progress_artifact(progress, 100.0 * len(pulls) / max(len(names), 1))
    summary = announce_ingest(rt, day, now, sorted(pulls, key=lambda p: p.source))
    create_table_artifact(
        key="ingest-summary",
        table=[p.model_dump(mode="json") for p in summary.sources],
        description=f"Ingest {day}: per-source counts",
    )
    return summary
