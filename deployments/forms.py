"""The run forms an operator fills in the Prefect UI: plain fields, bilingual labels, drop-downs for choices.

A deployment's form is drawn from its flow's signature. The flows keep their
typed Python signatures (`date | None`, `datetime | None`, `bool | None`), which
the UI draws as union toggles ("Property is type None"). So each deployment runs
a *form flow* of the same name made here from the stage's flow:

- `str | None`, `date | None`, `datetime | None` → a plain text field, default `""`
  meaning none / yesterday / now (dates `YYYY-MM-DD`, instants ISO 8601 with offset);
- `bool | None` (e.g. `resolved`) → a drop-down `"" | yes | no`; a `bool` → a checkbox;
- `Literal[...]` stays a drop-down; `list[str] | None` → a list, default empty;
- every field gets a bilingual title (`回访结果 outcome`) and description from
  `FIELDS`, falling back to the flow's own docstring; `as_of` always comes last.

The form flow parses what the form sent (the same parsers as the CLI, so a bad
value fails the run with the same one-line message) and calls the stage's flow
function in its own flow run: no subflow, no second run.
"""

from __future__ import annotations

import inspect
import types
import typing
from datetime import date, datetime
from typing import Any, Literal, Union, get_args, get_origin

from prefect import Flow, flow
from pydantic import Field
from pydantic.fields import FieldInfo

# parameter name → (title, description); a title is "中文 name" so both readers find the field
FIELDS: dict[str, tuple[str, str]] = {
    "business_date": ("业务日期 business_date", "YYYY-MM-DD。空 = 昨天 (empty = the day before as_of)."),
    "as_of": (
        "当前时刻 as_of",
        "ISO 8601 带时区, 如 2026-11-21T09:05:00+08:00。空 = 现在 (empty = the real clock).",
    ),
    "record": (
        "记录 record",
        "SOURCE:RECORD_ID, 从 Artifacts 的「回访队列」复制 (copy the ref from the 回访队列 callback-queue artifact).",
    ),
    "ref": ("督办单 ref", "SOURCE:RECORD_ID, 如 police110:110-20261121-0000123 (the order's record)."),
    "outcome": (
        "回访结果 outcome",
        "满意 satisfied / 基本满意 basically_satisfied / 不满意 dissatisfied / 联系不上 unreachable.",
    ),
    "stage": ("办理阶段 stage", "已响应 responded / 已整改 rectified / 反馈办结 feedback (closes the order)."),
    "resolved": (
        "是否解决 resolved",
        "仅「反馈办结」必填: resolved 已解决 / unresolved 未解决 (feedback only, and required there).",
    ),
    "action": (
        "动作 action",
        "单位 unit: responded 已响应 / rectified 已整改 / feedback 反馈办结 / returned 退单 / extend 申请延期 / "
        "appeal 申诉; 中心 centre: reassign 改派 / keep 驳回退单 / approve-extension 批准延期 / "
        "reject-extension 不批准延期 / uphold-appeal 申诉成立 / reject-appeal 驳回申诉.",
    ),
    "unit": ("改派单位 unit", "仅「改派」: 新单位代码, 如 QD-SN-PS02 (reassign only: the new unit's code)."),
    "days": ("延期天数 days", "仅「申请延期」: 1–10 天 (extend only: 1 to 10 days)."),
    "note": (
        "备注 note",
        "自由文本, 退单/延期/申诉必填理由, 最多 2000 字 (free text; the reason for returned, extend, appeal).",
    ),
    "at": ("发生时间 at", "ISO 8601 带时区。空 = 现在 (when it happened; empty = now)."),
    "by": (
        "经办人 by",
        "经办人姓名, 空 = MINYI_OPERATOR 或系统用户 (who records it; empty = MINYI_OPERATOR or the user).",
    ),
    "start": ("起始日期 start", "YYYY-MM-DD, 含 (first business date, inclusive)."),
    "end": ("结束日期 end", "YYYY-MM-DD, 含, 不早于起始日期 (last business date, inclusive)."),
    "month": ("考核月份 month", "YYYY-MM。空 = 上个月 (empty = the month before as_of)."),
    "force": ("放行 force", "放行该日所有被拦截的质量闸门, 短信随即发出 (release every held gate of the date)."),
    "keys": ("消息键 keys", "outbox 键, 如 rectification:2026-11-21 (outbox keys to post again)."),
    "kind": ("消息类型 kind", "如 assessment_summary, 可空 (every sent message of this kind)."),
    "channel": ("频道 channel", "频道 id, 可空 (every sent message to this channel)."),
    "sources": (
        "数据源 sources",
        "数据源名称 (同配置), 空 = 全部 (only these sources; empty = every configured source).",
    ),
    "since": ("起始时刻 since", "ISO 8601 带时区, 可空 (only messages enqueued from then on)."),
}
LAST = ("as_of",)
YES_NO = Literal["", "yes", "no"]


