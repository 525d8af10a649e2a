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

from minyi.tasks.adapters.bounds import MAX_ANSWER_BYTES
from minyi.tasks.adapters.http import JsonApi
from minyi.tasks.config import IngestConfig, SourceConfig, secret_from_env
from minyi.tasks.errors import SourceError
from minyi.tasks.rules.retry import Backoff

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


class SourceClient(JsonApi):
    """Pulls pages from one configured source; raises SourceError when the source has failed."""

    give_up = SourceError
    too_large = PageTooLarge

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
        super().__init__(
            what=f"source {source.name}",
            base_url=source.url,
            token=secret_from_env(source.token_env) if token is UNSET else token,
            timeout_seconds=ingest.timeout_seconds,
            backoff=Backoff(ingest.max_attempts, ingest.backoff_seconds, ingest.max_backoff_seconds),
            log=log,
            transport=transport,
            sleep=sleep,
            rand=rand,
        )

    def fetch_page(self, business_date: date, cursor: str | None) -> Page:
        """One page, retried on 429/5xx/timeouts/connection errors/truncated bodies; SourceError otherwise."""
        params: dict[str, Any] = {"date": business_date.isoformat(), "limit": self.page_size}
        if cursor:
            params["cursor"] = cursor
        doc, size = self.call("GET", "/records", params=params)
        if not isinstance(doc, dict) or not isinstance(doc.get("records"), list):
            raise SourceError(f"{self.what}: response is not {{'records': [...], 'next_cursor': ...}}")
        return Page(doc["records"], self.next_cursor(doc.get("next_cursor")), size)
