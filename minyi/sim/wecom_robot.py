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
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlparse

from minyi.sim.http import LoopbackServer, QuietHandler

MARKDOWN_BYTES = 4096
TEXT_BYTES = 2048
IMAGE_BYTES = 2 * 1024 * 1024
PER_MINUTE = 20


@dataclass
class WecomMessage:
    """One message as the group saw it."""

    key: str
    msgtype: str
    content: str = ""
    image: bytes | None = None


@dataclass
class WecomState:
    keys: set[str]
    clock: Callable[[], float] = time.monotonic
    messages: list[WecomMessage] = field(default_factory=list)
    calls: int = 0
    refused: list[int] = field(default_factory=list)  # errcodes answered, in order
    faults: deque[int] = field(default_factory=deque)
    sent_at: dict[str, deque[float]] = field(default_factory=dict)
    down: bool = False
    huge: int = 0  # the next N answers are over 16 MiB (a broken proxy, a hostile peer)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _error(code: int, msg: str) -> dict[str, Any]:
    return {"errcode": code, "errmsg": msg}


class _Handler(QuietHandler):
    app: WecomRobotServer

    def do_POST(self) -> None:
        state = self.app.state
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        parsed = urlparse(self.path)
        with state.lock:
            state.calls += 1
            if state.down:
                self.close_connection = True
                self.connection.close()
                return
        if parsed.path != "/cgi-bin/webhook/send":
            self.send_body(404, b"not found", "text/plain")
            return
        answer = self._answer(parse_qs(parsed.query).get("key", [""])[-1], body)
        with state.lock:
            if answer["errcode"]:
                state.refused.append(answer["errcode"])
            huge, state.huge = state.huge > 0, max(state.huge - 1, 0)
        if huge:
            answer = {**answer, "padding": "x" * (16 * 1024 * 1024 + 1)}
        self.send_body(200, json.dumps(answer, ensure_ascii=False).encode("utf-8"))

    def _answer(self, key: str, body: bytes) -> dict[str, Any]:
        state = self.app.state
        if key not in state.keys:
            return _error(93000, "invalid webhook url")
        try:
            doc = json.loads(body)
            msgtype = doc["msgtype"]
        except (ValueError, KeyError, TypeError):
            return _error(40058, "invalid json or missing msgtype")
        with state.lock:
            if state.faults:
                code = state.faults.popleft()
                return _error(code, "api freq out of limit" if code == 45009 else "scripted fault")
            now = state.clock()
            window = state.sent_at.setdefault(key, deque())
            while window and window[0] <= now - 60:
                window.popleft()
            if len(window) >= PER_MINUTE:
                return _error(45009, "api freq out of limit")
        message = self._message(key, msgtype, doc)
        if isinstance(message, dict):
            return message
        with state.lock:
            window.append(now)
            state.messages.append(message)
        return _error(0, "ok")

    def _message(self, key: str, msgtype: str, doc: dict[str, Any]) -> WecomMessage | dict[str, Any]:
        part = doc.get(msgtype)
        if msgtype in ("markdown", "text"):
            content = part.get("content") if isinstance(part, dict) else None
            if not isinstance(content, str) or not content:
                return _error(40058, f"{msgtype}.content missing")
            limit = MARKDOWN_BYTES if msgtype == "markdown" else TEXT_BYTES
            if len(content.encode("utf-8")) > limit:
                return _error(40058, f"{msgtype}.content exceed max length {limit}")
            return WecomMessage(key=key, msgtype=msgtype, content=content)
        if msgtype == "image":
            if not isinstance(part, dict) or not part.get("base64") or not part.get("md5"):
                return _error(40058, "image.base64 and image.md5 required")
            try:
                data = base64.b64decode(part["base64"], validate=True)
            except (binascii.Error, ValueError):
                return _error(40009, "invalid image base64")
            if len(data) > IMAGE_BYTES:
                return _error(40009, "invalid image size")
            if not (data.startswith(b"\x89PNG\r\n\x1a\n") or data.startswith(b"\xff\xd8")):
                return _error(40009, "image must be JPG or PNG")
            if hashlib.md5(data).hexdigest() != str(part["md5"]).lower():
                return _error(301019, "media md5 not match")
            return WecomMessage(key=key, msgtype="image", image=data)
        return _error(40008, f"invalid message type {msgtype}")


class WecomRobotServer(LoopbackServer):
    """`webhook(key)` is the URL to put in a channel's variable; `received(key)` is what that group saw."""

    def __init__(self, keys: tuple[str, ...] = (), clock: Callable[[], float] = time.monotonic, port: int = 0) -> None:
        self.state = WecomState(keys=set(keys), clock=clock)
        super().__init__(_Handler, port=port)

    def webhook(self, key: str) -> str:
        with self.state.lock:
            self.state.keys.add(key)
        return f"{self.url}/cgi-bin/webhook/send?key={key}"

    def fail_next(self, errcode: int = 45009, times: int = 1) -> None:
        with self.state.lock:
            self.state.faults.extend([errcode] * times)

    def answer_huge_next(self, times: int = 1) -> None:
        with self.state.lock:
            self.state.huge += times

    def set_down(self, down: bool = True) -> None:
        with self.state.lock:
            self.state.down = down

    @property
    def messages(self) -> list[WecomMessage]:
        with self.state.lock:
            return list(self.state.messages)

    def received(self, key: str, msgtype: str | None = None) -> list[WecomMessage]:
        return [m for m in self.messages if m.key == key and (msgtype is None or m.msgtype == msgtype)]
