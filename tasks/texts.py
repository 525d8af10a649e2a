"""Every text minyi sends or posts (SMS, channel posts, alerts) and every outbox key, in one place.

Why one module: the centre reviews its wording in one file, and a rule that names a
message (its outbox key) cannot drift from the text that goes out under it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any

from minyi.tasks.adapters.notify.base import Message

# Neutral markdown only (tasks.notify.base): plain lines, `**bold**`, `• ` bullets; no links, no `<>[]&`
# of our own, so every such character in a post is upstream data and each notifier escapes it.


# --- reports: rectification and assessment summaries (SPEC §7) ---

CLOCK_NAMES = {"response": "响应", "completion": "办结反馈"}


def unit_label(code: str, names: dict[str, str]) -> str:
    name = names.get(code)
    return f"{name}（{code}）" if name else f"{code}（未配置单位）"


def _short(value: str | None) -> str:
    return value[:16].replace("T", " ") if value else "待日历"


def order_line(o: dict[str, Any], names: dict[str, str]) -> str:
    ref = f"{o['source']}:{o['record_id']}"
    if o["state"] == "overdue":
        clocks = "、".join(CLOCK_NAMES[c] for c in o["overdue_clocks"])
        due = o["response_due"] if o["overdue_clocks"][0] == "response" else o["completion_due"]
        what = f"{clocks}超期（时限 {_short(due)}）"
    else:
        due = o["response_due"] if o["responded_at"] is None else o["completion_due"]
        what = f"今日到期（时限 {_short(due)}）"
    return f"• {ref} · {unit_label(o['unit_code'], names)} · {what}"


def rectification_messages(
    rect: dict[str, Any], centre: str, unit_names: dict[str, str], unit_channels: dict[str, str]
) -> list[Message]:
    """The centre's daily rectification summary (+ its thread of listed orders) and each unit's digest."""
    from minyi.tasks.stages.reports import chunks

    day = rect["business_date"]
    s = rect["summary"]
    title = f"整改督办日报 {day}"
    counts = (
        f"在办 {s['orders'] - s['closed']} 件：超期 {s['overdue']}，今日到期 {s['due_today']}，"
        f"待日历 {s['pending_calendar']}，正常在办 {s['open']}；本月已办结 {s['closed']} 件。"
    )
    listed = [o for o in rect["orders"] if o["state"] in ("overdue", "due_today")]
    listed.sort(key=lambda o: (o["state"] != "overdue", o["unit_code"], o["opened_at"]))
    lines = [order_line(o, unit_names) for o in listed]
    awaiting = [o for o in rect["orders"] if o["status"] == "returned"]
    extensions = [o for o in rect["orders"] if (o.get("extension") or {}).get("status") == "pending"]
    awaiting_lines = [
        f"• {o['source']}:{o['record_id']} · {unit_label(o['unit_code'], unit_names)} · 退单待中心改派或驳回"
        for o in awaiting
    ] + [
        f"• {o['source']}:{o['record_id']} · {unit_label(o['unit_code'], unit_names)} · "
        f"延期 {o['extension']['days']} 天待审批"
        for o in extensions
    ]
    if awaiting_lines:
        counts += f"\n待中心处理：退单 {len(awaiting)} 件，延期申请 {len(extensions)} 件。"
    if s.get("backdated"):
        counts += "\n补录（登记晚于发生 24 小时以上）：" + "，".join(
            f"{unit_label(code, unit_names)} {n} 项" for code, n in s["backdated"].items()
        )
    thread = awaiting_lines + lines
    hint = (
        f"待中心处理、超期及今日到期的 {len(thread)} 件见本消息的回复。" if thread else "没有超期或今日到期的督办单。"
    )
    key = f"rectification:{day}"
    messages = [Message(key=key, kind="rectification_summary", channel=centre, title=title, body=f"{counts}\n{hint}")]
    for i, part in enumerate(chunks(thread), start=1):
        messages.append(
            Message(key=f"{key}:part{i}", kind="rectification_list", channel=centre, body="\n".join(part), parent=key)
        )
    by_unit: dict[str, list[str]] = {}
    for o, line in zip(listed, lines, strict=True):
        by_unit.setdefault(o["unit_code"], []).append(line)
    for code, unit_lines in sorted(by_unit.items()):
        channel = unit_channels.get(code) or centre  # an unknown unit has no duty channel: the centre acts
        body = f"{unit_label(code, unit_names)} 督办提醒 {day}：超期或今日到期 {len(unit_lines)} 件\n" + "\n".join(
            unit_lines[:50]
        )
        if len(unit_lines) > 50:
            body += f"\n……其余 {len(unit_lines) - 50} 件见中心日报。"
        messages.append(
            Message(key=f"rectification-unit:{day}:{code}", kind="rectification_unit", channel=channel, body=body)
        )
    return messages


def assessment_route(
    assessment: dict[str, Any], centre: str, leadership: str, monthly: bool
) -> tuple[str, str, list[str]]:
    """(outbox key, title, channels) of an assessment summary: the daily (month-to-date) one to the centre;
    the monthly one, for the monthly meeting, to the centre and leadership channels."""
    if monthly:
        month = assessment["period"]["start"][:7]
        return f"assessment-month:{month}", f"民意110 月度考核 {month}", [centre, leadership]
    day = assessment["business_date"]
    return f"assessment:{day}", f"民意110 考核（月度累计）{day}", [centre]


def fmt_score(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def assessment_lines(report: dict[str, Any], unit_names: dict[str, str]) -> list[str]:
    """One line per unit in table order; a unit under min_responses shows 不排名 instead of a rank."""
    from minyi.tasks.stages.reports import fmt_rate

    return [
        f"{str(u['rank']) + '.' if u['ranked'] else '·'} {unit_label(u['unit_code'], unit_names)} "
        f"{'✅' if u['meets_targets'] else '❌'} "
        f"满意率 {fmt_rate(u['satisfaction_rate'])}（回复率 {fmt_rate(u['reply_rate'])}） · "
        f"及时响应率 {fmt_rate(u['timely_response_rate'])} · "
        f"解决率 {fmt_rate(u['resolution_rate'])} · 积分 {fmt_score(u['score'])}"
        + ("" if u["ranked"] else f"（有效评价 {u['responses']} 条，不足排名门槛，不排名）")
        for u in report["units"]
    ]


def assessment_messages(
    report: dict[str, Any],
    channels: list[str],
    chart: Path | None,
    unit_names: dict[str, str],
    key: str,
    title: str,
) -> list[Message]:
    """The assessment summary (overall and the ranking, long rankings in the thread) and its chart."""
    from minyi.tasks.stages.reports import THREAD_CHUNK, chunks, fmt_rate

    o = report["overall"]
    t = report["targets"]
    period = f"{report['period']['start']} 至 {report['period']['end']}"
    overall = (
        f"**全市** 记录 {o['records']} 条，回访短信 {o['followups_sent']} 条，有效评价 {o['responses']} 条\n"
        f"满意率 {fmt_rate(o['satisfaction_rate'])}（目标 {fmt_rate(t['satisfaction'])}，"
        f"回复率 {fmt_rate(o['reply_rate'])}） · "
        f"及时响应率 {fmt_rate(o['timely_response_rate'])}（目标 {fmt_rate(t['timely_response'])}） · "
        f"解决率 {fmt_rate(o['resolution_rate'])}（目标 {fmt_rate(t['resolution'])}） · "
        f"按时办结率 {fmt_rate(o['timely_completion_rate'])} · 积分 {fmt_score(o['score'])}"
    )
    ranking = assessment_lines(report, unit_names)
    missed = sum(1 for u in report["units"] if not u["meets_targets"])
    head = f"{len(report['units'])} 个单位，{missed} 个未达标。"
    inline, rest = ranking[:THREAD_CHUNK], ranking[THREAD_CHUNK:]
    messages: list[Message] = []
    for channel in channels:
        ckey = key if channel == channels[0] else f"{key}:{channel}"
        body = f"统计期 {period}，评估时点 {report['as_of']}\n{overall}\n{head}\n" + "\n".join(inline)
        if rest:
            body += "\n其余单位见本消息的回复。"
        messages.append(Message(key=ckey, kind="assessment_summary", channel=channel, title=title, body=body))
        for i, part in enumerate(chunks(rest), start=1):
            messages.append(
                Message(
                    key=f"{ckey}:part{i}", kind="assessment_list", channel=channel, body="\n".join(part), parent=ckey
                )
            )
        if chart is not None:
            messages.append(
                Message(
                    key=f"{ckey}:chart",
                    kind="assessment_chart",
                    channel=channel,
                    body=f"{title}：各单位三项指标与目标线",
                    image=str(chart),
                )
            )
    return messages


# --- escalations (SPEC §6) ---


def escalation_key(order_id: int, level: str, channel: str, period: int = 1) -> str:
    """Period 1 keeps the key it always had; a later clock period (reassignment, reopen, SPEC §5) posts anew."""
    return f"escalation:{order_id}:{'' if period == 1 else f'p{period}:'}{level}:{channel}"


def escalation_text(level: str, ref: str, unit_label: str, clock: str, due: str, unit_known: bool) -> str:
    if level == "response_reminder":
        body = f"⏰ 督办提醒 {ref}：{unit_label} 的{clock}今日届满，截止 {due}，单位尚未反馈跟进情况。"
    elif level == "response_overdue":
        body = f"🚨 督办超时 {ref}：{unit_label} 的{clock}已于 {due} 届满，单位仍未反馈跟进情况。"
    else:
        body = f"🚨 整改超时 {ref}：{unit_label} 的{clock}已于 {due} 届满，工单仍未办结反馈。"
    if not unit_known:
        body += "该单位未配置值班频道，转中心处理。"
    return body


# --- quality alert (SPEC §8) ---


def quality_alert_key(business_date: date, signature: str) -> str:
    return f"quality:{business_date}:{signature}"


def quality_alert_text(business_date: date, lines: Sequence[str], held: bool) -> str:
    """The centre's quality alert: one line per held gate, quarantine or broken store rule (composed by tasks.quality)."""
    tail = f"\n核实后放行：minyi quality --date {business_date} --force" if held else ""
    return f"⚠️ {business_date} 数据质量告警\n" + "\n".join(lines) + tail


