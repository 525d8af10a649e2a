"""Stage 4 of the daily loop (SPEC §5–6): open orders, compute their clocks, fire escalations.

Three tasks, each one statement batch or one transaction, whatever the number
of orders: the flow costs the same few task runs at a hundred orders or a
million. Unit reports do not go through this flow: they arrive one at a time
through `minyi order` or the `report-order` operator flow below.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field

from minyi.tasks.rules.days import now as wall_clock
from minyi.tasks.rules.days import resolve_day
from minyi.tasks.rules.lifecycle import OperatorAction
from minyi.tasks.runtime import load_runtime
from minyi.tasks.stages.escalation import run_escalations, warn_about_calendar
from minyi.tasks.stages.orders import clock_calendar, open_orders, refresh_dues


class SuperviseSummary(BaseModel):
    """What one supervision pass did at `as_of`."""

    as_of: datetime
    opened: int
    dues_computed: int
    pending_calendar: int
    escalations: dict[str, int]
    calendar_warnings: int


@task(name="open-orders-and-dues", cache_policy=NO_CACHE)
def open_orders_task(as_of: datetime) -> tuple[int, int, int, int]:
    """Open orders for new dissatisfied answers, compute every missing due, warn about the calendar.

    Returns (opened, dues computed, orders pending_calendar, calendar warnings enqueued).
    """
    rt = load_runtime()
    cfg = rt.config
    cal = clock_calendar(cfg)
    with rt.engine.begin() as conn:
        opened = open_orders(conn, as_of)
    with rt.engine.begin() as conn:
        computed, pending = refresh_dues(
            conn, cal, cfg.clock.mode, cfg.clock.response_days, cfg.clock.completion_days, cfg.tz
        )
    with rt.engine.begin() as conn:
        warned = warn_about_calendar(conn, cal, cfg, as_of, pending)
    log = get_run_logger()
    log.info("orders: %d opened, %d clocks computed, %d pending_calendar", opened, computed, pending)
    if pending:
        log.warning("%d order(s) pending_calendar: supply [clock] calendar_file; they escalate nothing", pending)
    return opened, computed, pending, warned


@task(name="escalate", cache_policy=NO_CACHE)
def escalate_task(as_of: datetime) -> dict[str, int]:
    """The escalation sweep: every level due at as_of, each at most once per order, posts enqueued with it."""
    rt = load_runtime()
    with rt.engine.begin() as conn:
        fired = run_escalations(conn, rt.config, as_of)
    get_run_logger().info("escalations fired: %s", ", ".join(f"{k} {v}" for k, v in fired.items()))
    return fired


@flow(name="supervise")
def supervise(as_of: datetime | None = None) -> SuperviseSummary:
    """Open supervision orders, run the 3-day and 5-day clocks, and escalate what ran out.

    Args:
        as_of: The instant "now" the clocks are read at, with its UTC offset. Empty = the real clock.
    """
    _, now = resolve_day(None, as_of, load_runtime().tz)
    return supervise_stage(now)


def supervise_stage(now: datetime) -> SuperviseSummary:
    """The supervise flow's steps, as tasks of whichever flow calls it (the daily loop runs them in its own run)."""
    opened, computed, pending, warned = open_orders_task(now)
    fired = escalate_task(now)
    return SuperviseSummary(
        as_of=now,
        opened=opened,
        dues_computed=computed,
        pending_calendar=pending,
        escalations=fired,
        calendar_warnings=warned,
    )


OrderAction = OperatorAction


@flow(name="report-order", flow_run_name="report-order-{ref}-{action}")
def report_order(
    ref: str,
    action: OrderAction,
    resolved: Literal["", "resolved", "unresolved"] = "",
    unit: str = "",
    days: Annotated[int, Field(ge=0, le=10)] = 0,
    note: str = "",
    at: str = "",
    by: str = "",
    as_of: str = "",
) -> str:
    """Report a stage or act on a supervision order (what `minyi order` does), from the Prefect UI (SPEC §5, §9).

    Args:
        ref: 工单 order — SOURCE:RECORD_ID, e.g. police110:110-20261121-000123.
        action: 动作 action — unit 单位: responded / rectified / feedback (closes) / returned 退单 /
            extend 延期 / appeal 申诉; centre 中心: reassign 改派 / keep 驳回退单 / approve-extension /
            reject-extension / uphold-appeal / reject-appeal.
        resolved: 是否解决 resolved — feedback only, and required there.
        unit: 改派单位 unit — reassign only: the new unit's code.
        days: 延期天数 days — extend only: 1 to 10.
        note: 说明 note — the reason (required for returned, extend, appeal); mobiles masked, at most 2,000 chars.
        at: 发生时间 at — when it happened, ISO 8601 with offset. Empty = as_of.
        by: 经办人 by — who records it. Empty = MINYI_OPERATOR, else the worker's OS user.
        as_of: 登记时间 as_of — when it is recorded, ISO 8601 with offset. Empty = now.
    """
    from minyi.tasks.rules.days import parse_instant
    from minyi.tasks.stages.orders import apply_action

    rt = load_runtime()
    recorded = parse_instant(as_of, "as_of") if as_of else wall_clock()
    with rt.engine.begin() as conn:
        outcome = apply_action(
            conn,
            rt.config,
            ref,
            action,
            recorded_at=recorded,
            at=parse_instant(at, "at") if at else None,
            by=by or None,
            note=note or None,
            resolved=None if not resolved else resolved == "resolved",
            unit=unit or None,
            days=days or None,
        )
    line = outcome.describe(rt.tz)
    get_run_logger().info(line)
    return line
