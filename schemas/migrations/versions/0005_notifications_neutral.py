"""notifications: vendor-neutral rows (title, parent_key, remote_id), claims with an owner; Block Kit column goes

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 23:30:00

Slack's `ts` and `thread_of` become `remote_id` (any vendor's id for the post) and
`parent_key`; `title` joins the markdown body (`text`) so each notifier renders
the neutral message itself (Block Kit is built at delivery, so `blocks` goes);
`claimed_by` is the owner of a claim, so a dead holder's claim can be taken over
after its expiry without two passes taking the same row.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.alter_column("ts", new_column_name="remote_id", type_=sqlmodel.sql.sqltypes.AutoString(length=255))
        batch_op.alter_column("thread_of", new_column_name="parent_key")
        batch_op.add_column(sa.Column("title", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("claimed_by", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
        batch_op.drop_column("blocks")


def downgrade() -> None:
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.add_column(sa.Column("blocks", sa.Text(), nullable=True))
        batch_op.drop_column("claimed_by")
        batch_op.drop_column("title")
        batch_op.alter_column("parent_key", new_column_name="thread_of")
        batch_op.alter_column("remote_id", new_column_name="ts", type_=sqlmodel.sql.sqltypes.AutoString(length=64))
