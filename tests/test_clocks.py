"""Supervision clocks (SPEC §6): deadlines in both modes, on-time, and escalations.

Hand-checked against the 2026 arrangement as shipped in chinese_calendar 1.11.0:
National Day rest 10-01..10-07 (Thu..Wed), make-up workday Sat 10-10;
Spring Festival rest 02-15..02-23 (Sun..Mon), make-up workdays Sat 02-14 and
Sat 02-28; Labour Day rest 05-01..05-05. The calendar is cut at the end of 2026
so these tests keep meaning "2027 has no data" when the package learns 2027.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minyi.tasks.rules.calendar import Calendar, load_calendar
from minyi.tasks.rules.clocks import (
    CLOCK_MODES,
    due_instant,
    escalations_due,
    is_on_time,
    last_day,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
UTC = ZoneInfo("UTC")
_PACKAGE = load_calendar(None)
CN_2026 = Calendar.build(
    {year for year in _PACKAGE.years if year <= 2026},
    {day for day in _PACKAGE.holidays if day.year <= 2026},
    {day for day in _PACKAGE.workdays if day.year <= 2026},
)


def at(text: str) -> datetime:
    """A local instant in Asia/Shanghai, written as 'YYYY-MM-DD HH:MM'."""
    return datetime.fromisoformat(text).replace(tzinfo=SHANGHAI)


def d(text: str) -> date:
    return date.fromisoformat(text)


def response_due(opened_at: datetime, days: int, cal: Calendar, mode: str) -> datetime | None:
    return due_instant(opened_at, days, cal, mode, SHANGHAI)  # type: ignore[arg-type]


# --- working mode ----------------------------------------------------------------


def test_dissatisfied_reply_on_national_day_eve_is_due_after_the_make_up_saturday():
    opened = at("2026-09-30 10:00")
    assert response_due(opened, 3, CN_2026, "working") == at("2026-10-11 00:00")


def test_five_working_days_from_national_day_eve_skip_the_holiday_and_the_sunday():
    # 10-08 Thu, 10-09 Fri, 10-10 Sat (make-up), 10-12 Mon, 10-13 Tue
    assert response_due(at("2026-09-30 10:00"), 5, CN_2026, "working") == at("2026-10-14 00:00")


def test_opened_on_a_friday_the_working_clock_skips_the_weekend():
    assert response_due(at("2026-11-20 15:00"), 3, CN_2026, "working") == at("2026-11-26 00:00")


def test_opened_at_2359_the_start_day_is_that_day():
    assert response_due(at("2026-11-19 23:59"), 3, CN_2026, "working") == at("2026-11-25 00:00")


def test_opened_at_0000_the_start_day_is_the_new_day():
    assert response_due(at("2026-11-20 00:00"), 3, CN_2026, "working") == at("2026-11-26 00:00")


def test_the_start_day_is_the_local_date_not_the_utc_date():
    opened_utc = datetime(2026, 11, 19, 16, 30, tzinfo=UTC)  # 2026-11-20 00:30 in Shanghai
    assert response_due(opened_utc, 3, CN_2026, "working") == at("2026-11-26 00:00")


def test_opened_on_the_eve_of_spring_festival_the_make_up_saturday_counts_first():
    # start Fri 02-13; 02-14 Sat (make-up) is day 1, 02-15..02-23 rest, 02-24 day 2, 02-25 day 3
    assert response_due(at("2026-02-13 10:00"), 3, CN_2026, "working") == at("2026-02-26 00:00")


def test_five_working_days_from_spring_festival_eve_end_before_the_second_make_up_saturday():
    assert response_due(at("2026-02-13 10:00"), 5, CN_2026, "working") == at("2026-02-28 00:00")


def test_the_due_instant_is_tz_aware_and_local_midnight():
    due = response_due(at("2026-09-30 10:00"), 3, CN_2026, "working")
    assert due is not None
    assert due.tzinfo is not None and due.utcoffset() == timedelta(hours=8)
    assert (due.hour, due.minute, due.second, due.microsecond) == (0, 0, 0, 0)


# --- natural mode ------------------------------------------------------------------


def test_natural_last_day_on_national_day_moves_to_the_next_working_day():
    # 09-30 + 3 = Sat 10-03, a statutory rest day; next working day Thu 10-08
    assert response_due(at("2026-09-30 10:00"), 3, CN_2026, "natural") == at("2026-10-09 00:00")


def test_natural_last_day_on_a_weekday_holiday_moves_past_the_whole_holiday():
    # 04-30 + 1 = Fri 05-01; 05-01..05-05 rest; Wed 05-06
    assert response_due(at("2026-04-30 10:00"), 1, CN_2026, "natural") == at("2026-05-07 00:00")


def test_natural_last_day_on_a_make_up_saturday_stands():
    assert response_due(at("2026-10-07 10:00"), 3, CN_2026, "natural") == at("2026-10-11 00:00")


def test_natural_last_day_on_the_make_up_saturday_before_spring_festival_stands():
    assert response_due(at("2026-02-13 10:00"), 1, CN_2026, "natural") == at("2026-02-15 00:00")


def test_natural_last_day_inside_spring_festival_moves_to_the_first_working_day_after():
    assert response_due(at("2026-02-13 10:00"), 3, CN_2026, "natural") == at("2026-02-25 00:00")


def test_natural_last_day_on_an_ordinary_saturday_moves_to_monday():
    # opened Fri 11-20; 11-21 Sat -> Mon 11-23
    assert response_due(at("2026-11-20 15:00"), 1, CN_2026, "natural") == at("2026-11-24 00:00")


def test_natural_last_day_on_a_working_day_stands():
    assert response_due(at("2026-11-20 15:00"), 3, CN_2026, "natural") == at("2026-11-24 00:00")


# --- no data, no deadline ------------------------------------------------------------


def test_a_working_period_running_into_2027_without_data_has_no_due_instant():
    # 12-30, 12-31, then 2027-01-01 is unknown
    assert response_due(at("2026-12-29 10:00"), 3, CN_2026, "working") is None


def test_a_natural_period_running_into_2027_without_data_has_no_due_instant():
    assert response_due(at("2026-12-31 10:00"), 1, CN_2026, "natural") is None


def test_a_period_whose_last_day_is_december_31_is_due_at_the_start_of_an_uncovered_year():
    assert response_due(at("2026-12-28 10:00"), 3, CN_2026, "working") == at("2027-01-01 00:00")


def test_a_natural_last_day_on_a_weekend_rolling_past_the_data_has_no_due_instant():
    only_2028 = Calendar.build({2028})
    # Fri 2028-12-29 + 1 = Sat 12-30; Sun 12-31 rests too; 2029 is unknown
    assert response_due(at("2028-12-29 10:00"), 1, only_2028, "natural") is None


def test_a_period_does_not_jump_an_uncovered_year():
    gap = Calendar.build({2026, 2028})
    assert last_day(d("2026-12-30"), 3, gap, "working") is None


def test_a_csv_stating_2027_makes_the_period_computable(tmp_path: Path):
    path = tmp_path / "holidays.csv"
    path.write_text("date,kind,name\n2027-01-01,holiday,元旦\n", encoding="utf-8")
    with_2027 = load_calendar(path)
    # 12-30 Wed, 12-31 Thu, then Fri 2027-01-01 holiday, weekend, Mon 01-04
    assert response_due(at("2026-12-29 10:00"), 3, with_2027, "working") == at("2027-01-05 00:00")
    assert response_due(at("2026-12-31 10:00"), 1, with_2027, "natural") == at("2027-01-05 00:00")


def test_a_csv_holiday_override_moves_a_package_deadline(tmp_path: Path):
    path = tmp_path / "holidays.csv"
    path.write_text("2026-10-10,holiday,make-up cancelled\n", encoding="utf-8")
    cal = load_calendar(path)
    # 10-08, 10-09, then 10-10 and 10-11 rest, Mon 10-12
    assert response_due(at("2026-09-30 10:00"), 3, cal, "working") == at("2026-10-13 00:00")


# --- argument checks ------------------------------------------------------------------


def test_a_naive_opened_at_is_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        due_instant(datetime(2026, 9, 30, 10), 3, CN_2026, "working", SHANGHAI)


def test_a_period_of_zero_days_is_refused():
    with pytest.raises(ValueError, match="at least 1"):
        last_day(d("2026-09-30"), 0, CN_2026, "working")


def test_an_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="unknown clock mode"):
        last_day(d("2026-09-30"), 3, CN_2026, "calendar")  # type: ignore[arg-type]


# --- on time ---------------------------------------------------------------------------------


def test_done_one_second_before_the_due_instant_is_on_time():
    assert is_on_time(at("2026-10-10 23:59") + timedelta(seconds=59), at("2026-10-11 00:00"))


def test_done_exactly_at_the_due_instant_is_late():
    assert not is_on_time(at("2026-10-11 00:00"), at("2026-10-11 00:00"))


def test_nothing_is_on_time_against_an_unknown_due_instant():
    assert not is_on_time(at("2026-12-30 10:00"), None)


# --- escalations ---------------------------------------------------------------------------------

OPENED = at("2026-09-30 10:00")
RESPONSE_DUE = at("2026-10-11 00:00")  # 3 working days: last day Sat 10-10
COMPLETION_DUE = at("2026-10-14 00:00")  # 5 working days: last day Tue 10-13


def escalate(
    as_of: datetime,
    *,
    responded_at: datetime | None = None,
    closed_at: datetime | None = None,
    fired: frozenset[str] = frozenset(),
    response_due: datetime | None = RESPONSE_DUE,
    completion_due: datetime | None = COMPLETION_DUE,
) -> tuple[str, ...]:
    return escalations_due(
        opened_at=OPENED,
        response_due=response_due,
        completion_due=completion_due,
        responded_at=responded_at,
        closed_at=closed_at,
        fired=fired,
        as_of=as_of,
        tz=SHANGHAI,
    )


def test_nothing_escalates_before_the_response_clocks_last_day():
    assert escalate(at("2026-10-09 23:59")) == ()


def test_the_reminder_fires_on_the_response_clocks_last_day():
    assert escalate(at("2026-10-10 00:00")) == ("response_reminder",)
    assert escalate(at("2026-10-10 23:59")) == ("response_reminder",)


def test_the_reminder_fires_only_once():
    assert escalate(at("2026-10-10 15:00"), fired=frozenset({"response_reminder"})) == ()


def test_no_reminder_once_the_unit_has_responded():
    assert escalate(at("2026-10-10 09:00"), responded_at=at("2026-10-09 16:00")) == ()


def test_response_overdue_fires_at_the_due_instant():
    assert escalate(at("2026-10-11 00:00")) == ("response_overdue",)


def test_a_run_that_first_sees_the_order_after_the_last_day_fires_overdue_not_the_reminder():
    assert escalate(at("2026-10-12 09:00")) == ("response_overdue",)


def test_response_overdue_fires_only_once():
    assert escalate(at("2026-10-12 09:00"), fired=frozenset({"response_reminder", "response_overdue"})) == ()


def test_a_late_response_stops_the_overdue_escalation():
    assert escalate(at("2026-10-12 09:00"), responded_at=at("2026-10-11 08:00")) == ()


def test_a_response_recorded_after_as_of_does_not_count_at_as_of():
    assert escalate(at("2026-10-12 09:00"), responded_at=at("2026-10-12 10:00")) == ("response_overdue",)


def test_completion_overdue_fires_at_the_completion_due_instant_when_not_closed():
    responded = at("2026-10-09 10:00")
    assert escalate(at("2026-10-13 23:59"), responded_at=responded) == ()
    assert escalate(at("2026-10-14 00:00"), responded_at=responded) == ("completion_overdue",)


def test_both_overdue_levels_fire_together_when_first_seen_late():
    assert escalate(at("2026-10-20 09:00")) == ("response_overdue", "completion_overdue")


def test_a_closed_order_does_not_escalate_completion():
    closed = at("2026-10-13 10:00")
    assert escalate(at("2026-10-20 09:00"), responded_at=closed, closed_at=closed) == ()


def test_a_pending_calendar_order_escalates_nothing():
    assert escalate(at("2027-02-01 09:00"), response_due=None, completion_due=None) == ()


def test_an_order_opened_after_as_of_escalates_nothing():
    assert escalate(at("2026-09-30 09:00")) == ()


# --- properties ----------------------------------------------------------------------------------

# Open instants from just before the data starts to just after it ends, so that
# "no data" answers are exercised as well as deadlines.
_OPEN_INSTANTS = st.datetimes(
    min_value=datetime(2003, 12, 20),
    max_value=datetime(2027, 1, 10),
    timezones=st.just(SHANGHAI),
)


def _reference_last_day(start: date, days: int, cal: Calendar, mode: str) -> date | None:
    """The rule read literally, one day at a time: slow, obviously right."""
    day, counted = start, 0
    if mode == "working":
        while counted < days:
            day += timedelta(days=1)
            working = cal.is_working_day(day)
            if working is None:
                return None
            counted += working
        return day
    day = start + timedelta(days=days)
    while True:
        working = cal.is_working_day(day)
        if working is None:
            return None
        if working:
            return day
        day += timedelta(days=1)


@settings(max_examples=300, deadline=None, database=None)
@given(
    start=st.dates(min_value=date(2003, 12, 1), max_value=date(2027, 1, 31)),
    days=st.integers(min_value=1, max_value=10),
    mode=st.sampled_from(CLOCK_MODES),
)
def test_last_day_matches_the_rule_applied_day_by_day(start, days, mode):
    assert last_day(start, days, CN_2026, mode) == _reference_last_day(start, days, CN_2026, mode)


@settings(max_examples=200, deadline=None, database=None)
@given(opened=_OPEN_INSTANTS, answered=_OPEN_INSTANTS, days=st.integers(min_value=1, max_value=10))
def test_on_time_is_exactly_answered_strictly_before_due(opened, answered, days):
    due = due_instant(opened, days, CN_2026, "working", SHANGHAI)
    assert is_on_time(answered, due) == (due is not None and answered < due)


@settings(max_examples=200, deadline=None, database=None)
@given(opened=_OPEN_INSTANTS, days=st.integers(min_value=1, max_value=10))
def test_working_due_is_never_earlier_than_natural_due(opened, days):
    working = due_instant(opened, days, CN_2026, "working", SHANGHAI)
    natural = due_instant(opened, days, CN_2026, "natural", SHANGHAI)
    if working is not None:
        assert natural is not None
        assert natural <= working
    if natural is not None:
        # a due instant is always local midnight at least `days` + 1 calendar days after the start day
        assert natural > opened
        assert natural.astimezone(SHANGHAI).time().isoformat() == "00:00:00"
        assert (natural.astimezone(SHANGHAI).date() - opened.astimezone(SHANGHAI).date()).days >= days + 1


# --- added for issue #4's acceptance list: both modes for the midnight cases and the on-time property ---


def test_natural_mode_opened_at_2359_the_start_day_is_that_day():
    # start Thu 11-19; 11-19 + 3 = Sun 11-22, a rest day -> Mon 11-23
    assert response_due(at("2026-11-19 23:59"), 3, CN_2026, "natural") == at("2026-11-24 00:00")


def test_natural_mode_opened_at_0000_the_start_day_is_the_new_day():
    # start Fri 11-20; 11-20 + 3 = Mon 11-23, a working day
    assert response_due(at("2026-11-20 00:00"), 3, CN_2026, "natural") == at("2026-11-24 00:00")


@settings(max_examples=200, deadline=None, database=None)
@given(
    opened=_OPEN_INSTANTS,
    answered=_OPEN_INSTANTS,
    days=st.integers(min_value=1, max_value=10),
    mode=st.sampled_from(CLOCK_MODES),
)
def test_on_time_is_exactly_answered_strictly_before_due_in_both_modes(opened, answered, days, mode):
    due = due_instant(opened, days, CN_2026, mode, SHANGHAI)
    assert is_on_time(answered, due) == (due is not None and answered < due)
    if due is not None:
        assert is_on_time(due - timedelta(microseconds=1), due)
        assert not is_on_time(due, due)
