"""Supervision orders (SPEC §5): opened from dissatisfied answers, advanced by unit reports.

Three things live here:

- `open_orders`: one set-based INSERT … SELECT that opens an order for every
  follow-up with a dissatisfied answer received by `as_of` and no order yet.
  `opened_at` is the earliest such answer. A later, better answer never closes
  an order: nothing here ever looks at the follow-up's current satisfaction.
- `refresh_dues`: fills `response_due`/`completion_due` for orders that have
  none yet — new orders, and orders that were `pending_calendar` because the
  calendar data did not cover their period. It runs every time, so supplying
  `calendar_file` is enough for the next run to compute them.
- `apply_report`: the state machine `open → responded → rectified → closed`
  for one unit report. `advance` is its pure core.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal, get_args
from zoneinfo import ZoneInfo

from sqlalchemy import BigInteger, String, text
from sqlalchemy.engine import Connection

from minyi.schemas.types import UtcDateTime
from minyi.tasks.calendar import Calendar, CalendarFileError, load_calendar
from minyi.tasks.clocks import ClockMode, due_instant
from minyi.tasks.config import MinyiConfig
from minyi.tasks.errors import ConfigError, InputError, MinyiError
from minyi.tasks.store import instant_param

__all__ = [
    "STAGES",
    "OrderRefused",
    "OrderState",
    "ReportOutcome",
    "Stage",
    "UnknownOrder",
    "advance",
    "apply_report",
    "clock_calendar",
    "open_orders",
    "parse_ref",
    "refresh_dues",
]

Stage = Literal["responded", "rectified", "feedback"]
STAGES: tuple[Stage, ...] = get_args(Stage)

# How far along each status and each reported stage is; a report may only move forward.
_STATUS_RANK = {"open": 0, "responded": 1, "rectified": 2, "closed": 3}
_STAGE_RANK: dict[str, int] = {"responded": 1, "rectified": 2, "feedback": 3}
_STATUS_AFTER: dict[str, str] = {"responded": "responded", "rectified": "rectified", "feedback": "closed"}

# Orders whose dues are (re)computed per statement batch: big enough to amortise
# a round trip, small enough to keep memory flat at a million orders.
DUE_BATCH = 5000


class OrderRefused(MinyiError):
    """A unit report that cannot be applied; nothing was changed."""


class UnknownOrder(OrderRefused):
    """No order exists for the reference."""


def clock_calendar(cfg: MinyiConfig) -> Calendar:
    """The working-day calendar of this run: the package plus `[clock] calendar_file`.

    A bad calendar file is a configuration error: it stops the run with one line
    instead of silently shifting deadlines.
    """
    try:
        return load_calendar(cfg.clock.calendar_file or None)
    except CalendarFileError as exc:
        raise ConfigError(f"clock.calendar_file: {exc}") from None


def parse_ref(ref: str) -> tuple[str, str]:
    """`SOURCE:RECORD_ID` → (source, record_id); the record id may itself contain ':'."""
    source, sep, record_id = ref.strip().partition(":")
    if not sep or not source or not record_id:
        raise InputError(f"order reference {ref!r} is not SOURCE:RECORD_ID (e.g. police110:110-20261121-000123)")
    return source, record_id


# --- opening orders and computing their clocks -------------------------------------------------


def open_orders(conn: Connection, as_of: datetime) -> int:
    """Open an order for every follow-up with a dissatisfied answer received by `as_of`; returns how many.

    Set-based and idempotent: NOT EXISTS skips follow-ups that have an order,
    and the unique follow-up constraint settles a race with a concurrent run.
    Dues are left NULL for `refresh_dues`.
    """
    ts = instant_param(conn.dialect.name, as_of)
    result = conn.execute(
        text(
            "INSERT INTO orders (followup_id, source, record_id, unit_code, opened_at, status, created_at, updated_at) "
            "SELECT f.id, f.source, f.record_id, f.unit_code, MIN(a.answered_at), 'open', :as_of, :as_of "
            "FROM answers a JOIN followups f ON f.id = a.followup_id "
            "WHERE a.value = 'dissatisfied' AND a.answered_at <= :as_of "
            "AND NOT EXISTS (SELECT 1 FROM orders o WHERE o.followup_id = f.id) "
            "GROUP BY f.id, f.source, f.record_id, f.unit_code "
            "ON CONFLICT (followup_id) DO NOTHING"
        ),
        {"as_of": ts},
    )
    return max(result.rowcount or 0, 0)


def refresh_dues(
    conn: Connection,
    cal: Calendar,
    mode: ClockMode,
    response_days: int,
    completion_days: int,
    tz: ZoneInfo,
    batch: int = DUE_BATCH,
) -> tuple[int, int]:
    """Compute the due instants still missing; returns (orders updated, orders still pending_calendar).

    Streams the orders with a NULL due page by page (keyset on id), computes
    each in Python with the cached `due_instant` (orders opened on the same
    local date share their dues, so this is a dictionary lookup per order), and
    writes back only what became known. A due never changes once set.
    """
    select = text(
        "SELECT id, opened_at, response_due, completion_due FROM orders "
        "WHERE id > :after AND (response_due IS NULL OR completion_due IS NULL) ORDER BY id LIMIT :n"
    ).columns(id=BigInteger, opened_at=UtcDateTime(), response_due=UtcDateTime(), completion_due=UtcDateTime())
    update = text("UPDATE orders SET response_due = :response_due, completion_due = :completion_due WHERE id = :id")
    dialect = conn.dialect.name
    after, updated, pending = 0, 0, 0
    while True:
        rows = conn.execute(select, {"after": after, "n": batch}).all()
        if not rows:
            return updated, pending
        changes = []
        for order_id, opened_at, old_response, old_completion in rows:
            response = old_response or due_instant(opened_at, response_days, cal, mode, tz)
            completion = old_completion or due_instant(opened_at, completion_days, cal, mode, tz)
            if response is None or completion is None:
                pending += 1
            if (response, completion) != (old_response, old_completion):
                changes.append(
                    {
                        "id": order_id,
                        "response_due": instant_param(dialect, response),
                        "completion_due": instant_param(dialect, completion),
                    }
                )
        if changes:
            conn.execute(update, changes)
            updated += len(changes)
        after = rows[-1][0]


# --- unit reports: the state machine -----------------------------------------------------------


@dataclass(frozen=True)
class OrderState:
    """What a unit report can change on an order."""

    status: str
    opened_at: datetime
    responded_at: datetime | None = None
    rectified_at: datetime | None = None
    closed_at: datetime | None = None
    resolution: str | None = None


def _show(instant: datetime, tz: ZoneInfo) -> str:
    return instant.astimezone(tz).isoformat(timespec="minutes")


def advance(state: OrderState, stage: Stage, resolved: bool | None, at: datetime, ref: str, tz: ZoneInfo) -> OrderState:
    """The order after a `stage` report at `at`, or OrderRefused naming why (SPEC §5).

    - `feedback` needs resolved yes/no and closes the order; the other stages refuse it;
    - a later stage fills the missing earlier ones with its own time;
    - a report may only move forward: a stage at or behind the order's status is refused,
      except an exact repeat of the report that got it there (a re-run), which changes nothing;
    - a report dated before the order was opened, or before a stage already recorded, is refused.
    """
    if stage not in _STAGE_RANK:
        raise InputError(f"--stage {stage!r}: expected one of {', '.join(STAGES)}")
    if stage == "feedback" and resolved is None:
        raise InputError(f"order {ref}: --stage feedback needs --resolved or --unresolved")
    if stage != "feedback" and resolved is not None:
        raise InputError(f"order {ref}: --resolved/--unresolved go only with --stage feedback")
    if at.tzinfo is None or at.utcoffset() is None:
        raise InputError(f"order {ref}: --at must carry a UTC offset")

    resolution = None if resolved is None else ("resolved" if resolved else "unresolved")
    current = _STATUS_RANK[state.status]
    wanted = _STAGE_RANK[stage]
    if wanted <= current:
        recorded = {
            "responded": state.responded_at,
            "rectified": state.rectified_at,
            "feedback": state.closed_at,
        }[stage]
        if wanted == current and recorded == at and state.resolution == resolution:
            return state  # the same report again: already applied
        since = state.closed_at or state.rectified_at or state.responded_at
        when = f" since {_show(since, tz)}" if since else ""
        raise OrderRefused(f"order {ref} is already {state.status}{when}; a '{stage}' report cannot go back")
    if at < state.opened_at:
        raise OrderRefused(
            f"order {ref}: '{stage}' at {_show(at, tz)} is before the order was opened ({_show(state.opened_at, tz)})"
        )
    latest = state.rectified_at or state.responded_at
    if latest is not None and at < latest:
        previous = "rectified" if state.rectified_at else "responded"
        raise OrderRefused(
            f"order {ref}: '{stage}' at {_show(at, tz)} is before its '{previous}' at {_show(latest, tz)}"
        )

    after = replace(
        state,
        status=_STATUS_AFTER[stage],
        responded_at=state.responded_at or at,
        rectified_at=(state.rectified_at or at) if wanted >= 2 else None,
    )
    if stage == "feedback":
        after = replace(after, closed_at=at, resolution=resolution)
    return after


@dataclass(frozen=True)
class ReportOutcome:
    """What `apply_report` did: `changed` is False for an exact repeat."""

    ref: str
    unit_code: str
    before: OrderState
    after: OrderState
    changed: bool

    def describe(self, tz: ZoneInfo) -> str:
        s = self.after
        stages = [
            f"{name} {_show(value, tz)}"
            for name, value in (("responded", s.responded_at), ("rectified", s.rectified_at), ("closed", s.closed_at))
            if value is not None
        ]
        status = s.status + (f" ({s.resolution})" if s.resolution else "")
        verb = "recorded" if self.changed else "already recorded, nothing changed"
        return f"order {self.ref} ({self.unit_code}): {verb}; status {status}; " + ", ".join(stages)


_SELECT_ORDER = text(
    "SELECT id, unit_code, status, opened_at, responded_at, rectified_at, closed_at, resolution "
    "FROM orders WHERE source = :source AND record_id = :record_id"
).columns(
    id=BigInteger,
    unit_code=String,
    status=String,
    opened_at=UtcDateTime(),
    responded_at=UtcDateTime(),
    rectified_at=UtcDateTime(),
    closed_at=UtcDateTime(),
    resolution=String,
)


def apply_report(
    conn: Connection,
    ref: str,
    stage: Stage,
    resolved: bool | None,
    at: datetime,
    note: str | None,
    recorded_at: datetime,
    tz: ZoneInfo,
) -> ReportOutcome:
    """Apply one unit report to the order `ref` inside the caller's transaction.

    Refusals (UnknownOrder, OrderRefused, InputError) are raised before any
    write, so the caller's transaction has nothing to roll back. The UPDATE is
    conditional on the status read, so a concurrent report on the same order
    cannot both apply: the loser is refused.
    """
    source, record_id = parse_ref(ref)
    ref = f"{source}:{record_id}"
    row = conn.execute(_SELECT_ORDER, {"source": source, "record_id": record_id}).first()
    if row is None:
        raise UnknownOrder(f"no supervision order for {ref}")
    before = OrderState(
        status=row.status,
        opened_at=row.opened_at,
        responded_at=row.responded_at,
        rectified_at=row.rectified_at,
        closed_at=row.closed_at,
        resolution=row.resolution,
    )
    after = advance(before, stage, resolved, at, ref, tz)
    if after == before:
        return ReportOutcome(ref, row.unit_code, before, after, changed=False)

    d = conn.dialect.name
    result = conn.execute(
        text(
            "UPDATE orders SET status = :status, responded_at = :responded_at, rectified_at = :rectified_at, "
            "closed_at = :closed_at, resolution = :resolution, note = COALESCE(:note, note), updated_at = :now "
            "WHERE id = :id AND status = :old_status"
        ),
        {
            "id": row.id,
            "old_status": before.status,
            "status": after.status,
            "responded_at": instant_param(d, after.responded_at),
            "rectified_at": instant_param(d, after.rectified_at),
            "closed_at": instant_param(d, after.closed_at),
            "resolution": after.resolution,
            "note": note,
            "now": instant_param(d, recorded_at),
        },
    )
    if result.rowcount != 1:
        raise OrderRefused(f"order {ref} changed while this report was being applied; check it and report again")
    conn.execute(
        text(
            "INSERT INTO order_events (order_id, stage, resolved, at, note, recorded_at) "
            "VALUES (:order_id, :stage, :resolved, :at, :note, :recorded_at)"
        ),
        {
            "order_id": row.id,
            "stage": stage,
            "resolved": resolved,
            "at": instant_param(d, at),
            "note": note,
            "recorded_at": instant_param(d, recorded_at),
        },
    )
    return ReportOutcome(ref, row.unit_code, before, after, changed=True)
