"""The call-back queue as the operator sees it in the Prefect UI (artifact `callback-queue`, 回访队列).

Every sweep (and every visit recorded from the UI) publishes the visits still to
make as a table artifact: the ref to copy into the `record-visit` form, the unit,
why the visit is due, since when the citizen has waited, and the citizen's name
and phone **masked** (`张*`, `138****5678`). Full numbers stay in `minyi visits`,
run by call-centre staff on the centre's machine (docs/followups.md).
"""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.engine import Engine

from minyi.tasks.rules.masking import mask_name, mask_phone
from minyi.tasks.stages.visits import QueuedVisit, list_visits

ARTIFACT_KEY = "callback-queue"
ARTIFACT_TITLE = "回访队列"
MAX_ROWS = 500  # the oldest first: a longer queue is worked from `minyi visits`
REASONS = {"no_reply": "未回复", "landline": "固定电话", "unrecognised": "回复无法识别", "dissatisfied": "不满意"}
COLUMNS = (
    "ref",
    "单位 unit",
    "原因 reason",
    "等待起始 waiting since",
    "姓名 name",
    "电话 phone",
    "上次结果 last outcome",
)


def queue_rows(visits: list[QueuedVisit], tz: ZoneInfo) -> list[dict[str, str]]:
    """One table row per queued visit, contacts masked."""
    return [
        dict(
            zip(
                COLUMNS,
                (
                    v.ref,
                    v.unit_name or v.unit_code,
                    f"{REASONS.get(v.reason, v.reason)} {v.reason}",
                    v.queued_at.astimezone(tz).strftime("%Y-%m-%d %H:%M"),
                    mask_name(v.citizen_name) or "-",
                    mask_phone(v.phone) or "-",
                    v.visit_outcome or "",
                ),
                strict=True,
            )
        )
        for v in visits
    ]


def publish_callback_queue(engine: Engine, tz: ZoneInfo) -> int:
    """Create the `callback-queue` table artifact (a new version of the key each time); returns the rows shown."""
    from prefect.artifacts import create_table_artifact

    visits = list_visits(engine, limit=MAX_ROWS + 1)
    rows = queue_rows(visits[:MAX_ROWS], tz)
    more = (
        f"; 仅显示最早的 {MAX_ROWS} 条 (oldest {MAX_ROWS} shown), 其余见 `minyi visits`"
        if len(visits) > MAX_ROWS
        else ""
    )
    table: Any = rows or [dict.fromkeys(COLUMNS, "")]
    create_table_artifact(
        key=ARTIFACT_KEY,
        table=table,
        description=f"{ARTIFACT_TITLE} call-back queue: {len(rows)} 待回访 visits to make{more}. "
        "把 ref 复制到 record-visit 表单 (copy the ref into the record-visit form).",
    )
    return len(rows)
