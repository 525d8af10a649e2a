"""records: drop ix_records_unit_business_date (no reader looks records up by unit)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 03:10:55.622909
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # No reader looks records up by unit: every query picks a day or a period first
    # (ix_records_business_date_source). One b-tree less per ingested row (docs/performance.md).
    op.drop_index("ix_records_unit_business_date", table_name="records")


def downgrade() -> None:
    op.create_index("ix_records_unit_business_date", "records", ["unit_code", "business_date"], unique=False)
