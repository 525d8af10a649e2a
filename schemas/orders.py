"""Tables of SPEC §5–6: supervision orders, the unit reports on them, and the escalations fired.

The unique constraints here are the promises the rest of the code relies on:
one order per follow-up (so per record: `uq_orders_followup`, and the
`SOURCE:RECORD_ID` reference `uq_orders_source_record`), and each escalation
level at most once per order and clock period (`uq_escalations_order_period_level`), which holds even
when two runs sweep at the same instant.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, Column, ForeignKey, Index, Integer, String, Text, UniqueConstraint, false
from sqlmodel import Field, SQLModel

from minyi.schemas.types import BigId, UtcDateTime


class Order(SQLModel, table=True):
    """A supervision order against the responsible unit, opened by a dissatisfied answer.

    status: open → responded → rectified → closed; resolution (closed only): resolved | unresolved.
    response_due / completion_due: the instants the 3-day and 5-day clocks run out; NULL while
    the calendar data does not cover the period (the order is `pending_calendar` on that clock).
    """

    __tablename__ = "orders"
    __table_args__ = (
        UniqueConstraint("followup_id", name="uq_orders_followup"),
        UniqueConstraint("source", "record_id", name="uq_orders_source_record"),
        # The sweep's range scans: what ran out by as_of, and the reminder's exact-instant match.
        Index("ix_orders_response_due", "response_due"),
        Index("ix_orders_completion_due", "completion_due"),
        Index("ix_orders_unit_opened", "unit_code", "opened_at"),
    )

    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    followup_id: int = Field(
        sa_column=Column(BigInteger, ForeignKey("followups.id", ondelete="CASCADE"), nullable=False)
    )
    source: str = Field(max_length=64)
    record_id: str = Field(max_length=128)
    unit_code: str = Field(max_length=64)
    opened_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    status: str = Field(default="open", max_length=16)
    resolution: str | None = Field(default=None, max_length=16)
    response_due: datetime | None = Field(default=None, sa_column=Column(UtcDateTime(), nullable=True))
    completion_due: datetime | None = Field(default=None, sa_column=Column(UtcDateTime(), nullable=True))
    responded_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime(), nullable=True))
    rectified_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime(), nullable=True))
    closed_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime(), nullable=True))
    note: str | None = Field(default=None, sa_column=Column(Text))
    created_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    updated_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    # The lifecycle of SPEC §5 (tasks/rules/lifecycle.py). clock_start: where both clocks run from (NULL =
    # opened_at; a reassignment or a reopen moves it); period: 1, 2, … one per clock start, the key
    # escalations are fired under; completion_due_original: the due before an approved extension.
    clock_start: datetime | None = Field(default=None, sa_column=Column(UtcDateTime(), nullable=True))
    period: int = Field(default=1, sa_column=Column(Integer, nullable=False, server_default="1"))
    completion_due_original: datetime | None = Field(default=None, sa_column=Column(UtcDateTime(), nullable=True))
    extension_status: str | None = Field(default=None, max_length=16)  # pending | approved | rejected
    extension_days: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))
    appeal_status: str | None = Field(default=None, max_length=16)  # pending | upheld | rejected


class OrderEvent(SQLModel, table=True):
    """Every action accepted on an order, as reported (refused actions leave no row): its history.

    stage: the action (tasks.lifecycle.ACTIONS: responded | rectified | feedback | returned | reassign |
    keep | extend | approve-extension | …); `at` is when it happened, `recorded_at` when minyi
    recorded it, `by_name` who recorded it, `backdated` when `at` is more than 24 h before
    `recorded_at`. `unit_code` is the holder when it happened, `period` its clock period;
    `to_unit` (reassign) and `days` (extend) are the action's argument.
    """

    __tablename__ = "order_events"
    __table_args__ = (Index("ix_order_events_order", "order_id"),)

    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    order_id: int = Field(sa_column=Column(BigInteger, ForeignKey("orders.id", ondelete="CASCADE"), nullable=False))
    stage: str = Field(max_length=32)
    resolved: bool | None = Field(default=None, sa_column=Column(Boolean, nullable=True))
    at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    note: str | None = Field(default=None, sa_column=Column(Text))
    recorded_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    by_name: str | None = Field(default=None, max_length=128)
    backdated: bool = Field(default=False, sa_column=Column(Boolean, nullable=False, server_default=false()))
    unit_code: str | None = Field(default=None, max_length=64)
    period: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))
    to_unit: str | None = Field(default=None, max_length=64)
    days: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))


class EscalationRecord(SQLModel, table=True):
    """One escalation fired on an order: response_reminder | response_overdue | completion_overdue.

    UNIQUE(order_id, period, level) is the "at most once per order and clock period": the sweep
    inserts with ON CONFLICT DO NOTHING, and enqueues channel posts only for the rows its own
    `sweep_id` inserted. `unit_code` is the holder it fired against (it stays in that unit's history
    after a reassignment).
    """

    __tablename__ = "escalations"
    __table_args__ = (
        UniqueConstraint("order_id", "period", "level", name="uq_escalations_order_period_level"),
        Index("ix_escalations_sweep", "sweep_id", "id"),
    )

    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    order_id: int = Field(sa_column=Column(BigInteger, ForeignKey("orders.id", ondelete="CASCADE"), nullable=False))
    level: str = Field(max_length=32)
    due: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    fired_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    sweep_id: str = Field(sa_column=Column(String(32), nullable=False))
    period: int = Field(default=1, sa_column=Column(Integer, nullable=False, server_default="1"))
    unit_code: str | None = Field(default=None, max_length=64)


class Verification(SQLModel, table=True):
    """A verification call-back SMS (复核回访, SPEC §5): one per closure as resolved, K = 1, 2, …

    status: queued → sent | rejected | skipped (opted out or outside the rules at send time);
    answer: confirmed | not_resolved | unrecognised, with the reply that gave it.
    """

    __tablename__ = "verifications"
    __table_args__ = (
        UniqueConstraint("message_id", name="uq_verifications_message"),
        Index("ix_verifications_status", "status"),
        Index("ix_verifications_phone", "phone_norm", "sent_at"),
    )

    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    order_id: int = Field(sa_column=Column(BigInteger, ForeignKey("orders.id", ondelete="CASCADE"), nullable=False))
    k: int = Field(sa_column=Column(Integer, nullable=False))
    message_id: str = Field(max_length=255)
    phone_norm: str | None = Field(default=None, max_length=32)
    unit_code: str = Field(max_length=64)
    status: str = Field(max_length=16)
    queued_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    sent_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime(), nullable=True))
    answer: str | None = Field(default=None, max_length=16)
    answered_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime(), nullable=True))
    reply_id: str | None = Field(default=None, max_length=255)