# --- ingest (SPEC §3) ---


def source_failed(channel: str, source: str, business_date: date, error: str) -> Message:
    return Message(
        key=f"source-failed:{source}:{business_date}",
        kind="source_failed",
        channel=channel,
        body=f"⚠️ 数据源 {source} 拉取 {business_date} 失败：{error}（其他数据源已照常入库）",
    )


def unknown_units(channel: str, business_date: date, unknown: Sequence[tuple[str, int]]) -> Message:
    listing = "，".join(f"{code}（{n}条）" for code, n in unknown)
    return Message(
        key=f"unknown-units:{business_date}:{','.join(c for c, _ in unknown)}",
        kind="unknown_units",
        channel=channel,
        body=f"⚠️ {business_date} 的记录含未配置的单位代码：{listing}。相关事项转中心处理，请在配置中补充单位。",
    )


# --- follow-up: SMS gateway failure (SPEC §4) ---


def sms_gateway_failed(channel: str, day: date, error: str) -> Message:
    """One post per local day to the centre channel when the gateway failed past its retries."""
    return Message(
        key=f"sms-gateway-failed:{day.isoformat()}",
        kind="sms_gateway_failed",
        channel=channel,
        body=f"⚠️ 短信网关异常：{error}。未发出的回访短信已保留，将在下次运行时发送。",
    )


