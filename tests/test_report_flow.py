"""The report stage end to end (SPEC §7): files under reports/{date}/, summaries in the duty channels, no PII."""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from minyi.sim.slack_api import SlackApiServer
from tests.month import AS_OF, BUSINESS_DATE, A, B, D, build_month
from tests.support import Env, at, config_toml

TOKEN = "xoxb-report"
MOBILE = re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)")
FULL_NAMES = ("张三", "欧阳娜娜")


@pytest.fixture
def slack() -> Iterator[SlackApiServer]:
    with SlackApiServer(token=TOKEN) as srv:
        yield srv


def use_slack(env: Env, slack: SlackApiServer) -> None:
    env.monkeypatch.setenv("MINYI_TEST_SLACK_TOKEN", TOKEN)
    section = {"api_url": slack.api_url, "token_env": "MINYI_TEST_SLACK_TOKEN", "backoff_seconds": 0.01}
    # A and B (5 responses each) are ranked, C (0) and D (3) listed after them without a rank
    env.write_config(
        config_toml(sections={"notify": {"delivery": "slack"}, "slack": section, "assessment": {"min_responses": 5}})
    )


def run_report(as_of=AS_OF) -> object:
    from minyi.flows.report import report

    return report(business_date=BUSINESS_DATE, as_of=as_of)


def day_dir(env: Env) -> Path:
    return env.dir / "reports" / "2026-11-20"


@pytest.fixture
def reported(env: Env, slack: SlackApiServer, prefect_harness: None) -> object:
    build_month(env.engine)
    use_slack(env, slack)
    return run_report()


