"""Tables of SPEC §3: units, records pulled from sources, quarantined rows, ingest checkpoints."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Column, Index, String, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from minyi.schemas.types import BigId, UtcDateTime


class Unit(SQLModel, table=True):
    """A unit under assessment. `known` is false for codes seen in records but absent from config."""

    __tablename__ = "units"

    code: str = Field(primary_key=True, max_length=64)
    name: str = Field(default="", max_length=200)
    parent: str = Field(default="", max_length=64)
    channel: str = Field(default="", max_length=64)
    known: bool = True


class Record(SQLModel, table=True):
    """One accepted service matter or police call; unique by (source, record_id).

    The phone is kept only normalised (`phone_norm`) with its kind
    (mobile | landline | invalid | missing): the raw string adds nothing but risk.
    """

    __tablename__ = "records"
    __table_args__ = (
        UniqueConstraint("source", "record_id", name="uq_records_source_record"),
        # Every reader of records picks a day (or a period) first; none looks records up by unit, so
        # (unit_code, business_date) went (docs/ingest.md): one b-tree less on every ingested row.
        Index("ix_records_business_date_source", "business_date", "source"),
    )

    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    source: str = Field(max_length=64)
    record_id: str = Field(max_length=128)
    business_date: date
    channel: str = Field(max_length=16)
    matter: str = Field(default="", max_length=64)
    handled_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    unit_code: str = Field(max_length=64)
    officer_id: str | None = Field(default=None, max_length=64)
    citizen_name: str | None = Field(default=None, max_length=100)
    phone_norm: str | None = Field(default=None, max_length=32)
    phone_kind: str = Field(max_length=16)
    summary: str | None = Field(default=None, sa_column=Column(Text))
    confidential: bool = False
    ingested_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    updated_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))


class Quarantine(SQLModel, table=True):
    """A row refused by SPEC §3's rules, kept verbatim with its reasons; never followed up.

    Unique by (source, business_date, fingerprint of the raw JSON) so a re-pull
    does not quarantine the same row twice.
    """

    __tablename__ = "quarantine"
    __table_args__ = (UniqueConstraint("source", "business_date", "fingerprint", name="uq_quarantine_row"),)

    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    source: str = Field(max_length=64)
    business_date: date
    record_id: str | None = Field(default=None, sa_column=Column(String(256)))
    reasons: str = Field(max_length=200)
    raw: str = Field(sa_column=Column(Text, nullable=False))
    fingerprint: str = Field(max_length=64)
    received_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))


class IngestCheckpoint(SQLModel, table=True):
    """Where a source's pull for a business date stands.

    `cursor` is committed with the page it follows, so a killed run resumes
    after the last stored page; `complete` marks a pull that reached the end,
    after which a re-run pulls the day again from the start (to pick up updates).
    """

    __tablename__ = "ingest_checkpoints"

    source: str = Field(primary_key=True, max_length=64)
    business_date: date = Field(primary_key=True)
    cursor: str | None = Field(default=None, sa_column=Column(Text))
    complete: bool = False
    pages: int = 0
    fetched: int = 0
    last_error: str | None = Field(default=None, sa_column=Column(Text))
    updated_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
