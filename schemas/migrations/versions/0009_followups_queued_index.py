"""followups: the relay's index covers only queued messages (partial), not every sms_status

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 03:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_QUEUED = "sms_status = 'queued'"


def upgrade() -> None:
    op.create_index(
        "ix_followups_queued",
        "followups",
        ["id"],
        sqlite_where=sa.text(_QUEUED),
        postgresql_where=sa.text(_QUEUED),
    )
    op.drop_index("ix_followups_sms_status", table_name="followups")


def downgrade() -> None:
    op.create_index("ix_followups_sms_status", "followups", ["sms_status", "id"])
    op.drop_index("ix_followups_queued", table_name="followups")
