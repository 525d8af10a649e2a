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
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from minyi.sim.robots import RobotHandler, RobotServer, RobotState, robot_error

MAX_SKEW_MS = 3_600_000
RATE_LIMITED = 130101
__all__ = ["DingtalkMessage", "DingtalkRobotServer", "expected_sign"]


@dataclass
class DingtalkMessage:
    token: str
    msgtype: str
    title: str
    text: str


@dataclass
class DingtalkState(RobotState[DingtalkMessage]):
    secrets: dict[str, str | None] = field(default_factory=dict)  # token → secret (None: unsigned robot)


def expected_sign(secret: str, timestamp: str) -> str:
    digest = hmac.new(secret.encode("utf-8"), f"{timestamp}\n{secret}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


class _Handler(RobotHandler):
    app: DingtalkRobotServer
    send_path = "/robot/send"

    def answer(self, query: dict[str, str], body: bytes) -> dict[str, Any]:
        state = self.app.state
        token = query.get("access_token", "")
        if token not in state.secrets:
            return robot_error(300001, "token is not exist")
        secret = state.secrets[token]
        if secret is not None:
            ts, sign = query.get("timestamp", ""), query.get("sign", "")
            if not ts.isdigit() or abs(int(time.time() * 1000) - int(ts)) > MAX_SKEW_MS:
                return robot_error(310000, "timestamp is invalid or more than an hour away")
            if not hmac.compare_digest(sign, expected_sign(secret, ts)):
                return robot_error(310000, "sign not match")
        try:
            doc = json.loads(body)
            msgtype = doc["msgtype"]
        except (ValueError, KeyError, TypeError):
            return robot_error(40035, "missing parameter json")
        if msgtype == "markdown":
            part = doc.get("markdown") or {}
            title, text = part.get("title"), part.get("text")
            if not isinstance(title, str) or not title or not isinstance(text, str) or not text:
                return robot_error(40035, "markdown.title and markdown.text required")
        elif msgtype == "text":
            title, text = "", (doc.get("text") or {}).get("content")
            if not isinstance(text, str) or not text:
                return robot_error(40035, "text.content required")
        else:
            return robot_error(40008, f"invalid message type {msgtype}")
        too_fast = "send too fast, exceed 20 times per minute"
        with state.lock:
            if state.faults:
                code = state.faults.popleft()
                return robot_error(code, too_fast if code == RATE_LIMITED else "scripted")
            if state.over_rate(token):
                return robot_error(RATE_LIMITED, too_fast)
            state.accept(token, DingtalkMessage(token=token, msgtype=msgtype, title=title, text=text))
        return robot_error(0, "ok")


class DingtalkRobotServer(RobotServer[DingtalkMessage]):
    """`webhook(token, secret)` creates a robot and gives its URL; `received(token)` is what that group saw."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, port: int = 0) -> None:
        self.state = DingtalkState(clock=clock)
        super().__init__(_Handler, port=port)

    def webhook(self, token: str, secret: str | None = None) -> str:
        with self.state.lock:
            self.state.secrets[token] = secret
        return f"{self.url}/robot/send?access_token={token}"

    def fail_next(self, errcode: int = RATE_LIMITED, times: int = 1) -> None:
        super().fail_next(errcode, times)

    def received(self, token: str) -> list[DingtalkMessage]:
        return [m for m in self.messages if m.token == token]
