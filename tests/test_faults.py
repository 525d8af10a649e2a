"""The fault suite (issue 9): real `minyi` processes killed at random points, and upstream systems misbehaving.

`make faults` runs everything (marker `faults`: many seeds); `make test` runs the
cases without the marker, one per kind of fault. After every case the invariants
of `World.check` hold: no source row lost or stored twice, every eligible SMS
accepted exactly once, every channel post delivered exactly once, reports equal
to the store.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Iterator
from datetime import date, timedelta

import pytest

from minyi.sim.city import SOURCES
from minyi.sim.sms_gateway import GatewayFault
from minyi.sim.source_server import Fault
from tests.faults_support import DAY, FIGURES, SLACK_TOKEN, World, morning
from tests.support import PG_IN_TEST, Env

FULL = os.environ.get("MINYI_FAULTS_FULL") == "1"  # `make faults`
SQLITE = pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
# Kills and upstream faults run on both backends in `make test` too (one seed each); `make faults` adds seeds.
REDUCED_BACKENDS = pytest.mark.parametrize("store_url", ["sqlite", "postgres"], indirect=True)
KILL_POINTS = ("mid-page", "outbox-before-send", "mid-escalation", "mid-report")
FULL_SEEDS = range(1, 6)


@pytest.fixture
def world(env: Env, prefect_harness: None) -> Iterator[World]:
    env.monkeypatch.setenv("MINYI_FAULTS_SLACK_TOKEN", SLACK_TOKEN)
    w = World(env)
    yield w
    w.stop()


def _arm(world: World, point: str, rng: random.Random) -> threading.Event:
    """Set the hook that signals the chosen kill point; the k-th occurrence is drawn from the seed."""
    hit = threading.Event()
    if point == "mid-page":
        k = rng.randrange(1, 8)
        seen = [0]

        def on_page(source: str, start: int) -> None:
            seen[0] += 1
            if seen[0] == k:
                hit.set()
                threading.Event().wait(1)  # hold the page: the kill lands while it is in flight

        world.source.on_page = on_page
    elif point == "outbox-before-send":
        # the batch is claimed in the outbox and on its way; the kill lands before the gateway takes it
        world.gateway.hold_next_batch_before_accepting()
        threading.Thread(target=lambda: world.gateway.stalled.wait(240) and hit.set(), daemon=True).start()
    else:
        # mid-escalation: a unit channel's post (escalations go there); mid-report: the chart upload or a summary
        k = rng.randrange(1, 4)
        seen = [0]

        def on_call(method: str, params: dict) -> None:
            if hit.is_set():
                return
            text = str(params.get("text") or params.get("initial_comment") or "")
            if point == "mid-escalation":
                wanted = method == "chat.postMessage" and str(params.get("channel", "")) not in (
                    "C0CENTER",
                    "C0LEADERS",
                )
            else:
                wanted = method.startswith("files.") or (method == "chat.postMessage" and "考核" in text)
            if wanted:
                seen[0] += 1
                if seen[0] >= k:
                    hit.set()
                    threading.Event().wait(2)  # Slack has the post; the run has not stored its ts

        world.slack.state.on_call = on_call
    return hit


def _disarm(world: World) -> None:
    world.source.on_page = None
    world.slack.state.on_call = None
    world.gateway.release.set()


def kill_and_rerun(world: World, point: str, seed: int) -> dict[str, int]:
    rng = random.Random(seed)
    days = [DAY]
    if point == "mid-escalation":
        world.run(*world.daily(DAY))
        assert world.gateway.posted_more_than_once() == {}, "without a kill nothing is POSTed twice"
        world.answer_and_open_orders(DAY)
        days.append(DAY + timedelta(days=6))  # the next Sunday's loop: response clocks have run out
    hit = _arm(world, point, rng)
    proc = world.start(*world.daily(days[-1]))
    killed = world.kill_when(proc, hit)
    time.sleep(0.3)  # a request already on the socket may still reach the gateway
    in_flight = world.in_flight()  # posted, answer never stored: the only ids a re-run may post again
    if point == "outbox-before-send":
        held = set(world.gateway.state.held)
        assert held and not held & set(world.gateway.state.posts), "the kill fired before that batch was sent"
    _disarm(world)
    assert killed, f"the run ended before reaching {point}"
    world.expire_lease(days[-1])  # waits for the real expiry of the dead run's lease and claims
    world.run(*world.daily(days[-1]))
    if point == "mid-escalation":
        assert world.env.scalar("SELECT COUNT(*) FROM escalations") > 0
    result = world.check(*days)
    resent = set(world.gateway.posted_more_than_once())
    assert resent <= in_flight, f"re-sent {len(resent - in_flight)} ids that were not in flight at the kill"
    assert result["lost"] == result["duplicates"] == 0
    FIGURES["kills_survived"][world.env.backend] += 1
    FIGURES["resent"] += len(resent)
    FIGURES["resend_bound"] += len(in_flight)
    return result


# `make test` kills each point on one backend (mid-page alone: tests/test_ingest_crash.py); `make faults` kills
# every point on both, with every seed.
@pytest.mark.parametrize(
    ("point", "store_url"), [("outbox-before-send", "sqlite"), ("mid-report", "postgres")], indirect=["store_url"]
)
def test_a_daily_loop_killed_mid_way_and_re_run_loses_nothing_and_sends_nothing_twice(world: World, point: str) -> None:
    assert kill_and_rerun(world, point, seed=0)["lost"] == 0


@REDUCED_BACKENDS
@pytest.mark.faults
@pytest.mark.parametrize("seed", FULL_SEEDS)
@pytest.mark.parametrize("point", KILL_POINTS)
def test_faults_kill_the_daily_loop_at_random_points(world: World, point: str, seed: int) -> None:
    assert kill_and_rerun(world, point, seed)["lost"] == 0


# ------------------------------------------------------------------------------------------ upstream faults


def loop(day: date = DAY, hours: float = 0) -> object:
    """The daily loop in this process (faster than a subprocess; the kills above cover real processes)."""
    from minyi.flows.daily_loop import daily_loop

    return daily_loop(business_date=day, as_of=morning(day) + timedelta(hours=hours))


def source_faults(world: World, rng: random.Random) -> None:
    """Transient faults on three sources, a refused (over 16 MiB) page on a fourth, an edit between pages."""
    names = sorted((s.name for s in SOURCES), key=lambda n: -world.feed.count(n, DAY))
    victim, huge, flaky = names[0], names[1], names[2:5]  # the longest pull gets the edit between its pages
    rng.shuffle(flaky)
    transient = [
        ("stall", Fault(status=200, delay=3.5, body=b'{"records": [], "next_cursor": null}')),  # > timeout 3 s
        ("drop", Fault(drop=True)),
        ("truncated_json", Fault(status=200, body=b'{"records": [{"record_id": "110-2026')),
        ("wrong_content_type", Fault(status=200, body=b"<html>maintenance</html>", content_type="text/html")),
        ("http_429", Fault(status=429, headers={"Retry_After": "0"})),
        ("http_503", Fault(status=503)),
    ]
    for i, (kind, fault) in enumerate(transient):
        world.source.fail(flaky[i % 3], fault)
        FIGURES["fault_kinds"].add(f"source:{kind}")
    big = b'{"records": [' + b'{"pad": "' + b"x" * (17 * 1024 * 1024) + b'"}], "next_cursor": null}'
    world.source.fail(huge, Fault(status=200, body=big))
    FIGURES["fault_kinds"].add("source:huge_page")
    # A record changes upstream between two pages of the pull: the upsert keeps one row, with the new fields.
    assert world.feed.count(victim, DAY) > 25

    def on_page(source: str, start: int) -> None:
        if source == victim and start > 0:
            world.feed.edits[(victim, DAY, 0)] = {"summary": "已更正", "unit_code": "QD-CGS"}

    world.source.on_page = on_page
    FIGURES["fault_kinds"].add("source:record_changed_between_pages")


@PG_IN_TEST
def test_sources_that_stall_drop_truncate_mislabel_or_send_huge_pages_lose_no_row(world: World) -> None:
    source_faults(world, random.Random(0))
    first = loop()
    failed = first.ingest.failed  # type: ignore[attr-defined]
    assert len(failed) == 1, failed  # only the over-large page fails its source; the retries absorb the rest
    world.source.on_page = None
    loop()  # the next run pulls the failed source again, and the whole day again (the edit comes in)
    result = world.check(DAY)
    edited = world.env.rows("SELECT summary, unit_code FROM records WHERE summary = '已更正'")
    assert edited == [("已更正", "QD-CGS")]
    assert result["lost"] == result["duplicates"] == 0


@PG_IN_TEST
def test_a_gateway_and_slack_that_refuse_time_out_or_are_down_for_a_whole_run_deliver_everything_once_later(
    world: World,
) -> None:
    world.gateway.fail(GatewayFault(429, retry_after="0"), GatewayFault(500), GatewayFault(503, delay=3.5))
    world.slack.fail_next(429, retry_after=0)
    world.slack.fail_next(500, times=2)
    FIGURES["fault_kinds"].update({"sms:429", "sms:500", "sms:timeout", "slack:429", "slack:500"})
    loop()
    world.gateway.fail(*[GatewayFault(500)] * 200)  # down for the whole of the next run (every retry fails)
    world.slack.set_down(True)
    FIGURES["fault_kinds"].update({"sms:down_whole_run", "slack:down_whole_run"})
    world.configure(sms={"max_attempts": 2})
    loop(hours=0.5)  # a re-run while both are down: nothing is lost, everything waits
    world.gateway.state.faults.clear()
    world.slack.set_down(False)
    from minyi.flows.sweep import sweep

    sweep(as_of=morning(DAY) + timedelta(hours=1))
    result = world.check(DAY)
    assert result["lost"] == result["duplicates"] == 0


@SQLITE
def test_a_sqlite_store_locked_by_another_writer_for_seconds_makes_the_loop_wait_not_fail(world: World) -> None:
    import sqlite3

    path = world.env.url.removeprefix("sqlite:///")
    locked = threading.Event()

    def hold() -> None:
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        locked.set()
        time.sleep(3)
        conn.execute("ROLLBACK")
        conn.close()

    def on_page(source: str, start: int) -> None:
        if not locked.is_set():
            threading.Thread(target=hold, daemon=True).start()
            locked.wait(5)

    world.source.on_page = on_page
    FIGURES["fault_kinds"].add("db:sqlite_locked")
    started = time.monotonic()
    loop()
    assert time.monotonic() - started > 3  # it waited for the lock
    assert world.check(DAY)["lost"] == 0


@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)
def test_postgres_backends_terminated_mid_run_then_a_re_run_loses_nothing(world: World) -> None:
    from sqlalchemy import create_engine, text

    from tests.conftest import PG_ADMIN_URL

    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    db = world.env.engine.url.database
    pages = [0]

    def on_page(source: str, start: int) -> None:
        pages[0] += 1
        if pages[0] == 4:
            with admin.connect() as conn:
                conn.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :d AND pid <> pg_backend_pid()"
                    ),
                    {"d": db},
                )

    world.source.on_page = on_page
    FIGURES["fault_kinds"].add("db:pg_terminate_backend")
    try:
        loop()
    except Exception:  # the run may fail where its connection died; the re-run is what must recover
        pass
    world.source.on_page = None
    loop()
    admin.dispose()
    assert world.check(DAY)["lost"] == 0
