"""Early warnings (SPEC §10, 预警 / 未诉先办): trouble found before it becomes a complaint.

After the reports, the daily loop looks for three kinds, each in one set-based
statement over the store:
- `repeat_dissatisfied`: a phone with ≥ 2 dissatisfied answers (latest answer
  per follow-up) among the follow-ups of the 30 business dates ending at business_date;
- `unit_decline`: a unit whose satisfaction over the 7 business dates ending at
  business_date is ≥ 10 percentage points below its rate over the 28 before,
  each window with ≥ 20 responses; at most once in any 7 consecutive business dates;
- `overdue_cluster`: a unit holding ≥ 3 orders overdue on either clock at as_of.

Each warning has an outbox key (tasks/texts.py), so it is posted once to the
centre channel however often the day is re-run; `warnings.json` lists the day's
warnings. Phones appear masked; the key carries the phone's keyed pseudonym.

Decisions SPEC §10 leaves open (docs/reports.md restates them):
- "business dates" are calendar dates of the records' business_date;
- a unit already warned for decline on another date within 6 days (either
  side, so a backfill out of order keeps the rule) is not warned again;
- upheld appeals are not recorded by this version of the store, so no
  dissatisfied answer is excluded yet.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from fractions import Fraction
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, text
from sqlalchemy.engine import Connection

from minyi.tasks import texts
from minyi.tasks.rules.masking import mask_phone, phone_hmac
from minyi.tasks.store.engine import instant_param
from minyi.tasks.store.outbox import Message

KINDS = ("repeat_dissatisfied", "unit_decline", "overdue_cluster")
REPEAT_DAYS = 30
RECENT_DAYS = 7
BASELINE_DAYS = 28
MIN_REPEATS = 2
MIN_WINDOW_RESPONSES = 20
DECLINE = Fraction(10, 100)  # 10 percentage points
MIN_CLUSTER = 3


# ---------------------------------------------------------------------------------------------- pure


@dataclass(frozen=True)
class Windows:
    """The calendar windows of SPEC §10 for one business date (both ends included)."""

    repeat_start: date
    recent_start: date
    baseline_start: date
    baseline_end: date
    end: date

    @classmethod
    def ending(cls, business_date: date) -> Windows:
        recent_start = business_date - timedelta(days=RECENT_DAYS - 1)
        return cls(
            repeat_start=business_date - timedelta(days=REPEAT_DAYS - 1),
            recent_start=recent_start,
            baseline_start=recent_start - timedelta(days=BASELINE_DAYS),
            baseline_end=recent_start - timedelta(days=1),
            end=business_date,
        )


def declined(recent_ok: int, recent_n: int, baseline_ok: int, baseline_n: int) -> bool:
    """The unit_decline rule: both windows with ≥ 20 responses, recent ≥ 10 points below baseline (exactly)."""
    if recent_n < MIN_WINDOW_RESPONSES or baseline_n < MIN_WINDOW_RESPONSES:
        return False
    return Fraction(recent_ok, recent_n) <= Fraction(baseline_ok, baseline_n) - DECLINE


# An answer behind an upheld appeal (closed(excluded), SPEC §5) is not counted by any warning.
_NOT_EXCLUDED = "NOT EXISTS (SELECT 1 FROM orders xo WHERE xo.followup_id = {f}.id AND xo.resolution = 'excluded')"


def fmt_rate(value: float) -> str:
    from minyi.tasks.stages.reports import fmt_rate as down

    return down(value)


# ---------------------------------------------------------------------------------------------- SQL

# The windows' scans go through the follow-ups (their business_date index), each joined to its record by
# rowid: a follow-up's business_date is its record's (copied when it is planned, and a record keeps the date it
# was first pulled for, tasks/store/records.py), so the f.business_date conditions select the same rows as the
# r.business_date ones, which stay. Driven from the records instead, each of the window's records looked its
# follow-up up in the record_pk index: twice the work on SQLite at 1M (CROSS JOIN keeps SQLite's join order;
# PostgreSQL plans it as any join).
_REPEAT_SQL = """
SELECT f.phone_norm, r.source, r.record_id, r.business_date, r.unit_code
FROM followups f JOIN records r ON r.id = f.record_pk
WHERE f.satisfaction = 'dissatisfied' AND f.phone_norm IS NOT NULL AND {nx_f}
  AND r.business_date >= :start AND r.business_date <= :end
  AND f.phone_norm IN (
      SELECT f2.phone_norm FROM followups f2 CROSS JOIN records r2
      WHERE r2.id = f2.record_pk AND f2.satisfaction = 'dissatisfied' AND f2.phone_norm IS NOT NULL AND {nx_f2}
        AND r2.business_date >= :start AND r2.business_date <= :end
        AND f2.business_date >= :start AND f2.business_date <= :end
      GROUP BY f2.phone_norm HAVING COUNT(*) >= :min_repeats)
