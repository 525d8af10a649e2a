"""DingTalk (钉钉) group robots (SPEC §13): one webhook per channel, signed, markdown with a title.

- A channel is the NAME of an environment variable holding the group's webhook URL
  (`…/robot/send?access_token=…`: the token is the secret).
- Signed webhooks: `[dingtalk] secret_env` names the variable holding the secret;
  each request carries `timestamp` (milliseconds, the real clock: a transport detail,
  not as_of) and `sign` = URL-encoded base64 of HMAC-SHA256(secret, "{timestamp}\\n{secret}").
- `msgtype = markdown` with `title` (the notification preview) and `text`; a post
  longer than 18,000 UTF-8 bytes is split (DingTalk publishes no markdown limit; this
  is minyi's conservative one).
- The chart is not sent (a custom robot cannot upload images): the post carries a
  line naming the report file instead.
- `errcode` ≠ 0 is a failure; 130101 (more than 20 a minute) is a rate limit: the post
  stays pending and is retried after a back-off.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import urllib.parse
from pathlib import Path
from typing import Any, ClassVar

from minyi.tasks.adapters.notify.base import Post, RobotNotifier, escape_robot_markdown, split_utf8, webhooks_of
from minyi.tasks.config import ConfigError, MinyiConfig, secret_from_env


def sign(secret: str, timestamp_ms: int) -> str:
    """DingTalk's signature: base64(HMAC-SHA256 keyed by the secret over "timestamp\\nsecret"), URL-encoded."""
    digest = hmac.new(secret.encode("utf-8"), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256).digest()
    return urllib.parse.quote_plus(base64.b64encode(digest).decode("ascii"))


class DingtalkNotifier(RobotNotifier):
    name: ClassVar[str] = "dingtalk"
    markdown_limit: ClassVar[int] = 18_000
    rate_limited_codes: ClassVar[frozenset[int]] = frozenset({130101})

    def __init__(self, webhooks: dict[str, str], reports_dir: Path, timeout: float, secret: str | None) -> None:
        super().__init__(webhooks, reports_dir, timeout)
        self.secret = secret

    @classmethod
    def from_config(cls, cfg: MinyiConfig, reports_dir: Path) -> DingtalkNotifier:
        secret = None
        if cfg.dingtalk.secret_env:
            secret = secret_from_env(cfg.dingtalk.secret_env)
            if not secret:
                raise ConfigError(
                    f"dingtalk.secret_env: environment variable {cfg.dingtalk.secret_env} is unset or empty"
                )
        return cls(webhooks_of(cfg, "dingtalk"), reports_dir, cfg.dingtalk.timeout_seconds, secret)

    def signed(self, url: str) -> str:
        if not self.secret:
            return url
        ts = int(time.time() * 1000)  # the real clock: DingTalk refuses a timestamp more than an hour off
        return f"{url}{'&' if '?' in url else '?'}timestamp={ts}&sign={sign(self.secret, ts)}"

    def requests_for(self, post: Post) -> list[dict[str, Any]]:
        text = self.markdown_of(post)
        if post.image:
            text += "\n\n" + self.image_note(post)
        title = escape_robot_markdown(post.title or post.body.split("\n", 1)[0])[:60] or post.kind
        return [
            {"msgtype": "markdown", "markdown": {"title": title, "text": part}}
            for part in split_utf8(text, self.markdown_limit)
        ]
