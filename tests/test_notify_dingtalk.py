"""DingTalk group robots (SPEC §13) over real HTTP, counted at a loopback robot that speaks their protocol."""

from __future__ import annotations

import base64
import hashlib

import pytest

from minyi.tasks.adapters.notify.engine import deliver
from minyi.tasks.config import load_config
from minyi.tasks.errors import ConfigError
from minyi.tasks.runtime import build_notifier
from minyi.tasks.store.outbox import Message, enqueue
from tests.notify_support import FakeClock, delivery_world
from tests.support import Env, at

AS_OF = at("2026-11-22 09:30")
UPSTREAM = "督办超时 police110:<!channel> 与 [点此](http://evil.example) & 更多"
PNG = b"\x89PNG\r\n\x1a\n" + b"chart" * 100


def put(env: Env, *messages: Message) -> None:
    with env.engine.begin() as conn:
        enqueue(conn, list(messages), AS_OF)


def msg(key: str, channel: str = "C0CENTER", body: str = "", **kw: object) -> Message:
    return Message(key=key, kind="test", channel=channel, body=body or f"message {key}", **kw)  # type: ignore[arg-type]


def run(env: Env, **kw: object):  # type: ignore[no-untyped-def]
    notifier = build_notifier(load_config(), env.dir / "reports")
    return deliver(env.engine, notifier, AS_OF, backoff=(1.0, 30.0), **kw)  # type: ignore[arg-type]


def status(env: Env, key: str) -> str:
    return env.scalar("SELECT status FROM notifications WHERE key = :k", k=key)


# ---------------------------------------------------------------------------------------------- DingTalk


def test_dingtalk_posts_are_signed_markdown_with_a_title(env: Env) -> None:
    with delivery_world(env, "dingtalk") as world:
        put(env, msg("a", title="整改督办日报 2026-11-21", body="超期 2 件"))
        assert run(env).sent == 1
        (m,) = world.server.received("c0center")
        assert (m.msgtype, m.title, m.text) == (
            "markdown",
            "整改督办日报 2026-11-21",
            "**整改督办日报 2026-11-21**\n超期 2 件",
        )
        assert world.server.state.refused == []  # the robot verified timestamp and sign


def test_dingtalk_a_wrong_secret_is_refused_and_the_post_stays_pending(env: Env) -> None:
    with delivery_world(env, "dingtalk") as world:
        env.monkeypatch.setenv("MINYI_TEST_DINGTALK_SECRET", "SECwrong")
        put(env, msg("a"))
        summary = run(env)
        assert summary.sent == 0 and world.server.state.refused == [310000] and status(env, "a") == "pending"


def test_dingtalk_the_sign_is_hmac_sha256_of_timestamp_and_secret_url_encoded() -> None:
    import hmac
    import urllib.parse

    from minyi.tasks.adapters.notify.dingtalk import sign

    digest = hmac.new(b"SECx", b"1700000000000\nSECx", hashlib.sha256).digest()
    assert sign("SECx", 1700000000000) == urllib.parse.quote_plus(base64.b64encode(digest).decode())


def test_dingtalk_the_chart_is_omitted_with_a_line_naming_the_report_file(env: Env) -> None:
    chart = env.dir / "reports" / "2026-11-21" / "assessment.png"
    chart.parent.mkdir(parents=True)
    chart.write_bytes(PNG)
    with delivery_world(env, "dingtalk") as world:
        put(env, msg("chart", body="考核图表", image=str(chart)))
        run(env)
        (m,) = world.server.received("c0center")
        assert m.text.startswith("考核图表") and "图表见报告文件 2026-11-21/assessment.png" in m.text


def test_dingtalk_130101_is_retried_after_a_back_off_never_dropped(env: Env) -> None:
    with delivery_world(env, "dingtalk") as world:
        put(env, msg("a"))
        world.server.fail_next(130101)
        summary = run(env)
        assert summary.sent == 1 and world.server.state.refused == [130101]
        assert len(world.server.received("c0center")) == 1


def test_dingtalk_at_most_20_posts_a_minute_per_robot(env: Env) -> None:
    clock = FakeClock()
    with delivery_world(env, "dingtalk", clock) as world:
        put(env, *[msg(f"m{i}") for i in range(30)])
        assert run(env, max_wait=600).sent == 30
        assert world.server.state.refused == [] and clock.now - 1000.0 >= 60


def test_dingtalk_an_unset_secret_variable_is_a_config_error_naming_it(env: Env) -> None:
    with delivery_world(env, "dingtalk"):
        env.monkeypatch.delenv("MINYI_TEST_DINGTALK_SECRET")
        with pytest.raises(ConfigError, match="MINYI_TEST_DINGTALK_SECRET"):
            build_notifier(load_config(), env.dir / "reports")


def test_dingtalk_an_upstream_record_id_cannot_ping_the_group_or_forge_a_link(env: Env) -> None:
    with delivery_world(env, "dingtalk") as world:
        put(env, msg("x", body=UPSTREAM))
        assert run(env).sent == 1
        (seen,) = world.received("C0CENTER")
    assert "police110:＜!channel＞" in seen and "［点此］(http" in seen and not any(c in seen for c in "<>[]&")
