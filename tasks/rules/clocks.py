"""Supervision clocks and escalations (SPEC §6), as pure functions of values.

A supervision order runs two clocks from `opened_at`: the response clock
(`[clock] response_days`, 3 by default) and the completion-feedback clock
(`completion_days`, 5). Periods follow PRC Civil Code arts. 201–203:

- the start day (the local date of `opened_at` in the configured timezone) is
  not counted;
- working mode: the last day is the Nth working day after the start day;
- natural mode: the last day is the Nth calendar day after the start day, moved
  to the next working day when it is a rest day (a weekend or statutory holiday;
  an official make-up workday is a working day, so a last day on one stands);
- the period ends at 24:00 of the last day, i.e. the due instant is 00:00 local
  of the following day;
- a stage is on time iff it is done strictly before the due instant.

When any date the computation needs is not covered by the calendar data, the
due instant is None (the order is `pending_calendar`) and nothing escalates on
that clock: a deadline is never guessed.

Only the days the rule looks at must be covered: the days after the start day up
to the last day. The start day itself and the day after the last day (on which
the due instant falls) need not be.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Literal, get_args
from zoneinfo import ZoneInfo

from minyi.tasks.rules.calendar import Calendar

__all__ = [
    "CLOCK_MODES",
    "DEFAULT_TZ",
    "ESCALATIONS",
    "ClockMode",
    "Escalation",
    "due_instant",
    "end_of_day",
    "escalations_due",
    "extended_due",
    "is_on_time",
    "last_day",
    "last_day_of",
    "start_day",
]

ClockMode = Literal["working", "natural"]
CLOCK_MODES: tuple[ClockMode, ...] = get_args(ClockMode)

Escalation = Literal["response_reminder", "response_overdue", "completion_overdue"]
# Listed in the order escalations_due returns them.
ESCALATIONS: tuple[Escalation, ...] = get_args(Escalation)

# SPEC §1's default; callers pass the configured timezone.
DEFAULT_TZ = ZoneInfo("Asia/Shanghai")


def _require_aware(name: str, instant: datetime) -> None:
    # A naive instant would be read in the machine's timezone: a guess about
    # which day the clock starts on.
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got {instant!r}")


def last_day(start: date, days: int, cal: Calendar, mode: ClockMode) -> date | None:
    """The last day of a `days`-day period whose start day (not counted) is `start`; None if not covered."""
    if days < 1:
        raise ValueError(f"a clock period is at least 1 day, got {days}")
    if mode == "working":
        return cal.nth_working_day_after(start, days)
    if mode == "natural":
        return cal.working_day_on_or_after(start + timedelta(days=days))
    raise ValueError(f"unknown clock mode {mode!r}, expected one of {CLOCK_MODES}")


def start_day(opened_at: datetime, tz: ZoneInfo = DEFAULT_TZ) -> date:
    """The period's start day: the local date of `opened_at` in `tz` (00:00 belongs to the new day)."""
    _require_aware("opened_at", opened_at)
    return opened_at.astimezone(tz).date()


def end_of_day(d: date, tz: ZoneInfo = DEFAULT_TZ) -> datetime:
    """The instant `d` ends in `tz` (24:00 of `d` = 00:00 of the next day), tz-aware."""
    midnight = datetime.combine(d + timedelta(days=1), time(0), tzinfo=tz)
    # Round-trip through UTC so that in a zone whose clocks skip midnight the
    # answer is the real first instant of the next day, shown canonically.
    return midnight.astimezone(UTC).astimezone(tz)


def last_day_of(due: datetime, tz: ZoneInfo = DEFAULT_TZ) -> date:
    """The last day of the period ending at `due` (inverse of `end_of_day`)."""
    return due.astimezone(tz).date() - timedelta(days=1)


@lru_cache(maxsize=1 << 16)
def _due_for_start(cal: Calendar, start: date, days: int, mode: ClockMode, tz: ZoneInfo) -> datetime | None:
    # Orders opened on the same local date share their due instants, so a run
    # over a million orders does a few hundred real computations; the key holds
    # the Calendar by identity (it hashes by id), so a new calendar starts afresh.
    last = last_day(start, days, cal, mode)
    return None if last is None else end_of_day(last, tz)


