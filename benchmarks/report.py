"""Time the report stage's store work (KPIs with lineage.csv + rectification listing + files) over a bulk-loaded month.

    .venv/bin/python -m benchmarks.report --records 1000000 [--db sqlite|URL] [--store FILE] [--runs N]

Loads N records spread over 30 business dates and 12 units, a follow-up per
record (85% sent, 70% of those answered, 15% of answers dissatisfied) and an
order per dissatisfied answer, then times, as the daily loop's build-reports task
does them, compute_assessment with its lineage.csv, rectification and
write_reports, and then the warnings step's find_warnings; `--runs` times are
printed with the load average before and after each. `--store FILE` keeps the
SQLite store (loaded only when the file does not exist yet), so two trees can be
timed back-to-back on the same data (any store, e.g. one a daily-loop run left,
with `--date`/`--as-of` of that run); a PostgreSQL URL is loaded unless it already
holds records. The sha256 of every file written is printed (lineage.csv also with
its lines sorted), to check that a change leaves the output unchanged.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from benchmarks.common import peak_rss_mib
from minyi.flows.report import COUNT_PARTS
from minyi.sim.city import UNITS
from minyi.tasks.config import TargetsConfig
from minyi.tasks.stages.kpis import compute_assessment
from minyi.tasks.stages.reports import LineageFile, rectification, report_paths, write_reports
from minyi.tasks.stages.warnings import find_warnings
from minyi.tasks.store.engine import get_engine, instant_param, raw_transaction, upgrade

TZ_NAME = "Asia/Shanghai"


def load(engine, n: int) -> None:  # type: ignore[no-untyped-def]
    dialect = engine.dialect.name
    units = [u[0] for u in UNITS]
    start = date(2026, 11, 1)
    now = instant_param(dialect, datetime(2026, 12, 1, 1, 0, tzinfo=UTC))
    mark = "?" if dialect == "sqlite" else "%s"
    batch = 50_000
    with raw_transaction(engine) as db:
        cur = db.cursor()
        for lo in range(0, n, batch):
            recs, fus = [], []
            for i in range(lo, min(n, lo + batch)):
                day = start + timedelta(days=i % 30)
                handled = instant_param(dialect, datetime(day.year, day.month, day.day, 2, tzinfo=UTC))
                recs.append(
                    (
                        i + 1,
                        "police110",
                        f"R{i:08d}",
                        day,
                        "110",
                        "police_call",
                        handled,
                        units[i % 12],
                        "mobile",
                        now,
                        now,
                        False,
                    )
                )
                sent = i % 100 < 85
                answer = None
                if sent and i % 10 < 7:
                    answer = "dissatisfied" if i % 20 < 3 else ("satisfied" if i % 3 else "basically_satisfied")
                fus.append(
                    (
                        i + 1,
                        i + 1,
                        "police110",
                        f"R{i:08d}",
                        day,
                        units[i % 12],
                        "sms",
                        "sent" if sent else "queued",
                        answer,
                        now,
                    )
                )
            cur.executemany(
                "INSERT INTO records (id, source, record_id, business_date, channel, matter, handled_at, unit_code, "
                f"phone_kind, ingested_at, updated_at, confidential) VALUES ({', '.join([mark] * 12)})",
                recs,
            )
            cur.executemany(
                "INSERT INTO followups (id, record_pk, source, record_id, business_date, unit_code, plan, sms_status, "
                f"satisfaction, planned_at) VALUES ({', '.join([mark] * 10)})",
                fus,
            )
        cur.execute(
            "INSERT INTO orders (followup_id, source, record_id, unit_code, opened_at, status, response_due, "
            "completion_due, responded_at, closed_at, resolution, created_at, updated_at) "
            f"SELECT id, source, record_id, unit_code, {mark}, 'open', {mark}, {mark}, "
            f"CASE WHEN (id / 2) * 2 = id THEN {mark} END, NULL, NULL, {mark}, {mark} "  # even ids (no % : a psycopg placeholder)
            "FROM followups WHERE satisfaction = 'dissatisfied'",
            (now, now, now, now, now, now),
        )


def _digest(path: Path, sort_lines: bool = False) -> str:
    data = path.read_bytes()
    if sort_lines:  # lineage.csv's cells hold no newline here (R00000001 …), so a line is a row
        data = b"\n".join(sorted(data.split(b"\n")))
    return hashlib.sha256(data).hexdigest()[:16]


def _load_average() -> str:
    return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def main() -> None:
    from zoneinfo import ZoneInfo

    from sqlalchemy import text

    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--db", default="sqlite")
    ap.add_argument("--store", type=Path, help="SQLite file to keep between runs (loaded when missing)")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--parts", type=int, default=COUNT_PARTS, help="the record grouping's statements side by side")
    ap.add_argument("--date", type=date.fromisoformat, default=date(2026, 11, 30), help="business date reported")
    ap.add_argument("--as-of", type=datetime.fromisoformat, help="default: the next day 09:30 local")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="minyi-bench-report-"))
    if args.db != "sqlite":
        url = args.db
    elif args.store:
        url = f"sqlite:///{args.store.resolve()}"
    else:
        url = f"sqlite:///{tmp}/bench.db"
    engine = get_engine(url)
    upgrade(engine)
    with engine.connect() as conn:
        loaded = conn.execute(text("SELECT COUNT(*) FROM records")).scalar_one()
    if loaded == 0:
        t0 = time.perf_counter()
        load(engine, args.records)
        print(f"loaded {args.records} records in {time.perf_counter() - t0:.1f}s ({engine.dialect.name})")
    elif loaded != args.records and not args.store:
        raise SystemExit(f"the store holds {loaded} records, not {args.records}")
    tz = ZoneInfo(TZ_NAME)
    day = args.date
    as_of = args.as_of or datetime.combine(day + timedelta(days=1), datetime.min.time().replace(hour=9, minute=30), tz)
    files = report_paths(tmp / "reports", day)
    for _ in range(args.runs):
        before = _load_average()
        with engine.connect() as conn, LineageFile(files.lineage_csv) as lineage:
            c0 = time.process_time()
            t0 = time.perf_counter()
            assessment = compute_assessment(conn, day, as_of, tz, TargetsConfig(), lineage=lineage, parts=args.parts)
            t1 = time.perf_counter()
            rect = rectification(conn, day, as_of, tz)
            t2 = time.perf_counter()
        t3 = time.perf_counter()
        write_reports(files, assessment, rect, {})
        t4 = time.perf_counter()
        c4 = time.process_time()
        with engine.connect() as conn:
            warnings = find_warnings(conn, day, as_of, tz)
        t5 = time.perf_counter()
        c5 = time.process_time()
        print(
            f"report {t4 - t0:.2f}s (this process's CPU {c4 - c0:.2f}s) = assessment+lineage {t1 - t0:.2f}s ({len(assessment['units'])} units, "
            f"{lineage.rows} lineage rows) + rectification {t2 - t1:.2f}s ({rect['summary']['orders']} orders) "
            f"+ close lineage {t3 - t2:.2f}s + files+chart {t4 - t3:.2f}s; warnings {t5 - t4:.2f}s (CPU {c5 - c4:.2f}s) "
            f"({len(warnings['warnings'])}); load {before} -> {_load_average()} ({engine.dialect.name})"
        )
    print(f"peak RSS {peak_rss_mib():.0f} MiB")
    names = ("assessment_json", "assessment_csv", "rectification_json", "rectification_csv", "lineage_csv")
    print("sha256", " ".join(f"{n}={_digest(getattr(files, n))}" for n in names), end=" ")
    print(f"lineage_sorted={_digest(files.lineage_csv, sort_lines=True)}")


if __name__ == "__main__":
    main()
