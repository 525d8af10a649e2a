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
_COUNTS_SQL = """
SELECT r.unit_code,
       COUNT(*) AS records,
       SUM(CASE WHEN f.sms_status = 'sent' THEN 1 ELSE 0 END) AS followups_sent,
       SUM(CASE WHEN f.satisfaction IN ('satisfied', 'basically_satisfied', 'dissatisfied') THEN 1 ELSE 0 END)
           AS responses,
       SUM(CASE WHEN f.satisfaction = 'satisfied' THEN 1 ELSE 0 END) AS satisfied,
       SUM(CASE WHEN f.satisfaction = 'basically_satisfied' THEN 1 ELSE 0 END) AS basically_satisfied,
       SUM(CASE WHEN f.satisfaction = 'dissatisfied' THEN 1 ELSE 0 END) AS dissatisfied,
       COUNT(o.id) AS orders_opened,
       SUM(CASE WHEN o.responded_at IS NOT NULL OR o.response_due <= :as_of THEN 1 ELSE 0 END)
           AS orders_due_response,
       SUM(CASE WHEN o.responded_at IS NOT NULL AND o.responded_at < o.response_due THEN 1 ELSE 0 END)
           AS responded_on_time,
       SUM(CASE WHEN o.closed_at IS NOT NULL THEN 1 ELSE 0 END) AS orders_closed,
       SUM(CASE WHEN o.closed_at IS NOT NULL AND o.resolution = 'resolved' THEN 1 ELSE 0 END) AS resolved,
       SUM(CASE WHEN o.closed_at IS NOT NULL OR o.completion_due <= :as_of THEN 1 ELSE 0 END)
           AS orders_due_completion,
       SUM(CASE WHEN o.closed_at IS NOT NULL AND o.closed_at < o.completion_due THEN 1 ELSE 0 END)
           AS completed_on_time
FROM records r
LEFT JOIN followups f ON f.record_pk = r.id
LEFT JOIN orders o ON o.followup_id = f.id
WHERE r.business_date >= :start AND r.business_date <= :end
GROUP BY r.unit_code
ORDER BY r.unit_code
"""


def unit_counts(conn: Connection, period: Period, as_of: datetime) -> dict[str, Counts]:
    """Counts per unit_code for every unit with records in the period (known to the config or not)."""
    params = {"start": period.start, "end": period.end, "as_of": instant_param(conn.dialect.name, as_of)}
    return {
        row["unit_code"]: {name: int(row[name] or 0) for name in COUNTS}
        for row in conn.execute(text(_COUNTS_SQL), params).mappings()
    }


def compute_assessment(
    conn: Connection, business_date: date, as_of: datetime, tz: ZoneInfo, targets: TargetsConfig
) -> dict[str, Any]:
    """assessment.json for business_date's month to date, evaluated at as_of."""
    return assessment(business_date, as_of, tz, targets, unit_counts(conn, Period.month_to_date(business_date), as_of))
