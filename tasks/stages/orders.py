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
- `apply_action`: one lifecycle action (SPEC §5: a unit report, a return, a
  reassignment, an extension, an appeal, a ruling, a reopen) on one order, with
  who and when; `tasks.lifecycle.transition` is its pure core, tasks/rules/clocks.py
  computes the restarted or extended clocks, and the lifecycle posts (and the
  verification SMS of a closure as resolved) are queued in the same transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import BigInteger, Integer, String, bindparam, text
from sqlalchemy.engine import Connection

from minyi.schemas.types import UtcDateTime
from minyi.tasks.config import MinyiConfig
from minyi.tasks.errors import ConfigError
from minyi.tasks.rules.calendar import Calendar, CalendarFileError, load_calendar
from minyi.tasks.rules.clocks import ClockMode, due_instant, extended_due
from minyi.tasks.rules.lifecycle import (
    ACTIONS,
    STAGES,
    Lifecycle,
    OrderRefused,
    Request,
    Stage,
    UnknownOrder,
    clean_note,
    operator,
    parse_ref,
    transition,
    when_recorded,
)
from minyi.tasks.store.engine import instant_param
from minyi.tasks.store.outbox import Message, enqueue

__all__ = [
    "ACTIONS",
    "STAGES",
    "ActionOutcome",
    "OrderRefused",
    "Stage",
    "UnknownOrder",
    "apply_action",
    "apply_report",
    "clock_calendar",
    "open_orders",
    "parse_ref",
    "refresh_dues",
]

# Orders whose dues are (re)computed per statement batch: big enough to amortise
# a round trip, small enough to keep memory flat at a million orders.
DUE_BATCH = 5000


