"""The assessment metrics of SPEC §7: per unit and overall, month-to-date, evaluated at `as_of`.

Counts come from one set-based statement over the store (records, follow-ups,
orders), grouped by the unit of the *record* and restricted to the records
whose business date is in the period: an order opened on the 2nd for a
record of the 30th of last month belongs to last month's assessment. Quarantined
rows are not records, so they count nowhere.

Everything after the counts is pure: rates (null on a zero denominator),
`meets_targets` (a null rate passes), ranking and the overall row (sums of the
units' counts, rates recomputed from the sums, never averaged).

Decisions SPEC §7 leaves open (docs/reports.md restates them):
- a pending_calendar order (no due instant) that is done counts as due but not
  on time: "on time" means strictly before a due instant, and there is none yet;
  once the calendar is supplied the due is computed and the order re-evaluated.
- counts read the store as it is when the report runs; `as_of` decides which
  clocks have run out (`response_due <= as_of`).
- rates are written rounded to 4 decimals; `meets_targets` compares the exact
  fractions, so 0.79995 never passes a 0.8 target by rounding.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from fractions import Fraction
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlalchemy.engine import Connection

from minyi.tasks.config import TargetsConfig
from minyi.tasks.store import instant_param

# SPEC §7's lifecycle counts (SPEC §5), from _LIFECYCLE_SQL below.
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
    ("timely_response_rate", ("responded_on_time",), "orders_due_response"),
    ("resolution_rate", ("resolved",), "orders_closed"),
    ("timely_completion_rate", ("completed_on_time",), "orders_due_completion"),
)
# The order SPEC §7 lists M in; JSON and CSV follow it.
METRICS: tuple[str, ...] = (
    "records",
    "followups_sent",
    "responses",
    "satisfied",
    "basically_satisfied",
    "dissatisfied",
    "satisfaction_rate",
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
)
# Which rates are held against which target.
TARGETED: tuple[tuple[str, str], ...] = (
    ("timely_response_rate", "timely_response"),
    ("satisfaction_rate", "satisfaction"),
    ("resolution_rate", "resolution"),
)
RATE_DIGITS = 4

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


def metrics(counts: Counts) -> dict[str, Any]:
    """M of SPEC §7 from counts: every count, and each rate (null when its denominator is zero)."""
    values: dict[str, Any] = {name: int(counts.get(name, 0)) for name in COUNTS}
    for rate, num, den in RATES:
        exact = exact_rate(counts, num, den)
        values[rate] = None if exact is None else round(float(exact), RATE_DIGITS)
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


def assessment(
    business_date: date,
    as_of: datetime,
    tz: ZoneInfo,
    targets: TargetsConfig,
    per_unit: dict[str, Counts],
) -> dict[str, Any]:
    """assessment.json of SPEC §7 from per-unit counts (every unit with records in the period)."""
    period = Period.month_to_date(business_date)
    units = [
        {"unit_code": code, **metrics(counts), "meets_targets": meets_targets(counts, targets)}
        for code, counts in per_unit.items()
    ]
    # satisfaction for ranking uses the exact fraction, so rounding never reorders two units
    exact_sat = {
        code: exact_rate(counts, ("satisfied", "basically_satisfied"), "responses") for code, counts in per_unit.items()
    }
    units.sort(
        key=lambda u: (
            not u["meets_targets"],
            exact_sat[u["unit_code"]] is None,
            -(exact_sat[u["unit_code"]] or 0),
            u["unit_code"],
        )
    )
    for i, unit in enumerate(units, start=1):
        unit["rank"] = i
    return {
        "business_date": business_date.isoformat(),
        "as_of": as_of.astimezone(tz).isoformat(),
        "period": {"start": period.start.isoformat(), "end": period.end.isoformat()},
        "targets": {
            "timely_response": targets.timely_response,
            "satisfaction": targets.satisfaction,
            "resolution": targets.resolution,
        },
        "overall": metrics(sum_counts(per_unit)),
        "units": units,
    }


# ---------------------------------------------------------------------------------------------- SQL

# One pass over the period's records: a record has at most one follow-up and a follow-up at most one
# order (unique constraints), so the LEFT JOINs never multiply rows and COUNT(*) is the record count.
# An order is responded once responded_at is set, closed once closed_at is set (the state machine
# fills earlier stages with the later stage's time). NULL dues never compare true: pending_calendar.
# SPEC §5 lifecycle: an answer behind an upheld appeal (closed(excluded) by as_of) counts in records,
# followups_sent and `excluded` only; an order counts for the unit holding it at as_of (the target of
# its last reassignment by as_of, else the record's unit), so order metrics are grouped by `holder`.
_EXCLUDED = "(o.resolution = 'excluded' AND o.closed_at <= :as_of)"
_KEPT = "(o.id IS NULL OR o.resolution IS NULL OR o.resolution <> 'excluded' OR o.closed_at > :as_of)"
_HOLDER = (
    "COALESCE((SELECT ev.to_unit FROM order_events ev WHERE ev.order_id = o.id AND ev.stage = 'reassign' "
    "AND ev.at <= :as_of ORDER BY ev.at DESC, ev.id DESC LIMIT 1), r.unit_code)"
)
_FOLLOWUP_COUNTS_SQL = f"""
SELECT r.unit_code,
       COUNT(*) AS records,
       SUM(CASE WHEN f.sms_status = 'sent' THEN 1 ELSE 0 END) AS followups_sent,
       SUM(CASE WHEN {_KEPT} AND f.satisfaction IN ('satisfied', 'basically_satisfied', 'dissatisfied')
           THEN 1 ELSE 0 END) AS responses,
       SUM(CASE WHEN {_KEPT} AND f.satisfaction = 'satisfied' THEN 1 ELSE 0 END) AS satisfied,
       SUM(CASE WHEN {_KEPT} AND f.satisfaction = 'basically_satisfied' THEN 1 ELSE 0 END) AS basically_satisfied,
       SUM(CASE WHEN {_KEPT} AND f.satisfaction = 'dissatisfied' THEN 1 ELSE 0 END) AS dissatisfied,
       SUM(CASE WHEN {_EXCLUDED} THEN 1 ELSE 0 END) AS excluded
