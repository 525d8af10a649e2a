"""A local WeCom (企业微信) group robot on loopback, speaking the webhook protocol minyi uses (tests, demo).

`POST /cgi-bin/webhook/send?key=KEY` with a JSON body:
- `{"msgtype": "markdown", "markdown": {"content": …}}`: content at most 4,096 UTF-8 bytes;
- `{"msgtype": "image", "image": {"base64": …, "md5": …}}`: the decoded image at most 2 MB,
  JPG or PNG, its md5 matching;
- `{"msgtype": "text", "text": {"content": …}}`: at most 2,048 bytes.

Every answer is HTTP 200 with `{"errcode": N, "errmsg": "…"}` (0 = ok), as WeCom does:
93000 unknown key, 40008 bad msgtype, 40058 a field too long or missing, 40009 bad image,
301019 md5 mismatch, 45009 more than 20 messages a minute on one key. Faults are scripted:
the next N calls answer a given errcode (e.g. 45009), or the server is `down`.
`clock` is injectable so tests can run a minute of rate limit without waiting it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from minyi.sim.robots import RobotHandler, RobotServer, RobotState, robot_error

MARKDOWN_BYTES = 4096
TEXT_BYTES = 2048
IMAGE_BYTES = 2 * 1024 * 1024
RATE_LIMITED = 45009
__all__ = ["WecomMessage", "WecomRobotServer"]


@dataclass
class WecomMessage:
    """One message as the group saw it."""

    key: str
    msgtype: str
    content: str = ""
    image: bytes | None = None


@dataclass
class WecomState(RobotState[WecomMessage]):
    keys: set[str] = field(default_factory=set)


class _Handler(RobotHandler):
    app: WecomRobotServer
    send_path = "/cgi-bin/webhook/send"

    def answer(self, query: dict[str, str], body: bytes) -> dict[str, Any]:
        state = self.app.state
        key = query.get("key", "")
        if key not in state.keys:
            return robot_error(93000, "invalid webhook url")
        try:
            doc = json.loads(body)
            msgtype = doc["msgtype"]
        except (ValueError, KeyError, TypeError):
            return robot_error(40058, "invalid json or missing msgtype")
        with state.lock:
            if state.faults:
                code = state.faults.popleft()
                return robot_error(code, "api freq out of limit" if code == RATE_LIMITED else "scripted fault")
            if state.over_rate(key):
                return robot_error(RATE_LIMITED, "api freq out of limit")
        message = self._message(key, msgtype, doc)
        if isinstance(message, dict):
            return message
        with state.lock:
            state.accept(key, message)
        return robot_error(0, "ok")

    def _message(self, key: str, msgtype: str, doc: dict[str, Any]) -> WecomMessage | dict[str, Any]:
        part = doc.get(msgtype)
        if msgtype in ("markdown", "text"):
            content = part.get("content") if isinstance(part, dict) else None
            if not isinstance(content, str) or not content:
                return robot_error(40058, f"{msgtype}.content missing")
            limit = MARKDOWN_BYTES if msgtype == "markdown" else TEXT_BYTES
            if len(content.encode("utf-8")) > limit:
                return robot_error(40058, f"{msgtype}.content exceed max length {limit}")
            return WecomMessage(key=key, msgtype=msgtype, content=content)
        if msgtype == "image":
            if not isinstance(part, dict) or not part.get("base64") or not part.get("md5"):
                return robot_error(40058, "image.base64 and image.md5 required")
            try:
                data = base64.b64decode(part["base64"], validate=True)
            except (binascii.Error, ValueError):
                return robot_error(40009, "invalid image base64")
            if len(data) > IMAGE_BYTES:
                return robot_error(40009, "invalid image size")
            if not (data.startswith(b"\x89PNG\r\n\x1a\n") or data.startswith(b"\xff\xd8")):
                return robot_error(40009, "image must be JPG or PNG")
            if hashlib.md5(data).hexdigest() != str(part["md5"]).lower():
                return robot_error(301019, "media md5 not match")
            return WecomMessage(key=key, msgtype="image", image=data)
        return robot_error(40008, f"invalid message type {msgtype}")


class WecomRobotServer(RobotServer[WecomMessage]):
    """`webhook(key)` is the URL to put in a channel's variable; `received(key)` is what that group saw."""

    def __init__(self, keys: tuple[str, ...] = (), clock: Callable[[], float] = time.monotonic, port: int = 0) -> None:
        self.state = WecomState(keys=set(keys), clock=clock)
        super().__init__(_Handler, port=port)

    def webhook(self, key: str) -> str:
        with self.state.lock:
            self.state.keys.add(key)
        return f"{self.url}/cgi-bin/webhook/send?key={key}"

    def fail_next(self, errcode: int = RATE_LIMITED, times: int = 1) -> None:
        super().fail_next(errcode, times)

    def received(self, key: str, msgtype: str | None = None) -> list[WecomMessage]:
        return [m for m in self.messages if m.key == key and (msgtype is None or m.msgtype == msgtype)]
