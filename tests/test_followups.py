"""Follow-ups (SPEC §4) against the store and the local SMS gateway over real HTTP.

Records are written straight into the store (ingest has its own tests); planning,
the SMS relay, reply ingestion and visits run as the follow-up stage runs them.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import Any

import pytest

from minyi.sim.sms_gateway import GatewayFault, SmsGateway
from minyi.tasks.rules.intake import Accepted, intake
from minyi.tasks.runtime import Runtime, load_runtime
from minyi.tasks.stages.sms import IN_FLIGHT
from minyi.tasks.store.records import store_page
from tests.support import TZ, Env, at, config_toml, make_record

DAY = date(2026, 11, 21)
MORNING = at("2026-11-22 09:00")


@pytest.fixture
def gateway() -> Iterator[SmsGateway]:
    gw = SmsGateway().start()
    yield gw
    gw.release.set()
    gw.stop()


def configure(env: Env, gateway: SmsGateway, **followup: Any) -> Runtime:
    sms = {"url": gateway.url, "batch_size": 50, "backoff_seconds": 0.01, "max_backoff_seconds": 0.02}
    sms["timeout_seconds"] = followup.pop("timeout_seconds", 5)
    if "claim_seconds" in followup:
        sms["claim_seconds"] = followup.pop("claim_seconds")
    sections: dict[str, dict[str, Any]] = {"sms": sms}
    if followup:
        sections["followup"] = followup
    env.write_config(config_toml(sections=sections))
    rt = load_runtime()
    from minyi.tasks.store.units import sync_units

    with rt.engine.begin() as conn:
        sync_units(conn, rt.config)
    return rt


def add_records(rt: Runtime, rows: list[dict[str, Any]], day: date = DAY, source: str = "police110") -> None:
    accepted = [intake(r, day, TZ) for r in rows]
    assert all(isinstance(a, Accepted) for a in accepted), accepted
    store_page(rt.engine, source, day, accepted, [], len(rows), None, MORNING)  # type: ignore[arg-type]


def plan(rt: Runtime, as_of: datetime = MORNING, day: date = DAY) -> Any:
    from minyi.tasks.stages.eligibility import plan_followups

    with rt.engine.begin() as conn:
        return plan_followups(conn, day, as_of, rt.config)


def flush(rt: Runtime, as_of: datetime = MORNING) -> Any:
    from minyi.tasks.adapters.sms import GatewayClient
    from minyi.tasks.stages.sms import flush_outbox

    with GatewayClient.from_config(rt.config) as client:
        return flush_outbox(rt.engine, rt.config, client, as_of)


def replies(rt: Runtime, as_of: datetime) -> Any:
    from minyi.tasks.stages.replies import ingest_replies

    with gateway_client(rt) as client:
        return ingest_replies(rt.engine, client, as_of, page_size=3)


def gateway_client(rt: Runtime) -> Any:
    from minyi.tasks.adapters.sms import GatewayClient

    return GatewayClient.from_config(rt.config)


def followup_of(env: Env, record_id: str) -> Any:
    rows = env.rows(
        "SELECT plan, skip_reason, sms_status, manual_reason, satisfaction, message_id, sent_at, visit_outcome "
        "FROM followups WHERE record_id = :r",
        r=record_id,
    )
    assert len(rows) == 1, f"{record_id}: {rows}"
    return rows[0]


def rid(n: int, day: date = DAY) -> str:
    return make_record(n, day)["record_id"]


# --- the reply parser (pure) ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "meaning"),
    [
        ("1", "satisfied"),
        ("１", "satisfied"),
        ("满意", "satisfied"),
        ("2", "basically_satisfied"),
        ("２", "basically_satisfied"),
        ("基本满意", "basically_satisfied"),
        ("3", "dissatisfied"),
        (" 3 ", "dissatisfied"),
        ("３\n", "dissatisfied"),
        ("不满意", "dissatisfied"),
        ("TD", "opt_out"),
        ("td", "opt_out"),
        ("Td", "opt_out"),
        ("ＴＤ", "opt_out"),
        ("退订", "opt_out"),
        ("　退订　", "opt_out"),
        ("非常满意", "unrecognised"),
        ("满意!", "unrecognised"),
        ("13", "unrecognised"),
        ("4", "unrecognised"),
        ("", "unrecognised"),
        ("谢谢", "unrecognised"),
    ],
)
def test_every_reply_form_is_parsed_as_the_spec_says(reply: str, meaning: str) -> None:
    from minyi.tasks.rules.answers import parse_reply

    assert parse_reply(reply) == meaning


def test_the_send_window_is_09_00_inclusive_to_21_00_exclusive_local_time() -> None:
    from minyi.tasks.config import parse_config
    from minyi.tasks.stages.sms import in_send_window

    cfg = parse_config("")
    assert not in_send_window(at("2026-11-22 08:59:59"), cfg)
    assert in_send_window(at("2026-11-22 09:00"), cfg)
    assert in_send_window(at("2026-11-22 20:59:59"), cfg)
    assert not in_send_window(at("2026-11-22 21:00"), cfg)
    assert in_send_window(datetime.fromisoformat("2026-11-22T01:30:00+00:00"), cfg)  # 09:30 in Shanghai


def test_the_sms_names_the_unit_and_the_matter() -> None:
    from minyi.tasks.stages.eligibility import sms_text

    assert sms_text("青岛公安", "昨日", "市南分局八大关派出所", "household_registration") == (
        "【青岛公安】您好，您昨日在市南分局八大关派出所办理的户籍业务已办结。回复1满意，2基本满意，3不满意。回复TD退订。"
    )


def test_the_text_is_composed_when_the_message_leaves_naming_unit_matter_and_day(env: Env, gateway: SmsGateway) -> None:
    from minyi.tasks.stages.eligibility import sms_text
    from tests.support import UNITS

    rt = configure(env, gateway)
    later = DAY + timedelta(days=1)
    add_records(rt, [make_record(1, DAY, matter="entry_exit", unit_code="QD-XX-NEW")])
    plan(rt)  # 2026-11-22 09:00, but no relay runs that day: the message waits
    add_records(rt, [make_record(2, later)], day=later)
    next_morning = at("2026-11-23 09:00")
    plan(rt, as_of=next_morning, day=later)
    flush(rt, as_of=next_morning)  # `later` is yesterday; DAY's message, planned a day earlier, is not
    texts = {d.to: d.text for d in gateway.delivered.values()}
    assert texts == {
        make_record(1, DAY)["phone"]: sms_text("青岛公安", "于11月21日", None, "entry_exit"),
        make_record(2, later)["phone"]: sms_text("青岛公安", "昨日", UNITS[2]["name"], "police_call"),
    }
    assert "在公安机关办理的出入境业务" in texts[make_record(1, DAY)["phone"]]  # an unknown unit, named generically


# --- eligibility, each rule and its reason --------------------------------------------------------


def test_a_confidential_record_is_skipped_as_confidential_even_with_a_good_mobile(
    env: Env, gateway: SmsGateway
) -> None:
    rt = configure(env, gateway)
    add_records(rt, [make_record(1, DAY, confidential=True, phone="0532 8888 6666"), make_record(2, DAY)])
    plan(rt)
    assert followup_of(env, rid(1))[:3] == ("skipped", "confidential", None)
    assert followup_of(env, rid(2))[:3] == ("sms", None, "queued")


def test_a_landline_gets_a_manual_visit_and_no_sms(env: Env, gateway: SmsGateway) -> None:
    rt = configure(env, gateway)
    add_records(rt, [make_record(1, DAY, phone="0532-8888 6666")])
    plan(rt)
    flush(rt)
    assert followup_of(env, rid(1))[:4] == ("manual", None, None, "landline")
    assert gateway.delivered == {}


@pytest.mark.parametrize("phone", ["12345", "未提供", "1381234", "", None, "+1 415 555 0100"])
def test_a_garbage_or_missing_phone_is_skipped_as_invalid_phone(env: Env, gateway: SmsGateway, phone: Any) -> None:
    rt = configure(env, gateway)
    add_records(rt, [make_record(1, DAY, phone=phone)])
    plan(rt)
    assert followup_of(env, rid(1))[:2] == ("skipped", "invalid_phone")


def test_a_phone_that_ever_replied_td_is_skipped_as_opted_out_whatever_the_source(
    env: Env, gateway: SmsGateway
) -> None:
    rt = configure(env, gateway)
    gateway.inject_reply("+86 138-0000-0001", "TD", at("2026-11-20 10:00"))  # matches no follow-up at all
    replies(rt, at("2026-11-22 08:00"))
    add_records(rt, [make_record(1, DAY)], source="hotline12345")
    plan(rt)
    flush(rt)
    assert followup_of(env, rid(1))[:2] == ("skipped", "opted_out")
    assert gateway.delivered == {}


def test_a_backfilled_record_older_than_max_age_days_is_skipped_as_stale_and_never_sent(
    env: Env, gateway: SmsGateway
) -> None:
    rt = configure(env, gateway, max_age_days=3)
    old, edge = date(2026, 11, 18), date(2026, 11, 19)  # as_of's date 2026-11-22: 4 and 3 days back
    add_records(rt, [make_record(1, old)], day=old)
    add_records(rt, [make_record(2, edge)], day=edge)
    plan(rt, day=old)
    plan(rt, day=edge)
    flush(rt)
    assert followup_of(env, rid(1, old))[:2] == ("skipped", "stale")
    assert followup_of(env, rid(2, edge))[:3] == ("sms", None, "sent")
    assert list(gateway.delivered) == [f"minyi:police110:{rid(2, edge)}"]


def test_a_queued_sms_that_goes_stale_while_waiting_is_withdrawn_not_sent(env: Env, gateway: SmsGateway) -> None:
    rt = configure(env, gateway, max_age_days=3)
    add_records(rt, [make_record(1, DAY)])
    plan(rt, as_of=at("2026-11-22 08:00"))
    flush(rt, as_of=at("2026-11-25 21:30"))  # still 3 days: waits for the window
    flush(rt, as_of=at("2026-11-26 09:00"))  # 5 days: too late
    assert followup_of(env, rid(1))[:3] == ("skipped", "stale", None)
    assert gateway.delivered == {}


def test_one_sms_per_phone_per_day_across_sources_keeps_the_latest_handled_record(
    env: Env, gateway: SmsGateway
) -> None:
    rt = configure(env, gateway)
    phone = "13900000009"
    add_records(rt, [make_record(1, DAY, phone=phone, handled_at="2026-11-21T10:00:00+08:00")])
    add_records(
        rt,
        [make_record(2, DAY, phone=f"+86{phone}", handled_at="2026-11-21T15:00:00+08:00")],
        source="hotline12345",
    )
    add_records(rt, [make_record(3, DAY, phone=phone, handled_at="2026-11-21T12:00:00+08:00")], source="window")
    plan(rt)
    flush(rt)
    assert followup_of(env, rid(2))[:3] == ("sms", None, "sent")
    assert followup_of(env, rid(1))[:2] == ("skipped", "duplicate_phone")
    assert followup_of(env, rid(3))[:2] == ("skipped", "duplicate_phone")
    assert [d.to for d in gateway.delivered.values()] == [phone]


def test_a_tie_on_handled_at_keeps_the_smaller_record_id(env: Env, gateway: SmsGateway) -> None:
    rt = configure(env, gateway)
    same = {"phone": "13900000009", "handled_at": "2026-11-21T10:00:00+08:00"}
    add_records(rt, [make_record(7, DAY, **same), make_record(3, DAY, **same)])
    plan(rt)
    assert followup_of(env, rid(3))[:2] == ("sms", None)
    assert followup_of(env, rid(7))[:2] == ("skipped", "duplicate_phone")


def test_the_rules_apply_in_spec_order(env: Env, gateway: SmsGateway) -> None:
    rt = configure(env, gateway, max_age_days=0)
    gateway.inject_reply("13800000002", "退订", at("2026-11-20 10:00"))
    replies(rt, at("2026-11-22 08:00"))
    add_records(
        rt,
        [
            make_record(1, DAY, confidential=True, phone="garbage"),  # confidential before invalid_phone
            make_record(2, DAY),  # opted out (13800000002) and stale: opted_out comes first
            make_record(3, DAY, phone="13800000004"),  # stale and a duplicate: stale comes first
            make_record(4, DAY, phone="13800000004"),
        ],
    )
    plan(rt)
    assert [followup_of(env, rid(n))[1] for n in (1, 2, 3, 4)] == ["confidential", "opted_out", "stale", "stale"]


def test_a_later_run_never_redecides_a_planned_record(env: Env, gateway: SmsGateway) -> None:
    rt = configure(env, gateway)
    add_records(rt, [make_record(1, DAY)])
    plan(rt)
    add_records(rt, [make_record(1, DAY, confidential=True)])  # a re-pull changes the record
    again = plan(rt, as_of=at("2026-11-28 09:00"))  # and the day would now be stale
    assert again.planned == 0
    assert followup_of(env, rid(1))[:3] == ("sms", None, "queued")


# --- the send window, re-runs, gateway faults -----------------------------------------------------


def test_nothing_leaves_outside_09_to_21_and_everything_leaves_with_the_first_run_inside(
    env: Env, gateway: SmsGateway
) -> None:
    rt = configure(env, gateway)
    add_records(rt, [make_record(i, DAY) for i in range(120)])
    plan(rt, as_of=at("2026-11-22 08:59:59"))
    early = flush(rt, as_of=at("2026-11-22 08:59:59"))
    late = flush(rt, as_of=at("2026-11-21 21:00"))
    assert (early.window_open, early.queued, late.window_open) == (False, 120, False)
    assert gateway.delivered == {} and gateway.state.batches == []

    first = flush(rt, as_of=at("2026-11-22 09:00"))
    assert (first.sent, first.queued) == (120, 0)
    assert len(gateway.delivered) == 120
    assert env.scalar("SELECT COUNT(*) FROM followups WHERE sms_status = 'sent'") == 120
    sent_at = {r[0] for r in env.rows("SELECT sent_at FROM followups")}
    assert len(sent_at) == 1  # the run's as_of, never the wall clock
    assert str(next(iter(sent_at))).startswith("2026-11-22 01:00:00")


def test_a_re_run_of_the_day_sends_nothing_new(env: Env, gateway: SmsGateway) -> None:
    rt = configure(env, gateway)
    add_records(rt, [make_record(i, DAY) for i in range(60)])
    plan(rt)
    flush(rt)
    batches = len(gateway.state.batches)
    again = plan(rt, as_of=at("2026-11-22 10:00"))
    second = flush(rt, as_of=at("2026-11-22 10:00"))
    assert again.planned == 0 and second.sent == 0
    assert len(gateway.state.batches) == batches
    assert env.scalar("SELECT COUNT(*) FROM followups") == 60


def test_429_and_500_are_retried_and_the_batch_then_goes_through(env: Env, gateway: SmsGateway) -> None:
    rt = configure(env, gateway)
    add_records(rt, [make_record(i, DAY) for i in range(10)])
    plan(rt)
    gateway.fail(GatewayFault(429, retry_after="0"), GatewayFault(500), GatewayFault(503))
    out = flush(rt)
    assert (out.sent, out.error) == (10, None)
    assert len(gateway.delivered) == 10


def test_a_gateway_down_past_every_retry_leaves_messages_queued_for_the_next_run(env: Env, gateway: SmsGateway) -> None:
    rt = configure(env, gateway)
    add_records(rt, [make_record(i, DAY) for i in range(10)])
    plan(rt)
    gateway.fail(*[GatewayFault(500)] * 6)
    down = flush(rt)
    assert down.sent == 0 and down.queued == 10 and "gave up after 6 attempts" in (down.error or "")
    up = flush(rt, as_of=at("2026-11-22 10:00"))
    assert (up.sent, up.queued) == (10, 0)


def test_a_day_of_many_batches_is_posted_once_each_whatever_number_of_relays_the_database_runs(
    env: Env, gateway: SmsGateway
) -> None:
    # PostgreSQL runs two relays side by side (tasks/stages/sms.LANES): their batches must not overlap
    rt = configure(env, gateway)
    add_records(rt, [make_record(i, DAY) for i in range(730)])  # 15 batches of 50, the last one short
    plan(rt)
    out = flush(rt)
    assert (out.sent, out.queued, out.batches, out.error) == (730, 0, 15, None)
    assert len(gateway.state.batches) == 15 and not gateway.posted_more_than_once()
    assert env.scalar("SELECT COUNT(*) FROM followups WHERE sms_status = 'sent'") == 730
    assert env.scalar("SELECT COUNT(*) FROM sms_claims") == 0


def test_a_gateway_down_for_good_stops_every_relay_and_the_next_run_sends_each_message_once(
    env: Env, gateway: SmsGateway
) -> None:
    rt = configure(env, gateway)
    add_records(rt, [make_record(i, DAY) for i in range(500)])
    plan(rt)
    gateway.fail(*[GatewayFault(500)] * 200)
    down = flush(rt)
    assert down.sent == 0 and down.queued == 500 and "gave up after 6 attempts" in (down.error or "")
    assert len(gateway.state.faults) >= 200 - 6 * IN_FLIGHT  # nobody went on claiming: IN_FLIGHT batches at most
    assert env.scalar("SELECT COUNT(*) FROM sms_claims") == 0  # what the run could not settle was released
    gateway.state.faults.clear()
    up = flush(rt, as_of=at("2026-11-22 10:00"))
    assert (up.sent, up.queued) == (500, 0)
    assert len(gateway.delivered) == 500 and not gateway.posted_more_than_once()


def test_a_rejected_message_is_final_and_never_sent_again(env: Env, gateway: SmsGateway) -> None:
    rt = configure(env, gateway)
    add_records(rt, [make_record(1, DAY), make_record(2, DAY)])
    plan(rt)
    gateway.reject_numbers(make_record(1, DAY)["phone"])
    first = flush(rt)
    flush(rt, as_of=at("2026-11-22 10:00"))
    assert (first.sent, first.rejected) == (1, 1)
    assert followup_of(env, rid(1))[2] == "rejected"
    assert gateway.sends_of(f"minyi:police110:{rid(1)}") == 1


def test_a_message_the_gateway_already_has_is_answered_duplicate_and_counts_as_sent(
    env: Env, gateway: SmsGateway
) -> None:
    rt = configure(env, gateway)
    add_records(rt, [make_record(1, DAY)])
    plan(rt)
    with gateway_client(rt) as client:
        from minyi.tasks.adapters.sms import OutgoingSms

        client.send_batch([OutgoingSms(f"minyi:police110:{rid(1)}", make_record(1, DAY)["phone"], "earlier try")])
    out = flush(rt)
    assert (out.sent, out.duplicate) == (1, 1)
    assert followup_of(env, rid(1))[2] == "sent"
    assert len(gateway.delivered) == 1


def test_a_held_quality_gate_keeps_that_source_s_sms_queued_until_released(env: Env, gateway: SmsGateway) -> None:
    rt = configure(env, gateway)
    add_records(rt, [make_record(1, DAY)])
    add_records(rt, [make_record(2, DAY)], source="window")
    plan(rt)
    from sqlalchemy import text

    from minyi.tasks.store.engine import instant_param

    with env.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO source_gates (source, business_date, gate, row_count, updated_at) "
                "VALUES ('police110', :d, 'held', 1, :t)"
            ),
            {"d": DAY, "t": instant_param(env.backend, MORNING)},
        )
    held = flush(rt)
    assert (held.sent, held.queued, held.held) == (1, 1, 1)
    with env.engine.begin() as conn:
        conn.execute(text("UPDATE source_gates SET gate = 'released'"))
    released = flush(rt, as_of=at("2026-11-22 10:00"))
    assert (released.sent, released.queued) == (1, 0)


# --- replies --------------------------------------------------------------------------------------


def sent_day(env: Env, gateway: SmsGateway, n: int = 3, **followup: Any) -> Runtime:
    rt = configure(env, gateway, **followup)
    add_records(rt, [make_record(i, DAY) for i in range(n)])
    plan(rt)
    flush(rt)
    return rt


def mid(n: int) -> str:
    return f"minyi:police110:{rid(n)}"


def test_a_reply_matches_its_message_id_with_no_age_limit(env: Env, gateway: SmsGateway) -> None:
    rt = sent_day(env, gateway)
    gateway.reply_to(mid(1), "１", at("2026-12-20 10:00"))
    out = replies(rt, at("2026-12-20 11:00"))
    assert (out.matched, out.unmatched) == (1, 0)
    assert followup_of(env, rid(1))[4] == "satisfied"


def test_a_message_id_names_its_follow_up_whatever_colons_or_script_the_record_id_holds(
    env: Env, gateway: SmsGateway
) -> None:
    """Replies find the follow-up through the message_id's source and record id (message_id has no index).

    Received three weeks after sending, so the 7-day phone fallback cannot be what matched them.
    """
    rt = configure(env, gateway)
    named = [
        ("police110", "110:A:1", 0),
        ("police110", "110:A", 1),
        ("police110", "派出所:七", 2),
        ("hotline", "A:1", 3),
    ]
    for source, record_id, n in named:
        add_records(rt, [make_record(n, DAY, record_id=record_id)], source=source)
    plan(rt)
    assert flush(rt).sent == 4
    answers = ["1", "3", "2", "3"]
    for (source, record_id, _), answer in zip(named, answers, strict=True):
        gateway.reply_to(f"minyi:{source}:{record_id}", answer, at("2026-12-13 10:00"))
    # ids that share a prefix with a sent one, or name no record, match nothing
    for bogus in ("minyi:police110:110", "minyi:police110:110:A:1:2", "minyi:hotline", "minyi:police110:A:1"):
        gateway.inject_reply("13711112222", "1", at("2026-12-13 10:00"), message_id=bogus)
    out = replies(rt, at("2026-12-13 11:00"))
    assert (out.matched, out.unmatched) == (4, 4)
    got = dict(env.rows("SELECT source || '/' || record_id, satisfaction FROM followups"))
    assert got == {
        "police110/110:A:1": "satisfied",
        "police110/110:A": "dissatisfied",
        "police110/派出所:七": "basically_satisfied",
        "hotline/A:1": "dissatisfied",
    }


def test_a_reply_without_message_id_answers_the_latest_sms_to_that_phone_within_7_days(
    env: Env, gateway: SmsGateway
) -> None:
    rt = sent_day(env, gateway)
    phone = make_record(2, DAY)["phone"]
    gateway.inject_reply(phone, " 3 ", at("2026-11-22 12:00"))
    gateway.inject_reply(phone, "2", at("2026-11-29 09:00:01"))  # 7 days and a second after sending
    out = replies(rt, at("2026-11-29 10:00"))
    assert (out.matched, out.unmatched, out.unmatched_total) == (1, 1, 1)
    assert followup_of(env, rid(2))[4] == "dissatisfied"
    assert env.scalar("SELECT COUNT(*) FROM sms_replies") == 2


def test_a_reply_from_an_unknown_number_is_kept_and_counted(env: Env, gateway: SmsGateway) -> None:
    rt = sent_day(env, gateway)
    gateway.inject_reply("13711112222", "满意", at("2026-11-22 12:00"))
    out = replies(rt, at("2026-11-22 13:00"))
    assert (out.new, out.unmatched, out.unmatched_total) == (1, 1, 1)
    assert env.scalar("SELECT status FROM sms_replies") == "unmatched"
    assert env.scalar("SELECT COUNT(*) FROM answers") == 0


def test_replies_are_ingested_once_from_the_cursor(env: Env, gateway: SmsGateway) -> None:
    rt = sent_day(env, gateway, n=8)
    for n in range(8):
        gateway.reply_to(mid(n), "1", at("2026-11-22 12:00"))
    first = replies(rt, at("2026-11-22 13:00"))
    second = replies(rt, at("2026-11-22 14:00"))
    assert (first.new, first.pages, second.new) == (8, 3, 0)
    assert gateway.state.reply_requests[-1]["since"] == f"{gateway.epoch}:8"
    assert env.scalar("SELECT COUNT(*) FROM answers") == 8


def test_td_opts_the_phone_out_and_is_not_a_satisfaction_answer(env: Env, gateway: SmsGateway) -> None:
    rt = sent_day(env, gateway)
    gateway.reply_to(mid(0), "td", at("2026-11-22 12:00"))
    out = replies(rt, at("2026-11-22 13:00"))
    assert out.opt_outs == 1
    assert followup_of(env, rid(0))[4] is None
    assert env.scalar("SELECT COUNT(*) FROM answers") == 0
    assert env.scalar("SELECT phone_norm FROM opt_outs") == make_record(0, DAY)["phone"]


def test_an_opt_out_withdraws_an_sms_still_queued_for_that_phone(env: Env, gateway: SmsGateway) -> None:
    rt = configure(env, gateway)
    add_records(rt, [make_record(1, DAY)])
    plan(rt, as_of=at("2026-11-22 08:00"))
    gateway.inject_reply(make_record(1, DAY)["phone"], "退订", at("2026-11-22 08:30"))
    replies(rt, at("2026-11-22 08:45"))
    out = flush(rt)
    assert (out.sent, out.opted_out) == (0, 1)
    assert followup_of(env, rid(1))[:3] == ("skipped", "opted_out", None)


def test_the_latest_recognised_answer_is_the_satisfaction_and_unrecognised_queues_a_visit(
    env: Env, gateway: SmsGateway
) -> None:
    rt = sent_day(env, gateway)
    gateway.reply_to(mid(1), "2", at("2026-11-22 10:00"))
    gateway.reply_to(mid(1), "嗯", at("2026-11-22 11:00"))
    replies(rt, at("2026-11-22 12:00"))
    fu = followup_of(env, rid(1))
    assert (fu.satisfaction, fu.manual_reason) == ("basically_satisfied", "unrecognised")
    assert env.scalar("SELECT COUNT(*) FROM answers WHERE via = 'sms'") == 2


def test_a_dissatisfied_reply_queues_a_visit_and_is_in_the_answer_history(env: Env, gateway: SmsGateway) -> None:
    rt = sent_day(env, gateway)
    gateway.reply_to(mid(0), "不满意", at("2026-11-22 10:00"))
    replies(rt, at("2026-11-22 12:00"))
    assert followup_of(env, rid(0))[3:5] == ("dissatisfied", "dissatisfied")
    assert env.rows("SELECT via, value FROM answers") == [("sms", "dissatisfied")]


# --- manual visits --------------------------------------------------------------------------------


def test_no_reply_after_manual_after_hours_queues_a_visit(env: Env, gateway: SmsGateway) -> None:
    from minyi.tasks.stages.visits import queue_due_visits

    rt = sent_day(env, gateway, manual_after_hours=24)
    gateway.reply_to(mid(0), "1", at("2026-11-22 10:00"))
    replies(rt, at("2026-11-22 10:30"))
    with rt.engine.begin() as conn:
        early = queue_due_visits(conn, at("2026-11-23 08:59:59"), 24)
        due = queue_due_visits(conn, at("2026-11-23 09:00"), 24)
    assert (early, due) == (0, 2)
    assert [followup_of(env, rid(n))[3] for n in (0, 1, 2)] == [None, "no_reply", "no_reply"]


def minyi(env: Env, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "minyi.cli", *args], env=env.cli_env(), capture_output=True, text=True, timeout=60
    )


def test_minyi_visit_records_the_outcome_and_it_becomes_the_satisfaction(env: Env, gateway: SmsGateway) -> None:
    rt = configure(env, gateway)
    add_records(rt, [make_record(1, DAY, phone="053288886666")])
    plan(rt)
    done = minyi(env, "visit", f"police110:{rid(1)}", "--outcome", "dissatisfied", "--note", "态度差",
                 "--at", "2026-11-22T15:00:00+08:00")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "visit recorded" in done.stdout
    fu = followup_of(env, rid(1))
    assert (fu.satisfaction, fu.visit_outcome) == ("dissatisfied", "dissatisfied")
    assert env.rows("SELECT via, value, note FROM answers") == [("visit", "dissatisfied", "态度差")]
    again = minyi(env, "visit", f"police110:{rid(1)}", "--outcome", "dissatisfied", "--at", "2026-11-22T15:00:00+08:00")
    assert again.returncode == 0 and "already recorded" in again.stdout
    assert env.scalar("SELECT COUNT(*) FROM answers") == 1


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["police110:110-20261121-999999", "--outcome", "satisfied"], "unknown record police110:110-20261121-999999"),
        ([f"police110:{rid(1)}", "--outcome", "happy"], "--outcome: 'happy' is not one of"),
        ([rid(1), "--outcome", "satisfied"], "is not SOURCE:RECORD_ID"),
        ([f"police110:{rid(1)}", "--outcome", "satisfied", "--at", "yesterday"], "--at: 'yesterday'"),
    ],
)
def test_a_refused_visit_says_why_in_one_line_exits_non_zero_and_changes_nothing(
    env: Env, gateway: SmsGateway, args: list[str], problem: str
) -> None:
    rt = configure(env, gateway)
    add_records(rt, [make_record(1, DAY, phone="053288886666")])
    plan(rt)
    before = env.rows("SELECT * FROM followups")
    done = minyi(env, "visit", *args)
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert problem in last and "Traceback" not in done.stderr
    assert env.scalar("SELECT COUNT(*) FROM answers") == 0
    assert env.rows("SELECT * FROM followups") == before


def test_minyi_visits_lists_the_queue_with_full_numbers_for_the_call_centre(env: Env, gateway: SmsGateway) -> None:
    rt = configure(env, gateway)
    add_records(rt, [make_record(1, DAY, phone="0532-8888 6666", citizen_name="欧阳娜娜"), make_record(2, DAY)])
    plan(rt)
    done = minyi(env, "visits")
    assert done.returncode == 0, done.stderr
    assert "1 visit(s) to make" in done.stdout
    line = next(x for x in done.stdout.splitlines() if rid(1) in x)
    assert "053288886666" in line and "landline" in line and "欧***" in line
    assert rid(2) not in done.stdout


def test_a_visit_after_an_sms_answer_wins_by_answer_time_not_by_typing_order(env: Env, gateway: SmsGateway) -> None:
    from minyi.tasks.stages.visits import record_visit

    rt = sent_day(env, gateway)
    gateway.reply_to(mid(1), "3", at("2026-11-22 18:00"))
    replies(rt, at("2026-11-22 19:00"))
    record_visit(rt.engine, f"police110:{rid(1)}", "satisfied", None, at("2026-11-22 12:00"), at("2026-11-23 10:00"))
    assert followup_of(env, rid(1)).satisfaction == "dissatisfied"
    record_visit(rt.engine, f"police110:{rid(1)}", "satisfied", None, at("2026-11-23 09:00"), at("2026-11-23 10:00"))
    assert followup_of(env, rid(1)).satisfaction == "satisfied"
    record_visit(rt.engine, f"police110:{rid(1)}", "unreachable", None, at("2026-11-23 11:00"), at("2026-11-23 12:00"))
    assert followup_of(env, rid(1)).satisfaction == "satisfied"
