"""SPEC §7's metrics on a hand-built month (tests/month.py): every number computed by hand here."""

from __future__ import annotations

from datetime import date
from fractions import Fraction

import pytest

from minyi.tasks.config import AssessmentConfig, TargetsConfig, WeightsConfig
from minyi.tasks.stages.kpis import assessment, compute_assessment, meets_targets, metrics, score
from tests.month import AS_OF, BUSINESS_DATE, A, B, C, D, build_month
from tests.support import TZ, Env

TARGETS = TargetsConfig(timely_response=1.0, satisfaction=0.8, resolution=0.7)
# A and B have 5 responses each (ranked), C 0 and D 3 (listed, not ranked)
RANK_AT_5 = AssessmentConfig(min_responses=5)


def r(num: int, den: int) -> float:
    """An exact rate as assessment.json writes it: the float of the fraction, unrounded."""
    return float(Fraction(num, den))


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
        "reply_rate": None,
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
        "score": None,
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
    reply_rate=r(5, 5),
    # 100 × (30·1 + 40·0.6 + 20·1 + 10·1) / (30 + 40 + 20 + 10)
    score=84.0,
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
    reply_rate=r(5, 5),
    # resolution is null (no order closed): its weight drops out. 100 × (30·1 + 40·0.8 + 10·0) / (30 + 40 + 10)
    score=77.5,
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
    # a visit answer counts as a response without an SMS: 3 responses to 2 SMS
    reply_rate=r(3, 2),
    # 100 × (30·0 + 40·(1/3)) / (30 + 40) = 19.0476… -> 19.05
    score=19.05,
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
    reply_rate=r(13, 12),
    # 100 × (30·(2/3) + 40·(8/13) + 20·1 + 10·(1/2)) / 100 = 69.615… -> 69.62
    score=69.62,
)


@pytest.fixture
def report(env: Env) -> dict:
    build_month(env.engine)
    with env.engine.connect() as conn:
        return compute_assessment(conn, BUSINESS_DATE, AS_OF, TZ, TARGETS, RANK_AT_5)


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


def test_rank_puts_units_meeting_targets_first_then_satisfaction_descending_null_last() -> None:
    counts = {
        "U1": {"responses": 5, "satisfied": 3},  # misses satisfaction
        "U2": {"responses": 5, "satisfied": 4},  # meets at 0.8
        "U3": {"records": 2},  # nothing to judge: meets, satisfaction null
    }
    report = assessment(BUSINESS_DATE, AS_OF, TZ, TARGETS, counts, AssessmentConfig(min_responses=0))
    assert [(u["unit_code"], u["rank"]) for u in report["units"]] == [("U2", 1), ("U3", 2), ("U1", 3)]


def test_units_under_min_responses_are_listed_after_every_ranked_unit_without_a_rank(report: dict) -> None:
    # A (5 responses, misses satisfaction) still ranks above C (0) and D (3), which meet or not
    table = [(u["unit_code"], u["ranked"], u["rank"]) for u in report["units"]]
    assert table == [(B, True, 1), (A, True, 2), (C, False, None), (D, False, None)]


def test_a_unit_with_one_happy_citizen_does_not_top_the_table() -> None:
    counts = {
        "U-ONE": {"records": 1, "followups_sent": 1, "responses": 1, "satisfied": 1},
        "U-MANY": {"records": 40, "followups_sent": 40, "responses": 30, "satisfied": 25, "dissatisfied": 5},
    }
    report = assessment(BUSINESS_DATE, AS_OF, TZ, TARGETS, counts, AssessmentConfig(min_responses=30))
    assert [(u["unit_code"], u["rank"]) for u in report["units"]] == [("U-MANY", 1), ("U-ONE", None)]


def test_min_responses_is_reached_at_exactly_the_threshold() -> None:
    counts = {"AT": {"responses": 30, "satisfied": 30}, "BELOW": {"responses": 29, "satisfied": 29}}
    report = assessment(BUSINESS_DATE, AS_OF, TZ, TARGETS, counts, AssessmentConfig(min_responses=30))
    assert {u["unit_code"]: u["ranked"] for u in report["units"]} == {"AT": True, "BELOW": False}


