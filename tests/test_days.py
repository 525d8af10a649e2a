"""The month rule of the monthly assessment (tasks/rules/days.py) and the on-time rule the KPI SQL restates."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlmodel import Session

from minyi.tasks.errors import InputError
from minyi.tasks.rules.clocks import is_on_time
from minyi.tasks.rules.days import month_end, previous_month_end
from minyi.tasks.stages.kpis import compute_assessment
from tests.month import AS_OF, BUSINESS_DATE, Builder
from tests.support import TZ, Env, at


def test_month_end_is_the_last_day_of_the_month_leap_years_included() -> None:
    assert month_end("2026-11") == date(2026, 11, 30)
    assert month_end("2026-12") == date(2026, 12, 31)
    assert month_end("2028-02") == date(2028, 2, 29)


@pytest.mark.parametrize("bad", ["2026-13", "2026-1", "202611", "", "2026-11-01"])
def test_a_month_not_in_yyyy_mm_form_is_refused_naming_the_argument(bad: str) -> None:
    with pytest.raises(InputError, match="month: "):
        month_end(bad)


def test_the_previous_month_is_the_one_before_as_ofs_local_month() -> None:
    assert previous_month_end(at("2026-12-01 08:00"), TZ) == date(2026, 11, 30)
    assert previous_month_end(datetime.fromisoformat("2026-11-30T16:30:00+00:00"), TZ) == date(2026, 11, 30)


# --- the KPI SQL's "strictly before the due instant" is clocks.is_on_time ------------------------------------------

OFFSETS = st.one_of(st.none(), st.integers(min_value=-5_000_000, max_value=5_000_000))  # microseconds around the due


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(orders=st.lists(st.tuples(st.booleans(), OFFSETS, OFFSETS), min_size=1, max_size=12))
def test_the_kpi_sql_and_clocks_is_on_time_agree_on_random_orders(env: Env, orders: list[tuple]) -> None:
    with env.engine.begin() as conn:
        for table in ("orders", "followups", "records"):
            conn.execute(text(f"DELETE FROM {table}"))
    due = at("2026-11-10 00:00")
    expected_response = expected_completion = 0
    with Session(env.engine) as s:
        b = Builder(s)
        for known, responded, closed in orders:
            fu = b.followup(b.record("U-1", date(2026, 11, 2), phone=None), satisfaction="dissatisfied")
            response_at = None if responded is None else due + timedelta(microseconds=responded)
            closed_at = None if closed is None else due + timedelta(microseconds=closed)
            b.order(
                fu,
                "2026-11-03 10:00",
                response_due="2026-11-10 00:00" if known else None,
                completion_due="2026-11-10 00:00" if known else None,
                responded_at=response_at.strftime("%Y-%m-%d %H:%M:%S.%f") if response_at else None,
                closed_at=closed_at.strftime("%Y-%m-%d %H:%M:%S.%f") if closed_at else None,
                resolution="resolved" if closed_at else None,
            )
            if response_at is not None:
                expected_response += is_on_time(response_at, due if known else None)
            if closed_at is not None:
                expected_completion += is_on_time(closed_at, due if known else None)
        s.commit()
    with env.engine.connect() as conn:
        (unit,) = compute_assessment(conn, BUSINESS_DATE, AS_OF, TZ, _targets())["units"]
    assert (unit["responded_on_time"], unit["completed_on_time"]) == (expected_response, expected_completion)


def _targets():  # type: ignore[no-untyped-def]
    from minyi.tasks.config import TargetsConfig

    return TargetsConfig()
