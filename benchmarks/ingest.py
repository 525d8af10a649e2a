"""Ingest throughput: N synthetic records pulled over loopback HTTP into the store, against a raw baseline.

    python -m benchmarks.ingest --records 100000 --db sqlite
    python -m benchmarks.ingest --records 100000 --db postgres

The baseline inserts the same rows with sqlite3 executemany in one transaction
(or psycopg COPY on PostgreSQL) into an empty copy of the records table.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from datetime import date, datetime
from datetime import time as dtime
from pathlib import Path
from zoneinfo import ZoneInfo

from benchmarks.common import city_source, peak_rss_mib, throwaway_store
from minyi.sim.city import SOURCES

TZ = ZoneInfo("Asia/Shanghai")


def _config(url: str) -> str:
    lines = ['timezone = "Asia/Shanghai"', "[notify]", 'delivery = "files"', "[ingest]", "page_size = 5000", ""]
    for s in SOURCES:
        lines += ["[[sources]]", f'name = "{s.name}"', f'url = "{url}/{s.name}"', ""]
    return "\n".join(lines)


def baseline_seconds(engine_url: str) -> float:
    """Insert the stored rows again, the fastest plain way the database offers, and time only that."""
    from minyi.tasks.store.engine import get_engine

    engine = get_engine(engine_url)
    cols = (
        "source, record_id, business_date, channel, matter, handled_at, unit_code, officer_id, citizen_name, "
        "phone_norm, phone_kind, summary, confidential, ingested_at, updated_at"
    )
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute(f"SELECT {cols} FROM records")
        rows = cur.fetchall()
        if engine.dialect.name == "sqlite":
            cur.execute("CREATE TABLE baseline AS SELECT * FROM records WHERE 0")
            raw.commit()
            t0 = time.perf_counter()
            cur.executemany(f"INSERT INTO baseline ({cols}) VALUES ({', '.join('?' * 15)})", rows)
            raw.commit()
        else:
            cur.execute("CREATE TABLE baseline (LIKE records INCLUDING DEFAULTS)")
            raw.commit()
            t0 = time.perf_counter()
            with cur.copy(f"COPY baseline ({cols}) FROM STDIN") as copy:
                for r in rows:
                    copy.write_row(r)
            raw.commit()
        return time.perf_counter() - t0
    finally:
        raw.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    day = date(2026, 11, 21)
    as_of = datetime.combine(date(2026, 11, 22), dtime(9, 0), TZ)

    from minyi.tasks.runtime import quiet_third_parties

    quiet_third_parties()
    with (
        throwaway_store(args.db) as url,
        city_source(args.records, day) as source_url,
        tempfile.TemporaryDirectory() as tmp,
    ):
        cfg = Path(tmp) / "minyi.toml"
        cfg.write_text(_config(source_url), encoding="utf-8")
        os.environ.update(MINYI_CONFIG=str(cfg), MINYI_DATABASE_URL=url, MINYI_REPORTS_DIR=str(Path(tmp) / "r"))
        from prefect import flow

        from minyi.flows.ingest import ingest
        from minyi.tasks.store.engine import get_engine, upgrade

        upgrade(get_engine(url))

        @flow
        def warm_up() -> None:
            """Start Prefect's ephemeral API before timing."""

        warm_up()
        load_before = os.getloadavg()[0]
        t0 = time.perf_counter()
        summary = ingest(business_date=day, as_of=as_of)
        flow_seconds = time.perf_counter() - t0
        load_after = os.getloadavg()[0]
        from minyi.tasks.runtime import load_runtime
        from minyi.tasks.stages.ingest import ingest_workers

        workers = ingest_workers(load_runtime(), len(summary.sources))
        fetched = sum(p.fetched for p in summary.sources)
        base = baseline_seconds(url)
    figures = {
        "benchmark": "ingest",
        "db": args.db,
        "records": fetched,
        "accepted": sum(p.accepted for p in summary.sources),
        "ingest_seconds": round(flow_seconds, 2),
        "ingest_rows_per_s": round(fetched / flow_seconds),
        "baseline": "sqlite3 executemany, one transaction" if args.db == "sqlite" else "psycopg COPY",
        "baseline_seconds": round(base, 2),
        "ratio_to_baseline": round(flow_seconds / base, 2),
        "workers": workers or 1,  # 1 = pulled in the flow's own process
        "source_seconds": {p.source: p.seconds for p in summary.sources},
        "peak_rss_mib": round(peak_rss_mib()),
        "load_average": [round(load_before, 2), round(load_after, 2)],  # 1-minute, before and after the ingest
    }
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures), encoding="utf-8")


if __name__ == "__main__":
    main()
