"""The working-day calendar: the 2026 arrangement as published, coverage, and the override CSV.

The 2026 facts asserted here are the State Council's 2026 arrangement as shipped
in chinese_calendar 1.11.0 (hand-checked against the package's tables):
National Day 10-01..10-07 with make-up workdays Sun 09-20 and Sat 10-10;
Mid-Autumn 09-25..09-27; Spring Festival 02-15..02-23 with make-up workdays
Sat 02-14 and Sat 02-28; New Year 01-01..01-03 with make-up Sun 01-04; Labour
Day 05-01..05-05 with make-up Sat 05-09.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from minyi.tasks.rules.calendar import (
    DATA_WARNING_DAYS,
    Calendar,
    CalendarFileError,
    data_running_out,
    days_until_data_runs_out,
    load_calendar,
    read_calendar_file,
)

CN = load_calendar(None)


def d(text: str) -> date:
    return date.fromisoformat(text)


def write(tmp_path: Path, text: str, name: str = "holidays.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- the package's 2026 data -------------------------------------------------


def test_package_covers_all_of_2026_and_nothing_before_2004():
    assert CN.covers(d("2026-12-31"))
    assert CN.covers(d("2004-01-01"))
    assert not CN.covers(d("2003-12-31"))
    assert CN.is_working_day(d("2003-12-31")) is None


def test_national_day_2026_is_october_1_to_7_and_october_8_is_a_working_day():
    for day in range(1, 8):
        assert CN.is_working_day(date(2026, 10, day)) is False
    assert CN.is_working_day(d("2026-10-08")) is True


def test_make_up_workdays_around_national_day_2026_are_working_days():
    assert d("2026-09-20").weekday() == 6 and CN.is_working_day(d("2026-09-20")) is True
    assert d("2026-10-10").weekday() == 5 and CN.is_working_day(d("2026-10-10")) is True


def test_the_sunday_after_the_make_up_saturday_is_a_rest_day():
    assert CN.is_working_day(d("2026-10-11")) is False


def test_spring_festival_2026_is_february_15_to_23_with_make_up_saturdays_14_and_28():
    assert CN.is_working_day(d("2026-02-13")) is True
    assert CN.is_working_day(d("2026-02-14")) is True
    assert all(CN.is_working_day(date(2026, 2, day)) is False for day in range(15, 24))
    assert CN.is_working_day(d("2026-02-24")) is True
    assert CN.is_working_day(d("2026-02-28")) is True


def test_a_weekday_statutory_holiday_is_a_rest_day():
    assert d("2026-05-01").weekday() == 4
    assert CN.is_working_day(d("2026-05-01")) is False


def test_an_ordinary_weekend_is_rest_and_an_ordinary_weekday_is_work():
    assert CN.is_working_day(d("2026-11-21")) is False  # Saturday
    assert CN.is_working_day(d("2026-11-20")) is True  # Friday


# --- coverage and the data-runs-out warning ----------------------------------


def test_years_without_data_are_not_covered():
    assert CN.is_working_day(d("2027-01-04")) is None
    assert not CN.covers(d("2027-01-01"))


def test_last_covered_date_is_the_end_of_the_latest_covered_year():
    assert Calendar.build({2025, 2026}).last_covered_date() == d("2026-12-31")


def test_days_until_data_runs_out_counts_to_the_first_uncovered_date():
    cal = Calendar.build({2026})
    assert days_until_data_runs_out(cal, d("2026-12-01")) == 31
    assert days_until_data_runs_out(cal, d("2026-12-31")) == 1
    assert days_until_data_runs_out(cal, d("2027-01-05")) == 0


def test_the_warning_starts_thirty_days_before_the_data_runs_out():
    cal = Calendar.build({2026})
    assert DATA_WARNING_DAYS == 30
    assert not data_running_out(cal, d("2026-12-01"))
    assert data_running_out(cal, d("2026-12-02"))
    assert data_running_out(cal, d("2027-03-01"))


def test_a_gap_year_ends_the_data_even_if_a_later_year_is_covered():
    cal = Calendar.build({2026, 2028})
    assert cal.last_covered_date() == d("2028-12-31")
    assert days_until_data_runs_out(cal, d("2026-12-31")) == 1


# --- the override CSV ----------------------------------------------------------


def test_no_calendar_file_and_an_empty_setting_mean_the_package_alone():
    assert load_calendar("").years == CN.years
    assert load_calendar("   ").years == CN.years


def test_a_csv_entry_in_2027_makes_all_of_2027_covered_with_the_plain_week_elsewhere(tmp_path):
    cal = load_calendar(write(tmp_path, "2027-01-01,holiday,元旦\n"))
    assert cal.covers(d("2027-12-31"))
    assert cal.is_working_day(d("2027-01-01")) is False  # Friday, listed holiday
    assert cal.is_working_day(d("2027-01-02")) is False  # Saturday
    assert cal.is_working_day(d("2027-01-04")) is True  # Monday
    assert not cal.covers(d("2028-01-01"))
    assert days_until_data_runs_out(cal, d("2026-12-01")) == 31 + 365


def test_csv_overrides_win_over_the_package(tmp_path):
    cal = load_calendar(write(tmp_path, "2026-10-10,holiday,no make-up\n2026-10-11,workday,make-up\n"))
    assert cal.is_working_day(d("2026-10-10")) is False
    assert cal.is_working_day(d("2026-10-11")) is True
    assert cal.is_working_day(d("2026-10-01")) is False  # untouched package data


def test_a_header_line_blank_lines_comments_and_a_missing_name_are_accepted(tmp_path):
    text = (
        "\ufeffdate,kind,name\n\n# 2027 per the State Council notice\n2027-01-01, Holiday ,元旦\n2027-02-06,workday\n"
    )
    assert read_calendar_file(write(tmp_path, text)) == {
        d("2027-01-01"): "holiday",
        d("2027-02-06"): "workday",
    }


def test_the_same_date_listed_twice_with_the_same_kind_is_accepted(tmp_path):
    path = write(tmp_path, "2027-01-01,holiday,元旦\n2027-01-01,holiday,元旦\n")
    assert read_calendar_file(path) == {d("2027-01-01"): "holiday"}


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        ("date,kind,name\n2027-01-01,holiday,元旦\n2027-13-01,holiday,x\n", 3, "bad date '2027-13-01'"),
        ("2027-02-30,holiday,x\n", 1, "no such day"),
        ("2027/01/01,holiday,x\n", 1, "expected YYYY-MM-DD"),
        ("2027-01-01,vacation,x\n", 1, "bad kind 'vacation'"),
        ("2027-01-01\n", 1, "expected 'date,kind,name', got 1 fields"),
        ("2027-01-01,holiday,a,b\n", 1, "got 4 fields"),
        ("2027-01-01,holiday,元旦\n\n2027-01-01,workday,x\n", 3, "holiday on line 1"),
    ],
)
def test_a_bad_csv_line_raises_an_error_naming_the_file_line_and_problem(tmp_path, text, line, problem):
    path = write(tmp_path, text)
    with pytest.raises(CalendarFileError) as caught:
        load_calendar(path)
    assert caught.value.line == line
    message = str(caught.value)
    assert f"{path}:{line}" in message
    assert problem in message


def test_calendar_file_error_is_a_value_error():
    assert issubclass(CalendarFileError, ValueError)


def test_a_missing_calendar_file_raises_an_error_naming_it(tmp_path):
    missing = tmp_path / "nope.csv"
    with pytest.raises(CalendarFileError, match=r"nope\.csv"):
        load_calendar(missing)


# --- building by hand ------------------------------------------------------------


def test_a_date_declared_both_holiday_and_workday_is_refused():
    with pytest.raises(ValueError, match="both"):
        Calendar.build({2027}, holidays={d("2027-01-01")}, workdays={d("2027-01-01")})


def test_a_declared_date_outside_the_covered_years_is_refused():
    with pytest.raises(ValueError, match="outside"):
        Calendar.build({2027}, holidays={d("2028-01-01")})
