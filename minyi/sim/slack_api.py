"""A local Slack Web API on loopback that slack-sdk's WebClient talks to unchanged (tests, demo).

Speaks the methods minyi uses: `chat.postMessage`, `files.getUploadURLExternal`,
the upload URL it hands out, `files.completeUploadExternal` and `auth.test`.
Every post is recorded per channel with its `ts` and `thread_ts`; faults are
scripted: the next N calls answer 429 with Retry-After, or 500, or the server is
`down` (connections are dropped without an answer, as a dead proxy would).
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlparse

from minyi.sim.http import QuietHandler, ScriptedServer


@dataclass
class SlackPost:
    """One message or file share as a channel member would see it."""

    channel: str
    ts: str
    text: str
    thread_ts: str | None = None
    blocks: list[dict[str, Any]] | None = None
    file_id: str | None = None
    file_bytes: bytes | None = None
    title: str | None = None
    metadata: dict[str, Any] | None = None


@dataclass
class SlackState:
    posts: list[SlackPost] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    faults: deque[tuple[int, dict[str, str]]] = field(default_factory=deque)
    uploads: dict[str, dict[str, Any]] = field(default_factory=dict)
    down: bool = False
    huge: int = 0  # the next N API answers are over 16 MiB (a broken proxy, a hostile peer)
    token: str | None = None
    # Called with (method path, params) after a call is recorded and before it is answered: tests kill runs here.
    on_call: Any = None
    counter: int = 0
    # Answer conversations.history / .replies with this error (e.g. "missing_scope": no channels:history).
    history_error: str | None = None
    last: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_ts(self) -> str:
        """Slack's ts: the wall-clock instant of the post in seconds with six decimals, unique per channel."""
        self.counter += 1
        self.last = max(time.time(), self.last + 0.000001)
        return f"{self.last:.6f}"


