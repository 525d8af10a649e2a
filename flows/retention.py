"""Retention (PIPL): de-identify records and follow-ups older than `retention_days` (docs/security.md)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from prefect import flow, get_run_logger
from pydantic import BaseModel

from minyi.tasks.rules.days import resolve_day
from minyi.tasks.runtime import load_runtime
from minyi.tasks.stages.retention import apply_retention

# Operator flows: Prefect keeps their parameters verbatim (a record, a note), so their runs are deleted from the
# Prefect server once older than retention_days (SPEC §14). A new operator flow adds its name here.
OPERATOR_FLOWS: tuple[str, ...] = ("record-visit", "report-order")


class RetentionResult(BaseModel):
    as_of: datetime
    cutoff: date
    retention_days: int
    days: int
    records: int
    followups: int
    quarantined: int
    replies: int
    notes: int
    rejected_replies: int = 0
    operator_flow_runs: int = 0


@flow(name="retention", flow_run_name="retention-{as_of}")
def retention(as_of: datetime | None = None) -> RetentionResult:
    """De-identify every business date older than `retention_days` (names, numbers, free text); counts stay.

    Args:
        as_of: The instant "now", with its UTC offset; dates before (its local date − retention_days) are
            de-identified. Empty = the real clock.
    """
    rt = load_runtime()
    _, now = resolve_day(None, as_of, rt.tz)
    days = rt.config.retention_days
    s = apply_retention(rt.engine, now, rt.tz, days)
    before = now - timedelta(days=days)
    rejected = delete_rejected_replies(rt, before)
    runs = delete_operator_flow_runs(before)
    get_run_logger().info(
        "retention: %d rejected replies and %d operator flow runs (%s) older than %s deleted",
        rejected,
        runs,
        ", ".join(OPERATOR_FLOWS),
        before.isoformat(),
    )
    get_run_logger().info(
        "retention: business dates before %s de-identified: %d date(s), %d records, %d follow-ups, "
        "%d quarantined rows, %d replies, %d notes",
        s.cutoff,
        s.days,
        s.records,
        s.followups,
        s.quarantined,
        s.replies,
        s.notes,
    )
    return RetentionResult(
        as_of=now,
        cutoff=s.cutoff,
        retention_days=days,
        days=s.days,
        records=s.records,
        followups=s.followups,
        quarantined=s.quarantined,
        replies=s.replies,
        notes=s.notes,
        rejected_replies=rejected,
        operator_flow_runs=runs,
    )


def delete_rejected_replies(rt: object, before: datetime) -> int:
    """Refused replies carry a sender's number in their raw JSON: gone after retention_days like the rest."""
    from sqlalchemy import text

    from minyi.tasks.store.engine import instant_param

    engine = rt.engine  # type: ignore[attr-defined]
    with engine.begin() as conn:
        n = conn.execute(
            text("DELETE FROM rejected_replies WHERE rejected_at < :before"),
            {"before": instant_param(engine.dialect.name, before)},
        ).rowcount
    return max(n or 0, 0)


def delete_operator_flow_runs(before: datetime, names: tuple[str, ...] = OPERATOR_FLOWS) -> int:
    """Delete the runs of minyi's operator flows created before `before` from the Prefect server this runs against."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterExpectedStartTime,
    )

    deleted = 0
    with get_client(sync_client=True) as client:
        while True:
            page = client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=list(names))),
                flow_run_filter=FlowRunFilter(
                    expected_start_time=FlowRunFilterExpectedStartTime(before_=before.astimezone(UTC))
                ),
                limit=200,
            )
            if not page:
                return deleted
            for run in page:
                client.delete_flow_run(run.id)
                deleted += 1
