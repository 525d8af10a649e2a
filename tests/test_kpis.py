"""SPEC §7's metrics on a hand-built month (tests/month.py): every number computed by hand here."""

from __future__ import annotations

from datetime import date

import pytest

from minyi.tasks.config import TargetsConfig
from minyi.tasks.kpis import assessment, compute_assessment, meets_targets, metrics
from tests.month import AS_OF, BUSINESS_DATE, A, B, C, D, build_month
from tests.support import TZ, Env

TARGETS = TargetsConfig(timely_response=1.0, satisfaction=0.8, resolution=0.7)


def r(num: int, den: int) -> float:
    return round(num / den, 4)


def M(**values: object) -> dict[str, object]:
    """A full M with every count 0 and every rate null unless given."""
    base: dict[str, object] = {
        "records": 0,
        "followups_sent": 0,
        "responses": 0,
        "satisfied": 0,
        "basically_satisfied": 0,
        "dissatisfied": 0,
        "satisfaction_rate": None,
        "orders_opened": 0,
        "orders_due_response": 0,
        "responded_on_time": 0,
        "timely_response_rate": None,
        "orders_closed": 0,
        "resolved": 0,
        "resolution_rate": None,
        "orders_due_completion": 0,
        "completed_on_time": 0,
        "timely_completion_rate": None,
        **dict.fromkeys(("excluded", "returned", "reassigned_in", "extensions_approved", "reopened", "backdated"), 0),
    }
    base.update(values)
    return base


# Unit A: 6 records (the 31 October one and the quarantined row count nowhere); 5 SMS sent (one landline);
# answers 2 satisfied + 1 basically + 2 dissatisfied = 5 responses -> (2+1)/5.
# Orders: o1 responded 4th < due 7th, closed 10th < due 11th, resolved; o2's clocks run out after as_of.
UNIT_A = M(
    records=6,
    followups_sent=5,
    responses=5,
    satisfied=2,
    basically_satisfied=1,
    dissatisfied=2,
    satisfaction_rate=r(3, 5),
    orders_opened=2,
    orders_due_response=1,
    responded_on_time=1,
    timely_response_rate=r(1, 1),
    orders_closed=1,
    resolved=1,
    resolution_rate=r(1, 1),
    orders_due_completion=1,
    completed_on_time=1,
    timely_completion_rate=r(1, 1),
)
# Unit B: 5 records in the period (the 21st is after the business date); (3+1)/5 = 0.8 exactly.
# o3 responded 12th < 14th; not closed and its completion clock ran out on the 18th.
UNIT_B = M(
    records=5,
    followups_sent=5,
    responses=5,
    satisfied=3,
    basically_satisfied=1,
    dissatisfied=1,
    satisfaction_rate=r(4, 5),
    orders_opened=1,
    orders_due_response=1,
    responded_on_time=1,
    timely_response_rate=r(1, 1),
    orders_due_completion=1,
    completed_on_time=0,
    timely_completion_rate=r(0, 1),
)
# Unit C: 2 records, nobody reached: every rate null.
UNIT_C = M(records=2)
# Unit D (not in the config): 3 records, 2 SMS (one landline), 1 satisfied + 2 dissatisfied -> 1/3.
# Both orders pending_calendar: the responded one is due (done) but cannot be on time; the other is not due.
UNIT_D = M(
    records=3,
    followups_sent=2,
    responses=3,
    satisfied=1,
    dissatisfied=2,
    satisfaction_rate=r(1, 3),
    orders_opened=2,
    orders_due_response=1,
    responded_on_time=0,
    timely_response_rate=r(0, 1),
)
OVERALL = M(
    records=6 + 5 + 2 + 3,
    followups_sent=5 + 5 + 0 + 2,
    responses=5 + 5 + 0 + 3,
    satisfied=2 + 3 + 0 + 1,
    basically_satisfied=1 + 1,
    dissatisfied=2 + 1 + 2,
    satisfaction_rate=r(2 + 3 + 1 + 1 + 1, 13),
    orders_opened=2 + 1 + 2,
    orders_due_response=1 + 1 + 1,
    responded_on_time=1 + 1,
    timely_response_rate=r(2, 3),
    orders_closed=1,
    resolved=1,
    resolution_rate=r(1, 1),
    orders_due_completion=1 + 1,
    completed_on_time=1,
    timely_completion_rate=r(1, 2),
)


