"""Data quality (SPEC §8): the batch suite, the volume gate, the store invariants, and what they write.

Records are written straight into the store with the ingest stage's bulk path
(so a crafted batch can carry what intake would have refused); validation runs
in the database through Great Expectations, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import date, datetime, timedelta
from typing import Any

import pytest

from minyi.schemas import expectations as ex
from minyi.tasks.rules.intake import Accepted
from minyi.tasks.runtime import Runtime, load_runtime
from minyi.tasks.stages.quality import (
    QualitySummary,
    decide_gate,
    record_day,
    report_dir_for,
    trailing_median,
    validate_day,
)
from minyi.tasks.store.records import store_page
from tests.support import PG_IN_TEST, TZ, Env, at, config_toml

DAY = date(2026, 11, 21)
AS_OF = at("2026-11-22 09:00")
SOURCES = ("police110", "window")


def configure(env: Env, sections: dict[str, dict[str, Any]] | None = None) -> Runtime:
    env.write_config(config_toml({s: f"http://127.0.0.1:9/{s}" for s in SOURCES}, sections=sections))
    return load_runtime()


def accepted(n: int, day: date, **over: Any) -> Accepted:
    """A clean accepted record; override fields to craft a bad one."""
    fields: dict[str, Any] = {
        "record_id": f"R-{day:%Y%m%d}-{n:06d}",
        "channel": "110",
        "matter": "police_call",
        "handled_at": datetime.combine(day, datetime.min.time(), TZ) + timedelta(hours=9, minutes=n % 600),
        "unit_code": "QD-SN-PS01",
        "officer_id": None,
        "citizen_name": "张三",
        "phone_norm": f"139{n:08d}",
        "phone_kind": "mobile",
        "summary": None,
        "confidential": False,
    }
    fields.update(over)
    return Accepted(**fields)


def load(rt: Runtime, source: str, day: date, rows: list[Accepted]) -> None:
    store_page(rt.engine, source, day, rows, [], len(rows), None, AS_OF)


def clean_day(rt: Runtime, source: str, day: date, count: int, start: int = 0) -> None:
    load(rt, source, day, [accepted(i, day) for i in range(start, start + count)])


def history(rt: Runtime, source: str, count: int = 20, dates: int = 3) -> None:
    for back in range(1, dates + 1):
        clean_day(rt, source, DAY - timedelta(days=back), count)


def run(rt: Runtime, force: bool = False, as_of: datetime = AS_OF, docs: bool = False) -> QualitySummary:
    """The stage as the flow runs it; Data Docs (a second of HTML rendering) only where a test looks at them."""
    report = report_dir_for(rt, DAY)
    found = validate_day(rt, DAY, as_of, report / "data_docs" if docs else None)
    return record_day(rt, DAY, as_of, found, force, report)


def expectations_of(summary: QualitySummary, source: str) -> dict[str, bool | None]:
    return next(s for s in summary.sources if s.source == source).expectation_map()


def gates(env: Env) -> dict[str, str]:
    return {s: g for s, g in env.rows("SELECT source, gate FROM source_gates WHERE business_date = :d", d=DAY)}


# --- the batch suite: each expectation passes on a clean batch and fails on a crafted one ---------------------


def test_a_clean_batch_meets_every_expectation_and_passes_the_gate(env: Env) -> None:
    rt = configure(env)
    history(rt, "police110")
    clean_day(rt, "police110", DAY, 20)
    summary = run(rt)
    assert expectations_of(summary, "police110") == {name: True for name in ex.BATCH_EXPECTATIONS}
    assert gates(env)["police110"] == "pass"


def test_a_channel_outside_the_six_fails_channel_in_set(env: Env) -> None:
    rt = configure(env)
    load(rt, "police110", DAY, [accepted(0, DAY), accepted(1, DAY, channel="fax")])
    result = expectations_of(run(rt), "police110")
    assert result["channel_in_set"] is False
    assert result["record_id_unique"] is True


def test_a_handled_at_two_days_off_fails_handled_at_in_window(env: Env) -> None:
    rt = configure(env)
    edge = datetime.combine(DAY + timedelta(days=1), datetime.max.time(), TZ)  # last instant of the window: fine
    far = datetime.combine(DAY - timedelta(days=2), datetime.min.time(), TZ) + timedelta(hours=23, minutes=59)
    load(rt, "police110", DAY, [accepted(0, DAY, handled_at=edge)])
    assert expectations_of(run(rt), "police110")["handled_at_in_window"] is True
    load(rt, "police110", DAY, [accepted(1, DAY, handled_at=far)])
    assert expectations_of(run(rt, as_of=AS_OF + timedelta(minutes=1)), "police110")["handled_at_in_window"] is False


def test_an_unknown_unit_fails_unit_code_known_as_a_warning_that_holds_nothing(env: Env) -> None:
    rt = configure(env)
    history(rt, "police110")
    load(rt, "police110", DAY, [accepted(i, DAY, unit_code="QD-XX-NEW" if i == 0 else "QD-CGS") for i in range(20)])
    summary = run(rt)
    outcome = next(o for o in summary.sources[0].expectations if o.name == "unit_code_known")
    assert (outcome.success, outcome.severity, outcome.sample) == (False, "warning", ["QD-XX-NEW"])
    assert gates(env)["police110"] == "pass"


def test_fewer_than_half_valid_mobiles_fails_valid_mobile_share(env: Env) -> None:
    rt = configure(env)
    kinds = ["mobile"] * 4 + ["landline"] * 3 + ["invalid"] * 2 + ["missing"]
    load(rt, "police110", DAY, [accepted(i, DAY, phone_kind=k) for i, k in enumerate(kinds)])
    assert expectations_of(run(rt), "police110")["valid_mobile_share"] is False
    load(rt, "police110", DAY, [accepted(i, DAY, phone_kind="mobile") for i in range(10, 12)])  # 6 of 12: half
    assert expectations_of(run(rt, as_of=AS_OF + timedelta(minutes=1)), "police110")["valid_mobile_share"] is True


def test_a_repeated_record_id_fails_record_id_unique() -> None:
    """The store's UNIQUE(source, record_id) already forbids it; the suite is the second line, proven on a frame."""
    import great_expectations as gx
    import pandas as pd

    frame = pd.DataFrame(
        {
            "record_id": ["A", "B", "A"],
            "channel": ["110"] * 3,
            "handled_at": ["2026-11-21 01:00:00.000000"] * 3,
            "unit_code": ["QD-SN-PS01"] * 3,
            "phone_kind": ["mobile"] * 3,
        }
    )
    bounds = ex.BatchBounds("2026-11-19 16:00:00.000000", "2026-11-22 15:59:59.999999", ("QD-SN-PS01",), None)
    from great_expectations.data_context.types.base import ProgressBarsConfig

    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    asset = ctx.data_sources.add_pandas("frame").add_dataframe_asset("batch")
    batch = asset.add_batch_definition_whole_dataframe("all").get_batch(batch_parameters={"dataframe": frame})

    def unique(batch: Any) -> bool:
        results = batch.validate(ex.batch_suite("x", bounds)).results
        return next(r.success for r in results if r.expectation_config.meta["name"] == "record_id_unique")

    assert unique(batch) is False
    clean = frame.assign(record_id=["A", "B", "C"])
    assert unique(asset.add_batch_definition_whole_dataframe("clean").get_batch({"dataframe": clean})) is True