ORDER BY f.phone_norm, r.business_date, r.handled_at, r.source, r.record_id
""".format(nx_f=_NOT_EXCLUDED.format(f="f"), nx_f2=_NOT_EXCLUDED.format(f="f2"))

_DECLINE_SQL = """
SELECT r.unit_code,
       SUM(CASE WHEN r.business_date >= :recent_start THEN 1 ELSE 0 END) AS recent_n,
       SUM(CASE WHEN r.business_date >= :recent_start AND f.satisfaction <> 'dissatisfied' THEN 1 ELSE 0 END)
           AS recent_ok,
       SUM(CASE WHEN r.business_date <= :baseline_end THEN 1 ELSE 0 END) AS baseline_n,
       SUM(CASE WHEN r.business_date <= :baseline_end AND f.satisfaction <> 'dissatisfied' THEN 1 ELSE 0 END)
           AS baseline_ok
FROM followups f CROSS JOIN records r
WHERE r.id = f.record_pk AND r.business_date >= :baseline_start AND r.business_date <= :end
  AND f.business_date >= :baseline_start AND f.business_date <= :end
  AND f.satisfaction IN ('satisfied', 'basically_satisfied', 'dissatisfied') AND {nx_f}
GROUP BY r.unit_code
ORDER BY r.unit_code
""".format(nx_f=_NOT_EXCLUDED.format(f="f"))

# overdue on either clock at as_of, as tasks.reports.order_state says it (NULL dues never compare true)
_CLUSTER_SQL = """
SELECT o.unit_code, o.source, o.record_id FROM orders o
WHERE o.closed_at IS NULL AND ((o.responded_at IS NULL AND o.response_due <= :as_of) OR o.completion_due <= :as_of)
  AND o.unit_code IN (
      SELECT o2.unit_code FROM orders o2
      WHERE o2.closed_at IS NULL
        AND ((o2.responded_at IS NULL AND o2.response_due <= :as_of) OR o2.completion_due <= :as_of)
      GROUP BY o2.unit_code HAVING COUNT(*) >= :min_cluster)
