"""Stage 5 of the daily loop (SPEC §7): reports to files and duty channels; and the monthly assessment.

Three task runs whatever the size of the store: build (metrics, listing, files,
chart), enqueue (the summaries into the outbox, in one transaction), deliver.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from minyi.flows.deliver import Delivery, deliver_outbox
from minyi.flows.naming import by_business_date
from minyi.tasks import texts
from minyi.tasks.rules.days import month_end, previous_month_end, resolve_day
from minyi.tasks.rules.days import now as wall_clock
from minyi.tasks.runtime import load_runtime
from minyi.tasks.stages.kpis import compute_assessment
from minyi.tasks.stages.reports import (
    STATE_NAMES,
    LineageFile,
    files_in,
    fmt_rate,
    rectification,
    report_paths,
    unit_directory,
    write_reports,
)
from minyi.tasks.store.outbox import enqueue


class ReportSummary(BaseModel):
    business_date: date
    as_of: datetime
    directory: str
    units: int
    units_missing_targets: int
    orders_listed: int
    overdue: int
    messages_enqueued: int
    delivery: Delivery | None = None


# The record grouping's statements side by side (tasks.kpis.unit_counts `parts`): the period's halves sorted at
# once on a 2-core machine (docs/performance.md, session 5).
COUNT_PARTS = 2


@task(name="build-reports", task_run_name="build-reports-{business_date}", cache_policy=NO_CACHE)
def build_reports(business_date: date, as_of: datetime, directory_name: str | None = None) -> tuple[dict, dict, str]:
    """Compute the assessment and the rectification listing, write the files; returns both and the directory."""
    from minyi.tasks.adapters.charts import load_renderer

    rt = load_runtime()
    files = files_in(rt.reports_dir / directory_name) if directory_name else report_paths(rt.reports_dir, business_date)
    # the chart's imports in a thread while the counts statements run without the GIL
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="chart") as pool:
        renderer = pool.submit(load_renderer)
        with rt.engine.connect() as conn, LineageFile(files.lineage_csv) as lineage:
            cfg = rt.config
            assessment = compute_assessment(
                conn, business_date, as_of, rt.tz, cfg.targets, cfg.assessment, lineage, COUNT_PARTS
            )
            rect = rectification(conn, business_date, as_of, rt.tz)
        renderer.result()
    names, _ = unit_directory(rt.config)
    write_reports(files, assessment, rect, names)
    get_run_logger().info("reports written to %s", files.directory)
    return assessment, rect, str(files.directory)


@task(name="enqueue-summaries", cache_policy=NO_CACHE)
def enqueue_summaries(assessment: dict, rect: dict | None, chart: str, as_of: datetime, monthly: bool = False) -> int:
    """The rectification and assessment summaries into the outbox (their keys make a re-run add nothing)."""
    from pathlib import Path

    rt = load_runtime()
    cfg = rt.config
    names, channels = unit_directory(cfg)
    messages = []
    if rect is not None:
        messages += texts.rectification_messages(rect, cfg.center_channel, names, channels)
    key, title, targets = texts.assessment_route(assessment, cfg.center_channel, cfg.leadership_channel, monthly)
    messages += texts.assessment_messages(assessment, targets, Path(chart), names, key, title)
    with rt.engine.begin() as conn:
        return enqueue(conn, messages, as_of)


def publish_artifacts(assessment: dict, rect: dict | None) -> None:
    """The assessment table and the rectification summary, on the flow run's page in the Prefect UI."""
    day = assessment["business_date"]
    create_table_artifact(
        key="assessment",
        table=[
            {
                "rank": u["rank"],
                "ranked": u["ranked"],
                "unit_code": u["unit_code"],
                "meets_targets": u["meets_targets"],
                "score": u["score"],
                "records": u["records"],
                "responses": u["responses"],
                "satisfaction_rate": fmt_rate(u["satisfaction_rate"]),
                "reply_rate": fmt_rate(u["reply_rate"]),
                "timely_response_rate": fmt_rate(u["timely_response_rate"]),
                "resolution_rate": fmt_rate(u["resolution_rate"]),
                "timely_completion_rate": fmt_rate(u["timely_completion_rate"]),
            }
            for u in assessment["units"]
        ],
        description=f"Assessment {assessment['period']['start']} .. {day}, as of {assessment['as_of']}",
    )
    if rect is None:
        return
    s = rect["summary"]
    rows = "\n".join(
        f"| {STATE_NAMES[k]} ({k}) | {s[k]} |" for k in ("overdue", "due_today", "pending_calendar", "open", "closed")
    )
    overdue = [o for o in rect["orders"] if o["state"] == "overdue"][:50]
    listing = "\n".join(
        f"- `{o['source']}:{o['record_id']}` {o['unit_code']}: {', '.join(o['overdue_clocks'])} overdue"
        for o in overdue
    )
    create_markdown_artifact(
        key="rectification-summary",
        markdown=f"# Rectification {day}\n\n| state | orders |\n|---|---|\n{rows}\n\n{listing}\n",
        description=f"Rectification {day}: {s['orders']} orders listed",
    )


@flow(name="report", flow_run_name=by_business_date("report"))
def report(business_date: date | None = None, as_of: datetime | None = None) -> ReportSummary:
    """Write the day's rectification and assessment reports and post their summaries to the duty channels.

    Args:
        business_date: The assessment runs from the 1st of its month to it. Empty = the day before as_of.
        as_of: The instant the clocks are evaluated at, with its UTC offset. Empty = the real clock.
    """
    day, now = resolve_day(business_date, as_of, load_runtime().tz)
    return report_stage(day, now)


def report_stage(day: date, now: datetime) -> ReportSummary:
    """The report flow's steps, as tasks of whichever flow calls it (the daily loop runs them in its own run)."""
    return _publish(day, now)


def _publish(day: date, now: datetime, monthly: bool = False) -> ReportSummary:
    """Files, summaries to the channels, delivery and artifacts: the same steps for the daily and monthly reports.

    The monthly report has no rectification part; its files go to `monthly/{YYYY-MM}/`.
    """
    assessment, rect, directory = build_reports(day, now, directory_name=f"monthly/{day:%Y-%m}" if monthly else None)
    if monthly:
        rect = None
    enqueued = enqueue_summaries(assessment, rect, f"{directory}/assessment.png", now, monthly=monthly)
    delivery = deliver_outbox(now)
    publish_artifacts(assessment, rect)
    return ReportSummary(
        business_date=day,
        as_of=now,
        directory=directory,
        units=len(assessment["units"]),
        units_missing_targets=sum(1 for u in assessment["units"] if not u["meets_targets"]),
        orders_listed=rect["summary"]["orders"] if rect else 0,
        overdue=rect["summary"]["overdue"] if rect else 0,
        messages_enqueued=enqueued,
        delivery=delivery,
    )


@flow(name="monthly-assessment", flow_run_name="monthly-assessment")
def monthly_assessment(month: str | None = None, as_of: datetime | None = None) -> ReportSummary:
    """The whole previous month's assessment for the monthly meeting, to the centre and leadership channels.

    Files go to `reports/monthly/{YYYY-MM}/` (the daily reports keep their own directories).

    Args:
        month: `YYYY-MM`. Empty = the month before as_of's.
        as_of: The instant the clocks are evaluated at, with its UTC offset. Empty = the real clock.
    """
    rt = load_runtime()
    now = as_of or wall_clock()
    end = month_end(month) if month else previous_month_end(now, rt.tz)
    return _publish(end, now, monthly=True)
