"""The escalation sweep (SPEC §6): set-based, each level at most once per order, posts via the outbox.

The rule is `minyi.tasks.rules.clocks.escalations_due`, written here as one
INSERT … SELECT per level over the whole `orders` table:

- response_overdue:   response_due <= as_of, not responded at as_of        → unit + centre
- response_reminder:  as_of's local date is the response clock's last day,
                      not responded at as_of, response_overdue not fired    → unit
- completion_overdue: completion_due <= as_of, not closed at as_of          → centre + leadership

common to all: the order was opened by as_of, its due instant is known (an
order `pending_calendar` on a clock escalates nothing on that clock), and the
level has not fired. "The response clock's last day" is matched exactly:
a due instant is always local 00:00 after the last day, so the reminder's
condition is `response_due = end of as_of's local date` — no date arithmetic
in SQL, the same statement on SQLite and PostgreSQL, and an index lookup.

"At most once" is per order and clock period (SPEC §6): UNIQUE(order_id, period,
level) with ON CONFLICT DO NOTHING (an already fired level is a conflict, skipped at
the index). A reassignment or a reopen moves the order to period + 1 with fresh
clocks from `clock_start`, so its levels fire afresh; the rows of earlier periods
stay, with the unit they fired against (`unit_code`). Each sweep tags the
rows it inserted with its own `sweep_id` and enqueues channel posts only for
those, in the same transaction, so a post exists iff its escalation does. On
PostgreSQL concurrent sweeps also take a transaction-scoped advisory lock, so
two sweeps inserting overlapping rows in different orders cannot deadlock; on
SQLite the first INSERT takes the write lock, which serialises them the same way.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import BigInteger, Boolean, Integer, String, text
from sqlalchemy.engine import Connection

from minyi.schemas.types import UtcDateTime
from minyi.tasks import texts
from minyi.tasks.config import MinyiConfig
from minyi.tasks.rules.calendar import DATA_WARNING_DAYS, Calendar, days_until_data_runs_out
from minyi.tasks.rules.clocks import ESCALATIONS, Escalation, end_of_day, last_day_of
from minyi.tasks.store.engine import instant_param
from minyi.tasks.store.outbox import Message, enqueue

__all__ = [
    "ROUTES",
    "EscalationRow",
    "calendar_notices",
    "escalation_messages",
    "run_escalations",
]

# Who hears about each level (SPEC §6). "unit" is the unit's duty channel, or
# the centre's when the unit is unknown or has no channel.
ROUTES: dict[Escalation, tuple[str, ...]] = {
    "response_reminder": ("unit",),
    "response_overdue": ("unit", "centre"),
    "completion_overdue": ("centre", "leadership"),
}

# Any constant shared by every minyi process: the key of the advisory lock that
# orders concurrent sweeps on PostgreSQL.
_SWEEP_LOCK = 0x6D696E79_69657363 & 0x7FFFFFFFFFFFFFFF
MESSAGE_BATCH = 5000

# No NOT EXISTS against escalations for the level itself: the unique index decides (ON CONFLICT DO
# NOTHING probes it per candidate, what the anti-join did). With the anti-join, PostgreSQL planned the
# first sweep over an empty, analysed escalations table as a nested loop re-scanning that table for
# every order while the statement filled it: quadratic (200k orders: 60 s for one level, now ~1 s).
_COMMON = "COALESCE(o.clock_start, o.opened_at) <= :as_of"
_NOT_RESPONDED = "(o.responded_at IS NULL OR o.responded_at > :as_of)"
_NOT_CLOSED = "(o.closed_at IS NULL OR o.closed_at > :as_of)"
# Levels in the order they are swept: response_overdue before the reminder, so a
# reminder never fires on an order the same sweep found overdue (they are
# disjoint by construction too: due <= as_of vs due = end of as_of's day > as_of).
_CONDITIONS: dict[Escalation, tuple[str, str]] = {
    "response_overdue": ("o.response_due", f"o.response_due <= :as_of AND {_NOT_RESPONDED}"),
    "response_reminder": (
        "o.response_due",
        f"o.response_due = :end_of_today AND {_NOT_RESPONDED} AND NOT EXISTS "
        "(SELECT 1 FROM escalations x WHERE x.order_id = o.id AND x.period = o.period AND x.level = 'response_overdue')",
    ),
    "completion_overdue": ("o.completion_due", f"o.completion_due <= :as_of AND {_NOT_CLOSED}"),
}


def _insert_sql(level: Escalation) -> str:
    due_column, condition = _CONDITIONS[level]
    return (
        "INSERT INTO escalations (order_id, level, due, fired_at, sweep_id, period, unit_code) "
        f"SELECT o.id, '{level}', {due_column}, :as_of, :sweep_id, o.period, o.unit_code FROM orders o "
        f"WHERE {condition} AND {_COMMON} "
        "ON CONFLICT (order_id, period, level) DO NOTHING"
    )


_INSERTS: dict[Escalation, str] = {level: _insert_sql(level) for level in _CONDITIONS}
assert set(_INSERTS) == set(ESCALATIONS)

_FIRED = text(
    "SELECT e.id, e.order_id, e.level, e.due, e.period, o.source, o.record_id, o.unit_code, u.name, u.channel, u.known "
    "FROM escalations e JOIN orders o ON o.id = e.order_id LEFT JOIN units u ON u.code = o.unit_code "
    "WHERE e.sweep_id = :sweep_id AND e.id > :after ORDER BY e.id LIMIT :n"
).columns(
    id=BigInteger,
    order_id=BigInteger,
    level=String,
    due=UtcDateTime(),
    period=Integer,
    source=String,
    record_id=String,
    unit_code=String,
    name=String,
    channel=String,
    known=Boolean,
)


@dataclass(frozen=True)
class EscalationRow:
    """One escalation just fired, with what its posts must name."""

    order_id: int
    level: Escalation
    due: datetime
    source: str
    record_id: str
    unit_code: str
    unit_name: str
    unit_channel: str  # "" when the unit is unknown or has no channel
    period: int = 1  # the order's clock period (SPEC §5: a reassignment or a reopen starts a new one)

    @property
    def ref(self) -> str:
        return f"{self.source}:{self.record_id}"


def _clock_words(level: Escalation, cfg: MinyiConfig) -> str:
    unit = "个工作日" if cfg.clock.mode == "working" else "日（自然日）"
    if level == "completion_overdue":
        return f"{cfg.clock.completion_days}{unit}整改反馈时限（completion clock）"
    return f"{cfg.clock.response_days}{unit}跟进督办时限（response clock）"


def _due_words(due: datetime, tz: ZoneInfo) -> str:
    last = last_day_of(due, tz)
    return f"{due.astimezone(tz).isoformat(timespec='minutes')}（即 {last} 24:00）"


def escalation_messages(row: EscalationRow, cfg: MinyiConfig, tz: ZoneInfo) -> list[Message]:
    """The posts for one fired escalation: one per distinct channel of its route, keyed per channel.

    Pure; the key `escalation:{order_id}:{level}:{channel}` makes the outbox refuse a second copy.
    """
    unit_known = bool(row.unit_channel)
    unit_label = f"{row.unit_name}（{row.unit_code}）" if row.unit_name else f"{row.unit_code}（未配置单位）"
    roles = {
        "unit": row.unit_channel or cfg.center_channel,
        "centre": cfg.center_channel,
        "leadership": cfg.leadership_channel,
    }
    clock, due = _clock_words(row.level, cfg), _due_words(row.due, tz)
    body = texts.escalation_text(row.level, row.ref, unit_label, clock, due, unit_known)
    channels: list[str] = []
    for role in ROUTES[row.level]:
        channel = roles[role]
        if channel not in channels:
            channels.append(channel)
    return [
        Message(
            key=texts.escalation_key(row.order_id, row.level, channel, row.period),
            kind=row.level,
            channel=channel,
            body=body,
        )
        for channel in channels
    ]


def _serialise_sweeps(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _SWEEP_LOCK})


def run_escalations(conn: Connection, cfg: MinyiConfig, as_of: datetime) -> dict[str, int]:
    """Fire every escalation due at `as_of` and enqueue its posts, in the caller's transaction.

    Returns how many of each level this sweep fired (0 on a re-run).
    The caller's transaction must start here (no reads before) so that on
    SQLite the first INSERT takes the write lock before anything is read.
    """
    tz = cfg.tz
    d = conn.dialect.name
    sweep_id = uuid.uuid4().hex
    params = {
        "as_of": instant_param(d, as_of),
        "end_of_today": instant_param(d, end_of_day(as_of.astimezone(tz).date(), tz)),
        "sweep_id": sweep_id,
    }
    _serialise_sweeps(conn)
    fired: dict[str, int] = {}
    for level, sql in _INSERTS.items():
        used = {k: v for k, v in params.items() if f":{k}" in sql}
        fired[level] = max(conn.execute(text(sql), used).rowcount or 0, 0)
    if any(fired.values()):
        for rows in _fired_pages(conn, sweep_id):
            enqueue(conn, [m for row in rows for m in escalation_messages(row, cfg, tz)], as_of)
    return {level: fired[level] for level in ESCALATIONS}


def _fired_pages(conn: Connection, sweep_id: str) -> Iterable[list[EscalationRow]]:
    after = 0
    while True:
        page = conn.execute(_FIRED, {"sweep_id": sweep_id, "after": after, "n": MESSAGE_BATCH}).all()
        if not page:
            return
        yield [
            EscalationRow(
                order_id=r.order_id,
                level=r.level,
                due=r.due,
                source=r.source,
                record_id=r.record_id,
                unit_code=r.unit_code,
                unit_name=r.name or "",
                unit_channel=(r.channel or "") if r.known else "",
                period=r.period,
            )
            for r in page
        ]
        after = page[-1].id


def calendar_notices(
    cal: Calendar, cfg: MinyiConfig, as_of: datetime, pending: int, warn_days: int = DATA_WARNING_DAYS
) -> list[Message]:
    """Warnings for the centre channel about the calendar data (pure).

    - while any order is `pending_calendar`: one warning per run, keyed by the
      run's as_of instant (SPEC §6 "every run"; re-running the same as_of adds nothing);
    - from `warn_days` days before the data runs out: one warning per local day.
    """
    tz = cfg.tz
    today: date = as_of.astimezone(tz).date()
    centre = cfg.center_channel
    hint = "请在配置 [clock] calendar_file 中补充国务院公布的节假日安排（含调休上班日）。"
    notices: list[Message] = []
    left = days_until_data_runs_out(cal, today)
    runs_out = cal.first_uncovered_on_or_after(today)
    if pending:
        notices.append(
            Message(
                key=f"calendar-pending:{as_of.astimezone(tz).isoformat()}",
                kind="calendar_pending",
                channel=centre,
                body=(
                    f"⚠️ 日历数据不足：{pending} 个督办工单的时限要用到节假日数据之外的日期"
                    f"（数据只到 {cal.last_covered_date()}），时限不推测，这些工单暂不升级（pending_calendar）。{hint}"
                ),
            )
        )
    if left <= warn_days:
        state = f"将于 {runs_out} 用尽（还剩 {left} 天）" if left else "已用尽"
        notices.append(
            Message(
                key=f"calendar-running-out:{today.isoformat()}",
                kind="calendar_running_out",
                channel=centre,
                body=f"⚠️ 节假日数据{state}，此后开出的督办工单将无法计算时限。{hint}",
            )
        )
    return notices


def warn_about_calendar(conn: Connection, cal: Calendar, cfg: MinyiConfig, as_of: datetime, pending: int) -> int:
    """Enqueue the calendar warnings due at `as_of`; returns how many were new."""
    return enqueue(conn, calendar_notices(cal, cfg, as_of, pending), as_of)
