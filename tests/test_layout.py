"""The folder says what a module may touch: nothing under tasks/rules/ reaches the store, the network or Prefect."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

RULES = Path(__file__).resolve().parent.parent / "tasks" / "rules"
FORBIDDEN = ("sqlalchemy", "sqlmodel", "httpx", "prefect", "psycopg", "slack_sdk", "great_expectations")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", sorted(RULES.glob("*.py")), ids=lambda p: p.name)
def test_a_rule_module_imports_no_database_network_or_prefect(path: Path) -> None:
    bad = sorted(n for n in _imports(path) if n.split(".")[0] in FORBIDDEN)
    assert not bad, f"{path.name} imports {bad}"


def test_a_rule_module_imports_only_other_rules_of_minyi() -> None:
    allowed = ("minyi.tasks.rules", "minyi.tasks.errors", "minyi.tasks.config")
    for path in RULES.glob("*.py"):
        for name in _imports(path):
            if name.startswith("minyi."):
                assert name.startswith(allowed), f"{path.name} imports {name}"
