"""Enqueue channel messages in the outbox (SPEC §7): the key is the promise of "at most once".

Writers call `enqueue` inside the same transaction as the change they report;
delivery (Slack or files) is a separate step that only reads pending rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
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


def enqueue(conn: Connection, messages: list[Message], now: datetime) -> int:
    """Insert messages not already in the outbox; returns how many were new. Text is masked here too."""
    if not messages:
        return 0
    ts = instant_param(conn.dialect.name, now)
    result = conn.execute(
        text(
            "INSERT INTO notifications (key, kind, channel, text, blocks, attachment, thread_of, status, attempts, "
            "created_at) VALUES (:key, :kind, :channel, :text, :blocks, :attachment, :thread_of, 'pending', 0, :now) "
            "ON CONFLICT (key) DO NOTHING"
        ),
        [
            {
                "key": m.key,
                "kind": m.kind,
                "channel": m.channel,
                "text": mask_text(m.text),
                "blocks": mask_text(m.blocks) if m.blocks else None,
                "attachment": m.attachment,
                "thread_of": m.thread_of,
                "now": ts,
            }
            for m in messages
        ],
    )
    return max(result.rowcount or 0, 0)
