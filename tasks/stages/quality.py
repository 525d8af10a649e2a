"""The work of the quality stage (SPEC §8), without Prefect: validate, decide the gates, record, report.

Why GX runs in the database: the day's batch is already in `records`, so each
source's batch is a SQL query asset and GX computes its metrics with SQL
(COUNT … WHERE NOT IN, GROUP BY … HAVING); only counts and a few sample values
come back. At 1,000,000 records this takes seconds and no pandas frame
(benchmarks/quality.py; numbers in docs/quality.md).

The gate is decided by a pure function (`decide_gate`) from the GX result of
`row_count_within_median_band`, the source's previous gate and `force`.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import json
import logging
import os
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine

from minyi.schemas import expectations as ex
from minyi.tasks import texts
from minyi.tasks.heap import freeze_heap
from minyi.tasks.rules.csvsafe import csv_cell
from minyi.tasks.rules.days import start_of_day
from minyi.tasks.rules.masking import mask_text
from minyi.tasks.runtime import Runtime, quiet_third_parties
from minyi.tasks.store.engine import instant_param
from minyi.tasks.store.outbox import Message, enqueue

# Gates (SPEC §8). `released` is an operator's decision and sticks for that source and date.
PASS, HELD, RELEASED, NO_HISTORY = "pass", "held", "released", "no_history"
STORE = "store"  # the `source` of the store suite's quality_runs row
# How far back the median's "previous 7 business dates that have data" may reach: a
# source silent for a month has no meaningful trailing volume, and the bound keeps
# the history count an index range scan of four weeks, not of the whole store.
HISTORY_LOOKBACK_DAYS = 28
# The store suite looks at follow-ups and orders of the last month (what the
# month-to-date assessment and the open clocks are made of), not the whole history.
STORE_LOOKBACK_DAYS = 31
# A dissatisfied answer younger than this may still be waiting for the supervise stage
# (quality runs before it in the daily loop), so it is not yet "missing its order".
ORDER_GRACE = timedelta(hours=24)
OFFENDING_SAMPLE = 50


class Outcome(BaseModel):
    """One expectation's result. success None = not evaluated (no history, or a table not there yet)."""

    name: str
    success: bool | None
    severity: str = "critical"
    observed: Any = None
    unexpected: int | None = None
    sample: list[str] = []
    note: str | None = None


class SourceQuality(BaseModel):
    source: str
    fetched: int
    accepted: int
    quarantined: int
    quarantined_by_reason: dict[str, int]
    expectations: list[Outcome]
    gate: str
    median: float | None
    history: list[int]

    def expectation_map(self) -> dict[str, bool | None]:
        return {o.name: o.success for o in self.expectations}


class StoreQuality(BaseModel):
    expectations: list[Outcome]

    def expectation_map(self) -> dict[str, bool | None]:
        return {o.name: o.success for o in self.expectations}

    @property
    def broken(self) -> list[Outcome]:
        return [o for o in self.expectations if o.success is False]


class QualitySummary(BaseModel):
    business_date: date
    as_of: datetime
    forced: bool
    sources: list[SourceQuality]
    store: StoreQuality
    alerted: bool = False
    report_dir: str = ""
    seconds: float = 0.0

    @property
    def held(self) -> list[str]:
        return [s.source for s in self.sources if s.gate == HELD]


# ---------------------------------------------------------------------------------------------
# Pure rules


def trailing_median(counts_newest_first: Sequence[int]) -> tuple[float | None, list[int]]:
    """Median of the previous `HISTORY_DATES` dates that have data; None with fewer than 3 of them."""
    history = [c for c in counts_newest_first if c > 0][: ex.HISTORY_DATES]
    if len(history) < ex.MIN_HISTORY_DATES:
        return None, history
    return float(statistics.median(history)), history


