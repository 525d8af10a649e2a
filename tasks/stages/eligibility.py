"""Who gets a follow-up SMS (SPEC §4): decided once per record, in one set-based statement.

Why one INSERT … SELECT: a business date holds up to a million records; the rules
are a CASE in SPEC order plus a window function for the per-phone limit, so the
database decides every record at once and a Python loop never touches them.
Why "once": a record that already has a follow-up is never planned again, so a
re-run, a re-pull or a backfill cannot take back or repeat an SMS. Records that
first arrive on a later run (a source that failed on the first one) are planned
on that run, ranked after the phone's already planned SMS.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta

from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.engine import Connection

from minyi.tasks.config import MinyiConfig
from minyi.tasks.rules.days import local_date
from minyi.tasks.store.engine import instant_param, refresh_statistics

# Every reason a follow-up may be skipped, in SPEC order.
SKIP_REASONS: tuple[str, ...] = ("confidential", "invalid_phone", "opted_out", "stale", "duplicate_phone")

# How the SMS names the matter ("您昨日在{unit}办理的{matter}已办结").
MATTER_WORDS: dict[str, str] = {
    "police_call": "报警求助事项",
    "traffic_call": "交通报警事项",
    "hotline_appeal": "热线诉求",
    "supervision_complaint": "督察投诉事项",
    "household_registration": "户籍业务",
    "entry_exit": "出入境业务",
    "vehicle_driver": "车驾管业务",
}
OTHER_MATTER = "业务"
UNKNOWN_UNIT = "公安机关"


class PlanSummary(BaseModel):
    """The day's follow-ups after planning: `planned` is how many were decided by this run."""

    business_date: date
    planned: int
    sms: int
    manual: int
    skipped: dict[str, int]


def is_stale(business_date: date, as_of: datetime, cfg: MinyiConfig) -> bool:
    """Rule 4: (as_of's local date − business date) > max_age_days."""
    return (local_date(as_of, cfg.tz) - business_date).days > cfg.followup.max_age_days


def when_words(business_date: date, as_of: datetime, cfg: MinyiConfig) -> str:
    """'昨日' for yesterday's records (the normal case), else the date, e.g. '于11月21日'."""
    if local_date(as_of, cfg.tz) - business_date == timedelta(days=1):
        return "昨日"
    return f"于{business_date.month}月{business_date.day}日"


def sms_text(signature: str, when: str, unit_name: str | None, matter: str | None) -> str:
    """The message as the citizen reads it, composed by the relay when it leaves (tasks/stages/sms.py)."""
    return (
        f"【{signature}】您好，您{when}在{unit_name or UNKNOWN_UNIT}办理的"
        f"{MATTER_WORDS.get(matter or '', OTHER_MATTER)}已办结。回复1满意，2基本满意，3不满意。回复TD退订。"
    )


# Rules 1–4 are a CASE per record, in SPEC order (verdicts). Rule 5 ranks a phone's still-eligible records,
# counting SMS already planned for the phone and date by earlier runs (planned). Ranking every record would sort the
# whole day by phone (3.3 s of the 1M-record statement on SQLite), so only `crowded` phones are ranked: those
# with more of the day's unplanned mobile records than the limit, or with an SMS planned by an earlier run.
# Any other phone has at most `max_per_phone` candidates, so each is sent. Rows are inserted in the order of
# the day's index scan (source, then id): the unique indexes (record_pk, message_id) grow at their right edges.
_PLAN = """
INSERT INTO followups (record_pk, source, record_id, business_date, unit_code, phone_norm, plan, skip_reason,
    message_id, sms_status, planned_at, manual_reason, manual_queued_at)
WITH planned AS (
    SELECT f.phone_norm, COUNT(*) AS n FROM followups f
    WHERE f.business_date = :day AND f.plan = 'sms'
    GROUP BY f.phone_norm
),
crowded AS (
    SELECT r.phone_norm FROM records r
    WHERE r.business_date = :day AND r.phone_kind = 'mobile' AND r.phone_norm IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM followups f WHERE f.record_pk = r.id)
    GROUP BY r.phone_norm
    HAVING COUNT(*) > :max_per_phone OR r.phone_norm IN (SELECT phone_norm FROM planned)
),
verdicts AS (
    SELECT r.id, r.source, r.record_id, r.business_date, r.unit_code, r.phone_norm, r.handled_at,
        CASE
            WHEN r.confidential THEN 'confidential'
            WHEN r.phone_kind = 'landline' THEN 'landline'
            WHEN r.phone_kind <> 'mobile' OR r.phone_norm IS NULL THEN 'invalid_phone'
            WHEN EXISTS (SELECT 1 FROM opt_outs o WHERE o.phone_norm = r.phone_norm) THEN 'opted_out'
            WHEN :stale THEN 'stale'
            ELSE 'sms'
        END AS verdict
    FROM records r
    WHERE r.business_date = :day
      AND NOT EXISTS (SELECT 1 FROM followups f WHERE f.record_pk = r.id)
),
decided AS (
    SELECT v.*, v.verdict AS outcome FROM verdicts v
    {uncrowded}
    UNION ALL
    SELECT v.*,
        CASE WHEN ROW_NUMBER() OVER (PARTITION BY v.phone_norm ORDER BY v.handled_at DESC, v.record_id, v.source)
                  + COALESCE(p.n, 0) > :max_per_phone
             THEN 'duplicate_phone' ELSE 'sms' END
    FROM verdicts v LEFT JOIN planned p ON p.phone_norm = v.phone_norm
    WHERE v.verdict = 'sms' AND v.phone_norm IN (SELECT phone_norm FROM crowded)
)
SELECT d.id, d.source, d.record_id, d.business_date, d.unit_code, d.phone_norm,
    CASE d.outcome WHEN 'sms' THEN 'sms' WHEN 'landline' THEN 'manual' ELSE 'skipped' END,
    CASE WHEN d.outcome IN ('sms', 'landline') THEN NULL ELSE d.outcome END,
    CASE WHEN d.outcome = 'sms' THEN 'minyi:' || d.source || ':' || d.record_id END,
    CASE WHEN d.outcome = 'sms' THEN 'queued' END,
    :now,
    CASE WHEN d.outcome = 'landline' THEN 'landline' END,
    CASE WHEN d.outcome = 'landline' THEN :now END
FROM decided d
WHERE 1 = 1
ON CONFLICT (record_pk) DO NOTHING
"""

