"""SQLModel tables, pydantic payload models, expectation suites and Alembic migrations."""
