"""Stage 2 of the daily loop: validate the day's batch and the store's invariants, and set the gates (SPEC §8)."""

from __future__ import annotations

from datetime import date, datetime

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from minyi.flows.naming import by_business_date
from minyi.tasks.rules.days import resolve_day
from minyi.tasks.runtime import load_runtime
from minyi.tasks.stages.quality import (
    QualitySummary,
    Validation,
    markdown_summary,
    record_day,
    report_dir_for,
    validate_day,
)


@task(name="validate-quality", task_run_name="validate-{business_date}", cache_policy=NO_CACHE)
def validate(business_date: date, as_of: datetime) -> Validation:
    """Every source's batch suite and the store suite, in the database, in one GX run (read-only)."""
    rt = load_runtime()
    return validate_day(rt, business_date, as_of, report_dir_for(rt, business_date) / "data_docs")


@task(name="record-quality", task_run_name="record-quality-{business_date}", cache_policy=NO_CACHE)
def record(business_date: date, as_of: datetime, found: Validation, force: bool) -> QualitySummary:
    """Gates, the run's results and the alert in one transaction; then quality.json and its CSV twin."""
    rt = load_runtime()
    return record_day(rt, business_date, as_of, found, force, report_dir_for(rt, business_date))


@flow(name="quality", flow_run_name=by_business_date("quality"))
def quality(business_date: date | None = None, as_of: datetime | None = None, force: bool = False) -> QualitySummary:
    """Validate a business date's records and the store; a source whose volume left its band is held.

    Args:
        business_date: Local business date to validate. Empty = the day before as_of.
        as_of: The instant "now", with its UTC offset. Empty = the real clock.
        force: Release every held gate of this date (an operator checked the volume and lets its SMS go).
    """
    day, now = resolve_day(business_date, as_of, load_runtime().tz)
    return quality_stage(day, now, force)


def quality_stage(day: date, now: datetime, force: bool = False) -> QualitySummary:
    """The quality flow's steps, as tasks of whichever flow calls it (the daily loop runs them in its own run)."""
    found = validate(day, now)
    summary = record(day, now, found, force)
    create_markdown_artifact(
        key="quality-summary", markdown=markdown_summary(summary), description=f"data quality {day}"
    )
    log = get_run_logger()
    for s in summary.sources:
        log.info(
            "quality %s %s: %d accepted, %d quarantined, gate %s", day, s.source, s.accepted, s.quarantined, s.gate
        )
    for o in summary.store.broken:
        log.warning("store invariant %s broken by %s record(s): %s", o.name, o.unexpected, ", ".join(o.sample[:10]))
    return summary
