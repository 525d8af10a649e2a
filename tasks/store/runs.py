"""The `runs` table (schemas/runs.py): each finished daily loop and sweep, for `minyi status`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import Date, String, Text, text
from sqlalchemy.engine import Connection, Engine

from minyi.schemas.types import UtcDateTime
from minyi.tasks.store.engine import instant_param, table_names

KINDS = ("daily-loop", "sweep")


@dataclass(frozen=True)
class FinishedRun:
    kind: str
    business_date: date | None
    as_of: datetime
    finished_at: datetime
    outcome: str
    detail: str | None


def record_run(
    engine: Engine,
    kind: str,
    business_date: date | None,
    as_of: datetime,
    outcome: str,
    detail: str | None,
    finished_at: datetime,
) -> None:
    """One row for a run that just finished (a store without the table, not yet upgraded, records nothing)."""
    if "runs" not in table_names(engine):
        return
    d = engine.dialect.name
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO runs (kind, business_date, as_of, finished_at, outcome, detail) "
                "VALUES (:kind, :day, :as_of, :finished, :outcome, :detail)"
            ),
            {
                "kind": kind,
                "day": business_date,
                "as_of": instant_param(d, as_of),
                "finished": instant_param(d, finished_at),
                "outcome": outcome,
                "detail": (detail or "")[:2000] or None,
            },
        )


_LAST = text(
    "SELECT kind, business_date, as_of, finished_at, outcome, detail FROM runs WHERE kind = :kind "
    "ORDER BY finished_at DESC, id DESC LIMIT 1"
).columns(kind=String, business_date=Date, as_of=UtcDateTime(), finished_at=UtcDateTime(), outcome=String, detail=Text)


def last_run(conn: Connection, kind: str) -> FinishedRun | None:
    row = conn.execute(_LAST, {"kind": kind}).first()
    return FinishedRun(*row) if row else None