def _optional(annotation: Any) -> Any | None:
    """X for `X | None` (or Optional[X]), else None."""
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1 and len(get_args(annotation)) == 2:
            return args[0]
    return None


def _convert(kind: str, name: str, value: Any) -> Any:
    from minyi.tasks.errors import InputError
    from minyi.tasks.rules.days import parse_date, parse_instant

    if isinstance(value, FieldInfo):  # a default the engine did not resolve
        value = value.default
    if kind == "text":
        return value or None
    if kind == "date":
        return (value if isinstance(value, date) else parse_date(value, name)) if value else None
    if kind == "required_date":
        return value if isinstance(value, date) else parse_date(str(value), name)
    if kind == "instant":
        return (value if isinstance(value, datetime) else parse_instant(value, name)) if value else None
    if kind == "yes_no":
        if value in ("", None):
            return None
        if value in ("yes", True):
            return True
        if value in ("no", False):
            return False
        raise InputError(f"{name}: expected yes, no or empty, got {value!r}")
    if kind == "list":
        return list(value) or None
    return value


def _field(name: str, default: Any, docstring: str | None, position: int) -> FieldInfo:
    title, description = FIELDS.get(name, (name, docstring or ""))
    extra = {"title": title, "position": position}
    return Field(default=default, description=description, json_schema_extra=extra)  # type: ignore[arg-type]


def form_flow(target: Flow[Any, Any], attr: str, title: str = "") -> Flow[Any, Any]:
    """A flow named like `target` whose parameters render as plain form fields (see the module docstring).

    It answers as `minyi.deployments.entrypoints:<attr>`, so a served or deployed run loads the form, not the stage.
    """
    from prefect.utilities.callables import parameter_docstrings

    hints = typing.get_type_hints(target.fn)
    docs = parameter_docstrings(inspect.getdoc(target.fn))
    signature = inspect.signature(target.fn)
    ordered = [p for p in signature.parameters.values() if p.name not in LAST]
    ordered += [p for p in signature.parameters.values() if p.name in LAST]
    kinds: dict[str, str] = {}
    params: list[inspect.Parameter] = []
    for position, p in enumerate(ordered):
        annotation = hints.get(p.name, Any)
        if isinstance(p.default, FieldInfo):  # the flow already draws its own form field (plain, bilingual)
            kinds[p.name] = "keep"
            extra = p.default.json_schema_extra if isinstance(p.default.json_schema_extra, dict) else {}
            p.default.json_schema_extra = {**extra, "position": position}
            params.append(
                inspect.Parameter(p.name, inspect.Parameter.KEYWORD_ONLY, default=p.default, annotation=annotation)
            )
            continue
        inner = _optional(annotation)
        required = p.default is inspect.Parameter.empty
        default: Any
        if inner in (str, date, datetime):
            kinds[p.name] = {str: "text", date: "date", datetime: "instant"}[inner]
            new, default = str, ""
        elif inner is bool:
            kinds[p.name], new, default = "yes_no", YES_NO, ""
        elif inner is not None and get_origin(inner) is list:
            kinds[p.name], new, default = "list", list[str], []
        elif annotation is date:
            kinds[p.name], new, default = "required_date", str, p.default
        elif annotation is datetime:
            kinds[p.name], new, default = "instant", str, "" if required else p.default
        else:
            kinds[p.name], new, default = "keep", annotation, p.default
        field = _field(p.name, ... if required else default, docs.get(p.name), position)
        params.append(inspect.Parameter(p.name, inspect.Parameter.KEYWORD_ONLY, default=field, annotation=new))

    def run_form(**values: Any) -> Any:
        converted = {name: _convert(kinds[name], name, value) for name, value in values.items()}
        return target.fn(**converted)

    run_form.__signature__ = inspect.Signature(params, return_annotation=Any)  # type: ignore[attr-defined]
    run_form.__annotations__ = {p.name: p.annotation for p in params} | {"return": Any}
    description = f"{title} — {target.description}" if title else target.description
    run_form.__doc__ = description
    run_form.__name__ = run_form.__qualname__ = attr
    run_form.__module__ = "minyi.deployments.entrypoints"
    made = flow(
        name=target.name,
        flow_run_name=target.flow_run_name,
        description=description,
        validate_parameters=True,
        # e.g. the daily loop's and the sweep's run recorders (flows/run_hooks.py)
        on_completion=target.on_completion_hooks,
        on_failure=target.on_failure_hooks,
        on_cancellation=target.on_cancellation_hooks,
        on_crashed=target.on_crashed_hooks,
    )(run_form)
    made._minyi_form_of = target  # type: ignore[attr-defined]
    return made