# --- the volume gate ------------------------------------------------------------------------------------------


def test_the_median_needs_three_previous_dates_with_data() -> None:
    assert trailing_median([10, 0, 12]) == (None, [10, 12])
    assert trailing_median([10, 0, 12, 30, 8, 9, 11, 14, 99]) == (11.0, [10, 12, 30, 8, 9, 11, 14])


def test_the_gate_holds_outside_the_band_unless_released() -> None:
    assert decide_gate(None, None, False) == "no_history"
    assert decide_gate(True, "held", False) == "pass"
    assert decide_gate(False, None, False) == "held"
    assert decide_gate(False, "held", True) == "released"
    assert decide_gate(False, "released", False) == "released"


def test_with_fewer_than_three_dates_of_history_the_gate_passes_as_no_history(env: Env) -> None:
    rt = configure(env)
    history(rt, "police110", dates=2)
    clean_day(rt, "police110", DAY, 2)
    summary = run(rt)
    assert gates(env)["police110"] == "no_history"
    assert expectations_of(summary, "police110")["row_count_within_median_band"] is None


def test_a_half_empty_day_holds_that_source_only_and_alerts_the_centre(env: Env) -> None:
    rt = configure(env)
    for source in SOURCES:
        history(rt, source, count=20)
    clean_day(rt, "police110", DAY, 9)  # below 50% of the median (20)
    clean_day(rt, "window", DAY, 20)
    summary = run(rt)
    assert gates(env) == {"police110": "held", "window": "pass"}
    assert env.rows("SELECT row_count, median FROM source_gates WHERE source = 'police110'") == [(9, 20.0)]
    (alert,) = env.rows("SELECT channel, text FROM notifications WHERE kind = 'quality_alert'")
    assert alert[0] == "C0CENTER" and "police110" in alert[1] and "window" not in alert[1]
    assert summary.held == ["police110"]


