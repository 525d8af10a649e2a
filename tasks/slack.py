"""Delivery of the notifications outbox to Slack, or to markdown files when Slack is off (SPEC §7).

Every channel post is first a row in `notifications` (see `tasks.outbox`); this
module only delivers pending rows. Why an outbox: Slack has no idempotency key,
so "a re-run never posts twice" must be a fact of the store. A row is claimed
(`pending → sending`) by one UPDATE before it is posted, so two concurrent runs
(the daily loop and the hourly sweep) never post the same row; its `ts` is stored
when Slack answers (`sent`); a failure puts it back to `pending` with
`attempts + 1` and `last_error`, and the next run delivers it.

Two posters sit behind one small interface:
- `SlackPoster`: slack-sdk's WebClient with `base_url` from `slack.api_url` and
  the rate-limit (honours Retry-After), server-error and connection-error retry
  handlers; Block Kit with the plain-text fallback; files via `files_upload_v2`.
- `FilePoster` (no token): the same messages as markdown under
  `MINYI_REPORTS_DIR/outbox/{local date}/{channel}.md`, one file per channel and
  day, rebuilt from the outbox on every delivery so a re-run rewrites, never appends.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from minyi.tasks.config import MinyiConfig, SlackConfig, secret_from_env
from minyi.tasks.errors import InputError
from minyi.tasks.masking import mask_text
from minyi.tasks.store import instant_param

# A post that failed this many times is still pending; it is reported, not dropped.
STUCK_AFTER_ATTEMPTS = 5
METADATA_EVENT = "minyi_outbox"
RECONCILE_PAGES = 5  # at most 1,000 of a channel's latest messages are searched for an abandoned post


class DeliveryError(Exception):
    """One post failed. `transport` is true when Slack itself is unreachable or refusing everything."""

    def __init__(self, message: str, transport: bool = False) -> None:
        super().__init__(message)
        self.transport = transport


@dataclass(frozen=True)
class Post:
    """One outbox row as the poster needs it."""

    id: int
    key: str
    kind: str
    channel: str
    text: str
    blocks: list[dict[str, Any]] | None
    attachment: str | None
    thread_ts: str | None
    created_at: datetime


class Poster(Protocol):
    """Where posts go: returns the `ts` (or file id) the channel gave the post."""

    name: str

    def post(self, post: Post) -> str: ...

    def find(self, post: Post) -> str | None:
        """The `ts` (or file id) of this post if the channel already has it (a run died before storing it)."""
        ...

    def finish(self, conn: Connection) -> None: ...


# ---------------------------------------------------------------------------------------------- Slack


def slack_base_url(api_url: str) -> str | None:
    """WebClient wants a base URL ending in '/'; empty config means Slack's own."""
    if not api_url:
        return None
    return api_url if api_url.endswith("/") else api_url + "/"


