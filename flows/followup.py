"""Stage 3 of the daily loop: follow-ups (SPEC §4) — replies in, the day planned, SMS out, visits queued.

Replies come first so that a TD received overnight already keeps its phone out
of today's plan. Each step is one task over the whole set (never a task per
record), so the stage costs a handful of task runs at any volume.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from typing import Literal

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from minyi.flows.naming import by_business_date
from minyi.tasks import texts
from minyi.tasks.adapters.sms import SmsGatewayError
from minyi.tasks.rules.days import parse_instant, resolve_day
from minyi.tasks.runtime import Runtime, load_runtime
from minyi.tasks.stages.eligibility import PlanSummary, plan_followups
from minyi.tasks.stages.replies import ReplySummary, ingest_replies
from minyi.tasks.stages.sms import FlushSummary, flush_outbox
from minyi.tasks.stages.verification import reopen_not_resolved, send_verifications
from minyi.tasks.stages.visits import VisitRecorded, queue_due_visits, record_visit
from minyi.tasks.store.answers import open_orders_if_available
from minyi.tasks.store.outbox import enqueue


class FollowupSummary(BaseModel):
    business_date: date | None
    as_of: datetime
    replies: ReplySummary
    plan: PlanSummary | None
    sms: FlushSummary
    visits_queued: int
    orders_opened: int | None = None


@task(name="ingest-replies", cache_policy=NO_CACHE)
def ingest_replies_task(as_of: datetime) -> ReplySummary:
    """Every new reply from the gateway: stored, matched, opt-outs and answers applied."""
    rt = load_runtime()
    with rt.sms_gateway() as client:
        summary = ingest_replies(rt.engine, client, as_of, page_size=rt.config.sms.batch_size)
    reopened = reopen_not_resolved(rt.engine, rt.config, as_of)  # SPEC §5: verification said "not resolved"
    log = get_run_logger()
    if reopened:
        log.info("verification call-back: %d order(s) reopened", reopened)
    log.info(
        "replies: %d new (%d matched, %d unmatched; %d unmatched in store), %d opt-outs, answers %s",
        summary.new,
        summary.matched,
        summary.unmatched,
        summary.unmatched_total,
        summary.opt_outs,
        summary.answers,
    )
    if summary.rejected:
        log.warning("replies: %d rejected (kept with their reasons): %s", summary.rejected, summary.rejected_reasons)
    if summary.error:
        log.error("replies: %s", summary.error)
    return summary


@task(name="plan-followups", task_run_name="plan-followups-{business_date}", cache_policy=NO_CACHE)
def plan_followups_task(business_date: date, as_of: datetime) -> PlanSummary:
    """Decide every not-yet-planned record of the day (SPEC §4 eligibility, in order)."""
    rt = load_runtime()
    with rt.engine.begin() as conn:
        summary = plan_followups(conn, business_date, as_of, rt.config)
    get_run_logger().info(
        "plan %s: %d newly decided; sms %d, manual %d, skipped %s",
        business_date,
        summary.planned,
        summary.sms,
        summary.manual,
        summary.skipped,
    )
    return summary


@task(name="send-sms", cache_policy=NO_CACHE)
def send_sms_task(as_of: datetime) -> FlushSummary:
    """Relay the SMS outbox to the gateway in batches, if as_of is inside the send window."""
    rt = load_runtime()
    log = get_run_logger()
    with rt.sms_gateway() as client:
        summary = flush_outbox(rt.engine, rt.config, client, as_of, log)
        if summary.error is None:
            try:
                verified = send_verifications(rt.engine, rt.config, client, as_of)
            except SmsGatewayError as exc:
                verified = {"error": str(exc)}
            if any(verified.values()):
                log.info("verification SMS: %s", verified)
    if not summary.window_open:
        log.info(
            "sms: %s is outside the send window; %d queued wait for the next run", as_of.isoformat(), summary.queued
        )
    else:
        log.info(
            "sms: %d sent (%d answered duplicate), %d rejected in %d batches (%.0f msg/s); %d still queued (%d held)",
            summary.sent,
            summary.duplicate,
            summary.rejected,
            summary.batches,
            summary.sent / max(summary.seconds, 1e-9),
            summary.queued,
            summary.held,
        )
    return summary


@task(name="queue-visits", cache_policy=NO_CACHE)
def queue_visits_task(as_of: datetime) -> int:
    """SMS without any reply after manual_after_hours → manual visit; then let supervision see new answers."""
    rt = load_runtime()
    with rt.engine.begin() as conn:
        queued = queue_due_visits(conn, as_of, rt.config.followup.manual_after_hours)
    get_run_logger().info("visits: %d newly queued for no reply", queued)
    return queued


@task(name="open-orders-for-answers", cache_policy=NO_CACHE)
def open_orders_task(as_of: datetime) -> int | None:
    """Open supervision orders for new dissatisfied answers, if the supervision stage is installed."""
    rt = load_runtime()
    with rt.engine.begin() as conn:
        return open_orders_if_available(conn, as_of)


def tell_centre_of_gateway_failure(rt: Runtime, as_of: datetime, *errors: str | None) -> None:
    """One post per local day to the centre channel when the gateway failed past its retries."""
    failures = [e for e in errors if e]
    if not failures:
        return
    day = as_of.astimezone(rt.tz).date()
    with rt.engine.begin() as conn:
        enqueue(conn, [texts.sms_gateway_failed(rt.config.center_channel, day, failures[0])], as_of)


@flow(name="followup", flow_run_name=by_business_date("followup"))
def followup(business_date: date | None = None, as_of: datetime | None = None) -> FollowupSummary:
    """Plan and send the day's follow-up SMS, ingest replies and queue manual visits (SPEC §4).

    Args:
        business_date: Local business date to plan. Empty = the day before as_of.
        as_of: The instant "now" (send window, staleness, sent_at), with its UTC offset. Empty = the real clock.
    """
    day, now = resolve_day(business_date, as_of, load_runtime().tz)
    return followup_stage(day, now)


def followup_stage(day: date, now: datetime, gates_decided: Callable[[], object] | None = None) -> FollowupSummary:
    """The followup flow's steps, as tasks of whichever flow calls it (the daily loop runs them in its own run).

    `gates_decided` is called, and must return, before any SMS is sent: the daily loop plans while its
    quality stage is still deciding the day's gates (planning does not read them; the relay does).
    """
    rt = load_runtime()
    replies = ingest_replies_task(now)
    plan = plan_followups_task(day, now)
    if gates_decided is not None:
        gates_decided()  # a held gate keeps its source's SMS queued (SPEC §8): decided before the relay runs
    sms = send_sms_task(now)
    visits = queue_visits_task(now)
    orders = open_orders_task(now)
    tell_centre_of_gateway_failure(rt, now, replies.error, sms.error)
    summary = FollowupSummary(
        business_date=day, as_of=now, replies=replies, plan=plan, sms=sms, visits_queued=visits, orders_opened=orders
    )
    create_table_artifact(
        key="followup-summary",
        table=[
            {"step": "plan", **plan.model_dump(mode="json", exclude={"skipped"}), **plan.skipped},
            {"step": "sms", **sms.model_dump(mode="json")},
            {"step": "replies", **replies.model_dump(mode="json", exclude={"answers"}), **replies.answers},
        ],
        description=f"Follow-ups {day}",
    )
    return summary


VisitOutcome = Literal["satisfied", "basically_satisfied", "dissatisfied", "unreachable"]


@flow(name="record-visit", flow_run_name="record-visit-{record}")
def record_visit_flow(
    record: str, outcome: VisitOutcome, note: str = "", at: str = "", by: str = "", as_of: str = ""
) -> VisitRecorded:
    """Record a manual visit's outcome for one record (what `minyi visit` does).

    Args:
        record: 记录 record — SOURCE:RECORD_ID, e.g. police110:110-20261121-000123.
        outcome: 回访结果 outcome — what the citizen said (unreachable = could not be reached).
        note: 说明 note — free text for the centre; mobiles masked, at most 2,000 chars.
        at: 回访时间 at — when the visit happened, ISO 8601 with offset. Empty = as_of.
        by: 经办人 by — who records it. Empty = MINYI_OPERATOR, else the worker's OS user.
        as_of: 登记时间 as_of — when it is recorded, ISO 8601 with offset. Empty = now.
    """
    from minyi.tasks.rules.days import now as real_now

    rt = load_runtime()
    recorded = parse_instant(as_of, "as_of") if as_of else real_now()
    when = parse_instant(at, "at") if at else None
    result = record_visit(rt.engine, record, outcome, note or None, when, recorded, by=by or None)
    get_run_logger().info("visit %s: %s (satisfaction now %s)", record, outcome, result.satisfaction)
    from minyi.tasks.stages.callback_queue import publish_callback_queue

    publish_callback_queue(rt.engine, rt.tz)  # the queue artifact no longer lists a visit just made
    return result
