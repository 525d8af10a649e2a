"""`minyi demo`'s month (minyi/demo.py, minyi/sim/month.py): a fixed period, deterministic actors."""

from __future__ import annotations

from collections import Counter
from datetime import date

import pytest

from minyi.demo import DEMO_START, demo_dates
from minyi.sim.month import NEVER_ANSWERS, PROMPT, VISIT_OUTCOMES, pace_of, visit_outcome
from minyi.tasks.errors import InputError


def test_the_default_period_is_ten_business_dates_inside_the_calendar_data() -> None:
    dates = demo_dates(DEMO_START, 10)
    assert dates[0] == date(2026, 11, 2) and dates[-1] == date(2026, 11, 13) and len(dates) == 10
    assert all(d.weekday() < 5 for d in dates)


def test_a_period_past_the_calendar_data_is_refused_naming_its_end() -> None:
    with pytest.raises(InputError, match="calendar data ends on 2026-12-31"):
        demo_dates(date(2026, 12, 21), 10)


def test_units_answer_at_their_pace_and_one_never_answers() -> None:
    paces = Counter(pace_of("QD-SN-PS01", f"police110:110-{i}") for i in range(700))
    assert paces[PROMPT] > 500 and len(paces) == 2  # most on time, some late
    assert pace_of(NEVER_ANSWERS, "police110:110-1") is None


def test_the_call_back_desk_hears_every_outcome_in_a_stable_mix() -> None:
    heard = Counter(visit_outcome(f"window:W-{i}", date(2026, 11, 3)) for i in range(400))
    assert set(heard) == {o for o, _ in VISIT_OUTCOMES}
    assert visit_outcome("window:W-1", date(2026, 11, 3)) == visit_outcome("window:W-1", date(2026, 11, 3))