def decide_gate(row_count_ok: bool | None, previous: str | None, force: bool) -> str:
    """SPEC §8's gate for one source and date.

    - no history (row_count_ok None) → `no_history` (passes);
    - count inside the band → `pass`;
    - outside: `held`, unless the operator forces a release now (`force`) or did so
      on an earlier run of the same date (`released` sticks, so a later daily run
      or sweep does not take back what the operator let go).
    """
    if row_count_ok is None:
        return NO_HISTORY
    if row_count_ok:
        return PASS
    if force or previous == RELEASED:
        return RELEASED
    return HELD


def window_bounds(business_date: date, tz: Any) -> tuple[datetime, datetime]:
    """Instants of SPEC §3's window (`tasks.intake.window_instants`), the end inclusive for the expectation."""
    from minyi.tasks.rules.intake import window_instants

    start, end = window_instants(business_date, tz)
    return start, end - timedelta(microseconds=1)


def instant_literal(dialect: str, value: datetime) -> str:
    """An instant as the store compares it: SQLite's stored text form, or ISO with +00:00 on PostgreSQL."""
    param = instant_param(dialect, value)
    return param if isinstance(param, str) else param.isoformat()


def alert_signature(sources: Sequence[SourceQuality], store: StoreQuality) -> str:
    """What the alert is about; the same situation on a re-run gives the same outbox key (posted once)."""
    parts = [f"{s.source}:{s.gate}:{s.quarantined}" for s in sources if s.gate == HELD or s.quarantined]
    parts += [f"{o.name}:{o.unexpected}" for o in store.broken]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def alert_text(business_date: date, sources: Sequence[SourceQuality], store: StoreQuality) -> str | None:
    """The centre channel's alert, or None when nothing was quarantined, held or broken."""
    lines: list[str] = []
    for s in sources:
        if s.gate == HELD:
            median = f"{s.median:.0f}" if s.median is not None else "—"
            lines.append(
                f"• {s.source}：当日 {s.accepted} 条，近{len(s.history)}日中位数 {median}，超出±50%，"
                "该数据源当日短信已暂停（held）"
            )
        if s.quarantined:
            reasons = "，".join(f"{r} {n}" for r, n in sorted(s.quarantined_by_reason.items()))
            lines.append(f"• {s.source}：隔离 {s.quarantined} 条（{reasons}）")
    for o in store.broken:
        refs = "、".join(o.sample[:10]) + ("…" if (o.unexpected or 0) > 10 else "")
        lines.append(f"• 存储约束 {o.name} 违例 {o.unexpected} 条：{refs}")
    if not lines:
        return None
    held = any(s.gate == HELD for s in sources)
    return mask_text(texts.quality_alert_text(business_date, lines, held))


def quality_document(summary: QualitySummary, tz: Any) -> dict[str, Any]:
    """quality.json (SPEC §7): per source fetched, accepted, quarantined, expectations, gate; plus the store suite."""
    return {
        "business_date": summary.business_date.isoformat(),
        "as_of": summary.as_of.astimezone(tz).isoformat(),
        "forced": summary.forced,
        "sources": [
            {
                "source": s.source,
                "fetched": s.fetched,
                "accepted": s.accepted,
                "quarantined": {"total": s.quarantined, "by_reason": dict(sorted(s.quarantined_by_reason.items()))},
                "expectations": s.expectation_map(),
                "gate": s.gate,
                "median": s.median,
                "history": s.history,
            }
            for s in summary.sources
        ],
        "store": {
            "expectations": summary.store.expectation_map(),
            "offending": {
                o.name: {"count": o.unexpected or 0, "refs": o.sample} for o in summary.store.expectations if o.sample
            },
            "not_applicable": {o.name: o.note for o in summary.store.expectations if o.success is None},
        },
        "data_docs": "data_docs/index.html",
    }


CSV_BASE_COLUMNS = (
    "business_date",
    "source",
    "fetched",
    "accepted",
    "quarantined",
    "quarantined_by_reason",
    "gate",
    "median",
    *ex.BATCH_EXPECTATIONS,
)


def _cell(v: bool | None) -> str:
    return "" if v is None else str(v).lower()


class _SafeDictWriter(csv.DictWriter):
    """csv.DictWriter whose cells are formula-safe (SPEC §7, tasks.csvsafe)."""

    def writerow(self, rowdict: dict[str, Any]) -> Any:
        return super().writerow({k: csv_cell(v) for k, v in rowdict.items()})


