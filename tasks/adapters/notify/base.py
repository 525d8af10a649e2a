"""The vendor-neutral notifier interface (SPEC §13).

A producer (report, escalation sweep, quality, ingest, follow-up) composes a
`Message` and enqueues it in the outbox (`tasks.outbox.enqueue`); it never
knows which vendor delivers it. The delivery engine (`tasks.notify.engine`)
turns each pending row into a `Post` and hands it to the one `Notifier` the
runtime chose. A notifier renders the neutral message into its vendor's markup
(Slack Block Kit, WeCom / DingTalk markdown, a markdown file), escaping the
upstream strings in it for that markup, and posts it.

Neutral markdown, what producers may use: plain lines, `**bold**`, `• ` bullets.
No links, no HTML, no mentions: every `<`, `>`, `&`, `[`, `]` in a message comes
from upstream data, so each renderer may escape all of them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Protocol, runtime_checkable


@dataclass(frozen=True)
class Message:
    """One post as a producer composes it; `key` makes it idempotent (a re-run adds nothing).

    - `channel`: a channel as the chosen notifier understands it (`cfg.center_channel`,
      `cfg.leadership_channel`, or a unit's `channel`).
    - `title`: one line (a Slack header, a robot's markdown title); may be empty.
    - `body`: neutral markdown (see the module docstring).
    - `image`: path of a PNG to send with the post (the chart), or None.
    - `parent`: the key of the post this one replies under (a Slack thread; the robots post it after it).
    """

    key: str
    kind: str
    channel: str
    body: str
    title: str = ""
    image: str | None = None
    parent: str | None = None


@dataclass(frozen=True)
class Post:
    """One outbox row as a notifier receives it: masked, with its parent's remote id when it is a reply."""

    id: int
    key: str
    kind: str
    channel: str
    title: str
    body: str
    image: str | None
    parent_remote_id: str | None
    created_at: datetime
    claimed_at: datetime | None = None

    @property
    def plain(self) -> str:
        """Title and body as one text (fallback text, file caption)."""
        return f"{self.title}\n{self.body}" if self.title and self.body else self.title or self.body


class DeliveryError(Exception):
    """One post failed and stays pending.

    - `transport`: the vendor is unreachable or refusing everything: the pass stops (the rest would fail alike).
    - `rate_limited`: the vendor said "too many" (WeCom 45009, DingTalk 130101, Slack 429 after retries):
      the post is retried after a back-off, in this pass if the wait fits, else by the next run.
    """

    def __init__(self, message: str, transport: bool = False, rate_limited: bool = False) -> None:
        super().__init__(message)
        self.transport = transport
        self.rate_limited = rate_limited


class FindError(Exception):
    """A notifier could not tell whether an abandoned post reached the channel (it must not be posted again)."""


@runtime_checkable
class Notifier(Protocol):
    """Where posts go. `post` returns the id the vendor gave the post (Slack ts, file id, a robot's msg id).

    Class attributes the engine reads:
    - `name`: as in `[notify] delivery`;
    - `per_minute`: at most this many posts a minute per channel (None: the vendor paces itself);
    - `can_find`: True when `find` can look a post up (Slack); otherwise an abandoned post is posted again.
    """

    name: ClassVar[str]
    per_minute: ClassVar[int | None]
    can_find: ClassVar[bool]

    def post(self, post: Post) -> str: ...

    def find(self, post: Post) -> str | None:
        """The remote id of this post if the channel already has it; raises FindError when it cannot tell."""
        ...

    def finish(self, conn: Any) -> None:
        """Called once at the end of a delivery pass, in a transaction (the files notifier writes its files)."""
        ...


class NotifierBase:
    """Defaults for the optional parts of the protocol."""

    name: ClassVar[str] = ""
    per_minute: ClassVar[int | None] = None
    can_find: ClassVar[bool] = False

    def find(self, post: Post) -> str | None:
        return None

    def finish(self, conn: Any) -> None:
        return None

    def cost(self, post: Post) -> int:
        """Requests this post takes against the channel's rate (a split or an image takes more than one)."""
        return 1


# `**x**` with no star touching either pair: a masked mobile's `138****5678` is not bold.
_BOLD = re.compile(r"(?<!\*)\*\*(?!\*)([^*\n]+?)(?<!\*)\*\*(?!\*)")


def markdown_bold_to_slack(text: str) -> str:
    """Neutral `**bold**` is Slack mrkdwn's `*bold*`."""
    return _BOLD.sub(r"*\1*", text)


def escape_slack(text: str) -> str:
    """Slack's three control characters (its docs: escape them in every text): no `<!channel>`, no `<url|forged>`."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# The robots' markdown renders HTML-ish tags (WeCom `<font>`, `<@userid>` mentions) and `[text](url)` links, and
# neither robot documents an escape for them; upstream strings are neutralised with full-width look-alikes
# (a record id `<!channel>` reads `＜!channel＞`), which no markdown parser treats as markup.
_ROBOT_ESCAPES = str.maketrans({"<": "＜", ">": "＞", "[": "［", "]": "］", "&": "＆"})


def escape_robot_markdown(text: str) -> str:
    """For WeCom and DingTalk markdown: no tag, mention or link can come out of upstream text."""
    return text.translate(_ROBOT_ESCAPES)


# ---------------------------------------------------------------------------------------------- robots


def split_utf8(text: str, limit: int) -> list[str]:
    """Pieces of at most `limit` UTF-8 bytes, cut at line ends where possible, never inside a character."""
    parts: list[str] = []
    current = ""
    for line in text.split("\n"):
        candidate = f"{current}\n{line}" if current else line
        if len(candidate.encode("utf-8")) <= limit:
            current = candidate
            continue
        if current:
            parts.append(current)
        while len(line.encode("utf-8")) > limit:
            cut = line.encode("utf-8")[:limit].decode("utf-8", errors="ignore")
            parts.append(cut)
            line = line[len(cut) :]
        current = line
    if current or not parts:
        parts.append(current)
    return parts


def webhooks_of(cfg: Any, section: str) -> dict[str, str]:
    """Every channel a robot config names (centre, leadership, each unit) → its webhook URL from the environment.

    A channel is the NAME of an environment variable holding the URL (SPEC §13); an unset
    or empty one, or one that is not an http(s) URL, is a ConfigError naming the key and the variable.
    """
    import os
    import re

    from minyi.tasks.config import ConfigError

    robot = getattr(cfg, section)
    named = [
        (f"{section}.center_channel", robot.center_channel),
        (f"{section}.leadership_channel", robot.leadership_channel),
    ]
    named += [(f"units[{i}].channel", u.channel) for i, u in enumerate(cfg.units)]
    urls: dict[str, str] = {}
    for key, var in named:
        if not var:
            raise ConfigError(f"{key}: required when delivery = {section} (the name of a webhook URL variable)")
        url = os.environ.get(var, "").strip()
        if not url:
            raise ConfigError(f"{key}: environment variable {var} (the webhook URL) is unset or empty")
        if not re.match(r"^https?://[^\s/]+", url):
            raise ConfigError(f"{key}: environment variable {var} is not an http(s) URL")
        urls[var] = url
    return urls


class RobotNotifier(NotifierBase):
    """What WeCom and DingTalk group robots share: a webhook per channel, JSON POSTs, `errcode` answers.

    Subclasses set `name`, `markdown_limit`, `rate_limited_codes`, and build the request bodies.
    Neither robot can look a post up: `can_find` stays False (an abandoned post is posted again, once).
    """

    per_minute: ClassVar[int | None] = 20  # SPEC §13: at most 20 posts a minute per webhook
    markdown_limit: ClassVar[int] = 4096
    rate_limited_codes: ClassVar[frozenset[int]] = frozenset()

    def __init__(self, webhooks: dict[str, str], reports_dir: Any, timeout: float) -> None:
        import httpx

        from minyi.tasks.adapters.tls import tls_context

        self.webhooks = webhooks
        self.reports_dir = reports_dir
        self.client = httpx.Client(timeout=timeout, verify=tls_context())
        self._done: dict[int, int] = {}  # post id → requests already accepted (a retry in this pass resumes)

    def url_for(self, channel: str) -> str:
        url = self.webhooks.get(channel)
        if url is None:
            raise DeliveryError(f"{self.name}: channel {channel!r} is not a configured webhook variable")
        return url

    def signed(self, url: str) -> str:
        return url

    def requests_for(self, post: Post) -> list[dict[str, Any]]:
        raise NotImplementedError

    def markdown_of(self, post: Post) -> str:
        body = escape_robot_markdown(post.body)
        title = escape_robot_markdown(post.title)
        if post.parent_remote_id is not None:
            body = f"（续）{body}"  # no threads: a reply follows its parent in the group
        return f"**{title}**\n{body}" if title and body else (f"**{title}**" if title else body)

    def image_note(self, post: Post) -> str:
        """A line naming the report file of an image the robot does not carry."""
        from pathlib import Path

        path = Path(post.image or "")
        try:
            shown = path.resolve().relative_to(Path(self.reports_dir).resolve()).as_posix()
        except (ValueError, OSError):
            shown = path.name
        return f"图表见报告文件 {escape_robot_markdown(shown)}"

    def cost(self, post: Post) -> int:
        return len(self.requests_for(post)) - self._done.get(post.id, 0)

    def post(self, post: Post) -> str:
        requests = self.requests_for(post)
        done = self._done.get(post.id, 0)
        for i, body in enumerate(requests):
            if i < done:
                continue
            self._send(post.channel, body)
            self._done[post.id] = i + 1
        self._done.pop(post.id, None)
        return f"{self.name}:{post.key}"  # neither robot gives a message id

    def _send(self, channel: str, body: dict[str, Any]) -> None:
        import json

        import httpx

        from minyi.tasks.adapters.bounds import AnswerTooLarge, read_capped

        url = self.signed(self.url_for(channel))
        try:
            with self.client.stream("POST", url, json=body) as resp:
                try:
                    raw = read_capped(resp)  # SPEC §14
                except AnswerTooLarge as exc:
                    raise DeliveryError(f"{self.name}: {exc}") from None
                status = resp.status_code
        except httpx.HTTPError as exc:
            raise DeliveryError(f"{self.name} unreachable: {type(exc).__name__}", transport=True) from None
        if status >= 500:
            raise DeliveryError(f"{self.name} HTTP {status}", transport=True)
        try:
            answer = json.loads(raw or b"{}")
            code = int(answer.get("errcode", -1))
        except (ValueError, TypeError, AttributeError):
            raise DeliveryError(f"{self.name} HTTP {status}: not a JSON answer") from None
        if code in self.rate_limited_codes:
            raise DeliveryError(f"{self.name} errcode {code}: {answer.get('errmsg', '')}"[:200], rate_limited=True)
        if code != 0:
            raise DeliveryError(f"{self.name} errcode {code}: {answer.get('errmsg', '')}"[:200])
