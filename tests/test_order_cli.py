"""`minyi order` and the supervise / report-order flows, end to end (SPEC §5, §9).

The command is a one-row action: it answers without a flow run, exits 0 on
success, and on refusal exits non-zero with one line naming the problem and
the store unchanged.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from tests.supervision_support import add_answer, prepare_units, supervise_at
from tests.support import Env, at, config_toml


def minyi(env: Env, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "minyi.cli", *args], env=env.cli_env(), capture_output=True, text=True, timeout=60
    )


@pytest.fixture
def opened(env: Env) -> str:
    env.write_config(config_toml())
    prepare_units(env.engine)
    ref = add_answer(env.engine, at("2026-11-19 10:00"))
    supervise_at(env.engine, at("2026-11-19 11:00"))
    return ref


def state(env: Env) -> tuple:
    return (env.rows("SELECT * FROM orders ORDER BY id"), env.rows("SELECT * FROM order_events ORDER BY id"))


def test_minyi_order_records_a_report_and_answers_in_about_a_second(env: Env, opened: str) -> None:
    started = time.perf_counter()
    done = minyi(env, "order", opened, "--stage", "rectified", "--at", "2026-11-20T09:00:00+08:00", "--note", "已整改")
    elapsed = time.perf_counter() - started
    assert done.returncode == 0, done.stderr
    assert f"order {opened}" in done.stdout and "status rectified" in done.stdout
    assert "responded 2026-11-20T09:00+08:00" in done.stdout  # the earlier stage filled with the same time
    assert env.scalar("SELECT status FROM orders") == "rectified"
    assert elapsed < 5  # no flow run, no Prefect server start-up


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["police110:no-such-record", "--stage", "responded"], ["no supervision order", "police110:no-such-record"]),
        (["not-a-ref", "--stage", "responded"], ["SOURCE:RECORD_ID"]),
        (["{ref}", "--stage", "feedback"], ["--resolved or --unresolved"]),
        (["{ref}", "--stage", "closed"], ["--stage", "responded, rectified, feedback"]),
        (["{ref}", "--stage", "responded", "--at", "2026-11-20T09:00:00"], ["--at", "offset"]),
        (["{ref}", "--stage", "responded", "--at", "2026-11-18T09:00:00+08:00"], ["before the order was opened"]),
    ],
)
def test_a_refused_order_report_exits_non_zero_with_one_line_and_changes_nothing(
    env: Env, opened: str, args: list[str], words: list[str]
) -> None:
    before = state(env)
    result = minyi(env, "order", *[a.replace("{ref}", opened) for a in args])
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    for word in words:
        assert word in last, last
    assert state(env) == before


def test_a_regression_is_refused_by_the_command_and_changes_nothing(env: Env, opened: str) -> None:
    assert (
        minyi(env, "order", opened, "--stage", "feedback", "--resolved", "--at", "2026-11-21T09:00:00+08:00").returncode
        == 0
    )
    before = state(env)
    result = minyi(env, "order", opened, "--stage", "responded", "--at", "2026-11-22T09:00:00+08:00")
    assert result.returncode != 0
    assert "already closed" in result.stderr.strip().splitlines()[-1]
    assert state(env) == before


def test_the_supervise_flow_opens_orders_and_escalates(env: Env, prefect_harness: None) -> None:
    from minyi.flows.supervise import supervise

    env.write_config(config_toml())
    prepare_units(env.engine)
    add_answer(env.engine, at("2026-11-19 10:00"))
    summary = supervise(as_of=at("2026-11-25 09:00"))
    assert summary.opened == 1
    assert summary.escalations == {"response_reminder": 0, "response_overdue": 1, "completion_overdue": 0}
    again = supervise(as_of=at("2026-11-25 09:00"))
    assert again.escalations == {"response_reminder": 0, "response_overdue": 0, "completion_overdue": 0}
    assert env.scalar("SELECT COUNT(*) FROM notifications WHERE kind = 'response_overdue'") == 2


def test_the_report_order_flow_records_a_report(env: Env, opened: str, prefect_harness: None) -> None:
    from minyi.flows.supervise import report_order

    line = report_order(opened, "feedback", resolved="resolved", at="2026-11-20T09:00:00+08:00")
    assert "closed (resolved)" in line
    assert env.scalar("SELECT resolution FROM orders") == "resolved"