def quality_csv(summary: QualitySummary) -> str:
    """The CSV twin: one row per source, then one `store` row with the invariants."""
    buf = io.StringIO()
    columns = [*CSV_BASE_COLUMNS, *(o.name for o in summary.store.expectations)]
    w = _SafeDictWriter(buf, fieldnames=columns, lineterminator="\n")
    w.writeheader()
    day = summary.business_date.isoformat()
    for s in summary.sources:
        exp = s.expectation_map()
        w.writerow(
            {
                "business_date": day,
                "source": s.source,
                "fetched": s.fetched,
                "accepted": s.accepted,
                "quarantined": s.quarantined,
                "quarantined_by_reason": ";".join(f"{r}={n}" for r, n in sorted(s.quarantined_by_reason.items())),
                "gate": s.gate,
                "median": "" if s.median is None else s.median,
                **{name: _cell(exp.get(name)) for name in ex.BATCH_EXPECTATIONS},
            }
        )
    w.writerow(
        {
            "business_date": day,
            "source": STORE,
            **{name: _cell(v) for name, v in summary.store.expectation_map().items()},
        }
    )
    return buf.getvalue()


def markdown_summary(summary: QualitySummary) -> str:
    """The Prefect artifact: one row per source, then the store invariants."""
    lines = [
        f"### Data quality {summary.business_date}",
        "",
        "| source | fetched | accepted | quarantined | gate | failed expectations |",
        "|---|---:|---:|---:|---|---|",
    ]
    for s in summary.sources:
        failed = ", ".join(o.name for o in s.expectations if o.success is False) or "—"
        lines.append(f"| {s.source} | {s.fetched} | {s.accepted} | {s.quarantined} | **{s.gate}** | {failed} |")
    lines += ["", "| store invariant | result | offending |", "|---|---|---|"]
    for o in summary.store.expectations:
        result = "n/a" if o.success is None else ("ok" if o.success else f"**broken** ({o.unexpected})")
        lines.append(f"| {o.name} | {result} | {', '.join(o.sample[:10]) or '—'} |")
    return mask_text("\n".join(lines))


# ---------------------------------------------------------------------------------------------
# Reading the store


@dataclass
class DayCounts:
    fetched: dict[str, int] = field(default_factory=dict)
    accepted: dict[str, int] = field(default_factory=dict)
    quarantined: dict[str, int] = field(default_factory=dict)
    by_reason: dict[str, dict[str, int]] = field(default_factory=dict)
    history: dict[str, list[int]] = field(default_factory=dict)


def day_counts(conn: Connection, business_date: date) -> DayCounts:
    """fetched (checkpoints, re-deliveries included), accepted, quarantined by reason, and the trailing history."""
    out = DayCounts()
    d = {"d": business_date}
    for source, fetched in conn.execute(
        text("SELECT source, fetched FROM ingest_checkpoints WHERE business_date = :d"), d
    ):
        out.fetched[source] = fetched
    for source, n in conn.execute(
        text("SELECT source, COUNT(*) FROM records WHERE business_date = :d GROUP BY source"), d
    ):
        out.accepted[source] = n
    for source, reasons, n in conn.execute(
        text("SELECT source, reasons, COUNT(*) FROM quarantine WHERE business_date = :d GROUP BY source, reasons"), d
    ):
        out.quarantined[source] = out.quarantined.get(source, 0) + n
        by = out.by_reason.setdefault(source, {})
        for reason in reasons.split(","):  # a row with two reasons counts under each
            by[reason] = by.get(reason, 0) + n
    rows = conn.execute(
        text(
            "SELECT source, business_date, COUNT(*) FROM records WHERE business_date >= :lo AND business_date < :d "
            "GROUP BY source, business_date ORDER BY source, business_date DESC"
        ),
        {"lo": business_date - timedelta(days=HISTORY_LOOKBACK_DAYS), "d": business_date},
    )
    for source, _day, n in rows:
        out.history.setdefault(source, []).append(n)
    return out


