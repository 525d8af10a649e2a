"""Messages per second through the SMS outbox to the local gateway (SPEC §4), on SQLite or PostgreSQL.

    python -m benchmarks.sms_outbox --followups 100000 --db sqlite
    python -m benchmarks.sms_outbox --followups 100000 --db postgres --batch-size 500

N records with distinct mobiles are bulk-stored for one business date, then
timed: planning (the one eligibility statement), the relay at 09:00 (every
message sent in `batch_size` batches over real HTTP to the gateway, which runs
in its own process so it does not share our GIL), and a re-run of the relay
(nothing to send: the cost of proving it).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from benchmarks.common import die_with_parent, free_port, peak_rss_mib, throwaway_store

TZ = ZoneInfo("Asia/Shanghai")
DAY = date(2026, 11, 21)
AS_OF = datetime(2026, 11, 22, 9, 0, tzinfo=TZ)
CHUNK = 5000


def _load(url: str, n: int) -> None:
    from minyi.tasks.rules.intake import Accepted
    from minyi.tasks.store.engine import get_engine
    from minyi.tasks.store.records import store_page

    engine = get_engine(url)
    base = datetime(2026, 11, 21, 8, 0, tzinfo=TZ)
    for start in range(0, n, CHUNK):
        rows = [
            Accepted(
                record_id=f"110-20261121-{i:07d}",
                channel="110",
                matter="police_call",
                handled_at=base + timedelta(seconds=i % 50_000),
                unit_code="QD-SN-PS01",
                officer_id=None,
                citizen_name=None,
                phone_norm=f"139{i:08d}",
                phone_kind="mobile",
                summary=None,
                confidential=False,
            )
            for i in range(start, min(start + CHUNK, n))
        ]
        store_page(engine, "police110", DAY, rows, [], len(rows), None, AS_OF)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--followups", type=int, default=100_000)
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--batch-size", type=int, default=500)
    args = parser.parse_args()

    port = free_port()
    gateway = subprocess.Popen(
        [sys.executable, "-m", "minyi.sim.sms_gateway", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        preexec_fn=die_with_parent,
    )
    try:
        gateway.stdout.readline()  # "listening on …"
        with throwaway_store(args.db) as url, tempfile.TemporaryDirectory() as tmp:
            cfg = Path(tmp) / "minyi.toml"
            cfg.write_text(
                '[notify]\ndelivery = "files"\n\n'
                f'[sms]\nurl = "http://127.0.0.1:{port}"\nbatch_size = {args.batch_size}\n\n'
                '[[units]]\ncode = "QD-SN-PS01"\nname = "市南分局八大关派出所"\nchannel = "C0SNPS01"\n',
                encoding="utf-8",
            )
            os.environ["MINYI_CONFIG"] = str(cfg)
            os.environ["MINYI_DATABASE_URL"] = url
            from minyi.tasks.adapters.sms import GatewayClient
            from minyi.tasks.runtime import load_runtime
            from minyi.tasks.stages.eligibility import plan_followups
            from minyi.tasks.stages.sms import flush_outbox
            from minyi.tasks.store.engine import upgrade
            from minyi.tasks.store.units import sync_units

            rt = load_runtime(check_store=False)
            upgrade(rt.engine)
            with rt.engine.begin() as conn:
                sync_units(conn, rt.config)
            t0 = time.perf_counter()
            _load(url, args.followups)
            load_s = time.perf_counter() - t0

            t0 = time.perf_counter()
            with rt.engine.begin() as conn:
                plan = plan_followups(conn, DAY, AS_OF, rt.config)
            plan_s = time.perf_counter() - t0

            with GatewayClient.from_config(rt.config) as client:
                t0 = time.perf_counter()
                sent = flush_outbox(rt.engine, rt.config, client, AS_OF)
                send_s = time.perf_counter() - t0
                t0 = time.perf_counter()
                again = flush_outbox(rt.engine, rt.config, client, AS_OF + timedelta(hours=1))
                rerun_s = time.perf_counter() - t0
            print(
                json.dumps(
                    {
                        "db": args.db,
                        "followups": args.followups,
                        "batch_size": args.batch_size,
                        "load_records_s": round(load_s, 2),
                        "plan_s": round(plan_s, 2),
                        "planned_sms": plan.sms,
                        "sent": sent.sent,
                        "batches": sent.batches,
                        "send_s": round(send_s, 2),
                        "messages_per_s": round(sent.sent / send_s),
                        "plan_and_send_messages_per_s": round(sent.sent / (plan_s + send_s)),
                        "rerun_sent": again.sent,
                        "rerun_s": round(rerun_s, 3),
                        "peak_rss_mib": round(peak_rss_mib(), 1),
                    },
                    indent=2,
                )
            )
    finally:
        gateway.terminate()
        gateway.wait(10)


if __name__ == "__main__":
    main()
