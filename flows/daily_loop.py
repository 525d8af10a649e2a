"""The daily loop (SPEC §1): each stage in order, for one business date."""

from __future__ import annotations

from datetime import date, datetime

from prefect import flow
from pydantic import BaseModel

from minyi.flows.ingest import ingest
from minyi.flows.naming import by_business_date
from minyi.tasks.days import resolve_day
from minyi.tasks.ingest import IngestSummary
from minyi.tasks.runtime import load_runtime


class LoopSummary(BaseModel):
    business_date: date
    as_of: datetime
    ingest: IngestSummary


@flow(name="daily-loop", flow_run_name=by_business_date("daily-loop"))
def daily_loop(business_date: date | None = None, as_of: datetime | None = None) -> LoopSummary:
    """Run the whole closed loop for one business date (yesterday by default), evaluated at `as_of` (now by default)."""
    day, now = resolve_day(business_date, as_of, load_runtime().tz)
    pulled = ingest(day, now)
    return LoopSummary(business_date=day, as_of=now, ingest=pulled)
