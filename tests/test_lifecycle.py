"""The order lifecycle of SPEC §5 as a pure transition function: every legal and illegal move.

No database here: tasks.lifecycle.transition is a function of values. Clock consequences
(restart, extension) are checked with tasks.clocks on the package calendar, hand-computed.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minyi.tasks.errors import InputError
from minyi.tasks.rules.calendar import load_calendar
from minyi.tasks.rules.clocks import due_instant, escalations_due, extended_due
from minyi.tasks.rules.lifecycle import (
    ACTIONS,
    MAX_NOTE_CHARS,
    Lifecycle,
    OrderRefused,
    Request,
    clean_note,
    operator,
    parse_ref,
    transition,
    when_recorded,
)
from tests.support import TZ, at

CAL = load_calendar(None)
UNITS = {"QD-SN-PS01", "QD-SB-PS01", "QD-CGS"}
OPENED = at("2026-11-11 10:00")


def fresh(**over: object) -> Lifecycle:
    s = Lifecycle(
        status="open",
        unit_code="QD-SN-PS01",
        opened_at=OPENED,
        clock_start=OPENED,
        response_due=at("2026-11-14 00:00"),
        completion_due=at("2026-11-19 00:00"),
    )
    return replace(s, **over)  # type: ignore[arg-type]


def act(s: Lifecycle, action: str, when: str = "2026-11-12 09:00", **kw: object) -> Lifecycle:
    return transition(s, Request(action=action, at=at(when), ref="police110:R1", units=UNITS, **kw), TZ)  # type: ignore[arg-type]


def with_clocks(s: Lifecycle) -> Lifecycle:
    """What tasks.orders.clocks_after does, with the default working-mode 3/5-day clocks."""
    response = s.response_due or due_instant(s.clock_start, 3, CAL, "working", TZ)
    completion = s.completion_due
    if completion is None:
        if s.extension_status == "approved":
            assert s.completion_due_original is not None
            completion = extended_due(s.completion_due_original, s.extension_days or 0, CAL, "working", TZ)
        else:
            completion = due_instant(s.clock_start, 5, CAL, "working", TZ)
    return replace(s, response_due=response, completion_due=completion)


# --- legal moves ---------------------------------------------------------------------------------


def test_stages_move_forward_and_feedback_closes() -> None:
    s = act(fresh(), "responded")
    assert s.status == "responded"
    s = act(s, "feedback", "2026-11-13 09:00", resolved=True)
    assert (s.status, s.resolution, s.rectified_at) == ("closed", "resolved", at("2026-11-13 09:00"))


def test_a_return_awaits_the_centre_keeping_unit_and_clocks() -> None:
    s = act(fresh(), "returned", note="不属我所辖区")
    assert (s.status, s.unit_code, s.completion_due, s.period) == ("returned", "QD-SN-PS01", at("2026-11-19 00:00"), 1)
    assert s.returned_by == {"QD-SN-PS01"}


def test_keep_takes_a_returned_order_back_to_open_unchanged() -> None:
    returned = act(fresh(), "returned", note="x")
    kept = act(returned, "keep", "2026-11-12 10:00")
    assert kept == replace(returned, status="open")


def test_reassignment_moves_the_holder_and_starts_a_new_period_from_its_instant() -> None:
    s = act(act(fresh(), "returned", note="x"), "reassign", "2026-11-12 10:00", unit="QD-SB-PS01")
    assert (s.status, s.unit_code, s.period, s.clock_start) == ("open", "QD-SB-PS01", 2, at("2026-11-12 10:00"))
    assert s.response_due is None and s.completion_due is None  # to be computed from clock_start


def test_a_reassignment_on_2026_09_30_restarts_both_clocks_across_national_day() -> None:
    # Working days after Wed 30 Sep: Thu 8, Fri 9, Sat 10 (make-up), Mon 12, Tue 13 October.
    opened = at("2026-09-28 10:00")
    s = fresh(opened_at=opened, clock_start=opened, response_due=at("2026-10-01 00:00"))
    s = with_clocks(
        act(act(s, "returned", "2026-09-29 09:00", note="x"), "reassign", "2026-09-30 15:00", unit="QD-CGS")
    )
    assert s.response_due == at("2026-10-11 00:00")  # 24:00 of Sat 10 Oct, the make-up workday
    assert s.completion_due == at("2026-10-14 00:00")  # 24:00 of Tue 13 Oct


def test_an_extension_approved_across_a_weekend_moves_completion_due_and_keeps_the_original() -> None:
    # Opened Wed 11 Nov: completion's last day Wed 18 Nov. Three more working days: Thu 19, Fri 20, Mon 23.
    s = act(fresh(), "extend", "2026-11-18 16:00", days=3, note="需协调城管")
    assert (s.extension_status, s.extension_days, s.completion_due) == ("pending", 3, at("2026-11-19 00:00"))
    s = with_clocks(act(s, "approve-extension", "2026-11-18 17:00"))
    assert s.completion_due_original == at("2026-11-19 00:00")
    assert s.completion_due == at("2026-11-24 00:00")  # 24:00 of Mon 23 Nov: the weekend is not counted
    assert s.response_due == at("2026-11-14 00:00")  # the response clock is untouched


def test_an_extension_in_natural_mode_lands_off_a_rest_day() -> None:
    # Original last day Wed 18 Nov; +3 calendar days = Sat 21 → the next working day, Mon 23.
    assert extended_due(at("2026-11-19 00:00"), 3, CAL, "natural", TZ) == at("2026-11-24 00:00")


def test_a_rejected_extension_changes_no_clock() -> None:
    s = act(act(fresh(), "extend", days=2, note="x"), "reject-extension")
    assert (s.extension_status, s.completion_due) == ("rejected", at("2026-11-19 00:00"))


def test_an_upheld_appeal_closes_the_order_as_excluded_at_the_ruling() -> None:
    s = act(act(fresh(), "appeal", note="恶意重复来电"), "uphold-appeal", "2026-11-13 09:00")
    assert (s.status, s.resolution, s.closed_at, s.appeal_status) == (
        "closed",
        "excluded",
        at("2026-11-13 09:00"),
        "upheld",
    )


def test_a_rejected_appeal_changes_nothing_else() -> None:
    before = act(fresh(), "appeal", note="x")
    assert act(before, "reject-appeal") == replace(before, appeal_status="rejected")


def test_a_reopen_clears_the_stages_and_restarts_both_clocks_from_the_answer() -> None:
    closed = act(fresh(), "feedback", "2026-11-13 09:00", resolved=True)
    s = act(closed, "reopen", "2026-11-14 08:00")
    assert (s.status, s.responded_at, s.rectified_at, s.closed_at, s.resolution) == ("open", None, None, None, None)
    assert (s.period, s.clock_start) == (2, at("2026-11-14 08:00"))
    s = with_clocks(s)
    assert s.response_due == at("2026-11-19 00:00")  # Sat 14 → Mon 16, Tue 17, Wed 18


def test_an_exact_repeat_of_a_stage_report_is_no_change() -> None:
    s = act(fresh(), "responded")
    assert act(s, "responded") == s


# --- illegal moves: each a one-line refusal --------------------------------------------------------

CLOSED = replace(fresh(), status="closed", resolution="resolved", closed_at=at("2026-11-12 08:00"))
RETURNED = replace(fresh(), status="returned", returned_by=frozenset({"QD-SN-PS01"}))
RESPONDED = replace(fresh(), status="responded", responded_at=at("2026-11-11 12:00"))


@pytest.mark.parametrize(
    ("state", "action", "kw", "words"),
    [
        (RESPONDED, "returned", {"note": "x"}, "only before it has responded"),
        (fresh(), "returned", {}, "needs --note"),
        (RETURNED, "returned", {"note": "x"}, "already returned"),
        (replace(fresh(), returned_by=frozenset({"QD-SN-PS01"})), "returned", {"note": "x"}, "once"),
        (RETURNED, "responded", {}, "awaiting the centre"),
        (RETURNED, "reassign", {"unit": "QD-NOPE"}, "not a configured unit"),
        (RETURNED, "reassign", {"unit": "QD-SN-PS01"}, "already held by"),
        (RESPONDED, "reassign", {"unit": "QD-CGS"}, "only a returned or open order"),
        (fresh(), "keep", {}, "no return to refuse"),
        (fresh(), "extend", {"days": 0, "note": "x"}, "1 to 10"),
        (fresh(), "extend", {"days": 11, "note": "x"}, "1 to 10"),
        (fresh(), "extend", {"days": 2}, "needs --note"),
        (replace(fresh(), extension_status="rejected"), "extend", {"days": 2, "note": "x"}, "already asked"),
        (replace(fresh(), completion_due=None), "extend", {"days": 2, "note": "x"}, "pending_calendar"),
        (RETURNED, "extend", {"days": 2, "note": "x"}, "returned"),
        (fresh(), "approve-extension", {}, "no pending extension"),
        (fresh(), "reject-extension", {}, "no pending extension"),
        (fresh(), "appeal", {}, "needs --note"),
        (replace(fresh(), appeal_status="pending"), "appeal", {"note": "x"}, "already pending"),
        (replace(fresh(), appealed_by=frozenset({"QD-SN-PS01"})), "appeal", {"note": "x"}, "already appealed"),
        (fresh(), "uphold-appeal", {}, "no pending appeal"),
        (fresh(), "reject-appeal", {}, "no pending appeal"),
        (CLOSED, "appeal", {"note": "x"}, "closed(resolved)"),
        (CLOSED, "reassign", {"unit": "QD-CGS"}, "closed(resolved)"),
        (CLOSED, "responded", {}, "cannot go back"),
        (fresh(), "reopen", {}, "only an order closed as resolved"),
        (replace(CLOSED, resolution="unresolved"), "reopen", {}, "only an order closed as resolved"),
        (replace(CLOSED, resolution="excluded"), "reopen", {}, "only an order closed as resolved"),
        (fresh(), "feedback", {}, "--resolved or --unresolved"),
        (fresh(), "responded", {"resolved": True}, "only with --stage feedback"),
        (fresh(), "close", {}, "unknown action"),
    ],
)
def test_an_illegal_move_is_refused_with_one_line(state: Lifecycle, action: str, kw: dict, words: str) -> None:
    with pytest.raises((OrderRefused, InputError)) as err:
        act(state, action, **kw)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_an_extension_requested_one_minute_after_completion_due_is_refused() -> None:
    with pytest.raises(OrderRefused, match="before completion_due 2026-11-19T00:00"):
        act(fresh(), "extend", "2026-11-19 00:01", days=2, note="来不及")
    with pytest.raises(OrderRefused, match="before completion_due"):
        act(fresh(), "extend", "2026-11-19 00:00", days=2, note="at the due instant is too late too")


def test_a_second_return_by_the_same_holder_is_refused_but_the_new_holder_may_return() -> None:
    s = act(act(fresh(), "returned", note="x"), "keep", "2026-11-12 10:00")
    with pytest.raises(OrderRefused, match="already returned it once"):
        act(s, "returned", "2026-11-12 11:00", note="again")
    moved = act(act(fresh(), "returned", note="x"), "reassign", "2026-11-12 10:00", unit="QD-CGS")
    assert act(moved, "returned", "2026-11-12 11:00", note="not ours either").status == "returned"


def test_an_action_before_the_clock_start_is_refused() -> None:
    moved = act(act(fresh(), "returned", note="x"), "reassign", "2026-11-12 10:00", unit="QD-CGS")
    with pytest.raises(OrderRefused, match="before its clocks started"):
        act(moved, "responded", "2026-11-12 09:59")


# --- who and when ----------------------------------------------------------------------------------


def test_at_defaults_to_recorded_at_and_a_later_at_is_refused() -> None:
    now = at("2026-11-12 09:00")
    assert when_recorded(None, now) == (now, False)
    with pytest.raises(InputError, match="after the time it is recorded"):
        when_recorded(now + timedelta(minutes=1), now)


def test_an_at_more_than_24_hours_before_recorded_at_is_backdated() -> None:
    now = at("2026-11-12 09:00")
    assert when_recorded(now - timedelta(hours=24), now) == (now - timedelta(hours=24), False)
    assert when_recorded(now - timedelta(hours=24, seconds=1), now)[1] is True


def test_by_is_the_flag_else_minyi_operator_else_the_os_user() -> None:
    assert operator("张警官", {"MINYI_OPERATOR": "duty"}) == "张警官"
    assert operator(None, {"MINYI_OPERATOR": "duty"}) == "duty"
    assert operator(None, {}) != ""


def test_a_note_is_stored_with_mobiles_masked_and_over_2000_chars_is_refused() -> None:
    assert clean_note("群众 13812345678 已联系") == "群众 138****5678 已联系"
    assert clean_note("x" * MAX_NOTE_CHARS) == "x" * MAX_NOTE_CHARS
    with pytest.raises(InputError, match="at most 2000"):
        clean_note("x" * (MAX_NOTE_CHARS + 1))


def test_parse_ref_has_one_home() -> None:
    import minyi.tasks.stages.orders as orders
    import minyi.tasks.stages.visits as visits

    assert orders.parse_ref is parse_ref and visits.parse_ref is parse_ref
    assert parse_ref("police110:110:1") == ("police110", "110:1")


# --- property: random action sequences ----------------------------------------------------------

_ACTION_ARGS = st.sampled_from(
    [
        ("responded", {}),
        ("rectified", {}),
        ("feedback", {"resolved": True}),
        ("feedback", {"resolved": False}),
        ("returned", {"note": "x"}),
        ("reassign", {"unit": "QD-SN-PS01"}),
        ("reassign", {"unit": "QD-SB-PS01"}),
        ("reassign", {"unit": "QD-CGS"}),
        ("keep", {}),
        ("extend", {"days": 2, "note": "x"}),
        ("approve-extension", {}),
        ("reject-extension", {}),
        ("appeal", {"note": "x"}),
        ("uphold-appeal", {}),
        ("reject-appeal", {}),
        ("reopen", {}),
    ]
)


@settings(max_examples=300, deadline=None, database=None)
@given(steps=st.lists(st.tuples(_ACTION_ARGS, st.integers(min_value=1, max_value=60 * 40)), max_size=25))
def test_random_action_sequences_keep_one_holder_dues_after_the_start_and_fire_each_level_once(steps) -> None:
    s = with_clocks(fresh())
    now = OPENED
    fired: dict[tuple[str, int], list[str]] = {}  # (holder, period) -> levels fired
    for (action, kw), minutes in steps:
        now += timedelta(minutes=minutes)
        key = (s.unit_code, s.period)
        for level in escalations_due(
            opened_at=s.clock_start,
            response_due=s.response_due,
            completion_due=s.completion_due,
            responded_at=s.responded_at,
            closed_at=s.closed_at,
            fired=fired.get(key, []),
            as_of=now,
            tz=TZ,
        ):
            fired.setdefault(key, []).append(level)
        try:
            after = transition(s, Request(action=action, at=now, ref="p:r", units=UNITS, **kw), TZ)  # type: ignore[arg-type]
        except (OrderRefused, InputError):
            continue
        s = with_clocks(after)
        assert isinstance(s.unit_code, str) and s.unit_code in UNITS  # exactly one holder, a configured unit
        assert s.period >= 1 and s.clock_start <= now
        for due in (s.response_due, s.completion_due):
            assert due is not None and due > s.clock_start
        if s.completion_due_original is not None:
            assert s.completion_due > s.completion_due_original
    for levels in fired.values():
        assert len(levels) == len(set(levels))


def test_every_action_is_reachable_in_the_table() -> None:
    assert set(ACTIONS) >= {"returned", "reassign", "keep", "extend", "appeal", "uphold-appeal", "reopen"}
