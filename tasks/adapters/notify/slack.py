"""Slack (SPEC §7): slack-sdk's WebClient, Block Kit rendered from the neutral message, charts via files_upload_v2.

- `base_url` from `[slack] api_url` (empty: Slack's own); the rate-limit (honours
  Retry-After), server-error and connection-error retry handlers of slack-sdk.
- Block Kit: the title as a header, the body as mrkdwn sections; the plain text as fallback.
- Escaping: `&`, `<`, `>` in every mrkdwn text (Slack's own rule), so no record can
  ping a channel (`<!channel>`) or forge a link.
- The outbox key travels in the message's metadata, so a run that died before
  storing the ts can find its post (`find`, bounded to messages since the claim).
- Every answer is read with a 16 MiB cap (SPEC §14).
"""

from __future__ import annotations

import urllib.request
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar

from minyi.tasks.adapters.bounds import MAX_ANSWER_BYTES
from minyi.tasks.adapters.notify.base import (
    DeliveryError,
    FindError,
    NotifierBase,
    Post,
    escape_slack,
    markdown_bold_to_slack,
)
from minyi.tasks.config import ConfigError, MinyiConfig, SlackConfig, secret_from_env

METADATA_EVENT = "minyi_outbox"
RECONCILE_PAGES = 5  # at most 1,000 messages since the claim are searched; beyond that the post is unconfirmed
SECTION_CHARS = 2900  # Slack allows 3,000 characters per section text


def slack_base_url(api_url: str) -> str | None:
    """WebClient wants a base URL ending in '/'; empty config means Slack's own."""
    if not api_url:
        return None
    return api_url if api_url.endswith("/") else api_url + "/"


def mrkdwn(text: str) -> str:
    return escape_slack(markdown_bold_to_slack(text))


def blocks_of(post: Post) -> list[dict[str, Any]]:
    """Block Kit for a neutral message: header (title), then the body in sections of at most 2,900 characters."""
    blocks: list[dict[str, Any]] = []
    if post.title:
        blocks.append({"type": "header", "text": {"type": "plain_text", "text": post.title[:150], "emoji": True}})
    body = mrkdwn(post.body)
    for i in range(0, len(body), SECTION_CHARS):
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": body[i : i + SECTION_CHARS]}})
    return blocks


def _capped_client_class() -> type:
    from slack_sdk import WebClient
    from slack_sdk.errors import SlackRequestError

    class CappedWebClient(WebClient):
        """WebClient whose answers are read with a 16 MiB cap (the stock client reads any length)."""

        def _perform_urllib_http_request_internal(self, url: str, req: urllib.request.Request) -> dict[str, Any]:
            if not url.lower().startswith("http"):
                raise SlackRequestError(f"Invalid URL detected: {url}")
            resp = urllib.request.urlopen(req, context=self.ssl, timeout=self.timeout)
            with resp:
                declared = resp.headers.get("Content-Length")
                if declared and declared.isdigit() and int(declared) > MAX_ANSWER_BYTES:
                    raise SlackRequestError(f"answer of {declared} bytes is over 16 MiB")
                raw = resp.read(MAX_ANSWER_BYTES + 1)
                if len(raw) > MAX_ANSWER_BYTES:
                    raise SlackRequestError("answer is over 16 MiB")
                charset = resp.headers.get_content_charset() or "utf-8"
                return {"status": resp.code, "headers": resp.headers, "body": raw.decode(charset)}

    return CappedWebClient


class SlackNotifier(NotifierBase):
    """One WebClient for the whole pass."""

    name: ClassVar[str] = "slack"
    per_minute: ClassVar[int | None] = None  # slack-sdk's rate-limit handler honours Slack's Retry-After
    can_find: ClassVar[bool] = True

    def __init__(self, cfg: SlackConfig, token: str) -> None:
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
        self.client = _capped_client_class()(
            **kwargs,
            retry_handlers=[
                # Rate limits wait for Slack's Retry-After (the handler's own rule), not our backoff.
                RateLimitErrorRetryHandler(max_retry_count=cfg.max_retries),
                ServerErrorRetryHandler(max_retry_count=cfg.max_retries, interval_calculator=backoff),
                ConnectionErrorRetryHandler(max_retry_count=cfg.max_retries, interval_calculator=backoff),
            ],
        )

    @classmethod
    def from_config(cls, cfg: MinyiConfig, reports_dir: Path) -> SlackNotifier:
        token = secret_from_env(cfg.slack.token_env)
        if not token:
            raise ConfigError(f"slack.token_env: environment variable {cfg.slack.token_env} is unset or empty")
        return cls(cfg.slack, token)

    def post(self, post: Post) -> str:
        from slack_sdk.errors import SlackApiError, SlackClientError

        text = mrkdwn(post.plain)
        try:
            if post.image:
                path = Path(post.image)
                if not path.is_file():
                    raise DeliveryError(f"attachment missing: {path.name}")
                resp = self.client.files_upload_v2(
                    channel=post.channel,
                    file=str(path),
                    filename=path.name,
                    title=path.stem,
                    initial_comment=text,
                    thread_ts=post.parent_remote_id,
                )
                file = resp.get("file") or {}
                return str(file.get("id") or "")
            resp = self.client.chat_postMessage(
                channel=post.channel,
                text=text,
                blocks=blocks_of(post),
                thread_ts=post.parent_remote_id,
                unfurl_links=False,
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
        """Look for the post among the channel's (or thread's) messages since it was claimed: by outbox key, or
        for a file (which cannot carry metadata) by its title and comment.

        None only after a complete search; FindError when Slack cannot answer (e.g. the token lacks
        `channels:history`) or the search window (1,000 messages) ran out before the claim instant.
        """
        from slack_sdk.errors import SlackApiError, SlackClientError

        title = Path(post.image).stem if post.image else None
        text = mrkdwn(post.plain)
        since = post.claimed_at or post.created_at
        oldest = f"{(since - timedelta(minutes=1)).timestamp():.6f}"
        cursor: str | None = None
        try:
            for _ in range(RECONCILE_PAGES):
                kwargs: dict[str, Any] = {
                    "channel": post.channel,
                    "limit": 200,
                    "include_all_metadata": True,
                    "oldest": oldest,
                }
                if cursor:
                    kwargs["cursor"] = cursor
                if post.parent_remote_id:
                    resp = self.client.conversations_replies(ts=post.parent_remote_id, **kwargs)
                else:
                    resp = self.client.conversations_history(**kwargs)
                for m in resp.get("messages") or []:
                    meta = (m.get("metadata") or {}).get("event_payload") or {}
                    if title is None and meta.get("key") == post.key:
                        return str(m["ts"])
                    for f in m.get("files") or [] if title is not None else []:
                        if f.get("title") == title and (m.get("text") or "") == text:
                            return str(f["id"])
                cursor = ((resp.get("response_metadata") or {}).get("next_cursor")) or None
                if not resp.get("has_more") or not cursor:
                    return None
        except (SlackApiError, SlackClientError, OSError) as exc:
            raise FindError(f"slack: cannot look for {post.key}: {exc}") from None
        raise FindError(f"slack: {post.key} not among the {RECONCILE_PAGES * 200} messages searched")
