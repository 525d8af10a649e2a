"""Replies to follow-up SMS (SPEC §4): what a reply means, which follow-up it answers, and opt-outs.

Ingestion pages through the gateway's replies from the stored cursor; each page
is stored, matched and applied in one transaction together with the cursor that
follows it, so a killed run neither loses nor double-applies a reply
(reply_id is unique besides). Matching, opt-outs and answers are set-based
statements over the page's new rows.

Each reply is checked before it touches the database (tasks/adapters/bounds.py `check_reply`):
one that cannot be taken as given is kept in `rejected_replies` with its reason and raw
JSON, and the rest of its page is applied as usual, so one poisoned reply never stops
the loop (SPEC §4).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.engine import Engine

from minyi.tasks.adapters.bounds import RefusedReply, Reply, check_reply
from minyi.tasks.adapters.sms import SmsGateway, SmsGatewayError
from minyi.tasks.rules.answers import parse_reply
from minyi.tasks.rules.phones import normalise_phone
from minyi.tasks.stages.eligibility import followup_of_message_id
from minyi.tasks.stages.verification import claim_verification_replies
from minyi.tasks.store.answers import refresh_satisfaction
from minyi.tasks.store.engine import instant_param

MATCH_WINDOW = timedelta(days=7)
CURSOR_NAME = "replies"


class ReplySummary(BaseModel):
    """Replies ingested this run (new ones only) and the store's unmatched total."""

    fetched: int = 0
    new: int = 0
    matched: int = 0
    unmatched: int = 0
    unmatched_total: int = 0
    opt_outs: int = 0
    rejected: int = 0
    rejected_reasons: dict[str, int] = {}
    answers: dict[str, int] = {}
    pages: int = 0
    seconds: float = 0.0
    error: str | None = None


_INSERT = (
    "INSERT INTO sms_replies (reply_id, phone_norm, text, value, message_id, received_at, window_start, "
    "status, ingested_at) VALUES (:reply_id, :phone, :text, :value, :message_id, :received, :window_start, "
    "'new', :now) ON CONFLICT (reply_id) DO NOTHING"
)
# By message_id (no age limit), else the latest follow-up sent to the phone in [received − 7 days, received].
_MATCH = (
    "UPDATE sms_replies SET followup_id = COALESCE("
    "{by_message_id}, "
    "(SELECT f.id FROM followups f WHERE f.phone_norm = sms_replies.phone_norm AND f.sms_status = 'sent' "
    " AND f.sent_at >= sms_replies.window_start AND f.sent_at <= sms_replies.received_at "
    " ORDER BY f.sent_at DESC, f.id DESC LIMIT 1)) "
    "WHERE status = 'new'"
)
_OPT_OUT = (
    "INSERT INTO opt_outs (phone_norm, opted_out_at, reply_id) "
    "SELECT phone_norm, MIN(received_at), MIN(reply_id) FROM sms_replies "
    "WHERE status = 'new' AND value = 'opt_out' AND phone_norm IS NOT NULL GROUP BY phone_norm "
    "ON CONFLICT (phone_norm) DO NOTHING"
)
_ANSWERS = (
    "INSERT INTO answers (followup_id, via, ref, value, answered_at) "
    "SELECT followup_id, 'sms', 'sms:' || reply_id, value, received_at FROM sms_replies "
    "WHERE status = 'new' AND followup_id IS NOT NULL AND value <> 'opt_out' "
    "ON CONFLICT (ref) DO NOTHING"
)
_NEW_FOLLOWUPS = "SELECT followup_id FROM sms_replies WHERE status = 'new' AND followup_id IS NOT NULL"
# Any reply, opt-outs included, stops the "no reply" clock; the first dissatisfied/unrecognised SMS answer
# queues a visit (a visit once queued stays queued until an outcome is recorded).
_REPLIED = (
    "UPDATE followups SET replied_at = (SELECT MIN(r.received_at) FROM sms_replies r WHERE r.followup_id = followups.id) "
    f"WHERE id IN ({_NEW_FOLLOWUPS})"
)
_QUEUE_VISITS = (
    "UPDATE followups SET manual_reason = (SELECT a.value FROM answers a WHERE a.followup_id = followups.id "
    "  AND a.via = 'sms' AND a.value IN ('dissatisfied', 'unrecognised') ORDER BY a.answered_at, a.id LIMIT 1), "
    "manual_queued_at = :now "
    f"WHERE manual_reason IS NULL AND id IN ({_NEW_FOLLOWUPS}) AND EXISTS (SELECT 1 FROM answers a "
    "  WHERE a.followup_id = followups.id AND a.via = 'sms' AND a.value IN ('dissatisfied', 'unrecognised'))"
)
_CLOSE = (
    "UPDATE sms_replies SET status = CASE WHEN followup_id IS NULL THEN 'unmatched' ELSE 'matched' END "
    "WHERE status = 'new'"
)
_REJECT = (
    "INSERT INTO rejected_replies (digest, reply_id, reason, raw, rejected_at) "
    "VALUES (:digest, :reply_id, :reason, :raw, :now) ON CONFLICT (digest) DO NOTHING"
)
_CURSOR = (
    "INSERT INTO sms_cursors (name, cursor, updated_at) VALUES (:name, :cursor, :now) "
    "ON CONFLICT (name) DO UPDATE SET cursor = excluded.cursor, updated_at = excluded.updated_at"
)