def previous_gates(conn: Connection, business_date: date) -> dict[str, str]:
    rows = conn.execute(text("SELECT source, gate FROM source_gates WHERE business_date = :d"), {"d": business_date})
    return {s: g for s, g in rows}


def applicable(engine: Engine, inv: ex.Invariant) -> str | None:
    """None when every table and column the invariant reads exists; else why it is not applicable."""
    insp = inspect(engine)
    tables = set(insp.get_table_names())
    for table, columns in inv.needs.items():
        if table not in tables:
            return f"table {table} not in the store yet"
        have = {c["name"] for c in insp.get_columns(table)}
        missing = [c for c in columns if c not in have]
        if missing:
            return f"{table} lacks {', '.join(missing)}"
    return None


# ---------------------------------------------------------------------------------------------
# Great Expectations


def _severity(cfg: Any) -> str:
    sev = getattr(cfg, "severity", "critical")
    return str(getattr(sev, "value", sev))


def _outcome(result: Any) -> Outcome:
    cfg = result.expectation_config
    res = result.result or {}
    name = (cfg.meta or {}).get("name", cfg.type)
    note = None
    if result.exception_info and result.exception_info.get("raised_exception"):
        note = str(result.exception_info.get("exception_message", "")).splitlines()[0][:200]
    return Outcome(
        name=name,
        success=bool(result.success),
        severity=_severity(cfg),
        observed=res.get("observed_value"),
        unexpected=res.get("unexpected_count"),
        sample=[mask_text(str(v)) for v in (res.get("partial_unexpected_list") or [])][:20],
        note=note,
    )


@dataclass(frozen=True)
class Batch:
    """One validation: a query asset and the suite it must meet."""

    key: str
    query: str
    suite: Any


@functools.cache
def _share_template_bytecode() -> None:
    """Once per process: GX's Data Docs views share one Jinja bytecode cache, so each template compiles once.

    Why: every GX view builds its own Jinja `Environment`, so each page of each Data
    Docs build compiled the same templates again: a third of the demo month's time
    went to Jinja's compiler. Jinja keys the compiled code by template name and checks
    it against the source's checksum; the filters a template calls are looked up on the
    view's own environment when it renders, so sharing the bytecode shares nothing else.
    Each daily loop's Data Docs are the same HTML as before.
    """
    import jinja2
    from great_expectations.render.view.view import DefaultJinjaView

    class Compiled(jinja2.BytecodeCache):
        def __init__(self) -> None:
            self.code: dict[str, bytes] = {}

        def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
            if bucket.key in self.code:
                bucket.bytecode_from_string(self.code[bucket.key])

        def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
            self.code[bucket.key] = bucket.bytecode_to_string()

    shared = Compiled()
    built = DefaultJinjaView.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        built(self, *args, **kwargs)
        self.env.bytecode_cache = shared

    DefaultJinjaView.__init__ = init  # type: ignore[method-assign]


@functools.cache
def _read_column_names_without_rows() -> None:
    """Once per process: GX reads a query asset's column names from the query with LIMIT 0, not by running it.

    Why: for a custom query GX's `column_reflection_fallback` executes the whole query to read the names of its
    result columns, and psycopg's default cursor then receives every row of the batch: at 1M records from one
    source ~100 MiB in this process (the loop's memory peak on PostgreSQL, docs/performance.md session 8).
    SQLite steps one row, so it never showed there. The names are the same; nothing reads that result's rows.
    (GX's datasource `kwargs` with server-side cursors made every expectation fail instead.)
    """
    import sqlalchemy as sa
    from great_expectations.expectations.metrics import util

    fallback = util.column_reflection_fallback

    def names_only(
        selectable: Any, dialect: Any, sqlalchemy_engine: Any, schema_name: str | None = None
    ) -> list[dict[str, str]]:
        if isinstance(selectable, sa.TextClause):
            selectable = sa.text(f"SELECT * FROM ({selectable.text}) AS minyi_batch LIMIT 0")
        return fallback(
            selectable=selectable, dialect=dialect, sqlalchemy_engine=sqlalchemy_engine, schema_name=schema_name
        )

    util.column_reflection_fallback = names_only


