"""The daily reports of SPEC §7: rectification listing, files (JSON + CSV twins + chart) and channel summaries.

Who reads what:
- `rectification.json` / `.csv`: every order not closed before the month began,
  each with its clocks, the escalations fired and its `state` at as_of
  (open | due_today | overdue | pending_calendar | closed); contacts masked.
- `assessment.json` / `.csv` / `.png`: the month-to-date metrics (tasks.kpis).
- the duty channels: the summaries composed in `tasks.texts` (rectification summary
  with its listed orders in the thread, assessment summary with the chart, each
  unit's digest).

Files are written whole or not at all (temp + rename). Every contact passes
through tasks.masking; nothing here formats a phone or a name itself.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Date, Integer, String, text
from sqlalchemy.engine import Connection

from minyi.schemas.types import UtcDateTime
from minyi.tasks.adapters.notify.files import write_atomic
from minyi.tasks.config import MinyiConfig
from minyi.tasks.rules.csvsafe import csv_cell
from minyi.tasks.rules.days import start_of_day
from minyi.tasks.rules.masking import mask_name, mask_phone
from minyi.tasks.stages.kpis import METRICS, Period

THREAD_CHUNK = 15  # lines per thread reply: long lists go in the thread, a screenful at a time
INSTANTS = (
    "opened_at",
    "response_due",
    "completion_due",
    "responded_at",
    "rectified_at",
    "closed_at",
    "completion_due_original",
)
ORDER_FIELDS = (
    "source",
    "record_id",
    "unit_code",
    "status",
    *INSTANTS,
    "resolution",
    "escalations",
    "backdated",
    "extension",
    "appeal",
    "state",
    "overdue_clocks",
    "business_date",
    "citizen",
    "phone",
)
LINEAGE_HEADER = ("unit_code", "metric", "source", "record_id")
STATES = ("overdue", "due_today", "pending_calendar", "open", "closed")
STATE_NAMES = {
    "overdue": "超期",
    "due_today": "今日到期",
    "pending_calendar": "待日历",
    "open": "在办",
    "closed": "已办结",
}


# ---------------------------------------------------------------------------------------------- pure


def last_day(due: datetime, tz: ZoneInfo) -> date:
    """A due instant is 24:00 of the clock's last day, i.e. 00:00 of the next: its last day is the day before."""
    return (due.astimezone(tz) - timedelta(microseconds=1)).date()


def order_state(o: dict[str, Any], as_of: datetime, tz: ZoneInfo) -> tuple[str, list[str]]:
    """Where an order stands at as_of, and which clocks have run out on it (SPEC §6)."""
    if o["closed_at"] is not None:
        return "closed", []
    running = [("response", o["response_due"], o["responded_at"] is None), ("completion", o["completion_due"], True)]
    overdue = [name for name, due, waiting in running if waiting and due is not None and due <= as_of]
    if overdue:
        return "overdue", overdue
    today = as_of.astimezone(tz).date()
    if any(waiting and due is not None and last_day(due, tz) == today for _, due, waiting in running):
        return "due_today", []
    if any(waiting and due is None for _, due, waiting in running):
        return "pending_calendar", []
    return "open", []


def iso(value: datetime | None, tz: ZoneInfo) -> str | None:
    return value.astimezone(tz).isoformat() if value is not None else None


def fmt_rate(value: float | None) -> str:
    """A rate for people: one decimal, rounded *down*, so 79.98% never shows as a passing "80.0%"."""
    if value is None:
        return "—"
    return f"{math.floor(round(value * 1000, 6)) / 10:.1f}%"


def chunks(lines: list[str], size: int = THREAD_CHUNK) -> list[list[str]]:
    return [lines[i : i + size] for i in range(0, len(lines), size)]


# ---------------------------------------------------------------------------------------------- rectification

