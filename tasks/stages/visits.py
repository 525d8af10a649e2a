"""Manual visits (SPEC §4): the queue the call centre works through, and recording an outcome.

Queued for: a landline (at planning), a dissatisfied or unrecognised SMS answer
(at reply ingestion), and no reply `manual_after_hours` after sending (here).
Recording an outcome is a one-row action: validated completely first, then one
transaction, so a refusal changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from minyi.tasks.errors import InputError
from minyi.tasks.rules.lifecycle import clean_note, operator, parse_ref, when_recorded
from minyi.tasks.store.answers import VISIT_OUTCOMES, open_orders_if_available, refresh_satisfaction
from minyi.tasks.store.engine import instant_param


class UnknownRecord(InputError):
    """The operator named a record the store has no follow-up for."""


def check_outcome(outcome: str) -> str:
    if outcome not in VISIT_OUTCOMES:
        raise InputError(f"--outcome: {outcome!r} is not one of {' | '.join(VISIT_OUTCOMES)}")
    return outcome


@dataclass(frozen=True)
class VisitRecorded:
    source: str
    record_id: str
    outcome: str
    at: datetime
    satisfaction: str | None
    new: bool
    orders_opened: int | None
    by: str = ""
    backdated: bool = False


def record_visit(
    engine: Engine,
    ref: str,
    outcome: str,
    note: str | None,
    at: datetime | None,
    as_of: datetime,
    by: str | None = None,
) -> VisitRecorded:
    """Store a visit's outcome as an answer; satisfaction becomes the latest recognised answer.

    Who and when (SPEC §5): `as_of` is recorded_at, `by` who recorded it (MINYI_OPERATOR or
    the OS user by default); `at` defaults to as_of, an `at` after it is refused, more than
    24 h before it is marked backdated. The note is stored with mobiles masked (≤ 2,000 chars).
    Re-recording the same visit (same record, same --at) adds nothing: the answer's
    ref is `visit:SOURCE:RECORD_ID:<at>`.
    """
    source, record_id = parse_ref(ref)
    check_outcome(outcome)
    who = operator(by)
    when, backdated = when_recorded(at, as_of)
    note = clean_note(note)
    dialect = engine.dialect.name
    with engine.begin() as conn:
        fid = conn.execute(
            text("SELECT id FROM followups WHERE source = :s AND record_id = :r"), {"s": source, "r": record_id}
        ).scalar()
        if fid is None:
            known = conn.execute(
                text("SELECT 1 FROM records WHERE source = :s AND record_id = :r"), {"s": source, "r": record_id}
            ).scalar()
            if known:
                raise UnknownRecord(f"record {source}:{record_id} has no follow-up yet (its day is not planned)")
            raise UnknownRecord(f"unknown record {source}:{record_id}")
        ts = instant_param(dialect, when)
        new = conn.execute(
            text(
                "INSERT INTO answers (followup_id, via, ref, value, answered_at, note, by_name, recorded_at, backdated) "
                "VALUES (:f, 'visit', :ref, :v, :at, :note, :by, :recorded_at, :backdated) ON CONFLICT (ref) DO NOTHING"
            ),
            {
                "f": fid,
                "ref": f"visit:{source}:{record_id}:{when.astimezone(UTC).isoformat()}",
                "v": outcome,
                "at": ts,
                "note": note,
                "by": who,
                "recorded_at": instant_param(dialect, as_of),
                "backdated": backdated,
            },
        ).rowcount
        if new:
            # The outcome shown in the queue is the latest visit by its own time, not by typing order.
            conn.execute(
                text(
                    "UPDATE followups SET visit_outcome = :v, visited_at = :at "
                    "WHERE id = :f AND (visited_at IS NULL OR visited_at <= :at)"
                ),
                {"v": outcome, "at": ts, "f": fid},
            )
            refresh_satisfaction(conn, "SELECT CAST(:f AS BIGINT)", {"f": fid})
        satisfaction = conn.execute(text("SELECT satisfaction FROM followups WHERE id = :f"), {"f": fid}).scalar()
    opened = None
    if new and outcome == "dissatisfied":
        with engine.begin() as conn:
            opened = open_orders_if_available(conn, as_of)
    return VisitRecorded(source, record_id, outcome, when, satisfaction, bool(new), opened, who, backdated)


def queue_due_visits(conn: Connection, as_of: datetime, manual_after_hours: int) -> int:
    """SMS sent at least `manual_after_hours` before as_of and still without any reply → visit `no_reply`."""
    cutoff = as_of - timedelta(hours=manual_after_hours)
    dialect = conn.dialect.name
    result = conn.execute(
        text(
            "UPDATE followups SET manual_reason = 'no_reply', manual_queued_at = :now "
            "WHERE sms_status = 'sent' AND replied_at IS NULL AND manual_reason IS NULL AND sent_at <= :cutoff"
        ),
        {"now": instant_param(dialect, as_of), "cutoff": instant_param(dialect, cutoff)},
    )
    return max(result.rowcount or 0, 0)


@dataclass(frozen=True)
class QueuedVisit:
    """One line of the call centre's list. `phone` is the full number: the reader must dial it."""

    ref: str
    business_date: date
    unit_code: str
    unit_name: str
    matter: str
    reason: str
    queued_at: datetime
    phone: str | None
    citizen_name: str | None
    visit_outcome: str | None


def _instant(value: Any) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _day(value: Any) -> date:
    return date.fromisoformat(value) if isinstance(value, str) else value


def list_visits(
    engine: Engine, include_done: bool = False, unit: str | None = None, limit: int = 500
) -> list[QueuedVisit]:
    """Visits still to make, oldest first: no outcome yet, or only `unreachable` (try again)."""
    where = ["f.manual_reason IS NOT NULL"]
    if not include_done:
        where.append("(f.visit_outcome IS NULL OR f.visit_outcome = 'unreachable')")
    params: dict[str, Any] = {"n": limit}
    if unit:
        where.append("f.unit_code = :unit")
        params["unit"] = unit
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT f.source, f.record_id, f.business_date, f.unit_code, COALESCE(u.name, ''), r.matter, "
                "f.manual_reason, f.manual_queued_at, f.phone_norm, r.citizen_name, f.visit_outcome "
                "FROM followups f JOIN records r ON r.id = f.record_pk LEFT JOIN units u ON u.code = f.unit_code "
                f"WHERE {' AND '.join(where)} ORDER BY f.manual_queued_at, f.id LIMIT :n"
            ),
            params,
        ).all()
    return [
        QueuedVisit(
            ref=f"{r[0]}:{r[1]}",
            business_date=_day(r[2]),
            unit_code=r[3],
            unit_name=r[4],
            matter=r[5] or "",
            reason=r[6],
            queued_at=_instant(r[7]),
            phone=r[8],
            citizen_name=r[9],
            visit_outcome=r[10],
        )
        for r in rows
    ]
