"""The bad-input corpus (issue 9): records, replies, CLI arguments and config, property-based where it fits.

Each input is accepted, quarantined or refused with a one-line error of the
documented kind; nothing raises anything else and nothing crashes a batch.
"""

from __future__ import annotations

import os
import string
from datetime import date
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minyi.tasks.config import RECORD_FIELDS, ConfigError, parse_config
from minyi.tasks.errors import InputError
from minyi.tasks.rules.answers import parse_reply
from minyi.tasks.rules.days import parse_date, parse_instant
from minyi.tasks.rules.intake import Accepted, Quarantined, intake
from minyi.tasks.rules.lifecycle import parse_ref
from minyi.tasks.rules.phones import normalise_phone
from tests.faults_support import FIGURES
from tests.support import TZ, Env, make_record

DAY = date(2026, 11, 21)
SQLISH = [
    "'; DROP TABLE records; --",
    "1 OR 1=1",
    '" OR ""="',
    "Robert'); DELETE FROM followups;--",
    "%' UNION SELECT phone_norm FROM records --",
    "\\x00\\x1a",
]
WEIRD_TEXT = st.one_of(
    st.text(max_size=50),
    st.sampled_from(SQLISH),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=0, max_size=30),
    st.builds(lambda n, c: c * n, st.integers(100, 20_000), st.sampled_from(["x", "张", "\u0000", "🚓", "\u202e"])),
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | WEIRD_TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=10,
)
FIELD_VALUE = st.one_of(JSON, WEIRD_TEXT)
RECORD = st.builds(
    lambda base, over, drop: {k: v for k, v in {**base, **over}.items() if k not in drop},
    st.integers(0, 10_000).map(lambda n: make_record(n, DAY)),
    st.dictionaries(st.sampled_from(RECORD_FIELDS), FIELD_VALUE, max_size=5),
    st.sets(st.sampled_from(RECORD_FIELDS), max_size=3),
)
ANY_ROW = st.one_of(RECORD, JSON)
TALLY = FIGURES["bad_inputs"]  # per table / input kind, printed by `make faults` (tests/conftest.py)
FULL = os.environ.get("MINYI_FAULTS_FULL") == "1"  # `make faults`: ten times the examples
FAST = settings(max_examples=3000 if FULL else 300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(ANY_ROW)
def test_intake_never_raises_it_accepts_or_quarantines_with_reasons(row: Any) -> None:
    out = intake(row, DAY, TZ)
    TALLY["records"] += 1
    assert isinstance(out, Accepted | Quarantined)
    if isinstance(out, Quarantined):
        assert out.reasons and out.raw and len(out.fingerprint) == 64
    else:
        assert len(out.record_id) <= 128 and (out.citizen_name is None or len(out.citizen_name) <= 100)


HANDLED_AT = st.sampled_from(
    [
        "2026-11-21T08:06:49+08:00",
        "2026-11-21 08:06:49",
        " 2026-11-20T00:00:00+08:00 ",
        "2026-11-19T23:59:59+08:00",
        "2026-11-22T23:59:59",
        "2026-11-23T00:00:00+08:00",
        "2026-11-21T00:00:00Z",
        "2026-11-21T01:02:03.5+00:00",
        "昨天下午",
        "",
    ]
)
PAGE_ROW = st.one_of(
    RECORD,
    st.builds(lambda r, h: {**r, "handled_at": h}, RECORD.filter(lambda r: isinstance(r, dict)), HANDLED_AT),
    JSON,
)


@FAST
@given(
    st.lists(PAGE_ROW, max_size=40),
    st.sampled_from(["sqlite", "postgresql"]),
    st.sampled_from([None, {"record_id": "id", "phone": "caller"}]),
)
def test_the_bulk_intake_gives_exactly_the_rows_of_intake(rows: list[Any], dialect: str, fields: Any) -> None:
    """`PageIntake` (the ingest path) decides and converts every row as `intake()` + the old tuple building."""
    from minyi.tasks.store.records import bulk_instant, page_intake
    from tests.support import at

    now = bulk_instant(dialect, at("2026-11-22 09:00"))
    day = DAY.isoformat()
    want_rows, want_bad = [], []
    for row in rows:
        out = intake(row, DAY, TZ, fields)
        if isinstance(out, Quarantined):
            want_bad.append(out)
            continue
        a = out
        handled_at = bulk_instant(dialect, a.handled_at)
        want_rows.append(
            (
                *("police110", a.record_id, day, a.channel, a.matter, handled_at, a.unit_code, a.officer_id),
                *(a.citizen_name, a.phone_norm, a.phone_kind, a.summary, a.confidential, now, now),
            )
        )
    bulk = page_intake(dialect, "police110", DAY, TZ, fields)
    TALLY["records"] += len(rows)
    assert bulk.run(rows, now) == (want_rows, want_bad)
    assert bulk.run(rows, now) == (want_rows, want_bad)  # again, every handled_at now from the cache


EDGE_ROWS = [
    make_record(1, DAY, summary=" 长" * 3000, citizen_name="  " + "名" * 150),
    make_record(2, DAY, summary="   ", citizen_name="", officer_id="   ", matter=None),
    make_record(3, DAY, officer_id=None, citizen_name=None, summary=None, matter="  x  "),
    make_record(4, DAY, record_id="  R-4  ", channel=" 110 ", unit_code=" QD-A "),
    make_record(5, DAY, record_id="R" * 128, unit_code="U" * 64, matter="m" * 64, officer_id="o" * 64),
    make_record(6, DAY, record_id="R" * 129),
    make_record(7, DAY, officer_id="o" * 65),
    make_record(8, DAY, summary="a\x00b"),
    make_record(9, DAY, record_id=123, officer_id=45.5, matter=True),
    *[
        make_record(10 + i, DAY, phone=p)
        for i, p in enumerate(
            [
                "13812345678",
                "12812345678",
                "1381234567",
                "138123456789",
                "１３８１２３４５６７８",
                "+86 138-1234-5678",
                "0086 13812345678",
                "0532-8765-4321",
                13812345678,
                True,
                None,
                "",
                "未提供",
                "13812345678 ",
            ]
        )
    ],
    *[
        make_record(30 + i, DAY, confidential=c)
        for i, c in enumerate([True, False, None, 0, 1, 0.0, "false", " No ", "yes", "", "0", [], {}])
    ],
    *[
        make_record(50 + i, DAY, handled_at=h)
        for i, h in enumerate(
            [
                "2026-11-21T08:06:49+08:00",
                "2026-11-21T08:06:49+08:00",
                "2026-11-20T00:00:00",
                "2026-11-19T23:59:59",
                "2026-11-22T23:59:59.999999",
                "2026-11-23T00:00:00",
                "2026-11-20T16:00:00Z",
                "2026-11-20T15:59:59Z",
                " ",
                5,
            ]
        )
    ],
]


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_the_bulk_intake_gives_exactly_the_rows_of_intake_on_edge_rows(dialect: str) -> None:
    for fields in (None, {"officer_id": "officer"}):
        test_the_bulk_intake_gives_exactly_the_rows_of_intake.hypothesis.inner_test(EDGE_ROWS, dialect, fields)


@FAST
@given(WEIRD_TEXT | JSON)
def test_any_phone_field_is_classified_never_raised(raw: Any) -> None:
    kind, digits = normalise_phone(raw)
    assert kind in ("mobile", "landline", "invalid", "missing") and (digits is None or digits.isdigit())


@FAST
@given(WEIRD_TEXT)
def test_any_reply_text_parses_to_a_value_or_unrecognised(text: str) -> None:
    TALLY["replies"] += 1
    assert parse_reply(text) in ("satisfied", "basically_satisfied", "dissatisfied", "opt_out", "unrecognised")


@FAST
@given(WEIRD_TEXT)
def test_cli_dates_instants_and_references_are_parsed_or_refused_with_input_error(value: str) -> None:
    TALLY["cli"] += 3
    for parse in (parse_date, parse_instant, parse_ref):
        try:
            parse(value)
        except InputError as exc:
            assert str(exc) and "\n" not in str(exc).strip("\n").split("\n")[0] + "\n"[1:]


_KEYS = st.sampled_from(
    [
        "timezone",
        "retention_days",
        "clock",
        "followup",
        "sms",
        "notify",
        "slack",
        "wecom",
        "dingtalk",
        "sources",
        "units",
        "respone_days",
        "x",
    ]
)
_TOML_VALUE = st.one_of(
    st.integers(-(2**40), 2**40).map(str),
    st.text(alphabet=string.printable, max_size=20).map(lambda s: '"' + s.replace("\\", "").replace('"', "") + '"'),
    st.sampled_from(["true", "[]", "{}", "[1, 2]", '"Asia/Shanghai"', '"Mars/Base"', "-1", "1e400", "nan"]),
)


@FAST
@given(st.lists(st.tuples(_KEYS, _TOML_VALUE), max_size=5), st.text(max_size=80))
def test_any_config_text_is_accepted_or_refused_with_a_config_error(pairs: list[tuple[str, str]], noise: str) -> None:
    TALLY["config"] += 2
    for text in ("\n".join(f"{k} = {v}" for k, v in pairs), noise):
        try:
            parse_config(text)
        except ConfigError as exc:
            assert str(exc).startswith("config ")


@pytest.mark.parametrize(
    "text",
    [
        '[[sources]]\nname = "x\'; DROP TABLE records;--"\nurl = "http://a"',
        '[[units]]\ncode = "A"\nname = "a"\nchannel = ""',
        "[sms]\nbatch_size = 1e9",
        '[clock]\nmode = "lunar"',
        'timezone = "' + "x" * 10_000 + '"',
        "\x00",
    ],
)
def test_known_bad_configs_are_refused_naming_the_problem(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_config(text)


@settings(max_examples=1, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(ANY_ROW, min_size=150, max_size=150))
def test_a_page_of_bad_rows_is_stored_whole_records_and_quarantine_never_a_crash(env: Env, rows: list[Any]) -> None:
    from minyi.tasks.rules.intake import intake as run_intake
    from minyi.tasks.store.records import store_page
    from tests.support import at, config_toml

    env.write_config(config_toml())
    outs = [run_intake(r, DAY, TZ) for r in rows]
    accepted = {o.record_id: o for o in outs if isinstance(o, Accepted)}
    quarantined = {o.fingerprint: o for o in outs if isinstance(o, Quarantined)}
    store_page(
        env.engine,
        "police110",
        DAY,
        list(accepted.values()),
        list(quarantined.values()),
        len(rows),
        None,
        at("2026-11-22 09:00"),
    )
    TALLY["records"] += len(rows)
    assert env.scalar("SELECT COUNT(*) FROM records") == len(accepted)
    assert env.scalar("SELECT COUNT(*) FROM quarantine") == len(quarantined)


def test_nul_bytes_and_oversized_text_in_a_page_are_stored_not_crashed_on(env: Env) -> None:
    from minyi.tasks.store.records import store_page
    from tests.support import at, config_toml

    env.write_config(config_toml())
    rows = [
        make_record(1, DAY, citizen_name="张\x00三", summary="噪音\x00" * 5000, officer_id="0\x001"),
        make_record(2, DAY, channel="\x00110", summary="'; DROP TABLE records; --"),
        make_record(3, DAY, record_id="R-\x00-3"),
    ]
    outs = [intake(r, DAY, TZ) for r in rows]
    store_page(
        env.engine,
        "police110",
        DAY,
        [o for o in outs if isinstance(o, Accepted)],  # type: ignore[misc]
        [o for o in outs if isinstance(o, Quarantined)],  # type: ignore[misc]
        len(rows),
        None,
        at("2026-11-22 09:00"),
    )
    TALLY["records"] += len(rows)
    stored = env.scalar("SELECT COUNT(*) FROM records") + env.scalar("SELECT COUNT(*) FROM quarantine")
    assert stored == 3
    assert env.scalar("SELECT citizen_name FROM records WHERE record_id = 'R--3'") == "张三"


@settings(max_examples=1, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.tuples(WEIRD_TEXT, WEIRD_TEXT), min_size=60, max_size=60))
def test_a_page_of_strange_replies_is_stored_whole_and_the_cursor_moves_on(
    env: Env, texts: list[tuple[str, str]]
) -> None:
    from datetime import UTC, datetime

    from minyi.tasks.adapters.sms import Reply
    from minyi.tasks.stages.replies import store_reply_page

    replies = [
        Reply(f"r{i}", sender[:40], text + "\x00", datetime(2026, 11, 22, 10, tzinfo=UTC), None)
        for i, (sender, text) in enumerate(texts)
    ]
    summary = store_reply_page(env.engine, replies, "c:60", datetime(2026, 11, 22, 11, tzinfo=UTC))
    TALLY["replies"] += len(replies)
    assert summary.new == 60 and summary.unmatched == 60
    assert env.scalar("SELECT cursor FROM sms_cursors") == "c:60"


@settings(
    max_examples=20 if os.environ.get("MINYI_FAULTS_FULL") == "1" else 3,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
@given(
    st.lists(
        st.one_of(st.none(), st.integers(), WEIRD_TEXT, st.dictionaries(WEIRD_TEXT, WEIRD_TEXT, max_size=5)),
        min_size=10,
        max_size=40,
    )
)
def test_any_replies_page_is_applied_or_rejected_reply_by_reply_never_raised(env: Env, items: list[Any]) -> None:
    from datetime import UTC, datetime

    from minyi.tasks.stages.replies import split_page, store_reply_page

    as_of = datetime(2026, 11, 22, 11, tzinfo=UTC)
    good, bad = split_page(items, as_of)
    summary = store_reply_page(env.engine, good, "c:x", as_of, bad)
    TALLY["sms_replies"] += len(items)
    assert summary.fetched == len(items) and summary.rejected == len(bad)
    assert env.scalar("SELECT cursor FROM sms_cursors") == "c:x"
