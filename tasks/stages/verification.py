"""The verification call-back (复核回访, SPEC §5): one SMS after a closure as resolved, and its answer.

- `queue_verification`: feedback closed an order as resolved (tasks/stages/orders.py, same
  transaction): if the record's phone is a mobile that has not opted out, one row in
  `verifications` (status `queued`, message_id `minyi:SOURCE:RECORD_ID:verify:K`).
- `send_verifications`: the relay for those rows, through the same gateway client and
  send window as the follow-ups; an opt-out since queueing withdraws the row
  (`skipped`). The per-phone daily limit of follow-ups does not apply.
- `claim_verification_replies`: called by reply intake (tasks/stages/replies.py) on each
  page before follow-up matching: a reply whose message_id is a verification's, or
  (without one) whose phone's latest message sent within 7 days was a verification,
  belongs to that verification and never becomes a follow-up answer. `1`/`已解决`
  confirmed, `2`/`未解决` not resolved, TD/退订 opts out, anything else no effect.
- `reopen_not_resolved`: a "not resolved" received within 7 days of sending reopens
  the order (`apply_action(..., "reopen")` at the answer's instant).

Verification SMS are not follow-ups: nothing here touches `followups`, so they count
in no follow-up metric.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import BigInteger, String, text
from sqlalchemy.engine import Connection, Engine

from minyi.schemas.types import UtcDateTime
from minyi.tasks.config import MinyiConfig
from minyi.tasks.rules.answers import parse_verification
from minyi.tasks.stages.eligibility import followup_of_message_id
from minyi.tasks.store.engine import instant_param

WINDOW = timedelta(days=7)
VERIFIER = "复核回访"  # `by` of a reopen: the citizen's answer, not an operator


def queue_verification(
    conn: Connection, order_id: int, followup_id: int, source: str, record_id: str, unit_code: str, now: datetime
) -> str | None:
    """Queue the verification SMS of this closure; its message_id, or None (landline, invalid, opted out)."""
    from minyi.tasks.texts import verification_message_id

    phone = conn.execute(
        text(
            "SELECT r.phone_norm FROM followups f JOIN records r ON r.id = f.record_pk WHERE f.id = :f "
            "AND r.phone_kind = 'mobile' AND r.phone_norm IS NOT NULL "
            "AND NOT EXISTS (SELECT 1 FROM opt_outs o WHERE o.phone_norm = r.phone_norm)"
        ),
        {"f": followup_id},
    ).scalar()
    if phone is None:
        return None
    k = conn.execute(text("SELECT COUNT(*) FROM verifications WHERE order_id = :o"), {"o": order_id}).scalar_one() + 1
    message_id = verification_message_id(source, record_id, int(k))
    conn.execute(
        text(
            "INSERT INTO verifications (order_id, k, message_id, phone_norm, unit_code, status, queued_at) "
            "VALUES (:o, :k, :m, :p, :u, 'queued', :now) ON CONFLICT (message_id) DO NOTHING"
        ),
        {
            "o": order_id,
            "k": k,
            "m": message_id,
            "p": phone,
            "u": unit_code,
            "now": instant_param(conn.dialect.name, now),
        },
    )
    return message_id


def send_verifications(engine: Engine, cfg: MinyiConfig, client: Any, as_of: datetime) -> dict[str, int]:
    """Send the queued verification SMS if as_of is in the send window; counts by outcome.

    `client` is a tasks.sms.GatewayClient. A re-sent message_id is answered `duplicate`
    by the gateway, which counts as sent, as for follow-ups.
    """
    from minyi.tasks.adapters.sms import OutgoingSms
    from minyi.tasks.stages.sms import in_send_window
    from minyi.tasks.texts import verification_sms

    out = {"sent": 0, "rejected": 0, "skipped": 0}
    d = engine.dialect.name
    now = instant_param(d, as_of)
    with engine.begin() as conn:
        out["skipped"] = max(
            conn.execute(
                text(
                    "UPDATE verifications SET status = 'skipped' WHERE status = 'queued' "
                    "AND phone_norm IN (SELECT phone_norm FROM opt_outs)"
                )
            ).rowcount
            or 0,
            0,
        )
    if not in_send_window(as_of, cfg):
        return out
    # Claimed before sending (SPEC §4: concurrent runs never post one message twice): `sending` with the claim's
    # wall-clock instant in sent_at; a claim older than [sms] claim_seconds belongs to a dead run and is taken over.
    wall = datetime.now(UTC)
    claim, stale = instant_param(d, wall), instant_param(d, wall - timedelta(seconds=cfg.sms.claim_seconds))
    with engine.connect() as conn:
        candidates = conn.execute(
            text(
                "SELECT v.id, v.message_id, v.phone_norm, COALESCE(u.name, v.unit_code) FROM verifications v "
                "LEFT JOIN units u ON u.code = v.unit_code "
                "WHERE v.status = 'queued' OR (v.status = 'sending' AND v.sent_at < :stale) ORDER BY v.id"
            ),
            {"stale": stale},
        ).all()
    rows = []
    with engine.begin() as conn:
        for row in candidates:
            took = conn.execute(
                text(
                    "UPDATE verifications SET status = 'sending', sent_at = :claim WHERE id = :id "
                    "AND (status = 'queued' OR (status = 'sending' AND sent_at < :stale))"
                ),
                {"claim": claim, "stale": stale, "id": row[0]},
            ).rowcount
            if took == 1:
                rows.append(row)
    signature = cfg.sms.signature
    for start in range(0, len(rows), max(client.batch_size, 1)):
        batch = rows[start : start + client.batch_size]
        results = client.send_batch([OutgoingSms(r[1], r[2], verification_sms(signature, r[3])) for r in batch])
        status = {res.message_id: res.status for res in results}
        with engine.begin() as conn:
            for vid, message_id, _, _ in batch:
                got = status.get(message_id)
                if got in ("accepted", "duplicate"):
                    conn.execute(
                        text("UPDATE verifications SET status = 'sent', sent_at = :now WHERE id = :id"),
                        {"now": now, "id": vid},
                    )
                    out["sent"] += 1
                elif got == "rejected":
                    conn.execute(text("UPDATE verifications SET status = 'rejected' WHERE id = :id"), {"id": vid})
                    out["rejected"] += 1
                else:  # no answer for it: back in the queue for the next run
                    conn.execute(
                        text("UPDATE verifications SET status = 'queued', sent_at = NULL WHERE id = :id"), {"id": vid}
                    )
    return out


# A reply belongs to a verification by message_id, or (no message_id of a follow-up) by phone when the
# latest message of either kind sent to that phone within the window before it is a verification.
_CLAIM = """
UPDATE sms_replies SET status = 'verification'
WHERE status = 'new' AND (
  message_id IN (SELECT v.message_id FROM verifications v)
  OR (
    (message_id IS NULL OR {by_message_id} IS NULL)
    AND EXISTS (
      SELECT 1 FROM verifications v
      WHERE v.phone_norm = sms_replies.phone_norm AND v.status = 'sent'
        AND v.sent_at >= sms_replies.window_start AND v.sent_at <= sms_replies.received_at
        AND NOT EXISTS (
          SELECT 1 FROM followups f
          WHERE f.phone_norm = v.phone_norm AND f.sms_status = 'sent'
            AND f.sent_at > v.sent_at AND f.sent_at <= sms_replies.received_at
        )
    )
  )
)
"""
_CLAIMED = text(
    "SELECT id, reply_id, phone_norm, text, message_id, received_at FROM sms_replies "
    "WHERE status = 'verification' ORDER BY received_at, id"
).columns(id=BigInteger, reply_id=String, phone_norm=String, text=String, message_id=String, received_at=UtcDateTime())
_BY_ID = text("SELECT id FROM verifications WHERE message_id = :m")
_BY_PHONE = text(
    "SELECT id FROM verifications WHERE phone_norm = :p AND status = 'sent' AND sent_at <= :received "
    "ORDER BY sent_at DESC, id DESC LIMIT 1"
)


def claim_verification_replies(conn: Connection) -> int:
    """Take this page's replies to verification SMS out of follow-up matching and record their answers."""
    if conn.execute(text("SELECT 1 FROM verifications LIMIT 1")).first() is None:
        return 0  # the usual case: no verification SMS yet, reply intake pays one index probe per page
    by_message_id = followup_of_message_id(conn.dialect.name, "sms_replies.message_id")
    claimed = max(conn.execute(text(_CLAIM.format(by_message_id=by_message_id))).rowcount or 0, 0)
    if not claimed:
        return 0
    d = conn.dialect.name
    for r in conn.execute(_CLAIMED).all():
        answer = parse_verification(r.text or "")
        received = instant_param(d, r.received_at)
        vid = conn.execute(_BY_ID, {"m": r.message_id}).scalar() if r.message_id else None
        if vid is None and r.phone_norm:
            vid = conn.execute(_BY_PHONE, {"p": r.phone_norm, "received": received}).scalar()
        if answer == "opt_out" and r.phone_norm:
            conn.execute(
                text(
                    "INSERT INTO opt_outs (phone_norm, opted_out_at, reply_id) VALUES (:p, :at, :r) "
                    "ON CONFLICT (phone_norm) DO NOTHING"
                ),
                {"p": r.phone_norm, "at": received, "r": r.reply_id},
            )
        if vid is not None and answer in ("confirmed", "not_resolved"):
            # The first recognised answer decides; a later one changes nothing.
            conn.execute(
                text(
                    "UPDATE verifications SET answer = :a, answered_at = :at, reply_id = :r "
                    "WHERE id = :id AND answer IS NULL"
                ),
                {"a": answer, "at": received, "r": r.reply_id, "id": vid},
            )
        conn.execute(text("UPDATE sms_replies SET status = 'verified' WHERE id = :id"), {"id": r.id})
    return claimed