def run_suites(
    engine: Engine, batches: Sequence[Batch], docs_dir: Path | None, as_of: datetime
) -> dict[str, list[Outcome]]:
    """Validate every batch in one ephemeral GX context over the store's URL; build Data Docs under `docs_dir`.

    One checkpoint for all batches, so the Data Docs index is built once per run.
    GX's run time is `as_of` (its pages are stamped with it), never the wall clock.
    """
    if not batches:
        return {}
    quiet_third_parties()
    os.environ["GX_ANALYTICS_ENABLED"] = "false"
    import great_expectations as gx
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.base import ProgressBarsConfig

    freeze_heap()  # GX's import is ~270k long-lived objects (tasks/heap.py)

    # base.py sets its own logger to INFO, so its "Created temporary directory" line escapes the parents' level
    for name in (
        "great_expectations",
        "great_expectations.core",
        "great_expectations.data_context",
        "great_expectations.data_context.types.base",
    ):
        logging.getLogger(name).setLevel(logging.ERROR)
    _share_template_bytecode()
    _read_column_names_without_rows()
    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    for site in list(ctx.list_data_docs_sites()):
        ctx.delete_data_docs_site(site)  # the ephemeral default writes into a temp dir; ours goes to the reports
    actions: list[Any] = []
    if docs_dir is not None:
        docs_dir.mkdir(parents=True, exist_ok=True)
        ctx.add_data_docs_site(
            "minyi",
            {
                "class_name": "SiteBuilder",
                "show_how_to_buttons": False,
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
                "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
            },
        )
        actions.append(gx.checkpoint.UpdateDataDocsAction(name="data_docs", site_names=["minyi"]))
    url = engine.url.render_as_string(hide_password=False)
    add = ctx.data_sources.add_sqlite if engine.dialect.name == "sqlite" else ctx.data_sources.add_postgres
    ds = add(name="store", connection_string=url)
    definitions = []
    try:
        for b in batches:
            asset = ds.add_query_asset(name=b.key, query=b.query)
            suite = ctx.suites.add(b.suite)
            definitions.append(
                ctx.validation_definitions.add(
                    gx.ValidationDefinition(name=b.key, data=asset.add_batch_definition_whole_table(b.key), suite=suite)
                )
            )
        checkpoint = ctx.checkpoints.add(
            gx.Checkpoint(
                name="quality",
                validation_definitions=definitions,
                actions=actions,
                result_format={"result_format": "SUMMARY", "partial_unexpected_count": 20},
            )
        )
        result = checkpoint.run(run_id=RunIdentifier(run_name="quality", run_time=as_of))
    finally:
        ds.get_engine().dispose()
    by_name = {
        vr.suite_name + "|" + str(vr.meta.get("active_batch_definition", {}).get("data_asset_name", "")): vr
        for vr in result.run_results.values()
    }
    out: dict[str, list[Outcome]] = {}
    for b in batches:
        vr = next((v for k, v in by_name.items() if k.endswith("|" + b.key)), None)
        if vr is None:  # fall back on order: GX keeps run_results in validation order
            vr = list(result.run_results.values())[batches.index(b)]
        out[b.key] = [_outcome(r) for r in vr.results]
    return out


# ---------------------------------------------------------------------------------------------
# The stage


@dataclass
class Validation:
    """What validation found, before any gate is decided or written."""

    counts: DayCounts
    batch: dict[str, list[Outcome]]
    medians: dict[str, tuple[float | None, list[int]]]
    store: list[Outcome]
    seconds: float


