"""Every table of the store, gathered so Alembic and the tests see one metadata.

Each SPEC area keeps its tables in its own module; import it here.
"""

from sqlmodel import SQLModel

from minyi.schemas import followups, guards, notifications, orders, quality, records, runs  # noqa: F401  (registers tables)

metadata = SQLModel.metadata
