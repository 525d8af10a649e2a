"""The fault suite (issue 9): real `minyi` processes killed at random points, and upstream systems misbehaving.

`make faults` runs everything (marker `faults`: many seeds); `make test` runs the
cases without the marker, one per kind of fault. After every case the invariants
of `World.check` hold: no source row lost or stored twice, every eligible SMS
accepted exactly once, every channel post delivered exactly once, reports equal
to the store.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest

from tests.faults_support import DAY, World
from tests.support import Env

SQLITE = pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
KILL_POINTS = ("mid-page", "outbox-before-send", "mid-escalation", "mid-report")
FULL_SEEDS = range(1, 6)
TALLY: dict[str, int] = {"kills": 0, "reruns": 0, "lost": 0, "duplicates": 0}


@pytest.fixture
def world(env: Env, prefect_harness: None) -> Iterator[World]:
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
        world.gateway.stall_next_batch()  # the gateway has the batch; the run never hears the answer
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
                wanted = method == "chat.postMessage" and str(params.get("channel", "")) not in ("C0CENTER", "C0LEADERS")
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
        world.answer_and_open_orders(DAY)
        days.append(DAY + timedelta(days=6))  # the next Sunday's loop: response clocks have run out
    hit = _arm(world, point, rng)
    proc = world.start(*world.daily(days[-1]))
    killed = world.kill_when(proc, hit)
    _disarm(world)
    assert killed, f"the run ended before reaching {point}"
    TALLY["kills"] += 1
    world.expire_lease(days[-1])
    world.run(*world.daily(days[-1]))
    TALLY["reruns"] += 1
    if point == "mid-escalation":
        assert world.env.scalar("SELECT COUNT(*) FROM escalations") > 0
    result = world.check(*days)
    TALLY["lost"] += result["lost"]
    TALLY["duplicates"] += result["duplicates"]
    return result


@SQLITE
@pytest.mark.parametrize("point", ["mid-page", "mid-report"])
def test_a_daily_loop_killed_mid_way_and_re_run_loses_nothing_and_sends_nothing_twice(world: World, point: str) -> None:
    assert kill_and_rerun(world, point, seed=0)["lost"] == 0


@pytest.mark.faults
@pytest.mark.parametrize("seed", FULL_SEEDS)
@pytest.mark.parametrize("point", KILL_POINTS)
def test_faults_kill_the_daily_loop_at_random_points(world: World, point: str, seed: int) -> None:
    assert kill_and_rerun(world, point, seed)["lost"] == 0