def validate_day(rt: Runtime, business_date: date, as_of: datetime, docs_dir: Path | None) -> Validation:
    """Run the batch suite of every configured source and the store suite; read-only."""
    started = time.perf_counter()
    engine = rt.engine
    dialect = engine.dialect.name
    with engine.connect() as conn:
        counts = day_counts(conn, business_date)
    lo, hi = window_bounds(business_date, rt.tz)
    known = tuple(sorted(rt.config.unit_codes()))
    batches: list[Batch] = []
    medians: dict[str, tuple[float | None, list[int]]] = {}
    for s in rt.config.sources:
        median, history = trailing_median(counts.history.get(s.name, []))
        medians[s.name] = (median, history)
        bounds = ex.BatchBounds(
            handled_from=instant_literal(dialect, lo),
            handled_until=instant_literal(dialect, hi),
            known_units=known,
            row_count_band=ex.row_count_band(median),
        )
        batches.append(Batch(f"batch-{s.name}", ex.batch_query(s.name, business_date), ex.batch_suite(s.name, bounds)))

    since_date = business_date - timedelta(days=STORE_LOOKBACK_DAYS)
    since = instant_literal(dialect, start_of_day(since_date, rt.tz))
    settled = instant_literal(dialect, as_of - ORDER_GRACE)
    skipped: dict[str, str] = {}
    for inv in ex.STORE_INVARIANTS:
        why = applicable(engine, inv)
        if why:
            skipped[inv.name] = why
            continue
        query = ex.invariant_query(inv, since_date, since, settled)
        batches.append(Batch(f"store-{inv.name}", query, ex.store_suite(inv)))

    results = run_suites(engine, batches, docs_dir, as_of)
    batch = {s.name: _complete(results[f"batch-{s.name}"]) for s in rt.config.sources}
    store: list[Outcome] = []
    for inv in ex.STORE_INVARIANTS:
        if inv.name in skipped:
            store.append(Outcome(name=inv.name, success=None, note=f"not applicable: {skipped[inv.name]}"))
            continue
        (outcome,) = results[f"store-{inv.name}"]
        outcome.unexpected = int(outcome.observed or 0)
        if not outcome.success:
            outcome.sample = offending_refs(engine, ex.invariant_query(inv, since_date, since, settled))
        store.append(outcome)
    return Validation(counts, batch, medians, store, time.perf_counter() - started)


def _complete(outcomes: list[Outcome]) -> list[Outcome]:
    """Every batch expectation in a fixed order; the gate's is `None` when it was not evaluated (no history)."""
    by = {o.name: o for o in outcomes}
    return [
        by.get(name) or Outcome(name=name, success=None, note="fewer than 3 previous dates with data")
        for name in ex.BATCH_EXPECTATIONS
    ]


def offending_refs(engine: Engine, query: str) -> list[str]:
    """The first offending SOURCE:RECORD_IDs of a broken invariant (the count comes from GX)."""
    with engine.connect() as conn:
        rows = conn.execute(text(f"SELECT ref FROM ({query}) offending ORDER BY ref LIMIT {OFFENDING_SAMPLE}"))
        return [r[0] for r in rows]


_RUN_UPSERT = (
    "INSERT INTO quality_runs (business_date, source, as_of, forced, success, gate, fetched, accepted, quarantined, "
    "quarantine_reasons, median, expectations, seconds) VALUES (:d, :source, :as_of, :forced, :success, :gate, "
    ":fetched, :accepted, :quarantined, :reasons, :median, :expectations, :seconds) "
    "ON CONFLICT (business_date, source, as_of) DO UPDATE SET forced = excluded.forced, success = excluded.success, "
    "gate = excluded.gate, fetched = excluded.fetched, accepted = excluded.accepted, "
    "quarantined = excluded.quarantined, quarantine_reasons = excluded.quarantine_reasons, "
    "median = excluded.median, expectations = excluded.expectations, seconds = excluded.seconds"
)
_GATE_UPSERT = (
    "INSERT INTO source_gates (source, business_date, gate, row_count, median, updated_at) "
    "VALUES (:source, :d, :gate, :rows, :median, :now) ON CONFLICT (source, business_date) DO UPDATE SET "
    "gate = excluded.gate, row_count = excluded.row_count, median = excluded.median, updated_at = excluded.updated_at"
)


