"""Which days are working days in mainland China, and for which dates we know it.

The supervision clocks (SPEC §6) count working days, and a natural-day period
that ends on a rest day moves to the next working day. Both need the official
holiday arrangement, which the State Council publishes once a year (each
November or December, for the following year), including the make-up workdays
(调休) on which people work on a Saturday or Sunday. That arrangement cannot be
computed, only looked up, so every answer here is either known or explicitly
unknown: `Calendar.is_working_day` returns None for a date the data does not
cover, and the clocks then refuse to guess (the order stays `pending_calendar`).

Data sources, in order of precedence:

1. the optional override CSV (`[clock] calendar_file`), lines `date,kind,name`
   where `kind` is `holiday` (a rest day) or `workday` (a working day, e.g. a
   make-up workday); it wins over the package for any date it lists;
2. the maintained package `chinese_calendar` (1.11.0 covers 2004-01-01 through
   2026-12-31): its `holidays` are declared rest days, its `workdays` are
   make-up workdays.

Any date listed by neither follows the plain week: Monday to Friday work,
Saturday and Sunday rest.

Coverage is decided per calendar year, because that is the unit in which the
arrangement is published:

- a year is covered when the package has data for it (the package's own rule:
  every year from its first to its last holiday's year), or when the CSV has at
  least one entry dated in it;
- in a covered year every date is known: listed dates as listed, the others by
  the plain week;
- so a CSV that extends the data to a new year must list *all* of that year's
  holidays and make-up workdays (transcribe the whole State Council notice; the
  weekend days inside a holiday block may be listed or not, they rest either
  way). One stray entry is enough to declare the year covered.

The CSV may start with a `date,kind,name` header; blank lines and lines starting
with `#` are ignored; `name` may be empty or omitted; the file is read as UTF-8
(a byte-order mark is accepted). Any other malformed line raises
`CalendarFileError` naming the file, the line and the problem, so a bad file
stops the run instead of silently shifting deadlines.

Everything here is pure: no clock, no I/O beyond reading the CSV in
`load_calendar`.
"""

from __future__ import annotations

import csv
import re
from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import MAXYEAR, date, timedelta
from pathlib import Path
from typing import Literal

import chinese_calendar

__all__ = [
    "DATA_WARNING_DAYS",
    "Calendar",
    "CalendarFileError",
    "DayKind",
    "data_running_out",
    "days_until_data_runs_out",
    "load_calendar",
    "read_calendar_file",
]

DayKind = Literal["holiday", "workday"]

# The centre is warned this many days before the calendar data runs out, which
# leaves a month to transcribe the next year's State Council notice.
DATA_WARNING_DAYS = 30

_DAY_KINDS: frozenset[str] = frozenset({"holiday", "workday"})
# date.fromisoformat also accepts 20270101, 2027-W01-1 and friends; a calendar
# file should say one thing one way.
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


class CalendarFileError(ValueError):
    """A calendar override file that cannot be used; the message names the file, line and problem."""

    def __init__(self, path: str | Path, line: int | None, problem: str) -> None:
        self.path = str(path)
        self.line = line
        self.problem = problem
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"calendar file {where}: {problem}")