class SlackPoster:
    """slack-sdk's WebClient, unchanged, with the three built-in retry handlers."""

    name = "slack"

    def __init__(self, cfg: SlackConfig, token: str) -> None:
        from slack_sdk import WebClient
        from slack_sdk.http_retry.builtin_handlers import (
            ConnectionErrorRetryHandler,
            RateLimitErrorRetryHandler,
            ServerErrorRetryHandler,
        )
        from slack_sdk.http_retry.builtin_interval_calculators import BackoffRetryIntervalCalculator

        kwargs: dict[str, Any] = {"token": token, "timeout": cfg.timeout_seconds}
        base = slack_base_url(cfg.api_url)
        if base:
            kwargs["base_url"] = base
        backoff = BackoffRetryIntervalCalculator(backoff_factor=cfg.backoff_seconds)
        self.client = WebClient(
            **kwargs,
            retry_handlers=[
                # Rate limits wait for Slack's Retry-After (the handler's own rule), not our backoff.
                RateLimitErrorRetryHandler(max_retry_count=cfg.max_retries),
                ServerErrorRetryHandler(max_retry_count=cfg.max_retries, interval_calculator=backoff),
                ConnectionErrorRetryHandler(max_retry_count=cfg.max_retries, interval_calculator=backoff),
            ],
        )

    def post(self, post: Post) -> str:
        from slack_sdk.errors import SlackApiError, SlackClientError

        try:
            if post.attachment:
                path = Path(post.attachment)
                if not path.is_file():
                    raise DeliveryError(f"attachment missing: {path.name}")
                resp = self.client.files_upload_v2(
                    channel=post.channel,
                    file=str(path),
                    filename=path.name,
                    title=path.stem,
                    initial_comment=post.text,
                    thread_ts=post.thread_ts,
                )
                file = resp.get("file") or {}
                return str(file.get("id") or "")
            resp = self.client.chat_postMessage(
                channel=post.channel,
                text=post.text,
                blocks=post.blocks,
                thread_ts=post.thread_ts,
                unfurl_links=False,
                # The outbox key travels with the message, so a run that died before storing the ts can find it.
                metadata={"event_type": METADATA_EVENT, "event_payload": {"key": post.key}},
            )
            return str(resp["ts"])
        except SlackApiError as exc:
            status = exc.response.status_code if exc.response is not None else 0
            error = exc.response.get("error") if exc.response is not None else None
            # 429/5xx left after the retry handlers gave up mean Slack is refusing everything right now.
            raise DeliveryError(f"slack {status}: {error or 'error'}", transport=status >= 429) from None
        except SlackClientError as exc:
            raise DeliveryError(f"slack client: {exc}", transport=True) from None
        except OSError as exc:
            raise DeliveryError(f"slack unreachable: {exc}", transport=True) from None

    def find(self, post: Post) -> str | None:
        """Look for the post among the channel's (or thread's) latest messages: by outbox key, or for a file
        (which cannot carry metadata) by its title and comment. Raises DeliveryError when Slack cannot answer."""
        from slack_sdk.errors import SlackApiError, SlackClientError

        title = Path(post.attachment).stem if post.attachment else None
        cursor: str | None = None
        try:
            for _ in range(RECONCILE_PAGES):
                kwargs: dict[str, Any] = {"channel": post.channel, "limit": 200, "include_all_metadata": True}
                if cursor:
                    kwargs["cursor"] = cursor
                if post.thread_ts:
                    resp = self.client.conversations_replies(ts=post.thread_ts, **kwargs)
                else:
                    resp = self.client.conversations_history(**kwargs)
                for m in resp.get("messages") or []:
                    meta = (m.get("metadata") or {}).get("event_payload") or {}
                    if title is None and meta.get("key") == post.key:
                        return str(m["ts"])
                    for f in m.get("files") or [] if title is not None else []:
                        if f.get("title") == title and (m.get("text") or "") == post.text:
                            return str(f["id"])
                cursor = ((resp.get("response_metadata") or {}).get("next_cursor")) or None
                if not resp.get("has_more") or not cursor:
                    return None
        except (SlackApiError, SlackClientError, OSError) as exc:
            raise DeliveryError(f"slack: cannot look for {post.key}: {exc}", transport=True) from None
        return None

    def finish(self, conn: Connection) -> None:
        pass


# ---------------------------------------------------------------------------------------------- files


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


def _safe_channel(channel: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in channel) or "_"


@dataclass
class FilePoster:
    """Slack disabled: each (local date, channel) becomes one markdown file, rebuilt from the outbox."""

    reports_dir: Path
    tz: ZoneInfo
    name: str = "files"
    touched: set[tuple[date, str]] = field(default_factory=set)

    def path_for(self, day: date, channel: str) -> Path:
        return self.reports_dir / "outbox" / day.isoformat() / f"{_safe_channel(channel)}.md"

    def post(self, post: Post) -> str:
        day = post.created_at.astimezone(self.tz).date()
        self.touched.add((day, post.channel))
        return f"file:{day.isoformat()}/{_safe_channel(post.channel)}.md#{post.id}"

    def find(self, post: Post) -> str | None:
        return None  # posting again is harmless: the channel file is rebuilt from the outbox, never appended

    def finish(self, conn: Connection) -> None:
        for day, channel in sorted(self.touched):
            write_atomic(self.path_for(day, channel), render_channel_file(conn, day, channel, self.tz, self))
        self.touched.clear()


def render_channel_file(conn: Connection, day: date, channel: str, tz: ZoneInfo, poster: FilePoster) -> str:
    """Every file-delivered post of a channel and day, in order; thread replies indented under their parent."""
    rows = conn.execute(
        text(
            "SELECT id, key, kind, text, attachment, thread_of, created_at FROM notifications "
            "WHERE channel = :c AND status = 'sent' AND ts LIKE :prefix ORDER BY id"
        ),
        {"c": channel, "prefix": f"file:{day.isoformat()}/%"},
    ).all()
    replies: dict[str, list[Any]] = {}
    for r in rows:
        if r.thread_of:
            replies.setdefault(r.thread_of, []).append(r)
    lines = [f"# {channel} — {day.isoformat()}", "", "_Slack 未配置令牌：以下为应发送到该频道的消息。_", ""]
    keys = {r.key for r in rows}
    for r in rows:
        if r.thread_of and r.thread_of in keys:
            continue
        lines += _md_post(r, poster, day, indent="")
        for reply in replies.get(r.key, []):
            lines += _md_post(reply, poster, day, indent="> ")
    return "\n".join(lines).rstrip() + "\n"


