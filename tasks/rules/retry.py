"""Retry policy for every HTTP peer (sources, SMS gateway): backoff with full jitter, Retry-After honoured.

Pure and injectable (`sleep`, `rand`) so the tests can prove the schedule without waiting.
`with_retries` is the one retry loop: a call raises `Retryable` to be tried again, anything
else to stop at once; past the last attempt the caller's `give_up` error is raised.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TypeVar

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
T = TypeVar("T")


class Retryable(Exception):
    """One failed try that may succeed if tried again (429/5xx, timeouts, dropped connections, torn bodies)."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter, capped; `attempts` counts every try including the first."""

    attempts: int = 6
    base: float = 0.5
    cap: float = 60.0
    max_retry_after: float = 300.0

    def delay(self, attempt: int, retry_after: float | None = None, rand: random.Random | None = None) -> float:
        """Seconds to wait after failed try number `attempt` (1-based).

        A server's Retry-After is a floor: we never come back sooner than it asked
        (up to `max_retry_after`, so a misconfigured server cannot park the loop for a day).
        """
        r = (rand or random).random()
        jittered = r * min(self.cap, self.base * (2 ** (attempt - 1)))
        if retry_after is not None:
            return max(min(retry_after, self.max_retry_after), jittered)
        return jittered


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Retry-After as seconds: either delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def with_retries(
    call: Callable[[], T],
    backoff: Backoff,
    *,
    what: str,
    give_up: Callable[[str], Exception],
    sleep: Callable[[float], None],
    rand: random.Random | None = None,
    log: logging.Logger | None = None,
) -> T:
    """`call()` until it returns, raises anything but Retryable, or has failed `backoff.attempts` times."""
    for attempt in range(1, backoff.attempts + 1):
        try:
            return call()
        except Retryable as exc:
            if attempt == backoff.attempts:
                raise give_up(f"{what}: gave up after {attempt} attempts: {exc}") from None
            delay = backoff.delay(attempt, exc.retry_after, rand)
            if log is not None:
                log.warning("%s: %s; retry %d in %.2fs", what, exc, attempt, delay)
            sleep(delay)
    raise AssertionError("unreachable")
