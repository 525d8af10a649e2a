"""followups: SMS text composed at send time (column dropped), partial manual_reason index

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 02:56:32.737885
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


_MANUAL = "manual_reason IS NOT NULL"


def upgrade() -> None:
    # The SMS text is composed by the relay when the message leaves; storing it cost 2.4 s a million rows.
    # The visit queue reads only rows with a manual_reason: the index covers only those.
    op.drop_index("ix_followups_manual_reason", table_name="followups")
    with op.batch_alter_table("followups", schema=None) as batch_op:
        batch_op.drop_column("sms_text")
    op.create_index(
        "ix_followups_manual_reason",
        "followups",
        ["manual_reason"],
        sqlite_where=sa.text(_MANUAL),
        postgresql_where=sa.text(_MANUAL),
    )


def downgrade() -> None:
    op.drop_index("ix_followups_manual_reason", table_name="followups")
    with op.batch_alter_table("followups", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sms_text", sa.TEXT(), nullable=True))
    op.create_index("ix_followups_manual_reason", "followups", ["manual_reason"])
