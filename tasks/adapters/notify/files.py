"""Markdown files (SPEC §13, `delivery = "files"`): every post under `MINYI_REPORTS_DIR/outbox/`.

Each (local date, channel) is one file, `outbox/{date}/{channel}.md`, rebuilt
from the outbox on every delivery, so a re-run rewrites, never appends. Used only
when the config says `files` (the demo): never a fallback for a real channel.
Channels are the `[slack]` section's names (labels only: nothing is sent).
Upstream `<`, `>`, `[`, `]`, `&` are backslash-escaped (CommonMark), so a record
cannot forge a link or an HTML tag in a markdown viewer.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlalchemy.engine import Connection

from minyi.tasks.adapters.notify.base import NotifierBase, Post
from minyi.tasks.config import MinyiConfig
from minyi.tasks.rules.masking import mask_text


def write_atomic(path: Path, data: bytes | str) -> None:
    """Write a whole file or nothing: a temp file in the same directory, then rename over the target."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


_MD_ESCAPES = str.maketrans({c: "\\" + c for c in "<>[]&"})


def escape_markdown(text: str) -> str:
    return text.translate(_MD_ESCAPES)


def _safe_channel(channel: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in channel) or "_"


@dataclass
class FileNotifier(NotifierBase):
    """Each (local date, channel) becomes one markdown file, rebuilt from the outbox at the end of the pass."""

    name: ClassVar[str] = "files"
    reports_dir: Path = Path("reports")
    tz: ZoneInfo = field(default_factory=lambda: ZoneInfo("Asia/Shanghai"))
    touched: set[tuple[date, str]] = field(default_factory=set)

    @classmethod
    def from_config(cls, cfg: MinyiConfig, reports_dir: Path) -> FileNotifier:
        return cls(reports_dir=reports_dir, tz=cfg.tz)

    def path_for(self, day: date, channel: str) -> Path:
        return self.reports_dir / "outbox" / day.isoformat() / f"{_safe_channel(channel)}.md"

    def post(self, post: Post) -> str:
        day = post.created_at.astimezone(self.tz).date()
        self.touched.add((day, post.channel))
        return f"file:{day.isoformat()}/{_safe_channel(post.channel)}.md#{post.id}"

    def finish(self, conn: Connection) -> None:
        for day, channel in sorted(self.touched):
            write_atomic(self.path_for(day, channel), render_channel_file(conn, day, channel, self))
        self.touched.clear()


def render_channel_file(conn: Connection, day: date, channel: str, notifier: FileNotifier) -> str:
    """Every file-delivered post of a channel and day, in order; replies indented under their parent."""
    rows = conn.execute(
        text(
            "SELECT id, key, kind, title, text, attachment, parent_key, created_at FROM notifications "
            "WHERE channel = :c AND status = 'sent' AND remote_id LIKE :prefix ORDER BY id"
        ),
        {"c": channel, "prefix": f"file:{day.isoformat()}/%"},
    ).all()
    replies: dict[str, list[Any]] = {}
    for r in rows:
        if r.parent_key:
            replies.setdefault(r.parent_key, []).append(r)
    lines = [
        f"# {channel} — {day.isoformat()}",
        "",
        "_投递方式为文件（delivery = files）：以下为应发送到该频道的消息。_",
        "",
    ]
    keys = {r.key for r in rows}
    for r in rows:
        if r.parent_key and r.parent_key in keys:
            continue
        lines += _md_post(r, notifier, day, indent="")
        for reply in replies.get(r.key, []):
            lines += _md_post(reply, notifier, day, indent="> ")
    return "\n".join(lines).rstrip() + "\n"


def _md_post(row: Any, notifier: FileNotifier, day: date, indent: str) -> list[str]:
    out = [f"{indent}**[{row.kind}]** `{row.key}`", indent.rstrip()]
    if row.title:
        out += [f"{indent}**{escape_markdown(mask_text(row.title))}**", indent.rstrip()]
    out += [f"{indent}{line}" for line in escape_markdown(mask_text(row.text)).splitlines()]
    if row.attachment:
        target = Path(row.attachment)
        try:
            rel = os.path.relpath(target, notifier.path_for(day, "x").parent)
        except ValueError:
            rel = str(target)
        out += [indent.rstrip(), f"{indent}![{target.name}]({rel})"]
    return [*out, ""]
