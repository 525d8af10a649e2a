"""Time the report stage's store work (KPIs + rectification listing + files) over a bulk-loaded month.

    .venv/bin/python -m benchmarks.report --records 1000000 [--db sqlite|URL]

Loads N records spread over 30 business dates and 12 units, a follow-up per
record (85% sent, 70% of those answered, 15% of answers dissatisfied) and an
order per dissatisfied answer, then times compute_assessment, rectification and
write_reports once each.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from minyi.sim.city import UNITS
from minyi.tasks.config import TargetsConfig
from minyi.tasks.stages.kpis import compute_assessment
from minyi.tasks.stages.reports import rectification, report_paths, write_reports
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
            f"CASE WHEN id % 2 = 0 THEN {mark} END, NULL, NULL, {mark}, {mark} "
            "FROM followups WHERE satisfaction = 'dissatisfied'",
            (now, now, now, now, now, now),
        )


def main() -> None:
    from zoneinfo import ZoneInfo

    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--db", default="sqlite")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="minyi-bench-report-"))
    url = f"sqlite:///{tmp}/bench.db" if args.db == "sqlite" else args.db
    engine = get_engine(url)
    upgrade(engine)
    t0 = time.perf_counter()
    load(engine, args.records)
    print(f"loaded {args.records} records in {time.perf_counter() - t0:.1f}s ({engine.dialect.name})")
    tz = ZoneInfo(TZ_NAME)
    as_of = datetime(2026, 12, 1, 9, 30, tzinfo=tz)
    with engine.connect() as conn:
        t0 = time.perf_counter()
        assessment = compute_assessment(conn, date(2026, 11, 30), as_of, tz, TargetsConfig())
        t1 = time.perf_counter()
        rect = rectification(conn, date(2026, 11, 30), as_of, tz)
        t2 = time.perf_counter()
    write_reports(report_paths(tmp / "reports", date(2026, 11, 30)), assessment, rect, {})
    t3 = time.perf_counter()
    print(
        f"assessment {t1 - t0:.2f}s ({len(assessment['units'])} units, {assessment['overall']['orders_opened']} orders); "
        f"rectification {t2 - t1:.2f}s ({rect['summary']['orders']} orders); files+chart {t3 - t2:.2f}s"
    )


if __name__ == "__main__":
    main()
