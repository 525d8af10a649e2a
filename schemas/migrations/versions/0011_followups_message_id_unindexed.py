"""followups: message_id without a unique index of its own (replies find it through records)

Why: message_id is 'minyi:' || source || ':' || record_id, unique already because records are unique by
(source, record_id) and follow-ups by record_pk. Its own unique index cost ~15% of planning's INSERT on
both databases and, on PostgreSQL, one more index entry for every message the relay marks sent (that
UPDATE is not HOT). Replies and verification now find the follow-up a message_id names through those
two indexes (tasks/stages/eligibility.py `followup_of_message_id`). Figures: docs/performance.md, session 9.

SQLite rebuilds the table, with foreign keys off for the migration (schemas/migrations/env.py).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03 15:45:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# a name for the constraint 0001 left unnamed, so batch mode (SQLite) can find it
_NAMES = {"uq": "uq_%(table_name)s_%(column_0_name)s"}


def upgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.drop_constraint("followups_message_id_key", "followups", type_="unique")
        return
    with op.batch_alter_table("followups", naming_convention=_NAMES, recreate="always") as batch_op:
        batch_op.drop_constraint("uq_followups_message_id", type_="unique")


def downgrade() -> None:
    with op.batch_alter_table("followups") as batch_op:
        batch_op.create_unique_constraint("followups_message_id_key", ["message_id"])
