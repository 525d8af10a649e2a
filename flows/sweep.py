"""The hourly sweep (SPEC §9): replies in, visits due, supervision, then whatever SMS still wait.

It plans nothing: who gets an SMS is decided by the daily run of each business
date. It only moves what is already decided: new replies, silence turning into
visits, clocks (supervision), and queued messages once as_of is inside the send
window.
"""

from __future__ import annotations

from datetime import datetime

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from minyi.flows.deliver import Delivery, deliver_outbox
from minyi.flows.followup import (
    ingest_replies_task,
    open_orders_task,
    queue_visits_task,
    send_sms_task,
    tell_centre_of_gateway_failure,
)
from minyi.flows.run_hooks import hooks
from minyi.flows.supervise import SuperviseSummary, supervise_stage
from minyi.tasks.rules.days import resolve_day
from minyi.tasks.runtime import load_runtime
from minyi.tasks.stages.callback_queue import publish_callback_queue
from minyi.tasks.stages.replies import ReplySummary
from minyi.tasks.stages.sms import FlushSummary


class SweepSummary(BaseModel):
    as_of: datetime
    replies: ReplySummary
    visits_queued: int
    orders_opened: int | None
    sms: FlushSummary
    supervision: SuperviseSummary | None = None
    delivery: Delivery | None = None


@task(name="publish-callback-queue", cache_policy=NO_CACHE)
def publish_callback_queue_task() -> int:
    """The call-back queue (回访队列) as the `callback-queue` table artifact, contacts masked."""
    rt = load_runtime()
    return publish_callback_queue(rt.engine, rt.tz)


@flow(name="sweep", flow_run_name="sweep-{as_of}", **hooks("sweep"))
def sweep(as_of: datetime | None = None) -> SweepSummary:
    """Ingest replies, queue visits that fell due, run supervision, flush the SMS outbox.

    Args:
        as_of: The instant "now", with its UTC offset. Empty = the real clock.
    """
    rt = load_runtime()
    _, now = resolve_day(None, as_of, rt.tz)
    replies = ingest_replies_task(now)
    visits = queue_visits_task(now)
    orders = open_orders_task(now)
    # SPEC §5–6: due clocks, escalations (and calendar warnings) into the outbox; as steps of this run, not a
    # subflow (a flow run costs ~1 s of its own, see flows/daily_loop.py): 13 sweeps a day, 11 in the demo month
    supervision = supervise_stage(now)
    sms = send_sms_task(now)
    tell_centre_of_gateway_failure(rt, now, replies.error, sms.error)
    delivery = deliver_outbox(now)  # SPEC §7: whatever the outbox holds (escalations, retries of failed posts)
    publish_callback_queue_task()  # the operator copies a ref from it into the record-visit form
    return SweepSummary(
        as_of=now,
        replies=replies,
        visits_queued=visits,
        orders_opened=orders,
        sms=sms,
        supervision=supervision,
        delivery=delivery,
    )
