"""Helpers shared by the tests: config builders and record factories."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

TZ = ZoneInfo("Asia/Shanghai")
UNITS = [
    {"code": "QD-SN-PS01", "name": "市南分局八大关派出所", "parent": "QD-SN", "channel": "C0SNPS01"},
    {"code": "QD-SB-PS01", "name": "市北分局台东派出所", "parent": "QD-SB", "channel": "C0SBPS01"},
    {"code": "QD-CGS", "name": "车辆管理所", "parent": "QD-JJ", "channel": "C0CGS"},
]


def at(value: str) -> datetime:
    """'2026-09-30 10:00' in Asia/Shanghai."""
    return datetime.fromisoformat(value).replace(tzinfo=TZ)


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return str(v)
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items()) + " }"
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def config_toml(
    sources: dict[str, str] | None = None,
    units: list[dict[str, str]] | None = None,
    sections: dict[str, dict[str, Any]] | None = None,
    source_extra: dict[str, dict[str, Any]] | None = None,
) -> str:
    """A full config: `sections` overrides tables like {"ingest": {"backoff_seconds": 0}}."""
    sec = {
        "notify": {"delivery": "files"},  # tests choose a real notifier explicitly (a missing token is an error)
        "ingest": {
            "backoff_seconds": 0.01,
            "max_backoff_seconds": 0.05,
            "timeout_seconds": 5,
            "page_size": 100,
        },
    }
    for k, v in (sections or {}).items():
        sec.setdefault(k, {}).update(v)
    lines = ['timezone = "Asia/Shanghai"', ""]
    for name, values in sec.items():
        lines.append(f"[{name}]")
        lines += [f"{k} = {toml_value(v)}" for k, v in values.items()]
        lines.append("")
    for name, url in (sources or {}).items():
        lines += ["[[sources]]", f'name = "{name}"', f'url = "{url}"']
        lines += [f"{k} = {toml_value(v)}" for k, v in (source_extra or {}).get(name, {}).items()]
        lines.append("")
    for u in UNITS if units is None else units:
        lines += ["[[units]]"] + [f"{k} = {toml_value(v)}" for k, v in u.items()] + [""]
    return "\n".join(lines)


@dataclass
class Env:
    """The environment of one test: its store, config file and reports dir."""

    url: str
    dir: Path
    engine: Engine
    monkeypatch: Any
    config_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.config_path = self.dir / "minyi.toml"
        self.monkeypatch.setenv("MINYI_CONFIG", str(self.config_path))

    @property
    def backend(self) -> str:
        return self.engine.dialect.name

    def write_config(self, toml: str) -> Path:
        self.config_path.write_text(toml, encoding="utf-8")
        return self.config_path

    def scalar(self, sql: str, **params: Any) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(text(sql), params).scalar()

    def rows(self, sql: str, **params: Any) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(text(sql), params).all())

    def cli_env(self) -> dict[str, str]:
        import os

        return {
            **os.environ,
            "MINYI_DATABASE_URL": self.url,
            "MINYI_CONFIG": str(self.config_path),
            "MINYI_REPORTS_DIR": str(self.dir / "reports"),
            "MINYI_HOME": str(self.dir / "home"),
        }


def make_record(n: int, day: date, **over: Any) -> dict[str, Any]:
    """A clean source row number `n` for `day`; override any field, or pass field=None to drop it."""
    row: dict[str, Any] = {
        "record_id": f"110-{day:%Y%m%d}-{n:06d}",
        "channel": "110",
        "matter": "police_call",
        "handled_at": f"{day.isoformat()}T{8 + n % 12:02d}:{n % 60:02d}:00+08:00",
        "unit_code": UNITS[n % len(UNITS)]["code"],
        "officer_id": f"{n:06d}",
        "citizen_name": "张三",
        "phone": f"138{n:08d}",
        "summary": "噪音扰民",
        "confidential": False,
    }
    for k, v in over.items():
        if v is None:
            row.pop(k, None)
        else:
            row[k] = v
    return row


# A store test that `make test` runs on PostgreSQL only and `make faults` on SQLite too: a long end-to-end test
# whose SQLite run repeats what its PostgreSQL run proves (the suite's time; the Makefile's `faults` target)
PG_IN_TEST = pytest.mark.parametrize(
    "store_url", [pytest.param("sqlite", marks=pytest.mark.faults), "postgres"], indirect=True
)