def test_a_held_source_keeps_its_sms_queued_while_the_others_are_sent(env: Env) -> None:
    from minyi.sim.sms_gateway import SmsGateway
    from minyi.tasks.adapters.sms import GatewayClient
    from minyi.tasks.stages.eligibility import plan_followups
    from minyi.tasks.stages.sms import flush_outbox

    gw = SmsGateway().start()
    try:
        sms = {"url": gw.url, "batch_size": 50, "backoff_seconds": 0.01, "max_backoff_seconds": 0.02}
        rt = configure(env, sections={"sms": sms})
        for source in SOURCES:
            history(rt, source, count=20)
        clean_day(rt, "police110", DAY, 5, start=100)
        clean_day(rt, "window", DAY, 20, start=200)
        run(rt)
        with rt.engine.begin() as conn:
            plan_followups(conn, DAY, AS_OF, rt.config)
        with GatewayClient.from_config(rt.config) as client:
            sent = flush_outbox(rt.engine, rt.config, client, AS_OF)
        assert (sent.sent, sent.held) == (20, 5)
        status = env.rows(
            "SELECT source, sms_status, COUNT(*) FROM followups WHERE business_date = :d GROUP BY source, sms_status",
            d=DAY,
        )
        assert sorted(status) == [("police110", "queued", 5), ("window", "sent", 20)]
        assert len(gw.delivered) == 20
    finally:
        gw.release.set()
        gw.stop()


def test_the_daily_loop_sends_no_sms_for_a_source_its_quality_stage_holds(env: Env, prefect_harness: None) -> None:
    """The loop plans while quality still validates; the relay must wait for the gates all the same."""
    from minyi.flows.daily_loop import daily_loop
    from minyi.sim.sms_gateway import SmsGateway
    from minyi.sim.source_server import SourceServer, StaticFeed
    from tests.support import make_record

    with SourceServer(StaticFeed()) as src, SmsGateway() as gw:
        sms = {"url": gw.url, "batch_size": 50, "backoff_seconds": 0.01, "max_backoff_seconds": 0.02}
        env.write_config(config_toml({s: src.url_for(s) for s in SOURCES}, sections={"sms": sms}))
        rt = load_runtime()
        for source in SOURCES:
            history(rt, source, count=20)
        src.feed.data[("police110", DAY)] = [make_record(i, DAY) for i in range(5)]  # a quarter of its median
        src.feed.data[("window", DAY)] = [make_record(i, DAY, record_id=f"W-{i}") for i in range(100, 120)]
        loop = daily_loop(business_date=DAY, as_of=AS_OF)
    gates = {s.source: s.gate for s in loop.quality.sources}
    assert gates == {"police110": "held", "window": "pass"}
    assert (loop.followup.sms.sent, loop.followup.sms.held) == (20, 5)
    assert sorted(gw.delivered) == sorted(f"minyi:window:W-{i}" for i in range(100, 120))
    assert list(loop.seconds) == ["ingest", "quality", "followup", "supervise", "find-warnings", "report", "warnings"]


