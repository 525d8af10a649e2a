"""The order lifecycle end to end (SPEC §5, §7, §9), on SQLite and PostgreSQL.

The synthetic city, the SMS gateway and Slack on loopback, `minyi` as a real process:
a day's loop sends the follow-ups; two citizens answer "3"; the sweep opens two orders;
through `minyi order` one order is returned, reassigned and closed as resolved, the
other appealed and the appeal upheld; the sweep sends the verification SMS, the
citizen answers "2", the next sweep reopens the order. Asserted: what the gateway
received, what the duty channels received, and what assessment.json says.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta

import pytest

from tests.faults_support import DAY, SLACK_TOKEN, World, morning
from tests.support import PG_IN_TEST, Env


@pytest.fixture
def world(env: Env, prefect_harness: None) -> Iterator[World]:
    env.monkeypatch.setenv("MINYI_FAULTS_SLACK_TOKEN", SLACK_TOKEN)
    w = World(env, records_per_day=40)
    yield w
    w.stop()


def order_cli(w: World, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "minyi.cli", "order", *args, "--by", "张警官"],
        env=w.cli_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


# On PostgreSQL, the production store, in `make test`; the SQLite run (a dozen processes, ~50 s) is part of
# `make faults`, the long suite. The lifecycle's SQL runs on both in tests/test_order_lifecycle.py.
@PG_IN_TEST
def test_the_lifecycle_through_the_cli_the_gateway_and_slack(world: World, env: Env) -> None:
    w, t0 = world, morning(DAY)  # Tue 24 Nov 09:05
    iso = lambda minutes: (t0 + timedelta(minutes=minutes)).isoformat()  # noqa: E731
    w.run(*w.daily(DAY))
    followups = [
        m
        for (m,) in env.rows(
            "SELECT f.message_id FROM followups f JOIN units u ON u.code = f.unit_code "
            "WHERE f.sms_status = 'sent' AND u.known = :t AND u.channel <> '' ORDER BY f.message_id",
            t=True,
        )
    ]
    assert len(followups) >= 2 and all(m in w.gateway.delivered for m in followups)
    first, second = followups[0], followups[1]
    w.gateway.reply_to(first, "3", t0 + timedelta(minutes=10))
    w.gateway.reply_to(second, "3", t0 + timedelta(minutes=10))
    w.run("sweep", "--as-of", iso(20))
    ref1, ref2 = first.removeprefix("minyi:"), second.removeprefix("minyi:")
    holder = env.scalar("SELECT unit_code FROM orders WHERE source || ':' || record_id = :r", r=ref1)
    other = env.scalar("SELECT code FROM units WHERE known = :t AND code <> :h ORDER BY code", t=True, h=holder)
    channels = dict(env.rows("SELECT code, channel FROM units"))

    steps = [
        (ref1, "--stage", "returned", "--note", "不属本所辖区", "--as-of", iso(25)),
        (ref1, "--stage", "returned", "--note", "again", "--as-of", iso(26)),  # refused: returned already
        (ref1, "--reassign", "QD-NO-SUCH", "--as-of", iso(27)),  # refused: not a configured unit
        (ref1, "--reassign", other, "--as-of", iso(30)),
        (ref1, "--stage", "feedback", "--resolved", "--as-of", iso(60)),
        (ref2, "--appeal", "--note", "恶意重复来电", "--as-of", iso(35)),
        (ref2, "--uphold-appeal", "--as-of", iso(40)),
    ]
    codes = [order_cli(w, *s) for s in steps]
    assert [c.returncode for c in codes] == [0, 2, 2, 0, 0, 0, 0], [c.stderr for c in codes]
    assert "not a configured unit" in codes[2].stderr.strip().splitlines()[-1]

    w.run("sweep", "--as-of", iso(65))  # sends the verification SMS and delivers the posts
    verify = f"{first}:verify:1"
    assert verify in w.gateway.delivered
    assert "回复1确认已解决，2未解决" in w.gateway.delivered[verify].text
    w.gateway.reply_to(verify, "2", t0 + timedelta(minutes=70))
    w.run("sweep", "--as-of", iso(75))
    status, period, responded = env.rows(
        "SELECT status, period, responded_at FROM orders WHERE source || ':' || record_id = :r", r=ref1
    )[0]
    assert (status, period, responded) == ("open", 3, None)  # reassigned (2), then reopened (3)

    posts = [(p.channel, p.text) for p in w.slack.state.posts]
    centre = "C0CENTER"

    def got(channel: str, words: str) -> bool:
        return any(c == channel and words in text and (ref1 in text or ref2 in text) for c, text in posts)

    assert got(centre, "退单")
    assert got(channels[holder], "改派") and got(channels[other], "改派")
    assert got(channels[other], "复核未解决") and got(centre, "复核未解决")
    assert got(centre, "申诉") and any("申诉成立" in text and ref2 in text for _, text in posts)

    w.run("report", "--date", DAY.isoformat(), "--as-of", iso(80))
    assessment = json.loads((env.dir / "reports" / DAY.isoformat() / "assessment.json").read_text(encoding="utf-8"))
    overall = assessment["overall"]
    assert (overall["excluded"], overall["returned"], overall["reassigned_in"], overall["reopened"]) == (1, 1, 1, 1)
    units = {u["unit_code"]: u for u in assessment["units"]}
    assert units[other]["reassigned_in"] == 1 and units[holder]["returned"] == 1
    assert overall["orders_opened"] == 1  # the upheld appeal's order is in no order metric
