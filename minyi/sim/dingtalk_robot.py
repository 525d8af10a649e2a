"""A local DingTalk (钉钉) custom group robot on loopback, speaking the webhook protocol minyi uses (tests, demo).

`POST /robot/send?access_token=TOKEN[&timestamp=MS&sign=SIGN]` with a JSON body
`{"msgtype": "markdown", "markdown": {"title": …, "text": …}}` (or `text`: `{"content": …}`).

A robot created with a secret ("加签") checks the signature: `sign` must be
base64(HMAC-SHA256(secret, "{timestamp}\\n{secret}")) and `timestamp` (ms) within
an hour of its clock. Every answer is HTTP 200 with `{"errcode": N, "errmsg": "…"}`:
300001 unknown token, 310000 bad signature or timestamp, 40035 missing field,
40008 bad msgtype, 130101 more than 20 messages a minute on one robot. Faults are
scripted (the next N calls answer an errcode) or the server is `down`.
`clock` (seconds, for the rate) is injectable; the signature is checked against the real clock.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlparse

from minyi.sim.http import LoopbackServer, QuietHandler

PER_MINUTE = 20
MAX_SKEW_MS = 3_600_000


@dataclass
class DingtalkMessage:
    token: str
    msgtype: str
    title: str
    text: str


@dataclass
class DingtalkState:
    secrets: dict[str, str | None] = field(default_factory=dict)  # token → secret (None: unsigned robot)
    clock: Callable[[], float] = time.monotonic
    messages: list[DingtalkMessage] = field(default_factory=list)
    calls: int = 0
    refused: list[int] = field(default_factory=list)
    faults: deque[int] = field(default_factory=deque)
    sent_at: dict[str, deque[float]] = field(default_factory=dict)
    down: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


def expected_sign(secret: str, timestamp: str) -> str:
    digest = hmac.new(secret.encode("utf-8"), f"{timestamp}\n{secret}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def _error(code: int, msg: str) -> dict[str, Any]:
    return {"errcode": code, "errmsg": msg}


class _Handler(QuietHandler):
    app: DingtalkRobotServer

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
        if parsed.path != "/robot/send":
            self.send_body(404, b"not found", "text/plain")
            return
        answer = self._answer({k: v[-1] for k, v in parse_qs(parsed.query).items()}, body)
        with state.lock:
            if answer["errcode"]:
                state.refused.append(answer["errcode"])
        self.send_body(200, json.dumps(answer, ensure_ascii=False).encode("utf-8"))

    def _answer(self, query: dict[str, str], body: bytes) -> dict[str, Any]:
        state = self.app.state
        token = query.get("access_token", "")
        if token not in state.secrets:
            return _error(300001, "token is not exist")
        secret = state.secrets[token]
        if secret is not None:
            ts, sign = query.get("timestamp", ""), query.get("sign", "")
            if not ts.isdigit() or abs(int(time.time() * 1000) - int(ts)) > MAX_SKEW_MS:
                return _error(310000, "timestamp is invalid or more than an hour away")
            if not hmac.compare_digest(sign, expected_sign(secret, ts)):
                return _error(310000, "sign not match")
        try:
            doc = json.loads(body)
            msgtype = doc["msgtype"]
        except (ValueError, KeyError, TypeError):
            return _error(40035, "missing parameter json")
        if msgtype == "markdown":
            part = doc.get("markdown") or {}
            title, text = part.get("title"), part.get("text")
            if not isinstance(title, str) or not title or not isinstance(text, str) or not text:
                return _error(40035, "markdown.title and markdown.text required")
        elif msgtype == "text":
            title, text = "", (doc.get("text") or {}).get("content")
            if not isinstance(text, str) or not text:
                return _error(40035, "text.content required")
        else:
            return _error(40008, f"invalid message type {msgtype}")
        with state.lock:
            if state.faults:
                code = state.faults.popleft()
                return _error(code, "send too fast, exceed 20 times per minute" if code == 130101 else "scripted")
            now = state.clock()
            window = state.sent_at.setdefault(token, deque())
            while window and window[0] <= now - 60:
                window.popleft()
            if len(window) >= PER_MINUTE:
                return _error(130101, "send too fast, exceed 20 times per minute")
            window.append(now)
            state.messages.append(DingtalkMessage(token=token, msgtype=msgtype, title=title, text=text))
        return _error(0, "ok")


class DingtalkRobotServer(LoopbackServer):
    """`webhook(token, secret)` creates a robot and gives its URL; `received(token)` is what that group saw."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, port: int = 0) -> None:
        self.state = DingtalkState(clock=clock)
        super().__init__(_Handler, port=port)

    def webhook(self, token: str, secret: str | None = None) -> str:
        with self.state.lock:
            self.state.secrets[token] = secret
        return f"{self.url}/robot/send?access_token={token}"

    def fail_next(self, errcode: int = 130101, times: int = 1) -> None:
        with self.state.lock:
            self.state.faults.extend([errcode] * times)

    def set_down(self, down: bool = True) -> None:
        with self.state.lock:
            self.state.down = down

    @property
    def messages(self) -> list[DingtalkMessage]:
        with self.state.lock:
            return list(self.state.messages)

    def received(self, token: str) -> list[DingtalkMessage]:
        return [m for m in self.messages if m.token == token]
