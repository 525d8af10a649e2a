"""A local SMS gateway that speaks SPEC §4's contract on loopback, for `minyi demo` and the tests.

It de-duplicates by message_id (a second send answers `duplicate` and is not
delivered again) but counts every POST of every message_id (`posts`: the figure
the "never posted twice" tests read), records every batch it received, can answer
slowly (`slow_seconds`) or with a body of any size (`pad_next_answer`), serves raw
reply objects as given (`inject_raw_reply`: poisoned replies), rejects numbers it is told
to, answers scripted faults (429/500, or a stall that holds the answer until
released), and serves replies that a test or the demo injects.

Run alone: `python -m minyi.sim.sms_gateway --port 8801`.
"""

from __future__ import annotations

import argparse
import threading
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple
from urllib.parse import parse_qs, urlparse

import orjson

from minyi.sim.http import LoopbackServer, QuietHandler


@dataclass
class GatewayFault:
    """The next batch (or replies) request answers this instead; `retry_after` sets the header."""

    status: int = 500
    retry_after: str | None = None
    delay: float = 0.0


class Delivered(NamedTuple):
    """One message the gateway took (a tuple: a benchmark day is a million of them, on the loop's own cores)."""

    message_id: str
    to: str
    text: str
    at: float


@dataclass
class GatewayReply:
    reply_id: str
    sender: str
    text: str
    received_at: datetime
    message_id: str | None


@dataclass
class GatewayState:
    delivered: dict[str, Delivered] = field(default_factory=dict)
    batches: list[list[str]] = field(default_factory=list)
    answers: list[tuple[str, str]] = field(default_factory=list)  # (message_id, status) in answer order
    replies: list[Any] = field(default_factory=list)  # GatewayReply, or anything else served as given
    posts: Counter[str] = field(default_factory=Counter)  # every POST of every message_id, duplicates included
    held: list[str] = field(default_factory=list)  # the batch held (and refused) before it was taken
    reply_requests: list[dict[str, str]] = field(default_factory=list)
    faults: deque[GatewayFault] = field(default_factory=deque)
    reject: set[str] = field(default_factory=set)


class SmsGateway(LoopbackServer):
    """POST /messages:batch and GET /replies, as SPEC §4 describes them."""

    def __init__(self, port: int = 0, token: str | None = None) -> None:
        super().__init__(_Handler, port)
        self.token = token
        # Cursors carry this instance's epoch: a cursor from an earlier gateway process (the demo's store
        # outlives it) starts from the beginning instead of skipping the new process's replies.
        self.epoch = uuid.uuid4().hex[:8]
        self.state = GatewayState()
        self.lock = threading.Lock()
        # A stall: the next batch is delivered (recorded) but its answer waits until `release` is set.
        self.stall_next = False
        self.stalled = threading.Event()
        self.release = threading.Event()
        # The next batch is held before the gateway takes it, then refused 503 unrecorded: a run killed
        # while it waits died before its send (the "outbox-before-send" point).
        self.hold_before_accept = False
        self.slow_seconds = 0.0  # every batch answer waits this long (a slow gateway)
        self.pad_bytes = 0  # the next answer (batch or replies) carries this much padding (an oversized answer)

    # --- what tests and the demo tell the gateway -------------------------------------------------
    def fail(self, *faults: GatewayFault) -> None:
        with self.lock:
            self.state.faults.extend(faults)

    def reject_numbers(self, *numbers: str) -> None:
        with self.lock:
            self.state.reject.update(numbers)

    def hold_next_batch_before_accepting(self) -> None:
        self.hold_before_accept = True
        self.stalled.clear()
        self.release.clear()

    def stall_next_batch(self) -> None:
        self.stall_next = True
        self.stalled.clear()
        self.release.clear()

    def inject_reply(
        self,
        sender: str,
        text: str,
        received_at: datetime | None = None,
        message_id: str | None = None,
        reply_id: str | None = None,
    ) -> str:
        """Queue a citizen's reply; returns its reply_id."""
        with self.lock:
            rid = reply_id or f"r{len(self.state.replies) + 1:07d}"
            self.state.replies.append(GatewayReply(rid, sender, text, received_at or datetime.now(UTC), message_id))
            return rid

    def inject_raw_reply(self, doc: Any) -> None:
        """Queue a reply object exactly as given (any field, any type, any size)."""
        with self.lock:
            self.state.replies.append(doc)

    def pad_next_answer(self, nbytes: int) -> None:
        with self.lock:
            self.pad_bytes = nbytes

    def _take_pad(self) -> bytes:
        with self.lock:
            n, self.pad_bytes = self.pad_bytes, 0
        return b" " * n

    def reply_to(self, message_id: str, text: str, received_at: datetime, with_id: bool = True) -> str:
        """The citizen who got `message_id` answers `text` (carrying the message_id unless with_id=False)."""
        msg = self.state.delivered[message_id]
        return self.inject_reply(msg.to, text, received_at, message_id if with_id else None)

    # --- what tests read --------------------------------------------------------------------------
    @property
    def delivered(self) -> dict[str, Delivered]:
        return self.state.delivered

    def sends_of(self, message_id: str) -> int:
        """How many POSTs carried this message (deliveries stay one: the gateway de-duplicates)."""
        return self.state.posts[message_id]

    def posted_more_than_once(self) -> dict[str, int]:
        """message_id → POST count, for every id POSTed twice or more."""
        with self.lock:
            return {mid: n for mid, n in self.state.posts.items() if n > 1}


