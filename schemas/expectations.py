"""The expectation suites of SPEC §8, as code: what a good day's batch and a sound store look like.

Two suites:

- the **batch suite**, one per source and business date, on the day's accepted
  records (a SQL query asset over `records`, validated in the database);
- the **store suite**, the cross-table invariants that protect citizens and
  units from a bug: one query per invariant that selects the offending rows,
  expected to be empty.

Each expectation carries a stable `name` in its meta; that name is what
quality.json, the CSV twin, `quality_runs` and the alert use. Severity follows
SPEC §8: `unit_code_known` and `valid_mobile_share` are warnings (reported,
never holding anything); the rest are critical. Only `row_count_within_median_band`
drives the gate.

Why the queries select only record_id, channel, handled_at, unit_code and
phone_kind: GX copies sample values into its results and Data Docs, and no phone
number or name may ever appear there.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # GX costs seconds to import: only the quality stage pays for it, when it runs
    import great_expectations as gx

CHANNELS: tuple[str, ...] = ("110", "122", "12345", "968110", "window", "online")

# Below this share of records with a valid mobile, the follow-up loop reaches too few
# citizens to be trusted; a source that suddenly sends landlines, masked or empty
# phones (a renamed field, an upstream privacy filter) shows up here. A warning:
# the records are real work and still assessed. See docs/quality.md.
MIN_MOBILE_SHARE = 0.5
# SPEC §8: ±50% of the median of the previous 7 business dates that have data.
ROW_COUNT_TOLERANCE = 0.5
HISTORY_DATES = 7
MIN_HISTORY_DATES = 3

RECORD_ID_UNIQUE = "record_id_unique"
CHANNEL_IN_SET = "channel_in_set"
HANDLED_AT_IN_WINDOW = "handled_at_in_window"
UNIT_CODE_KNOWN = "unit_code_known"
VALID_MOBILE_SHARE = "valid_mobile_share"
ROW_COUNT_WITHIN_MEDIAN_BAND = "row_count_within_median_band"
BATCH_EXPECTATIONS: tuple[str, ...] = (
    RECORD_ID_UNIQUE,
    CHANNEL_IN_SET,
    HANDLED_AT_IN_WINDOW,
    UNIT_CODE_KNOWN,
    VALID_MOBILE_SHARE,
    ROW_COUNT_WITHIN_MEDIAN_BAND,
)
GATE_EXPECTATION = ROW_COUNT_WITHIN_MEDIAN_BAND

_SAFE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")  # the config's source-name rule


@dataclass(frozen=True)
class BatchBounds:
    """What the batch suite of one source and day is parameterised by.

    `handled_from`/`handled_until` are the window's instants in the store's own
    representation (inclusive), so the comparison runs in the database.
    `row_count_band` is None when the source has too little history (`no_history`).
    """

    handled_from: Any
    handled_until: Any
    known_units: tuple[str, ...]
    row_count_band: tuple[int, int] | None


def row_count_band(median: float | None) -> tuple[int, int] | None:
    """Whole-row bounds of [median·(1−50%), median·(1+50%)]; None without a median."""
    if median is None:
        return None
    return math.ceil(median * (1 - ROW_COUNT_TOLERANCE)), math.floor(median * (1 + ROW_COUNT_TOLERANCE))


def batch_query(source: str, business_date: date) -> str:
    """The query asset of one source's day: accepted records, without phone or name.

    GX query assets take no bind parameters, so the two values are inlined; both
    are checked first (a source name follows the config's rule, a date is a date).
    """
    if not _SAFE_NAME.match(source):
        raise ValueError(f"unsafe source name {source!r}")
    return (
        "SELECT record_id, channel, handled_at, unit_code, phone_kind FROM records "
        f"WHERE source = '{source}' AND business_date = '{business_date.isoformat()}'"
    )


def _meta(name: str) -> dict[str, Any]:
    return {"name": name}


def batch_suite(source: str, bounds: BatchBounds) -> gx.ExpectationSuite:
    """The batch suite of SPEC §8 for one source's day (built whole: GX binds a suite to a context on `add`)."""
    import great_expectations as gx
    import great_expectations.expectations as gxe

    expectations: list[Any] = [
        gxe.ExpectColumnValuesToBeUnique(
            column="record_id", meta=_meta(RECORD_ID_UNIQUE), description="record_id is unique within the day"
        ),
        gxe.ExpectColumnValuesToBeInSet(
            column="channel",
            value_set=list(CHANNELS),
            meta=_meta(CHANNEL_IN_SET),
            description="channel is one of the six",
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column="handled_at",
            min_value=bounds.handled_from,
            max_value=bounds.handled_until,
            meta=_meta(HANDLED_AT_IN_WINDOW),
            description="handled_at's local date is within one day of the business date",
        ),
        gxe.ExpectColumnValuesToBeInSet(
            column="unit_code",
            value_set=sorted(bounds.known_units),
            severity="warning",
            meta=_meta(UNIT_CODE_KNOWN),
            description="unit_code is a configured unit (unknown units are kept and routed to the centre)",
        ),
        gxe.ExpectColumnValuesToBeInSet(
            column="phone_kind",
            value_set=["mobile"],
            mostly=MIN_MOBILE_SHARE,
            severity="warning",
            meta=_meta(VALID_MOBILE_SHARE),
            description=f"at least {MIN_MOBILE_SHARE:.0%} of records carry a valid mobile",
        ),
    ]
    if bounds.row_count_band is not None:
        low, high = bounds.row_count_band
        expectations.append(
            gxe.ExpectTableRowCountToBeBetween(
                min_value=low,
                max_value=high,
                meta=_meta(ROW_COUNT_WITHIN_MEDIAN_BAND),
                description="row count within ±50% of the median of the previous 7 dates with data (the gate)",
            )
        )
    return gx.ExpectationSuite(name=f"batch.{source}", expectations=expectations)


@dataclass(frozen=True)
class Invariant:
    """A store invariant: `offending` selects one `ref` (SOURCE:RECORD_ID) per row that breaks it.

    `needs` names the tables and columns the query reads; when one is missing
    (a stage not deployed yet) the invariant is reported not applicable.
    Placeholders: {since_date} (oldest business date in scope), {since} (the
    matching instant), {settled} (answers before this instant must have an order).
    """

    name: str
    description: str
    needs: dict[str, tuple[str, ...]]
    offending: str


DISSATISFIED_HAS_ONE_ORDER = "dissatisfied_followup_has_one_order"
NO_SMS_TO_INVALID_OR_OPTED_OUT = "no_sms_to_invalid_or_opted_out_phone"
DUE_AFTER_OPENED = "due_instants_after_opened_at"

# A normalised mobile is 11 digits, `1[3-9]…` (SPEC §4); written with length/substr
# because SQLite has no regular expressions.
_NOT_MOBILE = (
    "(f.phone_norm IS NULL OR length(f.phone_norm) <> 11 OR substr(f.phone_norm, 1, 1) <> '1' "
    "OR substr(f.phone_norm, 2, 1) NOT IN ('3', '4', '5', '6', '7', '8', '9'))"
)

STORE_INVARIANTS: tuple[Invariant, ...] = (
    Invariant(
        name=DISSATISFIED_HAS_ONE_ORDER,
        description="every follow-up with a dissatisfied answer has exactly one supervision order",
        needs={"followups": ("id", "business_date"), "answers": ("followup_id", "value"), "orders": ("followup_id",)},
        offending=(
            "SELECT f.source || ':' || f.record_id AS ref FROM followups f "
            "WHERE f.business_date >= '{since_date}' "
            "AND EXISTS (SELECT 1 FROM answers a WHERE a.followup_id = f.id AND a.value = 'dissatisfied' "
            "AND a.answered_at <= '{settled}') "
            "AND (SELECT COUNT(*) FROM orders o WHERE o.followup_id = f.id) <> 1"
        ),
    ),
    Invariant(
        name=NO_SMS_TO_INVALID_OR_OPTED_OUT,
        description="no SMS was sent to a phone that is not a valid mobile, or that had opted out before it was sent",
        needs={
            "followups": ("phone_norm", "sms_status", "sent_at", "business_date"),
            "opt_outs": ("phone_norm", "opted_out_at"),
        },
        offending=(
            "SELECT f.source || ':' || f.record_id AS ref FROM followups f "
            "WHERE f.business_date >= '{since_date}' AND f.sms_status = 'sent' "
            f"AND ({_NOT_MOBILE} OR EXISTS (SELECT 1 FROM opt_outs o "
            "WHERE o.phone_norm = f.phone_norm AND o.opted_out_at <= f.sent_at))"
        ),
    ),
    Invariant(
        name=DUE_AFTER_OPENED,
        description="an order's response_due and completion_due are after its opened_at",
        needs={"orders": ("opened_at", "response_due", "completion_due", "status")},
        offending=(
            "SELECT o.source || ':' || o.record_id AS ref FROM orders o "
            "WHERE (o.status <> 'closed' OR o.opened_at >= '{since}') "
            "AND ((o.response_due IS NOT NULL AND o.response_due <= o.opened_at) "
            "OR (o.completion_due IS NOT NULL AND o.completion_due <= o.opened_at))"
        ),
    ),
)
STORE_EXPECTATIONS: tuple[str, ...] = tuple(i.name for i in STORE_INVARIANTS)


def invariant_query(inv: Invariant, since_date: date, since: str, settled: str) -> str:
    """The invariant's offending-rows query with its scope inlined (values are formatted dates/instants)."""
    return inv.offending.format(since_date=since_date.isoformat(), since=since, settled=settled)


def store_suite(inv: Invariant) -> gx.ExpectationSuite:
    """One invariant as a suite: its offending-rows query must return no row."""
    import great_expectations as gx
    import great_expectations.expectations as gxe

    return gx.ExpectationSuite(
        name=f"store.{inv.name}",
        expectations=[gxe.ExpectTableRowCountToEqual(value=0, meta=_meta(inv.name), description=inv.description)],
    )
