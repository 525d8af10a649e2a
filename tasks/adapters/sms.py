"""The SMS gateway (SPEC §4): what minyi needs of one (`SmsGateway`), and its first vendor, the HTTP
contract of SPEC §4 (`GatewayClient`).

Why a protocol: the relay (tasks/stages/sms.py), the verification call-back and reply intake
only send batches and read reply pages; which vendor does it is chosen in one place, the
runtime (`Runtime.sms_gateway`). A second vendor is one file implementing `SmsGateway`.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import httpx
import orjson

from minyi.tasks.adapters.bounds import Reply, clean_text
from minyi.tasks.adapters.http import JsonApi
from minyi.tasks.config import MinyiConfig, SmsConfig, secret_from_env
from minyi.tasks.errors import MinyiError
from minyi.tasks.rules.retry import Backoff

__all__ = ["GatewayClient", "OutgoingSms", "Reply", "ReplyPage", "SendResult", "SmsGateway", "SmsGatewayError"]

log = logging.getLogger("minyi.sms")
SEND_STATUSES = frozenset({"accepted", "duplicate", "rejected"})


class SmsGatewayError(MinyiError):
    """The gateway failed past every retry, or broke its contract; queued messages wait for the next run."""


class OutgoingSms(NamedTuple):
    """One message of a batch (a tuple: a million are built a day)."""

    message_id: str
    to: str
    text: str


class SendResult(NamedTuple):
    message_id: str
    status: str  # accepted | duplicate | rejected
    error: str | None = None


@dataclass(frozen=True)
class ReplyPage:
    """One page as the gateway served it: each item still raw (replies.py checks each one, SPEC §4)."""

    items: list[Any]
    next_cursor: str | None


class SmsGateway(Protocol):
    """What the relay and reply intake need of a gateway; `GatewayClient` (HTTP, SPEC §4) is the first."""

    batch_size: int

    def send_batch(self, messages: list[OutgoingSms]) -> list[SendResult]: ...

    def fetch_replies(self, since: str | None, limit: int) -> ReplyPage: ...

    def close(self) -> None: ...

    def __enter__(self) -> SmsGateway: ...

    def __exit__(self, *exc: object) -> None: ...


class GatewayClient(JsonApi):
    """The two endpoints of the gateway over HTTP (SPEC §4), each call retried on 429/5xx/timeouts/connection
    errors; every answer read with the 16 MiB cap of SPEC §14, streamed: over it, the call fails (not
    retried) and nothing of it is used."""

    give_up = SmsGatewayError

    def __init__(
        self,
        cfg: SmsConfig,
        *,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rand: random.Random | None = None,
    ) -> None:
        self.batch_size = cfg.batch_size
        super().__init__(
            what="sms gateway",
            base_url=cfg.url.rstrip("/"),
            token=secret_from_env(cfg.token_env),
            timeout_seconds=cfg.timeout_seconds,
            backoff=Backoff(cfg.max_attempts, cfg.backoff_seconds, cfg.max_backoff_seconds),
            log=log,
            headers={"Content-Type": "application/json"},
            transport=transport,
            sleep=sleep,
            rand=rand,
        )

    @classmethod
    def from_config(cls, cfg: MinyiConfig) -> GatewayClient:
        return cls(cfg.sms)

    def send_batch(self, messages: list[OutgoingSms]) -> list[SendResult]:
        """POST one batch (≤ batch_size); the results of the messages the gateway answered for."""
        body = orjson.dumps({"messages": [{"message_id": m.message_id, "to": m.to, "text": m.text} for m in messages]})
        doc, _ = self.call("POST", "/messages:batch", what="sms gateway /messages:batch", content=body)
        results = doc.get("results") if isinstance(doc, dict) else None
        if not isinstance(results, list):
            raise SmsGatewayError("sms gateway: response is not {'results': [...]}")
        out: list[SendResult] = []
        for r in results:
            if not isinstance(r, dict) or r.get("status") not in SEND_STATUSES or not r.get("message_id"):
                raise SmsGatewayError(f"sms gateway: malformed result {clean_text(str(r), 200)!r}")
            # message_id is only looked up among the batch's own ids; the error text is stored, so bounded
            error = clean_text(str(r["error"]), 500) if r.get("error") else None
            out.append(SendResult(str(r["message_id"]), r["status"], error))
        return out

    def fetch_replies(self, since: str | None, limit: int) -> ReplyPage:
        """One page of replies after cursor `since`; next_cursor None means nothing new."""
        params: dict[str, Any] = {"limit": limit}
        if since:
            params["since"] = since
        doc, _ = self.call("GET", "/replies", what="sms gateway /replies", params=params)
        if not isinstance(doc, dict) or not isinstance(doc.get("replies"), list):
            raise SmsGatewayError("sms gateway: response is not {'replies': [...], 'next_cursor': ...}")
        return ReplyPage(doc["replies"], self.next_cursor(doc.get("next_cursor")))
