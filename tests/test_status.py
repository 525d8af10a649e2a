"""`minyi status` (SPEC §9): the duty officer's screen shows the figures the reports hold."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from datetime import timedelta

from minyi.tasks.stages.visits import list_visits
from minyi.tasks.store.runs import record_run
from tests.month import AS_OF, BUSINESS_DATE, build_month
from tests.support import Env, config_toml


def minyi(env: Env, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "minyi.cli", *args], env=env.cli_env(), capture_output=True, text=True, timeout=120
    )


def _row(out: str, label: str) -> list[str]:
    (line,) = [ln for ln in out.splitlines() if label in ln]
    return [c.strip() for c in re.split(r"[│┃|]", line) if c.strip()]


def test_minyi_status_prints_the_figures_the_reports_hold(env: Env, prefect_harness: None) -> None:
    from minyi.flows.report import report

    env.write_config(config_toml())
    build_month(env.engine)
    report(business_date=BUSINESS_DATE, as_of=AS_OF)
    rect = json.loads((env.dir / "reports" / BUSINESS_DATE.isoformat() / "rectification.json").read_text())
    record_run(env.engine, "daily-loop", BUSINESS_DATE, AS_OF, "completed", "demo", AS_OF + timedelta(minutes=3))

    done = minyi(env, "status", "--as-of", AS_OF.isoformat())
    assert done.returncode == 0, done.stderr
    out = done.stdout

    assert _row(out, "orders overdue")[-1] == str(rect["summary"]["overdue"])
    assert _row(out, "orders due today")[-1] == str(rect["summary"]["due_today"])
    overdue = Counter(o["unit_code"] for o in rect["orders"] if o["state"] == "overdue")
    due_today = Counter(o["unit_code"] for o in rect["orders"] if o["state"] == "due_today")
    open_ = Counter(o["unit_code"] for o in rect["orders"] if o["state"] != "closed")
    assert open_, "the month has open orders"
    for unit in open_:
        cells = _row(out, unit)
        assert cells[-4:-1] == [str(open_[unit]), str(due_today[unit]), str(overdue[unit])], cells
    assert _row(out, "visits due")[-1] == str(len(list_visits(env.engine)))
    loop = _row(out, "daily-loop")
    assert loop[1] == BUSINESS_DATE.isoformat() and "completed" in loop
    assert "calendar data ends 2026-12-31" in out


def test_a_finished_sweep_is_recorded_for_the_status_screen(env: Env, prefect_harness: None) -> None:
    from minyi.flows.sweep import sweep

    env.write_config(config_toml())
    sweep(as_of=AS_OF)
    with env.engine.connect() as conn:
        from minyi.tasks.store.runs import last_run

        run = last_run(conn, "sweep")
    assert run is not None and run.outcome == "completed" and run.as_of == AS_OF and run.business_date is None
