"""The assessment metrics of SPEC §7, the points score of §11 and the lineage of §12, month-to-date at `as_of`.

Counts and lineage come from one statement per grouping (`counts_sql`; the
report task reads the record grouping's in two ranges of record ids side by
side, `unit_counts` `parts`): per unit and metric mask (the set of metrics a record counts in, each metric's
condition from `BRANCHES`), the number of records and their references. A count
is the sum over the masks holding its bit, and its lineage lines are those same
groups' references, so a count and the records listed behind it cannot drift
(`lineage_sql`, what `minyi explain` reads, is built from the same conditions).
A follow-up's metrics are grouped by the unit of the *record*, an order's by
the unit holding it at as_of (SPEC §5), and both are restricted to the records
whose business date is in the period: an order opened on the 2nd for a record
of the 30th of last month belongs to last month's assessment. Quarantined rows
are not records, so they count nowhere.

Everything after the counts is pure: rates (null on a zero denominator),
`meets_targets` (a null rate passes), the score, ranking and the overall row
(sums of the units' counts, rates recomputed from the sums, never averaged).

Decisions SPEC §7 leaves open (docs/reports.md restates them):
- a pending_calendar order (no due instant) that is done counts as due but not
  on time: "on time" means strictly before a due instant, and there is none yet;
  once the calendar is supplied the due is computed and the order re-evaluated.
- counts read the store as it is when the report runs; `as_of` decides which
  clocks have run out (`response_due <= as_of`).
- rates are written as the exact ratio (a float, unrounded); `meets_targets`
  and ranking compare the exact fractions.
- units under `min_responses` are listed after the ranked ones in the same
  order the ranking would give them, with `rank: null`.
- the score is null when every rate is null, and also when the non-null rates
  all have weight 0 (there is nothing weighted to score).
"""

from __future__ import annotations

import heapq
import itertools
import queue
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import date, datetime
from fractions import Fraction
from typing import Any, Literal, get_args
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlalchemy.engine import Connection

from minyi.tasks.config import AssessmentConfig, TargetsConfig, WeightsConfig
from minyi.tasks.rules.csvsafe import csv_cell
from minyi.tasks.store.engine import instant_param

# SPEC §7's lifecycle counts (SPEC §5): `excluded` is a record count (it has lineage), the others count
# lifecycle events (_LIFECYCLE_SQL).
LIFECYCLE_COUNTS: tuple[str, ...] = (
    "excluded",
    "returned",
    "reassigned_in",
    "extensions_approved",
    "reopened",
    "backdated",
)
COUNTS: tuple[str, ...] = (
    "records",
    "followups_sent",
    "responses",
    "satisfied",
    "basically_satisfied",
    "dissatisfied",
    "orders_opened",
    "orders_due_response",
    "responded_on_time",
    "orders_closed",
    "resolved",
    "orders_due_completion",
    "completed_on_time",
    *LIFECYCLE_COUNTS,
)
# (rate, numerator, denominator); the numerator of satisfaction is a sum of two counts.
RATES: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("satisfaction_rate", ("satisfied", "basically_satisfied"), "responses"),
    ("reply_rate", ("responses",), "followups_sent"),
    ("timely_response_rate", ("responded_on_time",), "orders_due_response"),
    ("resolution_rate", ("resolved",), "orders_closed"),
    ("timely_completion_rate", ("completed_on_time",), "orders_due_completion"),
)
# The order SPEC §7 lists M in (reply_rate beside the satisfaction rate it qualifies); JSON and CSV follow it.
METRICS: tuple[str, ...] = (
    "records",
    "followups_sent",
    "responses",
    "satisfied",
    "basically_satisfied",
    "dissatisfied",
    "satisfaction_rate",
    "reply_rate",
    "orders_opened",
    "orders_due_response",
    "responded_on_time",
    "timely_response_rate",
    "orders_closed",
    "resolved",
    "resolution_rate",
    "orders_due_completion",
    "completed_on_time",
    "timely_completion_rate",
    *LIFECYCLE_COUNTS,
    "score",
)
# Which rates are held against which target.
TARGETED: tuple[tuple[str, str], ...] = (
    ("timely_response_rate", "timely_response"),
    ("satisfaction_rate", "satisfaction"),
    ("resolution_rate", "resolution"),
)
# The rates the points score weighs (SPEC §11), with the name of each weight in `[assessment] weights`.
SCORED: tuple[tuple[str, str], ...] = (
    ("timely_response_rate", "timely_response"),
    ("satisfaction_rate", "satisfaction"),
    ("resolution_rate", "resolution"),
    ("timely_completion_rate", "timely_completion"),
)
# The counts lineage.csv and `minyi explain` trace to records (SPEC §12), in the order they are written.
LineageMetric = Literal[
    "records",
    "followups_sent",
    "responses",
    "satisfied",
    "basically_satisfied",
    "dissatisfied",
    "excluded",
    "orders_opened",
    "responded_on_time",
    "orders_closed",
    "resolved",
    "completed_on_time",
]
LINEAGE_METRICS: tuple[str, ...] = get_args(LineageMetric)

