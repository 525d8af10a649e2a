"""Bounds on every input from outside (SPEC §4, §14): pure checks, no I/O.

- `MAX_ANSWER_BYTES`: every upstream answer is read with a 16 MiB cap (`read_capped` streams the body
  and stops at the cap, so a huge answer never sits whole in memory).
- `has_control`: a NUL or another control character (C0 other than tab/newline, DEL, C1).
- `escape_controls`: the same characters written as `\\u00XX`, so a raw value can be stored and shown.
- `check_reply`: one reply of a replies page, taken as given or refused with a reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    import httpx

MAX_ANSWER_BYTES = 16 * 1024 * 1024
MAX_REPLY_ID = 128
MAX_SENDER = 64
MAX_MESSAGE_ID = 64
MAX_REPLY_TEXT = 1000
MAX_CURSOR = 1024
MAX_RAW_KEPT = 8192  # a rejected reply's raw JSON is kept up to this many characters (then marked cut)
REPLY_PAST = timedelta(days=400)
REPLY_FUTURE = timedelta(days=1)

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")

# Rejection reasons, as stored in rejected_replies.reason
NOT_AN_OBJECT = "not_an_object"
REPLY_ID_MISSING = "reply_id_missing"
REPLY_ID_TOO_LONG = "reply_id_too_long"
CONTROL_CHARACTER = "control_character"
FROM_TOO_LONG = "from_too_long"
MESSAGE_ID_TOO_LONG = "message_id_too_long"
TEXT_TOO_LONG = "text_too_long"
NOT_TEXT = "field_not_text"
RECEIVED_AT_UNPARSEABLE = "received_at_unparseable"
RECEIVED_AT_OUT_OF_RANGE = "received_at_out_of_range"


class AnswerTooLarge(Exception):
    """An upstream answer went over MAX_ANSWER_BYTES; nothing of it was parsed."""


def has_control(value: str) -> bool:
    return _CONTROL.search(value) is not None


def escape_controls(value: str) -> str:
    return _CONTROL.sub(lambda m: f"\\u{ord(m.group()):04x}", value)


def clean_text(value: str, limit: int) -> str:
    """Free text from outside made storable: control characters escaped, at most `limit` characters."""
    return escape_controls(value)[:limit]


def read_capped(resp: httpx.Response, cap: int = MAX_ANSWER_BYTES) -> bytes:
    """The body of a streamed response, or AnswerTooLarge as soon as it passes `cap` (never read whole)."""
    limit = f"{cap >> 20} MiB" if cap % (1 << 20) == 0 else f"{cap}-byte"
    declared = resp.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > cap:
        raise AnswerTooLarge(f"answer of {int(declared)} bytes is over the {limit} cap")
    chunks: list[bytes] = []
    size = 0
    for chunk in resp.iter_bytes():
        size += len(chunk)
        if size > cap:
            raise AnswerTooLarge(f"answer over the {limit} cap")
        chunks.append(chunk)
    return b"".join(chunks)


@dataclass(frozen=True)
class Reply:
    reply_id: str
    sender: str
    text: str
    received_at: datetime
    message_id: str | None


@dataclass(frozen=True)
class RefusedReply:
    reason: str
    reply_id: str | None  # escaped, cut to MAX_REPLY_ID, for the operator looking for it
    raw: str  # the raw JSON, control characters escaped, cut to MAX_RAW_KEPT


def raw_json(item: Any) -> str:
    try:
        raw = orjson.dumps(item, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:
        raw = repr(item)
    raw = escape_controls(raw)  # JSON escapes C0 already; DEL and C1 are escaped here
    if len(raw) > MAX_RAW_KEPT:
        raw = f"{raw[:MAX_RAW_KEPT]}…(cut, {len(raw)} characters)"
    return raw


def _as_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise TypeError


def check_reply(item: Any, as_of: datetime) -> Reply | RefusedReply:
    """SPEC §4: a reply is taken as given, or refused with the first reason that applies."""
    if not isinstance(item, dict):
        return RefusedReply(NOT_AN_OBJECT, None, raw_json(item))
    shown_id = item.get("reply_id")
    shown = escape_controls(shown_id)[:MAX_REPLY_ID] if isinstance(shown_id, str) and shown_id else None

    def refuse(reason: str) -> RefusedReply:
        return RefusedReply(reason, shown, raw_json(item))

    try:
        reply_id = _as_text(item.get("reply_id"))
        sender = _as_text(item.get("from")) or ""
        body = _as_text(item.get("text")) or ""
        message_id = _as_text(item.get("message_id")) or None
        received_raw = item.get("received_at")
    except TypeError:
        return refuse(NOT_TEXT)
    if not reply_id:
        return refuse(REPLY_ID_MISSING)
    if len(reply_id) > MAX_REPLY_ID:
        return refuse(REPLY_ID_TOO_LONG)
    if any(has_control(v) for v in (reply_id, sender, body, message_id or "")) or (
        isinstance(received_raw, str) and has_control(received_raw)
    ):
        return refuse(CONTROL_CHARACTER)
    if len(sender) > MAX_SENDER:
        return refuse(FROM_TOO_LONG)
    if message_id is not None and len(message_id) > MAX_MESSAGE_ID:
        return refuse(MESSAGE_ID_TOO_LONG)
    if len(body) > MAX_REPLY_TEXT:
        return refuse(TEXT_TOO_LONG)
    if not isinstance(received_raw, str) or len(received_raw) > 64:
        return refuse(RECEIVED_AT_UNPARSEABLE)
    try:
        received = datetime.fromisoformat(received_raw.strip())
    except ValueError:
        return refuse(RECEIVED_AT_UNPARSEABLE)
    if received.tzinfo is None or received.utcoffset() is None:
        return refuse(RECEIVED_AT_UNPARSEABLE)
    try:
        in_range = as_of - REPLY_PAST <= received <= as_of + REPLY_FUTURE
    except OverflowError:
        in_range = False
    if not in_range:
        return refuse(RECEIVED_AT_OUT_OF_RANGE)
    return Reply(reply_id, sender, body, received, message_id)
