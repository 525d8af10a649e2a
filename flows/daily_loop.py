"""The daily loop (SPEC §1): each stage in order, for one business date.

Why the stages run as steps of this one flow run rather than as subflows: a
Prefect 3.8 flow run costs ~1 s on its own (its heartbeat thread is joined on
exit in 1 s steps), five more per loop. Each stage's tasks appear under the loop's
run in the UI, named by stage; every stage is still its own flow and deployment
for an operator who runs it alone.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from datetime import date, datetime
from typing import Any, TypeVar

from prefect import State, flow
from prefect.states import Cancelled
from pydantic import BaseModel

from minyi.flows.exclusive import AlreadyRunning, current_flow_run_holder, exclusive
from minyi.flows.followup import FollowupSummary, followup_stage
from minyi.flows.ingest import ingest_stage
from minyi.flows.naming import by_business_date
from minyi.flows.quality import quality_stage
from minyi.flows.report import ReportSummary, report_stage
from minyi.flows.run_hooks import hooks
from minyi.flows.supervise import SuperviseSummary, supervise_stage
from minyi.flows.warnings import WarningsSummary, find_day_warnings, warnings_stage
from minyi.tasks.heap import frozen_heap
from minyi.tasks.rules.days import resolve_day
from minyi.tasks.runtime import load_runtime
from minyi.tasks.stages.ingest import IngestSummary
from minyi.tasks.stages.quality import QualitySummary

T = TypeVar("T")


class LoopSummary(BaseModel):
    business_date: date
    as_of: datetime
    ingest: IngestSummary
    quality: QualitySummary | None = None
    followup: FollowupSummary | None = None
    supervision: SuperviseSummary | None = None
    report: ReportSummary | None = None
    warnings: WarningsSummary | None = None
    seconds: dict[str, float] = {}  # wall seconds per stage, in order


class _StageClock:
    """Wall seconds per stage, for the loop's summary (the benchmark and the run's return value show them)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def __call__(self, stage: str, fn: Callable[..., T], *args: Any) -> T:
        self.seconds.setdefault(stage, 0.0)  # listed in the order the stages start
        started = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self.seconds[stage] = round(time.perf_counter() - started, 3)


@contextmanager
def alongside(stage: _StageClock, name: str, fn: Callable[..., T], *args: Any) -> Iterator[Future[T]]:
    """Run a stage in a second thread of this flow run (its tasks stay in the run); always joined on exit."""
    context = contextvars.copy_context()  # Prefect's flow run context, so the stage's tasks belong to this run
    stage.seconds.setdefault(name, 0.0)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"stage-{name}") as pool:
        future = pool.submit(context.run, stage, name, fn, *args)
        try:
            yield future
        finally:
            wait([future])  # never leave the stage running past the loop, whatever happened here


@flow(name="daily-loop", flow_run_name=by_business_date("daily-loop"), **hooks("daily-loop"))
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
        with exclusive(f"daily-loop:{day.isoformat()}", current_flow_run_holder()), frozen_heap():
            stage = _StageClock()
            pulled = stage("ingest", ingest_stage, day, now)
            # Quality runs beside follow-up planning (planning does not read the gates, and both are mostly
            # database work that leaves the GIL); the SMS relay waits for the gates: a held one keeps SMS queued.
            with alongside(stage, "quality", quality_stage, day, now) as checking:
                followed = stage("followup", followup_stage, day, now, checking.result)
            checked = checking.result()
            # supervise comes after the follow-up stage: it opens orders from the answers that stage stored
            supervision = stage("supervise", supervise_stage, now)
            # the warnings are looked for beside the reports (they read nothing the report stage writes, and on
            # 2 cores its Python work leaves one free) and posted after them (SPEC §10)
            with alongside(stage, "find-warnings", find_day_warnings, day, now) as finding:
                reported = stage("report", report_stage, day, now)  # the summaries describe the stages above
            warned = stage("warnings", warnings_stage, day, now, finding.result())
            return LoopSummary(
                business_date=day,
                as_of=now,
                ingest=pulled,
                quality=checked,
                followup=followed,
                supervision=supervision,
                report=reported,
                warnings=warned,
                seconds=stage.seconds,
            )
    except AlreadyRunning as busy:
        return Cancelled(message=str(busy))