Counts = dict[str, int]


@dataclass(frozen=True)
class Period:
    """Month-to-date: the first of business_date's month up to business_date, both included."""

    start: date
    end: date

    @classmethod
    def month_to_date(cls, business_date: date) -> Period:
        return cls(business_date.replace(day=1), business_date)


# ---------------------------------------------------------------------------------------------- pure


def exact_rate(counts: Counts, numerator: tuple[str, ...], denominator: str) -> Fraction | None:
    den = counts.get(denominator, 0)
    if den == 0:
        return None
    return Fraction(sum(counts.get(n, 0) for n in numerator), den)


def exact_rates(counts: Counts) -> dict[str, Fraction | None]:
    """Every rate of M as an exact fraction (None on a zero denominator)."""
    return {rate: exact_rate(counts, num, den) for rate, num, den in RATES}


def score(rates: Mapping[str, Fraction | float | None], weights: WeightsConfig) -> float | None:
    """SPEC §11: 100 × Σ(wᵢ·rateᵢ) / Σ(wᵢ over the non-null rates), rounded half-up to 2 decimals.

    A null rate drops out of both sums; null when no weighted rate is left.
    """
    num = Fraction(0)
    den = Fraction(0)
    for rate, weight_name in SCORED:
        value = rates.get(rate)
        if value is None:
            continue
        w = Fraction(str(getattr(weights, weight_name)))
        num += w * Fraction(value)
        den += w
    if den == 0:
        return None
    hundredths = (100 * 100 * num / den + Fraction(1, 2)).__floor__()  # half-up, exactly
    return float(Fraction(hundredths, 100))


def metrics(counts: Counts, weights: WeightsConfig | None = None) -> dict[str, Any]:
    """M of SPEC §7 from counts: every count, each rate (exact, null on a zero denominator) and the score."""
    values: dict[str, Any] = {name: int(counts.get(name, 0)) for name in COUNTS}
    exact = exact_rates(counts)
    for rate, value in exact.items():
        values[rate] = None if value is None else float(value)
    values["score"] = score(exact, weights or WeightsConfig())
    return {name: values[name] for name in METRICS}


def meets_targets(counts: Counts, targets: TargetsConfig) -> bool:
    """Every targeted rate at or above its target; a null rate (nothing to judge) passes."""
    spec = {rate: (num, den) for rate, num, den in RATES}
    for rate, target_name in TARGETED:
        exact = exact_rate(counts, *spec[rate])
        if exact is not None and exact < Fraction(str(getattr(targets, target_name))):
            return False
    return True


def sum_counts(per_unit: dict[str, Counts]) -> Counts:
    return {name: sum(c.get(name, 0) for c in per_unit.values()) for name in COUNTS}


def _order_key(unit: dict[str, Any], counts: Counts, rank_by: str) -> tuple[Any, ...]:
    """Rank 1 is best. targets: meets_targets first, satisfaction descending (null last); score: score descending
    (null last); then unit_code. Exact fractions, so the float in the JSON never reorders two units."""
    if rank_by == "score":
        s = unit["score"]
        return (s is None, -(s or 0), unit["unit_code"])
    sat = exact_rate(counts, ("satisfied", "basically_satisfied"), "responses")
    return (not unit["meets_targets"], sat is None, -(sat or 0), unit["unit_code"])


