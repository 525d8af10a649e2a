"""WeCom (企业微信) group robots (SPEC §13): one webhook per channel, markdown posts, the chart as an image.

- A channel is the NAME of an environment variable holding the group's webhook URL
  (`…/cgi-bin/webhook/send?key=…`: the key is the secret).
- `msgtype = markdown`, `content` ≤ 4,096 UTF-8 bytes: a longer post is split at
  line ends into several messages, in order.
- The chart goes as `msgtype = image` (`base64` of the PNG and the `md5` of its bytes,
  at most 2 MB before encoding), after its caption; a larger chart is replaced by a
  line naming the report file.
- An answer with `errcode` ≠ 0 is a failure; 45009 (frequency limit) is a rate
  limit: the post stays pending and is retried after a back-off. The engine keeps
  to 20 requests a minute per webhook.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any, ClassVar

from minyi.tasks.adapters.notify.base import Post, RobotNotifier, split_utf8, webhooks_of
from minyi.tasks.config import MinyiConfig

MAX_IMAGE_BYTES = 2 * 1024 * 1024


class WecomNotifier(RobotNotifier):
    name: ClassVar[str] = "wecom"
    markdown_limit: ClassVar[int] = 4096
    rate_limited_codes: ClassVar[frozenset[int]] = frozenset({45009})

    @classmethod
    def from_config(cls, cfg: MinyiConfig, reports_dir: Path) -> WecomNotifier:
        return cls(webhooks_of(cfg, "wecom"), reports_dir, cfg.wecom.timeout_seconds)

    def requests_for(self, post: Post) -> list[dict[str, Any]]:
        text = self.markdown_of(post)
        image: bytes | None = None
        if post.image:
            path = Path(post.image)
            data = path.read_bytes() if path.is_file() else b""
            if data and len(data) <= MAX_IMAGE_BYTES:
                image = data
            else:
                text += "\n" + self.image_note(post)
        out: list[dict[str, Any]] = [
            {"msgtype": "markdown", "markdown": {"content": part}} for part in split_utf8(text, self.markdown_limit)
        ]
        if image is not None:
            out.append(
                {
                    "msgtype": "image",
                    "image": {"base64": base64.b64encode(image).decode("ascii"), "md5": hashlib.md5(image).hexdigest()},
                }
            )
        return out