ORDER BY o.unit_code, o.opened_at, o.source, o.record_id
"""

_DECLINE_KEYS_SQL = text("SELECT key FROM notifications WHERE key IN :keys").bindparams(
    bindparam("keys", expanding=True)
)


def repeat_dissatisfied(conn: Connection, business_date: date) -> list[dict[str, Any]]:
    w = Windows.ending(business_date)
    params = {"start": w.repeat_start, "end": w.end, "min_repeats": MIN_REPEATS}
    by_phone: dict[str, list[Any]] = {}
    for phone, source, record_id, day, unit in conn.execute(text(_REPEAT_SQL), params):
        by_phone.setdefault(phone, []).append((source, record_id, day, unit))
    found = []
    for phone, rows in by_phone.items():
        first = rows[0][2]
        first = first if isinstance(first, date) else date.fromisoformat(str(first))
        units = list(dict.fromkeys(unit for *_, unit in rows))
        found.append(
            {
                "kind": "repeat_dissatisfied",
                "key": texts.WARNING_KEYS["repeat_dissatisfied"].format(
                    pseudonym=phone_hmac(phone), first_date=first.isoformat()
                ),
                "phone": mask_phone(phone),
                "records": [f"{s}:{r}" for s, r, _, _ in rows],
                "units": units,
            }
        )
    return sorted(found, key=lambda x: x["key"])


def unit_decline(conn: Connection, business_date: date) -> list[dict[str, Any]]:
    w = Windows.ending(business_date)
    params = {
        "recent_start": w.recent_start,
        "baseline_start": w.baseline_start,
        "baseline_end": w.baseline_end,
        "end": w.end,
    }
    candidates = []
    for unit, recent_n, recent_ok, baseline_n, baseline_ok in conn.execute(text(_DECLINE_SQL), params):
        if declined(int(recent_ok), int(recent_n), int(baseline_ok), int(baseline_n)):
            candidates.append((unit, int(recent_ok), int(recent_n), int(baseline_ok), int(baseline_n)))
    if not candidates:
        return []
    key = texts.WARNING_KEYS["unit_decline"]
    around = [business_date + timedelta(days=d) for d in range(-(RECENT_DAYS - 1), RECENT_DAYS) if d != 0]
    nearby = [key.format(unit_code=c[0], business_date=d.isoformat()) for c in candidates for d in around]
    warned = {k.split(":")[1] for (k,) in conn.execute(_DECLINE_KEYS_SQL, {"keys": nearby})}
    return [
        {
            "kind": "unit_decline",
            "key": key.format(unit_code=unit, business_date=business_date.isoformat()),
            "unit_code": unit,
            "recent_rate": float(Fraction(recent_ok, recent_n)),
            "baseline_rate": float(Fraction(baseline_ok, baseline_n)),
            "recent_responses": recent_n,
            "baseline_responses": baseline_n,
        }
        for unit, recent_ok, recent_n, baseline_ok, baseline_n in candidates
        if unit not in warned
    ]


def overdue_cluster(conn: Connection, business_date: date, as_of: datetime) -> list[dict[str, Any]]:
    params = {"as_of": instant_param(conn.dialect.name, as_of), "min_cluster": MIN_CLUSTER}
    by_unit: dict[str, list[str]] = {}
    for unit, source, record_id in conn.execute(text(_CLUSTER_SQL), params):
        by_unit.setdefault(unit, []).append(f"{source}:{record_id}")
    key = texts.WARNING_KEYS["overdue_cluster"]
    return [
        {
            "kind": "overdue_cluster",
            "key": key.format(unit_code=unit, business_date=business_date.isoformat()),
            "unit_code": unit,
            "orders": orders,
        }
        for unit, orders in sorted(by_unit.items())
    ]


def find_warnings(conn: Connection, business_date: date, as_of: datetime, tz: ZoneInfo) -> dict[str, Any]:
    """warnings.json: the day's warnings, every kind, in KINDS order."""
    found = [
        *repeat_dissatisfied(conn, business_date),
        *unit_decline(conn, business_date),
        *overdue_cluster(conn, business_date, as_of),
    ]
    return {"business_date": business_date.isoformat(), "as_of": as_of.astimezone(tz).isoformat(), "warnings": found}


# ---------------------------------------------------------------------------------------------- posts


def _unit(code: str, names: dict[str, str]) -> str:
    name = names.get(code)
    return f"{name}（{code}）" if name else f"{code}（未配置单位）"


def warning_text(w: dict[str, Any], names: dict[str, str]) -> str:
    """The Chinese post of one warning (texts in tasks/texts.py), naming the warning's fields."""
    title = texts.WARNING_TITLES[w["kind"]]
    if w["kind"] == "repeat_dissatisfied":
        return texts.REPEAT_DISSATISFIED_TEXT.format(
            title=title,
            phone=w["phone"],
            n=len(w["records"]),
            records="、".join(r for r in w["records"]),
            units="、".join(_unit(u, names) for u in w["units"]),
        )
    if w["kind"] == "unit_decline":
        points = (Fraction(w["baseline_rate"]) - Fraction(w["recent_rate"])) * 100
        return texts.UNIT_DECLINE_TEXT.format(
            title=title,
            unit=_unit(w["unit_code"], names),
            recent_rate=fmt_rate(w["recent_rate"]),
            recent_responses=w["recent_responses"],
            baseline_rate=fmt_rate(w["baseline_rate"]),
            baseline_responses=w["baseline_responses"],
            points=f"{math.floor(round(points * 10, 6)) / 10:.1f}",  # rounded down, like every rate shown
        )
    return texts.OVERDUE_CLUSTER_TEXT.format(
        title=title,
        unit=_unit(w["unit_code"], names),
        n=len(w["orders"]),
        orders="、".join(o for o in w["orders"]),
    )


def warning_messages(report: dict[str, Any], centre: str, names: dict[str, str]) -> list[Message]:
    """One post per warning to the centre channel, keyed by the warning's key (posted once)."""
    return [
        Message(key=w["key"], kind=f"warning_{w['kind']}", channel=centre, body=warning_text(w, names))
        for w in report["warnings"]
    ]