def rank_units(units: list[dict[str, Any]], per_unit: dict[str, Counts], cfg: AssessmentConfig) -> list[dict[str, Any]]:
    """Units in table order with `ranked` and `rank` (SPEC §7): a unit under `min_responses` responses is
    listed after every ranked unit, `ranked: false`, `rank: null` (one happy citizen must not top the table)."""
    for unit in units:
        unit["ranked"] = per_unit[unit["unit_code"]].get("responses", 0) >= cfg.min_responses
    units.sort(key=lambda u: (not u["ranked"], *_order_key(u, per_unit[u["unit_code"]], cfg.rank_by)))
    position = 0
    for unit in units:
        if unit["ranked"]:
            position += 1
        unit["rank"] = position if unit["ranked"] else None
    return units


def assessment(
    business_date: date,
    as_of: datetime,
    tz: ZoneInfo,
    targets: TargetsConfig,
    per_unit: dict[str, Counts],
    cfg: AssessmentConfig | None = None,
) -> dict[str, Any]:
    """assessment.json of SPEC §7 from per-unit counts (every unit with records in the period)."""
    cfg = cfg or AssessmentConfig()
    period = Period.month_to_date(business_date)
    units = [
        {"unit_code": code, **metrics(counts, cfg.weights), "meets_targets": meets_targets(counts, targets)}
        for code, counts in per_unit.items()
    ]
    return {
        "business_date": business_date.isoformat(),
        "as_of": as_of.astimezone(tz).isoformat(),
        "period": {"start": period.start.isoformat(), "end": period.end.isoformat()},
        "targets": {
            "timely_response": targets.timely_response,
            "satisfaction": targets.satisfaction,
            "resolution": targets.resolution,
        },
        "overall": metrics(sum_counts(per_unit), cfg.weights),
        "units": rank_units(units, per_unit, cfg),
    }


# ---------------------------------------------------------------------------------------------- SQL

# The period's records with their follow-up and order. A record has at most one follow-up and a follow-up at
# most one order (unique constraints), so the LEFT JOINs never multiply rows. An order is responded once
# responded_at is set, closed once closed_at is set (the state machine fills earlier stages with the later
# stage's time). NULL dues never compare true: pending_calendar.
#
# Two groupings (SPEC §5): a follow-up's own metrics stay with the record's unit_code; an order's metrics
# count for the unit holding it at as_of (the target of its last reassignment by as_of, else the record's
# unit), so the "order" base reads only records with an order and names the holder as unit_code.
_BASE_SQL = """
SELECT {unit} AS unit_code, r.id AS record_pk, r.source, r.record_id, f.sms_status, f.satisfaction,
       o.id AS order_id, o.responded_at, o.response_due, o.closed_at, o.completion_due, o.resolution
FROM {tables}
WHERE r.business_date >= :start AND r.business_date <= :end{ids}
"""
_HOLDER = (
    "COALESCE((SELECT ev.to_unit FROM order_events ev WHERE ev.order_id = o.id AND ev.stage = 'reassign' "
    "AND ev.at <= :as_of ORDER BY ev.at DESC, ev.id DESC LIMIT 1), r.unit_code)"
)
# the order base names the orders first: with `join` "CROSS JOIN", SQLite reads it in that order (by_orders)
GROUPS: dict[str, tuple[str, str]] = {
    "record": (
        "r.unit_code",
        "records r LEFT JOIN followups f ON f.record_pk = r.id LEFT JOIN orders o ON o.followup_id = f.id",
    ),
    "order": (_HOLDER, "orders o {join} followups f ON f.id = o.followup_id {join} records r ON r.id = f.record_pk"),
}
# An answer behind an appeal upheld by as_of (closed(excluded), SPEC §5) counts in records, followups_sent and
# `excluded` only: in no response, answer or order metric.
_EXCLUDED = "(resolution = 'excluded' AND closed_at <= :as_of)"
_KEPT = "(order_id IS NULL OR resolution IS NULL OR resolution <> 'excluded' OR closed_at > :as_of)"

