"""The escalation sweep over N open supervision orders (SPEC §6), on SQLite or PostgreSQL.

    python -m benchmarks.supervise_sweep --orders 1000000 --db sqlite
    python -m benchmarks.supervise_sweep --orders 1000000 --db postgres

N records, follow-ups and orders are bulk-loaded (executemany on SQLite, COPY
on PostgreSQL) with their due instants already computed, opened evenly over
the 30 days before as_of; 30% responded, 10% closed, 1 in 50 at an unknown
unit. Then three sweeps are timed, each `run_escalations` in one transaction,
exactly what the supervise flow's `escalate` task runs:

1. catch-up at as_of: the first sweep ever over the whole backlog, so every
   order already past a clock fires (the worst case: ~1.3 escalations and
   ~2.6 posts per order, all enqueued in the outbox);
2. the next day's sweep (as_of + 1 day): the steady state, firing only what
   crossed a clock since;
3. a re-run of (2): nothing new; the cost of proving it.

`refresh_dues` over the N orders (dues computed from scratch) is timed too.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from benchmarks.common import peak_rss_mib, throwaway_store

TZ = ZoneInfo("Asia/Shanghai")
AS_OF = datetime(2026, 11, 30, 9, 0, tzinfo=TZ)
UNITS = [("QD-SN-PS01", "C0SNPS01"), ("QD-SB-PS01", "C0SBPS01"), ("QD-CGS", "C0CGS")]
CHUNK = 50_000


def _config() -> str:
    lines = ['timezone = "Asia/Shanghai"', "", "[notify]", 'delivery = "files"', "", "[clock]", 'mode = "working"', ""]
    for code, channel in UNITS:
        lines += ["[[units]]", f'code = "{code}"', f'name = "单位 {code}"', f'channel = "{channel}"', ""]
    return "\n".join(lines)


def _load(engine: Any, table: str, columns: list[str], rows: Iterator[tuple]) -> None:
    """Bulk-load rows: sqlite3 executemany in one transaction, or psycopg COPY."""
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        cols = ", ".join(columns)
        if engine.dialect.name == "sqlite":
            batch: list[tuple] = []
            sql = f"INSERT INTO {table} ({cols}) VALUES ({', '.join('?' * len(columns))})"
            for row in rows:
                batch.append(row)
                if len(batch) >= CHUNK:
                    cur.executemany(sql, batch)
                    batch.clear()
            if batch:
                cur.executemany(sql, batch)
        else:
            with cur.copy(f"COPY {table} ({cols}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        raw.commit()
    finally:
        raw.close()


def load_orders(url: str, n: int) -> None:
    from minyi.tasks.rules.calendar import load_calendar
    from minyi.tasks.rules.clocks import due_instant
    from minyi.tasks.store.engine import get_engine, instant_param

    engine = get_engine(url)
    d = engine.dialect.name
    cal = load_calendar(None)

    def ts(value: datetime | None) -> Any:
        return instant_param(d, value)

    def opened_at(i: int) -> datetime:
        # evenly over the 30 days before as_of, at any minute of the day
        return AS_OF - timedelta(days=1 + i % 30, minutes=(i * 7919) % 1440)

    def unit(i: int) -> str:
        return "QD-XX-UNKNOWN" if i % 50 == 0 else UNITS[i % len(UNITS)][0]

    now = ts(AS_OF)
    _load(
        engine,
        "records",
        "source record_id business_date channel matter handled_at unit_code phone_kind confidential "
        "ingested_at updated_at".split(),
        (
            (
                "police110",
                f"110-{i:09d}",
                date(2026, 11, 1),
                "110",
                "police_call",
                now,
                unit(i),
                "mobile",
                False,
                now,
                now,
            )
            for i in range(n)
        ),
    )
    with engine.begin() as conn:
        from sqlalchemy import text

        conn.execute(
            text(
                "INSERT INTO followups (record_pk, source, record_id, business_date, unit_code, plan, planned_at) "
                "SELECT id, source, record_id, business_date, unit_code, 'sms', handled_at FROM records ORDER BY id"
            )
        )
    ids = {}
    with engine.connect() as conn:
        for fid, rid in conn.exec_driver_sql("SELECT id, record_id FROM followups"):
            ids[rid] = fid

    def order(i: int) -> tuple:
        opened = opened_at(i)
        response = due_instant(opened, 3, cal, "working", TZ)
        completion = due_instant(opened, 5, cal, "working", TZ)
        state = i % 10
        responded = opened + timedelta(hours=20) if state < 4 else None  # 0-3 responded, 0 also closed
        closed = opened + timedelta(days=2) if state == 0 else None
        status = "closed" if closed else ("responded" if responded else "open")
        rid = f"110-{i:09d}"
        return (
            ids[rid],
            "police110",
            rid,
            unit(i),
            ts(opened),
            status,
            "resolved" if closed else None,
            ts(response),
            ts(completion),
            ts(responded),
            ts(closed),
            now,
            now,
        )

    _load(
        engine,
        "orders",
        "followup_id source record_id unit_code opened_at status resolution response_due completion_due "
        "responded_at closed_at created_at updated_at".split(),
        (order(i) for i in range(n)),
    )
    ids.clear()
    # Committed, or PostgreSQL forgets the statistics with the transaction.
    with engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE")


def timed_sweep(url: str, as_of: datetime) -> tuple[float, dict[str, int]]:
    from minyi.tasks.config import load_config
    from minyi.tasks.stages.escalation import run_escalations
    from minyi.tasks.store.engine import get_engine

    engine = get_engine(url)
    cfg = load_config()
    t0 = time.perf_counter()
    with engine.begin() as conn:
        fired = run_escalations(conn, cfg, as_of)
    return time.perf_counter() - t0, fired


def timed_refresh(url: str) -> tuple[float, int]:
    from minyi.tasks.config import load_config
    from minyi.tasks.stages.orders import clock_calendar, refresh_dues
    from minyi.tasks.store.engine import get_engine

    engine = get_engine(url)
    cfg = load_config()
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE orders SET response_due = NULL, completion_due = NULL")
    t0 = time.perf_counter()
    with engine.begin() as conn:
        updated, _ = refresh_dues(
            conn, clock_calendar(cfg), cfg.clock.mode, cfg.clock.response_days, cfg.clock.completion_days, cfg.tz
        )
    return time.perf_counter() - t0, updated


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    from minyi.tasks.runtime import quiet_third_parties

    quiet_third_parties()
    with throwaway_store(args.db) as url, tempfile.TemporaryDirectory() as tmp:
        cfg_path = Path(tmp) / "minyi.toml"
        cfg_path.write_text(_config(), encoding="utf-8")
        os.environ.update(MINYI_CONFIG=str(cfg_path), MINYI_DATABASE_URL=url)
        from minyi.tasks.config import load_config
        from minyi.tasks.store.engine import get_engine, upgrade
        from minyi.tasks.store.units import sync_units

        engine = get_engine(url)
        upgrade(engine)
        with engine.begin() as conn:
            sync_units(conn, load_config())
        t0 = time.perf_counter()
        load_orders(url, args.orders)
        load_seconds = time.perf_counter() - t0

        catch_up, fired_1 = timed_sweep(url, AS_OF)
        next_day, fired_2 = timed_sweep(url, AS_OF + timedelta(days=1))
        rerun, fired_3 = timed_sweep(url, AS_OF + timedelta(days=1))
        with engine.connect() as conn:
            posts = conn.exec_driver_sql("SELECT COUNT(*) FROM notifications").scalar_one()
        refresh, refreshed = timed_refresh(url)

    figures = {
        "benchmark": "supervise_sweep",
        "db": args.db,
        "orders": args.orders,
        "load_seconds": round(load_seconds, 1),
        "catch_up_sweep_seconds": round(catch_up, 2),
        "catch_up_fired": fired_1,
        "posts_enqueued_total": posts,
        "next_day_sweep_seconds": round(next_day, 2),
        "next_day_fired": fired_2,
        "rerun_sweep_seconds": round(rerun, 2),
        "rerun_fired": fired_3,
        "refresh_dues_seconds": round(refresh, 2),
        "refresh_dues_orders": refreshed,
        "peak_rss_mib": round(peak_rss_mib()),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures), encoding="utf-8")


if __name__ == "__main__":
    main()