class _Handler(QuietHandler):
    app: SmsGateway
    # Headers and body go out in two writes; without TCP_NODELAY each answer waits ~40 ms for a delayed ACK.

    def _authorised(self) -> bool:
        if self.app.token and self.headers.get("Authorization") != f"Bearer {self.app.token}":
            self.send_body(401, b'{"error":"unauthorized"}')
            return False
        return True

    def _fault(self) -> bool:
        with self.app.lock:
            fault = self.app.state.faults.popleft() if self.app.state.faults else None
        if fault is None:
            return False
        time.sleep(fault.delay)
        headers = {"Retry_After": fault.retry_after} if fault.retry_after else {}
        self.send_body(fault.status, b'{"error":"injected"}', **headers)
        return True

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        if urlparse(self.path).path != "/messages:batch":
            return self.send_body(404, b'{"error":"not found"}')
        if not self._authorised() or self._fault():
            return None
        try:
            messages = orjson.loads(body)["messages"]
            assert isinstance(messages, list)
        except Exception:
            return self.send_body(400, b'{"error":"body must be {\\"messages\\": [...]}"}')
        app = self.app
        if app.hold_before_accept:
            app.hold_before_accept = False
            app.state.held = [str(m.get("message_id")) for m in messages]
            app.stalled.set()
            app.release.wait(120)
            return self.send_body(503, b'{"error":"not taken"}')
        results: list[dict[str, Any]] = []
        now = time.monotonic()
        ids = [str(m.get("message_id")) for m in messages]
        with app.lock:
            state = app.state
            delivered, reject, append = state.delivered, state.reject, results.append
            state.batches.append(ids)
            state.posts.update(ids)
            for m in messages:
                mid, to = m.get("message_id"), m.get("to")
                mid = mid if type(mid) is str else str(mid or "")
                to = to if type(to) is str else str(to or "")
                if not mid:
                    append({"message_id": mid, "status": "rejected", "error": "missing message_id"})
                elif mid in delivered:
                    append({"message_id": mid, "status": "duplicate"})
                elif to in reject or not (len(to) == 11 and to.isdigit() and to[0] == "1"):
                    append({"message_id": mid, "status": "rejected", "error": "number not reachable"})
                else:
                    delivered[mid] = Delivered(mid, to, str(m.get("text") or ""), now)
                    append({"message_id": mid, "status": "accepted"})
            stall = app.stall_next
            app.stall_next = False
        if stall:
            app.stalled.set()
            app.release.wait(120)
        if app.slow_seconds:
            time.sleep(app.slow_seconds)
        with app.lock:
            app.state.answers.extend((r["message_id"], r["status"]) for r in results)
        self.send_body(200, _padded(orjson.dumps({"results": results}), app._take_pad()))

    def do_GET(self) -> None:
        parsed = urlparse(self.path)
        if parsed.path != "/replies":
            return self.send_body(404, b'{"error":"not found"}')
        if not self._authorised() or self._fault():
            return None
        q = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        epoch, _, position = (q.get("since") or "").rpartition(":")
        try:
            start = int(position) if position and epoch == self.app.epoch else 0
            limit = int(q.get("limit") or 100)
        except ValueError:
            return self.send_body(400, b'{"error":"bad query"}')
        with self.app.lock:
            self.app.state.reply_requests.append(q)
            page = self.app.state.replies[start : start + limit]
        doc = {
            "replies": [
                r
                if not isinstance(r, GatewayReply)
                else {
                    "reply_id": r.reply_id,
                    "from": r.sender,
                    "text": r.text,
                    "received_at": r.received_at.isoformat(),
                    "message_id": r.message_id,
                }
                for r in page
            ],
            "next_cursor": f"{self.app.epoch}:{start + len(page)}" if page else None,
        }
        self.send_body(200, _padded(orjson.dumps(doc), self.app._take_pad()))


def _padded(body: bytes, pad: bytes) -> bytes:
    """JSON with trailing whitespace: still valid, as large as a test wants."""
    return body + pad if pad else body


def main() -> None:
    parser = argparse.ArgumentParser(description="A local SMS gateway (SPEC §4 contract) on loopback.")
    parser.add_argument("--port", type=int, default=8801)
    parser.add_argument("--token", default=None)
    args = parser.parse_args()
    gw = SmsGateway(args.port, args.token).start()
    print(f"sms gateway listening on {gw.url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        gw.stop()


if __name__ == "__main__":
    main()
