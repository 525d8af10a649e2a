"""Supervision orders and escalations against the store (SPEC §5–6), on SQLite and PostgreSQL.

Clock arithmetic itself is proved in test_clocks.py; here: one order per
dissatisfied record, the unit-report state machine and its refusals, the
escalation sweep over ten days of runs (the right day, the right channels,
once), concurrent sweeps, and the pending_calendar path.
"""

from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from minyi.tasks.config import load_config
from minyi.tasks.errors import InputError
from minyi.tasks.stages.escalation import run_escalations
from minyi.tasks.stages.orders import OrderRefused, UnknownOrder, apply_report
from tests.supervision_support import add_answer, prepare_units, supervise_at
from tests.support import TZ, Env, at, config_toml

UNKNOWN_UNIT = "QD-XX-PS99"


@pytest.fixture
def sup(env: Env) -> Env:
    env.write_config(config_toml(sections={"slack": {"center_channel": "C0CENTER", "leadership_channel": "C0LEADERS"}}))
    prepare_units(env.engine)
    return env


def order_row(env: Env, ref: str):
    source, record_id = ref.split(":", 1)
    rows = env.rows(
        "SELECT status, resolution, opened_at, responded_at, rectified_at, closed_at, response_due, completion_due "
        "FROM orders WHERE source = :s AND record_id = :r",
        s=source,
        r=record_id,
    )
    return rows[0] if rows else None


def report(env: Env, ref: str, stage: str, at_: datetime, resolved: bool | None = None, note: str | None = None):
    with env.engine.begin() as conn:
        return apply_report(conn, ref, stage, resolved, at_, note, at_, TZ)  # type: ignore[arg-type]


