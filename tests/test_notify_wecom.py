"""WeCom group robots (SPEC §13) over real HTTP, counted at a loopback robot that speaks their protocol."""

from __future__ import annotations

import pytest

from minyi.tasks.adapters.notify.engine import deliver
from minyi.tasks.config import load_config
from minyi.tasks.errors import ConfigError
from minyi.tasks.runtime import build_notifier
from minyi.tasks.store.outbox import Message, enqueue
from tests.notify_support import FakeClock, abandon, delivery_world
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


# ---------------------------------------------------------------------------------------------- WeCom


def test_wecom_each_post_is_a_markdown_message_in_its_group(env: Env) -> None:
    with delivery_world(env, "wecom") as world:
        put(env, msg("a", title="整改日报", body="**超期** 2 件"), msg("u", channel="C0SNPS01"))
        assert run(env).sent == 2
        (centre,) = world.server.received("c0center")
        assert (centre.msgtype, centre.content) == ("markdown", "**整改日报**\n**超期** 2 件")
        assert [m.content for m in world.server.received("c0snps01")] == ["message u"]
        assert status(env, "a") == "sent"


def test_wecom_a_post_over_4096_bytes_is_split_at_line_ends_in_order(env: Env) -> None:
    lines = [f"• 第 {i} 行 police110:110-20261121-{i:06d} 市南分局八大关派出所 响应超期" for i in range(200)]
    with delivery_world(env, "wecom") as world:
        put(env, msg("long", body="\n".join(lines)))
        assert run(env).sent == 1
        parts = world.server.received("c0center")
        assert len(parts) > 1 and all(len(p.content.encode()) <= 4096 for p in parts)
        assert "\n".join(p.content for p in parts).splitlines() == lines


def test_wecom_the_chart_is_an_image_message_with_its_md5_after_its_caption(env: Env) -> None:
    chart = env.dir / "reports" / "2026-11-21" / "assessment.png"
    chart.parent.mkdir(parents=True)
    chart.write_bytes(PNG)
    with delivery_world(env, "wecom") as world:
        put(env, msg("chart", body="考核图表", image=str(chart)))
        assert run(env).sent == 1
        caption, image = world.server.received("c0center")
        assert caption.content == "考核图表" and image.msgtype == "image" and image.image == PNG
        assert world.server.state.refused == []  # the robot checked base64, md5, size and type


def test_wecom_a_chart_over_2_mb_is_replaced_by_a_line_naming_the_report_file(env: Env) -> None:
    chart = env.dir / "reports" / "2026-11-21" / "assessment.png"
    chart.parent.mkdir(parents=True)
    chart.write_bytes(PNG + b"0" * (2 * 1024 * 1024))
    with delivery_world(env, "wecom") as world:
        put(env, msg("chart", body="考核图表", image=str(chart)))
        run(env)
        (only,) = world.server.received("c0center")
        assert only.msgtype == "markdown" and "2026-11-21/assessment.png" in only.content


def test_wecom_45009_keeps_the_post_pending_and_it_is_retried_after_a_back_off_in_the_same_run(env: Env) -> None:
    clock = FakeClock()
    with delivery_world(env, "wecom", clock) as world:
        put(env, msg("limited"))
        world.server.fail_next(45009, times=2)
        summary = run(env)
        assert summary.sent == 1 and summary.rate_limited == 2
        assert world.server.state.refused == [45009, 45009]
        assert [m.content for m in world.server.received("c0center")] == ["message limited"]
        assert clock.slept == [1.0, 2.0]  # base·2^(n−1)


def test_wecom_rate_limited_past_the_wait_budget_stays_pending_and_the_next_run_sends_it(env: Env) -> None:
    with delivery_world(env, "wecom") as world:
        put(env, msg("later"), msg("same-group"))
        world.server.fail_next(45009, times=3)
        first = run(env, max_wait=2.5)
        assert first.sent == 0 and first.pending == 2 and status(env, "later") == "pending"
        assert env.scalar("SELECT attempts FROM notifications WHERE key = 'later'") >= 1
        second = run(env)
        assert second.sent == 2
        assert [m.content for m in world.server.received("c0center")] == ["message later", "message same-group"]


def test_wecom_at_most_20_posts_a_minute_per_webhook(env: Env) -> None:
    clock = FakeClock()
    with delivery_world(env, "wecom", clock) as world:
        put(env, *[msg(f"m{i}") for i in range(45)], msg("unit", channel="C0SNPS01"))
        summary = run(env, max_wait=600)
        assert summary.sent == 46 and world.server.state.refused == []
        assert len(world.server.received("c0center")) == 45
        assert clock.now - 1000.0 >= 120  # 45 posts to one webhook span at least two full minutes


def test_wecom_a_wait_longer_than_the_budget_leaves_the_rest_for_the_next_run(env: Env) -> None:
    with delivery_world(env, "wecom") as world:
        put(env, *[msg(f"m{i}") for i in range(25)])
        summary = run(env, max_wait=10)
        assert summary.sent == 20 and summary.deferred == 5 and summary.pending == 5
        assert len(world.server.received("c0center")) == 20


def test_wecom_an_unset_webhook_variable_is_a_config_error_naming_it(env: Env) -> None:
    with delivery_world(env, "wecom"):
        env.monkeypatch.delenv("C0SBPS01")
        with pytest.raises(ConfigError, match=r"units\[1\]\.channel: environment variable C0SBPS01"):
            build_notifier(load_config(), env.dir / "reports")


def test_wecom_a_post_the_robot_refuses_stays_pending_with_the_errcode(env: Env) -> None:
    with delivery_world(env, "wecom") as world:
        put(env, msg("refused"), msg("fine"))
        world.server.fail_next(93000)
        summary = run(env)
        assert summary.sent == 1 and summary.failed == 1 and status(env, "refused") == "pending"
        assert "errcode 93000" in env.scalar("SELECT last_error FROM notifications WHERE key = 'refused'")


def test_wecom_down_keeps_every_post_pending_and_the_next_run_delivers_each_once(env: Env) -> None:
    with delivery_world(env, "wecom") as world:
        put(env, msg("a"), msg("b"))
        world.server.set_down()
        assert run(env).sent == 0
        world.server.set_down(False)
        assert run(env).sent == 2 and run(env).sent == 0
        assert [m.content for m in world.server.received("c0center")] == ["message a", "message b"]


def test_wecom_an_upstream_record_id_cannot_ping_the_group_or_forge_a_link(env: Env) -> None:
    with delivery_world(env, "wecom") as world:
        put(env, msg("x", body=UPSTREAM))
        assert run(env).sent == 1
        (seen,) = world.received("C0CENTER")
    assert "police110:＜!channel＞" in seen and "［点此］(http" in seen and not any(c in seen for c in "<>[]&")


def test_robots_cannot_look_a_post_up_so_an_abandoned_one_is_posted_again_once(env: Env) -> None:
    with delivery_world(env, "wecom") as world:
        put(env, msg("a"))
        run(env)
        abandon(env, "a")
        assert run(env).sent == 1 and run(env).sent == 0
        assert [m.content for m in world.server.received("c0center")] == ["message a", "message a"]


def test_wecom_an_answer_over_16_mib_fails_the_post_and_it_stays_pending(env: Env) -> None:
    with delivery_world(env, "wecom") as world:
        put(env, msg("a"))
        world.server.answer_huge_next()
        assert run(env).sent == 0 and status(env, "a") == "pending"
        assert "16 MiB" in env.scalar("SELECT last_error FROM notifications WHERE key = 'a'")
