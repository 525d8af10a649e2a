"""Helpers for the supervision tests: dissatisfied citizens written straight into the store.

The follow-up stage builds the real path (records → follow-ups → answers);
these tests only need its result, so they insert the rows with SQL.
"""

from __future__ import annotations

from datetime import date, datetime
from itertools import count

from sqlalchemy import text
from sqlalchemy.engine import Engine

from minyi.tasks.config import load_config
from minyi.tasks.stages.escalation import run_escalations, warn_about_calendar
from minyi.tasks.stages.orders import clock_calendar, open_orders, refresh_dues
from minyi.tasks.store.engine import instant_param
from minyi.tasks.store.units import sync_units

_serial = count(1)


def add_answer(
    engine: Engine,
    answered_at: datetime,
    *,
    value: str = "dissatisfied",
    unit_code: str = "QD-SN-PS01",
    source: str = "police110",
    record_id: str | None = None,
    via: str = "sms",
) -> str:
    """A record with a follow-up and one answer; an existing record_id gets another answer. Returns SOURCE:RECORD_ID."""
    n = next(_serial)
    record_id = record_id or f"110-{answered_at:%Y%m%d}-{n:06d}"
    d = engine.dialect.name
    ts = instant_param(d, answered_at)
    with engine.begin() as conn:
        followup_id = conn.execute(
            text("SELECT id FROM followups WHERE source = :s AND record_id = :r"), {"s": source, "r": record_id}
        ).scalar()
        if followup_id is None:
            conn.execute(
                text(
                    "INSERT INTO units (code, name, parent, channel, known) VALUES (:u, '', '', '', :f) "
                    "ON CONFLICT (code) DO NOTHING"
                ),
                {"u": unit_code, "f": False},
            )
            conn.execute(
                text(
                    "INSERT INTO records (source, record_id, business_date, channel, matter, handled_at, unit_code, "
                    "phone_norm, phone_kind, confidential, ingested_at, updated_at) VALUES (:s, :r, :bd, '110', "
                    "'police_call', :ts, :u, '13800000000', 'mobile', :f, :ts, :ts)"
                ),
                {"s": source, "r": record_id, "bd": date(2026, 1, 1), "ts": ts, "u": unit_code, "f": False},
            )
            record_pk = conn.execute(
                text("SELECT id FROM records WHERE source = :s AND record_id = :r"), {"s": source, "r": record_id}
            ).scalar_one()
            conn.execute(
                text(
                    "INSERT INTO followups (record_pk, source, record_id, business_date, unit_code, phone_norm, plan, "
                    "planned_at) VALUES (:pk, :s, :r, :bd, :u, '13800000000', 'sms', :ts)"
                ),
                {"pk": record_pk, "s": source, "r": record_id, "bd": date(2026, 1, 1), "u": unit_code, "ts": ts},
            )
            followup_id = conn.execute(
                text("SELECT id FROM followups WHERE record_pk = :pk"), {"pk": record_pk}
            ).scalar_one()
        conn.execute(
            text("INSERT INTO answers (followup_id, via, ref, value, answered_at) VALUES (:f, :via, :ref, :v, :ts)"),
            {"f": followup_id, "via": via, "ref": f"{via}-{n}", "v": value, "ts": ts},
        )
    return f"{source}:{record_id}"


def prepare_units(engine: Engine) -> None:
    """The configured units in the store, as ingest leaves them."""
    with engine.begin() as conn:
        sync_units(conn, load_config())


def supervise_at(engine: Engine, as_of: datetime) -> dict[str, int]:
    """What the supervise flow does at `as_of`, without Prefect (the flow test covers the wiring)."""
    cfg = load_config()
    cal = clock_calendar(cfg)
    with engine.begin() as conn:
        open_orders(conn, as_of)
    with engine.begin() as conn:
        _, pending = refresh_dues(conn, cal, cfg.clock.mode, cfg.clock.response_days, cfg.clock.completion_days, cfg.tz)
    with engine.begin() as conn:
        warn_about_calendar(conn, cal, cfg, as_of, pending)
    with engine.begin() as conn:
        return run_escalations(conn, cfg, as_of)
