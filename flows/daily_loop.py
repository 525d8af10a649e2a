"""The daily loop (SPEC §1): each stage in order, for one business date."""

from __future__ import annotations

from datetime import date, datetime

from prefect import State, flow
from prefect.states import Cancelled
from pydantic import BaseModel

from minyi.flows.exclusive import AlreadyRunning, current_flow_run_holder, exclusive
from minyi.flows.followup import FollowupSummary, followup
from minyi.flows.ingest import ingest
from minyi.flows.naming import by_business_date
from minyi.flows.quality import quality
from minyi.flows.report import ReportSummary, report
from minyi.flows.supervise import SuperviseSummary, supervise
from minyi.tasks.days import resolve_day
from minyi.tasks.ingest import IngestSummary
from minyi.tasks.quality import QualitySummary
from minyi.tasks.runtime import load_runtime


class LoopSummary(BaseModel):
    business_date: date
    as_of: datetime
    ingest: IngestSummary
    quality: QualitySummary | None = None
    followup: FollowupSummary | None = None
    supervision: SuperviseSummary | None = None
    report: ReportSummary | None = None


@flow(name="daily-loop", flow_run_name=by_business_date("daily-loop"))
def daily_loop(business_date: date | None = None, as_of: datetime | None = None) -> LoopSummary | State:
    """Run the whole closed loop for one business date (yesterday by default), evaluated at `as_of` (now by default).

    One daily loop per business date at a time: a second run for a date that is
    still running ends Cancelled at once, without doing the day's work twice.

    Args:
        business_date: Local business date whose records are processed. Empty = the day before as_of.
        as_of: The instant "now" the run is evaluated at (send window, staleness, clocks), with its UTC offset. Empty = the real clock.
    """
    day, now = resolve_day(business_date, as_of, load_runtime().tz)
    try:
        with exclusive(f"daily-loop:{day.isoformat()}", current_flow_run_holder()):
            pulled = ingest(day, now)
            checked = quality(day, now)  # before follow-up: a held gate keeps that source's SMS queued
            followed = followup(day, now)
            # supervise comes after the follow-up stage: it opens orders from the answers that stage stored
            supervision = supervise(now)
            reported = report(day, now)  # last: the summaries describe what the stages above did
            return LoopSummary(
                business_date=day,
                as_of=now,
                ingest=pulled,
                quality=checked,
                followup=followed,
                supervision=supervision,
                report=reported,
            )
    except AlreadyRunning as busy:
        return Cancelled(message=str(busy))