def reopen_not_resolved(engine: Engine, cfg: MinyiConfig, as_of: datetime) -> int:
    """Reopen every order whose verification said "not resolved" within 7 days of sending; returns how many."""
    from minyi.tasks.rules.lifecycle import OrderRefused
    from minyi.tasks.stages.orders import apply_action, clock_calendar

    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT v.id, o.source, o.record_id, v.sent_at, v.answered_at FROM verifications v "
                "JOIN orders o ON o.id = v.order_id WHERE v.answer = 'not_resolved' AND v.status = 'sent' "
                "ORDER BY v.answered_at, v.id"
            ).columns(id=BigInteger, sent_at=UtcDateTime(), answered_at=UtcDateTime())
        ).all()
    reopened, cal = 0, None
    for vid, source, record_id, sent_at, answered_at in rows:
        late = sent_at is None or answered_at - sent_at > WINDOW
        with engine.begin() as conn:
            status = "late"
            if not late and answered_at <= as_of:
                cal = cal or clock_calendar(cfg)
                try:
                    apply_action(
                        conn,
                        cfg,
                        f"{source}:{record_id}",
                        "reopen",
                        recorded_at=as_of,
                        at=answered_at,
                        by=VERIFIER,
                        cal=cal,
                    )
                    status, reopened = "reopened", reopened + 1
                except OrderRefused:
                    status = "stale"  # the order moved on (e.g. already reopened): nothing to do
            elif not late:
                continue  # an answer after as_of (a run in the past): a later run applies it
            conn.execute(text("UPDATE verifications SET status = :s WHERE id = :id"), {"s": status, "id": vid})
    return reopened