# The same rule, "not an SMS to a crowded phone", joined the way each database plans well at 1M (not a
# second rule: the eligibility tests run the one statement on both). PostgreSQL: an anti-join; with the records
# analysed it estimates ~600k crowded phones and ran `NOT (… IN (SELECT …))` as a plain subplan scanning the
# CTE once per record (4+ minutes at 1M, docs/performance.md session 6). SQLite: `IN` builds one ephemeral
# index on the list, where the join scanned the materialised CTE once per record.
_UNCROWDED = {
    "postgresql": "LEFT JOIN crowded c ON c.phone_norm = v.phone_norm AND v.verdict = 'sms' WHERE c.phone_norm IS NULL",
    "sqlite": "WHERE NOT (v.verdict = 'sms' AND v.phone_norm IN (SELECT phone_norm FROM crowded))",
}


# A follow-up's message_id is planning's 'minyi:' || source || ':' || record_id (_PLAN above). Source names
# have no ':' (config), so the source is what lies between the first two colons and the record id is the
# rest, which may hold colons of its own. Replies name their follow-up by it; the follow-up is found through
# the records' unique (source, record_id) index and its own on record_pk, so message_id needs no index of
# its own: a unique one cost ~15% of planning's INSERT on both databases and, on PostgreSQL, an index entry
# per message sent (migration 0011; tests/test_followups.py checks it against the ids planning writes).
_SOURCE_OF = {
    "postgresql": "split_part({m}, ':', 2)",
    "sqlite": "substr({m}, 7, instr(substr({m}, 7), ':') - 1)",
}
_RECORD_ID_OF = {
    "postgresql": "substr({m}, 8 + length(split_part({m}, ':', 2)))",
    "sqlite": "substr({m}, 7 + instr(substr({m}, 7), ':'))",
}


def followup_of_message_id(dialect: str, m: str) -> str:
    """SQL for the id of the follow-up whose SMS has message_id `m` (a column or expression), or NULL."""
    return (
        "(SELECT f.id FROM records r JOIN followups f ON f.record_pk = r.id "
        f"WHERE {m} LIKE 'minyi:%' AND r.source = {_SOURCE_OF[dialect].format(m=m)} "
        f"AND r.record_id = {_RECORD_ID_OF[dialect].format(m=m)} AND f.message_id = {m})"
    )


def plan_followups(conn: Connection, business_date: date, as_of: datetime, cfg: MinyiConfig) -> PlanSummary:
    """Decide a follow-up for every record of the day that has none yet; the SMS rows are the outbox."""
    with _sqlite_page_cache(conn, PLAN_CACHE_KIB):
        planned = _plan(conn, business_date, as_of, cfg)
    if planned:
        refresh_statistics(conn, "followups")  # the relay's batch query needs them at once
    return day_plan(conn, business_date, max(planned or 0, 0))


# SQLite's default page cache is 2 MiB; the phone index of a million follow-ups (~30 MiB) takes random
# inserts, each a page read when the cache misses. 32 MiB while planning, given back after
# (what it bought: docs/performance.md, "Figures behind code decisions").
PLAN_CACHE_KIB = 32 * 1024


@contextmanager
def _sqlite_page_cache(conn: Connection, kib: int) -> Iterator[None]:
    if conn.dialect.name != "sqlite":
        yield
        return
    before = conn.exec_driver_sql("PRAGMA cache_size").scalar()
    conn.exec_driver_sql(f"PRAGMA cache_size = -{int(kib)}")
    try:
        yield
    finally:
        conn.exec_driver_sql(f"PRAGMA cache_size = {int(before)}")


def _plan(conn: Connection, business_date: date, as_of: datetime, cfg: MinyiConfig) -> int:
    return conn.execute(
        text(_PLAN.format(uncrowded=_UNCROWDED[conn.dialect.name])),
        {
            "day": business_date,
            "now": instant_param(conn.dialect.name, as_of),
            "stale": is_stale(business_date, as_of, cfg),
            "max_per_phone": cfg.followup.max_per_phone_per_day,
        },
    ).rowcount


def day_plan(conn: Connection, business_date: date, planned: int = 0) -> PlanSummary:
    """The day's follow-ups by plan and skip reason."""
    rows = conn.execute(
        text("SELECT plan, skip_reason, COUNT(*) FROM followups WHERE business_date = :day GROUP BY plan, skip_reason"),
        {"day": business_date},
    ).all()
    by_plan = {"sms": 0, "manual": 0}
    skipped: dict[str, int] = {}
    for plan, reason, n in rows:
        if plan == "skipped":
            skipped[reason or "unknown"] = skipped.get(reason or "unknown", 0) + n
        else:
            by_plan[plan] = by_plan.get(plan, 0) + n
    return PlanSummary(
        business_date=business_date, planned=planned, sms=by_plan["sms"], manual=by_plan["manual"], skipped=skipped
    )
