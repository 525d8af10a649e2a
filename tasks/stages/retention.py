"""Retention (PIPL: minimisation and storage limitation): de-identify what is older than `retention_days`.

A record whose business date is more than `retention_days` before as_of's local
date keeps everything the assessment counts (its row, channel, matter, unit,
dates, follow-up plan and status, answers' values, orders and clocks) and loses
what identifies the citizen:

- records: `citizen_name` and `summary` → NULL, `phone_norm` → `phone_hmac` (a keyed
  pseudonym, so "how many distinct citizens" and joins between old rows still work);
- followups: `phone_norm` → the same pseudonym (the SMS text is never stored: the relay composes it);
- answers, orders, order_events: free-text `note` → NULL (an operator may have typed anything);
- quarantine: the raw JSON keeps only the fields that identify no one;
- sms_replies received before the cutoff: `phone_norm` → pseudonym, `text` → a marker.

What stays identified, on purpose: `opt_outs` (an opt-out is forever — SPEC §4
"ever replied TD" — and must be compared with tomorrow's numbers) and a follow-up
whose SMS is still queued (it may yet be sent; in practice it went stale long ago).

One transaction per business date: bounded, and a killed run resumes with the
next untouched date (every step is idempotent: a pseudonym is never hashed again).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from minyi.tasks.rules.days import local_date, start_of_day
from minyi.tasks.rules.masking import HMAC_PREFIX, phone_hmac
from minyi.tasks.store.engine import instant_param

# Quarantined raw JSON keeps these (they identify a matter, not a person).
QUARANTINE_KEEP = ("record_id", "channel", "matter", "handled_at", "unit_code", "officer_id", "confidential")
REPLY_MARKER = "[de-identified]"
_MARKER_LIKE = '%"_deidentified":true%'


def cutoff_date(as_of: datetime, tz: ZoneInfo, retention_days: int) -> date:
    """The first business date that is kept identified: everything before it is de-identified."""
    return local_date(as_of, tz) - timedelta(days=retention_days)


def deidentified_raw(raw: str) -> str:
    """A quarantined row's raw JSON without the fields that identify a person (names, phones, free text)."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        doc = None
    kept = {k: doc[k] for k in QUARANTINE_KEEP if k in doc} if isinstance(doc, dict) else {}
    return orjson.dumps({**kept, "_deidentified": True}, option=orjson.OPT_SORT_KEYS).decode()


@dataclass
class RetentionSummary:
    cutoff: date
    days: int = 0
    records: int = 0
    followups: int = 0
    quarantined: int = 0
    replies: int = 0
    notes: int = 0
    dates: list[str] = field(default_factory=list)


_PENDING_DAYS = f"""
SELECT business_date FROM records
 WHERE business_date < :cut
   AND (citizen_name IS NOT NULL OR summary IS NOT NULL
        OR (phone_norm IS NOT NULL AND phone_norm NOT LIKE '{HMAC_PREFIX}%'))
UNION
SELECT business_date FROM quarantine WHERE business_date < :cut AND raw NOT LIKE :marker
"""
# A follow-up still queued may yet be sent: it and its record keep the number until it leaves or goes stale.
_IN_FLIGHT = "SELECT f.record_pk FROM followups f WHERE f.business_date = :d AND f.sms_status = 'queued'"


def _phones(conn: Connection, day: date) -> list[str]:
    rows = conn.execute(
        text(
            f"SELECT phone_norm FROM records WHERE business_date = :d AND phone_norm IS NOT NULL "
            f"AND phone_norm NOT LIKE '{HMAC_PREFIX}%' AND id NOT IN ({_IN_FLIGHT}) "
            f"UNION SELECT phone_norm FROM followups WHERE business_date = :d AND phone_norm IS NOT NULL "
            f"AND phone_norm NOT LIKE '{HMAC_PREFIX}%' AND (sms_status IS NULL OR sms_status <> 'queued')"
        ),
        {"d": day},
    )
    return [r[0] for r in rows]


_PSEUDONYM = "(SELECT m.pseudonym FROM retention_pseudonyms m WHERE m.phone = {t}.phone_norm)"


def _load_pseudonyms(conn: Connection, phones: list[str]) -> None:
    """The day's numbers and their pseudonyms in a temporary table, for two set-based UPDATEs.

    Why not one UPDATE per number: neither table has an index on the number for a whole
    day, so each such UPDATE scanned the day (quadratic at a million records a day).
    """
    if conn.dialect.name == "sqlite":
        conn.execute(
            text("CREATE TEMP TABLE IF NOT EXISTS retention_pseudonyms (phone TEXT PRIMARY KEY, pseudonym TEXT)")
        )
    else:
        conn.execute(
            text(
                "CREATE TEMP TABLE IF NOT EXISTS retention_pseudonyms (phone text PRIMARY KEY, pseudonym text) "
                "ON COMMIT DROP"
            )
        )
    conn.execute(
        text("INSERT INTO retention_pseudonyms (phone, pseudonym) VALUES (:p, :h)"),
        [{"p": p, "h": phone_hmac(p)} for p in phones],
    )