def instant(value: object) -> datetime:
    """A stored instant read with raw SQL, as an aware datetime (SQLite gives naive UTC strings)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def outbox(env: Env) -> list[tuple[str, str, str]]:
    return [tuple(r) for r in env.rows("SELECT channel, kind, key FROM notifications ORDER BY id")]


# --- opening orders ------------------------------------------------------------------------


def test_a_dissatisfied_answer_opens_one_order_at_the_answer_instant(sup: Env) -> None:
    ref = add_answer(sup.engine, at("2026-11-19 10:00"))
    supervise_at(sup.engine, at("2026-11-19 11:00"))
    supervise_at(sup.engine, at("2026-11-19 12:00"))
    assert sup.scalar("SELECT COUNT(*) FROM orders") == 1
    row = order_row(sup, ref)
    assert row.status == "open"
    assert instant(row.opened_at) == at("2026-11-19 10:00")
    assert instant(row.response_due) == at("2026-11-25 00:00")
    assert instant(row.completion_due) == at("2026-11-27 00:00")


def test_a_second_dissatisfied_answer_for_the_same_record_opens_no_second_order(sup: Env) -> None:
    ref = add_answer(sup.engine, at("2026-11-19 10:00"))
    add_answer(sup.engine, at("2026-11-20 10:00"), record_id=ref.split(":", 1)[1], via="visit")
    supervise_at(sup.engine, at("2026-11-21 09:00"))
    assert sup.scalar("SELECT COUNT(*) FROM orders") == 1
    assert instant(order_row(sup, ref).opened_at) == at("2026-11-19 10:00")


def test_a_later_better_answer_does_not_close_the_order(sup: Env) -> None:
    ref = add_answer(sup.engine, at("2026-11-19 10:00"))
    supervise_at(sup.engine, at("2026-11-19 11:00"))
    add_answer(sup.engine, at("2026-11-19 15:00"), value="satisfied", record_id=ref.split(":", 1)[1], via="visit")
    supervise_at(sup.engine, at("2026-11-19 16:00"))
    assert order_row(sup, ref).status == "open"


def test_satisfied_answers_and_answers_after_as_of_open_nothing(sup: Env) -> None:
    add_answer(sup.engine, at("2026-11-19 10:00"), value="satisfied")
    add_answer(sup.engine, at("2026-11-19 10:00"), value="basically_satisfied")
    add_answer(sup.engine, at("2026-11-20 10:00"))
    supervise_at(sup.engine, at("2026-11-19 12:00"))
    assert sup.scalar("SELECT COUNT(*) FROM orders") == 0


# --- unit reports ------------------------------------------------------------------------------


@pytest.fixture
def ref(sup: Env) -> str:
    ref = add_answer(sup.engine, at("2026-11-19 10:00"))
    supervise_at(sup.engine, at("2026-11-19 11:00"))
    return ref


def test_reports_advance_the_order_to_closed_resolved(sup: Env, ref: str) -> None:
    report(sup, ref, "responded", at("2026-11-20 09:00"))
    report(sup, ref, "rectified", at("2026-11-23 09:00"))
    report(sup, ref, "feedback", at("2026-11-24 09:00"), resolved=True)
    row = order_row(sup, ref)
    assert (row.status, row.resolution) == ("closed", "resolved")
    assert instant(row.closed_at) == at("2026-11-24 09:00")
    assert sup.scalar("SELECT COUNT(*) FROM order_events") == 3


def test_feedback_alone_fills_responded_and_rectified_with_its_own_time(sup: Env, ref: str) -> None:
    report(sup, ref, "feedback", at("2026-11-21 09:00"), resolved=False)
    row = order_row(sup, ref)
    assert (row.status, row.resolution) == ("closed", "unresolved")
    assert {instant(row.responded_at), instant(row.rectified_at), instant(row.closed_at)} == {at("2026-11-21 09:00")}


def test_rectified_keeps_an_earlier_response_time(sup: Env, ref: str) -> None:
    report(sup, ref, "responded", at("2026-11-20 09:00"))
    report(sup, ref, "rectified", at("2026-11-23 09:00"))
    row = order_row(sup, ref)
    assert instant(row.responded_at) == at("2026-11-20 09:00")
    assert instant(row.rectified_at) == at("2026-11-23 09:00")


def test_the_same_report_again_changes_nothing_and_is_not_an_error(sup: Env, ref: str) -> None:
    report(sup, ref, "responded", at("2026-11-20 09:00"))
    outcome = report(sup, ref, "responded", at("2026-11-20 09:00"))
    assert not outcome.changed
    assert sup.scalar("SELECT COUNT(*) FROM order_events") == 1


def _snapshot(env: Env) -> tuple:
    return (
        env.rows("SELECT * FROM orders ORDER BY id"),
        env.rows("SELECT * FROM order_events ORDER BY id"),
        env.scalar("SELECT COUNT(*) FROM notifications"),
    )


def test_a_report_for_an_unknown_order_is_refused_and_changes_nothing(sup: Env, ref: str) -> None:
    before = _snapshot(sup)
    with pytest.raises(UnknownOrder, match="no supervision order for police110:nope"):
        report(sup, "police110:nope", "responded", at("2026-11-20 09:00"))
    assert _snapshot(sup) == before


@pytest.mark.parametrize(
    ("first", "then", "problem"),
    [
        (("rectified", None), ("responded", None), "already rectified"),
        (("feedback", True), ("rectified", None), "already closed"),
        (("feedback", True), ("feedback", False), "already closed"),
        (("responded", None), ("responded", None), "already responded"),  # same stage, another time
    ],
)
def test_an_out_of_order_report_is_refused_and_changes_nothing(sup: Env, ref: str, first, then, problem) -> None:
    report(sup, ref, first[0], at("2026-11-20 09:00"), resolved=first[1])
    before = _snapshot(sup)
    with pytest.raises(OrderRefused, match=problem) as err:
        report(sup, ref, then[0], at("2026-11-21 09:00"), resolved=then[1])
    assert "\n" not in str(err.value)
    assert _snapshot(sup) == before


def test_a_report_dated_before_the_order_was_opened_is_refused(sup: Env, ref: str) -> None:
    before = _snapshot(sup)
    with pytest.raises(OrderRefused, match="before the order was opened"):
        report(sup, ref, "responded", at("2026-11-19 09:00"))
    assert _snapshot(sup) == before


def test_a_stage_dated_before_the_previous_stage_is_refused(sup: Env, ref: str) -> None:
    report(sup, ref, "responded", at("2026-11-21 09:00"))
    before = _snapshot(sup)
    with pytest.raises(OrderRefused, match="before its 'responded'"):
        report(sup, ref, "rectified", at("2026-11-20 09:00"))
    assert _snapshot(sup) == before


def test_feedback_needs_resolved_and_other_stages_refuse_it(sup: Env, ref: str) -> None:
    before = _snapshot(sup)
    with pytest.raises(InputError, match="needs --resolved or --unresolved"):
        report(sup, ref, "feedback", at("2026-11-20 09:00"))
    with pytest.raises(InputError, match="only with --stage feedback"):
        report(sup, ref, "responded", at("2026-11-20 09:00"), resolved=True)
    assert _snapshot(sup) == before


# --- escalations: ten days of daily runs ---------------------------------------------------------
#
# Working mode, 3 and 5 days. Opened Thu 2026-11-19: response last day Tue 11-24
# (due 11-25 00:00), completion last day Thu 11-26 (due 11-27 00:00). Opened
# Fri 11-20: response last day Wed 11-25 (due 11-26), completion Fri 11-27 (due 11-28).


def _ten_days(sup: Env) -> dict[str, str]:
    refs = {
        "silent": add_answer(sup.engine, at("2026-11-19 10:00"), unit_code="QD-SN-PS01"),
        "responds": add_answer(sup.engine, at("2026-11-19 10:00"), unit_code="QD-SB-PS01"),
        "unknown_unit": add_answer(sup.engine, at("2026-11-20 15:00"), unit_code=UNKNOWN_UNIT),
        "closes": add_answer(sup.engine, at("2026-11-19 10:00"), unit_code="QD-CGS"),
    }
    return refs


EXPECTED_BY_DAY: dict[str, set[tuple[str, str, str]]] = {
    # (order, level, channel)
    "2026-11-24": {("silent", "response_reminder", "C0SNPS01")},
    "2026-11-25": {
        ("silent", "response_overdue", "C0SNPS01"),
        ("silent", "response_overdue", "C0CENTER"),
        ("unknown_unit", "response_reminder", "C0CENTER"),
    },
    "2026-11-26": {("unknown_unit", "response_overdue", "C0CENTER")},
    "2026-11-27": {
        ("silent", "completion_overdue", "C0CENTER"),
        ("silent", "completion_overdue", "C0LEADERS"),
        ("responds", "completion_overdue", "C0CENTER"),
        ("responds", "completion_overdue", "C0LEADERS"),
    },
    "2026-11-28": {
        ("unknown_unit", "completion_overdue", "C0CENTER"),
        ("unknown_unit", "completion_overdue", "C0LEADERS"),
    },
}


def test_over_ten_days_each_escalation_fires_once_on_its_day_to_its_channels(sup: Env) -> None:
    refs = _ten_days(sup)
    seen: list[tuple[str, str, str]] = []
    for offset in range(10):
        day = at("2026-11-19 09:00") + timedelta(days=offset)
        if day.date().isoformat() == "2026-11-23":
            report(sup, refs["responds"], "responded", at("2026-11-23 08:00"))
            report(sup, refs["closes"], "feedback", at("2026-11-23 08:30"), resolved=True)
        supervise_at(sup.engine, day)
        ids = {
            str(order_id): name
            for name, ref in refs.items()
            for (order_id,) in sup.rows("SELECT id FROM orders WHERE record_id = :r", r=ref.split(":", 1)[1])
        }
        new = outbox(sup)[len(seen) :]
        seen += new
        fired = {(ids[key.split(":")[1]], kind, channel) for channel, kind, key in new}
        assert fired == EXPECTED_BY_DAY.get(day.date().isoformat(), set()), day
        assert all(key == f"escalation:{key.split(':')[1]}:{kind}:{channel}" for channel, kind, key in new)
        # re-running the same day, and a later run the same day, fire nothing new
        supervise_at(sup.engine, day)
        supervise_at(sup.engine, day + timedelta(hours=12))
        assert outbox(sup) == seen, day
    assert sup.scalar("SELECT COUNT(*) FROM escalations") == 7
    levels = Counter(r[0] for r in sup.rows("SELECT level FROM escalations"))
    assert levels == {"response_reminder": 2, "response_overdue": 2, "completion_overdue": 3}


def test_response_overdue_fires_at_the_due_instant_not_a_minute_before(sup: Env) -> None:
    add_answer(sup.engine, at("2026-11-19 10:00"))
    supervise_at(sup.engine, at("2026-11-24 23:59"))
    assert [k for _, k, _ in outbox(sup)] == ["response_reminder"]
    supervise_at(sup.engine, at("2026-11-25 00:00"))
    assert sorted(k for _, k, _ in outbox(sup)) == ["response_overdue", "response_overdue", "response_reminder"]


def test_a_run_that_first_sees_an_order_after_its_last_day_fires_overdue_without_a_reminder(sup: Env) -> None:
    add_answer(sup.engine, at("2026-11-19 10:00"))
    supervise_at(sup.engine, at("2026-11-27 09:00"))
    assert Counter(k for _, k, _ in outbox(sup)) == {"response_overdue": 2, "completion_overdue": 2}


def test_an_escalation_post_names_the_record_the_unit_the_clock_and_its_due_instant(sup: Env) -> None:
    ref = add_answer(sup.engine, at("2026-11-19 10:00"))
    supervise_at(sup.engine, at("2026-11-25 09:00"))
    texts = [r[0] for r in sup.rows("SELECT text FROM notifications WHERE kind = 'response_overdue'")]
    assert len(texts) == 2
    for body in texts:
        assert ref in body
        assert "市南分局八大关派出所" in body and "QD-SN-PS01" in body
        assert "3个工作日" in body and "response clock" in body
        assert "2026-11-25T00:00+08:00" in body


def test_concurrent_sweeps_at_the_same_instant_fire_each_escalation_once(sup: Env) -> None:
    for i in range(60):
        add_answer(sup.engine, at("2026-11-19 10:00"), unit_code=("QD-SN-PS01", UNKNOWN_UNIT)[i % 2])
    supervise_at(sup.engine, at("2026-11-19 11:00"))  # open orders and compute dues
    cfg = load_config()
    as_of = at("2026-11-30 09:00")
    barrier = threading.Barrier(4)
    results: list[dict[str, int]] = []
    errors: list[BaseException] = []

    def sweep() -> None:
        try:
            barrier.wait()
            with sup.engine.begin() as conn:
                results.append(run_escalations(conn, cfg, as_of))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=sweep) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sum(r["response_overdue"] for r in results) == 60
    assert sum(r["completion_overdue"] for r in results) == 60
    assert sup.scalar("SELECT COUNT(*) FROM escalations") == 120
    # known unit: unit + centre, centre + leadership; unknown unit: centre, centre + leadership
    assert sup.scalar("SELECT COUNT(*) FROM notifications") == 30 * 4 + 30 * 3


# --- calendar data ------------------------------------------------------------------------------


def test_an_order_past_the_calendar_data_is_pending_escalates_nothing_and_warns_every_run(sup: Env) -> None:
    ref = add_answer(sup.engine, at("2026-12-29 10:00"))
    for as_of in (at("2027-01-20 09:00"), at("2027-01-20 10:00"), at("2027-01-21 09:00")):
        supervise_at(sup.engine, as_of)
        supervise_at(sup.engine, as_of)  # a re-run of the same instant adds nothing
    row = order_row(sup, ref)
    assert row.response_due is None and row.completion_due is None
    assert sup.scalar("SELECT COUNT(*) FROM escalations") == 0
    kinds = Counter(k for _, k, _ in outbox(sup))
    assert kinds["calendar_pending"] == 3
    assert {c for c, k, _ in outbox(sup) if k == "calendar_pending"} == {"C0CENTER"}


def test_supplying_the_calendar_file_computes_pending_dues_and_lets_them_escalate(sup: Env) -> None:
    ref = add_answer(sup.engine, at("2026-12-29 10:00"))
    supervise_at(sup.engine, at("2027-01-20 09:00"))
    calendar = sup.dir / "holidays.csv"
    calendar.write_text("date,kind,name\n2027-01-01,holiday,元旦\n", encoding="utf-8")
    sup.write_config(
        config_toml(sections={"clock": {"calendar_file": str(calendar)}, "slack": {"center_channel": "C0CENTER"}})
    )
    supervise_at(sup.engine, at("2027-01-21 09:00"))
    row = order_row(sup, ref)
    # 12-30, 12-31, (01-01 holiday, weekend) 01-04 → due 01-05; completion 01-05, 01-06 → due 01-07
    assert instant(row.response_due) == at("2027-01-05 00:00")
    assert instant(row.completion_due) == at("2027-01-07 00:00")
    kinds = Counter(k for _, k, _ in outbox(sup))
    assert kinds["response_overdue"] == 2 and kinds["completion_overdue"] == 2
    assert kinds["calendar_pending"] == 1  # only the run before the data arrived


def test_the_centre_is_warned_daily_from_thirty_days_before_the_calendar_data_runs_out(sup: Env) -> None:
    supervise_at(sup.engine, at("2026-12-01 09:00"))
    assert outbox(sup) == []
    supervise_at(sup.engine, at("2026-12-02 09:00"))
    supervise_at(sup.engine, at("2026-12-02 15:00"))
    supervise_at(sup.engine, at("2026-12-03 09:00"))
    assert outbox(sup) == [
        ("C0CENTER", "calendar_running_out", "calendar-running-out:2026-12-02"),
        ("C0CENTER", "calendar_running_out", "calendar-running-out:2026-12-03"),
    ]
