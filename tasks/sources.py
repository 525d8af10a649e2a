"""The records source client (SPEC §3): one page per call, over httpx, with retries.

Why a page at a time: the daily loop streams a source page by page, storing each
page with its cursor before asking for the next, so memory stays bounded and a
killed run resumes where it stopped.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

import httpx
import orjson

from minyi.tasks.config import IngestConfig, SourceConfig, secret_from_env
from minyi.tasks.errors import SourceError
from minyi.tasks.retry import RETRYABLE_STATUS, Backoff, parse_retry_after

MAX_PAGE_BYTES = 16 * 1024 * 1024
UNSET: Any = object()  # `token` not given: read it from the source's `token_env`
log = logging.getLogger("minyi.sources")


@dataclass(frozen=True)
class Page:
    records: list[Any]
    next_cursor: str | None
    nbytes: int


class PageTooLarge(SourceError):
    pass


class _Retryable(Exception):
    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class SourceClient:
    """Pulls pages from one configured source; raises SourceError when the source has failed."""

    def __init__(
        self,
        source: SourceConfig,
        ingest: IngestConfig,
        *,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rand: random.Random | None = None,
        token: str | None = UNSET,
    ) -> None:
        self.source = source
        self.page_size = ingest.page_size
        self.backoff = Backoff(ingest.max_attempts, ingest.backoff_seconds, ingest.max_backoff_seconds)
        self._sleep = sleep
        self._rand = rand
        if token is UNSET:
            token = secret_from_env(source.token_env)
        headers = {"Accept": "application/json", "User-Agent": "minyi"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._client = httpx.Client(
            base_url=source.url,
            headers=headers,
            timeout=httpx.Timeout(ingest.timeout_seconds, connect=min(10.0, ingest.timeout_seconds)),
            transport=transport,
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> SourceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def fetch_page(self, business_date: date, cursor: str | None) -> Page:
        """One page, retried on 429/5xx/timeouts/connection errors/truncated bodies; SourceError otherwise."""
        params: dict[str, Any] = {"date": business_date.isoformat(), "limit": self.page_size}
        if cursor:
            params["cursor"] = cursor
        for attempt in range(1, self.backoff.attempts + 1):
            try:
                return self._get(params)
            except _Retryable as exc:
                if attempt == self.backoff.attempts:
                    raise SourceError(f"source {self.source.name}: gave up after {attempt} attempts: {exc}") from None
                delay = self.backoff.delay(attempt, exc.retry_after, self._rand)
                log.warning("source %s: %s; retry %d in %.2fs", self.source.name, exc, attempt, delay)
                self._sleep(delay)
        raise AssertionError("unreachable")

    def _get(self, params: dict[str, Any]) -> Page:
        name = self.source.name
        try:
            with self._client.stream("GET", "/records", params=params) as resp:
                if resp.status_code in RETRYABLE_STATUS:
                    raise _Retryable(f"HTTP {resp.status_code}", parse_retry_after(resp.headers.get("Retry-After")))
                if resp.status_code != 200:
                    raise SourceError(f"source {name}: HTTP {resp.status_code} {resp.reason_phrase}")
                declared = resp.headers.get("Content-Length")
                if declared and declared.isdigit() and int(declared) > MAX_PAGE_BYTES:
                    raise PageTooLarge(f"source {name}: page body of {declared} bytes is over 16 MiB")
                chunks: list[bytes] = []
                size = 0
                for chunk in resp.iter_bytes():
                    size += len(chunk)
                    if size > MAX_PAGE_BYTES:
                        raise PageTooLarge(f"source {name}: page body is over 16 MiB")
                    chunks.append(chunk)
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            raise _Retryable(f"{type(exc).__name__}: {exc}") from None
        body = b"".join(chunks)
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            # A truncated body is what a dropped connection looks like: ask again.
            raise _Retryable(f"invalid JSON body ({size} bytes)") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("records"), list):
            raise SourceError(f"source {name}: response is not {{'records': [...], 'next_cursor': ...}}")
        nxt = doc.get("next_cursor")
        if nxt is not None and not isinstance(nxt, str | int):
            raise SourceError(f"source {name}: next_cursor must be a string or null")
        return Page(doc["records"], str(nxt) if nxt not in (None, "") else None, size)
