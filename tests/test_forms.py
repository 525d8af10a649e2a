"""The operator's run forms (deployments/forms.py): plain fields, bilingual labels, drop-downs, "" = none/now."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any, Literal

import pytest
from prefect import flow
from prefect.utilities.callables import parameter_schema

from minyi.deployments.entrypoints import resolve
from minyi.deployments.forms import form_flow
from minyi.deployments.registry import SPECS, spec
from minyi.tasks.errors import InputError

CJK = re.compile(r"[\u4e00-\u9fff]")


def _schema(name: str) -> dict[str, Any]:
    return parameter_schema(resolve(spec(name))).model_dump()


@pytest.mark.parametrize("name", [s.name for s in SPECS])
def test_no_form_field_is_a_union_toggle_and_every_label_is_bilingual(name: str) -> None:
    target = resolve(spec(name))
    props = parameter_schema(target).model_dump()["properties"]
    for field, p in props.items():
        assert "anyOf" not in p, f"{name}.{field} renders as a union toggle"
        assert CJK.search(p["title"]) and field in p["title"], p["title"]
        assert p.get("description"), f"{name}.{field} has no description"
    assert CJK.search(target.description or "")


def test_record_visit_form_is_record_outcome_drop_down_note_at_in_that_order() -> None:
    schema = _schema("record-visit")
    props = schema["properties"]
    assert sorted(props, key=lambda k: props[k]["position"]) == ["record", "outcome", "note", "at", "by", "as_of"]
    assert props["outcome"]["enum"] == ["satisfied", "basically_satisfied", "dissatisfied", "unreachable"]
    assert props["outcome"]["title"] == "回访结果 outcome"
    assert props["note"] == props["note"] | {"type": "string", "default": ""}
    assert schema["required"] == ["record", "outcome"]


def test_report_order_action_and_resolved_are_drop_downs() -> None:
    props = _schema("report-order")["properties"]
    assert {"responded", "rectified", "feedback", "returned", "reassign", "uphold-appeal"} <= set(
        props["action"]["enum"]
    )
    assert props["resolved"]["enum"] == ["", "resolved", "unresolved"] and props["resolved"]["default"] == ""


def test_as_of_is_always_the_last_field() -> None:
    for s in SPECS:
        props = _schema(s.name)["properties"]
        if "as_of" in props:
            assert max(props, key=lambda k: props[k]["position"]) == "as_of", s.name


@flow(name="toy")
def _toy(
    day: date | None = None,
    at: datetime | None = None,
    note: str | None = None,
    ok: bool | None = None,
    keys: list[str] | None = None,
    kind: Literal["a", "b"] = "a",
) -> dict[str, Any]:
    return {"day": day, "at": at, "note": note, "ok": ok, "keys": keys, "kind": kind}


def test_empty_form_fields_mean_none_and_text_is_parsed_like_the_cli() -> None:
    form = form_flow(_toy, "toy")
    assert form.fn(day="", at="", note="", ok="", keys=[], kind="a") == {
        "day": None,
        "at": None,
        "note": None,
        "ok": None,
        "keys": None,
        "kind": "a",
    }
    got = form.fn(day="2026-11-21", at="2026-11-21T09:05:00+08:00", note="x", ok="no", keys=["k"], kind="b")
    assert got["day"] == date(2026, 11, 21) and got["at"].utcoffset().total_seconds() == 8 * 3600
    assert got["ok"] is False and got["keys"] == ["k"]


def test_a_bad_instant_in_a_form_fails_with_the_cli_message() -> None:
    with pytest.raises(InputError, match="at"):
        form_flow(_toy, "toy").fn(day="", at="yesterday", note="", ok="", keys=[], kind="a")