def test_the_report_writes_both_reports_their_csv_twins_and_a_chart(env: Env, reported: object) -> None:
    d = day_dir(env)
    assessment = json.loads((d / "assessment.json").read_text(encoding="utf-8"))
    assert [u["unit_code"] for u in assessment["units"]] == [B, A, "QD-CGS", D]
    rows = list(csv.DictReader((d / "assessment.csv").read_text(encoding="utf-8-sig").splitlines()))
    assert [r["unit_code"] for r in rows] == [B, A, "QD-CGS", D, "overall"]
    assert rows[-1]["records"] == "16" and rows[0]["satisfaction_rate"] == "0.8"
    ranks = [("true", "1"), ("true", "2"), ("false", ""), ("false", ""), ("", "")]  # the last: overall
    assert [(r["ranked"], r["rank"]) for r in rows] == ranks
    assert rows[-1]["satisfaction_rate"] == repr(8 / 13) and rows[-1]["reply_rate"] == repr(13 / 12)
    assert (d / "lineage.csv").exists()
    assert (d / "assessment.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rect_rows = list(csv.DictReader((d / "rectification.csv").read_text(encoding="utf-8-sig").splitlines()))
    assert len(rect_rows) == len(json.loads((d / "rectification.json").read_text(encoding="utf-8"))["orders"])


def test_rectification_lists_every_order_not_closed_before_the_month_with_its_clocks(
    env: Env, reported: object
) -> None:
    rect = json.loads((day_dir(env) / "rectification.json").read_text(encoding="utf-8"))
    by_unit_state = sorted((o["unit_code"], o["state"]) for o in rect["orders"])
    # A: the order of 31 October's record (both clocks ran out), o1 closed on the 10th, o2 still running;
    # B: completion overdue; D: two pending_calendar orders (one responded)
    assert by_unit_state == sorted(
        [
            (A, "closed"),
            (A, "open"),
            (A, "overdue"),
            (B, "overdue"),
            (D, "pending_calendar"),
            (D, "pending_calendar"),
        ]
    )
    (b_order,) = [o for o in rect["orders"] if o["unit_code"] == B]
    assert b_order["completion_due"] == "2026-11-18T00:00:00+08:00"
    assert b_order["responded_at"] == "2026-11-12T09:00:00+08:00"
    assert b_order["overdue_clocks"] == ["completion"] and b_order["escalations"] == ["completion_overdue"]
    assert b_order["citizen"] == "张*" and b_order["phone"] == "138****5678"
    pending = [o for o in rect["orders"] if o["state"] == "pending_calendar"]
    assert all(o["response_due"] is None and o["completion_due"] is None for o in pending)
    assert rect["summary"] == {
        "orders": 6,
        "overdue": 2,
        "due_today": 0,
        "pending_calendar": 2,
        "open": 1,
        "closed": 1,
        "returned": 0,
        "extensions_pending": 0,
        "backdated": {},
    }


def test_the_centre_gets_the_rectification_summary_with_overdue_orders_in_its_thread(
    slack: SlackApiServer, reported: object
) -> None:
    top = slack.posts_in("C0CENTER", top_level=True)
    (summary,) = [p for p in top if p.text.startswith("整改督办日报 2026-11-20")]
    assert summary.blocks and summary.blocks[0]["type"] == "header"
    replies = "\n".join(p.text for p in slack.replies_to(summary.ts))
    assert "police110:110-20261031-" in replies and "办结反馈超期" in replies


def test_the_centre_gets_the_assessment_summary_and_the_chart(slack: SlackApiServer, reported: object) -> None:
    top = slack.posts_in("C0CENTER", top_level=True)
    (summary,) = [p for p in top if p.text.startswith("民意110 考核") and not p.file_id]
    assert "1. 市北分局台东派出所（QD-SB-PS01） ✅ 满意率 80.0%（回复率 100.0%）" in summary.text
    assert "积分 77.50" in summary.text
    assert "· QD-XX-UNKNOWN（未配置单位） ❌" in summary.text and "不足排名门槛，不排名" in summary.text
    (chart,) = [p for p in top if p.file_id]
    assert chart.file_bytes[:8] == b"\x89PNG\r\n\x1a\n"


def test_units_with_overdue_orders_get_a_digest_in_their_own_duty_channel(
    slack: SlackApiServer, reported: object
) -> None:
    (b_digest,) = slack.posts_in("C0SBPS01")
    assert "超期或今日到期 1 件" in b_digest.text
    assert len(slack.posts_in("C0SNPS01")) == 1  # A's order of 31 October is overdue


def test_a_re_run_of_the_report_posts_nothing_new(env: Env, slack: SlackApiServer, reported: object) -> None:
    before = len(slack.posts)
    second = run_report(at("2026-11-21 10:30"))
    assert second.messages_enqueued == 0 and len(slack.posts) == before


def test_no_output_carries_an_unmasked_mobile_or_full_name(env: Env, slack: SlackApiServer, reported: object) -> None:
    texts = [p.text + json.dumps(p.blocks or [], ensure_ascii=False) for p in slack.posts]
    for path in (env.dir / "reports").rglob("*"):
        if path.is_file() and path.suffix != ".png":
            texts.append(path.read_text(encoding="utf-8"))
    assert texts
    for t in texts:
        assert not MOBILE.search(t), t
        assert not any(name in t for name in FULL_NAMES), t


def test_delivery_files_writes_the_summaries_as_markdown(env: Env, prefect_harness: None) -> None:
    build_month(env.engine)
    env.write_config(config_toml(sections={"notify": {"delivery": "files"}}))
    summary = run_report()
    assert summary.delivery.poster == "files" and summary.delivery.pending == 0
    centre = (env.dir / "reports" / "outbox" / "2026-11-21" / "C0CENTER.md").read_text(encoding="utf-8")
    assert "整改督办日报 2026-11-20" in centre and "assessment.png" in centre
    for path in (env.dir / "reports").rglob("*.md"):
        text = path.read_text(encoding="utf-8")
        assert not MOBILE.search(text) and not any(n in text for n in FULL_NAMES)


def test_the_monthly_assessment_covers_the_whole_previous_month_for_centre_and_leadership(
    env: Env, slack: SlackApiServer, prefect_harness: None
) -> None:
    from minyi.flows.report import monthly_assessment

    build_month(env.engine)
    use_slack(env, slack)
    summary = monthly_assessment(as_of=at("2026-12-01 08:00"))
    assessment = json.loads((env.dir / "reports" / "monthly" / "2026-11" / "assessment.json").read_text("utf-8"))
    assert assessment["period"] == {"start": "2026-11-01", "end": "2026-11-30"}
    assert summary.units == 4
    assert [p.text.splitlines()[:2] for p in slack.posts_in("C0LEADERS", top_level=True) if not p.file_id] == [
        ["民意110 月度考核 2026-11", "统计期 2026-11-01 至 2026-11-30，评估时点 2026-12-01T08:00:00+08:00"]
    ]
