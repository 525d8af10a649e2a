"""SPEC §12: every count of assessment.json is backed by records in lineage.csv, and `minyi explain` lists them.

The counts and the lineage come from one statement (tasks.kpis.counts_sql): these tests hold it to that on
the hand-built month of tests/month.py and on random months, on both databases.
"""

from __future__ import annotations

import csv
import subprocess
import sys
from collections import Counter
from datetime import date, timedelta
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlmodel import Session

from minyi.flows.report import COUNT_PARTS
from minyi.tasks.config import AssessmentConfig, TargetsConfig
from minyi.tasks.stages.kpis import LINEAGE_METRICS, Period, compute_assessment, explain
from minyi.tasks.stages.reports import LineageFile
from tests.month import AS_OF, BUSINESS_DATE, A, B, Builder, D, build_month
from tests.support import TZ, Env, config_toml

TARGETS = TargetsConfig()


def assess_with_lineage(env: Env, path: Path, day: date = BUSINESS_DATE, parts: int = COUNT_PARTS) -> dict:
    """As the build-reports task counts: the record grouping in COUNT_PARTS statements side by side."""
    with env.engine.connect() as conn, LineageFile(path) as sink:
        return compute_assessment(conn, day, AS_OF, TZ, TARGETS, AssessmentConfig(min_responses=0), sink, parts)


def read_lineage(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as fh:  # a quoted cell may hold a newline
        return list(csv.DictReader(fh))


def counts_match_lineage(report: dict, rows: list[dict[str, str]]) -> None:
    per = Counter((r["unit_code"], r["metric"]) for r in rows)
    for unit in report["units"]:
        for metric in LINEAGE_METRICS:
            if metric in unit:
                assert unit[metric] == per[(unit["unit_code"], metric)], (unit["unit_code"], metric)
    assert {u for u, _ in per} <= {u["unit_code"] for u in report["units"]}


def test_lineage_csv_has_the_documented_header_and_one_row_per_record_behind_each_count(
    env: Env, tmp_path: Path
) -> None:
    build_month(env.engine)
    path = tmp_path / "lineage.csv"
    report = assess_with_lineage(env, path)
    assert path.read_text(encoding="utf-8-sig").splitlines()[0] == "unit_code,metric,source,record_id"
    rows = read_lineage(path)
    counts_match_lineage(report, rows)
    # unit A: 6 records, 5 sent, 5 responses, 2 orders (the hand count of tests/test_kpis.py)
    per = Counter((r["unit_code"], r["metric"]) for r in rows)
    assert (per[(A, "records")], per[(A, "followups_sent")], per[(A, "orders_opened")]) == (6, 5, 2)
    assert {r["metric"] for r in rows} <= set(LINEAGE_METRICS)


def test_explain_lists_exactly_the_hand_listed_records_behind_a_count(env: Env) -> None:
    build_month(env.engine)
    with env.engine.connect() as conn:
        # D's two dissatisfied answers: the landline visit of the 15th and the SMS of the 16th (tests/month.py)
        got = explain(conn, D, "dissatisfied", Period.month_to_date(BUSINESS_DATE), AS_OF)
        assert got == ["police110:110-20261115-0017", "police110:110-20261116-0018"]
        # B: its five records of the period, not the one of the 21st
        records = explain(conn, B, "records", Period.month_to_date(BUSINESS_DATE), AS_OF)
    assert records == [
        "police110:110-20261105-0008",
        "police110:110-20261106-0009",
        "police110:110-20261109-0010",
        "police110:110-20261109-0012",
        "police110:110-20261110-0011",
    ]


def test_a_formula_in_a_record_id_or_unit_code_arrives_escaped_in_every_csv(env: Env, tmp_path: Path) -> None:
    from minyi.tasks.stages.reports import assessment_csv

    evil_unit = '=HYPERLINK("http://x.example/?q=1","点此")'
    with Session(env.engine) as s:
        b = Builder(s)
        rec = b.record(evil_unit, date(2026, 11, 3))
        rec.record_id = '-2+3,"x"'
        s.add(rec)
        b.followup(rec, satisfaction="satisfied")
        s.commit()
    path = tmp_path / "lineage.csv"
    report = assess_with_lineage(env, path)
    rows = read_lineage(path)
    assert {(r["unit_code"], r["source"], r["record_id"]) for r in rows} == {
        ("'" + evil_unit, "police110", '\'-2+3,"x"')
    }
    (unit_row,) = [
        r for r in csv.DictReader(assessment_csv(report).lstrip("\ufeff").splitlines()) if r["unit_code"] != "overall"
    ]
    assert unit_row["unit_code"] == "'" + evil_unit and unit_row["satisfaction_rate"] == "1.0"


# --- random months: every count equals its number of lineage rows ---------------------------------------------------

UNITS = ("U-1", "U-2", "U-3")
DAYS = [date(2026, 10, 31) + timedelta(days=i) for i in range(32)]  # 31 Oct .. 1 Dec: the edges of November
ANSWERS = (None, "satisfied", "basically_satisfied", "dissatisfied", "unreachable")
HOURS = st.one_of(st.none(), st.integers(min_value=-30, max_value=200))

ROW = st.tuples(
    st.sampled_from(UNITS),
    st.sampled_from(DAYS),
    st.sampled_from(("none", "sent", "manual")),
    st.sampled_from(ANSWERS),
    st.booleans(),  # an order
    HOURS,  # responded, hours after opening
    HOURS,  # closed, hours after opening
    st.booleans(),  # resolved
    st.booleans(),  # dues known (else pending_calendar)
)


def _clear(env: Env) -> None:
    with env.engine.begin() as conn:
        for table in ("escalations", "orders", "followups", "records"):
            conn.execute(text(f"DELETE FROM {table}"))


def _build(env: Env, rows: list[tuple]) -> None:
    from tests.support import at

    with Session(env.engine) as s:
        b = Builder(s)
        for unit, day, plan, answer, order, responded, closed, resolved, dues in rows:
            rec = b.record(unit, day)
            if plan == "none":
                continue
            fu = b.followup(rec, sent=plan == "sent", satisfaction=answer)
            if not order:
                continue
            opened = at(f"{day} 12:00")

            def later(hours: int | None, base=opened) -> str | None:
                return None if hours is None else (base + timedelta(hours=hours)).strftime("%Y-%m-%d %H:%M")

            b.order(
                fu,
                opened.strftime("%Y-%m-%d %H:%M"),
                response_due=later(72) if dues else None,
                completion_due=later(120) if dues else None,
                responded_at=later(responded if responded is None else abs(responded)),
                closed_at=later(closed if closed is None else abs(closed)),
                resolution=("resolved" if resolved else "unresolved") if closed is not None else None,
            )
        s.commit()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=st.lists(ROW, max_size=30), day=st.sampled_from([date(2026, 11, 1), date(2026, 11, 15), date(2026, 11, 30)])
)
def test_on_random_months_every_count_equals_its_number_of_lineage_rows(
    env: Env, tmp_path: Path, rows: list[tuple], day: date
) -> None:
    _clear(env)
    _build(env, rows)
    path = tmp_path / "lineage.csv"
    report = assess_with_lineage(env, path, day)
    lineage = read_lineage(path)
    counts_match_lineage(report, lineage)
    # one statement or COUNT_PARTS side by side: the same counts and the same lineage rows
    whole = tmp_path / "lineage-one-statement.csv"
    assert assess_with_lineage(env, whole, day, parts=1) == report
    assert sorted(map(str, read_lineage(whole))) == sorted(map(str, lineage))
    with env.engine.connect() as conn:
        for unit in report["units"][:2]:
            for metric in ("followups_sent", "responded_on_time"):
                listed = explain(conn, unit["unit_code"], metric, Period.month_to_date(day), AS_OF)
                assert len(listed) == unit[metric]


