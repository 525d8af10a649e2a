"""Developer tools: regenerate the baseline migration from the models.

Until minyi's first release the schema has one migration, `0001_initial`,
regenerated from the SQLModel tables whenever they change (`make migration`).
After a release, every change gets its own revision instead; the test
`test_migrations_match_models` fails when models and migrations drift apart.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from alembic import command

from minyi.tasks.store import _alembic_config, get_engine

VERSIONS = Path(__file__).resolve().parent.parent / "schemas" / "migrations" / "versions"


def regenerate_initial() -> Path:
    for old in VERSIONS.glob("0001_*.py"):
        old.unlink()
    with tempfile.TemporaryDirectory() as tmp:
        engine = get_engine(f"sqlite:///{tmp}/empty.db")
        cfg = _alembic_config(engine)
        command.revision(cfg, message="initial schema", autogenerate=True, rev_id="0001", head="base")
        engine.dispose()
    (path,) = VERSIONS.glob("0001_*.py")
    target = VERSIONS / "0001_initial.py"
    path.rename(target)
    return target


if __name__ == "__main__":
    if sys.argv[1:] != ["regenerate-initial"]:
        sys.exit("usage: python -m minyi.devtools regenerate-initial")
    print(regenerate_initial())
