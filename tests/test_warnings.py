"""SPEC §10: early warnings, each on both sides of its threshold, each posted once, listed in warnings.json."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date, timedelta

import pytest
from sqlalchemy import text
from sqlmodel import Session

from minyi.tasks.rules.masking import phone_hmac
from minyi.tasks.stages.warnings import declined, find_warnings, overdue_cluster, repeat_dissatisfied, unit_decline
from tests.month import AS_OF, BUSINESS_DATE, Builder, build_month
from tests.support import TZ, Env, config_toml

DAY = BUSINESS_DATE  # 2026-11-20
CALLER = "13900001111"


@pytest.fixture
def builder(env: Env) -> Iterator[Builder]:
    with Session(env.engine) as s:
        yield Builder(s)
        s.commit()


def answers(b: Builder, unit: str, day: date, ok: int, bad: int, phone: str | None = None) -> None:
    for _ in range(ok):
        b.followup(b.record(unit, day, phone=phone), satisfaction="satisfied")
    for _ in range(bad):
        b.followup(b.record(unit, day, phone=phone), satisfaction="dissatisfied")


def overdue_orders(b: Builder, unit: str, n: int) -> None:
    for i in range(n):
        fu = b.followup(b.record(unit, date(2026, 11, 2 + i), phone=None), satisfaction="dissatisfied")
        b.order(
            fu,
            f"2026-11-{3 + i:02d} 10:00",
            response_due=f"2026-11-{7 + i:02d} 00:00",
            completion_due="2026-11-30 00:00",
        )


def kinds(env: Env, day: date = DAY) -> list[dict]:
    with env.engine.connect() as conn:
        return find_warnings(conn, day, AS_OF, TZ)["warnings"]


# --- repeat_dissatisfied -------------------------------------------------------------------------------------------


def test_one_dissatisfied_answer_is_no_repeat(env: Env, builder: Builder) -> None:
    answers(builder, "U-1", date(2026, 11, 5), ok=3, bad=1, phone=CALLER)
    builder.session.commit()
    with env.engine.connect() as conn:
        assert repeat_dissatisfied(conn, DAY) == []


def test_two_dissatisfied_answers_in_30_days_warn_with_the_masked_phone_and_the_records_oldest_first(
    env: Env, builder: Builder
) -> None:
    builder.followup(builder.record("U-2", date(2026, 11, 19), phone=CALLER), satisfaction="dissatisfied")
    builder.followup(builder.record("U-1", date(2026, 10, 22), phone=CALLER), satisfaction="dissatisfied")  # day −29
    builder.session.commit()
    with env.engine.connect() as conn:
        (w,) = repeat_dissatisfied(conn, DAY)
    assert w["phone"] == "139****1111" and w["units"] == ["U-1", "U-2"]
    assert w["records"] == ["police110:110-20261022-0002", "police110:110-20261119-0001"]
    assert w["key"] == f"repeat:{phone_hmac(CALLER)}:2026-10-22"


def test_a_dissatisfied_answer_31_days_back_is_outside_the_window(env: Env, builder: Builder) -> None:
    builder.followup(builder.record("U-1", date(2026, 10, 21), phone=CALLER), satisfaction="dissatisfied")  # day −30
    builder.followup(builder.record("U-1", date(2026, 11, 19), phone=CALLER), satisfaction="dissatisfied")
    builder.session.commit()
    with env.engine.connect() as conn:
        assert repeat_dissatisfied(conn, DAY) == []


# --- unit_decline --------------------------------------------------------------------------------------------------


def test_a_decline_of_9_9_points_is_not_a_warning_and_10_0_is() -> None:
    assert not declined(801, 1000, 900, 1000)  # 90.0% -> 80.1%: 9.9 points
    assert declined(800, 1000, 900, 1000)  # 90.0% -> 80.0%: 10.0 points


def test_19_responses_in_a_window_are_too_few_and_20_enough() -> None:
    assert not declined(0, 19, 20, 20) and not declined(0, 20, 19, 19)
    assert declined(0, 20, 20, 20)


def test_a_unit_10_points_below_its_baseline_with_20_responses_each_is_warned(env: Env, builder: Builder) -> None:
    answers(builder, "U-1", date(2026, 10, 20), ok=18, bad=2)  # baseline (Oct 17 .. Nov 13): 90%
    answers(builder, "U-1", date(2026, 11, 18), ok=16, bad=4)  # recent (Nov 14 .. 20): 80%
    answers(builder, "U-2", date(2026, 10, 20), ok=18, bad=2)
    answers(builder, "U-2", date(2026, 11, 18), ok=17, bad=3)  # 85%: 5 points, no warning
    builder.session.commit()
    with env.engine.connect() as conn:
        (w,) = unit_decline(conn, DAY)
    assert w == {
        "kind": "unit_decline",
        "key": "decline:U-1:2026-11-20",
        "unit_code": "U-1",
        "recent_rate": 0.8,
        "baseline_rate": 0.9,
        "recent_responses": 20,
        "baseline_responses": 20,
    }


def test_a_recent_window_of_19_responses_is_not_judged(env: Env, builder: Builder) -> None:
    answers(builder, "U-1", date(2026, 10, 20), ok=20, bad=0)
    answers(builder, "U-1", date(2026, 11, 18), ok=0, bad=19)
    builder.session.commit()
    with env.engine.connect() as conn:
        assert unit_decline(conn, DAY) == []


def test_a_unit_is_warned_for_decline_at_most_once_in_any_7_consecutive_business_dates(
    env: Env, builder: Builder
) -> None:
    from minyi.flows.warnings import early_warnings

    env.write_config(config_toml())
    answers(builder, "U-1", date(2026, 10, 31), ok=20, bad=0)
    answers(builder, "U-1", date(2026, 11, 10), ok=0, bad=20)
    answers(builder, "U-1", date(2026, 11, 17), ok=0, bad=20)
    builder.session.commit()
    warned = {}
    for offset in range(8):  # Nov 10 .. Nov 17: a decline every day
        day = date(2026, 11, 10) + timedelta(days=offset)
        report, _, _ = early_warnings.fn(day, AS_OF)
        warned[day.day] = [w["key"] for w in report["warnings"] if w["kind"] == "unit_decline"]
    assert warned == {10: ["decline:U-1:2026-11-10"], **{d: [] for d in range(11, 17)}, 17: ["decline:U-1:2026-11-17"]}


# --- overdue_cluster -----------------------------------------------------------------------------------------------


def test_two_overdue_orders_are_no_cluster_and_three_are(env: Env, builder: Builder) -> None:
    overdue_orders(builder, "U-2", 2)
    overdue_orders(builder, "U-3", 3)
    builder.session.commit()
    with env.engine.connect() as conn:
        (w,) = overdue_cluster(conn, DAY, AS_OF)
    assert (w["unit_code"], w["key"], len(w["orders"])) == ("U-3", "cluster:U-3:2026-11-20", 3)


# --- the hand-counted month: each kind once, and not again on a re-run ---------------------------------------------


def test_the_month_warns_its_repeat_caller_declining_unit_and_overdue_cluster_once_each(env: Env) -> None:
    from minyi.flows.warnings import early_warnings

    env.write_config(config_toml())
    build_month(env.engine)  # 138****5678 answered dissatisfied on Oct 31, Nov 2, 9 and 16
    with Session(env.engine) as s:
        b = Builder(s)
        answers(b, "QD-LS-PS09", date(2026, 10, 20), ok=20, bad=0)
        answers(b, "QD-LS-PS09", date(2026, 11, 19), ok=15, bad=5)
        overdue_orders(b, "QD-CGS", 3)
        s.commit()
    report, posted, path = early_warnings.fn(DAY, AS_OF)
    assert [(w["kind"], w.get("unit_code")) for w in report["warnings"]] == [
        ("repeat_dissatisfied", None),
        ("unit_decline", "QD-LS-PS09"),
        ("overdue_cluster", "QD-CGS"),
    ]
    (repeat,) = [w for w in report["warnings"] if w["kind"] == "repeat_dissatisfied"]
    assert repeat["phone"] == "138****5678" and len(repeat["records"]) == 4
    assert posted == 3
    assert json.loads(open(path, encoding="utf-8").read())["warnings"] == report["warnings"]
    again, posted_again, _ = early_warnings.fn(DAY, AS_OF + timedelta(hours=2))
    assert posted_again == 0 and [w["key"] for w in again["warnings"]] == [w["key"] for w in report["warnings"]]
    with env.engine.connect() as conn:
        rows = conn.execute(text("SELECT kind, channel, text FROM notifications ORDER BY id")).all()
    assert [(k, c) for k, c, _ in rows] == [
        ("warning_repeat_dissatisfied", "C0CENTER"),
        ("warning_unit_decline", "C0CENTER"),
        ("warning_overdue_cluster", "C0CENTER"),
    ]
    assert "138****5678" in rows[0][2] and "13812345678" not in rows[0][2]
    assert "下降 25.0 个百分点" in rows[1][2] and "车辆管理所（QD-CGS） 现有 3 件督办单超期" in rows[2][2]