_ORDERS_SQL = """
SELECT o.id, o.source, o.record_id, o.unit_code, o.status, o.opened_at, o.response_due, o.completion_due,
       o.responded_at, o.rectified_at, o.closed_at, o.resolution, r.business_date, r.citizen_name, r.phone_norm,
       o.completion_due_original, o.extension_status, o.extension_days, o.appeal_status
FROM orders o
JOIN followups f ON f.id = o.followup_id
JOIN records r ON r.id = f.record_pk
WHERE o.closed_at IS NULL OR o.closed_at >= :since
ORDER BY o.opened_at, o.source, o.record_id
"""

_ESCALATIONS_SQL = """
SELECT e.order_id, e.level FROM escalations e JOIN orders o ON o.id = e.order_id
WHERE o.closed_at IS NULL OR o.closed_at >= :since
ORDER BY e.order_id, e.fired_at, e.id
"""

# SPEC §5 "Who and when": the stages (and decisions) recorded more than 24 h after their --at.
_BACKDATED_SQL = """
SELECT ev.order_id, ev.stage FROM order_events ev JOIN orders o ON o.id = ev.order_id
WHERE ev.backdated = :t AND (o.closed_at IS NULL OR o.closed_at >= :since)
ORDER BY ev.order_id, ev.id
"""


def rectification(conn: Connection, business_date: date, as_of: datetime, tz: ZoneInfo) -> dict[str, Any]:
    """rectification.json: every order not closed before the period (the month of business_date)."""
    period = Period.month_to_date(business_date)
    since = start_of_day(period.start, tz)
    typed = {c: UtcDateTime() for c in INSTANTS} | {"id": Integer(), "business_date": Date(), "status": String()}
    params = {"since": since}
    rows = conn.execute(text(_ORDERS_SQL).columns(**typed), params).mappings().all()
    fired: dict[int, list[str]] = {}
    for order_id, level in conn.execute(text(_ESCALATIONS_SQL).columns(order_id=Integer()), params):
        fired.setdefault(order_id, []).append(level)
    backdated: dict[int, list[str]] = {}
    for order_id, stage in conn.execute(text(_BACKDATED_SQL).columns(order_id=Integer()), {**params, "t": True}):
        backdated.setdefault(order_id, []).append(stage)
    orders = []
    for row in rows:
        state, overdue = order_state(dict(row), as_of, tz)
        orders.append(
            {
                "source": row["source"],
                "record_id": row["record_id"],
                "unit_code": row["unit_code"],
                "status": row["status"],
                **{k: iso(row[k], tz) for k in INSTANTS},
                "resolution": row["resolution"],
                "escalations": fired.get(row["id"], []),
                "backdated": backdated.get(row["id"], []),
                "extension": (
                    {"status": row["extension_status"], "days": row["extension_days"]}
                    if row["extension_status"]
                    else None
                ),
                "appeal": row["appeal_status"],
                "state": state,
                "overdue_clocks": overdue,
                "business_date": row["business_date"].isoformat(),
                "citizen": mask_name(row["citizen_name"]),
                "phone": mask_phone(row["phone_norm"]),
            }
        )
    summary = {"orders": len(orders), **{s: sum(1 for o in orders if o["state"] == s) for s in STATES}}
    summary |= lifecycle_summary(orders)
    return {
        "business_date": business_date.isoformat(),
        "as_of": as_of.astimezone(tz).isoformat(),
        "period": {"start": period.start.isoformat(), "end": period.end.isoformat()},
        "summary": summary,
        "orders": orders,
    }


def lifecycle_summary(orders: list[dict[str, Any]]) -> dict[str, Any]:
    """SPEC §5 in the summary: returned orders awaiting the centre, pending extensions, backdated stages per unit."""
    per_unit: dict[str, int] = {}
    for o in orders:
        if o["backdated"]:
            per_unit[o["unit_code"]] = per_unit.get(o["unit_code"], 0) + len(o["backdated"])
    return {
        "returned": sum(1 for o in orders if o["status"] == "returned"),
        "extensions_pending": sum(1 for o in orders if (o["extension"] or {}).get("status") == "pending"),
        "backdated": dict(sorted(per_unit.items())),
    }


# ---------------------------------------------------------------------------------------------- files


@dataclass(frozen=True)
class ReportFiles:
    directory: Path
    assessment_json: Path
    assessment_csv: Path
    rectification_json: Path
    rectification_csv: Path
    chart: Path
    lineage_csv: Path


