"""One way to talk to an upstream JSON API (the records sources of SPEC §3, the SMS gateway of §4).

Why one class: both upstreams need the same four things, and each was written twice before —
a bearer token, a timeout, retries on 429/5xx/timeouts/connection errors/truncated bodies
(`rules.retry`), and every answer read streamed under the 16 MiB cap of SPEC §14 so a huge
answer never sits whole in memory. Subclasses add only their endpoints and the shape checks of
their contract; they raise their own error class (`give_up`) when the upstream has failed.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import Any, Self

import httpx
import orjson

from minyi.tasks.adapters.bounds import MAX_CURSOR, AnswerTooLarge, has_control, read_capped
from minyi.tasks.adapters.tls import tls_context
from minyi.tasks.rules.retry import RETRYABLE_STATUS, Backoff, Retryable, parse_retry_after, with_retries


class JsonApi:
    """An httpx client for one upstream; `call` returns the decoded JSON answer and its size in bytes."""

    give_up: type[Exception] = RuntimeError  # what a failed call raises (past its retries, or a broken contract)
    too_large: type[Exception] | None = None  # what an answer over the cap raises (default: give_up)

    def __init__(
        self,
        *,
        what: str,
        base_url: str,
        token: str | None,
        timeout_seconds: float,
        backoff: Backoff,
        log: logging.Logger,
        headers: dict[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rand: random.Random | None = None,
    ) -> None:
        self.what = what
        self.backoff = backoff
        self._log = log
        self._sleep = sleep
        self._rand = rand
        sent = {"Accept": "application/json", "User-Agent": "minyi", **(headers or {})}
        if token:
            sent["Authorization"] = f"Bearer {token}"
        self._client = httpx.Client(
            base_url=base_url,
            headers=sent,
            timeout=httpx.Timeout(timeout_seconds, connect=min(10.0, timeout_seconds)),
            transport=transport,
            verify=tls_context(),
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, method: str, path: str, *, what: str | None = None, **kwargs: Any) -> tuple[Any, int]:
        """One request, retried while the upstream's failure is transient; (JSON answer, body bytes).

        `what` names the call in errors and retry logs (default: the upstream's name)."""
        label = what or self.what
        return with_retries(
            lambda: self._once(label, method, path, **kwargs),
            self.backoff,
            what=label,
            give_up=self.give_up,
            sleep=self._sleep,
            rand=self._rand,
            log=self._log,
        )

    def next_cursor(self, value: Any) -> str | None:
        """A page's `next_cursor` as the contracts give it: a string, an integer, or null/"" at the end."""
        if value is not None and not isinstance(value, str | int):
            raise self.give_up(f"{self.what}: next_cursor must be a string or null")
        cursor = str(value) if value not in (None, "") else None
        if cursor is not None and (len(cursor) > MAX_CURSOR or has_control(cursor)):
            raise self.give_up(f"{self.what}: next_cursor is over {MAX_CURSOR} characters or has control characters")
        return cursor

    def _once(self, label: str, method: str, path: str, **kwargs: Any) -> tuple[Any, int]:
        try:
            with self._client.stream(method, path, **kwargs) as resp:
                if resp.status_code in RETRYABLE_STATUS:
                    raise Retryable(f"HTTP {resp.status_code}", parse_retry_after(resp.headers.get("Retry-After")))
                if resp.status_code != 200:
                    raise self.give_up(f"{label}: HTTP {resp.status_code} {resp.reason_phrase}")
                try:
                    body = read_capped(resp)
                except AnswerTooLarge as exc:
                    raise (self.too_large or self.give_up)(f"{label}: {exc}") from None
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            raise Retryable(f"{type(exc).__name__}: {exc}") from None
        try:
            return orjson.loads(body), len(body)
        except orjson.JSONDecodeError:
            # A truncated body is what a dropped connection looks like: ask again.
            raise Retryable(f"invalid JSON body ({len(body)} bytes)") from None
