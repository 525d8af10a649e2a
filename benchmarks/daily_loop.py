"""The whole daily loop on N synthetic records: per-stage seconds, rows/s, peak RSS, task runs, and a baseline.

    python -m benchmarks.daily_loop --records 100000 --db sqlite
    python -m benchmarks.daily_loop --records 1000000 --db postgres --json bench-results/pg-1m.json
    python -m benchmarks.daily_loop --records 1000000 --shape one      # the whole day from one source

The city's day is pre-rendered by a source process and served on loopback; the
SMS gateway runs in its own process; Slack is disabled (posts become files). The
loop runs at 09:00 local of the next day, inside the send window, so every
eligible SMS leaves. The baseline, measured in the same run, inserts the same
records with sqlite3 executemany in one transaction (PostgreSQL: COPY) into an
index-free copy of the table. Per-stage seconds are the loop's own (its summary),
task runs are counted in the Prefect API.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime
from datetime import time as dtime
from pathlib import Path
from uuid import UUID
from zoneinfo import ZoneInfo

from benchmarks.common import (
    GcPauses,
    TreeProbe,
    city_source,
    die_with_parent,
    free_port,
    peak_rss_mib,
    throwaway_store,
)
from benchmarks.ingest import baseline_seconds
from minyi.demo import demo_config_text

TZ = ZoneInfo("Asia/Shanghai")
DAY = date(2026, 11, 21)
AS_OF = datetime.combine(date(2026, 11, 22), dtime(9, 0), TZ)


async def _task_runs(loop_run_id: UUID) -> int:
    """Task runs of this loop's run tree, from the Prefect API.

    Only the loop's own run and its subflows count: the API may be shared with
    other runs (a developer's server, the test session's harness).
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, FlowRunFilterParentFlowRunId

    async with get_client() as client:
        runs = await client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[loop_run_id])))
        parents = [loop_run_id]
        while parents:
            children = await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=parents)),
                limit=200,
            )
            runs += children
            parents = [r.id for r in children]
        tasks = 0
        while True:
            page = await client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[r.id for r in runs])), limit=200, offset=tasks
            )
            tasks += len(page)
            if len(page) < 200:
                break
    # every subflow also shows as one wrapper task run in its parent: those are not tasks of ours
    return tasks - (len(runs) - 1)


def _only_source(config_text: str, name: str) -> str:
    """The demo config with one [[sources]] table left: the one-source day."""
    blocks = config_text.split("\n\n")
    keep = [b for b in blocks if not b.startswith("[[sources]]") or f'name = "{name}"' in b]
    return "\n\n".join(keep)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument(
        "--shape", choices=("city", "one"), default="city", help="six sources by share, or the whole day from one"
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    from minyi.tasks.runtime import quiet_third_parties

    quiet_third_parties()
    sms_port = free_port()
    gateway = subprocess.Popen(
        [sys.executable, "-m", "minyi.sim.sms_gateway", "--port", str(sms_port)],
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=die_with_parent,
    )
    stand_ins = {gateway.pid}
    try:
        assert gateway.stdout is not None
        gateway.stdout.readline()
        with (
            throwaway_store(args.db) as url,
            city_source(args.records, DAY, shape=args.shape, pids=stand_ins) as source_url,
            tempfile.TemporaryDirectory() as tmp,
        ):
            cfg = Path(tmp) / "minyi.toml"
            text = demo_config_text(source_url, f"http://127.0.0.1:{sms_port}")
            if args.shape == "one":
                text = _only_source(text, "police110")
            cfg.write_text(
                text.replace(
                    'timezone = "Asia/Shanghai"', 'timezone = "Asia/Shanghai"\n\n[ingest]\npage_size = 5000\n'
                ),
                encoding="utf-8",
            )
            os.environ.update(
                MINYI_CONFIG=str(cfg),
                MINYI_DATABASE_URL=url,
                MINYI_REPORTS_DIR=str(Path(tmp) / "reports"),
                MINYI_HOME=str(Path(tmp) / "home"),
            )
            # as `minyi` does: Prefect's 20 s default for its temporary server timed out on a loaded machine
            os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
            from prefect import flow

            from minyi.flows.daily_loop import daily_loop
            from minyi.tasks.store.engine import get_engine, upgrade

            upgrade(get_engine(url))

            @flow
            def warm_up() -> None:
                """Start Prefect's ephemeral API before timing."""

            from prefect.settings import PREFECT_API_URL

            if not PREFECT_API_URL.value():  # no server yet: start the ephemeral one before timing
                warm_up()
            pauses = GcPauses()
            load_before = os.getloadavg()[0]
            t0 = time.perf_counter()
            with TreeProbe(stand_ins, marker="minyi.tasks.stages.ingest_worker") as tree, pauses:
                state = daily_loop(business_date=DAY, as_of=AS_OF, return_state=True)
            loop_seconds = time.perf_counter() - t0
            rss = peak_rss_mib()
            load_after = os.getloadavg()[0]
            summary = state.result()
            assert state.state_details.flow_run_id is not None
            task_runs = asyncio.run(_task_runs(state.state_details.flow_run_id))
            stages = summary.seconds
            fetched = sum(p.fetched for p in summary.ingest.sources)
            base = baseline_seconds(url)
    finally:
        gateway.terminate()
        gateway.wait(10)
    ingest_s = stages.get("ingest", 0.0)
    figures = {
        "benchmark": "daily_loop",
        "db": args.db,
        "shape": args.shape,
        "records": fetched,
        "loop_seconds": round(loop_seconds, 2),
        "loop_rows_per_s": round(fetched / loop_seconds),
        "stage_seconds": stages,
        "ingest_rows_per_s": round(fetched / ingest_s) if ingest_s else None,
        "baseline": "sqlite3 executemany, one transaction" if args.db == "sqlite" else "psycopg COPY",
        "baseline_seconds": round(base, 2),
        "loop_to_baseline": round(loop_seconds / base, 1),
        "ingest_to_baseline": round(ingest_s / base, 1) if ingest_s else None,
        "peak_rss_mib": round(rss),
        # each ingest worker process peaks at most this; the loop's worst case is peak_rss_mib + workers × this
        "ingest_worker_peak_rss_mib": round(tree.marked_peak_mib),
        "ingest_workers": tree.marked,
        # the loop and every worker it started, summed at each sample (the stand-ins excluded)
        # sampled every 50 ms, so a short peak of the loop's own process can fall between two samples:
        # the tree held at least what the loop process itself peaked at
        "peak_tree_rss_mib": round(max(tree.peak_mib, rss)),
        "prefect_server_rss_mib": round(tree.server_peak_mib),  # a temporary server, when the loop started one
        "task_runs": task_runs,
        # the loop process's garbage-collector passes: {generation: [passes, seconds with the GIL held]}
        "gc": pauses.figures(),
        # the machine may be shared: the 1-minute load average before and after the loop
        "load_average": [round(load_before, 2), round(load_after, 2)],
    }
    print(json.dumps(figures, indent=2, ensure_ascii=False))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, ensure_ascii=False), encoding="utf-8")


if __name__ == "__main__":
    main()
