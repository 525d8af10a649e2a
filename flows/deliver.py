"""Delivery of the notifications outbox (SPEC §7), called by the report stage and the hourly sweep,
and `resend`, the operator flow that posts chosen messages again on purpose."""

from __future__ import annotations

from datetime import datetime

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field

from minyi.tasks.adapters.notify.engine import DeliverySummary, deliver, mark_for_resend, select_for_resend
from minyi.tasks.rules.days import now as wall_clock
from minyi.tasks.runtime import load_runtime


class Delivery(BaseModel):
    """What a delivery pass did; `pending` is left for the next run (the sweep comes back hourly)."""

    poster: str
    sent: int
    failed: int
    waiting: int
    deferred: int
    pending: int
    stuck: int
    unconfirmed: int
    rate_limited: int
    errors: list[str] = Field(default_factory=list)

    @classmethod
    def of(cls, s: DeliverySummary) -> Delivery:
        return cls(**{k: getattr(s, k) for k in cls.model_fields})


@task(name="deliver-outbox", cache_policy=NO_CACHE)
def deliver_outbox(as_of: datetime) -> Delivery:
    """Post every pending outbox row through the notifier the runtime chose; failures stay pending."""
    rt = load_runtime()
    n = rt.config.notify
    summary = Delivery.of(
        deliver(
            rt.engine,
            rt.notifier,
            as_of,
            claim_timeout=n.claim_timeout_seconds,
            max_wait=n.max_wait_seconds,
            backoff=(n.backoff_seconds, n.max_backoff_seconds),
            alert_channel=rt.config.center_channel,
        )
    )
    log = get_run_logger()
    log.info(
        "outbox via %s: %d sent, %d failed, %d deferred (rate), %d left pending",
        summary.poster,
        summary.sent,
        summary.failed,
        summary.deferred,
        summary.pending,
    )
    for error in summary.errors[:10]:
        log.warning("post failed (stays pending): %s", error)
    if summary.unconfirmed:
        log.error(
            "%d abandoned post(s) could not be confirmed with the channel: not re-posted, centre alerted",
            summary.unconfirmed,
        )
    if summary.stuck:
        log.warning("%d post(s) are stuck (failed 5 times or more, or unconfirmed)", summary.stuck)
    return summary


@flow(name="resend", flow_run_name="resend")
def resend(
    keys: list[str] | None = None,
    kind: str | None = None,
    channel: str | None = None,
    since: datetime | None = None,
    as_of: datetime | None = None,
) -> Delivery:
    """Post chosen sent messages again on purpose (e.g. a channel was archived and recreated).

    Choose by outbox `keys` (e.g. `rectification:2026-11-21`), by `kind` (e.g.
    `assessment_summary`), by `channel` id, and/or messages enqueued `since` an
    instant; with no choice at all the flow refuses rather than resend everything.

    Args:
        keys: Outbox keys to post again, e.g. `rectification:2026-11-21`.
        kind: Every sent message of this kind, e.g. `assessment_summary`.
        channel: Every sent message to this channel id.
        since: Only messages enqueued at or after this instant (with its UTC offset).
        as_of: The instant recorded as the new sending time. Empty = the real clock.
    """
    rt = load_runtime()
    with rt.engine.begin() as conn:
        chosen = select_for_resend(conn, keys or [], kind, channel, since)
        mark_for_resend(conn, chosen)
    get_run_logger().info("resending %d message(s): %s", len(chosen), ", ".join(chosen[:20]))
    return deliver_outbox(as_of or wall_clock())
