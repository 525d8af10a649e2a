"""`minyi status` (SPEC §9): what the duty officer needs on one screen, read from the store at as_of.

Every figure uses the same rule as the report that publishes it, so the screen
and the files agree: an order's state is `tasks.reports.order_state` (the
rectification listing's `state`), the visit queue is `tasks.visits.list_visits`
(`minyi visits`), SMS held are those of a `held` quality gate (the relay's rule).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import String, text
from sqlalchemy.engine import Engine

from minyi.schemas.types import UtcDateTime
from minyi.tasks.stages.reports import order_state
from minyi.tasks.store.engine import table_names
from minyi.tasks.store.runs import KINDS, FinishedRun, last_run


@dataclass
class UnitOrders:
    code: str
    name: str
    open: int = 0
    due_today: int = 0
    overdue: int = 0
    pending_calendar: int = 0


@dataclass
class Status:
    as_of: datetime
    runs: dict[str, FinishedRun | None]
    sms_queued: int
    sms_held: int
    visits_due: int
    visits_by_reason: Counter[str]
    units: list[UnitOrders]
    returned: int | None  # None: this store has no order returns yet (SPEC §5 lifecycle)
    warnings: list[dict[str, Any]] | None  # None: no warnings.json for the latest report date
    warnings_date: date | None
    calendar_end: date
    calendar_days_left: int
    totals: Counter[str] = field(default_factory=Counter)


_OPEN = text(
    "SELECT unit_code, response_due, responded_at, completion_due, closed_at FROM orders "
    "WHERE closed_at IS NULL AND opened_at <= :as_of"
).columns(
    unit_code=String,
    response_due=UtcDateTime(),
    responded_at=UtcDateTime(),
    completion_due=UtcDateTime(),
    closed_at=UtcDateTime(),
)


def _latest_report_date(reports_dir: Path) -> date | None:
    days = []
    for d in reports_dir.glob("????-??-??") if reports_dir.is_dir() else []:
        try:
            days.append(date.fromisoformat(d.name))
        except ValueError:
            continue
    return max(days) if days else None


def _warnings(reports_dir: Path) -> tuple[list[dict[str, Any]] | None, date | None]:
    day = _latest_report_date(reports_dir)
    if day is None:
        return None, None
    path = reports_dir / day.isoformat() / "warnings.json"
    if not path.is_file():
        return None, day
    data = json.loads(path.read_text(encoding="utf-8"))
    items = data.get("warnings", data) if isinstance(data, dict) else data
    return (list(items) if isinstance(items, list) else []), day


def collect_status(
    engine: Engine, as_of: datetime, tz: ZoneInfo, unit_names: dict[str, str], reports_dir: Path
) -> Status:
    from minyi.tasks.rules.calendar import days_until_data_runs_out, load_calendar
    from minyi.tasks.stages.sms import _HELD
    from minyi.tasks.stages.visits import list_visits
    from minyi.tasks.store.engine import instant_param

    tables = table_names(engine)
    with engine.connect() as conn:
        runs = {k: (last_run(conn, k) if "runs" in tables else None) for k in KINDS}
        queued = conn.execute(text("SELECT COUNT(*) FROM followups WHERE sms_status = 'queued'")).scalar_one()
        held = conn.execute(
            text(f"SELECT COUNT(*) FROM followups f WHERE f.sms_status = 'queued' AND {_HELD}")
        ).scalar_one()
        rows = conn.execute(_OPEN, {"as_of": instant_param(engine.dialect.name, as_of)}).all()
        returned = conn.execute(text("SELECT COUNT(*) FROM orders WHERE status = 'returned'")).scalar_one()
    visits = list_visits(engine, limit=10_000_000)
    units: dict[str, UnitOrders] = {}
    totals: Counter[str] = Counter()
    for unit_code, response_due, responded_at, completion_due, closed_at in rows:
        o = {
            "response_due": response_due,
            "responded_at": responded_at,
            "completion_due": completion_due,
            "closed_at": closed_at,
        }
        state, _ = order_state(o, as_of, tz)
        u = units.setdefault(unit_code, UnitOrders(unit_code, unit_names.get(unit_code, "")))
        u.open += 1
        if state in ("due_today", "overdue", "pending_calendar"):
            setattr(u, state, getattr(u, state) + 1)
        totals[state] += 1
    cal = load_calendar()
    today = as_of.astimezone(tz).date()
    warnings, warnings_day = _warnings(reports_dir)
    return Status(
        as_of=as_of,
        runs=runs,
        sms_queued=int(queued),
        sms_held=int(held),
        visits_due=len(visits),
        visits_by_reason=Counter(v.reason for v in visits),
        units=sorted(units.values(), key=lambda u: (-u.overdue, -u.due_today, u.code)),
        returned=int(returned),
        warnings=warnings,
        warnings_date=warnings_day,
        calendar_end=cal.last_covered_date(),
        calendar_days_left=days_until_data_runs_out(cal, today),
        totals=totals,
    )
