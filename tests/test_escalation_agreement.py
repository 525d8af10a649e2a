"""The SQL that production runs agrees with the pure rules it restates for speed, on random orders on both databases.

The SQL sweep (tasks/stages/escalation.py) fires exactly what the pure rule (clocks.escalations_due) says;
the KPI SQL (tasks/stages/kpis.py) counts on time exactly what clocks.is_on_time says.

Random orders — clock periods after reassignments or reopens, levels already fired in the current
and in earlier periods, pending_calendar clocks, stages done before or after as_of — on SQLite and
PostgreSQL: for each, the levels the sweep inserts equal `escalations_due` with the order's
`clock_start` and the levels fired in its current period.
"""

from __future__ import annotations

from datetime import date, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from minyi.tasks.config import load_config
from minyi.tasks.rules.calendar import load_calendar
from minyi.tasks.rules.clocks import ESCALATIONS, due_instant, escalations_due, is_on_time
from minyi.tasks.stages.escalation import run_escalations
from minyi.tasks.stages.kpis import Period, unit_counts
from minyi.tasks.store.engine import instant_param
from tests.supervision_support import add_answer, prepare_units
from tests.support import TZ, Env, at, config_toml

BASE = at("2026-11-09 08:00")
CAL = load_calendar(None)
ORDERS = 5

_order = st.fixed_dictionaries(
    {
        "opened_h": st.integers(0, 24 * 10),
        "period": st.integers(1, 3),
        "restart_h": st.integers(0, 24 * 5),
        "pending": st.booleans(),
        "responded_h": st.none() | st.integers(0, 24 * 20),
        "closed_h": st.none() | st.integers(0, 24 * 20),
        "fired_now": st.sets(st.sampled_from(ESCALATIONS)),
        "fired_before": st.sets(st.sampled_from(ESCALATIONS)),
    }
)


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(orders=st.lists(_order, min_size=ORDERS, max_size=ORDERS), as_of_h=st.integers(0, 24 * 25))
def test_the_sql_sweep_fires_the_levels_the_pure_rule_says(env: Env, orders: list[dict], as_of_h: int) -> None:
    if not env.scalar("SELECT COUNT(*) FROM followups"):
        env.write_config(config_toml())
        prepare_units(env.engine)
        for i in range(ORDERS):
            add_answer(env.engine, BASE, record_id=f"agree-{i}")
    cfg = load_config()
    d = env.backend
    as_of = BASE + timedelta(hours=as_of_h)
    expected: set[tuple[int, str]] = set()
    with env.engine.begin() as conn:
        for table in ("notifications", "escalations", "orders"):
            conn.execute(text(f"DELETE FROM {table}"))
        fids = [r[0] for r in conn.execute(text("SELECT id FROM followups ORDER BY id"))]
        for fid, o in zip(fids, orders, strict=True):
            opened = BASE + timedelta(hours=o["opened_h"])
            start = opened + timedelta(hours=o["restart_h"]) if o["period"] > 1 else opened
            response = None if o["pending"] else due_instant(start, 3, CAL, "working", TZ)
            completion = due_instant(start, 5, CAL, "working", TZ)
            responded = None if o["responded_h"] is None else start + timedelta(hours=o["responded_h"])
            closed = None if o["closed_h"] is None else start + timedelta(hours=o["closed_h"])
            oid = conn.execute(
                text(
                    "INSERT INTO orders (followup_id, source, record_id, unit_code, opened_at, status, response_due, "
                    "completion_due, responded_at, closed_at, clock_start, period, created_at, updated_at) "
                    "VALUES (:f, 'p', :r, 'QD-SN-PS01', :opened, 'open', :rd, :cd, :ra, :ca, :cs, :period, :t, :t) "
                    "RETURNING id"
                ),
                {
                    "f": fid,
                    "r": f"agree-{fid}",
                    "opened": instant_param(d, opened),
                    "rd": instant_param(d, response),
                    "cd": instant_param(d, completion),
                    "ra": instant_param(d, responded),
                    "ca": instant_param(d, closed),
                    "cs": instant_param(d, start) if o["period"] > 1 else None,
                    "period": o["period"],
                    "t": instant_param(d, BASE),
                },
            ).scalar_one()
            pre = [(o["period"], lv) for lv in o["fired_now"]]
            pre += [(o["period"] - 1, lv) for lv in o["fired_before"] if o["period"] > 1]
            for period, level in pre:
                conn.execute(
                    text(
                        "INSERT INTO escalations (order_id, level, due, fired_at, sweep_id, period, unit_code) "
                        "VALUES (:o, :l, :t, :t, 'pre', :p, 'QD-SN-PS01')"
                    ),
                    {"o": oid, "l": level, "t": instant_param(d, BASE), "p": period},
                )
            for level in escalations_due(
                opened_at=start,
                response_due=response,
                completion_due=completion,
                responded_at=responded,
                closed_at=closed,
                fired=o["fired_now"],
                as_of=as_of,
                tz=TZ,
            ):
                expected.add((oid, level))
    with env.engine.begin() as conn:
        run_escalations(conn, cfg, as_of)
    fired = {(r[0], r[1]) for r in env.rows("SELECT order_id, level FROM escalations WHERE sweep_id <> 'pre'")}
    assert fired == expected
    # No level twice for one order and period, whatever was fired before.
    assert not env.rows(
        "SELECT order_id, period, level FROM escalations GROUP BY order_id, period, level HAVING COUNT(*) > 1"
    )


