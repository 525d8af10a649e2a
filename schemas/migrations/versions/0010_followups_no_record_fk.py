"""followups: no foreign key to records (nothing deletes records; its check cost planning 6.5 s at 1M)

Why: every follow-up is inserted by planning from the record it follows up, in the statement that reads
that record, so the key cannot dangle when written; and minyi never deletes a record (retention
pseudonymises rows in place, docs/privacy.md). The check still ran for every row: on PostgreSQL its
trigger took 6.45 s of the 1M-record day's planning (`EXPLAIN ANALYZE`), on SQLite ~0.8 s (figures:
docs/performance.md, session 9). `record_pk` keeps its unique index: one follow-up per record.

SQLite rebuilds the table (its only way to drop a constraint): the environment turns foreign keys off
for the migration, as SQLite's own procedure says, so dropping the old table does not cascade into
answers, orders and replies (tests/test_migrations.py upgrades a store with them).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 15:20:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# names for the constraints 0001 left unnamed, so batch mode (SQLite) can find them; PostgreSQL's own name
_NAMES = {"fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s"}


def upgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.drop_constraint("followups_record_pk_fkey", "followups", type_="foreignkey")
        return
    with op.batch_alter_table("followups", naming_convention=_NAMES, recreate="always") as batch_op:
        batch_op.drop_constraint("fk_followups_record_pk_records", type_="foreignkey")


def downgrade() -> None:
    with op.batch_alter_table("followups") as batch_op:
        batch_op.create_foreign_key("followups_record_pk_fkey", "records", ["record_pk"], ["id"], ondelete="CASCADE")