def _md_post(row: Any, poster: FilePoster, day: date, indent: str) -> list[str]:
    out = [f"{indent}**[{row.kind}]** `{row.key}`", indent.rstrip()]
    out += [f"{indent}{line}" for line in mask_text(row.text).splitlines()]
    if row.attachment:
        target = Path(row.attachment)
        try:
            rel = os.path.relpath(target, poster.path_for(day, "x").parent)
        except ValueError:
            rel = str(target)
        out += [indent.rstrip(), f"{indent}![{target.name}]({rel})"]
    return [*out, ""]


# ---------------------------------------------------------------------------------------------- delivery


@dataclass
class DeliverySummary:
    """What one delivery pass did; `pending` is what is left for the next run."""

    poster: str
    sent: int = 0
    failed: int = 0
    waiting: int = 0
    pending: int = 0
    stuck: int = 0
    errors: list[str] = field(default_factory=list)


def make_poster(cfg: MinyiConfig, reports_dir: Path) -> Poster:
    """Slack when the token variable is set, else markdown files under the reports directory."""
    token = secret_from_env(cfg.slack.token_env)
    if token:
        return SlackPoster(cfg.slack, token)
    return FilePoster(reports_dir=reports_dir, tz=cfg.tz)


def _load_pending(conn: Connection, limit: int | None) -> list[Any]:
    sql = (
        "SELECT n.id, n.key, n.kind, n.channel, n.text, n.blocks, n.attachment, n.thread_of, n.created_at, "
        "p.ts AS parent_ts, p.status AS parent_status FROM notifications n "
        "LEFT JOIN notifications p ON p.key = n.thread_of WHERE n.status = 'pending' ORDER BY n.id"
    )
    if limit:
        sql += f" LIMIT {int(limit)}"
    return list(conn.execute(text(sql)).all())


def _as_instant(value: Any) -> datetime:
    from minyi.schemas.types import UtcDateTime

    result = UtcDateTime().process_result_value(value, None)  # type: ignore[arg-type]
    assert result is not None
    return result


def reconcile_abandoned(engine: Engine, poster: Poster, as_of: datetime, claim_timeout: float) -> int:
    """Rows a dead run left `sending` (claimed more than `claim_timeout` seconds ago by the wall clock).

    The run may have died before posting or after Slack took the post but before
    its `ts` was stored. Slack has no idempotency key, so the channel is asked:
    found → `sent` with the channel's ts; not found → `pending`, posted by this pass.
    Returns how many rows were settled. Slack not answering leaves them for the next run.
    """
    from minyi.tasks.days import now as wall_clock

    dialect = engine.dialect.name
    cutoff = instant_param(dialect, wall_clock() - timedelta(seconds=claim_timeout))
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT n.id, n.key, n.kind, n.channel, n.text, n.attachment, n.created_at, p.ts AS parent_ts "
                "FROM notifications n LEFT JOIN notifications p ON p.key = n.thread_of "
                "WHERE n.status = 'sending' AND (n.claimed_at IS NULL OR n.claimed_at <= :cut) ORDER BY n.id"
            ),
            {"cut": cutoff},
        ).all()
    settled = 0
    for row in rows:
        post = Post(
            id=row.id,
            key=row.key,
            kind=row.kind,
            channel=row.channel,
            text=mask_text(row.text),
            blocks=None,
            attachment=row.attachment,
            thread_ts=row.parent_ts,
            created_at=_as_instant(row.created_at),
        )
        try:
            ts = poster.find(post)
        except DeliveryError:
            break
        with engine.begin() as conn:
            if ts:
                conn.execute(
                    text(
                        "UPDATE notifications SET status = 'sent', ts = :ts, sent_at = :now, attempts = attempts + 1, "
                        "last_error = NULL WHERE id = :id AND status = 'sending'"
                    ),
                    {"id": row.id, "ts": ts, "now": instant_param(dialect, as_of)},
                )
            else:
                conn.execute(
                    text("UPDATE notifications SET status = 'pending' WHERE id = :id AND status = 'sending'"),
                    {"id": row.id},
                )
        settled += 1
    return settled


