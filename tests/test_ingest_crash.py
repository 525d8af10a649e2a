"""A pull killed with SIGKILL mid-way resumes from its committed cursor: no duplicates, no gaps (SPEC §3)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import date

from minyi.sim.source_server import SourceServer, StaticFeed
from tests.support import Env, config_toml, make_record

DAY = date(2026, 11, 21)


def test_a_pull_killed_mid_way_and_re_run_ends_with_exactly_the_source_rows(env: Env, prefect_harness: None) -> None:
    from prefect.settings import PREFECT_API_URL

    feed = StaticFeed({("police110", DAY): [make_record(i, DAY) for i in range(1000)]})
    with SourceServer(feed) as server:
        # two workers taking turns on the one source (`pipelined_pages`), as on any machine with two cores
        env.write_config(config_toml({"police110": server.url_for("police110")}, sections={"ingest": {"workers": 2}}))
        cli_env = {**env.cli_env(), "PREFECT_API_URL": PREFECT_API_URL.value() or ""}
        cmd = [sys.executable, "-m", "minyi.cli", "ingest", "--date", str(DAY), "--as-of", "2026-11-22T09:00:00+08:00"]

        fifth_page = threading.Event()
        server.on_page = lambda source, start: fifth_page.set() if start >= 400 else None
        server.state("police110").page_delay = 0.3
        proc = subprocess.Popen(cmd, env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert fifth_page.wait(120), "the pull never reached its fifth page"
        assert len(_ingest_workers_of(proc.pid)) == 2, "the source must be pulled by two worker processes"
        time.sleep(0.1)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
        stored_before = env.scalar("SELECT COUNT(*) FROM records")
        assert 0 < stored_before < 1000, "the kill must land mid-pull"
        cursor = env.scalar("SELECT cursor FROM ingest_checkpoints")
        assert cursor == str(stored_before)

        server.state("police110").page_delay = 0
        server.on_page = None
        seen = len(server.requests)
        done = subprocess.run(cmd, env=cli_env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
        resumed_from = server.requests[seen][2].get("cursor")
        assert resumed_from == cursor

    ids = [r[0] for r in env.rows("SELECT record_id FROM records ORDER BY record_id")]
    assert ids == sorted(make_record(i, DAY)["record_id"] for i in range(1000))
    assert env.scalar("SELECT complete FROM ingest_checkpoints") in (True, 1)


def _ingest_workers_of(pid: int) -> list[int]:
    """Pids of the ingest worker processes whose parent is `pid`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        if ppid == pid and b"minyi.tasks.stages.ingest_worker" in cmdline:
            found.append(int(entry))
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_worker_processes_of_a_killed_run_stop_at_once_and_the_re_run_resumes_every_source(
    env: Env, prefect_harness: None
) -> None:
    """Two sources pulled in two worker processes; the parent is SIGKILLed: the orphans write no further page."""
    from prefect.settings import PREFECT_API_URL

    names = ("police110", "window")
    feed = StaticFeed({(n, DAY): [make_record(i, DAY, record_id=f"{n}-{i}") for i in range(600)] for n in names})
    with SourceServer(feed) as server:
        env.write_config(config_toml({n: server.url_for(n) for n in names}, sections={"ingest": {"workers": 2}}))
        cli_env = {**env.cli_env(), "PREFECT_API_URL": PREFECT_API_URL.value() or ""}
        cmd = [sys.executable, "-m", "minyi.cli", "ingest", "--date", str(DAY), "--as-of", "2026-11-22T09:00:00+08:00"]

        third_page = threading.Event()
        server.on_page = lambda source, start: third_page.set() if start >= 200 else None
        for n in names:
            server.state(n).page_delay = 0.3
        proc = subprocess.Popen(cmd, env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert third_page.wait(120), "the pull never reached its third page"
        workers = _ingest_workers_of(proc.pid)
        assert len(workers) == 2, "both sources must be pulled in worker processes"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
        deadline = time.monotonic() + 5
        while any(_alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(_alive(w) for w in workers), "an orphaned worker kept running"
        time.sleep(0.5)  # a worker that went on would store its next page within this
        stored = dict(env.rows("SELECT source, COUNT(*) FROM records GROUP BY source"))
        cursors = dict(env.rows("SELECT source, cursor FROM ingest_checkpoints"))
        assert 0 < sum(stored.values()) < 1200, "the kill must land mid-pull"
        for n in names:
            assert cursors.get(n) == (str(stored[n]) if stored.get(n) else None)

        for n in names:
            server.state(n).page_delay = 0
        server.on_page = None
        done = subprocess.run(cmd, env=cli_env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr

    for n in names:
        ids = [r[0] for r in env.rows("SELECT record_id FROM records WHERE source = :s ORDER BY record_id", s=n)]
        assert ids == sorted(f"{n}-{i}" for i in range(600))
    assert env.scalar("SELECT COUNT(*) FROM ingest_checkpoints WHERE complete = :t", t=True) == 2
