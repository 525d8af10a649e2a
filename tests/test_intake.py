"""SPEC §3 intake rules and SPEC §4 phone normalisation, as pure functions."""

from __future__ import annotations

from datetime import date

import pytest

from minyi.tasks.rules.intake import Accepted, Quarantined, intake
from minyi.tasks.rules.phones import normalise_phone
from tests.support import TZ, make_record

DAY = date(2026, 11, 21)


def reasons(row: object) -> tuple[str, ...]:
    out = intake(row, DAY, TZ)
    return out.reasons if isinstance(out, Quarantined) else ()


def test_a_clean_row_is_accepted_with_its_phone_normalised() -> None:
    out = intake(make_record(1, DAY, phone="+86 138-1234-5678"), DAY, TZ)
    assert isinstance(out, Accepted)
    assert (out.phone_kind, out.phone_norm) == ("mobile", "13812345678")


@pytest.mark.parametrize(
    ("override", "reason"),
    [
        ({"record_id": None}, "missing_record_id"),
        ({"record_id": "  "}, "missing_record_id"),
        ({"channel": "wechat"}, "bad_channel"),
        ({"channel": None}, "bad_channel"),
        ({"handled_at": "not a time"}, "bad_handled_at"),
        ({"handled_at": 20261121}, "bad_handled_at"),
        ({"handled_at": "2026-11-19T23:59:59+08:00"}, "handled_at_out_of_window"),
        ({"handled_at": "2026-11-23T00:00:00+08:00"}, "handled_at_out_of_window"),
        ({"unit_code": ""}, "missing_unit_code"),
        ({"unit_code": None}, "missing_unit_code"),
    ],
)
def test_each_quarantine_reason(override: dict, reason: str) -> None:
    assert reasons(make_record(1, DAY, **override)) == (reason,)


def test_the_window_is_one_local_day_either_side_of_the_business_date() -> None:
    assert reasons(make_record(1, DAY, handled_at="2026-11-20T00:00:00+08:00")) == ()
    assert reasons(make_record(1, DAY, handled_at="2026-11-22T23:59:59+08:00")) == ()
    # 2026-11-19T16:30Z is 2026-11-20 00:30 in Shanghai: inside the window.
    assert reasons(make_record(1, DAY, handled_at="2026-11-19T16:30:00Z")) == ()


def test_a_row_that_is_not_an_object_is_quarantined_not_crashing_the_page() -> None:
    assert reasons(["not", "a", "record"]) == ("not_an_object",)
    assert reasons(None) == ("not_an_object",)


def test_a_source_field_map_renames_upstream_fields() -> None:
    row = make_record(1, DAY)
    row["id"] = row.pop("record_id")
    row["caller"] = row.pop("phone")
    out = intake(row, DAY, TZ, {"record_id": "id", "phone": "caller"})
    assert isinstance(out, Accepted) and out.record_id == row["id"] and out.phone_kind == "mobile"


def test_an_unclear_confidential_flag_is_treated_as_confidential() -> None:
    for value, expected in [(False, False), ("false", False), (0, False), (True, True), ("yes", True), ("?", True)]:
        out = intake(make_record(1, DAY, confidential=value), DAY, TZ)
        assert isinstance(out, Accepted) and out.confidential is expected, value


@pytest.mark.parametrize(
    ("raw", "kind", "norm"),
    [
        ("13812345678", "mobile", "13812345678"),
        ("138 1234 5678", "mobile", "13812345678"),
        ("+8613812345678", "mobile", "13812345678"),
        ("0086-138-1234-5678", "mobile", "13812345678"),
        ("12812345678", "invalid", None),
        ("053288886666", "landline", "053288886666"),
        ("0532-8888666", "landline", "05328888666"),
        ("1381234", "invalid", None),
        ("未提供", "invalid", None),
        ("", "missing", None),
        (None, "missing", None),
        (13812345678, "mobile", "13812345678"),
    ],
)
def test_phone_normalisation(raw: object, kind: str, norm: str | None) -> None:
    assert normalise_phone(raw) == (kind, norm)