@pytest.fixture
def report(env: Env) -> dict:
    build_month(env.engine)
    with env.engine.connect() as conn:
        return compute_assessment(conn, BUSINESS_DATE, AS_OF, TZ, TARGETS)


def unit(report: dict, code: str) -> dict:
    (found,) = [u for u in report["units"] if u["unit_code"] == code]
    return found


def test_assessment_header_names_the_month_to_date_and_the_evaluation_instant(report: dict) -> None:
    assert report["business_date"] == "2026-11-20"
    assert report["as_of"] == "2026-11-21T09:30:00+08:00"
    assert report["period"] == {"start": "2026-11-01", "end": "2026-11-20"}
    assert report["targets"] == {"timely_response": 1.0, "satisfaction": 0.8, "resolution": 0.7}


@pytest.mark.parametrize(("code", "expected"), [(A, UNIT_A), (B, UNIT_B), (C, UNIT_C), (D, UNIT_D)])
def test_every_unit_metric_matches_the_hand_count(report: dict, code: str, expected: dict) -> None:
    got = unit(report, code)
    assert {k: got[k] for k in expected} == expected


def test_overall_sums_the_units_counts_and_recomputes_its_rates(report: dict) -> None:
    assert report["overall"] == OVERALL


def test_units_list_every_unit_with_records_in_the_period_known_or_not(report: dict) -> None:
    assert sorted(u["unit_code"] for u in report["units"]) == sorted([A, B, C, D])


def test_meets_targets_passes_on_exactly_the_target_and_on_null_rates(report: dict) -> None:
    assert unit(report, B)["meets_targets"] is True  # 0.8 >= 0.8, resolution null
    assert unit(report, C)["meets_targets"] is True  # nothing to judge
    assert unit(report, A)["meets_targets"] is False  # satisfaction 0.6 < 0.8
    assert unit(report, D)["meets_targets"] is False  # timely response 0 < 1.0


def test_rank_puts_units_meeting_targets_first_then_satisfaction_descending_null_last(report: dict) -> None:
    assert [(u["unit_code"], u["rank"]) for u in report["units"]] == [(B, 1), (C, 2), (A, 3), (D, 4)]


def test_unit_entries_have_exactly_the_documented_keys(report: dict) -> None:
    assert list(unit(report, A)) == ["unit_code", *UNIT_A, "meets_targets", "rank"]
    assert list(report) == ["business_date", "as_of", "period", "targets", "overall", "units"]


def test_a_month_with_no_records_has_no_units_and_null_overall_rates(env: Env) -> None:
    with env.engine.connect() as conn:
        report = compute_assessment(conn, date(2026, 12, 5), AS_OF, TZ, TARGETS)
    assert report["units"] == [] and report["overall"] == M()


def test_a_stage_done_exactly_at_its_due_instant_is_late(env: Env) -> None:
    from sqlmodel import Session

    from tests.month import Builder

    with Session(env.engine) as s:
        b = Builder(s)
        fu = b.followup(b.record(A, date(2026, 11, 2)), satisfaction="dissatisfied")
        b.order(
            fu,
            "2026-11-03 10:00",
            response_due="2026-11-07 00:00",
            completion_due="2026-11-11 00:00",
            responded_at="2026-11-07 00:00",
            closed_at="2026-11-10 23:59:59.999999",
            resolution="unresolved",
        )
        s.commit()
    with env.engine.connect() as conn:
        got = unit(compute_assessment(conn, BUSINESS_DATE, AS_OF, TZ, TARGETS), A)
    assert (got["orders_due_response"], got["responded_on_time"]) == (1, 0)
    assert (got["orders_due_completion"], got["completed_on_time"], got["resolution_rate"]) == (1, 1, 0.0)


def test_a_rate_just_below_target_fails_even_if_it_rounds_up_to_it() -> None:
    counts = {"responses": 100_000, "satisfied": 79_999}  # 0.79999 -> 0.8 rounded
    assert metrics(counts)["satisfaction_rate"] == 0.8
    assert meets_targets(counts, TARGETS) is False


def test_ranking_breaks_ties_by_unit_code() -> None:
    same = {"responses": 2, "satisfied": 2}
    report = assessment(BUSINESS_DATE, AS_OF, TZ, TARGETS, {"U2": dict(same), "U1": dict(same)})
    assert [u["unit_code"] for u in report["units"]] == ["U1", "U2"]
