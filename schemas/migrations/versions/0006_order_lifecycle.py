"""orders: the lifecycle of SPEC §5 (who and when, return/reassign, extension, appeal, verification)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 23:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import minyi.schemas.types

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_INSTANT = minyi.schemas.types.UtcDateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("orders", schema=None) as b:
        b.add_column(sa.Column("clock_start", _INSTANT, nullable=True))
        b.add_column(sa.Column("period", sa.Integer(), server_default="1", nullable=False))
        b.add_column(sa.Column("completion_due_original", _INSTANT, nullable=True))
        b.add_column(sa.Column("extension_status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True))
        b.add_column(sa.Column("extension_days", sa.Integer(), nullable=True))
        b.add_column(sa.Column("appeal_status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True))
    with op.batch_alter_table("order_events", schema=None) as b:
        b.alter_column(
            "stage",
            existing_type=sqlmodel.sql.sqltypes.AutoString(length=16),
            type_=sqlmodel.sql.sqltypes.AutoString(length=32),
            existing_nullable=False,
        )
        b.add_column(sa.Column("by_name", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True))
        b.add_column(sa.Column("backdated", sa.Boolean(), server_default=sa.false(), nullable=False))
        b.add_column(sa.Column("unit_code", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
        b.add_column(sa.Column("period", sa.Integer(), nullable=True))
        b.add_column(sa.Column("to_unit", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
        b.add_column(sa.Column("days", sa.Integer(), nullable=True))
    with op.batch_alter_table("escalations", schema=None) as b:
        b.add_column(sa.Column("period", sa.Integer(), server_default="1", nullable=False))
        b.add_column(sa.Column("unit_code", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
        b.drop_constraint("uq_escalations_order_level", type_="unique")
        b.create_unique_constraint("uq_escalations_order_period_level", ["order_id", "period", "level"])
    with op.batch_alter_table("answers", schema=None) as b:
        b.add_column(sa.Column("by_name", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True))
        b.add_column(sa.Column("recorded_at", _INSTANT, nullable=True))
        b.add_column(sa.Column("backdated", sa.Boolean(), server_default=sa.false(), nullable=False))
    op.create_table(
        "verifications",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("order_id", sa.BigInteger(), nullable=False),
        sa.Column("k", sa.Integer(), nullable=False),
        sa.Column("message_id", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("phone_norm", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
        sa.Column("unit_code", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("queued_at", _INSTANT, nullable=False),
        sa.Column("sent_at", _INSTANT, nullable=True),
        sa.Column("answer", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True),
        sa.Column("answered_at", _INSTANT, nullable=True),
        sa.Column("reply_id", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("message_id", name="uq_verifications_message"),
    )
    with op.batch_alter_table("verifications", schema=None) as b:
        b.create_index("ix_verifications_status", ["status"], unique=False)
        b.create_index("ix_verifications_phone", ["phone_norm", "sent_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("verifications", schema=None) as b:
        b.drop_index("ix_verifications_phone")
        b.drop_index("ix_verifications_status")
    op.drop_table("verifications")
    with op.batch_alter_table("answers", schema=None) as b:
        b.drop_column("backdated")
        b.drop_column("recorded_at")
        b.drop_column("by_name")
    with op.batch_alter_table("escalations", schema=None) as b:
        b.drop_constraint("uq_escalations_order_period_level", type_="unique")
        b.create_unique_constraint("uq_escalations_order_level", ["order_id", "level"])
        b.drop_column("unit_code")
        b.drop_column("period")
    with op.batch_alter_table("order_events", schema=None) as b:
        for column in ("days", "to_unit", "period", "unit_code", "backdated", "by_name"):
            b.drop_column(column)
        b.alter_column(
            "stage",
            existing_type=sqlmodel.sql.sqltypes.AutoString(length=32),
            type_=sqlmodel.sql.sqltypes.AutoString(length=16),
            existing_nullable=False,
        )
    with op.batch_alter_table("orders", schema=None) as b:
        for column in (
            "appeal_status",
            "extension_days",
            "extension_status",
            "completion_due_original",
            "period",
            "clock_start",
        ):
            b.drop_column(column)
