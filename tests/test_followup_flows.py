"""The follow-up stage and the sweep as flows: a day sent at 09:00, and a relay killed mid-send (SPEC §4)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from minyi.sim.sms_gateway import SmsGateway
from minyi.tasks.stages.sms import IN_FLIGHT
from tests.support import PG_IN_TEST, Env, at, make_record
from tests.test_followups import DAY, add_records, configure, plan, rid


@pytest.fixture
def gateway() -> Iterator[SmsGateway]:
    gw = SmsGateway().start()
    yield gw
    gw.release.set()
    gw.stop()


def test_the_followup_stage_reads_overnight_opt_outs_before_planning_and_sends_the_rest(
    env: Env, gateway: SmsGateway, prefect_harness: None
) -> None:
    from minyi.flows.followup import followup

    rt = configure(env, gateway)
    add_records(rt, [make_record(i, DAY) for i in range(5)])
    gateway.inject_reply(make_record(0, DAY)["phone"], "ＴＤ", at("2026-11-22 07:00"))
    summary = followup(business_date=DAY, as_of=at("2026-11-22 09:05"))
    assert summary.replies.opt_outs == 1
    assert summary.plan.skipped == {"opted_out": 1}
    assert (summary.sms.sent, summary.sms.queued) == (4, 0)
    assert make_record(0, DAY)["phone"] not in {d.to for d in gateway.delivered.values()}


@PG_IN_TEST
def test_a_sweep_killed_while_the_gateway_holds_its_answer_then_re_run_delivers_each_message_once(
    env: Env, gateway: SmsGateway, prefect_harness: None
) -> None:
    from prefect.settings import PREFECT_API_URL

    rt = configure(env, gateway, timeout_seconds=60, claim_seconds=20)
    add_records(rt, [make_record(i, DAY) for i in range(120)])
    plan(rt, as_of=at("2026-11-22 08:00"))  # before the window: everything stays queued
    cli_env = {**env.cli_env(), "PREFECT_API_URL": PREFECT_API_URL.value() or ""}
    cmd = [sys.executable, "-m", "minyi.cli", "sweep", "--as-of", "2026-11-22T09:15:00+08:00"]

    gateway.stall_next_batch()
    proc = subprocess.Popen(cmd, env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert gateway.stalled.wait(120), "the sweep never sent its first batch"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    time.sleep(0.5)  # a request already written to the socket may still reach the gateway
    # the stalled batch and, while it waited, the next one (the relay keeps IN_FLIGHT batches on the wire)
    on_wire = [m for batch in gateway.state.batches for m in batch]
    assert len(gateway.state.batches) <= IN_FLIGHT
    assert len(gateway.delivered) == len(on_wire) >= 50  # the gateway has them ...
    assert env.scalar("SELECT COUNT(*) FROM followups WHERE sms_status = 'sent'") == 0  # ... the store never heard
    gateway.release.set()
    claimed = env.scalar(  # the follow-ups inside the dead run's claimed id ranges
        "SELECT COUNT(*) FROM followups f WHERE EXISTS "
        "(SELECT 1 FROM sms_claims c WHERE f.id >= c.first_id AND f.id <= c.last_id)"
    )
    assert claimed >= len(on_wire)  # the dead run's claims: nobody sends those until they expire

    sooner = subprocess.run(cmd, env=cli_env, capture_output=True, text=True, timeout=300)
    assert sooner.returncode == 0, sooner.stdout + sooner.stderr
    assert f"sent {120 - claimed} (duplicate 0)" in sooner.stdout, [
        ln for ln in sooner.stdout.splitlines() if "sms" in ln
    ]
    assert all(gateway.sends_of(m) == 1 for m in on_wire)
    # the dead run's claims expire (claim_seconds = 20, counted from its last renewal)
    expires = env.scalar("SELECT MAX(expires_at) FROM sms_claims")
    left = (datetime.fromisoformat(str(expires)).replace(tzinfo=UTC) - datetime.now(UTC)).total_seconds()
    time.sleep(max(left, 0) + 0.5)

    done = subprocess.run(cmd, env=cli_env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"sent {claimed} (duplicate {len(on_wire)})" in done.stdout
    assert sorted(gateway.delivered) == sorted(f"minyi:police110:{rid(i)}" for i in range(120))
    assert all(gateway.sends_of(m) == 2 for m in on_wire)
    assert {s for m, s in gateway.state.answers if m in on_wire} >= {"duplicate"}
    assert env.scalar("SELECT COUNT(*) FROM followups WHERE sms_status = 'sent'") == 120
