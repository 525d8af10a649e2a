"""The fault suite's world: the synthetic city, the SMS gateway and Slack on loopback, `minyi` as a real process.

`World.run()` starts `minyi run` (or any command) as a subprocess talking to the
session's Prefect API; `World.kill_when(event)` SIGKILLs it the moment a loopback
server reports the chosen point. `World.check()` proves the invariants of the
issue: every source row stored exactly once, every eligible SMS accepted exactly
once at the gateway, every channel post delivered exactly once, reports agreeing
with the store.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from minyi.demo import citizens_reply, demo_config_text
from minyi.sim.city import SOURCES, CityConfig
from minyi.sim.slack_api import SlackApiServer
from minyi.sim.sms_gateway import SmsGateway
from minyi.sim.source_server import CityFeed, SourceServer
from minyi.tasks.rules.intake import Accepted, intake
from tests.support import TZ, Env

DAY = date(2026, 11, 23)  # a Monday
SLACK_TOKEN = "xoxb-faults"
LEASE_SECONDS = 3.0
# What `make faults` prints at the end (tests/conftest.py): each figure is summed from asserts inside the tests.
FIGURES: dict[str, Any] = {
    "kills_survived": Counter(),  # per backend
    "fault_kinds": set(),
    "bad_inputs": Counter(),  # per table
    "resent": 0,  # message_ids POSTed more than once, observed at the gateway
    "resend_bound": 0,  # message_ids in flight (posted, not yet stored as sent) at the kills
    "lost": 0,
    "duplicates": 0,
}
CLAIM_SECONDS = 3.0


def morning(day: date) -> datetime:
    return datetime.combine(day + timedelta(days=1), time(9, 5), TZ)


def config_text(source_url: str, sms_url: str, slack_url: str, **over: dict[str, Any]) -> str:
    text = demo_config_text(source_url, sms_url)
    ingest = {"page_size": 25, "backoff_seconds": 0.01, "max_backoff_seconds": 0.05, "timeout_seconds": 3}
    ingest.update(over.get("ingest", {}))
    # short lease and claims: a killed run's hold on its date and on its batches expires for real, in seconds
    sms = {
        "batch_size": 25,
        "backoff_seconds": 0.01,
        "max_backoff_seconds": 0.05,
        "timeout_seconds": 3,
        "claim_seconds": CLAIM_SECONDS,
    }
    sms.update(over.get("sms", {}))
    slack = {
        "api_url": slack_url,
        "token_env": "MINYI_FAULTS_SLACK_TOKEN",
        "max_retries": 2,
        "backoff_seconds": 0.01,
        "timeout_seconds": 3,
    }
    slack.update(over.get("slack", {}))

    def table(name: str, values: dict[str, Any]) -> str:
        return "\n".join([f"[{name}]"] + [f"{k} = {json.dumps(v)}" for k, v in values.items()]) + "\n"

    notify = {"delivery": "slack", "claim_timeout_seconds": 0}
    notify.update(over.get("notify", {}))
    demo_notify = '[notify]\ndelivery = "files"  # the demo posts to markdown files under reports/outbox/\n'
    text = text.replace(demo_notify, table("notify", notify) + "\n" + table("slack", slack))
    text = text.replace("[sms]\n", table("sms", sms), 1)
    guard = table("guard", {"lease_seconds": LEASE_SECONDS})
    return text.replace("[clock]\n", table("ingest", ingest) + "\n" + guard + "\n[clock]\n", 1)


@dataclass
class EditableFeed(CityFeed):
    """The city, with rows an upstream system edited after they were first served."""

    edits: dict[tuple[str, date, int], dict[str, Any]] = field(default_factory=dict)

    def rows(self, source: str, day: date, start: int, stop: int) -> list[Any]:
        out = super().rows(source, day, start, stop)
        return [{**r, **self.edits.get((source, day, start + i), {})} for i, r in enumerate(out)]


@dataclass
class World:
    env: Env
    records_per_day: int = 120
    feed: EditableFeed = field(init=False)
    source: SourceServer = field(init=False)
    gateway: SmsGateway = field(init=False)
    slack: SlackApiServer = field(init=False)
    api_url: str = ""

    def __post_init__(self) -> None:
        from prefect.settings import PREFECT_API_URL

        self.feed = EditableFeed(CityConfig(records_per_day=self.records_per_day, messy_share=0.05))
        self.source = SourceServer(self.feed).start()  # type: ignore[assignment]
        self.gateway = SmsGateway().start()  # type: ignore[assignment]
        self.slack = SlackApiServer(token=SLACK_TOKEN).start()  # type: ignore[assignment]
        self.api_url = PREFECT_API_URL.value() or ""
        self.configure()

    def configure(self, **over: dict[str, Any]) -> None:
        self.env.write_config(config_text(self.source.url, self.gateway.url, self.slack.api_url, **over))

    def stop(self) -> None:
        self.gateway.release.set()
        for server in (self.source, self.gateway, self.slack):
            server.stop()

    # --- processes ------------------------------------------------------------------------------------
    def cli_env(self) -> dict[str, str]:
        return {**self.env.cli_env(), "PREFECT_API_URL": self.api_url, "MINYI_FAULTS_SLACK_TOKEN": SLACK_TOKEN}

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        cmd = [sys.executable, "-m", "minyi.cli", *args]
        return subprocess.Popen(cmd, env=self.cli_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def run(self, *args: str, timeout: float = 240) -> str:
        proc = subprocess.run(
            [sys.executable, "-m", "minyi.cli", *args],
            env=self.cli_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert proc.returncode == 0, f"minyi {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
        return proc.stdout

    def daily(self, day: date) -> list[str]:
        return ["run", "--date", day.isoformat(), "--as-of", morning(day).isoformat()]

    def kill_when(self, proc: subprocess.Popen[bytes], point: threading.Event, timeout: float = 180) -> bool:
        """SIGKILL `proc` as soon as `point` is set; False when the run ended before reaching it."""
        while not point.wait(0.05):
            if proc.poll() is not None:
                return False
            timeout -= 0.05
            assert timeout > 0, "the run never reached the kill point"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
        return True

    def expire_lease(self, day: date) -> None:
        """Wait until the dead run's lease on the date and its send claims have expired (short in this config)."""
        import time as clock
        from datetime import UTC

        latest = [
            self.env.scalar("SELECT MAX(expires_at) FROM run_leases WHERE key = :k", k=f"daily-loop:{day.isoformat()}"),
            self.env.scalar("SELECT MAX(expires_at) FROM sms_claims"),
        ]
        for when in latest:
            if when is not None:
                until = datetime.fromisoformat(str(when)).replace(tzinfo=UTC)
                clock.sleep(max((until - datetime.now(UTC)).total_seconds(), 0) + 0.2)

    def answer_and_open_orders(self, day: date) -> None:
        """Citizens reply to the day's SMS; the noon sweep opens orders for the dissatisfied."""
        from minyi.tasks.runtime import load_runtime

        citizens_reply(load_runtime().engine, self.gateway, day, morning(day))
        self.run("sweep", "--as-of", (morning(day) + timedelta(hours=3)).isoformat())

    # --- invariants -----------------------------------------------------------------------------------
    def expected_records(self, day: date) -> set[tuple[str, str]]:
        out = set()
        for s in SOURCES:
            for row in self.feed.rows(s.name, day, 0, self.feed.count(s.name, day)):
                got = intake(row, day, TZ)
                if isinstance(got, Accepted):
                    out.add((s.name, got.record_id))
        return out

    def check(self, *days: date) -> dict[str, int]:
        env = self.env
        lost = dup = 0
        for day in days:
            expected = self.expected_records(day)
            stored = env.rows("SELECT source, record_id FROM records WHERE business_date = :d", d=day)
            lost += len(expected - set(stored))
            dup += len(stored) - len(set(stored))
            assert set(stored) == expected and len(stored) == len(expected), (day, len(stored), len(expected))
        eligible = {r[0] for r in env.rows("SELECT message_id FROM followups WHERE plan = 'sms'")}
        assert eligible and env.scalar("SELECT COUNT(*) FROM followups WHERE sms_status = 'queued'") == 0
        accepted = Counter(m for m, s in self.gateway.state.answers if s == "accepted")
        assert set(self.gateway.delivered) == eligible == set(accepted), "every eligible SMS reached the gateway"
        assert max(accepted.values()) == 1, "no SMS accepted twice"
        notes = env.rows("SELECT key, status, attachment, channel FROM notifications")
        assert notes and {s for _, s, _, _ in notes} == {"sent"}, Counter(s for _, s, _, _ in notes)
        posts = self.slack.posts
        keys = Counter((p.metadata or {}).get("event_payload", {}).get("key") for p in posts if not p.file_id)
        assert set(keys) == {k for k, _, a, _ in notes if not a} and max(keys.values()) == 1, keys.most_common(3)
        files = Counter((p.channel, p.title, p.text) for p in posts if p.file_id)
        assert sum(files.values()) == sum(1 for *_, a, _ in notes if a) and max(files.values(), default=1) == 1
        dup += sum(v - 1 for v in keys.values()) + sum(v - 1 for v in files.values())
        for day in days:
            report = json.loads((Path(env.dir) / "reports" / day.isoformat() / "assessment.json").read_text())
            month_records = env.scalar(
                "SELECT COUNT(*) FROM records WHERE business_date >= :a AND business_date <= :b",
                a=day.replace(day=1),
                b=day,
            )
            assert report["overall"]["records"] == month_records
        resent = self.gateway.posted_more_than_once()
        FIGURES["lost"] += lost
        FIGURES["duplicates"] += dup
        return {"lost": lost, "duplicates": dup, "sms": len(eligible), "posts": len(posts), "resent": len(resent)}

    def in_flight(self) -> set[str]:
        """message_ids the gateway was POSTed that the store does not (yet) have as sent or rejected."""
        settled = {
            r[0] for r in self.env.rows("SELECT message_id FROM followups WHERE sms_status IN ('sent', 'rejected')")
        }
        return set(self.gateway.state.posts) - settled
