"""The people around the loop, simulated for `minyi demo`: citizens, the call-back desk and the units.

Each actor is deterministic: what it does to a follow-up or an order depends
only on the row's ref and the simulated clock, never on randomness or the wall
clock, so the demo month tells the same story on every machine and a re-run on
the same store adds nothing (replies keep their ids, visits their `--at`, unit
reports their instants: each repeat is recognised as already recorded).

The desk and the units go through the same domain functions as `minyi visit`
and `minyi order` (`tasks.visits.record_visit`, `tasks.orders.apply_report`).
"""

from __future__ import annotations

import zlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import String, text
from sqlalchemy.engine import Engine

from minyi.schemas.types import UtcDateTime
from minyi.sim.sms_gateway import SmsGateway
from minyi.tasks.errors import MinyiError

# Citizens' answers to the SMS, by the message's position: most satisfied, some not, a few odd or silent.
CITIZEN_ANSWERS: tuple[str | None, ...] = (
    "1",
    "1",
    "满意",
    "１",
    "2",
    "基本满意",
    "1",
    "3",
    "不满意",
    " 2 ",
    "TD",
    "收到谢谢",
    None,
    None,
    "1",
    "2",
)

# What the call-back desk hears, by a stable hash of (ref, attempt date): out of 20 calls.
VISIT_OUTCOMES: tuple[tuple[str, int], ...] = (
    ("satisfied", 8),
    ("basically_satisfied", 5),
    ("dissatisfied", 3),
    ("unreachable", 4),
)


@dataclass(frozen=True)
class Pace:
    """A unit's habit: calendar days after an order opens at which it responds, rectifies, gives feedback."""

    respond: int
    rectify: int
    feedback: int


PROMPT = Pace(0, 1, 2)
LATE = Pace(4, 6, 8)  # misses the 3-working-day response clock most of the time, and often the 5-day one
# Most units are prompt (one order in seven is late all the same); two are slow; one never answers.
UNIT_PACE: dict[str, Pace | None] = {
    "QD-SB-PS02": LATE,
    "QD-JJ-SB": Pace(3, 5, 7),
    "QD-CY-PS01": None,
}
NEVER_ANSWERS = "QD-CY-PS01"


def _hash(*parts: object) -> int:
    return zlib.crc32("|".join(str(p) for p in parts).encode())


def pace_of(unit_code: str, ref: str) -> Pace | None:
    if unit_code in UNIT_PACE:
        return UNIT_PACE[unit_code]
    return LATE if _hash("late", ref) % 7 == 0 else PROMPT


def visit_outcome(ref: str, day: date) -> str:
    roll = _hash("visit", ref, day) % sum(w for _, w in VISIT_OUTCOMES)
    for outcome, weight in VISIT_OUTCOMES:
        if roll < weight:
            return outcome
        roll -= weight
    raise AssertionError("unreachable")


@dataclass
class Tally:
    """What the simulated people did, for the demo's summary."""

    replies: int = 0
    visits: Counter[str] = field(default_factory=Counter)
    reports: Counter[str] = field(default_factory=Counter)
    lifecycle: set[str] = field(default_factory=set)  # the lifecycle scenes played (minyi.demo.SCENES)


def citizens_reply(engine: Engine, gateway: SmsGateway, day: date, as_of: datetime) -> int:
    """Citizens answer the SMS of business date `day` within two hours of `as_of` (reply ids are stable)."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT message_id, phone_norm FROM followups WHERE business_date = :d AND sms_status = 'sent' "
                "ORDER BY message_id"  # not id: the planner numbers follow-ups in its plan's order
            ),
            {"d": day},
        ).all()
    answered = 0
    for i, (message_id, phone) in enumerate(rows):
        answer = CITIZEN_ANSWERS[i % len(CITIZEN_ANSWERS)]
        if answer is None:
            continue
        received = as_of + timedelta(minutes=5 + i % 115)
        # Every third citizen's phone drops the message id: matched by phone within 7 days instead.
        gateway.inject_reply(phone, answer, received, message_id if i % 3 else None, reply_id=f"demo:{message_id}")
        answered += 1
    return answered


def desk_calls(engine: Engine, now: datetime, tz: ZoneInfo, tally: Tally) -> int:
    """The call-back desk works through the visit queue at `now` (unreachable citizens are tried again later)."""
    from minyi.tasks.stages.visits import list_visits, record_visit

    made = 0
    for v in list_visits(engine, limit=100_000):
        if v.queued_at > now:
            continue
        outcome = visit_outcome(v.ref, now.astimezone(tz).date())
        record_visit(engine, v.ref, outcome, "演示回访", now, now)
        tally.visits[outcome] += 1
        made += 1
    return made


_OPEN_ORDERS = text(
    "SELECT source, record_id, unit_code, status, opened_at FROM orders "
    "WHERE closed_at IS NULL AND opened_at <= :now ORDER BY id"
).columns(source=String, record_id=String, unit_code=String, status=String, opened_at=UtcDateTime())
_STAGE_OF = {"open": 0, "responded": 1, "rectified": 2}


def units_report(engine: Engine, now: datetime, tz: ZoneInfo, tally: Tally) -> int:
    """Each unit reports on its open orders at its own pace; one resolution in five is 'not resolved'."""
    from minyi.tasks.stages.orders import apply_report
    from minyi.tasks.store.engine import instant_param

    with engine.connect() as conn:
        rows = conn.execute(_OPEN_ORDERS, {"now": instant_param(engine.dialect.name, now)}).all()
    reported = 0
    today = now.astimezone(tz).date()
    for source, record_id, unit_code, status, opened_at in rows:
        ref = f"{source}:{record_id}"
        pace = pace_of(unit_code, ref)
        if pace is None:
            continue
        age = (today - opened_at.astimezone(tz).date()).days
        due = [age >= pace.respond, age >= pace.rectify, age >= pace.feedback]
        for stage_index, stage in enumerate(("responded", "rectified", "feedback")):
            if stage_index < _STAGE_OF.get(status, 3) or not due[stage_index]:
                continue
            resolved = None if stage != "feedback" else _hash("resolved", ref) % 5 != 0
            try:
                with engine.begin() as conn:
                    apply_report(conn, ref, stage, resolved, now, "演示单位反馈", now, tz)  # type: ignore[arg-type]
            except MinyiError:
                break  # e.g. already further along: the unit stops reporting on it
            tally.reports[stage] += 1
            reported += 1
    return reported
