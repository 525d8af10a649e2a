"""What the loopback group robots (WeCom, DingTalk) share: one webhook POST, one JSON answer.

Why a base: both vendors answer every call with HTTP 200 and `{"errcode": N, "errmsg": …}`,
limit each webhook to 20 messages a minute, and must be scriptable the same way in tests
(the next N calls answer an errcode, an answer over 16 MiB, the server down). Each vendor's
module keeps only what is its own: the path, the key or signature check, the message types.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import parse_qs, urlparse

from minyi.sim.http import QuietHandler, ScriptedServer

PER_MINUTE = 20  # both vendors: messages a minute per webhook
HUGE = 16 * 1024 * 1024 + 1  # padding that puts an answer over minyi's cap (SPEC §14)

M = TypeVar("M")


def robot_error(code: int, msg: str) -> dict[str, Any]:
    return {"errcode": code, "errmsg": msg}


@dataclass
class RobotState(Generic[M]):
    clock: Callable[[], float] = time.monotonic
    messages: list[M] = field(default_factory=list)
    calls: int = 0
    refused: list[int] = field(default_factory=list)  # errcodes answered, in order
    faults: deque[int] = field(default_factory=deque)
    sent_at: dict[str, deque[float]] = field(default_factory=dict)
    down: bool = False
    huge: int = 0  # the next N answers are over 16 MiB (a broken proxy, a hostile peer)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def over_rate(self, webhook: str) -> bool:
        """True if `webhook` has had PER_MINUTE messages in the last 60 s of `clock` (call under `lock`)."""
        now = self.clock()
        window = self.sent_at.setdefault(webhook, deque())
        while window and window[0] <= now - 60:
            window.popleft()
        return len(window) >= PER_MINUTE

    def accept(self, webhook: str, message: M) -> None:
        """Count `message` against its webhook's rate and keep it as the group saw it (call under `lock`)."""
        self.sent_at.setdefault(webhook, deque()).append(self.clock())
        self.messages.append(message)


class RobotHandler(QuietHandler):
    """POST `send_path` → `answer(query, body)`; a vendor module subclasses it with its own answer."""

    app: RobotServer[Any]
    send_path = "/"

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
        if parsed.path != self.send_path:
            self.send_body(404, b"not found", "text/plain")
            return
        answer = self.answer({k: v[-1] for k, v in parse_qs(parsed.query).items()}, body)
        with state.lock:
            if answer["errcode"]:
                state.refused.append(answer["errcode"])
            huge, state.huge = state.huge > 0, max(state.huge - 1, 0)
        if huge:
            answer = {**answer, "padding": "x" * HUGE}
        self.send_body(200, json.dumps(answer, ensure_ascii=False).encode("utf-8"))

    def answer(self, query: dict[str, str], body: bytes) -> dict[str, Any]:
        raise NotImplementedError


class RobotServer(ScriptedServer, Generic[M]):
    """Scripting shared by the robots: faults, huge answers, down; `messages` is what every group saw."""

    state: RobotState[M]

    def fail_next(self, errcode: int, times: int = 1) -> None:
        with self.state.lock:
            self.state.faults.extend([errcode] * times)

    @property
    def messages(self) -> list[M]:
        with self.state.lock:
            return list(self.state.messages)
