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

from minyi.tasks.adapters.bounds import MAX_ANSWER_BYTES, AnswerTooLarge, read_capped
from minyi.tasks.adapters.tls import tls_context
from minyi.tasks.config import IngestConfig, SourceConfig, secret_from_env
from minyi.tasks.errors import SourceError
from minyi.tasks.rules.retry import RETRYABLE_STATUS, Backoff, Retryable, parse_retry_after, with_retries

MAX_PAGE_BYTES = MAX_ANSWER_BYTES
UNSET: Any = object()  # `token` not given: read it from the source's `token_env`
log = logging.getLogger("minyi.sources")


@dataclass(frozen=True)
class Page:
    records: list[Any]
    next_cursor: str | None
    nbytes: int


class PageTooLarge(SourceError):
    pass


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
            verify=tls_context(),
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
        return with_retries(
            lambda: self._get(params),
            self.backoff,
            what=f"source {self.source.name}",
            give_up=SourceError,
            sleep=self._sleep,
            rand=self._rand,
            log=log,
        )

    def _get(self, params: dict[str, Any]) -> Page:
        name = self.source.name
        try:
            with self._client.stream("GET", "/records", params=params) as resp:
                if resp.status_code in RETRYABLE_STATUS:
                    raise Retryable(f"HTTP {resp.status_code}", parse_retry_after(resp.headers.get("Retry-After")))
                if resp.status_code != 200:
                    raise SourceError(f"source {name}: HTTP {resp.status_code} {resp.reason_phrase}")
                try:
                    body = read_capped(resp)
                except AnswerTooLarge:
                    raise PageTooLarge(f"source {name}: page body is over 16 MiB") from None
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            raise Retryable(f"{type(exc).__name__}: {exc}") from None
        size = len(body)
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            # A truncated body is what a dropped connection looks like: ask again.
            raise Retryable(f"invalid JSON body ({size} bytes)") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("records"), list):
            raise SourceError(f"source {name}: response is not {{'records': [...], 'next_cursor': ...}}")
        nxt = doc.get("next_cursor")
        if nxt is not None and not isinstance(nxt, str | int):
            raise SourceError(f"source {name}: next_cursor must be a string or null")
        return Page(doc["records"], str(nxt) if nxt not in (None, "") else None, size)