def test_force_releases_a_held_gate_and_the_release_sticks_on_later_runs(env: Env) -> None:
    rt = configure(env)
    history(rt, "police110", count=20)
    clean_day(rt, "police110", DAY, 5)
    run(rt)
    assert gates(env)["police110"] == "held"
    forced = run(rt, force=True, as_of=AS_OF + timedelta(hours=1))
    assert forced.sources[0].gate == "released"
    later = run(rt, as_of=AS_OF + timedelta(hours=2))
    assert later.sources[0].gate == "released"
    assert env.rows("SELECT gate, forced FROM quality_runs WHERE source = 'police110' ORDER BY as_of") == [
        ("held", False),
        ("released", True),
        ("released", False),
    ]


def test_a_rerun_at_the_same_instant_stores_one_run_and_posts_one_alert(env: Env) -> None:
    rt = configure(env)
    history(rt, "police110", count=20)
    clean_day(rt, "police110", DAY, 5)
    run(rt)
    run(rt)
    assert env.scalar("SELECT COUNT(*) FROM quality_runs WHERE source = 'police110'") == 1
    assert env.scalar("SELECT COUNT(*) FROM notifications WHERE kind = 'quality_alert'") == 1


# --- the store suite ------------------------------------------------------------------------------------------


def _followup(env: Env, rt: Runtime, n: int, phone: str | None, sent_at: datetime | None) -> int:
    from sqlalchemy import text

    from minyi.tasks.store.engine import instant_param

    load(rt, "police110", DAY, [accepted(n, DAY, phone_norm=phone)])
    d = env.backend
    with rt.engine.begin() as conn:
        pk = conn.execute(
            text("SELECT id FROM records WHERE record_id = :r"), {"r": f"R-{DAY:%Y%m%d}-{n:06d}"}
        ).scalar()
        conn.execute(
            text(
                "INSERT INTO followups (record_pk, source, record_id, business_date, unit_code, phone_norm, plan, "
                "message_id, sms_status, planned_at, sent_at) VALUES (:pk, 'police110', :r, :d, 'QD-SN-PS01', :p, "
                "'sms', :m, :st, :now, :sent)"
            ),
            {
                "pk": pk,
                "r": f"R-{DAY:%Y%m%d}-{n:06d}",
                "d": DAY,
                "p": phone,
                "m": f"m{n}",
                "st": "sent" if sent_at else "queued",
                "now": instant_param(d, AS_OF),
                "sent": instant_param(d, sent_at),
            },
        )
        return pk


def _opt_out(env: Env, phone: str, when: datetime) -> None:
    from minyi.tasks.store.engine import instant_param

    with env.engine.begin() as conn:
        from sqlalchemy import text

        conn.execute(
            text("INSERT INTO opt_outs (phone_norm, opted_out_at, reply_id) VALUES (:p, :t, :r)"),
            {"p": phone, "t": instant_param(env.backend, when), "r": f"reply-{phone}"},
        )


def test_an_sms_sent_to_an_opted_out_phone_is_reported_with_its_record(env: Env) -> None:
    rt = configure(env)
    _opt_out(env, "13900000001", at("2026-11-20 10:00"))
    _opt_out(env, "13900000002", at("2026-11-22 12:00"))  # opted out after the SMS: a reply to it, no violation
    _followup(env, rt, 1, "13900000001", at("2026-11-22 09:00"))
    _followup(env, rt, 2, "13900000002", at("2026-11-22 09:00"))
    _followup(env, rt, 3, "13900000003", at("2026-11-22 09:00"))
    summary = run(rt, as_of=at("2026-11-22 13:00"))
    (broken,) = summary.store.broken
    assert (broken.name, broken.unexpected, broken.sample) == (
        "no_sms_to_invalid_or_opted_out_phone",
        1,
        [f"police110:R-{DAY:%Y%m%d}-000001"],
    )
    stored = json.loads(env.scalar("SELECT expectations FROM quality_runs WHERE source = 'store'"))
    assert stored["no_sms_to_invalid_or_opted_out_phone"]["sample"] == [f"police110:R-{DAY:%Y%m%d}-000001"]
    assert "R-20261121-000001" in env.scalar("SELECT text FROM notifications WHERE kind = 'quality_alert'")


