"""Every text minyi sends or posts (SMS, channel posts, alerts) and every outbox key, in one place.

Why one module: the centre reviews its wording in one file, and a rule that names a
message (its outbox key) cannot drift from the text that goes out under it.
"""

from __future__ import annotations

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

# --- assessment summaries (SPEC §7) ---
ASSESSMENT_DAILY_KEY = "assessment:{business_date}"
ASSESSMENT_DAILY_TITLE = "民意110 考核（月度累计）{business_date}"
ASSESSMENT_MONTHLY_KEY = "assessment-month:{month}"
ASSESSMENT_MONTHLY_TITLE = "民意110 月度考核 {month}"
