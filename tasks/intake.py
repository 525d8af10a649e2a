"""The intake rules of SPEC §3: turn one pulled JSON row into a record or a quarantined row.

Pure: no I/O, so every quarantine reason is a unit test. A quarantined row is
kept with its raw JSON and every reason that applies (not just the first), so
the upstream team can fix all of a row's problems at once.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from datetime import time as dtime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from minyi.tasks.config import CHANNELS
from minyi.tasks.phones import normalise_phone

_CHANNELS = frozenset(CHANNELS)
_FALSE = frozenset({"false", "0", "no", "n", "off", ""})

# Quarantine reasons, as stored and reported.
MISSING_RECORD_ID = "missing_record_id"
BAD_CHANNEL = "bad_channel"
BAD_HANDLED_AT = "bad_handled_at"
HANDLED_AT_OUT_OF_WINDOW = "handled_at_out_of_window"
MISSING_UNIT_CODE = "missing_unit_code"
NOT_AN_OBJECT = "not_an_object"
FIELD_TOO_LONG = "field_too_long"

_LIMITS = {"record_id": 128, "unit_code": 64, "matter": 64, "officer_id": 64}


@dataclass(frozen=True, slots=True)
class Accepted:
    """A row that passed intake, ready for the bulk upsert."""

    record_id: str
    channel: str
    matter: str
    handled_at: datetime
    unit_code: str
    officer_id: str | None
    citizen_name: str | None
    phone_norm: str | None
    phone_kind: str
    summary: str | None
    confidential: bool


@dataclass(frozen=True, slots=True)
class Quarantined:
    """A refused row: the raw JSON, every reason, and its record_id when it had one."""

    record_id: str | None
    reasons: tuple[str, ...]
    raw: str
    fingerprint: str


def _nul_free(value: Any) -> Any:
    return value.replace("\x00", "") if isinstance(value, str) else value


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def parse_handled_at(value: Any, tz: ZoneInfo) -> datetime | None:
    """ISO 8601; a timestamp without an offset is taken as local time in the configured zone."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        dt = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return dt.replace(tzinfo=tz) if dt.tzinfo is None else dt


def parse_confidential(value: Any) -> bool:
    """Anything not clearly false is confidential: a wrong guess must never send an SMS."""
    if value is None or value is False:
        return False
    if value is True:
        return True
    if isinstance(value, str) and value.strip().lower() in _FALSE:
        return False
    return not (isinstance(value, int | float) and value == 0)


def rename_fields(row: dict[str, Any], fields: dict[str, str]) -> dict[str, Any]:
    """Apply a source's `fields` map (our name → upstream name)."""
    if not fields:
        return row
    out = dict(row)
    for ours, theirs in fields.items():
        out[ours] = row.get(theirs)
    return out


def _quarantine(row: Any, record_id: str | None, reasons: list[str]) -> Quarantined:
    raw = orjson.dumps(row, option=orjson.OPT_SORT_KEYS).decode() if _jsonable(row) else repr(row)
    return Quarantined(record_id, tuple(reasons), raw, hashlib.sha256(raw.encode()).hexdigest())


def _jsonable(row: Any) -> bool:
    try:
        orjson.dumps(row)
    except TypeError:
        return False
    return True


@lru_cache(maxsize=64)
def _window_instants(business_date: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """[local midnight of the day before, local midnight two days after): `window()` as instants."""
    lo, hi = window(business_date)
    return datetime.combine(lo, dtime(0), tz), datetime.combine(hi + timedelta(days=1), dtime(0), tz)


def intake(row: Any, business_date: date, tz: ZoneInfo, fields: dict[str, str] | None = None) -> Accepted | Quarantined:
    """Apply SPEC §3's quarantine rules to one row pulled for `business_date`.

    Runs once per pulled row (a million a day), so the common case — string fields —
    is tested inline rather than through helpers; the rules are the same.
    """
    if type(row) is not dict:
        if not isinstance(row, dict):
            return _quarantine(row, None, [NOT_AN_OBJECT])
    r = rename_fields(row, fields) if fields else row
    reasons: list[str] = []

    v = r.get("record_id")
    record_id = v.strip() if type(v) is str else _text(v)
    if not record_id:
        reasons.append(MISSING_RECORD_ID)
        record_id = None
    v = r.get("channel")
    channel = v.strip() if type(v) is str else _text(v)
    if channel not in _CHANNELS:
        reasons.append(BAD_CHANNEL)
    handled_at = parse_handled_at(r.get("handled_at"), tz)
    if handled_at is None:
        reasons.append(BAD_HANDLED_AT)
    else:
        lo, hi = _window_instants(business_date, tz)
        if not lo <= handled_at < hi:
            reasons.append(HANDLED_AT_OUT_OF_WINDOW)
    v = r.get("unit_code")
    unit_code = v.strip() if type(v) is str else _text(v)
    if not unit_code:
        reasons.append(MISSING_UNIT_CODE)
    v = r.get("matter")
    matter = (v.strip() if type(v) is str else _text(v)) or ""
    v = r.get("officer_id")
    officer_id = (v.strip() if type(v) is str else _text(v)) or None
    if (
        (record_id is not None and len(record_id) > _LIMITS["record_id"])
        or (unit_code is not None and len(unit_code) > _LIMITS["unit_code"])
        or len(matter) > _LIMITS["matter"]
        or (officer_id is not None and len(officer_id) > _LIMITS["officer_id"])
    ):
        reasons.append(FIELD_TOO_LONG)
    if reasons:
        return _quarantine(row, record_id[:256].replace("\x00", "") if record_id else None, reasons)

    kind, phone = normalise_phone(r.get("phone"))
    v = r.get("citizen_name")
    name = v.strip() if type(v) is str else _text(v)
    v = r.get("summary")
    summary = v.strip() if type(v) is str else _text(v)
    assert record_id and channel and handled_at and unit_code  # narrowed by the checks above
    # PostgreSQL text cannot hold NUL: one C-level scan per row, and a clean copy only for the rare bad row.
    if "\x00" in f"{record_id}{unit_code}{matter}{officer_id}{name}{summary}":
        record_id, unit_code, matter = _nul_free(record_id), _nul_free(unit_code), _nul_free(matter)
        officer_id, name, summary = _nul_free(officer_id), _nul_free(name), _nul_free(summary)
    return Accepted(
        record_id=record_id,
        channel=channel,
        matter=matter,
        handled_at=handled_at,
        unit_code=unit_code,
        officer_id=officer_id,
        citizen_name=name[:100] if name else None,
        phone_norm=phone,
        phone_kind=kind,
        summary=summary[:4000] if summary else None,
        confidential=parse_confidential(r.get("confidential")),
    )


def window(business_date: date) -> tuple[date, date]:
    """The local dates a record pulled for `business_date` may carry in handled_at."""
    return business_date - timedelta(days=1), business_date + timedelta(days=1)