def test_an_sms_sent_to_a_landline_is_reported(env: Env) -> None:
    rt = configure(env)
    _followup(env, rt, 1, "053212345678", at("2026-11-22 09:00"))
    _followup(env, rt, 2, "053287654321", None)  # queued, not sent: not an SMS yet
    summary = run(rt)
    assert summary.store.expectation_map()["no_sms_to_invalid_or_opted_out_phone"] is False
    assert summary.store.broken[0].sample == [f"police110:R-{DAY:%Y%m%d}-000001"]


def test_a_dissatisfied_follow_up_without_an_order_and_an_order_due_before_it_opened_are_reported(env: Env) -> None:
    from sqlalchemy import text

    from minyi.tasks.store.engine import instant_param

    rt = configure(env)
    late = _followup(env, rt, 1, "13900000001", at("2026-11-21 09:00"))
    fresh = _followup(env, rt, 2, "13900000002", at("2026-11-21 09:00"))
    ok = _followup(env, rt, 3, "13900000003", at("2026-11-21 09:00"))
    p = env.backend
    with rt.engine.begin() as conn:
        ids = {
            pk: conn.execute(text("SELECT id FROM followups WHERE record_pk = :pk"), {"pk": pk}).scalar()
            for pk in (late, fresh, ok)
        }
        # yesterday's 09:00 loop opened orders for what had arrived by then; today's has not run supervise yet
        for pk, answered in ((late, "2026-11-21 08:00"), (fresh, "2026-11-21 10:00"), (ok, "2026-11-21 08:00")):
            conn.execute(
                text(
                    "INSERT INTO answers (followup_id, via, ref, value, answered_at) "
                    "VALUES (:f, 'sms', :ref, 'dissatisfied', :t)"
                ),
                {"f": ids[pk], "ref": f"reply-{pk}", "t": instant_param(p, at(answered))},
            )
        conn.execute(
            text(
                "INSERT INTO orders (followup_id, source, record_id, unit_code, opened_at, status, response_due, "
                "completion_due, created_at, updated_at) VALUES (:f, 'police110', :r, 'QD-SN-PS01', :o, 'open', :rd, "
                ":cd, :o, :o)"
            ),
            {
                "f": ids[ok],
                "r": f"R-{DAY:%Y%m%d}-000003",
                "o": instant_param(p, at("2026-11-21 10:00")),
                "rd": instant_param(p, at("2026-11-21 09:00")),  # due before it opened: broken on purpose
                "cd": instant_param(p, at("2026-11-28 00:00")),
            },
        )
    broken = {o.name: o.sample for o in run(rt).store.broken}
    # the answer of 10:00 yesterday is still waiting for today's supervise stage: not reported yet
    assert broken["dissatisfied_followup_has_one_order"] == [f"police110:R-{DAY:%Y%m%d}-000001"]
    assert broken["due_instants_after_opened_at"] == [f"police110:R-{DAY:%Y%m%d}-000003"]