# --- notification outbox (SPEC §7, §13) ---


def outbox_unconfirmed(channel: str, as_of: datetime, n: int) -> Message:
    """A dead run's posts that the channel could not confirm: never re-posted on a guess, an operator decides."""
    day = as_of.date().isoformat()
    return Message(
        key=f"outbox-unconfirmed:{day}",
        kind="outbox_unconfirmed",
        channel=channel,
        body=(
            f"⚠️ 消息投递待确认：{n} 条消息在投递中断后无法向频道核实是否已发出（例如令牌缺少 channels:history 权限），"
            "未重发。请核对频道后用 minyi resend --key 补发。"
        ),
    )


# --- lifecycle (SPEC §5): posts of returns, reassignments, extensions, appeals, reopens; verification SMS ---

LIFECYCLE_KIND = "order_lifecycle"


def lifecycle_key(order_id: int, period: int, action: str, channel: str) -> str:
    """Outbox key of a lifecycle post: once per order, clock period, action and channel."""
    return f"lifecycle:{order_id}:{period}:{action}:{channel}"


def lifecycle_text(
    action: str,
    ref: str,
    unit: str,
    *,
    at: str,
    by: str,
    note: str | None = None,
    to_unit: str | None = None,
    days: int | None = None,
    response_due: str | None = None,
    completion_due: str | None = None,
) -> str:
    """The Chinese post of one lifecycle action; `unit` / `to_unit` are labels like 八大关派出所（QD-SN-PS01）."""
    reason = f"理由：{note}。" if note else ""
    dues = f"新时限：跟进 {response_due or '待日历'}，办结反馈 {completion_due or '待日历'}。"
    head = {
        "returned": f"↩️ 退单 {ref}：{unit} 申请退回，待中心改派或驳回。{reason}",
        "keep": f"↩️ 退单驳回 {ref}：中心不同意退回，工单仍由 {unit} 办理，原时限不变。{reason}",
        "reassign": f"🔀 改派 {ref}：中心已由 {unit} 改派至 {to_unit}，时限自改派时重新起算。{dues}{reason}",
        "extend": f"⏳ 延期申请 {ref}：{unit} 申请延期 {days} 天，待中心审批。{reason}",
        "approve-extension": f"⏳ 延期已批准 {ref}：{unit} 延期 {days} 天，办结反馈时限改为 {completion_due or '待日历'}。{reason}",
        "reject-extension": f"⏳ 延期未批准 {ref}：{unit} 的延期申请未获批准，原时限不变。{reason}",
        "appeal": f"📝 申诉 {ref}：{unit} 申诉该不满意评价不合理，待中心裁定。{reason}",
        "uphold-appeal": f"📝 申诉成立 {ref}：{unit} 的申诉成立，该评价剔除，工单以剔除办结。{reason}",
        "reject-appeal": f"📝 申诉驳回 {ref}：{unit} 的申诉未获支持，工单照常办理。{reason}",
        "reopen": f"🔁 复核未解决 {ref}：群众回复问题未解决，工单重新打开，仍由 {unit} 办理。{dues}",
    }[action]
    return f"{head}（{at}，{by}）"


