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
    """Add unit codes first seen in this day's records; returns (code, records) for every unknown unit of the day."""
    conn.execute(
        text(
            "INSERT INTO units (code, name, parent, channel, known) "
            "SELECT DISTINCT r.unit_code, '', '', '', :f FROM records r "
            "WHERE r.business_date = :d AND NOT EXISTS (SELECT 1 FROM units u WHERE u.code = r.unit_code)"
        ),
        {"d": business_date, "f": False},
    )
    rows = conn.execute(
        text(
            "SELECT r.unit_code, COUNT(*) FROM records r JOIN units u ON u.code = r.unit_code "
            "WHERE r.business_date = :d AND u.known = :f GROUP BY r.unit_code ORDER BY r.unit_code"
        ),
        {"d": business_date, "f": False},
    ).all()
    return [(code, n) for code, n in rows]
