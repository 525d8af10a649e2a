"""The outbox of channel messages (SPEC §7): every post is written here first.

A message is enqueued with an idempotency `key` in the same transaction as the
state change it reports; the delivery step posts pending rows and records the
id the vendor gave the post (`remote_id`: Slack's ts, a file's id, a robot's
`{vendor}:{key}`). The unique key is what makes a re-run post nothing twice.
The row is the vendor-neutral message (title, markdown body, image, parent key);
each notifier renders it into its own markup when it delivers.

Statuses: `pending` → `sending` (claimed by `claimed_by` at `claimed_at`) → `sent`;
`unconfirmed` when a dead holder's post could not be looked up (never re-posted on a guess).
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
    title: str | None = Field(default=None, sa_column=Column(Text))
    text: str = Field(sa_column=Column(Text, nullable=False))  # the markdown body
    attachment: str | None = Field(default=None, sa_column=Column(Text))  # the image (chart) path
    parent_key: str | None = Field(default=None, max_length=255)
    status: str = Field(default="pending", max_length=16)
    remote_id: str | None = Field(default=None, max_length=255)
    attempts: int = 0
    last_error: str | None = Field(default=None, sa_column=Column(Text))
    created_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    sent_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime(), nullable=True))
    # Wall-clock instant a delivery run claimed the row (pending → sending): a lease, not business time.
    # A row still `sending` long after its claim belonged to a run that died; the next run reconciles it.
    claimed_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime(), nullable=True))
    claimed_by: str | None = Field(default=None, max_length=64)
