"""Retention (PIPL): de-identify records and follow-ups older than `retention_days` (docs/security.md)."""

from __future__ import annotations

from datetime import date, datetime

from prefect import flow, get_run_logger
from pydantic import BaseModel

from minyi.tasks.days import resolve_day
from minyi.tasks.retention import apply_retention
from minyi.tasks.runtime import load_runtime


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
    )
