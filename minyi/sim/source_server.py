"""A records source that speaks SPEC §3 on loopback, with scriptable faults for the tests.

Records come from a `Feed`: the synthetic city (demo, benchmark) or fixed lists
(tests). Faults are queued per source: the next requests answer with the given
status/headers/body before normal service resumes.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Protocol
from urllib.parse import parse_qs, urlparse

import orjson

from minyi.sim.city import SOURCES, CityConfig, record, volume
from minyi.sim.http import LoopbackServer, QuietHandler


class Feed(Protocol):
    def count(self, source: str, day: date) -> int: ...
    def rows(self, source: str, day: date, start: int, stop: int) -> list[Any]: ...


@dataclass
class CityFeed:
    """Every source of the synthetic city, generated on demand."""

    city: CityConfig = field(default_factory=CityConfig)
    sources: tuple[str, ...] = tuple(s.name for s in SOURCES)
    volumes: dict[str, int] = field(default_factory=dict)

    def count(self, source: str, day: date) -> int:
        if source not in self.sources:
            return 0
        return self.volumes.get(source, volume(self.city, source, day))

    def rows(self, source: str, day: date, start: int, stop: int) -> list[Any]:
        return [record(self.city, source, day, i) for i in range(start, stop)]


@dataclass
class StaticFeed:
    """Fixed rows per (source, date); tests mutate `data` to simulate upstream changes."""

    data: dict[tuple[str, date], list[Any]] = field(default_factory=dict)

    def count(self, source: str, day: date) -> int:
        return len(self.data.get((source, day), []))

    def rows(self, source: str, day: date, start: int, stop: int) -> list[Any]:
        return self.data.get((source, day), [])[start:stop]


@dataclass
class Fault:
    status: int = 500
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b'{"error":"injected"}'
    delay: float = 0.0
    drop: bool = False  # close the connection without an answer (a dead proxy, a reset)
    content_type: str = "application/json"


@dataclass
class SourceState:
    faults: deque[Fault] = field(default_factory=deque)
    always: Fault | None = None
    page_delay: float = 0.0
    token: str | None = None


class SourceServer(LoopbackServer):
    """GET /{source}/records?date=&limit=&cursor= → {"records": [...], "next_cursor": ...}."""

    def __init__(self, feed: Feed, port: int = 0) -> None:
        super().__init__(_Handler, port)
        self.feed = feed
        self.states: dict[str, SourceState] = {}
        self.requests: list[tuple[float, str, dict[str, str], str | None]] = []
        self.lock = threading.Lock()
        self.on_page: Callable[[str, int], None] | None = None

    def state(self, source: str) -> SourceState:
        with self.lock:
            return self.states.setdefault(source, SourceState())

    def fail(self, source: str, *faults: Fault) -> None:
        self.state(source).faults.extend(faults)

    def url_for(self, source: str) -> str:
        return f"{self.url}/{source}"


class _Handler(QuietHandler):
    app: SourceServer

    def do_GET(self) -> None:
        parsed = urlparse(self.path)
        parts = [p for p in parsed.path.split("/") if p]
        if len(parts) != 2 or parts[1] != "records":
            return self.send_body(404, b'{"error":"not found"}')
        source = parts[0]
        q = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        app = self.app
        st = app.state(source)
        with app.lock:
            app.requests.append((time.monotonic(), source, q, self.headers.get("Authorization")))
            fault = st.faults.popleft() if st.faults else st.always
        if fault is not None:
            time.sleep(fault.delay)
            if fault.drop:
                self.close_connection = True
                self.connection.close()
                return None
            return self.send_body(fault.status, fault.body, fault.content_type, **fault.headers)
        if st.token and self.headers.get("Authorization") != f"Bearer {st.token}":
            return self.send_body(401, b'{"error":"unauthorized"}')
        try:
            day = date.fromisoformat(q["date"])
            limit = int(q.get("limit", "1000"))
            start = int(q.get("cursor") or 0)
        except (KeyError, ValueError):
            return self.send_body(400, b'{"error":"bad query"}')
        if not 1 <= limit <= 5000:
            return self.send_body(400, b'{"error":"limit must be 1..5000"}')
        total = app.feed.count(source, day)
        stop = min(start + limit, total)
        rows = app.feed.rows(source, day, start, stop)
        if st.page_delay:
            time.sleep(st.page_delay)
        nxt = str(stop) if stop < total else None
        if app.on_page:
            app.on_page(source, start)
        self.send_body(200, orjson.dumps({"records": rows, "next_cursor": nxt}))


def main() -> None:
    """Serve the synthetic city from its own process (benchmarks): prints the URL once every page is rendered."""
    import argparse
    import sys

    from minyi.sim.city import SOURCE_BY_NAME

    parser = argparse.ArgumentParser(description="synthetic city records source on loopback")
    parser.add_argument("--records", type=int, required=True, help="records for the day, across all sources")
    parser.add_argument("--date", type=date.fromisoformat, required=True)
    parser.add_argument("--page-size", type=int, default=5000)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument(
        "--shape", choices=("city", "one"), default="city", help="six sources by share, or the whole day from police110"
    )
    args = parser.parse_args()
    if args.shape == "one":
        volumes = {"police110": args.records}
    else:
        volumes = {name: max(1, round(args.records * p.share)) for name, p in SOURCE_BY_NAME.items()}
    feed = CityFeed(volumes=volumes)
    pages: dict[tuple[str, int], list[Any]] = {}
    for name, n in volumes.items():
        for start in range(0, n, args.page_size):
            pages[(name, start)] = feed.rows(name, args.date, start, min(start + args.page_size, n))
    prerendered = StaticFeed(
        {
            (name, args.date): [r for s in range(0, n, args.page_size) for r in pages[(name, s)]]
            for name, n in volumes.items()
        }
    )
    pages.clear()
    server = SourceServer(prerendered, args.port).start()
    print(server.url, flush=True)
    sys.stdin.read()  # run until the parent closes our stdin
    server.stop()


if __name__ == "__main__":
    main()