def due_instant(
    opened_at: datetime, days: int, cal: Calendar, mode: ClockMode, tz: ZoneInfo = DEFAULT_TZ
) -> datetime | None:
    """When a `days`-day clock opened at `opened_at` runs out; None when the calendar lacks the data.

    This is `response_due` (days = response_days) or `completion_due`
    (days = completion_days). The result is tz-aware in `tz`, always 00:00
    local, always after `opened_at`. `opened_at` must be tz-aware.
    """
    return _due_for_start(cal, start_day(opened_at, tz), days, mode, tz)


def extended_due(
    original_due: datetime, days: int, cal: Calendar, mode: ClockMode, tz: ZoneInfo = DEFAULT_TZ
) -> datetime | None:
    """completion_due after an approved extension of `days` days (SPEC §5); None when not covered.

    24:00 of the Nth day, counted in the clock's mode, after the original period's last day:
    the original last day plays the start day of a `days`-day period (working mode: the Nth
    working day after it; natural mode: the Nth calendar day, moved off a rest day).
    """
    _require_aware("original_due", original_due)
    last = last_day(last_day_of(original_due, tz), days, cal, mode)
    return None if last is None else end_of_day(last, tz)


def is_on_time(done_at: datetime, due: datetime | None) -> bool:
    """A stage is on time iff done strictly before its due instant (SPEC §6).

    With an unknown due instant (`pending_calendar`) nothing can be on time:
    the answer is False, exactly what SQL's `done_at < NULL` yields, so the
    Python and SQL versions of a KPI agree.
    """
    return due is not None and done_at < due


def escalations_due(
    *,
    opened_at: datetime,
    response_due: datetime | None,
    completion_due: datetime | None,
    responded_at: datetime | None,
    closed_at: datetime | None,
    fired: Collection[str],
    as_of: datetime,
    tz: ZoneInfo = DEFAULT_TZ,
) -> tuple[Escalation, ...]:
    """The escalations a run at `as_of` must fire now for one order, in `ESCALATIONS` order.

    Every escalation fires at most once per order and clock period (`fired` holds those
    already fired in the order's current period), by the first run whose as_of meets its
    condition. `opened_at` is where the current clocks start (the order's `clock_start`
    after a reassignment or a reopen: SPEC §5). The state is read
    at `as_of`: a stage counts as done only when done at or before as_of, and an
    order opened after as_of escalates nothing. A clock whose due instant is
    None (`pending_calendar`) escalates nothing.

    - response_reminder: response_due known, not responded, and as_of falls on
      the response clock's last day, i.e. local 00:00 of the last day <= as_of
      < response_due; not once response_overdue has fired. A run that first
      sees the order after that day fires response_overdue instead.
    - response_overdue: response_due known, as_of >= response_due, not responded.
    - completion_overdue: completion_due known, as_of >= completion_due, not closed.

    The same rule as set-based SQL, with :as_of bound (in Asia/Shanghai, which
    has no DST, local 00:00 of the last day is exactly response_due - 1 day)::

        -- common to all: opened_at <= :as_of and the level not yet fired
        response_reminder:  response_due IS NOT NULL
                            AND (responded_at IS NULL OR responded_at > :as_of)
                            AND :as_of >= response_due - INTERVAL '1 day' AND :as_of < response_due
                            AND response_overdue not yet fired
        response_overdue:   response_due IS NOT NULL AND :as_of >= response_due
                            AND (responded_at IS NULL OR responded_at > :as_of)
        completion_overdue: completion_due IS NOT NULL AND :as_of >= completion_due
                            AND (closed_at IS NULL OR closed_at > :as_of)
    """
    _require_aware("as_of", as_of)
    if as_of < opened_at:
        return ()
    due_now: list[Escalation] = []
    responded = responded_at is not None and responded_at <= as_of
    closed = closed_at is not None and closed_at <= as_of

    if response_due is not None and not responded:
        if as_of >= response_due:
            if "response_overdue" not in fired:
                due_now.append("response_overdue")
        elif (
            "response_reminder" not in fired
            and "response_overdue" not in fired
            and as_of.astimezone(tz).date() == last_day_of(response_due, tz)
        ):
            due_now.append("response_reminder")

    if completion_due is not None and not closed and as_of >= completion_due and "completion_overdue" not in fired:
        due_now.append("completion_overdue")

    return tuple(due_now)
