"""Delivery of the outbox to Slack over real HTTP (SPEC §7): slack-sdk talks to a loopback Slack Web API."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from minyi.sim.slack_api import SlackApiServer
from minyi.tasks.adapters.notify.engine import deliver
from minyi.tasks.adapters.notify.files import FileNotifier
from minyi.tasks.adapters.notify.slack import SlackNotifier
from minyi.tasks.config import load_config
from minyi.tasks.runtime import build_notifier
from minyi.tasks.store.outbox import Message, enqueue
from tests.support import Env, at, config_toml

TOKEN = "xoxb-test-token"
AS_OF = at("2026-11-22 09:30")


@pytest.fixture
def slack() -> Iterator[SlackApiServer]:
    with SlackApiServer(token=TOKEN) as srv:
        yield srv


def slack_config(env: Env, slack: SlackApiServer, **extra: object) -> SlackNotifier:
    env.monkeypatch.setenv("MINYI_TEST_SLACK_TOKEN", TOKEN)
    section = {
        "api_url": slack.api_url,
        "token_env": "MINYI_TEST_SLACK_TOKEN",
        "max_retries": 2,
        "backoff_seconds": 0.01,
        "timeout_seconds": 2,
        **extra,
    }
    env.write_config(config_toml(sections={"notify": {"delivery": "slack"}, "slack": section}))
    poster = build_notifier(load_config(), env.dir / "reports")
    assert isinstance(poster, SlackNotifier)
    return poster


def put(env: Env, *messages: Message) -> None:
    with env.engine.begin() as conn:
        enqueue(conn, list(messages), AS_OF)


def msg(key: str, channel: str = "C0CENTER", parent: str | None = None, text: str = "") -> Message:
    return Message(key=key, kind="test", channel=channel, body=text or f"message {key}", parent=parent)


def test_each_message_lands_in_the_channel_it_was_routed_to(env: Env, slack: SlackApiServer) -> None:
    poster = slack_config(env, slack)
    put(
        env,
        msg("centre", "C0CENTER"),
        msg("unit", "C0SNPS01"),
        msg("leaders", "C0LEADERS"),
    )
    summary = deliver(env.engine, poster, AS_OF)
    assert summary.sent == 3
    assert [p.text for p in slack.posts_in("C0CENTER")] == ["message centre"]
    assert [p.text for p in slack.posts_in("C0SNPS01")] == ["message unit"]
    assert [p.text for p in slack.posts_in("C0LEADERS")] == ["message leaders"]


def test_the_slack_ts_is_stored_and_the_row_marked_sent(env: Env, slack: SlackApiServer) -> None:
    poster = slack_config(env, slack)
    put(env, msg("one"))
    deliver(env.engine, poster, AS_OF)
    status, ts = env.rows("SELECT status, remote_id FROM notifications WHERE key = 'one'")[0]
    assert (status, ts) == ("sent", slack.posts[0].ts)


def test_block_kit_is_rendered_from_the_neutral_message_with_the_plain_text_fallback(
    env: Env, slack: SlackApiServer
) -> None:
    poster = slack_config(env, slack)
    put(env, Message(key="b", kind="test", channel="C0CENTER", title="整改日报", body="**整改** 3 件"))
    deliver(env.engine, poster, AS_OF)
    (post,) = slack.posts
    assert post.blocks == [
        {"type": "header", "text": {"type": "plain_text", "text": "整改日报", "emoji": True}},
        {"type": "section", "text": {"type": "mrkdwn", "text": "*整改* 3 件"}},
    ]
    assert post.text == "整改日报\n*整改* 3 件"


def test_replies_are_posted_in_the_thread_of_their_parent(env: Env, slack: SlackApiServer) -> None:
    poster = slack_config(env, slack)
    put(env, msg("parent"), msg("parent:1", parent="parent"), msg("parent:2", parent="parent"))
    deliver(env.engine, poster, AS_OF)
    (parent,) = slack.posts_in("C0CENTER", top_level=True)
    assert [p.text for p in slack.replies_to(parent.ts)] == ["message parent:1", "message parent:2"]


def test_a_reply_whose_parent_was_sent_by_an_earlier_run_uses_the_stored_ts(env: Env, slack: SlackApiServer) -> None:
    poster = slack_config(env, slack)
    put(env, msg("parent"))
    deliver(env.engine, poster, AS_OF)
    put(env, msg("parent:late", parent="parent"))
    deliver(env.engine, poster, AS_OF)
    parent = slack.posts[0]
    assert [p.text for p in slack.replies_to(parent.ts)] == ["message parent:late"]


def test_a_rate_limited_post_is_retried_after_retry_after_and_sent_once(env: Env, slack: SlackApiServer) -> None:
    poster = slack_config(env, slack)
    put(env, msg("limited"))
    slack.fail_next(429, retry_after=0)
    summary = deliver(env.engine, poster, AS_OF)
    assert summary.sent == 1
    assert [p.text for p in slack.posts] == ["message limited"]
    assert slack.state.calls.count("/api/chat.postMessage") == 2


def test_a_server_error_is_retried_within_the_run(env: Env, slack: SlackApiServer) -> None:
    poster = slack_config(env, slack)
    put(env, msg("flaky"))
    slack.fail_next(500)
    assert deliver(env.engine, poster, AS_OF).sent == 1
    assert len(slack.posts) == 1


def test_slack_down_during_the_run_leaves_posts_pending_and_the_next_run_delivers_them(
    env: Env, slack: SlackApiServer
) -> None:
    poster = slack_config(env, slack)
    put(env, msg("a"), msg("b"), msg("a:1", parent="a"))
    slack.set_down()
    first = deliver(env.engine, poster, AS_OF)
    assert first.sent == 0 and first.pending == 3
    status, attempts, error = env.rows("SELECT status, attempts, last_error FROM notifications WHERE key = 'a'")[0]
    assert status == "pending" and attempts == 1 and error
    slack.set_down(False)
    second = deliver(env.engine, poster, at("2026-11-22 10:15"))
    assert second.sent == 3 and second.pending == 0
    assert [p.text for p in slack.posts_in("C0CENTER", top_level=True)] == ["message a", "message b"]
    assert [p.text for p in slack.replies_to(slack.posts[0].ts)] == ["message a:1"]


def test_a_re_run_posts_nothing_new(env: Env, slack: SlackApiServer) -> None:
    poster = slack_config(env, slack)
    put(env, msg("once"), msg("once:1", parent="once"))
    deliver(env.engine, poster, AS_OF)
    put(env, msg("once"), msg("once:1", parent="once"))  # the same stage enqueues again on a re-run
    summary = deliver(env.engine, poster, AS_OF)
    assert summary.sent == 0
    assert len(slack.posts) == 2


def test_an_uploaded_chart_is_shared_in_the_channel_via_files_upload_v2(env: Env, slack: SlackApiServer) -> None:
    poster = slack_config(env, slack)
    chart = env.dir / "chart.png"
    chart.write_bytes(b"\x89PNG\r\n\x1a\nfake")
    put(env, Message(key="chart", kind="chart", channel="C0CENTER", body="图表", image=str(chart)))
    deliver(env.engine, poster, AS_OF)
    (post,) = slack.posts
    assert post.file_bytes == chart.read_bytes() and post.text == "图表"
    assert "/api/files.getUploadURLExternal" in slack.state.calls
    assert env.scalar("SELECT remote_id FROM notifications WHERE key = 'chart'") == post.file_id


def test_a_rejected_post_stays_pending_but_does_not_stop_the_others(env: Env, slack: SlackApiServer) -> None:
    poster = slack_config(env, slack)
    put(env, msg("bad", channel=""), msg("good"))
    summary = deliver(env.engine, poster, AS_OF)
    assert summary.sent == 1 and summary.failed == 1
    assert env.scalar("SELECT last_error FROM notifications WHERE key = 'bad'") == "slack 200: channel_not_found"


def test_phone_numbers_never_reach_slack_unmasked(env: Env, slack: SlackApiServer) -> None:
    poster = slack_config(env, slack)
    put(env, msg("pii", text="市民 13812345678 不满意"))
    deliver(env.engine, poster, AS_OF)
    assert slack.posts[0].text == "市民 138****5678 不满意"


def test_delivery_files_writes_markdown_per_channel_and_day(env: Env) -> None:
    env.write_config(config_toml(sections={"notify": {"delivery": "files"}}))
    poster = build_notifier(load_config(), env.dir / "reports")
    assert isinstance(poster, FileNotifier)
    put(env, msg("p", text="父消息"), msg("p:1", parent="p", text="回复一"), msg("u", channel="C0SNPS01"))
    assert deliver(env.engine, poster, AS_OF).sent == 3
    centre = (env.dir / "reports" / "outbox" / "2026-11-22" / "C0CENTER.md").read_text(encoding="utf-8")
    assert "父消息" in centre and "> 回复一" in centre
    assert (env.dir / "reports" / "outbox" / "2026-11-22" / "C0SNPS01.md").is_file()
    deliver(env.engine, poster, AS_OF)  # a re-run rewrites nothing twice
    again = (env.dir / "reports" / "outbox" / "2026-11-22" / "C0CENTER.md").read_text(encoding="utf-8")
    assert again == centre and again.count("父消息") == 1


def test_resend_posts_the_chosen_message_again_with_a_new_ts(
    env: Env, slack: SlackApiServer, prefect_harness: None
) -> None:
    from minyi.flows.deliver import resend

    poster = slack_config(env, slack)
    put(env, msg("again"), msg("other"))
    deliver(env.engine, poster, AS_OF)
    first_ts = env.scalar("SELECT remote_id FROM notifications WHERE key = 'again'")
    summary = resend(keys=["again"], as_of=at("2026-11-22 11:00"))
    assert summary.sent == 1
    assert [p.text for p in slack.posts] == ["message again", "message other", "message again"]
    assert env.scalar("SELECT remote_id FROM notifications WHERE key = 'again'") != first_ts


def test_resend_with_no_selection_is_refused(env: Env, slack: SlackApiServer) -> None:
    from minyi.tasks.adapters.notify.engine import select_for_resend
    from minyi.tasks.errors import InputError

    with env.engine.connect() as conn, pytest.raises(InputError, match="refusing to resend everything"):
        select_for_resend(conn)


def test_an_upstream_record_id_cannot_ping_the_channel_or_forge_a_link(env: Env, slack: SlackApiServer) -> None:
    poster = slack_config(env, slack)
    put(env, msg("x", text="督办超时 police110:<!channel> 与 <http://evil.example|点此> & 更多"))
    deliver(env.engine, poster, AS_OF)
    (post,) = slack.posts
    assert post.text == "督办超时 police110:&lt;!channel&gt; 与 &lt;http://evil.example|点此&gt; &amp; 更多"
    assert post.blocks is not None and "<" not in json.dumps(post.blocks, ensure_ascii=False)