# metric -> (grouping, the condition on a row of its base that puts its record behind that count). Every
# statement below (the counts, the counts with their lineage, the lineage rows of `minyi explain`) is generated
# from this one table: one more metric is one more entry here, and its count and its lineage cannot disagree.
BRANCHES: dict[str, tuple[str, str]] = {
    "records": ("record", "1 = 1"),
    "followups_sent": ("record", "sms_status = 'sent'"),
    "responses": ("record", f"satisfaction IN ('satisfied', 'basically_satisfied', 'dissatisfied') AND {_KEPT}"),
    "satisfied": ("record", f"satisfaction = 'satisfied' AND {_KEPT}"),
    "basically_satisfied": ("record", f"satisfaction = 'basically_satisfied' AND {_KEPT}"),
    "dissatisfied": ("record", f"satisfaction = 'dissatisfied' AND {_KEPT}"),
    "excluded": ("record", _EXCLUDED),
    "orders_opened": ("order", _KEPT),
    "orders_due_response": ("order", f"(responded_at IS NOT NULL OR response_due <= :as_of) AND {_KEPT}"),
    "responded_on_time": ("order", f"responded_at IS NOT NULL AND responded_at < response_due AND {_KEPT}"),
    "orders_closed": ("order", f"closed_at IS NOT NULL AND {_KEPT}"),
    "resolved": ("order", "closed_at IS NOT NULL AND resolution = 'resolved'"),
    "orders_due_completion": ("order", f"(closed_at IS NOT NULL OR completion_due <= :as_of) AND {_KEPT}"),
    "completed_on_time": ("order", f"closed_at IS NOT NULL AND closed_at < completion_due AND {_KEPT}"),
}
# The lifecycle events of the period's orders by as_of, each for the unit that made it (a reassignment for the
# unit it went to). Events, not records: no lineage (SPEC §12 traces record counts).
_LIFECYCLE_SQL = """
SELECT unit_code,
       SUM(CASE WHEN stage = 'returned' THEN 1 ELSE 0 END) AS returned,
       SUM(CASE WHEN stage = 'reassign' THEN 1 ELSE 0 END) AS reassigned_in,
       SUM(CASE WHEN stage = 'approve-extension' THEN 1 ELSE 0 END) AS extensions_approved,
       SUM(CASE WHEN stage = 'reopen' THEN 1 ELSE 0 END) AS reopened,
       SUM(CASE WHEN backdated = :t THEN 1 ELSE 0 END) AS backdated
FROM (
  SELECT CASE WHEN ev.stage = 'reassign' THEN ev.to_unit ELSE COALESCE(ev.unit_code, o.unit_code) END AS unit_code,
         ev.stage, ev.backdated
  FROM order_events ev
  {join} orders o ON o.id = ev.order_id
  {join} followups f ON f.id = o.followup_id
  {join} records r ON r.id = f.record_pk
  WHERE r.business_date >= :start AND r.business_date <= :end AND ev.at <= :as_of
) events
GROUP BY unit_code
"""


def _base(group: str, join: str = "JOIN", ids: str = "") -> str:
    """`group`'s base; `ids` a further condition on the record's id (`_id_ranges`)."""
    unit, tables = GROUPS[group]
    return _BASE_SQL.format(unit=unit, tables=tables.format(join=join), ids=ids)


def lineage_sql(metrics: tuple[str, ...] = LINEAGE_METRICS, unit: bool = False) -> str:
    """(unit_code, metric, source, record_id): one row per record behind each count of `metrics`.

    With `unit`, only the unit named by the `:unit` parameter (what `minyi explain` reads).
    """
    only = " AND unit_code = :unit" if unit else ""
    return "\nUNION ALL\n".join(
        f"SELECT unit_code, '{m}' AS metric, source, record_id FROM ({_base(BRANCHES[m][0])}) b "
        f"WHERE {BRANCHES[m][1]}{only}"
        for m in metrics
    )


