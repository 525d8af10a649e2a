"""Early warnings (SPEC §10): after the reports, the daily loop looks for trouble before it becomes a complaint.

One task finds the day's warnings (three set-based statements), writes
`warnings.json` beside the day's reports and enqueues one post per warning in
the same transaction (its key makes a re-run post nothing); delivery follows,
and the warnings appear as a table artifact on the run's page.
"""

from __future__ import annotations

import json
from datetime import date, datetime

from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from minyi.flows.deliver import Delivery, deliver_outbox
from minyi.tasks.adapters.notify.files import write_atomic
from minyi.tasks.runtime import load_runtime
from minyi.tasks.stages.reports import unit_directory
from minyi.tasks.stages.warnings import find_warnings, warning_messages, warning_text
from minyi.tasks.store.outbox import enqueue


class WarningsSummary(BaseModel):
    business_date: date
    warnings: int
    by_kind: dict[str, int]
    posted: int
    path: str
    delivery: Delivery | None = None


def find_day_warnings(business_date: date, as_of: datetime) -> dict:
    """The day's warnings (warnings.json) on a connection of its own: the daily loop looks for them while the
    report stage runs (they read nothing it writes) and posts them after it (`warnings_stage`)."""
    rt = load_runtime()
    with rt.engine.connect() as conn:
        return find_warnings(conn, business_date, as_of, rt.tz)


@task(name="early-warnings", task_run_name="early-warnings-{business_date}", cache_policy=NO_CACHE)
def early_warnings(business_date: date, as_of: datetime, found: dict | None = None) -> tuple[dict, int, str]:
    """Find the day's warnings (unless `found`, what find_day_warnings returned), write warnings.json, enqueue
    their posts; returns (report, new posts, path)."""
    rt = load_runtime()
    names, _ = unit_directory(rt.config)
    with rt.engine.begin() as conn:
        report = found if found is not None else find_warnings(conn, business_date, as_of, rt.tz)
        posted = enqueue(conn, warning_messages(report, rt.config.center_channel, names), as_of)
    path = rt.reports_dir / business_date.isoformat() / "warnings.json"
    write_atomic(path, json.dumps(report, ensure_ascii=False, indent=2) + "\n")
    return report, posted, str(path)


def warnings_stage(day: date, now: datetime, found: dict | None = None) -> WarningsSummary:
    """The warning steps, as tasks of whichever flow calls them (the daily loop, after the report stage, with
    the warnings it `found` beside that stage)."""
    report, posted, path = early_warnings(day, now, found)
    delivery = deliver_outbox(now) if posted else None
    names, _ = unit_directory(load_runtime().config)
    create_table_artifact(
        key="early-warnings",
        table=[{"kind": w["kind"], "key": w["key"], "post": warning_text(w, names)} for w in report["warnings"]]
        or [{"kind": "-", "key": "-", "post": "今日无预警 no warnings"}],
        description=f"Early warnings {day} (预警): {len(report['warnings'])}",
    )
    kinds: dict[str, int] = {}
    for w in report["warnings"]:
        kinds[w["kind"]] = kinds.get(w["kind"], 0) + 1
    return WarningsSummary(
        business_date=day, warnings=len(report["warnings"]), by_kind=kinds, posted=posted, path=path, delivery=delivery
    )
