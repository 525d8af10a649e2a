"""SPEC §9 refusals: one line on stderr naming the problem, a non-zero exit, no traceback, nothing written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import config_toml


def minyi(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full = {
        **os.environ,
        "MINYI_CONFIG": str(tmp_path / "minyi.toml"),
        "MINYI_HOME": str(tmp_path / "home"),
        "MINYI_REPORTS_DIR": str(tmp_path / "reports"),
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "minyi.cli", *args], env=full, capture_output=True, text=True, timeout=60
    )


def assert_refused(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    for w in words:
        assert w in last, last


@pytest.fixture
def good_config(tmp_path: Path) -> Path:
    path = tmp_path / "minyi.toml"
    path.write_text(config_toml({"police110": "http://127.0.0.1:9/police110"}), encoding="utf-8")
    return path


def test_a_bad_config_key_is_named(tmp_path: Path, good_config: Path) -> None:
    good_config.write_text(good_config.read_text() + "\n[sms]\nbatch_sise = 10\n", encoding="utf-8")
    assert_refused(minyi(["run", "--date", "2026-11-21"], tmp_path), "sms.batch_sise", "unknown key")


def test_a_missing_config_file_is_named(tmp_path: Path) -> None:
    assert_refused(minyi(["run"], tmp_path), "minyi.toml", "cannot read")


def test_a_malformed_date_is_named(tmp_path: Path, good_config: Path) -> None:
    assert_refused(minyi(["run", "--date", "2026-13-01"], tmp_path), "--date", "2026-13-01")
    assert_refused(minyi(["run", "--date", "21/11/2026"], tmp_path), "--date")


def test_an_instant_without_offset_is_refused(tmp_path: Path, good_config: Path) -> None:
    assert_refused(minyi(["run", "--as-of", "2026-11-22T09:00:00"], tmp_path), "--as-of", "offset")


def test_an_unreachable_database_is_named(tmp_path: Path, good_config: Path) -> None:
    url = "postgresql+psycopg://postgres@127.0.0.1:1/nothing"
    assert_refused(minyi(["run", "--date", "2026-11-21"], tmp_path, MINYI_DATABASE_URL=url), "database unreachable")


def test_an_unmigrated_database_asks_for_db_upgrade(tmp_path: Path, good_config: Path) -> None:
    url = f"sqlite:///{tmp_path}/empty.db"
    assert_refused(minyi(["run", "--date", "2026-11-21"], tmp_path, MINYI_DATABASE_URL=url), "minyi db upgrade")
    assert minyi(["db", "upgrade"], tmp_path, MINYI_DATABASE_URL=url).returncode == 0


def test_a_usage_error_is_one_line_too(tmp_path: Path, good_config: Path) -> None:
    assert_refused(minyi(["run", "--bogus"], tmp_path), "--bogus")
    assert_refused(minyi(["backfill", "--start", "2026-11-03"], tmp_path), "--end")


def test_delivery_slack_without_its_token_stops_the_run_before_any_work(tmp_path: Path) -> None:
    (tmp_path / "minyi.toml").write_text(
        config_toml(
            {"police110": "http://127.0.0.1:9/police110"},
            sections={"notify": {"delivery": "slack"}, "slack": {"token_env": "MINYI_TEST_UNSET_SLACK_TOKEN"}},
        ),
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if k != "MINYI_TEST_UNSET_SLACK_TOKEN"}
    url = f"sqlite:///{tmp_path}/store.db"
    assert minyi(["db", "upgrade"], tmp_path, MINYI_DATABASE_URL=url).returncode == 0
    with_env = subprocess.run(
        [sys.executable, "-m", "minyi.cli", "run", "--date", "2026-11-21"],
        env={
            **env,
            "MINYI_CONFIG": str(tmp_path / "minyi.toml"),
            "MINYI_HOME": str(tmp_path / "home"),
            "MINYI_REPORTS_DIR": str(tmp_path / "reports"),
            "MINYI_DATABASE_URL": url,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert_refused(with_env, "slack.token_env", "MINYI_TEST_UNSET_SLACK_TOKEN")
    assert not (tmp_path / "reports").exists()  # no report, no outbox file: nothing was done


def test_no_notify_section_means_slack_and_so_needs_its_token(tmp_path: Path) -> None:
    text = config_toml({"police110": "http://127.0.0.1:9/police110"}).replace('[notify]\ndelivery = "files"\n', "")
    (tmp_path / "minyi.toml").write_text(text, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "MINYI_SLACK_TOKEN"}
    url = f"sqlite:///{tmp_path}/store.db"
    assert minyi(["db", "upgrade"], tmp_path, MINYI_DATABASE_URL=url).returncode == 0
    result = subprocess.run(
        [sys.executable, "-m", "minyi.cli", "report", "--date", "2026-11-21"],
        env={**env, "MINYI_CONFIG": str(tmp_path / "minyi.toml"), "MINYI_DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert_refused(result, "MINYI_SLACK_TOKEN")
