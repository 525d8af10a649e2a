"""Enqueue channel messages in the outbox (SPEC §7): the key is the promise of "at most once".

The enqueue API every producer uses (docs/reports.md):

    enqueue(conn, [Message(key, kind, channel, body, title=…, image=…, parent=…)], now)

- `key`: unique; a second enqueue of the same key adds nothing (a re-run posts nothing twice).
- `kind`: what the post is (`escalation`, `quality_alert`, …), for operators and `resend --kind`.
- `channel`: `cfg.center_channel`, `cfg.leadership_channel` or a unit's `channel`, as the
  chosen notifier understands it; never a vendor's own name for it.
- `body`: neutral markdown (`tasks.notify.base`), texts from `tasks.texts`.

Writers call `enqueue` inside the same transaction as the change they report;
delivery (`tasks.notify.engine.deliver`, through whichever notifier the runtime
chose) is a separate step that only reads pending rows.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.engine import Connection

from minyi.tasks.adapters.notify.base import Message
from minyi.tasks.rules.masking import mask_text
from minyi.tasks.store.engine import instant_param

__all__ = ["Message", "enqueue"]

_INSERT = (
    "INSERT INTO notifications (key, kind, channel, title, text, attachment, parent_key, status, attempts, "
    "created_at) VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p}, 'pending', 0, {p}) ON CONFLICT (key) DO NOTHING"
)
_INSERT_BY_STYLE = {
    "qmark": _INSERT.format(p="?"),
    "format": _INSERT.format(p="%s"),
    "pyformat": _INSERT.format(p="%s"),
}


def enqueue(conn: Connection, messages: list[Message], now: datetime) -> int:
    """Insert messages not already in the outbox; returns how many were new. Text is masked here too.

    Why the driver's executemany with tuples: an escalation catch-up enqueues ~2.6
    posts per order (millions in a catch-up), and SQLAlchemy's per-row parameter
    handling for `text()` cost more than the insert itself.
    """
    if not messages:
        return 0
    ts = instant_param(conn.dialect.name, now)
    result = conn.exec_driver_sql(
        _INSERT_BY_STYLE[conn.dialect.paramstyle],
        [
            (
                m.key,
                m.kind,
                m.channel,
                mask_text(m.title) if m.title else None,
                mask_text(m.body),
                m.image,
                m.parent,
                ts,
            )
            for m in messages
        ],
    )
    return max(result.rowcount or 0, 0)
