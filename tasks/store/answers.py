"""Answers to follow-ups (SMS replies and visits) and what they decide (SPEC §4).

`answers` is the single history: supervision opens orders from its
`dissatisfied` rows; reports read `followups.satisfaction`, kept here as the
latest *recognised* answer by answer time (unrecognised and unreachable are
answers, but not satisfaction answers).
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.engine import Connection

RECOGNISED: tuple[str, ...] = ("satisfied", "basically_satisfied", "dissatisfied")
VISIT_OUTCOMES: tuple[str, ...] = ("satisfied", "basically_satisfied", "dissatisfied", "unreachable")

log = logging.getLogger("minyi.answers")

_RECOGNISED_SQL = "('satisfied', 'basically_satisfied', 'dissatisfied')"


def refresh_satisfaction(conn: Connection, scope: str, params: dict[str, object]) -> int:
    """Recompute satisfaction/answered_at for the follow-ups whose id is in the subquery `scope`."""
    latest = (
        "SELECT a.{col} FROM answers a WHERE a.followup_id = followups.id AND a.value IN "
        f"{_RECOGNISED_SQL} ORDER BY a.answered_at DESC, a.id DESC LIMIT 1"
    )
    result = conn.execute(
        text(
            f"UPDATE followups SET satisfaction = ({latest.format(col='value')}), "
            f"answered_at = ({latest.format(col='answered_at')}) WHERE id IN ({scope})"
        ),
        params,
    )
    return max(result.rowcount or 0, 0)


def open_orders_if_available(conn: Connection, as_of: datetime) -> int | None:
    """Let supervision open orders for new dissatisfied answers, when its stage is installed.

    Called right after answers are stored, so a dissatisfied citizen's order exists
    as soon as the answer does (the daily loop's supervise stage would open it too).
    """
    if importlib.util.find_spec("minyi.tasks.stages.orders") is None:
        return None
    orders = importlib.import_module("minyi.tasks.stages.orders")  # a broken module must fail loudly, not skip orders
    open_orders = getattr(orders, "open_orders", None)
    if open_orders is None:
        return None
    opened = open_orders(conn, as_of)
    return opened if isinstance(opened, int) else None