# --- minyi explain and the explain deployment -------------------------------------------------------------------------


def minyi(env: Env, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "minyi.cli", *args], env=env.cli_env(), capture_output=True, text=True, timeout=120
    )


def test_minyi_explain_prints_the_hand_listed_records_then_the_count_of_assessment_json(env: Env) -> None:
    env.write_config(config_toml())
    build_month(env.engine)
    done = minyi(env, "explain", A, "dissatisfied", "--date", "2026-11-20", "--as-of", "2026-11-21T09:30:00+08:00")
    assert done.returncode == 0, done.stderr
    # A's two dissatisfied answers of the period (the 31 October one is last month's)
    assert done.stdout.splitlines() == [
        "police110:110-20261102-0004",
        "police110:110-20261118-0006",
        f"{A} dissatisfied = 2",
    ]


def test_minyi_explain_refuses_a_metric_it_cannot_trace(env: Env) -> None:
    env.write_config(config_toml())
    done = minyi(env, "explain", A, "satisfaction_rate", "--date", "2026-11-20")
    assert done.returncode != 0 and "METRIC 'satisfaction_rate'" in done.stderr.splitlines()[-1]


def test_the_explain_flow_shows_the_records_as_a_table_artifact(env: Env, prefect_harness: None) -> None:
    from prefect.client.orchestration import get_client

    from minyi.flows.explain import explain_flow

    env.write_config(config_toml())
    build_month(env.engine)
    lines = explain_flow(unit_code=B, metric="orders_opened", business_date="2026-11-20", as_of=AS_OF.isoformat())
    assert lines == ["police110:110-20261109-0012", f"{B} orders_opened = 1"]

    async def latest() -> object:
        async with get_client() as client:
            from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

            (artifact,) = await client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["explain"])), limit=1
            )
            return artifact

    import asyncio

    artifact = asyncio.run(latest())
    assert artifact.type == "table" and "110-20261109-0012" in str(artifact.data)
    assert f"{B} orders_opened = 1" in artifact.description


TRICKY_IDS = ["=1+1", "+86", "-5", "@SUM", "\tx", "\rx", "a,b", 'say "hi"', "two\nlines", "'=quoted", "plain-1"]


def test_lineage_cells_are_what_the_python_csv_writer_makes_of_any_record_id(env: Env, tmp_path: Path) -> None:
    from minyi.tasks.rules.csvsafe import csv_cell

    with Session(env.engine) as s:
        b = Builder(s)
        for rid in TRICKY_IDS:
            rec = b.record("U-1", date(2026, 11, 3))
            rec.record_id = rid
            s.add(rec)
        s.commit()
    path = tmp_path / "lineage.csv"
    assess_with_lineage(env, path)
    assert sorted(r["record_id"] for r in read_lineage(path)) == sorted(csv_cell(rid) for rid in TRICKY_IDS)