def _rowcount(result: Any) -> int:
    return max(result.rowcount or 0, 0)


def deidentify_day(conn: Connection, day: date) -> RetentionSummary:
    """De-identify one business date's records, follow-ups, answers, orders and quarantined rows."""
    out = RetentionSummary(cutoff=day, days=1, dates=[day.isoformat()])
    phones = _phones(conn, day)
    if phones:
        _load_pseudonyms(conn, phones)
        out.records = _rowcount(
            conn.execute(
                text(
                    f"UPDATE records SET phone_norm = {_PSEUDONYM.format(t='records')} WHERE business_date = :d "
                    f"AND phone_norm IN (SELECT phone FROM retention_pseudonyms) AND id NOT IN ({_IN_FLIGHT})"
                ),
                {"d": day},
            )
        )
        out.followups = _rowcount(
            conn.execute(
                text(
                    f"UPDATE followups SET phone_norm = {_PSEUDONYM.format(t='followups')} WHERE business_date = :d "
                    "AND phone_norm IN (SELECT phone FROM retention_pseudonyms) "
                    "AND (sms_status IS NULL OR sms_status <> 'queued')"
                ),
                {"d": day},
            )
        )
        conn.execute(text("DELETE FROM retention_pseudonyms"))
    out.records = max(
        _rowcount(
            conn.execute(
                text(
                    "UPDATE records SET citizen_name = NULL, summary = NULL WHERE business_date = :d "
                    f"AND (citizen_name IS NOT NULL OR summary IS NOT NULL) AND id NOT IN ({_IN_FLIGHT})"
                ),
                {"d": day},
            )
        ),
        out.records,
    )
    of_day = "SELECT id FROM followups WHERE business_date = :d"
    for sql in (
        f"UPDATE answers SET note = NULL WHERE note IS NOT NULL AND followup_id IN ({of_day})",
        f"UPDATE orders SET note = NULL WHERE note IS NOT NULL AND followup_id IN ({of_day})",
        "UPDATE order_events SET note = NULL WHERE note IS NOT NULL AND order_id IN "
        f"(SELECT id FROM orders WHERE followup_id IN ({of_day}))",
    ):
        out.notes += _rowcount(conn.execute(text(sql), {"d": day}))
    rows = conn.execute(
        text("SELECT id, raw FROM quarantine WHERE business_date = :d AND raw NOT LIKE :marker"),
        {"d": day, "marker": _MARKER_LIKE},
    ).all()
    if rows:
        conn.execute(
            text("UPDATE quarantine SET raw = :raw WHERE id = :id"),
            [{"id": r[0], "raw": deidentified_raw(r[1])} for r in rows],
        )
    out.quarantined = len(rows)
    return out


def deidentify_replies(conn: Connection, before: datetime) -> int:
    """SMS replies received before `before`: number → pseudonym, text → a marker (the parsed value stays)."""
    ts = instant_param(conn.dialect.name, before)
    phones = [
        r[0]
        for r in conn.execute(
            text(
                "SELECT DISTINCT phone_norm FROM sms_replies WHERE received_at < :ts AND phone_norm IS NOT NULL "
                f"AND phone_norm NOT LIKE '{HMAC_PREFIX}%'"
            ),
            {"ts": ts},
        )
    ]
    if phones:
        conn.execute(
            text("UPDATE sms_replies SET phone_norm = :h WHERE received_at < :ts AND phone_norm = :p"),
            [{"ts": ts, "p": p, "h": phone_hmac(p)} for p in phones],
        )
    changed = conn.execute(
        text("UPDATE sms_replies SET text = :m WHERE received_at < :ts AND text <> :m"), {"ts": ts, "m": REPLY_MARKER}
    ).rowcount
    return max(changed or 0, len(phones))


def apply_retention(engine: Engine, as_of: datetime, tz: ZoneInfo, retention_days: int) -> RetentionSummary:
    """De-identify every business date before the cutoff, one transaction per date, then old replies."""
    cut = cutoff_date(as_of, tz, retention_days)
    total = RetentionSummary(cutoff=cut)
    with engine.connect() as conn:
        days = sorted({_as_date(r[0]) for r in conn.execute(text(_PENDING_DAYS), {"cut": cut, "marker": _MARKER_LIKE})})
    for day in days:
        with engine.begin() as conn:
            got = deidentify_day(conn, day)
        total.days += 1
        total.dates.append(day.isoformat())
        total.records += got.records
        total.followups += got.followups
        total.quarantined += got.quarantined
        total.notes += got.notes
    with engine.begin() as conn:
        total.replies = deidentify_replies(conn, start_of_day(cut, tz))
    return total


def _as_date(value: object) -> date:
    return date.fromisoformat(value) if isinstance(value, str) else value  # type: ignore[return-value]
