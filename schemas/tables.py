"""Every table of the store, gathered so Alembic and the tests see one metadata.

Each SPEC area keeps its tables in its own module; import it here.
"""

from minyi.schemas import notifications, records  # noqa: F401  (registers tables)
from sqlmodel import SQLModel

metadata = SQLModel.metadata