def group_metrics(group: str) -> tuple[str, ...]:
    """The metrics of BRANCHES counted over `group`'s base, in BRANCHES order: bit i of a mask is the i-th."""
    return tuple(m for m, (g, _) in BRANCHES.items() if g == group)


def _rows_sql(group: str, join: str = "JOIN", ids: str = "") -> str:
    """One row per row of `group`'s base: unit_code, the bit mask of the metrics of `group` whose condition
    (BRANCHES) the record meets (bit i: the i-th of `group_metrics(group)`), and its raw `source,record_id`."""
    metrics = group_metrics(group)
    mask = " + ".join(f"(CASE WHEN {BRANCHES[m][1]} THEN {1 << i} ELSE 0 END)" for i, m in enumerate(metrics))
    return (
        f"SELECT b.unit_code, {mask} AS mask, b.source || ',' || b.record_id AS ref FROM ({_base(group, join, ids)}) b"
    )


def counts_sql(dialect: str, group: str, join: str = "JOIN", ids: str = "") -> str:
    """What every count of `group` is counted from and its lineage.csv lines are written from, in one pass.

    Per unit_code and metric mask (the set of metrics of `group` a record counts in), in unit_code order (code
    point order on both databases, as Python sorts) then mask order: the number of records `n` and their
    `source,record_id` references joined by newlines (raw: the cells are made formula-safe and CSV-quoted
    when written, `_lineage_lines`). A metric's count is the sum of `n` over the masks with its bit, and its
    lineage is the references of those same groups, so the two cannot drift.

    `join` "CROSS JOIN" makes SQLite read the order base from the orders (`_driving_join`); `ids` keeps only
    the records of one id range (`_id_ranges`): unit_counts runs the ranges side by side, and a record is in
    exactly one of them, so the parts' groups together are the whole statement's.

    Why group by (unit, mask) rather than by unit with a conditional count and a conditional group_concat /
    string_agg per metric (issue 16's first version): SQLite has no hash aggregate, so either GROUP BY sorts
    the period; this one sorts one narrow row per record and aggregates one text per group, where the first
    carried every metric's text into the sorter and built one per metric (docs/performance.md).
    """
    if dialect == "postgresql":
        agg, unit = "string_agg(ref, chr(10))", 'unit_code COLLATE "C"'
    else:
        agg, unit = "group_concat(ref, char(10))", "unit_code"
    return (
        f"SELECT unit_code, mask, COUNT(*) AS n, {agg} AS refs\nFROM ({_rows_sql(group, join, ids)}) t\n"
        f"GROUP BY unit_code, mask ORDER BY {unit}, mask"
    )


def _params(conn: Connection, period: Period, as_of: datetime, **extra: Any) -> dict[str, Any]:
    return {"start": period.start, "end": period.end, "as_of": instant_param(conn.dialect.name, as_of), **extra}


def _driving_join(conn: Connection, table: str, params: dict[str, Any]) -> str:
    """How to join a statement that starts from `table` (the orders, their events) to the period's records.

    On SQLite (no statistics, docs/performance.md) "CROSS JOIN" when the period holds at least as many records
    as `table` has rows: it then reads `table` in full and looks each row's follow-up and record up by key, where
    "JOIN" lets the planner start from the period's records (their business_date index) and look each one's
    follow-up and order up, a full pass over the period for the orders of the loop's day, which has none yet.
    Counting the period stops at `table`'s size, so the choice costs at most the cheaper plan's index scan.
    PostgreSQL plans the join with its statistics: "JOIN".
    """
    if conn.dialect.name != "sqlite":
        return "JOIN"
    n = conn.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar_one()
    held = conn.execute(text(_PERIOD_HOLDS_SQL), params | {"n": n}).scalar_one()
    return "CROSS JOIN" if held >= n else "JOIN"


