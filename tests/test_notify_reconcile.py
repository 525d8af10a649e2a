"""Fail-closed reconcile of posts a dead run left `sending` (SPEC §7, §13), and the 16 MiB answer cap (§14)."""

from __future__ import annotations

from minyi.sim.slack_api import SlackPost
from minyi.tasks.adapters.notify.engine import deliver
from minyi.tasks.config import load_config
from minyi.tasks.runtime import build_notifier
from minyi.tasks.store.outbox import Message, enqueue
from tests.notify_support import abandon, delivery_world
from tests.support import Env, at

AS_OF = at("2026-11-22 09:30")


def put(env: Env, *keys: str) -> None:
    with env.engine.begin() as conn:
        enqueue(conn, [Message(key=k, kind="test", channel="C0CENTER", body=f"message {k}") for k in keys], AS_OF)


def run(env: Env):  # type: ignore[no-untyped-def]
    return deliver(
        env.engine,
        build_notifier(load_config(), env.dir / "reports"),
        AS_OF,
        claim_timeout=60,
        alert_channel="C0CENTER",
    )


def statuses(env: Env) -> dict[str, str]:
    return dict(env.rows("SELECT key, status FROM notifications"))


def test_a_post_the_dead_run_did_send_is_found_and_marked_sent_not_posted_again(env: Env) -> None:
    with delivery_world(env, "slack") as world:
        put(env, "a")
        run(env)
        abandon(env, "a")
        summary = run(env)
        assert summary.sent == 0 and statuses(env) == {"a": "sent"}
        assert len(world.server.posts) == 1
        assert env.scalar("SELECT remote_id FROM notifications WHERE key = 'a'") == world.server.posts[0].ts


def test_a_post_the_dead_run_never_sent_is_posted_once(env: Env) -> None:
    with delivery_world(env, "slack") as world:
        put(env, "a")
        abandon(env, "a")
        assert run(env).sent == 1 and [p.text for p in world.server.posts] == ["message a"]


def test_a_claim_younger_than_its_expiry_is_left_to_its_holder(env: Env) -> None:
    with delivery_world(env, "slack") as world:
        put(env, "a")
        abandon(env, "a", minutes_ago=0)
        assert run(env).sent == 0 and statuses(env) == {"a": "sending"} and world.server.posts == []


def test_reconcile_without_channels_history_leaves_nothing_sending_counts_it_stuck_and_alerts(env: Env) -> None:
    with delivery_world(env, "slack") as world:
        put(env, "a")
        run(env)
        abandon(env, "a")
        world.server.state.history_error = "missing_scope"
        summary = run(env)
        assert summary.unconfirmed == 1 and summary.stuck == 1
        assert statuses(env) == {"a": "unconfirmed", "outbox-unconfirmed:2026-11-22": "sent"}
        texts = [p.text for p in world.server.posts]
        assert texts[0] == "message a" and len(texts) == 2 and "1 条消息" in texts[1]  # a is not posted again
        assert "missing_scope" in env.scalar("SELECT last_error FROM notifications WHERE key = 'a'")
        assert run(env).sent == 0 and len(world.server.posts) == 2  # and nothing on the next run either


def test_more_messages_since_the_claim_than_the_search_window_holds_is_unconfirmed_not_reposted(env: Env) -> None:
    with delivery_world(env, "slack") as world:
        put(env, "a")
        run(env)
        abandon(env, "a")
        state = world.server.state
        with state.lock:  # the channel got busy: 1,000 newer messages bury the post
            for _ in range(1000):
                state.posts.append(SlackPost(channel="C0CENTER", ts=state.next_ts(), text="chatter"))
        summary = run(env)
        assert summary.unconfirmed == 1 and statuses(env)["a"] == "unconfirmed"
        assert [p.text for p in world.server.posts].count("message a") == 1


def test_an_unconfirmed_post_can_be_resent_on_purpose(env: Env) -> None:
    from minyi.tasks.adapters.notify.engine import mark_for_resend, select_for_resend

    with delivery_world(env, "slack") as world:
        put(env, "a")
        run(env)
        abandon(env, "a")
        world.server.state.history_error = "missing_scope"
        run(env)
        with env.engine.begin() as conn:
            mark_for_resend(conn, select_for_resend(conn, ["a"]))
        assert run(env).sent == 1
        assert [p.text for p in world.server.posts].count("message a") == 2


def test_a_slack_answer_over_16_mib_fails_the_post_and_it_stays_pending(env: Env) -> None:
    with delivery_world(env, "slack") as world:
        put(env, "a")
        world.server.answer_huge_next()
        summary = run(env)
        assert summary.sent == 0 and statuses(env) == {"a": "pending"}
        assert "16 MiB" in env.scalar("SELECT last_error FROM notifications WHERE key = 'a'")
