"""A tiny threaded HTTP server on loopback, shared by the stand-in upstream systems."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class LoopbackServer:
    """Run a handler class on 127.0.0.1 in a daemon thread; `url` is known once started."""

    def __init__(self, handler: type[BaseHTTPRequestHandler], port: int = 0, **attrs: Any) -> None:
        handler_cls = type(handler.__name__, (handler,), {"app": self, **attrs})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), handler_cls)
        self.httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> LoopbackServer:
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True, name=type(self).__name__)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ScriptedServer(LoopbackServer):
    """A stand-in whose tests script the failures of a real peer: down (connections dropped) and huge answers.

    `state` is the server's dataclass with at least `lock`, `down` and `huge` (answers still to pad).
    """

    state: Any

    def set_down(self, down: bool = True) -> None:
        with self.state.lock:
            self.state.down = down

    def answer_huge_next(self, times: int = 1) -> None:
        with self.state.lock:
            self.state.huge += times


class QuietHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: without TCP_NODELAY each response waits ~40 ms for a delayed ACK.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def send_body(self, status: int, body: bytes, content_type: str = "application/json", **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers.items():
            self.send_header(k.replace("_", "-"), v)
        self.end_headers()
        self.wfile.write(body)
