"""The intake rules of SPEC §3: turn one pulled JSON row into a record or a quarantined row.

Pure: no I/O, so every quarantine reason is a unit test. A quarantined row is
kept with its raw JSON and every reason that applies (not just the first), so
the upstream team can fix all of a row's problems at once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from datetime import time as dtime
from functools import lru_cache
from operator import itemgetter
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from minyi.tasks.config import CHANNELS
from minyi.tasks.rules.phones import normalise_phone

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
def window_instants(business_date: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
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
        lo, hi = window_instants(business_date, tz)
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


# ------------------------------------------------------------------------------------------ bulk path

# The column order of the rows `PageIntake` returns (the records table's bulk-write order).
BULK_COLUMNS = (
    "source",
    "record_id",
    "business_date",
    "channel",
    "matter",
    "handled_at",
    "unit_code",
    "officer_id",
    "citizen_name",
    "phone_norm",
    "phone_kind",
    "summary",
    "confidential",
    "ingested_at",
    "updated_at",
)
_MOBILE_SECOND = frozenset("3456789")
# The fields the bulk path reads, in one C call per row.
_FIELDS = itemgetter(
    "record_id",
    "channel",
    "handled_at",
    "unit_code",
    "matter",
    "officer_id",
    "citizen_name",
    "summary",
    "phone",
    "confidential",
)
_OUT = object()  # cache value of a handled_at that is unparseable or outside the window
_MAX_CACHED_INSTANTS = 400_000


def _default_instant_param(value: datetime) -> Any:
    return value


class PageIntake:
    """`intake()` for a whole page, straight to the DBAPI rows of the bulk write.

    Why: at a million rows a day, building an `Accepted`, then a tuple, and parsing
    and converting `handled_at` on every row cost as much as the database write.
    A day has only ~50k distinct second-resolution timestamps, so each raw
    `handled_at` string is parsed, window-checked and turned into its storage
    parameter once per pull. The common case (a dict whose fields are strings or
    null) is decided inline; any row that is refused or unusual goes through
    `intake()` itself, so the rules live in one place and the results are the same
    (tests/test_bad_input.py compares both on random rows).
    """

    def __init__(
        self,
        source: str,
        business_date: date,
        tz: ZoneInfo,
        fields: dict[str, str] | None,
        instant_param: Callable[[datetime], Any] = _default_instant_param,
        day_param: Any = None,
        instants: dict[str, Any] | None = None,
    ) -> None:
        self.source = source
        self.business_date = business_date
        self.tz = tz
        self.fields = fields or None
        self.instant_param = instant_param
        self.day_param = business_date if day_param is None else day_param
        # raw handled_at -> storage parameter or _OUT; may be shared by the sources of one day, zone and dialect
        self._instants: dict[str, Any] = {} if instants is None else instants

    def bulk_row(self, a: Accepted, now_param: Any) -> tuple[Any, ...]:
        """The DBAPI row of an `Accepted` (the general path)."""
        return (
            self.source,
            a.record_id,
            self.day_param,
            a.channel,
            a.matter,
            self.instant_param(a.handled_at),
            a.unit_code,
            a.officer_id,
            a.citizen_name,
            a.phone_norm,
            a.phone_kind,
            a.summary,
            a.confidential,
            now_param,
            now_param,
        )

    def _instant(self, raw: str) -> Any:
        """The storage parameter of a raw handled_at, or `_OUT` when it is bad or outside the window."""
        dt = parse_handled_at(raw, self.tz)
        if dt is None:
            value: Any = _OUT
        else:
            lo, hi = window_instants(self.business_date, self.tz)
            value = self.instant_param(dt) if lo <= dt < hi else _OUT
        if len(self._instants) >= _MAX_CACHED_INSTANTS:
            self._instants.clear()
        self._instants[raw] = value
        return value

    def run(self, rows: list[Any], now_param: Any) -> tuple[list[tuple[Any, ...]], list[Quarantined]]:
        """Accepted rows as DBAPI tuples (in `BULK_COLUMNS` order) and the quarantined rows, in page order."""
        out: list[tuple[Any, ...]] = []
        bad: list[Quarantined] = []
        append = out.append
        instants = self._instants
        source, day = self.source, self.day_param
        channels = _CHANNELS
        max_rid, max_uc, max_matter, max_off = (_LIMITS[k] for k in ("record_id", "unit_code", "matter", "officer_id"))
        fast = self.fields is None
        for row in rows:
            if fast and type(row) is dict:
                try:
                    rid, ch, ha, uc, m, off, name, summ, p, c = _FIELDS(row)
                except KeyError:  # a field left out: the general path decides
                    rid = None
                if (
                    type(rid) is str
                    and type(ch) is str
                    and type(ha) is str
                    and type(uc) is str
                    and (m is None or type(m) is str)
                    and (off is None or type(off) is str)
                    and (name is None or type(name) is str)
                    and (summ is None or type(summ) is str)
                ):
                    rid, ch, uc = rid.strip(), ch.strip(), uc.strip()
                    m = m.strip() if m is not None else ""
                    off = (off.strip() or None) if off is not None else None
                    inst = instants.get(ha)
                    if inst is None:
                        inst = self._instant(ha)
                    if (
                        rid
                        and uc
                        and ch in channels
                        and inst is not _OUT
                        and len(rid) <= max_rid
                        and len(uc) <= max_uc
                        and len(m) <= max_matter
                        and (off is None or len(off) <= max_off)
                        and "\x00" not in f"{rid}{uc}{m}{off}{name}{summ}"
                    ):
                        if (
                            type(p) is str
                            and len(p) == 11
                            and p[0] == "1"
                            and p[1] in _MOBILE_SECOND
                            and p.isascii()
                            and p.isdigit()
                        ):
                            kind, phone = "mobile", p
                        else:
                            kind, phone = normalise_phone(p)
                        append(
                            (
                                source,
                                rid,
                                day,
                                ch,
                                m,
                                inst,
                                uc,
                                off,
                                (name.strip()[:100] or None) if name is not None else None,
                                phone,
                                kind,
                                (summ.strip()[:4000] or None) if summ is not None else None,
                                False if c is False or c is None else (True if c is True else parse_confidential(c)),
                                now_param,
                                now_param,
                            )
                        )
                        continue
            result = intake(row, self.business_date, self.tz, self.fields)
            if isinstance(result, Accepted):
                append(self.bulk_row(result, now_param))
            else:
                bad.append(result)
        return out, bad