def _id_ranges(conn: Connection, params: dict[str, Any], parts: int) -> list[tuple[str, dict[str, int]]]:
    """`parts` consecutive ranges of record ids that together hold every record of the period: (the condition
    on r.id, its parameters) each, the first open below and the last open above (a record stored while the
    statements start is in one of them). Consecutive, not interleaved: each statement then reads its own pages
    of the records and follow-ups (`id % 2` had both read every page, ~1.5× the whole statement's CPU at 1M).
    The ranges split the span of the period's ids evenly: as even in records as the ids are dense."""
    if parts == 1:
        return [("", {})]
    lo, hi = conn.execute(text(_PERIOD_IDS_SQL), params).one()
    if lo is None:
        return [("", {})]
    step = (hi - lo) // parts + 1
    cuts = [lo + k * step for k in range(1, parts)]
    ranges = [(" AND r.id < :hi", {"hi": cuts[0]})]
    ranges += [(" AND r.id >= :lo AND r.id < :hi", {"lo": a, "hi": b}) for a, b in itertools.pairwise(cuts)]
    return [*ranges, (" AND r.id >= :lo", {"lo": cuts[-1]})]


_PERIOD_IDS_SQL = "SELECT MIN(id), MAX(id) FROM records WHERE business_date >= :start AND business_date <= :end"
_PERIOD_HOLDS_SQL = (
    "SELECT COUNT(*) FROM (SELECT 1 FROM records WHERE business_date >= :start AND business_date <= :end LIMIT :n) t"
)
# the report transaction's sort and hash budget on PostgreSQL, per sort (unit_counts)
PG_WORK_MEM = "64MB"
# (unit_code, metric, lines, n): n lineage.csv lines (`unit_code,metric,source,record_id`, CSV-quoted and
# formula-safe, joined by newlines) of records behind one count: one group's, so a count may come in several
# calls, one after the other (at 3M records a unit's metric joined whole held ~100 MiB; docs/performance.md).
LineageSink = Callable[[str, str, str, int], None]


def unit_counts(
    conn: Connection, period: Period, as_of: datetime, lineage: LineageSink | None = None, parts: int = 1
) -> dict[str, Counts]:
    """Counts per unit_code for every unit with records in the period (known to the config or not), and every
    unit holding, or having acted on, one of the period's orders (SPEC §5).

    With `lineage`, the records behind each count of LINEAGE_METRICS go to it as they are counted, a unit at
    a time in unit_code order and each unit's metrics in LINEAGE_METRICS order (docs/reports.md): the counts
    returned and the lineage written are one reading of the store, the groups of `counts_sql`.

    With `parts` > 1 the record grouping is `parts` statements over disjoint ranges of record ids, read side
    by side on connections of their own (not `conn`, so the store must hold what is counted committed): a
    2-core machine sorts and aggregates the period's halves at once (docs/performance.md, session 5).
    Each statement reads its own snapshot of the store; a count and its lineage lines always come from the
    same groups.
    """
    params = _params(conn, period, as_of)
    with ExitStack() as stack:
        # several parts each read on a connection of their own: `conn` stays this thread's
        conns = [conn] if parts == 1 else [stack.enter_context(conn.engine.connect()) for _ in range(parts)]
        for c in {conn, *conns}:
            if c.dialect.name == "postgresql":
                # for this transaction only (SET LOCAL ends with it): JIT compiling the masks cost ~1 s of a ~5 s
                # statement at 1M and gained nothing; with the default 4 MB the sort of the loop's day spilled to
                # disk (~56 MB of temporary files at 1M, docs/performance.md session 5)
                c.execute(text("SET LOCAL jit = off"))
                c.execute(text(f"SET LOCAL work_mem = '{PG_WORK_MEM}'"))
        # the order grouping (one group per unit and mask of the period's orders) is read first and kept; the
        # record grouping's groups are read a unit at a time (the parts' merged), and each unit is handed over whole
        held: dict[str, list[Group]] = dict(
            _by_unit(_rows(conn, "order", _driving_join(conn, "orders", params), "", params))
        )
        ranges = _id_ranges(conn, params, parts)  # fewer than parts when the period is empty
        record_rows = _side_by_side(
            stack,
            [(c, "record", "JOIN", ids, params | bounds) for c, (ids, bounds) in zip(conns, ranges, strict=False)],
        )
        per_unit: dict[str, Counts] = {}

        def finish(code: str, groups: list[Group]) -> None:
            per_unit[code] = counts = dict.fromkeys(COUNTS, 0)
            metric_groups: dict[str, list[Group]] = {}
            for g in groups:
                for i, m in enumerate(group_metrics(g.group)):
                    if g.mask >> i & 1:
                        counts[m] += g.n
                        metric_groups.setdefault(m, []).append(g)
            if lineage is not None:  # a group at a time: a unit's metric is never in memory whole
                prefix = _csv_text(code) + ","
                for m in LINEAGE_METRICS:
                    for g in metric_groups.get(m, ()):
                        lineage(code, m, _lineage_lines(conn, code, g, f"{prefix}{m},"), g.n)

        merged = heapq.merge(*(_by_unit(rows) for rows in record_rows), key=lambda unit: unit[0])
        for code, same in itertools.groupby(merged, key=lambda unit: unit[0]):
            groups = [g for _, unit_groups in same for g in unit_groups]
            for other in sorted(u for u in held if u < code):  # units with orders but no record: in their place
                finish(other, held.pop(other))
            finish(code, groups + held.pop(code, []))
        for other in sorted(held):
            finish(other, held.pop(other))
    lifecycle = _LIFECYCLE_SQL.format(join=_driving_join(conn, "order_events", params))
    for row in conn.execute(text(lifecycle), params | {"t": True}).mappings():
        counts = per_unit.setdefault(row["unit_code"], dict.fromkeys(COUNTS, 0))
        counts.update({k: int(v or 0) for k, v in row.items() if k != "unit_code"})
    return dict(sorted(per_unit.items()))