class _Handler(QuietHandler):
    app: SlackApiServer

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def _params(self, body: bytes) -> dict[str, Any]:
        parsed = urlparse(self.path)
        params: dict[str, Any] = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        ctype = self.headers.get("Content-Type", "")
        if body and "json" in ctype:
            params.update(json.loads(body))
        elif body and "x-www-form-urlencoded" in ctype:
            params.update({k: v[-1] for k, v in parse_qs(body.decode("utf-8")).items()})
        return params

    def _handle(self) -> None:
        state = self.app.state
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path = urlparse(self.path).path
        with state.lock:
            state.calls.append(path)
            if state.down:
                self.close_connection = True
                self.connection.close()
                return
            fault = state.faults.popleft() if state.faults else None
        if fault is not None:
            status, headers = fault
            self.send_body(status, json.dumps({"ok": False, "error": "fault"}).encode(), **headers)
            return
        if path.startswith("/upload/"):
            file_id = path.rsplit("/", 1)[-1]
            with state.lock:
                if file_id not in state.uploads:
                    self.send_body(404, b"no such upload", "text/plain")
                    return
                state.uploads[file_id]["data"] = body
            self.send_body(200, b"OK - " + str(len(body)).encode(), "text/plain")
            return
        if not path.startswith("/api/"):
            self.send_body(404, b'{"ok":false,"error":"unknown_method"}')
            return
        if state.token and self.headers.get("Authorization") != f"Bearer {state.token}":
            self._ok({"ok": False, "error": "invalid_auth"})
            return
        method = path[len("/api/") :]
        params = self._params(body)
        handler = getattr(self, "api_" + method.replace(".", "_"), None)
        if handler is None:
            self._ok({"ok": False, "error": "unknown_method"})
            return
        answer = handler(params)
        if state.on_call is not None:
            state.on_call(method, params)
        with state.lock:
            huge, state.huge = state.huge > 0, max(state.huge - 1, 0)
        if huge:
            answer = {**answer, "padding": "x" * (16 * 1024 * 1024 + 1)}
        self._ok(answer)

    def _ok(self, payload: dict[str, Any]) -> None:
        self.send_body(200, json.dumps(payload, ensure_ascii=False).encode("utf-8"))

    def api_auth_test(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "team": "minyi-test", "user": "minyi", "team_id": "T0MINYI", "user_id": "U0MINYI"}

    def api_chat_postMessage(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = params.get("channel")
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        if not params.get("text") and not params.get("blocks"):
            return {"ok": False, "error": "no_text"}
        blocks = params.get("blocks")
        if isinstance(blocks, str):
            blocks = json.loads(blocks)
        metadata = params.get("metadata")
        if isinstance(metadata, str):
            metadata = json.loads(metadata)
        state = self.app.state
        with state.lock:
            ts = state.next_ts()
            state.posts.append(
                SlackPost(
                    channel=channel,
                    ts=ts,
                    text=params.get("text") or "",
                    thread_ts=params.get("thread_ts") or None,
                    blocks=blocks,
                    metadata=metadata,
                )
            )
        return {"ok": True, "channel": channel, "ts": ts, "message": {"text": params.get("text"), "ts": ts}}

    def _message(self, p: SlackPost, metadata: bool) -> dict[str, Any]:
        m: dict[str, Any] = {"type": "message", "ts": p.ts, "text": p.text}
        if p.thread_ts:
            m["thread_ts"] = p.thread_ts
        if p.file_id:
            m["files"] = [{"id": p.file_id, "title": p.title}]
        if metadata and p.metadata:
            m["metadata"] = p.metadata
        return m

    def _page(self, posts: list[SlackPost], params: dict[str, Any]) -> dict[str, Any]:
        """One page of `limit` messages after `cursor`, only those newer than `oldest`; Slack's has_more/cursor."""
        if self.app.state.history_error:
            return {"ok": False, "error": self.app.state.history_error}
        limit = min(int(params.get("limit") or 100), 999)
        oldest = float(params.get("oldest") or 0)
        meta = str(params.get("include_all_metadata")).lower() in ("1", "true")
        posts = [p for p in posts if float(p.ts) > oldest]
        start = int(params.get("cursor") or 0)
        page = posts[start : start + limit]
        more = start + limit < len(posts)
        answer: dict[str, Any] = {"ok": True, "messages": [self._message(p, meta) for p in page], "has_more": more}
        if more:
            answer["response_metadata"] = {"next_cursor": str(start + limit)}
        return answer

    def api_conversations_history(self, params: dict[str, Any]) -> dict[str, Any]:
        """Top-level messages of a channel, newest first, paged."""
        with self.app.state.lock:
            posts = [p for p in self.app.state.posts if p.channel == params.get("channel") and p.thread_ts is None]
        return self._page(list(reversed(posts)), params)

    def api_conversations_replies(self, params: dict[str, Any]) -> dict[str, Any]:
        """A thread: its parent, then its replies in order, paged."""
        ts = params.get("ts")
        with self.app.state.lock:
            posts = [
                p
                for p in self.app.state.posts
                if p.channel == params.get("channel") and (p.ts == ts or p.thread_ts == ts)
            ]
        return self._page(posts, params)

    def api_files_getUploadURLExternal(self, params: dict[str, Any]) -> dict[str, Any]:
        if not params.get("filename") or not params.get("length"):
            return {"ok": False, "error": "invalid_arguments"}
        state = self.app.state
        with state.lock:
            file_id = f"F{state.next_ts().replace('.', '')}"
            state.uploads[file_id] = {"filename": params["filename"], "length": int(params["length"]), "data": None}
        return {"ok": True, "file_id": file_id, "upload_url": f"{self.app.url}/upload/{file_id}"}

    def api_files_completeUploadExternal(self, params: dict[str, Any]) -> dict[str, Any]:
        files = params.get("files")
        files = json.loads(files) if isinstance(files, str) else files or []
        state = self.app.state
        channel = params.get("channel_id") or params.get("channels")
        out = []
        with state.lock:
            for f in files:
                up = state.uploads.get(f["id"])
                if up is None or up["data"] is None:
                    return {"ok": False, "error": "file_not_found"}
                if channel:
                    state.posts.append(
                        SlackPost(
                            channel=channel,
                            ts=state.next_ts(),
                            text=params.get("initial_comment") or "",
                            thread_ts=params.get("thread_ts") or None,
                            file_id=f["id"],
                            file_bytes=up["data"],
                            title=f.get("title"),
                        )
                    )
                out.append({"id": f["id"], "title": f.get("title"), "name": up["filename"]})
        return {"ok": True, "files": out}


class SlackApiServer(ScriptedServer):
    """`api_url` is what goes in `[slack] api_url`; `posts_in(channel)` is what a member of it saw."""

    def __init__(self, token: str | None = None, port: int = 0) -> None:
        self.state = SlackState(token=token)
        super().__init__(_Handler, port=port)

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/"

    def fail_next(self, status: int, times: int = 1, retry_after: int | None = None) -> None:
        headers = {"Retry_After": str(retry_after)} if retry_after is not None else {}
        with self.state.lock:
            self.state.faults.extend([(status, headers)] * times)

    @property
    def posts(self) -> list[SlackPost]:
        with self.state.lock:
            return list(self.state.posts)

    def posts_in(self, channel: str, top_level: bool | None = None) -> list[SlackPost]:
        return [
            p for p in self.posts if p.channel == channel and (top_level is None or (p.thread_ts is None) == top_level)
        ]

    def replies_to(self, ts: str) -> list[SlackPost]:
        return [p for p in self.posts if p.thread_ts == ts]
