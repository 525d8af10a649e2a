"""Tables of SPEC §4: one follow-up per record, and every answer it received (SMS reply or visit).

The core columns here are a contract between stages: supervision opens orders
from `answers` rows whose value is `dissatisfied`; reports count follow-ups by
`satisfaction` (the latest recognised answer). The follow-up stage owns the rest.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Boolean, Column, ForeignKey, Index, Text, false
from sqlalchemy import text as sql
from sqlmodel import Field, SQLModel

from minyi.schemas.types import BigId, UtcDateTime


class Followup(SQLModel, table=True):
    """The follow-up decided for one record when its business date was first planned.

    plan: `sms` | `manual` (landline: a visit, no SMS) | `skipped` (see skip_reason).
    The SMS text is not stored: the relay composes it when the message leaves (tasks/stages/sms.py), so "昨日"
    is true on the day the citizen reads it, even for a message a quality gate held.
    sms_status (plan = sms): `queued` → `sent` | `rejected`. A queued message whose phone opts out, or
    that goes stale while held, becomes `skipped` with that reason before it could leave.
    replied_at: the first reply of any kind (opt-outs included): the "no reply" visit rule's clock stops.
    manual_reason: landline | dissatisfied | unrecognised | no_reply — set once, when the visit is queued.
    satisfaction: the latest recognised answer (satisfied | basically_satisfied | dissatisfied), or null.
    """

    __tablename__ = "followups"
    __table_args__ = (
        Index("ix_followups_business_date_source", "business_date", "source"),
        # The relay walks queued rows in id order. Partial: a message leaving is one entry deleted, not one moved
        # to a 'sent' region that grows by a million a day and that nothing reads (figures: docs/performance.md).
        Index(
            "ix_followups_queued",
            "id",
            sqlite_where=sql("sms_status = 'queued'"),
            postgresql_where=sql("sms_status = 'queued'"),
        ),
        # Replies are matched by phone (SPEC §4). Not partial (WHERE sms_status = 'sent'): then every batch the
        # relay commits would insert ~500 random entries and rewrite ~500 index pages into the WAL; planning
        # inserts them in one transaction instead (figures: docs/performance.md, "Figures behind code decisions").
        Index("ix_followups_phone_norm", "phone_norm"),
        # the visit queue reads only queued visits; a partial index costs nothing for the million rows without one
        Index(
            "ix_followups_manual_reason",
            "manual_reason",
            sqlite_where=sql("manual_reason IS NOT NULL"),
            postgresql_where=sql("manual_reason IS NOT NULL"),
        ),
    )

    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    # records.id, without a foreign key: planning writes it from the row it reads, nothing deletes records, and
    # the check cost 6.5 s of a 1M day's planning on PostgreSQL (migration 0010)
    record_pk: int = Field(sa_column=Column(BigInteger, nullable=False, unique=True))
    source: str = Field(max_length=64)
    record_id: str = Field(max_length=128)
    business_date: date
    unit_code: str = Field(max_length=64)
    phone_norm: str | None = Field(default=None, max_length=32)
    plan: str = Field(max_length=16)
    skip_reason: str | None = Field(default=None, max_length=32)
    # 'minyi:' || source || ':' || record_id — deterministic, so a re-run or a rebuilt store never sends twice.
    # Unique because record_pk is; no index of its own: replies find it through records (migration 0011).
    message_id: str | None = Field(default=None, max_length=255)
    sms_status: str | None = Field(default=None, max_length=16)
    gateway_error: str | None = Field(default=None, sa_column=Column(Text))
    planned_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    sent_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime(), nullable=True))
    replied_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime(), nullable=True))
    satisfaction: str | None = Field(default=None, max_length=32)
    answered_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime(), nullable=True))
    manual_reason: str | None = Field(default=None, max_length=32)
    manual_queued_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime(), nullable=True))
    visit_outcome: str | None = Field(default=None, max_length=32)
    visited_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime(), nullable=True))


class SmsClaim(SQLModel, table=True):
    """One batch of the outbox a relay run is sending: the follow-ups with first_id <= id <= last_id (SPEC §4).

    Why a range and not a mark on each follow-up: a follow-up row is then written once by the relay (when
    its answer is stored), not three times (claimed, sent, claim cleared), and the claim costs one small row
    per 500 messages. A relay claims, in one serialised transaction, the next queued follow-ups that no live
    claim covers, and writes their range here; the row goes when the batch's answers are stored, or when the
    run releases what it could not settle. A claim whose holder died is taken over once `expires_at` (wall
    clock, renewed while the holder lives) has passed. The table holds a few rows per running relay.
    """

    __tablename__ = "sms_claims"

    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    owner: str = Field(max_length=128)
    first_id: int = Field(sa_column=Column(BigInteger, nullable=False))
    last_id: int = Field(sa_column=Column(BigInteger, nullable=False))
    expires_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))


class Answer(SQLModel, table=True):
    """Every answer a follow-up received, in arrival order: `via` = sms | visit.

    value: satisfied | basically_satisfied | dissatisfied | unrecognised | unreachable.
    `ref` is `sms:<reply_id>` or `visit:<source>:<record_id>:<at>`, unique per via, so re-ingesting a reply adds nothing.
    """

    __tablename__ = "answers"
    __table_args__ = (
        Index("ix_answers_followup", "followup_id"),
        Index("ix_answers_value", "value"),
    )

    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    followup_id: int = Field(
        sa_column=Column(BigInteger, ForeignKey("followups.id", ondelete="CASCADE"), nullable=False)
    )
    via: str = Field(max_length=8)
    ref: str = Field(max_length=255, unique=True)
    value: str = Field(max_length=32)
    answered_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    note: str | None = Field(default=None, sa_column=Column(Text))
    # Who and when (SPEC §5), for visits: who recorded it, when, and whether answered_at was > 24 h before.
    by_name: str | None = Field(default=None, max_length=128)
    recorded_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime(), nullable=True))
    backdated: bool = Field(default=False, sa_column=Column(Boolean, nullable=False, server_default=false()))


class SourceGate(SQLModel, table=True):
    """The quality gate of SPEC §8 for one source and business date: pass | held | released | no_history.

    The follow-up stage sends no SMS for a (source, business_date) whose gate is `held`.
    """

    __tablename__ = "source_gates"

    source: str = Field(primary_key=True, max_length=64)
    business_date: date = Field(primary_key=True)
    gate: str = Field(max_length=16)
    row_count: int = 0
    median: float | None = None
    updated_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))


class SmsReply(SQLModel, table=True):
    """Every reply the gateway delivered, kept whether or not it matched a follow-up (SPEC §4).

    value: satisfied | basically_satisfied | dissatisfied | opt_out | unrecognised (parsed once, on arrival).
    status: matched | unmatched. `window_start` = received_at − 7 days, the earliest `sent_at` a match by
    phone may have (computed on arrival so the matching SQL needs no dialect date arithmetic).
    """

    __tablename__ = "sms_replies"
    __table_args__ = (Index("ix_sms_replies_status", "status"),)

    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    reply_id: str = Field(max_length=255, unique=True)
    phone_norm: str | None = Field(default=None, max_length=32)
    text: str = Field(sa_column=Column(Text, nullable=False))
    value: str = Field(max_length=32)
    message_id: str | None = Field(default=None, max_length=255)
    received_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    window_start: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    followup_id: int | None = Field(
        default=None, sa_column=Column(BigInteger, ForeignKey("followups.id", ondelete="SET NULL"), nullable=True)
    )
    status: str = Field(max_length=16)
    ingested_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))


class OptOut(SQLModel, table=True):
    """A phone that replied TD/退订: it never gets another SMS, whatever source its next record comes from."""

    __tablename__ = "opt_outs"

    phone_norm: str = Field(primary_key=True, max_length=32)
    opted_out_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    reply_id: str = Field(max_length=255)


class SmsCursor(SQLModel, table=True):
    """Where reply ingestion stands at the gateway; committed with the replies it follows."""

    __tablename__ = "sms_cursors"

    name: str = Field(primary_key=True, max_length=64)
    cursor: str | None = Field(default=None, sa_column=Column(Text))
    updated_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