@dataclass(frozen=True)
class Group:
    """A row of counts_sql: the `n` records of one unit of `group` that count in exactly the metrics of `mask`."""

    group: str
    mask: int
    n: int
    refs: str  # their `source,record_id`, joined by newlines
    rows_sql: str  # the _rows_sql they were grouped from, with
    params: dict[str, Any]  # its parameters


def _by_unit(rows: Iterator[tuple[str, Group]]) -> Iterator[tuple[str, list[Group]]]:
    """(unit_code, its groups) for each unit of one statement's rows, in their (unit_code) order; one unit's
    texts held at a time."""
    for code, same in itertools.groupby(rows, key=lambda row: row[0]):
        yield code, [g for _, g in same]


Statement = tuple[Connection, str, str, str, dict[str, Any]]  # (connection, group, join, ids, params)


def _rows(conn: Connection, group: str, join: str, ids: str, params: dict[str, Any]) -> Iterator[tuple[str, Group]]:
    """(unit_code, group) for each row of one counts_sql statement, in its order."""
    sql = text(counts_sql(conn.dialect.name, group, join, ids))
    rows_sql = _rows_sql(group, join, ids)
    # streamed: on PostgreSQL a server-side cursor, so the texts of every unit are never in memory at once
    for unit, mask, n, refs in conn.execution_options(stream_results=True, max_row_buffer=16).execute(sql, params):
        yield unit, Group(group, int(mask), int(n), refs, rows_sql, params)


_DONE = object()


def _side_by_side(stack: ExitStack, statements: list[Statement]) -> list[Iterator[tuple[str, Group]]]:
    """The rows of each statement (`_rows`); several are each read by a thread of their own (each on a connection
    of its own) into a short queue, so that their sorts and their text aggregates run at once: both databases do
    that work without the GIL (SQLite computes a group's group_concat as its row is fetched, ~1 s of the
    loop's day). The threads stop and are joined when `stack` closes, read to the end or not."""
    if len(statements) == 1:
        return [_rows(*statements[0])]
    stop = threading.Event()
    queues: list[queue.Queue[Any]] = [queue.Queue(maxsize=4) for _ in statements]

    def put(q: queue.Queue[Any], item: Any) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def read(statement: Statement, q: queue.Queue[Any]) -> None:
        try:
            for row in _rows(*statement):
                if not put(q, row):
                    return
            put(q, _DONE)
        except BaseException as error:  # handed to the reading thread, raised there
            put(q, error)

    def drain(q: queue.Queue[Any]) -> Iterator[tuple[str, Group]]:
        while (item := q.get()) is not _DONE:
            if isinstance(item, BaseException):
                raise item
            yield item

    threads = [
        threading.Thread(target=read, args=(s, q), name=f"counts-{k}", daemon=True)
        for k, (s, q) in enumerate(zip(statements, queues, strict=True))
    ]
    stack.callback(lambda: [t.join() for t in threads])  # after the stop below: callbacks run last in, first out
    stack.callback(stop.set)
    for t in threads:
        t.start()
    return [drain(q) for q in queues]


