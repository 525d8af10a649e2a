"""Flow-run names that carry the business date, even when the operator left it to default."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime

from prefect.runtime import flow_run

from minyi.tasks.config import load_config
from minyi.tasks.rules.days import resolve_day


def _as_date(value: object) -> date | None:
    if isinstance(value, date):
        return value
    if isinstance(value, str) and value:
        return date.fromisoformat(value[:10])
    return None


def _as_instant(value: object) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and value:
        return datetime.fromisoformat(value)
    return None


def by_business_date(prefix: str) -> Callable[[], str]:
    """`{prefix}-YYYY-MM-DD`, resolving a missing business_date to the day before as_of."""

    def name() -> str:
        params = flow_run.parameters or {}
        try:
            tz = load_config().tz
            day, _ = resolve_day(_as_date(params.get("business_date")), _as_instant(params.get("as_of")), tz)
        except Exception:  # naming must never fail a run; the flow itself reports bad input
            return f"{prefix}-?"
        return f"{prefix}-{day.isoformat()}"

    return name
