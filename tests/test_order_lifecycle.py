"""The order lifecycle against the store (SPEC §5–7), on SQLite and PostgreSQL.

Each test drives `tasks.orders.apply_action` (what `minyi order` and the report-order
flow call) and asserts what a user would see: the order row, its history, the
escalations, the outbox posts, the verification SMS and the assessment counts.
Due instants are hand-computed from the 2026 calendar (National Day 1–7 October,
make-up workday Saturday 10 October).
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from minyi.tasks.adapters.sms import Reply, SendResult
from minyi.tasks.config import load_config
from minyi.tasks.errors import InputError
from minyi.tasks.rules.lifecycle import OrderRefused
from minyi.tasks.stages.kpis import compute_assessment
from minyi.tasks.stages.orders import apply_action
from minyi.tasks.stages.replies import store_reply_page
from minyi.tasks.stages.reports import rectification
from minyi.tasks.stages.verification import reopen_not_resolved, send_verifications
from tests.supervision_support import add_answer, prepare_units, supervise_at
from tests.support import TZ, Env, at, config_toml

SN, SB = "QD-SN-PS01", "QD-SB-PS01"


@pytest.fixture
def sup(env: Env) -> Env:
    env.write_config(config_toml(sections={"slack": {"center_channel": "C0CENTER", "leadership_channel": "C0LEADERS"}}))
    prepare_units(env.engine)
    return env


def act(env: Env, ref: str, action: str, when: str, recorded: str | None = None, **kw: object):
    with env.engine.begin() as conn:
        return apply_action(
            conn, load_config(), ref, action, at=at(when), recorded_at=at(recorded or when), by="值班员", **kw
        )  # type: ignore[arg-type]


def instant(value: object) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(TZ)


def order(env: Env) -> dict:
    (row,) = env.rows(
        "SELECT status, unit_code, period, resolution, response_due, completion_due, completion_due_original, "
        "clock_start, responded_at, closed_at, extension_status FROM orders"
    )
    d = dict(row._mapping)
    for k in ("response_due", "completion_due", "completion_due_original", "clock_start", "responded_at", "closed_at"):
        d[k] = instant(d[k])
    return d


def posts(env: Env) -> list[tuple[str, str]]:
    return [(r[0], r[1]) for r in env.rows("SELECT channel, text FROM notifications WHERE kind = 'order_lifecycle'")]


def store_state(env: Env) -> tuple:
    return tuple(
        env.rows(f"SELECT * FROM {t} ORDER BY 1") for t in ("orders", "order_events", "notifications", "verifications")
    )


@pytest.fixture
def opened(sup: Env) -> str:
    ref = add_answer(sup.engine, at("2026-11-11 10:00"))  # Wed: response due Tue 17 00:00, completion Thu 19 00:00
    with sup.engine.begin() as conn:  # what reply intake leaves: the answer is the follow-up's satisfaction
        conn.exec_driver_sql("UPDATE followups SET satisfaction = 'dissatisfied', sms_status = 'sent'")
    supervise_at(sup.engine, at("2026-11-11 11:00"))
    return ref


def test_a_backdated_stage_is_marked_in_the_store_and_in_rectification(sup: Env, opened: str) -> None:
    act(sup, opened, "responded", "2026-11-12 09:00", recorded="2026-11-13 09:00:01")
    act(sup, opened, "rectified", "2026-11-13 08:00", recorded="2026-11-13 09:00:01")
    rows = sup.rows("SELECT stage, by_name, backdated FROM order_events ORDER BY id")
    assert [tuple(r) for r in rows] == [("responded", "值班员", True), ("rectified", "值班员", False)]
    with sup.engine.connect() as conn:
        rect = rectification(conn, date(2026, 11, 13), at("2026-11-13 10:00"), TZ)
    assert rect["orders"][0]["backdated"] == ["responded"]
    assert rect["summary"]["backdated"] == {SN: 1}


def test_an_at_after_recorded_at_is_refused_and_changes_nothing(sup: Env, opened: str) -> None:
    before = store_state(sup)
    with pytest.raises(InputError, match="after the time it is recorded"):
        act(sup, opened, "responded", "2026-11-12 09:01", recorded="2026-11-12 09:00")
    assert store_state(sup) == before


def test_a_reassignment_to_an_unknown_unit_is_refused_and_changes_nothing(sup: Env, opened: str) -> None:
    act(sup, opened, "returned", "2026-11-11 12:00", note="非本所辖区")
    before = store_state(sup)
    with pytest.raises(OrderRefused, match="'QD-XX-PS99' is not a configured unit"):
        act(sup, opened, "reassign", "2026-11-11 13:00", unit="QD-XX-PS99")
    assert store_state(sup) == before


def test_a_second_return_by_the_same_holder_is_refused(sup: Env, opened: str) -> None:
    act(sup, opened, "returned", "2026-11-11 12:00", note="非本所辖区")
    act(sup, opened, "keep", "2026-11-11 13:00")
    before = store_state(sup)
    with pytest.raises(OrderRefused, match="already returned it once"):
        act(sup, opened, "returned", "2026-11-11 14:00", note="再次退回")
    assert store_state(sup) == before
    assert order(sup)["status"] == "open" and order(sup)["unit_code"] == SN


def test_a_return_posts_to_the_centre_and_keep_to_the_unit(sup: Env, opened: str) -> None:
    act(sup, opened, "returned", "2026-11-11 12:00", note="非本所辖区，电话 13812345678")
    act(sup, opened, "keep", "2026-11-11 13:00")
    got = posts(sup)
    assert [c for c, _ in got] == ["C0CENTER", "C0SNPS01"]
    assert "退单" in got[0][1] and "138****5678" in got[0][1] and "13812345678" not in got[0][1]
    assert sup.scalar("SELECT note FROM order_events WHERE stage = 'returned'") == "非本所辖区，电话 138****5678"


def test_a_reassignment_on_2026_09_30_restarts_both_clocks_across_national_day(sup: Env) -> None:
    ref = add_answer(
        sup.engine, at("2026-09-24 10:00")
    )  # Thu; Fri 25 is Mid-Autumn: Mon 28, Tue 29, Wed 30 → due 1 Oct 00:00
    supervise_at(sup.engine, at("2026-09-24 11:00"))
    act(sup, ref, "returned", "2026-09-29 09:00", note="属车管所业务")
    assert supervise_at(sup.engine, at("2026-09-30 09:00"))["response_reminder"] == 1  # still SN's clocks
    act(sup, ref, "reassign", "2026-09-30 15:00", unit=SB)
    o = order(sup)
    assert (o["status"], o["unit_code"], o["period"], o["clock_start"]) == ("open", SB, 2, at("2026-09-30 15:00"))
    # Working days after Wed 30 Sep: Thu 8, Fri 9, Sat 10 (make-up) | Mon 12, Tue 13 October.
    assert o["response_due"] == at("2026-10-11 00:00") and o["completion_due"] == at("2026-10-14 00:00")
    assert [c for c, _ in posts(sup)] == ["C0CENTER", "C0SNPS01", "C0SBPS01"]  # return → centre; move → both
    assert "2026-10-11T00:00+08:00" in posts(sup)[-1][1]
    # SN's clock ran out at 1 Oct 00:00, but the order is on fresh clocks: nothing fires until Sat 10 Oct.
    assert supervise_at(sup.engine, at("2026-10-01 09:00")) == {
        "response_reminder": 0,
        "response_overdue": 0,
        "completion_overdue": 0,
    }
    assert supervise_at(sup.engine, at("2026-10-10 09:00"))["response_reminder"] == 1
    fired = sup.rows("SELECT unit_code, period, level FROM escalations ORDER BY id")
    assert [tuple(r) for r in fired] == [(SN, 1, "response_reminder"), (SB, 2, "response_reminder")]


def test_an_extension_approved_across_a_weekend_moves_completion_due_and_posts_both_ways(sup: Env, opened: str) -> None:
    act(sup, opened, "extend", "2026-11-18 16:00", days=3, note="需协调城管")
    assert order(sup)["completion_due"] == at("2026-11-19 00:00")  # a pending request changes no clock
    act(sup, opened, "approve-extension", "2026-11-18 17:00")
    o = order(sup)
    # The original last day is Wed 18 Nov; three more working days: Thu 19, Fri 20, Mon 23.
    assert o["completion_due_original"] == at("2026-11-19 00:00")
    assert o["completion_due"] == at("2026-11-24 00:00")
    assert [c for c, _ in posts(sup)] == ["C0CENTER", "C0SNPS01"]
    assert supervise_at(sup.engine, at("2026-11-20 09:00"))["completion_overdue"] == 0
    assert supervise_at(sup.engine, at("2026-11-24 00:00"))["completion_overdue"] == 1


def test_an_extension_requested_one_minute_after_completion_due_is_refused(sup: Env, opened: str) -> None:
    before = store_state(sup)
    with pytest.raises(OrderRefused, match="before completion_due"):
        act(sup, opened, "extend", "2026-11-19 00:01", days=2, note="来不及")
    assert store_state(sup) == before


def _assess(env: Env, as_of: str) -> dict:
    with env.engine.connect() as conn:
        report = compute_assessment(conn, date(2026, 1, 31), at(as_of), TZ, load_config().targets)
    return {u["unit_code"]: u for u in report["units"]}


def test_an_upheld_appeal_drops_the_answer_from_satisfaction_and_orders_but_counts_it_in_excluded(
    sup: Env, opened: str
) -> None:
    before = _assess(sup, "2026-11-12 10:00")[SN]
    assert (before["responses"], before["dissatisfied"], before["orders_opened"], before["excluded"]) == (1, 1, 1, 0)
    act(sup, opened, "appeal", "2026-11-12 09:00", note="诉求系对法律规定本身不满")
    act(sup, opened, "uphold-appeal", "2026-11-12 11:00")
    o = order(sup)
    assert (o["status"], o["resolution"], o["closed_at"]) == ("closed", "excluded", at("2026-11-12 11:00"))
    after = _assess(sup, "2026-11-12 12:00")[SN]
    assert (after["records"], after["responses"], after["dissatisfied"], after["satisfaction_rate"]) == (1, 0, 0, None)
    assert (after["orders_opened"], after["orders_closed"], after["excluded"]) == (0, 0, 1)
    assert _assess(sup, "2026-11-12 10:30")[SN]["excluded"] == 0  # not yet ruled at that as_of


def test_a_reassigned_order_counts_for_its_holder_and_the_return_for_the_unit_that_made_it(
    sup: Env, opened: str
) -> None:
    act(sup, opened, "returned", "2026-11-11 12:00", note="x")
    act(sup, opened, "reassign", "2026-11-11 13:00", unit=SB)
    units = _assess(sup, "2026-11-12 10:00")
    assert (units[SN]["records"], units[SN]["responses"], units[SN]["orders_opened"], units[SN]["returned"]) == (
        1,
        1,
        0,
        1,
    )
    assert (units[SB]["records"], units[SB]["orders_opened"], units[SB]["reassigned_in"]) == (0, 1, 1)
    before = _assess(sup, "2026-11-11 12:30")
    assert before[SN]["orders_opened"] == 1 and SB not in before  # the holder at that as_of


class FakeGateway:
    batch_size = 100

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, str]] = []

    def send_batch(self, messages):
        self.sent += [tuple(m) for m in messages]
        return [SendResult(m.message_id, "accepted") for m in messages]


def _close_and_verify(env: Env, ref: str, answer: str, message_id: str | None) -> FakeGateway:
    act(env, ref, "feedback", "2026-11-13 09:00", resolved=True)
    gateway = FakeGateway()
    assert send_verifications(env.engine, load_config(), gateway, at("2026-11-13 10:00"))["sent"] == 1
    reply = Reply("rep-1", "13800000000", answer, at("2026-11-14 08:00"), message_id)
    store_reply_page(env.engine, [reply], "c1", at("2026-11-14 08:05"))
    reopen_not_resolved(env.engine, load_config(), at("2026-11-14 08:05"))
    return gateway


def test_a_2_to_a_verification_sms_reopens_the_order_and_restarts_its_clocks(sup: Env, opened: str) -> None:
    gateway = _close_and_verify(sup, opened, "2", None)  # matched by phone: the latest message was the verification
    source, record_id = opened.split(":", 1)
    ((message_id, to, text),) = gateway.sent
    assert message_id == f"minyi:{source}:{record_id}:verify:1" and to == "13800000000"
    assert "回复1确认已解决，2未解决" in text
    o = order(sup)
    assert (o["status"], o["responded_at"], o["closed_at"], o["resolution"], o["period"]) == (
        "open",
        None,
        None,
        None,
        2,
    )
    assert o["clock_start"] == at("2026-11-14 08:00")
    assert o["response_due"] == at("2026-11-19 00:00")  # Sat 14 → Mon 16, Tue 17, Wed 18
    assert sup.scalar("SELECT COUNT(*) FROM answers") == 1  # the "2" is no follow-up answer
    assert sorted(c for c, _ in posts(sup)) == ["C0CENTER", "C0SNPS01"]
    assert _assess(sup, "2026-11-14 09:00")[SN]["reopened"] == 1


def test_a_1_to_a_verification_sms_leaves_the_order_closed(sup: Env, opened: str) -> None:
    source, record_id = opened.split(":", 1)
    _close_and_verify(sup, opened, "1", f"minyi:{source}:{record_id}:verify:1")
    o = order(sup)
    assert (o["status"], o["resolution"]) == ("closed", "resolved")
    assert sup.scalar("SELECT answer FROM verifications") == "confirmed"
    assert sup.scalar("SELECT satisfaction FROM followups") == "dissatisfied"  # not read as "satisfied"


def test_no_verification_sms_for_an_opted_out_phone(sup: Env, opened: str) -> None:
    from sqlalchemy import text

    from minyi.tasks.store.engine import instant_param

    with sup.engine.begin() as conn:
        conn.execute(
            text("INSERT INTO opt_outs (phone_norm, opted_out_at, reply_id) VALUES ('13800000000', :t, 'r0')"),
            {"t": instant_param(sup.backend, at("2026-11-12 09:00"))},
        )
    done = act(sup, opened, "feedback", "2026-11-13 09:00", resolved=True)
    assert done.verification is None and sup.scalar("SELECT COUNT(*) FROM verifications") == 0


def test_the_operator_forms_have_drop_downs_for_choices_and_plain_fields() -> None:
    from prefect.utilities.callables import parameter_schema

    from minyi.flows.followup import record_visit_flow
    from minyi.flows.supervise import report_order

    order = parameter_schema(report_order.fn).model_dump()["properties"]
    assert "reassign" in order["action"]["enum"] and "uphold-appeal" in order["action"]["enum"]
    assert order["resolved"]["enum"] == ["", "resolved", "unresolved"]
    visit = parameter_schema(record_visit_flow.fn).model_dump()["properties"]
    for props in (order, visit):
        assert all("anyOf" not in p for p in props.values())  # no `str | None` toggles
        assert {"by", "as_of", "at", "note"} <= set(props)
    assert order["action"]["description"].startswith("动作 action")


def test_a_backdated_visit_is_marked_with_who_recorded_it_and_its_note_masked(sup: Env, opened: str) -> None:
    from minyi.tasks.stages.visits import record_visit

    done = record_visit(
        sup.engine,
        opened,
        "satisfied",
        "群众 13812345678 表示满意",
        at("2026-11-12 09:00"),
        at("2026-11-13 09:30"),
        by="李警官",
    )
    assert done.backdated and done.by == "李警官"
    row = sup.rows("SELECT by_name, backdated, note FROM answers WHERE via = 'visit'")[0]
    assert tuple(row) == ("李警官", True, "群众 138****5678 表示满意")


def test_minyi_order_takes_by_and_as_of_and_says_backdated(sup: Env, opened: str) -> None:
    import subprocess
    import sys

    args = ["order", opened, "--stage", "responded", "--at", "2026-11-12T09:00:00+08:00"]
    args += ["--as-of", "2026-11-13T10:00:00+08:00", "--by", "张警官"]
    done = subprocess.run(
        [sys.executable, "-m", "minyi.cli", *args], env=sup.cli_env(), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "responded recorded by 张警官 (backdated)" in done.stdout
    assert tuple(sup.rows("SELECT by_name, backdated FROM order_events")[0]) == ("张警官", True)
    ahead = ["order", opened, "--stage", "rectified", "--at", "2026-11-13T10:01:00+08:00"]
    ahead += ["--as-of", "2026-11-13T10:00:00+08:00"]
    late = subprocess.run(
        [sys.executable, "-m", "minyi.cli", *ahead],
        env=sup.cli_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert late.returncode != 0 and "after the time it is recorded" in late.stderr.strip().splitlines()[-1]