@dataclass(frozen=True, eq=False)
class Calendar:
    """The known working days, built once per run and shared by every clock computation.

    `years` are the covered calendar years; `holidays` are dates declared rest
    days and `workdays` dates declared working days (make-up workdays), both
    only inside covered years and never overlapping. Construct with
    `Calendar.build` or `load_calendar`.

    Instances compare and hash by identity (`eq=False`): the clocks cache due
    instants per calendar object, and hashing by identity keeps that cache cheap.
    """

    years: frozenset[int]
    holidays: frozenset[date]
    workdays: frozenset[date]
    source: str = ""
    # Derived in __post_init__: sorted ordinals of every working day in every
    # covered year (so "the Nth working day after D" is one bisect), and for each
    # covered year the last year of the unbroken run of covered years it starts
    # or belongs to (so a period that would jump an uncovered year is refused).
    _working_ordinals: tuple[int, ...] = field(init=False, repr=False)
    _run_last_year: dict[int, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.years:
            raise ValueError("a calendar must cover at least one year")
        both = self.holidays & self.workdays
        if both:
            raise ValueError(f"dates declared both holiday and workday: {sorted(both)[:5]}")
        outside = sorted(d for d in self.holidays | self.workdays if d.year not in self.years)
        if outside:
            raise ValueError(f"declared dates outside the covered years: {outside[:5]}")

        working: list[int] = []
        for year in sorted(self.years):
            day = date(year, 1, 1)
            while day.year == year:
                if day in self.workdays or (day.weekday() < 5 and day not in self.holidays):
                    working.append(day.toordinal())
                if day == date.max:
                    break
                day += timedelta(days=1)

        run_last_year: dict[int, int] = {}
        run: list[int] = []
        for year in sorted(self.years):
            if run and year != run[-1] + 1:
                run_last_year.update(dict.fromkeys(run, run[-1]))
                run = []
            run.append(year)
        run_last_year.update(dict.fromkeys(run, run[-1]))

        object.__setattr__(self, "_working_ordinals", tuple(working))
        object.__setattr__(self, "_run_last_year", run_last_year)

    @classmethod
    def build(
        cls,
        years: Iterable[int],
        holidays: Iterable[date] = (),
        workdays: Iterable[date] = (),
        source: str = "",
    ) -> Calendar:
        """A calendar covering `years`, with the given declared rest and working days."""
        return cls(frozenset(years), frozenset(holidays), frozenset(workdays), source)

    def covers(self, d: date) -> bool:
        """True when the data says whether `d` is a working day."""
        return d.year in self.years

    def is_working_day(self, d: date) -> bool | None:
        """Whether people work on `d` (make-up workdays included); None when `d` is not covered."""
        if d.year not in self.years:
            return None
        if d in self.workdays:
            return True
        return d.weekday() < 5 and d not in self.holidays

    def last_covered_date(self) -> date:
        """The last date of the latest covered year.

        Earlier years may be missing; `first_uncovered_on_or_after` tells where the data really stops.
        """
        return date(max(self.years), 12, 31)

    def first_uncovered_on_or_after(self, d: date) -> date:
        """The first date on or after `d` the data does not cover: where computations starting at `d` stop."""
        if d.year not in self.years:
            return d
        last_year = self._run_last_year[d.year]
        # A calendar reaching year 9999 never runs out within date's range.
        return date.max if last_year >= MAXYEAR else date(last_year + 1, 1, 1)

    def nth_working_day_after(self, d: date, n: int) -> date | None:
        """The `n`-th working day strictly after `d` (n >= 1); None unless every day up to it is covered.

        `d` itself need not be covered: it is never counted.
        """
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        first = d + timedelta(days=1)
        if first.year not in self.years:
            return None
        i = bisect_right(self._working_ordinals, d.toordinal()) + n - 1
        if i >= len(self._working_ordinals):
            return None
        found = date.fromordinal(self._working_ordinals[i])
        # The ordinals span every covered year, gaps included; a hit beyond the
        # unbroken run that starts at `first` skipped days nobody knows about.
        if found.year > self._run_last_year[first.year]:
            return None
        return found

    def working_day_on_or_after(self, d: date) -> date | None:
        """`d` if it is a working day, else the next one; None unless every day up to it is covered."""
        if d.year not in self.years:
            return None
        i = bisect_left(self._working_ordinals, d.toordinal())
        if i >= len(self._working_ordinals):
            return None
        found = date.fromordinal(self._working_ordinals[i])
        if found.year > self._run_last_year[d.year]:
            return None
        return found


def read_calendar_file(path: str | Path) -> dict[date, DayKind]:
    """Parse an override CSV into {date: kind}; raise CalendarFileError on the first bad line.

    Listing the same date twice with the same kind is accepted (files get
    concatenated); with different kinds it is an error, since either answer
    would be a guess.
    """
    entries: dict[date, DayKind] = {}
    first_seen: dict[date, int] = {}
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle)
            expecting_header = True
            for row in reader:
                line = reader.line_num
                fields = [value.strip() for value in row]
                if not any(fields) or fields[0].startswith("#"):
                    continue
                if expecting_header:
                    expecting_header = False
                    if fields[0].lower() == "date":
                        continue
                if len(fields) not in (2, 3):
                    raise CalendarFileError(
                        path, line, f"expected 'date,kind,name', got {len(fields)} fields: {','.join(row)!r}"
                    )
                raw_date, raw_kind = fields[0], fields[1].lower()
                if not _ISO_DATE.fullmatch(raw_date):
                    raise CalendarFileError(path, line, f"bad date {raw_date!r}, expected YYYY-MM-DD")
                try:
                    day = date.fromisoformat(raw_date)
                except ValueError:
                    raise CalendarFileError(path, line, f"bad date {raw_date!r}, no such day") from None
                if raw_kind not in _DAY_KINDS:
                    raise CalendarFileError(path, line, f"bad kind {fields[1]!r}, expected 'holiday' or 'workday'")
                kind: DayKind = "holiday" if raw_kind == "holiday" else "workday"
                if day in entries and entries[day] != kind:
                    raise CalendarFileError(
                        path,
                        line,
                        f"{day} is {kind} here but {entries[day]} on line {first_seen[day]}",
                    )
                entries[day] = kind
                first_seen.setdefault(day, line)
    except OSError as exc:
        raise CalendarFileError(path, None, f"cannot read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise CalendarFileError(path, None, f"not UTF-8 text: {exc.reason}") from exc
    except csv.Error as exc:
        raise CalendarFileError(path, None, f"not CSV: {exc}") from exc
    return entries


def load_calendar(calendar_file: str | Path | None = None) -> Calendar:
    """The package's calendar overlaid with `calendar_file` (None or "" = no overrides).

    Called once per run; building costs a few milliseconds.
    """
    package_years = range(min(chinese_calendar.holidays).year, max(chinese_calendar.holidays).year + 1)
    holidays = set(chinese_calendar.holidays)
    workdays = set(chinese_calendar.workdays)
    years = set(package_years)
    source = f"chinese_calendar {chinese_calendar.__version__}"

    if calendar_file is not None and str(calendar_file).strip():
        entries = read_calendar_file(calendar_file)
        for day, kind in entries.items():
            if kind == "holiday":
                holidays.add(day)
                workdays.discard(day)
            else:
                workdays.add(day)
                holidays.discard(day)
            years.add(day.year)
        source += f" + {calendar_file}"

    return Calendar.build(years, holidays, workdays, source)


def days_until_data_runs_out(cal: Calendar, today: date) -> int:
    """Days from `today` to the first date the data does not cover (0 when `today` itself is not covered).

    On the last covered day this is 1; on 2026-12-01 with data through
    2026-12-31 it is 31.
    """
    return (cal.first_uncovered_on_or_after(today) - today).days


def data_running_out(cal: Calendar, today: date, warn_days: int = DATA_WARNING_DAYS) -> bool:
    """Whether the centre should be warned that calendar data is about to run out (or already has).

    True from `warn_days` days before the first uncovered date: with data
    through 2026-12-31, from 2026-12-02 on.
    """
    return days_until_data_runs_out(cal, today) <= warn_days