# a record id needs care in a CSV cell when it starts like a formula (after the `source,` of its ref) or holds
# a quote, a CR, a comma or a newline; a source name is a config name (^[a-z0-9][a-z0-9_-]*$) and needs none
_FORMULA_AFTER_SOURCE = re.compile(r",[-=+@\t\r]")


def _lineage_lines(conn: Connection, unit_code: str, g: Group, head: str) -> str:
    """The lineage.csv lines `{head}{source},{record_id}` of the records of `g`, each record id formula-safe and
    CSV-quoted as tasks.csvsafe and csv.writer make it (tests/test_lineage.py holds the two to the same cells).

    Checked in bulk: when the text has one comma per record, one newline fewer, and no quote, CR or formula
    start (the usual case), the lines are the text with the head before each record. Otherwise each record id
    is made safe one by one; only a record id holding a newline makes the text ambiguous, and then the group's
    references are read again one per row.
    """
    refs = g.refs
    if refs.count("\n") == g.n - 1:
        if refs.count(",") == g.n and '"' not in refs and "\r" not in refs and not _FORMULA_AFTER_SOURCE.search(refs):
            return head + refs.replace("\n", "\n" + head)
        each = refs.split("\n")
    else:
        sql = f"SELECT ref FROM ({g.rows_sql}) t WHERE unit_code = :unit AND mask = :mask"
        each = list(conn.execute(text(sql), g.params | {"unit": unit_code, "mask": g.mask}).scalars())
    lines = []
    for ref in each:
        source, record_id = ref.split(",", 1)
        lines.append(f"{head}{source},{_csv_text(record_id)}")
    return "\n".join(lines)


def _csv_text(value: str) -> str:
    """A text cell as lineage.csv has it: formula-safe (tasks.csvsafe), then quoted when it holds a comma, quote, CR or LF."""
    cell = csv_cell(value)
    if any(ch in cell for ch in ',"\r\n'):
        return '"' + cell.replace('"', '""') + '"'
    return cell


def compute_assessment(
    conn: Connection,
    business_date: date,
    as_of: datetime,
    tz: ZoneInfo,
    targets: TargetsConfig,
    cfg: AssessmentConfig | None = None,
    lineage: LineageSink | None = None,
    parts: int = 1,
) -> dict[str, Any]:
    """assessment.json for business_date's month to date, evaluated at as_of (and its lineage, to `lineage`);
    `parts` as unit_counts has it."""
    counts = unit_counts(conn, Period.month_to_date(business_date), as_of, lineage, parts)
    return assessment(business_date, as_of, tz, targets, counts, cfg)


def explain(conn: Connection, unit_code: str, metric: str, period: Period, as_of: datetime) -> list[str]:
    """`SOURCE:RECORD_ID` of every record behind one unit's count of `metric` (SPEC §12), sorted."""
    sql = f"SELECT source, record_id FROM ({lineage_sql((metric,), unit=True)}) l ORDER BY source, record_id"
    rows = conn.execute(text(sql), _params(conn, period, as_of, unit=unit_code))
    return [f"{source}:{record_id}" for source, record_id in rows]


def explain_count(conn: Connection, unit_code: str, metric: str, business_date: date, as_of: datetime) -> list[str]:
    """What `minyi explain` lists: the records behind `metric` of `unit_code` in business_date's assessment.

    An unknown metric is refused naming the ones that can be traced.
    """
    from minyi.tasks.errors import InputError

    if metric not in LINEAGE_METRICS:
        raise InputError(f"METRIC {metric!r}: expected one of {', '.join(LINEAGE_METRICS)}")
    return explain(conn, unit_code, metric, Period.month_to_date(business_date), as_of)
