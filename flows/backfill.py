"""Operator flow: re-run the daily loop for a range of business dates, oldest first (SPEC §9).

Every date is evaluated at one `as_of` (now, unless the operator says
otherwise), so the follow-up stage sees old dates as stale (SPEC §4
`max_age_days`) and never sends a citizen an SMS about last month's visit;
what a date's first run already sent is never taken back. Each date is a
daily-loop subflow, so it takes the same per-date lock as a scheduled run: a
date that is running elsewhere is reported, not done twice.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime

from prefect import flow, get_run_logger
from pydantic import BaseModel

from minyi.flows.daily_loop import LoopSummary, daily_loop
from minyi.flows.exclusive import AlreadyRunning
from minyi.tasks.errors import InputError
from minyi.tasks.rules.days import date_range, now

MAX_DAYS = 366
# Set by `minyi backfill` in its own process for its progress bar: called with each date once it is done.
on_date_done: Callable[[date], None] | None = None


class BackfillSummary(BaseModel):
    start: date
    end: date
    as_of: datetime
    days: list[LoopSummary]
    busy: list[date]


@flow(name="backfill", flow_run_name="backfill-{start}..{end}")
def backfill(start: date, end: date, as_of: datetime | None = None) -> BackfillSummary:
    """Re-run the daily loop for every business date from start to end (inclusive), in date order.

    Old dates are evaluated at as_of (now by default), so they send no stale SMS.

    Args:
        start: First business date to re-run (inclusive).
        end: Last business date to re-run (inclusive); not before start.
        as_of: The instant every date is evaluated at, with its UTC offset. Empty = the real clock. Leave it empty unless you know why: an old as_of makes old dates look fresh and sends their SMS.
    """
    days = date_range(start, end)
    if len(days) > MAX_DAYS:
        raise InputError(f"backfill: {len(days)} dates from {start} to {end}; at most {MAX_DAYS} per run")
    instant = as_of or now()
    if instant.tzinfo is None:
        raise InputError("as_of: instants must carry a UTC offset")
    log = get_run_logger()
    done: list[LoopSummary] = []
    busy: list[date] = []
    for day in days:
        state = daily_loop(business_date=day, as_of=instant, return_state=True)
        if on_date_done is not None:
            on_date_done(day)
        if state.is_cancelled():
            log.warning("backfill: %s skipped: %s", day, state.message)
            busy.append(day)
            continue
        done.append(state.result())  # a failed date stops the backfill here, later dates untouched
    if busy:
        raise AlreadyRunning(
            f"backfill: {len(busy)} date(s) were running in another flow run and were not re-run: "
            + ", ".join(d.isoformat() for d in busy)
        )
    return BackfillSummary(start=start, end=end, as_of=instant, days=done, busy=busy)
