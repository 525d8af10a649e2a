"""The whole daily loop once per delivery (SPEC §13): slack, wecom, dingtalk and files deliver the same
summaries and escalations (on SQLite; Slack on PostgreSQL too, with the same posts), and a re-run posts
nothing (counted at the loopback servers)."""

from __future__ import annotations

import json
from collections import Counter
from datetime import date, datetime, time, timedelta
from typing import Any

import pytest

from minyi.demo import citizens_reply, demo_config_text
from minyi.sim.city import CityConfig, unit_rows
from minyi.sim.sms_gateway import SmsGateway
from minyi.sim.source_server import CityFeed, SourceServer
from tests.notify_support import DINGTALK_SECRET, FakeClock, notify_sections, use_fake_clock
from tests.support import TZ, Env, toml_value

DAY = date(2026, 11, 23)  # a Monday
SMS_TOKEN = "sms-e2e-token"
DEMO_NOTIFY = '[notify]\ndelivery = "files"  # the demo posts to markdown files under reports/outbox/\n'
# What each delivery posted: every later delivery, on either database, must match the first one.
SEEN: dict[str, Counter[tuple[str, str]]] = {}


def _config(source_url: str, sms_url: str, sections: dict[str, dict[str, Any]]) -> str:
    tables = "\n".join(
        f"[{name}]\n" + "\n".join(f"{k} = {toml_value(v)}" for k, v in values.items()) + "\n"
        for name, values in sections.items()
    )
    return demo_config_text(source_url, sms_url).replace(DEMO_NOTIFY, tables)


def _server(env: Env, delivery: str, clock: FakeClock) -> Any:
    from minyi.sim.dingtalk_robot import DingtalkRobotServer
    from minyi.sim.slack_api import SlackApiServer
    from minyi.sim.wecom_robot import WecomRobotServer

    channels = ["C0CENTER", "C0LEADERS", *[u["channel"] for u in unit_rows()]]
    if delivery == "slack":
        env.monkeypatch.setenv("MINYI_TEST_SLACK_TOKEN", "xoxb-e2e")
        return SlackApiServer(token="xoxb-e2e").start()
    if delivery == "wecom":
        server = WecomRobotServer(clock=clock).start()
        for c in channels:
            env.monkeypatch.setenv(c, server.webhook(c.lower()))
        return server
    if delivery == "dingtalk":
        server = DingtalkRobotServer(clock=clock).start()
        env.monkeypatch.setenv("MINYI_TEST_DINGTALK_SECRET", DINGTALK_SECRET)
        for c in channels:
            env.monkeypatch.setenv(c, server.webhook(c.lower(), DINGTALK_SECRET))
        return server
    return None


def _received(env: Env, delivery: str, server: Any) -> int:
    """How many messages reached the channels (files: posts written in the channel files)."""
    if delivery == "files":
        return sum(p.read_text("utf-8").count("**[") for p in (env.dir / "reports" / "outbox").rglob("*.md"))
    return len(server.posts) if delivery == "slack" else len(server.messages)


# Slack (the shipped default) on both databases in `make test`: the posts are the notifier's and the outbox's,
# so a run on each database proves the outbox there. WeCom and DingTalk run whole in `make faults`, and in
# `make test` against their robots in tests/test_notify_wecom.py and tests/test_notify_dingtalk.py; files (the
# demo's delivery, which tests/test_privacy_run.py and the demo tests also run whole) in `make faults` (suite
# time: the four runs of this one group took 261 s of a 655 s suite on a slow machine). Every run must match
# the first one of its process; one xdist group, so the comparison sees every run in one process.
@pytest.mark.xdist_group("notify-daily-loop")
@pytest.mark.parametrize(
    ("delivery", "store_url"),
    [
        ("slack", "sqlite"),
        *[pytest.param(d, "sqlite", marks=pytest.mark.faults) for d in ("wecom", "dingtalk", "files")],
        ("slack", "postgres"),
        *[pytest.param(d, "postgres", marks=pytest.mark.faults) for d in ("wecom", "dingtalk", "files")],
    ],
    indirect=["store_url"],
)
def test_the_daily_loop_delivers_the_same_posts_on_every_notifier_and_a_re_run_posts_nothing(
    env: Env, prefect_harness: None, delivery: str
) -> None:
    from minyi.flows.daily_loop import daily_loop
    from minyi.flows.sweep import sweep
    from minyi.tasks.runtime import load_runtime

    clock = FakeClock()
    use_fake_clock(env, clock)
    env.monkeypatch.setenv("MINYI_SMS_TOKEN", SMS_TOKEN)
    env.monkeypatch.setenv("MINYI_PII_KEY", "test-key")
    server = _server(env, delivery, clock)
    try:
        feed = CityFeed(CityConfig(records_per_day=120, messy_share=0.05))
        with SourceServer(feed) as source, SmsGateway(token=SMS_TOKEN) as gateway:
            sections = notify_sections(delivery, {"notify": {"max_wait_seconds": 3600}})
            if delivery == "slack":
                sections["slack"]["api_url"] = server.api_url
            env.write_config(_config(source.url, gateway.url, sections))
            rt = load_runtime()
            morning = datetime.combine(DAY + timedelta(days=1), time(9, 5), TZ)
            daily_loop(business_date=DAY, as_of=morning)
            assert citizens_reply(rt.engine, gateway, DAY, morning) > 0
            sweep(as_of=morning + timedelta(hours=3))  # answers in, orders opened
            later = datetime.combine(DAY + timedelta(days=7), time(9, 5), TZ)
            daily_loop(business_date=DAY + timedelta(days=6), as_of=later)  # overdue escalations, reports
            before = _received(env, delivery, server)
            rows = env.rows("SELECT kind, channel, status FROM notifications")
            again = daily_loop(business_date=DAY + timedelta(days=6), as_of=later)
            after = _received(env, delivery, server)
    finally:
        if server is not None:
            server.stop()
    assert Counter(s for _, _, s in rows) == {"sent": len(rows)}  # nothing pending, sending or unconfirmed
    kinds = Counter((k, c) for k, c, _ in rows)
    assert {"rectification_summary", "assessment_summary", "assessment_chart", "response_overdue"} <= {
        k for k, _ in kinds
    }
    assert after == before and again.report.messages_enqueued == 0  # a re-run posts nothing
    if delivery in ("slack", "files"):
        assert before == len(rows)
    else:
        assert before >= len(rows)  # a robot's chart is a caption and an image; long posts are split
    print(f"\n{delivery} on {env.engine.dialect.name}: {len(rows)} outbox rows, {before} messages received")
    first = SEEN.setdefault("first", kinds)
    assert kinds == first, json.dumps(sorted(set(kinds.items()) ^ set(first.items())), ensure_ascii=False)
