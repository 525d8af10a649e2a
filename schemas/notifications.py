"""The outbox of channel messages (SPEC §7): every post is written here first.

A message is enqueued with an idempotency `key` in the same transaction as the
state change it reports; the delivery step posts pending rows and records
Slack's `ts`. The unique key is what makes a re-run post nothing twice.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Index, Text
from sqlmodel import Field, SQLModel

from minyi.schemas.types import BigId, UtcDateTime


class Notification(SQLModel, table=True):
    __tablename__ = "notifications"
    __table_args__ = (Index("ix_notifications_status", "status"),)

    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    key: str = Field(max_length=255, unique=True)
    kind: str = Field(max_length=64)
    channel: str = Field(max_length=64)
    text: str = Field(sa_column=Column(Text, nullable=False))
    blocks: str | None = Field(default=None, sa_column=Column(Text))
    attachment: str | None = Field(default=None, sa_column=Column(Text))
    thread_of: str | None = Field(default=None, max_length=255)
    status: str = Field(default="pending", max_length=16)
    ts: str | None = Field(default=None, max_length=64)
    attempts: int = 0
    last_error: str | None = Field(default=None, sa_column=Column(Text))
    created_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    sent_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime(), nullable=True))
    # Wall-clock instant a delivery run claimed the row (pending → sending): a lease, not business time.
    # A row still `sending` long after its claim belonged to a run that died; the next run reconciles it.
    claimed_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime(), nullable=True))
