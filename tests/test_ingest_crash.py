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
        env.write_config(config_toml({"police110": server.url_for("police110")}))
        cli_env = {**env.cli_env(), "PREFECT_API_URL": PREFECT_API_URL.value() or ""}
        cmd = [sys.executable, "-m", "minyi.cli", "ingest", "--date", str(DAY), "--as-of", "2026-11-22T09:00:00+08:00"]

        fifth_page = threading.Event()
        server.on_page = lambda source, start: fifth_page.set() if start >= 400 else None
        server.state("police110").page_delay = 0.3
        proc = subprocess.Popen(cmd, env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert fifth_page.wait(120), "the pull never reached its fifth page"
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
