"""Benchmark the quality stage (SPEC §8) on a day of N records: seconds and peak memory.

    .venv/bin/python -m benchmarks.quality --records 1000000 --db sqlite
    .venv/bin/python -m benchmarks.quality --records 1000000 --db postgres   # MINYI_TEST_PG_URL's server

Records are bulk-loaded with the ingest stage's own path (`store_page`, 50,000 a
page) into a fresh store, spread over the config's two sources; then the stage's
work (`validate_day` + `record_day`, Data Docs included) runs in a fresh child
process, so its peak RSS is the stage's alone (plus the imports, measured
separately as `baseline`).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

DAY = date(2026, 11, 21)
TZ = ZoneInfo("Asia/Shanghai")
SOURCES = ("police110", "window")
PAGE = 50_000

CONFIG = """timezone = "Asia/Shanghai"
[notify]
delivery = "files"
[[sources]]
name = "police110"
url = "http://127.0.0.1:9/police110"
[[sources]]
name = "window"
url = "http://127.0.0.1:9/window"
[[units]]
code = "QD-SN-PS01"
name = "市南分局八大关派出所"
channel = "C0SNPS01"
"""


def load(url: str, records: int, history_days: int) -> float:
    from minyi.tasks.rules.intake import Accepted
    from minyi.tasks.store.engine import get_engine, upgrade
    from minyi.tasks.store.records import store_page

    engine = get_engine(url)
    upgrade(engine)
    started = time.perf_counter()
    now = datetime(2026, 11, 22, 1, tzinfo=UTC)
    for back in range(history_days, -1, -1):
        day = DAY - timedelta(days=back)
        base = datetime.combine(day, datetime.min.time(), TZ) + timedelta(hours=8)
        for i, source in enumerate(SOURCES):
            share = records // len(SOURCES) + (records % len(SOURCES) if i == 0 else 0)
            for start in range(0, share, PAGE):
                rows = [
                    Accepted(
                        f"{source}-{day:%Y%m%d}-{n:08d}",
                        "110",
                        "police_call",
                        base + timedelta(seconds=n % 50_000),
                        "QD-SN-PS01" if n % 50 else "QD-XX-NEW",
                        None,
                        None,
                        f"139{n:08d}" if n % 20 else None,
                        "mobile" if n % 20 else "landline",
                        None,
                        False,
                    )
                    for n in range(start, min(share, start + PAGE))
                ]
                store_page(engine, source, day, rows, [], len(rows), None, now)
    engine.dispose()
    return time.perf_counter() - started


def measure(url: str, reports: str, baseline: bool) -> None:
    """Child process: run the stage once (or only the imports, for the baseline) and print JSON."""
    os.environ.update(MINYI_DATABASE_URL=url, MINYI_REPORTS_DIR=reports)
    started = time.perf_counter()
    import great_expectations  # noqa: F401  (the imports are part of the baseline)
    import prefect  # noqa: F401

    from minyi.tasks.runtime import load_runtime
    from minyi.tasks.stages.quality import record_day, report_dir_for, validate_day

    imported = time.perf_counter() - started
    out = {"imports_s": round(imported, 2)}
    if not baseline:
        rt = load_runtime()
        as_of = datetime(2026, 11, 22, 9, tzinfo=TZ)
        report = report_dir_for(rt, DAY)
        t = time.perf_counter()
        found = validate_day(rt, DAY, as_of, report / "data_docs")
        out["validate_s"] = round(time.perf_counter() - t, 2)
        t = time.perf_counter()
        summary = record_day(rt, DAY, as_of, found, False, report)
        out["record_s"] = round(time.perf_counter() - t, 2)
        out["gates"] = {s.source: s.gate for s in summary.sources}
        out["accepted"] = sum(s.accepted for s in summary.sources)
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps(out))


def child(args: list[str]) -> dict:
    proc = subprocess.run([sys.executable, "-m", "benchmarks.quality", *args], capture_output=True, text=True)
    if proc.returncode:
        sys.exit(proc.stderr)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--records", type=int, default=1_000_000, help="records on the validated day")
    p.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    p.add_argument("--history-days", type=int, default=0, help="earlier days of the same volume (the median)")
    p.add_argument("--measure", help=argparse.SUPPRESS)
    p.add_argument("--reports", help=argparse.SUPPRESS)
    p.add_argument("--baseline", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args()
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    if a.measure:
        measure(a.measure, a.reports, a.baseline)
        return

    work = Path(tempfile.mkdtemp(prefix="minyi-bench-quality-"))
    (work / "minyi.toml").write_text(CONFIG, encoding="utf-8")
    os.environ["MINYI_CONFIG"] = str(work / "minyi.toml")
    admin = None
    if a.db == "sqlite":
        url = f"sqlite:///{work / 'bench.db'}"
    else:
        from sqlalchemy import create_engine, text
        from sqlalchemy.engine import make_url

        admin_url = os.environ.get("MINYI_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
        name = f"minyi_bench_{uuid.uuid4().hex[:8]}"
        admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        loaded = load(url, a.records, a.history_days)
        print(f"loaded {a.records:,} records/day x {a.history_days + 1} day(s) into {a.db} in {loaded:.1f}s")
        base = child(["--measure", url, "--reports", str(work / "reports"), "--baseline"])
        run = child(["--measure", url, "--reports", str(work / "reports")])
        print(
            f"quality stage on {run['accepted']:,} records ({a.db}): validate {run['validate_s']}s, "
            f"record {run['record_s']}s, peak RSS {run['peak_rss_mb']} MB "
            f"(imports alone: {base['peak_rss_mb']} MB, {base['imports_s']}s); gates {run['gates']}"
        )
    finally:
        if admin is not None:
            from sqlalchemy import text

            from minyi.tasks.store.engine import dispose_engines

            dispose_engines()
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


if __name__ == "__main__":
    main()
