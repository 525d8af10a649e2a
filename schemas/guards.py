"""Tables of the reliability rules (SPEC §4, §6): rejected replies, and the store's run leases.

`run_leases`: one row per key held (`daily-loop:2026-11-21`), taken with one
conditional write, renewed by the holder's heartbeat, deleted when it ends, and
taken over by anyone once `expires_at` has passed (its holder died).

`rejected_replies`: a reply the gateway served that could not be taken as given,
with its reason and its raw JSON (control characters escaped); never applied.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Text
from sqlmodel import Field, SQLModel

from minyi.schemas.types import BigId, UtcDateTime


class RunLease(SQLModel, table=True):
    __tablename__ = "run_leases"

    key: str = Field(primary_key=True, max_length=128)
    holder: str = Field(max_length=128)
    acquired_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    expires_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))


class RejectedReply(SQLModel, table=True):
    __tablename__ = "rejected_replies"

    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    # sha256 of the raw JSON: the same poisoned reply served again is kept once
    digest: str = Field(max_length=64, unique=True)
    reply_id: str | None = Field(default=None, max_length=128)  # the id as given, escaped and cut to 128
    reason: str = Field(max_length=64)
    raw: str = Field(sa_column=Column(Text, nullable=False))
    rejected_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