def _expectations_json(outcomes: Sequence[Outcome]) -> str:
    return json.dumps(
        {o.name: o.model_dump(exclude={"name"}) for o in outcomes}, ensure_ascii=False, default=str, sort_keys=True
    )


def record_day(
    rt: Runtime, business_date: date, as_of: datetime, found: Validation, force: bool, report_dir: Path | None
) -> QualitySummary:
    """Decide each source's gate and write it, the run's results and the alert in one transaction; then the files."""
    dialect = rt.engine.dialect.name
    now = instant_param(dialect, as_of)
    sources: list[SourceQuality] = []
    with rt.engine.begin() as conn:
        before = previous_gates(conn, business_date)
        for s in rt.config.sources:
            outcomes = found.batch[s.name]
            median, history = found.medians[s.name]
            gate_ok = next(o.success for o in outcomes if o.name == ex.GATE_EXPECTATION)
            by_reason = found.counts.by_reason.get(s.name, {})
            sq = SourceQuality(
                source=s.name,
                fetched=found.counts.fetched.get(s.name, 0),
                accepted=found.counts.accepted.get(s.name, 0),
                quarantined=found.counts.quarantined.get(s.name, 0),
                quarantined_by_reason=by_reason,
                expectations=outcomes,
                gate=decide_gate(gate_ok, before.get(s.name), force),
                median=median,
                history=history,
            )
            sources.append(sq)
            conn.execute(
                text(_RUN_UPSERT),
                {
                    "d": business_date,
                    "source": s.name,
                    "as_of": now,
                    "forced": force,
                    "success": all(o.success is not False for o in outcomes if o.severity == "critical"),
                    "gate": sq.gate,
                    "fetched": sq.fetched,
                    "accepted": sq.accepted,
                    "quarantined": sq.quarantined,
                    "reasons": json.dumps(by_reason, sort_keys=True),
                    "median": median,
                    "expectations": _expectations_json(outcomes),
                    "seconds": round(found.seconds, 3),
                },
            )
            conn.execute(
                text(_GATE_UPSERT),
                {
                    "source": s.name,
                    "d": business_date,
                    "gate": sq.gate,
                    "rows": sq.accepted,
                    "median": median,
                    "now": now,
                },
            )
        store = StoreQuality(expectations=found.store)
        conn.execute(
            text(_RUN_UPSERT),
            {
                "d": business_date,
                "source": STORE,
                "as_of": now,
                "forced": force,
                "success": not store.broken,
                "gate": None,
                "fetched": 0,
                "accepted": 0,
                "quarantined": 0,
                "reasons": "{}",
                "median": None,
                "expectations": _expectations_json(store.expectations),
                "seconds": round(found.seconds, 3),
            },
        )
        message = alert_text(business_date, sources, store)
        if message:
            enqueue(
                conn,
                [
                    Message(
                        key=texts.quality_alert_key(business_date, alert_signature(sources, store)),
                        kind="quality_alert",
                        channel=rt.config.center_channel,
                        body=message,
                    )
                ],
                as_of,
            )
    summary = QualitySummary(
        business_date=business_date,
        as_of=as_of,
        forced=force,
        sources=sources,
        store=store,
        alerted=message is not None,
        report_dir=str(report_dir or ""),
        seconds=round(found.seconds, 3),
    )
    if report_dir is not None:
        write_reports(report_dir, summary, rt.tz)
    return summary


def _write_atomic(path: Path, content: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(content, encoding="utf-8")
    tmp.replace(path)


def write_reports(report_dir: Path, summary: QualitySummary, tz: Any) -> None:
    """quality.json and quality.csv under reports/{date}/ (written whole, then renamed into place)."""
    report_dir.mkdir(parents=True, exist_ok=True)
    doc = json.dumps(quality_document(summary, tz), ensure_ascii=False, indent=2, default=str)
    _write_atomic(report_dir / "quality.json", mask_text(doc) + "\n")
    _write_atomic(report_dir / "quality.csv", mask_text(quality_csv(summary)))


def report_dir_for(rt: Runtime, business_date: date) -> Path:
    return Path(rt.reports_dir) / business_date.isoformat()
