"""Tables of SPEC §8: every quality run's results, per source and business date.

The gate itself lives in `source_gates` (schemas/followups.py), because it is the
contract the follow-up stage reads; `quality_runs` is the history behind it, so an
operator can see why a gate was held, when, and who released it with `force`.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from minyi.schemas.types import BigId, UtcDateTime


class QualityRun(SQLModel, table=True):
    """One validation of one source's day (or of the store's invariants: source = `store`).

    Unique by (business_date, source, as_of): re-running the stage with the same
    `as_of` (a retry) updates its row instead of adding a second one; a new `as_of`
    adds a row, so the history of a day's gates is kept.
    `expectations` is JSON: name → {success, severity, observed, unexpected, offending}.
    """

    __tablename__ = "quality_runs"
    __table_args__ = (
        UniqueConstraint("business_date", "source", "as_of", name="uq_quality_runs_run"),
        Index("ix_quality_runs_source_date", "source", "business_date"),
    )

    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    business_date: date
    source: str = Field(max_length=64)
    as_of: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    forced: bool = False
    success: bool = True
    gate: str | None = Field(default=None, max_length=16)
    fetched: int = 0
    accepted: int = 0
    quarantined: int = 0
    quarantine_reasons: str = Field(default="{}", sa_column=Column(Text, nullable=False))
    median: float | None = None
    expectations: str = Field(default="{}", sa_column=Column(Text, nullable=False))
    seconds: float = 0.0