def test_an_invariant_over_a_table_not_yet_in_the_store_is_not_applicable(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt = configure(env)
    pending = replace(ex.STORE_INVARIANTS[0], name="pending_stage", needs={"no_such_table": ("id",)})
    monkeypatch.setattr(ex, "STORE_INVARIANTS", (*ex.STORE_INVARIANTS, pending))
    summary = run(rt)
    outcome = next(o for o in summary.store.expectations if o.name == "pending_stage")
    assert outcome.success is None and "no_such_table" in (outcome.note or "")
    doc = json.loads((report_dir_for(rt, DAY) / "quality.json").read_text())
    assert doc["store"]["expectations"]["pending_stage"] is None


# --- what the stage writes ------------------------------------------------------------------------------------


@pytest.fixture
def reported(env: Env) -> Iterator[tuple[Env, Runtime, QualitySummary]]:
    from minyi.tasks.rules.intake import Quarantined

    rt = configure(env)
    history(rt, "police110", count=20)
    rows = [accepted(i, DAY, phone_norm="13812345678", citizen_name="李四") for i in range(20)]
    bad = [Quarantined(None, ("missing_record_id", "bad_channel"), '{"phone":"13812345678"}', "f1")]
    store_page(rt.engine, "police110", DAY, rows, bad, 23, None, AS_OF)  # 2 re-deliveries among the 23
    yield env, rt, run(rt, docs=True)


def test_quality_json_counts_fetched_accepted_and_quarantined_by_reason(reported: Any) -> None:
    _, rt, _ = reported
    doc = json.loads((report_dir_for(rt, DAY) / "quality.json").read_text())
    police = next(s for s in doc["sources"] if s["source"] == "police110")
    assert (police["fetched"], police["accepted"], police["gate"]) == (23, 20, "pass")
    assert police["quarantined"] == {"total": 1, "by_reason": {"bad_channel": 1, "missing_record_id": 1}}
    assert set(police["expectations"]) == set(ex.BATCH_EXPECTATIONS)
    assert set(doc["store"]["expectations"]) == set(ex.STORE_EXPECTATIONS)
    csv_text = (report_dir_for(rt, DAY) / "quality.csv").read_text()
    assert csv_text.splitlines()[1].startswith("2026-11-21,police110,23,20,1,bad_channel=1;missing_record_id=1,pass")


def test_quarantined_rows_alert_the_centre_once_and_no_output_shows_a_phone_or_name(reported: Any) -> None:
    env, rt, _ = reported
    run(rt, as_of=AS_OF + timedelta(hours=1))
    (text,) = [r[0] for r in env.rows("SELECT text FROM notifications WHERE kind = 'quality_alert'")]
    assert "隔离 1 条" in text
    outputs = [
        text,
        *(p.read_text() for p in report_dir_for(rt, DAY).rglob("*") if p.suffix in {".json", ".csv", ".html"}),
    ]
    outputs += [r[0] for r in env.rows("SELECT expectations FROM quality_runs")]
    assert (report_dir_for(rt, DAY) / "data_docs" / "index.html").exists()
    assert not [o for o in outputs if "13812345678" in o or "李四" in o]


@PG_IN_TEST
def test_the_quality_flow_writes_its_artifact_and_cli_releases_a_gate(env: Env, prefect_harness: None) -> None:
    import subprocess
    import sys

    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort
    from prefect.settings import PREFECT_API_URL

    from minyi.flows.quality import quality

    rt = configure(env)
    history(rt, "police110", count=20)
    clean_day(rt, "police110", DAY, 5)
    summary = quality(business_date=DAY, as_of=AS_OF)
    assert summary.held == ["police110"]
    assert (report_dir_for(rt, DAY) / "data_docs" / "index.html").exists()
    with get_client(sync_client=True) as client:
        (artifact,) = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["quality-summary"])),
            sort=ArtifactSort.CREATED_DESC,
            limit=1,
        )
    assert "| police110 | 5 | 5 | 0 | **held** |" in str(artifact.data)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "minyi.cli",
            "quality",
            "--date",
            DAY.isoformat(),
            "--as-of",
            "2026-11-22T10:00:00+08:00",
            "--force",
        ],
        env={**env.cli_env(), "PREFECT_API_URL": str(PREFECT_API_URL.value())},  # the harness's server, not a new one
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert out.returncode == 0, out.stderr
    assert "police110" in out.stdout and "released" in out.stdout
    assert gates(env)["police110"] == "released"