VERIFY_KIND = "verify"


def verification_message_id(source: str, record_id: str, k: int) -> str:
    """SPEC §5: minyi:SOURCE:RECORD_ID:verify:K, K = 1, 2, … per closure as resolved."""
    return f"minyi:{source}:{record_id}:verify:{k}"


def verification_sms(signature: str, unit_name: str) -> str:
    """The verification call-back SMS (复核回访)."""
    return f"【{signature}】您好，您反映的问题，{unit_name}已反馈整改完毕。回复1确认已解决，2未解决。回复TD退订。"


# --- early warnings (SPEC §10) ---
# Outbox keys: one warning, one post, whatever the re-runs.
WARNING_KEYS = {
    "repeat_dissatisfied": "repeat:{pseudonym}:{first_date}",
    "unit_decline": "decline:{unit_code}:{business_date}",
    "overdue_cluster": "cluster:{unit_code}:{business_date}",
}
WARNING_TITLES = {
    "repeat_dissatisfied": "【预警·重复不满意】",
    "unit_decline": "【预警·满意率下滑】",
    "overdue_cluster": "【预警·超期扎堆】",
}
REPEAT_DISSATISFIED_TEXT = (
    "{title}号码 {phone} 近30天内 {n} 次回访评价不满意：{records}。涉及单位：{units}。"
    "请中心提前回访、协调处置（未诉先办）。"
)
UNIT_DECLINE_TEXT = (
    "{title}{unit} 近7个业务日满意率 {recent_rate}（有效评价 {recent_responses} 条），"
    "此前28个业务日 {baseline_rate}（{baseline_responses} 条），下降 {points} 个百分点。请关注整改。"
)
OVERDUE_CLUSTER_TEXT = "{title}{unit} 现有 {n} 件督办单超期未办结：{orders}。请中心督促。"
WARNINGS_NONE = "今日无预警。"
