"""Privacy (PIPL): masking in free text and logs, phone pseudonyms, and retention's de-identification."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import date, timedelta

import pytest

from minyi.sim.sms_gateway import SmsGateway
from minyi.tasks.rules.intake import intake
from minyi.tasks.rules.masking import install_log_masking, mask_text, phone_hmac
from minyi.tasks.stages.retention import apply_retention, cutoff_date, deidentified_raw
from minyi.tasks.store.records import store_page
from tests.support import TZ, Env, at, make_record
from tests.test_followups import add_records, configure, flush, plan, rid

OLD = date(2026, 5, 1)
NEW = date(2026, 11, 21)
AS_OF = at("2026-11-22 10:00")  # 180 days before 2026-11-22 is 2026-05-26: OLD is past retention, NEW is not


@pytest.fixture
def gateway() -> Iterator[SmsGateway]:
    gw = SmsGateway().start()
    yield gw
    gw.release.set()
    gw.stop()


@pytest.mark.parametrize(
    "written",
    ["13812345678", "+86 138-1234-5678", "138 1234 5678", "0086 13812345678", "8613812345678", "（138-1234-5678）"],
)
def test_a_mobile_number_in_free_text_is_masked_however_it_is_written(written: str) -> None:
    assert "1234" not in mask_text(f"市民来电 {written} 反映噪音")
    assert "138****5678" in mask_text(f"市民来电 {written} 反映噪音")


def test_longer_digit_runs_and_landlines_are_not_mistaken_for_mobiles() -> None:
    # a landline is masked as a landline (first 3, last 4), not taken for a mobile
    assert mask_text("工单 1381234567890 座机 0532-12345678") == "工单 1381234567890 座机 053*****5678"


def test_every_log_record_is_masked_before_any_handler_sees_it(caplog: pytest.LogCaptureFixture) -> None:
    install_log_masking()
    with caplog.at_level(logging.INFO):
        logging.getLogger("minyi.test").info("reply from %s: %s", "13912345678", "满意")
    assert "13912345678" not in caplog.text and "139****5678" in caplog.text


def test_a_phone_pseudonym_is_stable_keyed_and_never_the_number(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINYI_PII_KEY", "k1")
    a = phone_hmac("13812345678")
    assert a == phone_hmac("13812345678") and a is not None and a.startswith("h:") and len(a) <= 32
    assert "13812345678" not in a and phone_hmac(a) == a
    monkeypatch.setenv("MINYI_PII_KEY", "k2")
    assert phone_hmac("13812345678") != a


def test_a_de_identified_quarantined_row_keeps_only_what_identifies_no_one() -> None:
    raw = '{"record_id":"x1","channel":"999","citizen_name":"张三","phone":"13812345678","summary":"某某"}'
    out = deidentified_raw(raw)
    assert "张三" not in out and "13812345678" not in out and "某某" not in out and '"record_id":"x1"' in out


def test_the_cutoff_keeps_exactly_retention_days_identified() -> None:
    assert cutoff_date(AS_OF, TZ, 180) == date(2026, 11, 22) - timedelta(days=180)


def test_retention_de_identifies_old_records_and_follow_ups_and_keeps_every_count(
    env: Env, gateway: SmsGateway
) -> None:
    rt = configure(env, gateway)
    add_records(rt, [make_record(i, OLD, summary=f"市民13900000{i:03d}来电") for i in range(6)], day=OLD)
    add_records(rt, [make_record(i, NEW) for i in range(4)], day=NEW)
    store_page(rt.engine, "police110", OLD, [], [intake(make_record(99, OLD, channel="bad"), OLD, TZ)], 1, None, AS_OF)  # type: ignore[list-item]
    plan(rt, as_of=at("2026-05-02 09:00"), day=OLD)
    flush(rt, as_of=at("2026-05-02 09:00"))
    plan(rt, as_of=AS_OF, day=NEW)
    gateway.reply_to(f"minyi:police110:{rid(0, OLD)}", "3", at("2026-05-02 10:00"))
    gateway.reply_to(f"minyi:police110:{rid(1, OLD)}", "张三说太吵了", at("2026-05-02 10:01"))
    from minyi.tasks.adapters.sms import GatewayClient
    from minyi.tasks.stages.replies import ingest_replies

    with GatewayClient.from_config(rt.config) as client:
        ingest_replies(rt.engine, client, at("2026-05-02 11:00"))
    counts = "SELECT (SELECT COUNT(*) FROM records), (SELECT COUNT(*) FROM followups), (SELECT COUNT(*) FROM answers)"
    before = env.rows(counts)[0]
    distinct_before = env.scalar("SELECT COUNT(DISTINCT phone_norm) FROM records WHERE business_date = :d", d=OLD)

    summary = apply_retention(rt.engine, AS_OF, TZ, 180)

    assert summary.dates == [OLD.isoformat()] and summary.records == 6 and summary.quarantined == 1
    assert env.rows(counts)[0] == before
    old = env.rows("SELECT citizen_name, summary, phone_norm FROM records WHERE business_date = :d", d=OLD)
    assert all(n is None and s is None and p.startswith("h:") for n, s, p in old)
    assert (
        env.scalar("SELECT COUNT(DISTINCT phone_norm) FROM records WHERE business_date = :d", d=OLD) == distinct_before
    )
    assert (
        env.scalar("SELECT COUNT(*) FROM followups WHERE business_date = :d AND phone_norm NOT LIKE 'h:%'", d=OLD) == 0
    )
    assert env.scalar("SELECT COUNT(*) FROM sms_replies WHERE text LIKE '%张三%' OR phone_norm NOT LIKE 'h:%'") == 0
    assert env.scalar("SELECT raw FROM quarantine").find("13800000099") == -1
    new = env.rows("SELECT citizen_name, phone_norm FROM records WHERE business_date = :d", d=NEW)
    assert all(n == "张三" and p.startswith("138") for n, p in new)
    assert env.scalar("SELECT COUNT(*) FROM answers WHERE value = 'dissatisfied'") == 1  # the answer's value stays

    again = apply_retention(rt.engine, AS_OF, TZ, 180)
    assert again.days == 0 and env.rows("SELECT phone_norm FROM records WHERE business_date = :d", d=OLD) == [
        (p,) for _, _, p in old
    ]


def test_minyi_retention_de_identifies_from_the_command_line(
    env: Env, gateway: SmsGateway, prefect_harness: None
) -> None:
    import subprocess
    import sys

    from prefect.settings import PREFECT_API_URL

    rt = configure(env, gateway)
    add_records(rt, [make_record(i, OLD) for i in range(3)], day=OLD)
    cli_env = {**env.cli_env(), "PREFECT_API_URL": PREFECT_API_URL.value() or ""}
    done = subprocess.run(
        [sys.executable, "-m", "minyi.cli", "retention", "--as-of", "2026-11-22T10:00:00+08:00"],
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "1 date(s), 3 records" in done.stdout
    assert env.scalar("SELECT COUNT(*) FROM records WHERE citizen_name IS NOT NULL") == 0
