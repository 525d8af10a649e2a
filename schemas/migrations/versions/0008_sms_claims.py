"""SMS send claims per id range (sms_claims) instead of a mark on every follow-up

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 03:06:12
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from minyi.schemas.types import BigId, UtcDateTime

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # One row per batch in flight instead of two writes more on each of a million follow-ups a day
    # (docs/performance.md, session 4). Claims held when migrating are dropped: no relay runs during a migration.
    op.create_table(
        "sms_claims",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("owner", sa.String(length=128), nullable=False),
        sa.Column("first_id", sa.BigInteger(), nullable=False),
        sa.Column("last_id", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("followups", schema=None) as batch_op:
        batch_op.drop_column("claim_expires_at")
        batch_op.drop_column("claim_owner")


def downgrade() -> None:
    with op.batch_alter_table("followups", schema=None) as batch_op:
        batch_op.add_column(sa.Column("claim_owner", sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column("claim_expires_at", UtcDateTime(), nullable=True))
    op.drop_table("sms_claims")