def test_rank_by_score_orders_ranked_units_by_score_descending_then_unit_code(report: dict, env: Env) -> None:
    cfg = AssessmentConfig(min_responses=3, rank_by="score")
    with env.engine.connect() as conn:
        by_score = compute_assessment(conn, BUSINESS_DATE, AS_OF, TZ, TARGETS, cfg)
    # A 84.0 > B 77.5 > D 19.05 (ranked at 3 responses); C has no score and 0 responses: listed last
    table = [(u["unit_code"], u["score"], u["rank"]) for u in by_score["units"]]
    assert table == [(A, 84.0, 1), (B, 77.5, 2), (D, 19.05, 3), (C, None, None)]


def test_rank_by_score_puts_a_null_score_last_and_breaks_ties_by_unit_code() -> None:
    counts = {"U3": {"responses": 2, "satisfied": 2}, "U1": {"records": 1}, "U2": {"responses": 2, "satisfied": 2}}
    cfg = AssessmentConfig(min_responses=0, rank_by="score")
    report = assessment(BUSINESS_DATE, AS_OF, TZ, TARGETS, counts, cfg)
    assert [u["unit_code"] for u in report["units"]] == ["U2", "U3", "U1"]


def test_score_weighs_the_four_rates_and_drops_a_null_rate_out_of_the_weights() -> None:
    weights = WeightsConfig(timely_response=30, satisfaction=40, resolution=20, timely_completion=10)
    rates = {
        "timely_response_rate": Fraction(9, 10),
        "satisfaction_rate": Fraction(3, 4),
        "resolution_rate": None,
        "timely_completion_rate": Fraction(1, 2),
    }
    # 100 × (30·0.9 + 40·0.75 + 10·0.5) / (30 + 40 + 10) = 100 × 62 / 80
    assert score(rates, weights) == 77.5


def test_score_rounds_half_up_to_two_decimals() -> None:
    weights = WeightsConfig(timely_response=1, satisfaction=0, resolution=0, timely_completion=0)
    assert score({"timely_response_rate": Fraction(12345, 1_000_000)}, weights) == 1.23  # 1.2345 -> 1.23
    assert score({"timely_response_rate": Fraction(12355, 1_000_000)}, weights) == 1.24  # 1.2355 -> 1.24
    assert score({"timely_response_rate": Fraction(1, 800)}, weights) == 0.13  # 0.125 -> 0.13, not 0.12 (half even)


def test_score_is_null_when_every_rate_is_null() -> None:
    assert score(dict.fromkeys(("timely_response_rate", "satisfaction_rate"), None), WeightsConfig()) is None


def test_reply_rate_is_responses_over_followups_sent() -> None:
    assert metrics({"followups_sent": 8, "responses": 6})["reply_rate"] == 0.75
    assert metrics({"responses": 1})["reply_rate"] is None


def test_rates_are_the_exact_ratio_unrounded() -> None:
    counts = {"responses": 100_000, "satisfied": 79_996}
    assert metrics(counts)["satisfaction_rate"] == 0.79996
    assert meets_targets(counts, TARGETS) is False


def test_unit_entries_have_exactly_the_documented_keys(report: dict) -> None:
    assert list(unit(report, A)) == ["unit_code", *UNIT_A, "meets_targets", "ranked", "rank"]
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


def test_a_rate_just_below_target_fails_and_is_never_written_as_the_target() -> None:
    counts = {"responses": 100_000, "satisfied": 79_999}
    assert metrics(counts)["satisfaction_rate"] == 0.79999
    assert meets_targets(counts, TARGETS) is False


def test_ranking_breaks_ties_by_unit_code() -> None:
    same = {"responses": 2, "satisfied": 2}
    cfg = AssessmentConfig(min_responses=0)
    report = assessment(BUSINESS_DATE, AS_OF, TZ, TARGETS, {"U2": dict(same), "U1": dict(same)}, cfg)
    assert [u["unit_code"] for u in report["units"]] == ["U1", "U2"]
