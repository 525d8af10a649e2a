"""A full demo-like run shows no citizen's number or name, and no token, anywhere a person can look (SPEC §7, PIPL).

The synthetic city is served on loopback; the daily loop runs, citizens reply,
sweeps fire reminders and overdue escalations, the next daily loop reports. Then
every log line (captured in-process and read back from the Prefect API), every
artifact (read back through the Prefect client), every report file, every Slack
post (or markdown outbox file) and the CLI's rendering is searched for the
numbers and names the city generated.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from pathlib import Path

import pytest

from minyi.demo import citizens_reply, demo_config_text
from minyi.sim.city import CityConfig
from minyi.sim.slack_api import SlackApiServer
from minyi.sim.sms_gateway import SmsGateway
from minyi.sim.source_server import CityFeed, SourceServer
from tests.support import TZ, Env

DAY = date(2026, 11, 23)  # a Monday: orders opened Tuesday are due (3 working days) at Saturday 00:00
SMS_TOKEN = "sms-secret-7f3a9c"
SLACK_TOKEN = "xoxb-slack-secret-51c2e8"
_MOBILE = re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)")


class _Capture(logging.Handler):
    """Every record as a handler receives it (after minyi's masking, like the console and Prefect's API)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def captured() -> Iterator[_Capture]:
    handler = _Capture()
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    loggers = [logging.getLogger(), logging.getLogger("prefect"), logging.getLogger("minyi")]
    for lg in loggers:
        lg.addHandler(handler)
    yield handler
    for lg in loggers:
        lg.removeHandler(handler)


def _config(source_url: str, sms_url: str, slack_url: str | None) -> str:
    text = demo_config_text(source_url, sms_url)
    if not slack_url:
        return text  # the demo's own: delivery = "files"
    slack = ['[notify]\ndelivery = "slack"\n', "[slack]", 'token_env = "MINYI_PRIVACY_SLACK_TOKEN"']
    slack += ["max_retries = 1", "backoff_seconds = 0.01", f'api_url = "{slack_url}"', ""]
    demo_notify = '[notify]\ndelivery = "files"  # the demo posts to markdown files under reports/outbox/\n'
    return text.replace(demo_notify, "\n".join(slack))


def _prefect_texts() -> list[str]:
    from prefect.client.orchestration import get_client
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()
    out: list[str] = []
    with get_client(sync_client=True) as client:
        offset = 0
        while page := client.read_logs(limit=200, offset=offset):
            out += [f"{log.name} {log.message}" for log in page]
            offset += len(page)
        offset = 0
        while page := client.read_artifacts(limit=200, offset=offset):
            out += [f"artifact {a.key} {a.description} {json.dumps(a.data, ensure_ascii=False)}" for a in page]
            offset += len(page)
    return out


def _files(root: Path) -> list[str]:
    out = []
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.suffix.lower() not in {".png", ".jpg", ".woff", ".woff2", ".ico"}:
            out.append(f"{path}: " + path.read_bytes().decode("utf-8", errors="replace"))
    return out


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("delivery", ["slack", "files"])
def test_a_full_run_shows_no_number_name_or_token_in_logs_artifacts_reports_or_posts(
    env: Env, prefect_harness: None, captured: _Capture, delivery: str
) -> None:
    from minyi.cli import render_summary, render_sweep
    from minyi.flows.daily_loop import daily_loop
    from minyi.flows.sweep import sweep
    from minyi.tasks.runtime import load_runtime

    env.monkeypatch.setenv("MINYI_SMS_TOKEN", SMS_TOKEN)
    env.monkeypatch.setenv("MINYI_PII_KEY", "test-key")
    if delivery == "slack":
        env.monkeypatch.setenv("MINYI_PRIVACY_SLACK_TOKEN", SLACK_TOKEN)
    else:
        env.monkeypatch.delenv("MINYI_PRIVACY_SLACK_TOKEN", raising=False)
    feed = CityFeed(CityConfig(records_per_day=240, messy_share=0.1))
    seen: list[str] = []
    with (
        SourceServer(feed) as source,
        SmsGateway(token=SMS_TOKEN) as gateway,
        SlackApiServer(token=SLACK_TOKEN) as slack,
    ):
        env.write_config(_config(source.url, gateway.url, slack.api_url if delivery == "slack" else None))
        rt = load_runtime()
        morning = datetime.combine(DAY + timedelta(days=1), time(9, 5), TZ)
        seen.append(render_summary(daily_loop(business_date=DAY, as_of=morning)))
        assert citizens_reply(rt.engine, gateway, DAY, morning) > 0
        seen.append(render_sweep(sweep(as_of=morning + timedelta(hours=3))))  # answers in, orders opened
        seen.append(render_sweep(sweep(as_of=datetime.combine(DAY + timedelta(days=4), time(10), TZ))))  # reminders
        later = datetime.combine(DAY + timedelta(days=7), time(9, 5), TZ)
        seen.append(render_summary(daily_loop(business_date=DAY + timedelta(days=6), as_of=later)))  # overdue
        fired = env.rows("SELECT level, COUNT(*) FROM escalations GROUP BY level")
        assert {level for level, _ in fired} >= {"response_reminder", "response_overdue"}, fired
        posts = slack.posts
    if delivery == "slack":
        assert len(posts) > 5
        seen += [f"post {p.channel} {p.text} {json.dumps(p.blocks, ensure_ascii=False)} {p.title}" for p in posts]
    else:
        assert not posts and list((env.dir / "reports" / "outbox").rglob("*.md"))
    seen += captured.lines + _prefect_texts() + _files(env.dir / "reports")

    numbers = {r[0] for r in env.rows("SELECT phone_norm FROM records WHERE phone_kind = 'mobile'")}
    names = {r[0] for r in env.rows("SELECT citizen_name FROM records WHERE citizen_name IS NOT NULL")}
    assert len(numbers) > 100 and len(names) > 50
    leaks_numbers = sorted({m for text in seen for m in _MOBILE.findall(text) if m in numbers})
    leaks_names = sorted({n for text in seen for n in names if len(n) >= 2 and n in text})
    leaks_tokens = [t for t in (SMS_TOKEN, SLACK_TOKEN) if any(t in text for text in seen)]
    assert (leaks_numbers, leaks_names, leaks_tokens) == ([], [], [])
    assert sum(len(t) for t in seen) > 100_000  # the search really covered something