def clock_calendar(cfg: MinyiConfig) -> Calendar:
    """The working-day calendar of this run: the package plus `[clock] calendar_file`.

    A bad calendar file is a configuration error: it stops the run with one line
    instead of silently shifting deadlines.
    """
    try:
        return load_calendar(cfg.clock.calendar_file or None)
    except CalendarFileError as exc:
        raise ConfigError(f"clock.calendar_file: {exc}") from None


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
    writes back only what became known. A due never changes once set, except by a
    lifecycle action (`apply_action`: a reassignment, an approved extension, a reopen).
    """
    select = text(
        "SELECT id, COALESCE(clock_start, opened_at) AS start, response_due, completion_due, "
        "completion_due_original, extension_status, extension_days FROM orders "
        "WHERE id > :after AND (response_due IS NULL OR completion_due IS NULL) ORDER BY id LIMIT :n"
    ).columns(
        id=BigInteger,
        start=UtcDateTime(),
        response_due=UtcDateTime(),
        completion_due=UtcDateTime(),
        completion_due_original=UtcDateTime(),
        extension_status=String,
        extension_days=Integer,
    )
    update = text(
        "UPDATE orders SET response_due = :response_due, completion_due = :completion_due, "
        "completion_due_original = :original WHERE id = :id"
    )
    dialect = conn.dialect.name
    after, updated, pending = 0, 0, 0
    while True:
        rows = conn.execute(select, {"after": after, "n": batch}).all()
        if not rows:
            return updated, pending
        changes = []
        for order_id, start, old_response, old_completion, original, extension, days in rows:
            response = old_response or due_instant(start, response_days, cal, mode, tz)
            completion = old_completion
            if completion is None:
                if extension == "approved":  # the extended due, from the original one (SPEC §5)
                    original = original or due_instant(start, completion_days, cal, mode, tz)
                    completion = original and extended_due(original, int(days or 0), cal, mode, tz)
                else:
                    completion = due_instant(start, completion_days, cal, mode, tz)
            if response is None or completion is None:
                pending += 1
            if (response, completion) != (old_response, old_completion):
                changes.append(
                    {
                        "id": order_id,
                        "response_due": instant_param(dialect, response),
                        "completion_due": instant_param(dialect, completion),
                        "original": instant_param(dialect, original),
                    }
                )
        if changes:
            conn.execute(update, changes)
            updated += len(changes)
        after = rows[-1][0]


# --- lifecycle actions (SPEC §5) ---------------------------------------------------------------

_INSTANTS = (
    "opened_at",
    "clock_start",
    "response_due",
    "completion_due",
    "completion_due_original",
    "responded_at",
    "rectified_at",
    "closed_at",
)
_SELECT_ORDER = text(
    "SELECT o.id, o.followup_id, o.unit_code, o.status, o.opened_at, COALESCE(o.clock_start, o.opened_at) AS clock_start, "
    "o.period, o.response_due, o.completion_due, o.completion_due_original, o.responded_at, o.rectified_at, "
    "o.closed_at, o.resolution, o.extension_status, o.extension_days, o.appeal_status "
    "FROM orders o WHERE o.source = :source AND o.record_id = :record_id"
).columns(
    id=BigInteger,
    followup_id=BigInteger,
    unit_code=String,
    status=String,
    period=Integer,
    resolution=String,
    extension_status=String,
    extension_days=Integer,
    appeal_status=String,
    **{c: UtcDateTime() for c in _INSTANTS},
)
_UPDATE_ORDER = text(
    "UPDATE orders SET status = :status, unit_code = :unit_code, clock_start = :clock_start, period = :period, "
    "response_due = :response_due, completion_due = :completion_due, "
    "completion_due_original = :completion_due_original, responded_at = :responded_at, "
    "rectified_at = :rectified_at, closed_at = :closed_at, resolution = :resolution, "
    "extension_status = :extension_status, extension_days = :extension_days, appeal_status = :appeal_status, "
    "note = COALESCE(:note, note), updated_at = :now "
    "WHERE id = :id AND status = :old_status AND period = :old_period AND unit_code = :old_unit"
)
_INSERT_EVENT = text(
    "INSERT INTO order_events (order_id, stage, resolved, at, note, recorded_at, by_name, backdated, unit_code, "
    "period, to_unit, days) VALUES (:order_id, :stage, :resolved, :at, :note, :recorded_at, :by_name, :backdated, "
    ":unit_code, :period, :to_unit, :days)"
)


@dataclass(frozen=True)
class ActionOutcome:
    """What `apply_action` did: `changed` is False for an exact repeat of a stage report."""

    ref: str
    action: str
    by: str
    at: datetime
    backdated: bool
    before: Lifecycle
    after: Lifecycle
    changed: bool
    posts: int = 0
    verification: str | None = None  # the message_id queued, if any
    note: str | None = None  # as stored: mobiles masked

    @property
    def unit_code(self) -> str:
        return self.after.unit_code

    def describe(self, tz: ZoneInfo) -> str:
        s = self.after
        shown = [
            f"{name} {value.astimezone(tz).isoformat(timespec='minutes')}"
            for name, value in (
                ("responded", s.responded_at),
                ("rectified", s.rectified_at),
                ("closed", s.closed_at),
                ("response_due", s.response_due),
                ("completion_due", s.completion_due),
            )
            if value is not None
        ]
        status = s.status + (f" ({s.resolution})" if s.resolution else "")
        extra = [f"extension {s.extension_status}"] if s.extension_status else []
        extra += [f"appeal {s.appeal_status}"] if s.appeal_status else []
        verb = f"{self.action} recorded by {self.by}" if self.changed else "already recorded, nothing changed"
        if self.backdated:
            verb += " (backdated)"
        return f"order {self.ref} ({s.unit_code}): {verb}; status {status}; " + ", ".join(shown + extra)


def _load(conn: Connection, source: str, record_id: str) -> tuple[int, int, Lifecycle]:
    ref = f"{source}:{record_id}"
    row = conn.execute(_SELECT_ORDER, {"source": source, "record_id": record_id}).first()
    if row is None:
        raise UnknownOrder(f"no supervision order for {ref}")
    history = conn.execute(
        text("SELECT stage, unit_code FROM order_events WHERE order_id = :id AND stage IN ('returned', 'appeal')"),
        {"id": row.id},
    ).all()
    state = Lifecycle(
        status=row.status,
        unit_code=row.unit_code,
        opened_at=row.opened_at,
        clock_start=row.clock_start,
        period=row.period,
        response_due=row.response_due,
        completion_due=row.completion_due,
        completion_due_original=row.completion_due_original,
        responded_at=row.responded_at,
        rectified_at=row.rectified_at,
        closed_at=row.closed_at,
        resolution=row.resolution,
        extension_status=row.extension_status,
        extension_days=row.extension_days,
        appeal_status=row.appeal_status,
        returned_by=frozenset(u for stage, u in history if stage == "returned" and u),
        appealed_by=frozenset(u for stage, u in history if stage == "appeal" and u),
    )
    return row.id, row.followup_id, state


def clocks_after(state: Lifecycle, cfg: MinyiConfig, cal: Calendar) -> Lifecycle:
    """Fill the dues a transition cleared (restart or approved extension) with tasks/rules/clocks.py; None = pending_calendar."""
    c, tz = cfg.clock, cfg.tz
    response, completion = state.response_due, state.completion_due
    if response is None:
        response = due_instant(state.clock_start, c.response_days, cal, c.mode, tz)
    if completion is None:
        if state.extension_status == "approved" and state.completion_due_original is not None:
            completion = extended_due(state.completion_due_original, int(state.extension_days or 0), cal, c.mode, tz)
        elif state.extension_status != "approved":
            completion = due_instant(state.clock_start, c.completion_days, cal, c.mode, tz)
    return replace(state, response_due=response, completion_due=completion)


def apply_action(
    conn: Connection,
    cfg: MinyiConfig,
    ref: str,
    action: str,
    *,
    recorded_at: datetime,
    at: datetime | None = None,
    by: str | None = None,
    note: str | None = None,
    resolved: bool | None = None,
    unit: str | None = None,
    days: int | None = None,
    cal: Calendar | None = None,
) -> ActionOutcome:
    """Apply one lifecycle action to the order `ref` inside the caller's transaction (SPEC §5).

    `action` is one of `ACTIONS` (the stages responded | rectified | feedback | returned, and
    reassign | keep | extend | approve-extension | reject-extension | appeal | uphold-appeal |
    reject-appeal | reopen). Who and when: `by` defaults to MINYI_OPERATOR or the OS user, `at`
    to `recorded_at`; an `at` after `recorded_at` is refused, more than 24 h before is marked
    backdated. Every refusal is raised before the first write, so the caller's transaction has
    nothing to roll back. The UPDATE is conditional on the status, period and holder read, so
    of two concurrent actions on one order only one applies; the other is refused.
    """
    source, record_id = parse_ref(ref)
    ref = f"{source}:{record_id}"
    who = operator(by)
    when, backdated = when_recorded(at, recorded_at)
    stored_note = clean_note(note)
    order_id, followup_id, before = _load(conn, source, record_id)
    req = Request(
        action=action,
        at=when,
        ref=ref,
        resolved=resolved,
        note=stored_note,
        unit=unit,
        days=days,
        units=cfg.unit_codes(),
    )
    after = transition(before, req, cfg.tz)
    if after == before:
        return ActionOutcome(ref, action, who, when, backdated, before, after, changed=False, note=stored_note)
    if after.response_due is None or after.completion_due is None:
        after = clocks_after(after, cfg, cal or clock_calendar(cfg))

    d = conn.dialect.name
    values = {c: instant_param(d, getattr(after, c)) for c in _INSTANTS if c != "opened_at"}
    result = conn.execute(
        _UPDATE_ORDER,
        {
            **values,
            "id": order_id,
            "old_status": before.status,
            "old_period": before.period,
            "old_unit": before.unit_code,
            "status": after.status,
            "unit_code": after.unit_code,
            "period": after.period,
            "resolution": after.resolution,
            "extension_status": after.extension_status,
            "extension_days": after.extension_days,
            "appeal_status": after.appeal_status,
            "note": stored_note,
            "now": instant_param(d, recorded_at),
        },
    )
    if result.rowcount != 1:
        raise OrderRefused(f"order {ref} changed while this action was being applied; check it and try again")
    conn.execute(
        _INSERT_EVENT,
        {
            "order_id": order_id,
            "stage": action,
            "resolved": resolved,
            "at": instant_param(d, when),
            "note": stored_note,
            "recorded_at": instant_param(d, recorded_at),
            "by_name": who,
            "backdated": backdated,
            "unit_code": before.unit_code,
            "period": before.period,
            "to_unit": after.unit_code if action == "reassign" else None,
            "days": days if action == "extend" else None,
        },
    )
    outcome = ActionOutcome(ref, action, who, when, backdated, before, after, changed=True, note=stored_note)
    posts = enqueue(conn, lifecycle_messages(conn, cfg, order_id, outcome), recorded_at)
    verification = None
    if action == "feedback" and after.resolution == "resolved":
        from minyi.tasks.stages.verification import queue_verification

        verification = queue_verification(conn, order_id, followup_id, source, record_id, after.unit_code, recorded_at)
    return ActionOutcome(ref, action, who, when, backdated, before, after, True, posts, verification, stored_note)


def apply_report(
    conn: Connection,
    ref: str,
    stage: str,
    resolved: bool | None,
    at: datetime,
    note: str | None,
    recorded_at: datetime,
    tz: ZoneInfo,
    cfg: MinyiConfig | None = None,
    by: str | None = None,
) -> ActionOutcome:
    """A unit's stage report (the pre-lifecycle signature): `apply_action` with `action = stage`."""
    if cfg is None:
        from minyi.tasks.config import load_config

        cfg = load_config()
    if stage not in STAGES:
        from minyi.tasks.errors import InputError

        raise InputError(f"--stage {stage!r}: expected one of {', '.join(STAGES)}")
    return apply_action(conn, cfg, ref, stage, recorded_at=recorded_at, at=at, by=by, note=note, resolved=resolved)