def _row(reply: Reply, dialect: str, now: Any) -> dict[str, Any]:
    kind, phone = normalise_phone(reply.sender)
    return {
        "reply_id": reply.reply_id,
        "phone": phone if kind == "mobile" else None,
        "text": reply.text[:2000].replace("\x00", ""),  # check_reply refuses NUL; a direct caller may not
        "value": parse_reply(reply.text),
        "message_id": reply.message_id,
        "received": instant_param(dialect, reply.received_at),
        "window_start": instant_param(dialect, reply.received_at - MATCH_WINDOW),
        "now": now,
    }


def store_reply_page(
    engine: Engine,
    replies: list[Reply],
    next_cursor: str | None,
    as_of: datetime,
    refused: Sequence[RefusedReply] = (),
) -> ReplySummary:
    """Store, match and apply one page of replies, keep its refused ones, and advance the cursor, in one transaction."""
    dialect = engine.dialect.name
    now = instant_param(dialect, as_of)
    out = ReplySummary(fetched=len(replies) + len(refused), pages=1, rejected=len(refused))
    for bad in refused:
        out.rejected_reasons[bad.reason] = out.rejected_reasons.get(bad.reason, 0) + 1
    with engine.begin() as conn:
        if refused:
            conn.execute(
                text(_REJECT),
                [
                    {
                        "digest": hashlib.sha256(bad.raw.encode()).hexdigest(),
                        "reply_id": bad.reply_id,
                        "reason": bad.reason,
                        "raw": bad.raw,
                        "now": now,
                    }
                    for bad in refused
                ],
            )
        if replies:
            conn.execute(text(_INSERT), [_row(r, dialect, now) for r in replies])
            claim_verification_replies(conn)  # SPEC §5: replies to a verification SMS are not follow-up answers
            conn.execute(text(_MATCH.format(by_message_id=followup_of_message_id(dialect, "sms_replies.message_id"))))
            out.opt_outs = max(conn.execute(text(_OPT_OUT)).rowcount or 0, 0)
            conn.execute(text(_ANSWERS))
            refresh_satisfaction(conn, _NEW_FOLLOWUPS, {})
            conn.execute(text(_REPLIED))
            conn.execute(text(_QUEUE_VISITS), {"now": now})
            for status, value, n in conn.execute(
                text(
                    "SELECT CASE WHEN followup_id IS NULL THEN 'unmatched' ELSE 'matched' END, value, COUNT(*) "
                    "FROM sms_replies WHERE status = 'new' GROUP BY 1, 2"
                )
            ).all():
                out.new += n
                if status == "matched":
                    out.matched += n
                    if value != "opt_out":
                        out.answers[value] = out.answers.get(value, 0) + n
                else:
                    out.unmatched += n
            conn.execute(text(_CLOSE))
        if next_cursor is not None:
            conn.execute(text(_CURSOR), {"name": CURSOR_NAME, "cursor": next_cursor, "now": now})
    return out


def split_page(items: list[object], as_of: datetime) -> tuple[list[Reply], list[RefusedReply]]:
    """A page's raw replies as the ones taken as given and the ones refused (SPEC §4), in page order."""
    good: list[Reply] = []
    bad: list[RefusedReply] = []
    for item in items:
        checked = check_reply(item, as_of)
        (good if isinstance(checked, Reply) else bad).append(checked)  # type: ignore[arg-type]
    return good, bad


def ingest_replies(engine: Engine, client: SmsGateway, as_of: datetime, page_size: int = 500) -> ReplySummary:
    """Pull every reply after the stored cursor; a gateway failure is reported, what was stored stays."""
    started = time.perf_counter()
    total = ReplySummary()
    with engine.connect() as conn:
        cursor = conn.execute(text("SELECT cursor FROM sms_cursors WHERE name = :n"), {"n": CURSOR_NAME}).scalar()
    try:
        while True:
            page = client.fetch_replies(cursor, page_size)
            if not page.items and page.next_cursor is None:
                break
            good, bad = split_page(page.items, as_of)
            got = store_reply_page(engine, good, page.next_cursor, as_of, bad)
            _add(total, got)
            if page.next_cursor is None or not page.items or page.next_cursor == cursor:
                break
            cursor = page.next_cursor
    except SmsGatewayError as exc:
        total.error = str(exc)
    with engine.connect() as conn:
        total.unmatched_total = conn.execute(
            text("SELECT COUNT(*) FROM sms_replies WHERE status = 'unmatched'")
        ).scalar_one()
    total.seconds = round(time.perf_counter() - started, 3)
    return total


def _add(total: ReplySummary, page: ReplySummary) -> None:
    total.fetched += page.fetched
    total.new += page.new
    total.matched += page.matched
    total.unmatched += page.unmatched
    total.opt_outs += page.opt_outs
    total.rejected += page.rejected
    for k, v in page.rejected_reasons.items():
        total.rejected_reasons[k] = total.rejected_reasons.get(k, 0) + v
    total.pages += page.pages
    for k, v in page.answers.items():
        total.answers[k] = total.answers.get(k, 0) + v