def report_paths(reports_dir: Path, business_date: date) -> ReportFiles:
    """The daily reports' files: `MINYI_REPORTS_DIR/{business_date}/`."""
    return files_in(reports_dir / business_date.isoformat())


def files_in(d: Path) -> ReportFiles:
    return ReportFiles(
        directory=d,
        assessment_json=d / "assessment.json",
        assessment_csv=d / "assessment.csv",
        rectification_json=d / "rectification.json",
        rectification_csv=d / "rectification.csv",
        chart=d / "assessment.png",
        lineage_csv=d / "lineage.csv",
    )


def _json(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, indent=2) + "\n"


def _csv(header: list[str], rows: list[list[Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for row in rows:
        w.writerow([csv_cell(v) for v in row])
    # a BOM so that Excel (what the duty office opens CSVs with) reads the Chinese as UTF-8
    return "\ufeff" + buf.getvalue()


def assessment_csv(report: dict[str, Any]) -> str:
    """One row per unit in table order, then `overall` (no rank, no meets_targets); rates exact, unrounded."""
    header = ["unit_code", *METRICS, "meets_targets", "ranked", "rank"]
    rows = [
        [u["unit_code"], *(u[m] for m in METRICS), u["meets_targets"], u["ranked"], u["rank"]] for u in report["units"]
    ]
    rows.append(["overall", *(report["overall"][m] for m in METRICS), None, None, None])
    return _csv(header, rows)


class LineageFile:
    """lineage.csv (SPEC §12) beside assessment.json, written while the counts are read.

    Use as the `lineage` sink of tasks.kpis.compute_assessment: the statement that counts also hands over the
    records behind each count (lines of formula-safe, CSV-quoted cells, a group at a time: the groups the
    counts are summed from, each unit's metrics in order), so every count of assessment.json equals its number of
    lineage rows. Streamed to a temp file, renamed on success.
    The lines come whole: a quoted cell may hold a newline, so nothing here splits them.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows = 0

    def __enter__(self) -> LineageFile:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, self._tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        self._fh = os.fdopen(fd, "w", encoding="utf-8", newline="")
        self._fh.write("\ufeff" + ",".join(LINEAGE_HEADER) + "\n")  # a BOM, like every CSV minyi writes
        return self

    def __call__(self, unit_code: str, metric: str, lines: str, n: int) -> None:
        self._fh.write(lines)  # two writes, not `lines + "\n"`: no second copy of a large group's lines
        self._fh.write("\n")
        self.rows += n

    def __exit__(self, kind: object, *_: object) -> None:
        self._fh.close()
        if kind is None:
            os.replace(self._tmp, self.path)
        else:
            Path(self._tmp).unlink(missing_ok=True)


def rectification_csv(report: dict[str, Any]) -> str:
    def cell(value: Any) -> Any:
        if isinstance(value, list):
            return "|".join(value)
        if isinstance(value, dict):
            return f"{value.get('status')}:{value.get('days')}"
        return value

    rows = [[cell(o[k]) for k in ORDER_FIELDS] for o in report["orders"]]
    return _csv(list(ORDER_FIELDS), rows)


def write_reports(
    files: ReportFiles, assessment: dict[str, Any], rect: dict[str, Any], unit_names: dict[str, str]
) -> None:
    """Write both reports, their CSV twins and the chart, each atomically."""
    from minyi.tasks.adapters.charts import render_assessment_chart

    write_atomic(files.assessment_json, _json(assessment))
    write_atomic(files.assessment_csv, assessment_csv(assessment))
    write_atomic(files.rectification_json, _json(rect))
    write_atomic(files.rectification_csv, rectification_csv(rect))
    write_atomic(files.chart, render_assessment_chart(assessment, unit_names))


def unit_directory(cfg: MinyiConfig) -> tuple[dict[str, str], dict[str, str]]:
    """(names, duty channels) of the configured units; an unknown unit has neither and goes to the centre."""
    return {u.code: u.name for u in cfg.units}, {u.code: u.channel for u in cfg.units}
