"""Business dates and instants: parsing operator input and deciding "yesterday" (SPEC §1, §9).

Nothing in minyi reads the wall clock except `now()` here, called only when an
operator leaves `as_of` unset; every rule takes `as_of` as a value.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from minyi.tasks.errors import InputError


def now() -> datetime:
    """The real clock, tz-aware: the default for `as_of`, never used inside a rule."""
    return datetime.now(UTC)


def parse_date(value: str, what: str = "--date") -> date:
    """`YYYY-MM-DD`, or an InputError naming the argument."""
    try:
        if len(value) != 10:
            raise ValueError
        return date.fromisoformat(value)
    except ValueError:
        raise InputError(f"{what}: {value!r} is not a date in YYYY-MM-DD form") from None


def parse_instant(value: str, what: str = "--as-of") -> datetime:
    """ISO 8601 with an offset, e.g. 2026-09-29T09:05:00+08:00; a naive instant is refused."""
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise InputError(f"{what}: {value!r} is not an ISO 8601 instant (e.g. 2026-09-29T09:05:00+08:00)") from None
    if dt.tzinfo is None:
        raise InputError(f"{what}: {value!r} has no UTC offset (e.g. 2026-09-29T09:05:00+08:00)")
    return dt


def local_date(instant: datetime, tz: ZoneInfo) -> date:
    return instant.astimezone(tz).date()


def start_of_day(day: date, tz: ZoneInfo) -> datetime:
    """00:00 local of `day`, as an aware instant."""
    return datetime.combine(day, time(0), tz)


def resolve_day(business_date: date | None, as_of: datetime | None, tz: ZoneInfo) -> tuple[date, datetime]:
    """Defaults of the daily loop: as_of = now, business date = the local day before as_of."""
    instant = as_of or now()
    if instant.tzinfo is None:
        raise InputError("as_of: instants must carry a UTC offset")
    day = business_date or (local_date(instant, tz) - timedelta(days=1))
    return day, instant


def date_range(start: date, end: date) -> list[date]:
    if end < start:
        raise InputError(f"--end {end} is before --start {start}")
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


def month_end(month: str, what: str = "month") -> date:
    """The last day of `YYYY-MM`, or an InputError naming the argument."""
    try:
        if len(month) != 7:
            raise ValueError
        first = date.fromisoformat(f"{month}-01")
    except ValueError:
        raise InputError(f"{what}: {month!r} is not YYYY-MM") from None
    return (first.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)


def previous_month_end(as_of: datetime, tz: ZoneInfo) -> date:
    """The last day of the month before as_of's local month (the monthly assessment's default)."""
    return local_date(as_of, tz).replace(day=1) - timedelta(days=1)