# Offsets of a stage from its due instant: either side of the boundary, at it, and far away.
_OFFSETS = st.sampled_from(
    [timedelta(0), timedelta(microseconds=1), -timedelta(microseconds=1), timedelta(seconds=1), -timedelta(seconds=1)]
) | st.integers(-24 * 3600 * 9, 24 * 3600 * 9).map(lambda s: timedelta(seconds=s))
_timed = st.fixed_dictionaries(
    {
        "opened_h": st.integers(0, 24 * 10),
        "pending": st.booleans(),
        "responded": st.none() | _OFFSETS,
        "closed": st.none() | _OFFSETS,
    }
)


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(orders=st.lists(_timed, min_size=ORDERS, max_size=ORDERS))
def test_the_kpi_sql_counts_on_time_exactly_as_is_on_time_says(env: Env, orders: list[dict]) -> None:
    """responded_on_time and completed_on_time (tasks/stages/kpis.py BRANCHES) against clocks.is_on_time:
    a stage a microsecond before its due instant is on time, at it or after it is late, and nothing is on
    time against a pending (unknown) due instant."""
    if not env.scalar("SELECT COUNT(*) FROM followups"):
        env.write_config(config_toml())
        prepare_units(env.engine)
        for i in range(ORDERS):
            add_answer(env.engine, BASE, record_id=f"on-time-{i}")
    d = env.backend
    as_of = BASE + timedelta(days=60)
    expected = {"responded_on_time": 0, "completed_on_time": 0}
    with env.engine.begin() as conn:
        for table in ("notifications", "escalations", "order_events", "orders"):
            conn.execute(text(f"DELETE FROM {table}"))
        fids = [r[0] for r in conn.execute(text("SELECT id FROM followups ORDER BY id"))]
        for fid, o in zip(fids, orders, strict=True):
            opened = BASE + timedelta(hours=o["opened_h"])
            response = None if o["pending"] else due_instant(opened, 3, CAL, "working", TZ)
            completion = due_instant(opened, 5, CAL, "working", TZ)
            # a stage is timed against its own due instant, or against the opening when that is unknown
            responded = None if o["responded"] is None else (response or opened) + o["responded"]
            closed = None if o["closed"] is None else completion + o["closed"]
            expected["responded_on_time"] += responded is not None and is_on_time(responded, response)
            expected["completed_on_time"] += closed is not None and is_on_time(closed, completion)
            conn.execute(
                text(
                    "INSERT INTO orders (followup_id, source, record_id, unit_code, opened_at, status, response_due, "
                    "completion_due, responded_at, closed_at, resolution, period, created_at, updated_at) "
                    "VALUES (:f, 'p', :r, 'QD-SN-PS01', :opened, :status, :rd, :cd, :ra, :ca, :res, 1, :t, :t)"
                ),
                {
                    "f": fid,
                    "r": f"on-time-{fid}",
                    "opened": instant_param(d, opened),
                    "status": "closed" if closed else "open",
                    "rd": instant_param(d, response),
                    "cd": instant_param(d, completion),
                    "ra": instant_param(d, responded),
                    "ca": instant_param(d, closed),
                    "res": "resolved" if closed else None,
                    "t": instant_param(d, BASE),
                },
            )
    with env.engine.connect() as conn:
        counts = unit_counts(conn, Period(date(2026, 1, 1), date(2026, 1, 1)), as_of)
    got = counts.get("QD-SN-PS01", {})
    assert {k: got.get(k, 0) for k in expected} == expected
