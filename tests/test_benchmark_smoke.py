"""The daily-loop benchmark still runs end to end (a small N; the timed runs are in docs/performance.md).

Not a timed test: it proves the script works from a fresh store and prints the
figures it promises, so `make bench` cannot rot between measurements.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RECORDS = 3000


@pytest.mark.usefixtures("prefect_harness")
def test_daily_loop_benchmark_prints_every_figure_and_stays_within_200_task_runs(tmp_path: Path) -> None:
    from prefect.settings import PREFECT_API_URL

    out = tmp_path / "bench.json"
    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}  # the session's API: no second server
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.daily_loop",
            "--records",
            str(RECORDS),
            "--db",
            "sqlite",
            "--json",
            str(out),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    printed = json.loads(done.stdout[done.stdout.index("{") :])
    assert printed == json.loads(out.read_text(encoding="utf-8"))
    assert printed["records"] == RECORDS
    stages = printed["stage_seconds"]
    # in the loop's order; the warnings are found beside the report stage and posted after it
    assert list(stages) == ["ingest", "quality", "followup", "supervise", "find-warnings", "report", "warnings"]
    # quality runs beside follow-up planning, so the stages may add up to more than the loop
    assert all(0 <= seconds <= printed["loop_seconds"] for seconds in stages.values())
    assert printed["loop_seconds"] > 0 and printed["baseline_seconds"] > 0
    assert printed["loop_to_baseline"] > 0 and printed["ingest_to_baseline"] > 0
    assert 0 < printed["peak_rss_mib"] < 2048
    assert printed["peak_rss_mib"] <= printed["peak_tree_rss_mib"] < 2048  # the tree holds the loop process too
    assert printed["shape"] == "city"
    assert 0 < printed["task_runs"] <= 200
    assert len(printed["load_average"]) == 2
    assert printed["gc"] and all(passes >= 0 and seconds >= 0 for passes, seconds in printed["gc"].values())
