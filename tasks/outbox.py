"""Enqueue channel messages in the outbox (SPEC §7): the key is the promise of "at most once".

Writers call `enqueue` inside the same transaction as the change they report;
delivery (Slack or files) is a separate step that only reads pending rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.engine import Connection

from minyi.tasks.masking import mask_text
from minyi.tasks.store import instant_param


@dataclass(frozen=True)
class Message:
    """One post: `key` makes it idempotent; `thread_of` names the key of the post to reply under."""

    key: str
    kind: str
    channel: str
    text: str
    blocks: str | None = None
    attachment: str | None = None
    thread_of: str | None = None


_INSERT = (
    "INSERT INTO notifications (key, kind, channel, text, blocks, attachment, thread_of, status, attempts, "
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
    posts per order (millions at a million orders), and SQLAlchemy's per-row
    parameter handling for `text()` cost more than the insert itself.
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
                mask_text(m.text),
                mask_text(m.blocks) if m.blocks else None,
                m.attachment,
                m.thread_of,
                ts,
            )
            for m in messages
        ],
    )
    return max(result.rowcount or 0, 0)
