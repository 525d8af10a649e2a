"""Every text minyi sends or posts (SMS, channel posts, alerts) and every outbox key, in one place.

Why one module: the centre reviews its wording in one file, and a rule that names a
message (its outbox key) cannot drift from the text that goes out under it.
"""

from __future__ import annotations

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
