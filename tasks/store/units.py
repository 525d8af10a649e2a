"""Units under assessment: the configured ones, and unknown codes that records bring in (SPEC §3).

An unknown but present unit_code is kept (the record is real work done by
someone), registered with `known = false` and no channel, so that everything
about it is routed to the centre channel until the config names it.
"""

from __future__ import annotations

from datetime import date

from sqlalchemy import text
from sqlalchemy.engine import Connection

from minyi.tasks.config import MinyiConfig


def sync_units(conn: Connection, cfg: MinyiConfig) -> None:
    """Make the units table match the config; codes only seen in records stay, as unknown."""
    if cfg.units:
        conn.execute(
            text(
                "INSERT INTO units (code, name, parent, channel, known) VALUES (:code, :name, :parent, :channel, :k) "
                "ON CONFLICT (code) DO UPDATE SET name = excluded.name, parent = excluded.parent, "
                "channel = excluded.channel, known = excluded.known"
            ),
            [{"code": u.code, "name": u.name, "parent": u.parent, "channel": u.channel, "k": True} for u in cfg.units],
        )
    codes = sorted(cfg.unit_codes())
    params = {f"c{i}": c for i, c in enumerate(codes)}
    not_in = f"AND code NOT IN ({', '.join(':' + k for k in params)})" if codes else ""
    conn.execute(
        text(f"UPDATE units SET known = :f, channel = '' WHERE known = :t {not_in}"),
        {"f": False, "t": True, **params},
    )


def register_unknown_units(conn: Connection, business_date: date) -> list[tuple[str, int]]:
    """Add unit codes first seen in this day's records; returns (code, records) for every unknown unit of the day.

    One grouped scan of the day's records, not two (an insert of the new codes, then a count joined to units):
    at 1M records 0.6 → 0.41 s, on the loop's critical path between ingest and planning (docs/performance.md,
    session 11). The units table is small: its codes are read whole.
    """
    day = conn.execute(
        text("SELECT unit_code, COUNT(*) FROM records WHERE business_date = :d GROUP BY unit_code ORDER BY unit_code"),
        {"d": business_date},
    ).all()
    known = {code: bool(k) for code, k in conn.execute(text("SELECT code, known FROM units"))}
    new = [{"code": code, "f": False} for code, _ in day if code not in known]
    if new:
        conn.execute(
            text(
                "INSERT INTO units (code, name, parent, channel, known) VALUES (:code, '', '', '', :f) "
                "ON CONFLICT (code) DO NOTHING"
            ),
            new,
        )
    return [(code, n) for code, n in day if not known.get(code, False)]