FROM records r
LEFT JOIN followups f ON f.record_pk = r.id
LEFT JOIN orders o ON o.followup_id = f.id
WHERE r.business_date >= :start AND r.business_date <= :end
GROUP BY r.unit_code
ORDER BY r.unit_code
"""
_ORDER_COUNTS_SQL = f"""
SELECT holder AS unit_code,
       COUNT(*) AS orders_opened,
       SUM(CASE WHEN responded_at IS NOT NULL OR response_due <= :as_of THEN 1 ELSE 0 END) AS orders_due_response,
       SUM(CASE WHEN responded_at IS NOT NULL AND responded_at < response_due THEN 1 ELSE 0 END)
           AS responded_on_time,
       SUM(CASE WHEN closed_at IS NOT NULL THEN 1 ELSE 0 END) AS orders_closed,
       SUM(CASE WHEN closed_at IS NOT NULL AND resolution = 'resolved' THEN 1 ELSE 0 END) AS resolved,
       SUM(CASE WHEN closed_at IS NOT NULL OR completion_due <= :as_of THEN 1 ELSE 0 END) AS orders_due_completion,
       SUM(CASE WHEN closed_at IS NOT NULL AND closed_at < completion_due THEN 1 ELSE 0 END) AS completed_on_time
FROM (
  SELECT {_HOLDER} AS holder, o.responded_at, o.response_due, o.closed_at, o.resolution, o.completion_due
  FROM records r
  JOIN followups f ON f.record_pk = r.id
  JOIN orders o ON o.followup_id = f.id
  WHERE r.business_date >= :start AND r.business_date <= :end AND {_KEPT}
) held
GROUP BY holder
"""
# The lifecycle events of the period's orders by as_of, each for the unit that made it (a reassignment
# for the unit it went to).
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
  JOIN orders o ON o.id = ev.order_id
  JOIN followups f ON f.id = o.followup_id
  JOIN records r ON r.id = f.record_pk
  WHERE r.business_date >= :start AND r.business_date <= :end AND ev.at <= :as_of
) events
GROUP BY unit_code
"""


def unit_counts(conn: Connection, period: Period, as_of: datetime) -> dict[str, Counts]:
    """Counts per unit_code for every unit with records in the period (known to the config or not),
    and every unit holding, or having acted on, one of the period's orders (SPEC §5)."""
    params = {"start": period.start, "end": period.end, "as_of": instant_param(conn.dialect.name, as_of)}
    out: dict[str, Counts] = {}
    for sql, extra in ((_FOLLOWUP_COUNTS_SQL, {}), (_ORDER_COUNTS_SQL, {}), (_LIFECYCLE_SQL, {"t": True})):
        for row in conn.execute(text(sql), params | extra).mappings():
            counts = out.setdefault(row["unit_code"], dict.fromkeys(COUNTS, 0))
            counts.update({k: int(v or 0) for k, v in row.items() if k != "unit_code"})
    return dict(sorted(out.items()))


def compute_assessment(
    conn: Connection, business_date: date, as_of: datetime, tz: ZoneInfo, targets: TargetsConfig
) -> dict[str, Any]:
    """assessment.json for business_date's month to date, evaluated at as_of."""
    return assessment(business_date, as_of, tz, targets, unit_counts(conn, Period.month_to_date(business_date), as_of))
