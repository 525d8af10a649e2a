"""The last daily loops and sweeps, for the duty officer's `minyi status` (SPEC §9).

One row per finished run of the daily loop or the sweep: which kind, for which
business date (loops only), at which as_of, when it finished (wall clock), its
outcome (`completed` | `failed` | `cancelled`) and a one-line detail. Written by
the flow at its end; nothing reads it but `minyi status`.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Column, Index, Text
from sqlmodel import Field, SQLModel

from minyi.schemas.types import BigId, UtcDateTime


class RunRecord(SQLModel, table=True):
    __tablename__ = "runs"
    __table_args__ = (Index("ix_runs_kind_finished", "kind", "finished_at"),)

    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    kind: str = Field(max_length=32)
    business_date: date | None = None
    as_of: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    finished_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    outcome: str = Field(max_length=16)
    detail: str | None = Field(default=None, sa_column=Column(Text))