def deliver(
    engine: Engine, poster: Poster, as_of: datetime, limit: int | None = None, claim_timeout: float = 300.0
) -> DeliverySummary:
    """Post every pending outbox row in order; store each `ts`; failures stay pending for the next run.

    A thread reply waits until its parent has a `ts` (normally posted earlier in
    the same pass). When Slack is unreachable or still rate-limiting after the
    retry handlers, the pass stops: the rest would fail the same way. Rows a dead
    run left `sending` are reconciled with the channel first (`reconcile_abandoned`).
    """
    from minyi.tasks.days import now as wall_clock

    summary = DeliverySummary(poster=poster.name)
    reconcile_abandoned(engine, poster, as_of, claim_timeout)
    with engine.connect() as conn:
        rows = _load_pending(conn, limit)
    sent_ts: dict[str, str] = {}
    for row in rows:
        parent_ts = None
        if row.thread_of:
            parent_ts = sent_ts.get(row.thread_of) or (row.parent_ts if row.parent_status == "sent" else None)
            if parent_ts is None:
                summary.waiting += 1
                continue
        with engine.begin() as conn:
            claimed = conn.execute(
                text(
                    "UPDATE notifications SET status = 'sending', claimed_at = :claimed "
                    "WHERE id = :id AND status = 'pending'"
                ),
                {"id": row.id, "claimed": instant_param(conn.dialect.name, wall_clock())},
            ).rowcount
        if not claimed:
            continue  # another run took it
        post = Post(
            id=row.id,
            key=row.key,
            kind=row.kind,
            channel=row.channel,
            text=mask_text(row.text),
            blocks=json.loads(mask_text(row.blocks)) if row.blocks else None,
            attachment=row.attachment,
            thread_ts=parent_ts,
            created_at=_as_instant(row.created_at),
        )
        try:
            ts = poster.post(post)
        except DeliveryError as exc:
            error = mask_text(str(exc))[:500]
            with engine.begin() as conn:
                conn.execute(
                    text(
                        "UPDATE notifications SET status = 'pending', attempts = attempts + 1, last_error = :e "
                        "WHERE id = :id"
                    ),
                    {"id": row.id, "e": error},
                )
            summary.failed += 1
            summary.errors.append(f"{row.key}: {error}")
            if exc.transport:
                break
            continue
        except BaseException:
            with engine.begin() as conn:
                conn.execute(text("UPDATE notifications SET status = 'pending' WHERE id = :id"), {"id": row.id})
            raise
        with engine.begin() as conn:
            conn.execute(
                text(
                    "UPDATE notifications SET status = 'sent', ts = :ts, sent_at = :now, attempts = attempts + 1, "
                    "last_error = NULL WHERE id = :id"
                ),
                {"id": row.id, "ts": ts, "now": instant_param(conn.dialect.name, as_of)},
            )
        sent_ts[row.key] = ts
        summary.sent += 1
    with engine.begin() as conn:
        poster.finish(conn)
        summary.pending = conn.execute(
            text("SELECT COUNT(*) FROM notifications WHERE status IN ('pending', 'sending')")
        ).scalar_one()
        summary.stuck = conn.execute(
            text("SELECT COUNT(*) FROM notifications WHERE status = 'pending' AND attempts >= :n"),
            {"n": STUCK_AFTER_ATTEMPTS},
        ).scalar_one()
    return summary


def select_for_resend(
    conn: Connection,
    keys: Iterable[str] = (),
    kind: str | None = None,
    channel: str | None = None,
    since: datetime | None = None,
) -> list[str]:
    """Keys of the messages an operator chose to post again; at least one filter is required."""
    keys = [k for k in keys if k]
    if not keys and not kind and not channel and since is None:
        raise InputError("resend: name the messages (keys, kind, channel or since); refusing to resend everything")
    clauses, params = ["status IN ('sent', 'sending')"], {}
    if keys:
        names = {f"k{i}": k for i, k in enumerate(keys)}
        clauses.append(f"key IN ({', '.join(':' + n for n in names)})")
        params.update(names)
    if kind:
        clauses.append("kind = :kind")
        params["kind"] = kind
    if channel:
        clauses.append("channel = :channel")
        params["channel"] = channel
    if since is not None:
        clauses.append("created_at >= :since")
        params["since"] = instant_param(conn.dialect.name, since)
    found = [
        r[0]
        for r in conn.execute(text(f"SELECT key FROM notifications WHERE {' AND '.join(clauses)} ORDER BY id"), params)
    ]
    missing = sorted(set(keys) - set(found))
    if missing:
        raise InputError(f"resend: no sent message with key {missing[0]!r}")
    if not found:
        raise InputError("resend: no sent message matches")
    return found


def mark_for_resend(conn: Connection, keys: list[str]) -> int:
    """Put chosen messages back in the queue; the next delivery posts them again (a new ts replaces the old)."""
    names = {f"k{i}": k for i, k in enumerate(keys)}
    if not names:
        return 0
    return conn.execute(
        text(
            "UPDATE notifications SET status = 'pending', last_error = :note "
            f"WHERE key IN ({', '.join(':' + n for n in names)})"
        ),
        {"note": "resend requested", **names},
    ).rowcount
