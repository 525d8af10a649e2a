"""Loopback robots and configs for the notifier tests: one helper per delivery, the same channel names for all.

The channels of tests.support (C0CENTER, C0LEADERS, each unit's C0…) are also valid environment
variable names, so for the robots each channel's variable simply holds that group's webhook URL.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import text

from minyi.sim.slack_api import SlackApiServer
from tests.support import UNITS, Env, config_toml

CHANNELS = ["C0CENTER", "C0LEADERS", *[u["channel"] for u in UNITS]]
SLACK_TOKEN = "xoxb-notify-test"
DINGTALK_SECRET = "SECnotifytest0123456789"


@dataclass
class FakeClock:
    """Monotonic seconds that only move when someone sleeps: a minute of rate limit costs no time."""

    now: float = 1000.0
    slept: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def use_fake_clock(env: Env, clock: FakeClock) -> None:
    from minyi.tasks.adapters.notify import engine

    env.monkeypatch.setattr(engine, "_monotonic", clock)
    env.monkeypatch.setattr(engine, "_sleep", clock.sleep)


@dataclass
class Delivery:
    """One delivery's loopback server and how to count what each channel received."""

    name: str
    server: Any = None

    def received(self, channel: str) -> list[str]:
        """The texts each channel's members saw, in order (files: the posts in the channel files)."""
        if self.name == "slack":
            return [p.text for p in self.server.posts_in(channel)]
        if self.name == "wecom":
            return [m.content or "<image>" for m in self.server.received(channel.lower())]
        if self.name == "dingtalk":
            return [m.text for m in self.server.received(channel.lower())]
        raise AssertionError("files: read the channel files")

    def total(self) -> int:
        if self.name == "slack":
            return len(self.server.posts)
        return len(self.server.messages)


def notify_sections(delivery: str, extra: dict[str, dict[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
    sections: dict[str, dict[str, Any]] = {"notify": {"delivery": delivery, "backoff_seconds": 1.0}}
    if delivery == "slack":
        sections["slack"] = {"token_env": "MINYI_TEST_SLACK_TOKEN", "max_retries": 1, "backoff_seconds": 0.01}
    if delivery in ("wecom", "dingtalk"):
        sections[delivery] = {"center_channel": "C0CENTER", "leadership_channel": "C0LEADERS"}
    if delivery == "dingtalk":
        sections["dingtalk"]["secret_env"] = "MINYI_TEST_DINGTALK_SECRET"
    for k, v in (extra or {}).items():
        sections.setdefault(k, {}).update(v)
    return sections


@contextmanager
def delivery_world(env: Env, delivery: str, clock: FakeClock | None = None, **config: Any) -> Iterator[Delivery]:
    """Start the delivery's loopback server, point every channel at it and write the config."""
    clock = clock or FakeClock()
    use_fake_clock(env, clock)
    server: Any = None
    if delivery == "slack":
        server = SlackApiServer(token=SLACK_TOKEN)
        env.monkeypatch.setenv("MINYI_TEST_SLACK_TOKEN", SLACK_TOKEN)
    elif delivery == "wecom":
        from minyi.sim.wecom_robot import WecomRobotServer

        server = WecomRobotServer(clock=clock)
    elif delivery == "dingtalk":
        from minyi.sim.dingtalk_robot import DingtalkRobotServer

        server = DingtalkRobotServer(clock=clock)
        env.monkeypatch.setenv("MINYI_TEST_DINGTALK_SECRET", DINGTALK_SECRET)
    if server is not None:
        server.start()
    try:
        extra = config.pop("sections", {})
        sections = notify_sections(delivery, extra)
        if delivery == "slack":
            sections["slack"]["api_url"] = server.api_url
        for channel in CHANNELS:
            if delivery == "wecom":
                env.monkeypatch.setenv(channel, server.webhook(channel.lower()))
            elif delivery == "dingtalk":
                env.monkeypatch.setenv(channel, server.webhook(channel.lower(), DINGTALK_SECRET))
        env.write_config(config_toml(sections=sections, **config))
        yield Delivery(delivery, server)
    finally:
        if server is not None:
            server.stop()


def abandon(env: Env, key: str, minutes_ago: int = 10) -> None:
    """As if a run claimed `key` (and maybe posted it) and died before storing the outcome."""
    from minyi.tasks.rules.days import now as wall_clock
    from minyi.tasks.store.engine import instant_param

    with env.engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE notifications SET status = 'sending', remote_id = NULL, claimed_by = 'dead-run', "
                "claimed_at = :at WHERE key = :k"
            ),
            {"k": key, "at": instant_param(conn.dialect.name, wall_clock() - timedelta(minutes=minutes_ago))},
        )
