"""Operations that survive bad days (SPEC §4, §6, §14): poisoned replies, dead runs, overlapping runs, huge answers.

Every test runs against the store on SQLite and PostgreSQL and the loopback SMS gateway over real HTTP.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from minyi.sim.sms_gateway import SmsGateway
from minyi.tasks.adapters.bounds import (
    CONTROL_CHARACTER,
    FROM_TOO_LONG,
    MAX_ANSWER_BYTES,
    MESSAGE_ID_TOO_LONG,
    NOT_AN_OBJECT,
    NOT_TEXT,
    RECEIVED_AT_OUT_OF_RANGE,
    RECEIVED_AT_UNPARSEABLE,
    REPLY_ID_MISSING,
    REPLY_ID_TOO_LONG,
    TEXT_TOO_LONG,
    AnswerTooLarge,
    RefusedReply,
    Reply,
    check_reply,
    read_capped,
)
from tests.support import PG_IN_TEST, Env, at, make_record
from tests.test_followups import DAY, MORNING, add_records, configure, flush, plan, replies

AS_OF = at("2026-11-22 12:00")
GOOD = {"reply_id": "ok-1", "from": "13800001111", "text": "1", "received_at": "2026-11-22T10:00:00+08:00"}
# (reply, the reason it is refused): one of each rule of SPEC §4
POISONED: list[tuple[Any, str]] = [
    ({**GOOD, "reply_id": None}, REPLY_ID_MISSING),
    ({k: v for k, v in GOOD.items() if k != "reply_id"}, REPLY_ID_MISSING),
    ({**GOOD, "reply_id": "r" * 129}, REPLY_ID_TOO_LONG),
    ({**GOOD, "reply_id": "x" * 300}, REPLY_ID_TOO_LONG),  # over the old column's 255: PostgreSQL DataError
    ({**GOOD, "reply_id": "nul\x00id"}, CONTROL_CHARACTER),
    ({**GOOD, "text": "满意\x00"}, CONTROL_CHARACTER),
    ({**GOOD, "text": "bell\x07"}, CONTROL_CHARACTER),
    ({**GOOD, "from": "138\x1b[31m"}, CONTROL_CHARACTER),
    ({**GOOD, "message_id": "m\x85"}, CONTROL_CHARACTER),
    ({**GOOD, "from": "1" * 65}, FROM_TOO_LONG),
    ({**GOOD, "message_id": "m" * 65}, MESSAGE_ID_TOO_LONG),
    ({**GOOD, "text": "字" * 1001}, TEXT_TOO_LONG),
    ({**GOOD, "received_at": "0001-01-01T00:00:00+00:00"}, RECEIVED_AT_OUT_OF_RANGE),  # was an OverflowError
    ({**GOOD, "received_at": "9999-12-31T23:59:59+00:00"}, RECEIVED_AT_OUT_OF_RANGE),
    ({**GOOD, "received_at": "2025-10-01T10:00:00+08:00"}, RECEIVED_AT_OUT_OF_RANGE),  # > 400 days before as_of
    ({**GOOD, "received_at": "2026-11-23T13:00:00+08:00"}, RECEIVED_AT_OUT_OF_RANGE),  # > 1 day after as_of
    ({**GOOD, "received_at": "2026-11-22T10:00:00"}, RECEIVED_AT_UNPARSEABLE),  # no offset
    ({**GOOD, "received_at": "yesterday"}, RECEIVED_AT_UNPARSEABLE),
    ({**GOOD, "received_at": None}, RECEIVED_AT_UNPARSEABLE),
    ({**GOOD, "text": {"nested": 1}}, NOT_TEXT),
    ("not an object", NOT_AN_OBJECT),
    ([1, 2], NOT_AN_OBJECT),
]


@pytest.fixture
def gateway() -> Iterator[SmsGateway]:
    gw = SmsGateway().start()
    yield gw
    gw.release.set()
    gw.stop()


# --- the reply rules (pure) -----------------------------------------------------------------------


@pytest.mark.parametrize(("reply", "reason"), POISONED)
def test_a_reply_that_breaks_a_rule_is_refused_with_that_rule_as_its_reason(reply: Any, reason: str) -> None:
    checked = check_reply(reply, AS_OF)
    assert isinstance(checked, RefusedReply) and checked.reason == reason
    assert "\x00" not in checked.raw and "\x07" not in checked.raw and "\x85" not in checked.raw


def test_a_reply_within_every_bound_is_taken_as_given() -> None:
    edge = {**GOOD, "reply_id": "r" * 128, "from": "1" * 64, "message_id": "m" * 64, "text": "满\t意\n" * 250}
    for reply in (GOOD, edge, {**GOOD, "received_at": "2026-11-23T11:59:00+08:00"}):
        assert isinstance(check_reply(reply, AS_OF), Reply)


def test_an_answer_without_a_length_is_cut_off_as_it_streams_past_the_cap() -> None:
    sent = 0

    def body() -> Iterator[bytes]:
        nonlocal sent
        for _ in range(40):  # 40 MiB if read whole
            sent += 1 << 20
            yield b" " * (1 << 20)

    transport = httpx.MockTransport(lambda _req: httpx.Response(200, content=body()))
    with httpx.Client(transport=transport) as client, client.stream("GET", "http://gw/replies") as resp:
        assert "Content-Length" not in resp.headers
        with pytest.raises(AnswerTooLarge):
            read_capped(resp)
    assert sent <= MAX_ANSWER_BYTES + (2 << 20)  # stopped at the cap, not after reading 40 MiB


# --- replies pages against the store ----------------------------------------------------------------


def test_a_page_mixing_good_and_poisoned_replies_applies_the_good_keeps_the_bad_and_moves_the_cursor(
    env: Env, gateway: SmsGateway
) -> None:
    rt = configure(env, gateway)
    add_records(rt, [make_record(i, DAY) for i in range(3)])
    plan(rt)
    flush(rt)
    mids = sorted(gateway.delivered)
    gateway.reply_to(mids[0], "1", at("2026-11-22 10:00"))
    for reply, _ in POISONED:
        gateway.inject_raw_reply(reply)
    gateway.reply_to(mids[1], "3", at("2026-11-22 10:05"))

    got = replies(rt, AS_OF)

    assert got.error is None
    assert (got.new, got.matched, got.rejected) == (2, 2, len(POISONED))
    assert env.scalar("SELECT COUNT(*) FROM answers") == 2
    stored = env.rows("SELECT reason, raw FROM rejected_replies")
    assert sorted(r[0] for r in stored) == sorted(reason for _, reason in POISONED)
    assert all("\x00" not in raw and "\x1b" not in raw for _, raw in stored)
    assert env.scalar("SELECT cursor FROM sms_cursors") == f"{gateway.epoch}:{2 + len(POISONED)}"
    # the next sweep runs: nothing new, nothing raises, nothing is applied twice
    gateway.reply_to(mids[2], "2", at("2026-11-22 11:00"))
    again = replies(rt, AS_OF + timedelta(minutes=5))
    assert (again.error, again.new, again.rejected) == (None, 1, 0)
    assert env.scalar("SELECT COUNT(*) FROM rejected_replies") == len(POISONED)


def test_a_replies_page_over_16_mib_is_refused_whole_and_its_cursor_stays(env: Env, gateway: SmsGateway) -> None:
    rt = configure(env, gateway)
    gateway.inject_reply("13800001111", "1", at("2026-11-22 10:00"))
    gateway.pad_next_answer(17 * 1024 * 1024)
    got = replies(rt, AS_OF)
    assert got.error is not None and "cap" in got.error
    assert env.scalar("SELECT COUNT(*) FROM sms_replies") == 0
    assert env.scalar("SELECT COUNT(*) FROM sms_cursors") == 0
    later = replies(rt, AS_OF)  # the next run takes the page as usual
    assert (later.error, later.new) == (None, 1)


def test_a_gateway_answer_over_16_mib_stops_the_relay_and_leaves_its_batch_queued(
    env: Env, gateway: SmsGateway
) -> None:
    rt = configure(env, gateway)
    add_records(rt, [make_record(i, DAY) for i in range(10)])
    plan(rt)
    gateway.pad_next_answer(17 * 1024 * 1024)
    first = flush(rt)
    assert first.error is not None and "cap" in first.error
    assert (first.sent, first.queued) == (0, 10)
    assert env.scalar("SELECT COUNT(*) FROM sms_claims") == 0  # released
    second = flush(rt, MORNING + timedelta(minutes=1))  # the lost answer's batch may go again: duplicate
    assert (second.error, second.sent, second.duplicate, second.queued) == (None, 10, 10, 0)


_RSS_PROBE = """
import resource, sys
from datetime import datetime
from minyi.tasks.runtime import load_runtime
from minyi.tasks.stages.replies import ingest_replies
rt = load_runtime()
with rt.sms_gateway() as client:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    got = ingest_replies(rt.engine, client, datetime.fromisoformat(sys.argv[1]))
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(after - before, got.error is not None)
"""


def test_a_17_mib_replies_page_is_refused_with_peak_memory_bounded(env: Env, gateway: SmsGateway) -> None:
    configure(env, gateway)
    gateway.inject_reply("13800001111", "1", at("2026-11-22 10:00"))
    gateway.pad_next_answer(17 * 1024 * 1024)
    out = subprocess.run(
        [sys.executable, "-c", _RSS_PROBE, AS_OF.isoformat()],
        env=env.cli_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    grown_kib, failed = out.stdout.split()
    assert failed == "True"
    assert int(grown_kib) < 8 * 1024  # the 17 MiB answer was never held whole (reading it would add ≥ 17 MiB)
    assert env.scalar("SELECT COUNT(*) FROM sms_replies") == 0


# --- the per-date guard in the store (SPEC §6) -----------------------------------------------------


def test_a_lease_is_taken_once_renewed_by_its_holder_and_taken_over_only_after_expiry(env: Env) -> None:
    import time

    from minyi.tasks.store.leases import release_lease, renew_lease, take_lease

    key = "daily-loop:2026-11-21"
    assert take_lease(env.engine, key, "first", 1.0)
    assert not take_lease(env.engine, key, "second", 1.0)  # held: nothing changes
    assert env.scalar("SELECT holder FROM run_leases WHERE key = :k", k=key) == "first"
    assert take_lease(env.engine, "daily-loop:2026-11-22", "second", 1.0)  # another date is another key
    assert renew_lease(env.engine, key, "first", 1.0)
    time.sleep(1.2)  # the first holder died: no renewal
    assert take_lease(env.engine, key, "second", 60.0)
    assert not renew_lease(env.engine, key, "first", 1.0)  # the dead holder cannot take it back
    release_lease(env.engine, key, "first")  # nor release what is no longer its
    assert env.scalar("SELECT holder FROM run_leases WHERE key = :k", k=key) == "second"
    release_lease(env.engine, key, "second")
    assert take_lease(env.engine, key, "third", 1.0)


def test_a_held_lease_is_renewed_while_its_run_lives_and_released_at_its_end(env: Env) -> None:
    import time

    from minyi.tasks.store.leases import held, take_lease

    key = "daily-loop:2026-11-21"
    with held(env.engine, key, "runner", 0.6) as taken:
        assert taken
        time.sleep(1.5)  # longer than the lease: only the heartbeat keeps it
        assert not take_lease(env.engine, key, "other", 0.6)
    assert env.scalar("SELECT COUNT(*) FROM run_leases") == 0


def _loop_config(env: Env, gateway: SmsGateway, source_url: str, lease_seconds: float) -> None:
    from tests.support import config_toml

    env.write_config(
        config_toml(
            {"police110": source_url},
            sections={
                "sms": {"url": gateway.url, "backoff_seconds": 0.01},
                "ingest": {"page_size": 10},
                "guard": {"lease_seconds": lease_seconds},
            },
        )
    )


def _run(env: Env, *args: str, api_url: str | None = None, **popen: Any) -> Any:
    cli_env = {**env.cli_env()}
    cli_env.pop("PREFECT_API_URL", None)
    if api_url:
        cli_env["PREFECT_API_URL"] = api_url
    cmd = [sys.executable, "-m", "minyi.cli", *args]
    if popen:
        return subprocess.Popen(cmd, env=cli_env, start_new_session=True, **popen)
    return subprocess.run(cmd, env=cli_env, capture_output=True, text=True, timeout=300)


@PG_IN_TEST
def test_a_killed_daily_loop_whose_prefect_server_died_with_it_runs_again_on_another_once_its_lease_expires(
    env: Env, gateway: SmsGateway, prefect_harness: None
) -> None:
    """The first run starts its own temporary Prefect server (no API URL) and is SIGKILLed with it; the later
    runs talk to another server (the session's), which never saw the first: the guard is in the store."""
    import os
    import signal
    import time

    from prefect.settings import PREFECT_API_URL
    from sqlalchemy import text

    from minyi.sim.source_server import SourceServer, StaticFeed
    from minyi.tasks.store.engine import instant_param

    api = PREFECT_API_URL.value()
    feed = StaticFeed()
    feed.data[("police110", DAY)] = [make_record(i, DAY) for i in range(30)]
    with SourceServer(feed) as src:
        _loop_config(
            env, gateway, src.url_for("police110"), lease_seconds=60
        )  # long enough for a loaded machine to start the second run
        src.state("police110").page_delay = 1.0
        args = ("run", "--date", DAY.isoformat(), "--as-of", "2026-11-22T09:05:00+08:00")
        proc = _run(env, *args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # its own Prefect server
        deadline = time.monotonic() + 180
        while not src.requests:  # the loop holds its lease and is pulling
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        os.killpg(proc.pid, signal.SIGKILL)  # the loop and the temporary server it started, in one group
        proc.wait(30)
        assert env.scalar("SELECT COUNT(*) FROM run_leases") == 1  # the dead run lease stays ...
        pulled = len(src.requests)

        busy = _run(env, *args, api_url=api)
        assert busy.returncode == 4, busy.stderr[:3000]
        assert "already running" in busy.stderr.strip().splitlines()[-1]
        assert len(src.requests) == pulled  # ... and the second run did nothing

        expires = env.scalar("SELECT expires_at FROM run_leases")
        left = (datetime.fromisoformat(str(expires)).replace(tzinfo=UTC) - datetime.now(UTC)).total_seconds()
        assert 0 < left <= 60.5  # the dead run's lease still runs, for at most its 60 s
        # the minute passes: nobody renews a dead run's lease, so its expiry is what the clock reaches
        with env.engine.begin() as conn:
            past = instant_param(env.engine.dialect.name, datetime.now(UTC) - timedelta(seconds=1))
            conn.execute(text("UPDATE run_leases SET expires_at = :t"), {"t": past})
        src.state("police110").page_delay = 0
        again = _run(env, *args, api_url=api)
    assert again.returncode == 0, again.stdout + again.stderr
    assert env.scalar("SELECT COUNT(*) FROM records") == 30
    assert env.scalar("SELECT COUNT(*) FROM run_leases") == 0  # released at the end


# The embedded default (SQLite, Prefect's temporary server) is where a user meets this; the lease's SQL itself
# runs on both databases in the held-lease tests above.
@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_a_second_run_while_the_first_lives_ends_with_exit_4_having_done_nothing_and_says_so_last(
    env: Env, gateway: SmsGateway
) -> None:
    from minyi.sim.source_server import SourceServer, StaticFeed
    from minyi.tasks.store.leases import held

    feed = StaticFeed()
    feed.data[("police110", DAY)] = [make_record(i, DAY) for i in range(5)]
    with SourceServer(feed) as src:
        _loop_config(env, gateway, src.url_for("police110"), lease_seconds=300)
        with held(env.engine, f"daily-loop:{DAY.isoformat()}", "the first run", 300) as taken:
            assert taken
            # no Prefect server: the run starts Prefect's temporary server, whose shutdown logs a line
            busy = _run(env, "run", "--date", DAY.isoformat(), "--as-of", "2026-11-22T09:05:00+08:00")
        assert busy.returncode == 4, busy.stdout + busy.stderr
        last = busy.stderr.strip().splitlines()[-1]
        assert last.startswith("minyi: ") and "already running" in last, busy.stderr[-2000:]
        assert src.requests == []
    assert env.scalar("SELECT COUNT(*) FROM records") == 0
    assert gateway.state.batches == []


# --- claimed sends (SPEC §4) ---------------------------------------------------------------------------


def test_two_relays_at_once_on_a_slow_gateway_post_each_message_id_exactly_once(env: Env, gateway: SmsGateway) -> None:
    from concurrent.futures import ThreadPoolExecutor

    rt = configure(env, gateway)  # batch_size 50
    add_records(rt, [make_record(i, DAY) for i in range(400)])
    plan(rt)
    gateway.slow_seconds = 0.3  # a slow 09:00 loop still sending when the 09:15 sweep starts
    with ThreadPoolExecutor(max_workers=2) as pool:
        loop = pool.submit(flush, rt, MORNING)
        sweep = pool.submit(flush, rt, MORNING + timedelta(minutes=15))
        done = [loop.result(), sweep.result()]
    assert sum(d.sent for d in done) == 400 and all(d.sent > 0 for d in done)  # both relays worked ...
    assert sum(d.duplicate for d in done) == 0
    assert len(gateway.state.posts) == 400
    assert gateway.posted_more_than_once() == {}  # ... on disjoint batches
    assert env.scalar("SELECT COUNT(*) FROM followups WHERE sms_status = 'sent'") == 400
    assert env.scalar("SELECT COUNT(*) FROM sms_claims") == 0


def test_a_claim_whose_holder_died_is_taken_over_after_its_expiry_and_not_before(env: Env, gateway: SmsGateway) -> None:
    import time

    from sqlalchemy import text

    from minyi.tasks.store.engine import instant_param

    rt = configure(env, gateway, claim_seconds=1)
    add_records(rt, [make_record(i, DAY) for i in range(10)])
    plan(rt)
    with env.engine.begin() as conn:  # a relay that claimed the first 4 and died
        conn.execute(
            text(
                "INSERT INTO sms_claims (owner, first_id, last_id, expires_at) "
                "SELECT 'dead', MIN(id), MAX(id), :until FROM (SELECT id FROM followups ORDER BY id LIMIT 4) AS f"
            ),
            {"until": instant_param(env.backend, datetime.now(UTC) + timedelta(seconds=1))},
        )
    first = flush(rt)
    assert (first.sent, first.queued) == (6, 4)
    time.sleep(1.2)
    second = flush(rt, MORNING + timedelta(minutes=1))
    assert (second.sent, second.queued) == (4, 0)
    assert gateway.posted_more_than_once() == {}


# --- log masking (PIPL) --------------------------------------------------------------------------------


def test_landlines_in_free_text_are_masked_and_ordinary_numbers_are_not() -> None:
    from minyi.tasks.rules.masking import mask_text

    assert mask_text("回拨 0532-88887777 或 053288887777") == "回拨 053*****7777 或 053*****7777"
    assert mask_text("座机010 12345678") == "座机010****5678"
    kept = "record 110-20261121-000123, 2026-11-21, 3.0532, batch 0012"
    assert mask_text(kept) == kept


def test_a_traceback_logged_with_exc_info_reaches_no_handler_with_a_number_in_it() -> None:
    import io
    import logging

    from minyi.tasks.rules.masking import install_log_masking

    install_log_masking()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("minyi.test.masking")
    logger.addHandler(handler)
    try:
        try:
            raise ValueError("bad row for 13812345678 at 0532-88887777")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    out = stream.getvalue()
    assert "ValueError" in out and "138****5678" in out and "053*****7777" in out
    assert "13812345678" not in out and "88887777" not in out


def test_the_state_message_prefect_stores_for_a_failed_task_and_flow_has_no_number_in_it(
    prefect_harness: None,
) -> None:
    """Prefect builds a failed run's state message from the exception's text; the API must get it masked."""
    from prefect import flow, task
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    import minyi.flows  # noqa: F401 (importing the flows installs the masking, as a deployment's process does)

    @task(name="raises-on-a-row")
    def bad_row() -> None:
        raise ValueError("bad row for 13812345678 at 0532-88887777")

    @flow(name="state-masking-check")
    def check() -> None:
        bad_row()

    state = check(return_state=True)
    assert state.is_failed()
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(state.state_details.flow_run_id)
        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])))
    messages = [run.state.message] + [t.state.message for t in tasks]
    assert len(messages) == 2 and all("ValueError" in m for m in messages), messages
    for message in messages:
        assert "138****5678" in message and "053*****7777" in message, message
        assert "13812345678" not in message and "88887777" not in message, message


# --- what Prefect keeps (SPEC §14) ------------------------------------------------------------------


def test_retention_deletes_operator_flow_runs_older_than_retention_days_from_prefect_and_keeps_the_rest(
    env: Env, prefect_harness: None
) -> None:
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.states import Completed

    from minyi.flows.retention import OPERATOR_FLOWS, retention
    from tests.support import config_toml

    env.write_config(config_toml())

    @flow(name="record-visit")
    def fake_visit() -> None: ...

    @flow(name="daily-loop")
    def fake_loop() -> None: ...

    with get_client(sync_client=True) as client:
        visit = client.create_flow_run(fake_visit, parameters={"note": "市民 13812345678"}, state=Completed())
        loop = client.create_flow_run(fake_loop, state=Completed())
    assert "record-visit" in OPERATOR_FLOWS
    # 200 days later (retention_days 180): the visit's run and its note are gone from Prefect; the loop's stays
    result = retention(as_of=datetime.now(UTC) + timedelta(days=200))
    assert result.operator_flow_runs >= 1
    with get_client(sync_client=True) as client:
        ids = {r.id for r in client.read_flow_runs(limit=200)}
    assert visit.id not in ids and loop.id in ids