# --- lifecycle posts (SPEC §5): who hears of each action ------------------------------------------

# "unit" = the holder before the action, "new_unit" = the holder after (a reassignment).
LIFECYCLE_ROUTES: dict[str, tuple[str, ...]] = {
    "returned": ("centre",),
    "extend": ("centre",),
    "appeal": ("centre",),
    "reassign": ("unit", "new_unit"),
    "keep": ("unit",),
    "approve-extension": ("unit",),
    "reject-extension": ("unit",),
    "uphold-appeal": ("unit",),
    "reject-appeal": ("unit",),
    "reopen": ("unit", "centre"),
}


def lifecycle_messages(conn: Connection, cfg: MinyiConfig, order_id: int, done: ActionOutcome) -> list[Message]:
    """The channel posts of one applied action (none for responded / rectified / feedback)."""
    from minyi.tasks.texts import LIFECYCLE_KIND, lifecycle_key, lifecycle_text

    routes = LIFECYCLE_ROUTES.get(done.action)
    if not routes:
        return []
    tz = cfg.tz
    codes = {done.before.unit_code, done.after.unit_code}
    units = {
        r.code: r
        for r in conn.execute(
            text("SELECT code, name, channel, known FROM units WHERE code IN :codes").bindparams(
                bindparam("codes", expanding=True)
            ),
            {"codes": sorted(codes)},
        )
    }

    def label(code: str) -> str:
        u = units.get(code)
        return f"{u.name}（{code}）" if u is not None and u.name else f"{code}（未配置单位）"

    def channel(code: str) -> str:
        u = units.get(code)
        return (u.channel if u is not None and u.known and u.channel else "") or cfg.center_channel

    def show(instant: datetime | None) -> str | None:
        return instant.astimezone(tz).isoformat(timespec="minutes") if instant else None

    a, s = done.after, done.before
    body = lifecycle_text(
        done.action,
        done.ref,
        label(s.unit_code),
        at=show(done.at) or "",
        by=done.by,
        note=None if done.action == "reopen" else done.note,
        to_unit=label(a.unit_code),
        days=a.extension_days or s.extension_days,
        response_due=show(a.response_due),
        completion_due=show(a.completion_due),
    )
    roles = {"centre": cfg.center_channel, "unit": channel(s.unit_code), "new_unit": channel(a.unit_code)}
    channels = list(dict.fromkeys(roles[r] for r in routes))
    return [
        Message(key=lifecycle_key(order_id, s.period, done.action, ch), kind=LIFECYCLE_KIND, channel=ch, body=body)
        for ch in channels
    ]
