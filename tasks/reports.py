"""The daily reports of SPEC §7: rectification listing, files (JSON + CSV twins + chart) and channel summaries.

Who reads what:
- `rectification.json` / `.csv`: every order not closed before the month began,
  each with its clocks, the escalations fired and its `state` at as_of
  (open | due_today | overdue | pending_calendar | closed); contacts masked.
- `assessment.json` / `.csv` / `.png`: the month-to-date metrics (tasks.kpis).
- the centre channel: a rectification summary (overdue and due-today orders
  listed in its thread, so a long list never buries the channel) and an
  assessment summary with the chart; each unit with overdue or due-today orders
  gets its own digest in its duty channel (unknown units: the centre's).

Files are written whole or not at all (temp + rename). Every contact passes
through tasks.masking; nothing here formats a phone or a name itself.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Date, Integer, String, text
from sqlalchemy.engine import Connection

from minyi.schemas.types import UtcDateTime
from minyi.tasks import texts
from minyi.tasks.config import MinyiConfig
from minyi.tasks.csvsafe import csv_cell
from minyi.tasks.days import start_of_day
from minyi.tasks.kpis import METRICS, Period
from minyi.tasks.masking import mask_name, mask_phone
from minyi.tasks.outbox import Message
from minyi.tasks.slack import write_atomic

THREAD_CHUNK = 15  # lines per thread reply: long lists go in the thread, a screenful at a time
INSTANTS = ("opened_at", "response_due", "completion_due", "responded_at", "rectified_at", "closed_at")
ORDER_FIELDS = (
    "source",
    "record_id",
    "unit_code",
    "status",
    *INSTANTS,
    "resolution",
    "escalations",
    "state",
    "overdue_clocks",
    "business_date",
    "citizen",
    "phone",
)
LINEAGE_HEADER = ("unit_code", "metric", "source", "record_id")
STATES = ("overdue", "due_today", "pending_calendar", "open", "closed")
CLOCK_NAMES = {"response": "响应", "completion": "办结反馈"}
STATE_NAMES = {
    "overdue": "超期",
    "due_today": "今日到期",
    "pending_calendar": "待日历",
    "open": "在办",
    "closed": "已办结",
}


# ---------------------------------------------------------------------------------------------- pure


def last_day(due: datetime, tz: ZoneInfo) -> date:
    """A due instant is 24:00 of the clock's last day, i.e. 00:00 of the next: its last day is the day before."""
    return (due.astimezone(tz) - timedelta(microseconds=1)).date()


def order_state(o: dict[str, Any], as_of: datetime, tz: ZoneInfo) -> tuple[str, list[str]]:
    """Where an order stands at as_of, and which clocks have run out on it (SPEC §6)."""
    if o["closed_at"] is not None:
        return "closed", []
    running = [("response", o["response_due"], o["responded_at"] is None), ("completion", o["completion_due"], True)]
    overdue = [name for name, due, waiting in running if waiting and due is not None and due <= as_of]
    if overdue:
        return "overdue", overdue
    today = as_of.astimezone(tz).date()
    if any(waiting and due is not None and last_day(due, tz) == today for _, due, waiting in running):
        return "due_today", []
    if any(waiting and due is None for _, due, waiting in running):
        return "pending_calendar", []
    return "open", []


def iso(value: datetime | None, tz: ZoneInfo) -> str | None:
    return value.astimezone(tz).isoformat() if value is not None else None


def fmt_rate(value: float | None) -> str:
    """A rate for people: one decimal, rounded *down*, so 79.98% never shows as a passing "80.0%"."""
    if value is None:
        return "—"
    return f"{math.floor(round(value * 1000, 6)) / 10:.1f}%"


def chunks(lines: list[str], size: int = THREAD_CHUNK) -> list[list[str]]:
    return [lines[i : i + size] for i in range(0, len(lines), size)]


# ---------------------------------------------------------------------------------------------- rectification

_ORDERS_SQL = """
SELECT o.id, o.source, o.record_id, o.unit_code, o.status, o.opened_at, o.response_due, o.completion_due,
       o.responded_at, o.rectified_at, o.closed_at, o.resolution, r.business_date, r.citizen_name, r.phone_norm
FROM orders o
JOIN followups f ON f.id = o.followup_id
JOIN records r ON r.id = f.record_pk
WHERE o.closed_at IS NULL OR o.closed_at >= :since
ORDER BY o.opened_at, o.source, o.record_id
"""

_ESCALATIONS_SQL = """
SELECT e.order_id, e.level FROM escalations e JOIN orders o ON o.id = e.order_id
WHERE o.closed_at IS NULL OR o.closed_at >= :since
ORDER BY e.order_id, e.fired_at, e.id
"""


def rectification(conn: Connection, business_date: date, as_of: datetime, tz: ZoneInfo) -> dict[str, Any]:
    """rectification.json: every order not closed before the period (the month of business_date)."""
    period = Period.month_to_date(business_date)
    since = start_of_day(period.start, tz)
    typed = {c: UtcDateTime() for c in INSTANTS} | {"id": Integer(), "business_date": Date(), "status": String()}
    params = {"since": since}
    rows = conn.execute(text(_ORDERS_SQL).columns(**typed), params).mappings().all()
    fired: dict[int, list[str]] = {}
    for order_id, level in conn.execute(text(_ESCALATIONS_SQL).columns(order_id=Integer()), params):
        fired.setdefault(order_id, []).append(level)
    orders = []
    for row in rows:
        state, overdue = order_state(dict(row), as_of, tz)
        orders.append(
            {
                "source": row["source"],
                "record_id": row["record_id"],
                "unit_code": row["unit_code"],
                "status": row["status"],
                **{k: iso(row[k], tz) for k in INSTANTS},
                "resolution": row["resolution"],
                "escalations": fired.get(row["id"], []),
                "state": state,
                "overdue_clocks": overdue,
                "business_date": row["business_date"].isoformat(),
                "citizen": mask_name(row["citizen_name"]),
                "phone": mask_phone(row["phone_norm"]),
            }
        )
    summary = {"orders": len(orders), **{s: sum(1 for o in orders if o["state"] == s) for s in STATES}}
    return {
        "business_date": business_date.isoformat(),
        "as_of": as_of.astimezone(tz).isoformat(),
        "period": {"start": period.start.isoformat(), "end": period.end.isoformat()},
        "summary": summary,
        "orders": orders,
    }


# ---------------------------------------------------------------------------------------------- files


@dataclass(frozen=True)
class ReportFiles:
    directory: Path
    assessment_json: Path
    assessment_csv: Path
    rectification_json: Path
    rectification_csv: Path
    chart: Path
    lineage_csv: Path


def report_paths(reports_dir: Path, business_date: date) -> ReportFiles:
    """The daily reports' files: `MINYI_REPORTS_DIR/{business_date}/`."""
    return files_in(reports_dir / business_date.isoformat())


def files_in(d: Path) -> ReportFiles:
    return ReportFiles(
        directory=d,
        assessment_json=d / "assessment.json",
        assessment_csv=d / "assessment.csv",
        rectification_json=d / "rectification.json",
        rectification_csv=d / "rectification.csv",
        chart=d / "assessment.png",
        lineage_csv=d / "lineage.csv",
    )


def _json(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, indent=2) + "\n"


def _csv(header: list[str], rows: list[list[Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for row in rows:
        w.writerow([csv_cell(v) for v in row])
    # a BOM so that Excel (what the duty office opens CSVs with) reads the Chinese as UTF-8
    return "\ufeff" + buf.getvalue()


def assessment_csv(report: dict[str, Any]) -> str:
    """One row per unit in table order, then `overall` (no rank, no meets_targets); rates exact, unrounded."""
    header = ["unit_code", *METRICS, "meets_targets", "ranked", "rank"]
    rows = [
        [u["unit_code"], *(u[m] for m in METRICS), u["meets_targets"], u["ranked"], u["rank"]] for u in report["units"]
    ]
    rows.append(["overall", *(report["overall"][m] for m in METRICS), None, None, None])
    return _csv(header, rows)


class LineageFile:
    """lineage.csv (SPEC §12) beside assessment.json, written while the counts are read.

    Use as the `lineage` sink of tasks.kpis.compute_assessment: the statement that counts also hands over the
    records behind each count (lines of formula-safe, CSV-quoted cells, built by the database), so every
    count of assessment.json equals its number of lineage rows. Streamed to a temp file, renamed on success.
    The lines come whole from the database: a quoted cell may hold a newline, so nothing here splits them.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows = 0

    def __enter__(self) -> LineageFile:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, self._tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        self._fh = os.fdopen(fd, "w", encoding="utf-8", newline="")
        self._fh.write("\ufeff" + ",".join(LINEAGE_HEADER) + "\n")  # a BOM, like every CSV minyi writes
        return self

    def __call__(self, unit_code: str, metric: str, lines: str, n: int) -> None:
        self._fh.write(lines + "\n")
        self.rows += n

    def __exit__(self, kind: object, *_: object) -> None:
        self._fh.close()
        if kind is None:
            os.replace(self._tmp, self.path)
        else:
            Path(self._tmp).unlink(missing_ok=True)


def rectification_csv(report: dict[str, Any]) -> str:
    rows = [[("|".join(o[k]) if isinstance(o[k], list) else o[k]) for k in ORDER_FIELDS] for o in report["orders"]]
    return _csv(list(ORDER_FIELDS), rows)


def write_reports(
    files: ReportFiles, assessment: dict[str, Any], rect: dict[str, Any], unit_names: dict[str, str]
) -> None:
    """Write both reports, their CSV twins and the chart, each atomically."""
    from minyi.tasks.charts import render_assessment_chart

    write_atomic(files.assessment_json, _json(assessment))
    write_atomic(files.assessment_csv, assessment_csv(assessment))
    write_atomic(files.rectification_json, _json(rect))
    write_atomic(files.rectification_csv, rectification_csv(rect))
    write_atomic(files.chart, render_assessment_chart(assessment, unit_names))


# ---------------------------------------------------------------------------------------------- messages


def _unit_label(code: str, names: dict[str, str]) -> str:
    name = names.get(code)
    return f"{name}（{code}）" if name else f"{code}（未配置单位）"


def _order_line(o: dict[str, Any], names: dict[str, str], tz: ZoneInfo) -> str:
    ref = f"{o['source']}:{o['record_id']}"
    if o["state"] == "overdue":
        clocks = "、".join(CLOCK_NAMES[c] for c in o["overdue_clocks"])
        due = o["response_due"] if o["overdue_clocks"][0] == "response" else o["completion_due"]
        what = f"{clocks}超期（时限 {_short(due)}）"
    else:
        due = o["response_due"] if o["responded_at"] is None else o["completion_due"]
        what = f"今日到期（时限 {_short(due)}）"
    return f"• {ref} · {_unit_label(o['unit_code'], names)} · {what}"


def _short(value: str | None) -> str:
    return value[:16].replace("T", " ") if value else "待日历"


def _section(markdown: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": markdown[:2900]}}


def _header(title: str) -> dict[str, Any]:
    return {"type": "header", "text": {"type": "plain_text", "text": title[:150], "emoji": True}}


def rectification_messages(
    rect: dict[str, Any], cfg: MinyiConfig, unit_names: dict[str, str], unit_channels: dict[str, str]
) -> list[Message]:
    """The centre's daily rectification summary (+ its thread of listed orders) and each unit's digest."""
    day = rect["business_date"]
    s = rect["summary"]
    centre = cfg.slack.center_channel
    title = f"整改督办日报 {day}"
    counts = (
        f"在办 {s['orders'] - s['closed']} 件：超期 {s['overdue']}，今日到期 {s['due_today']}，"
        f"待日历 {s['pending_calendar']}，正常在办 {s['open']}；本月已办结 {s['closed']} 件。"
    )
    listed = [o for o in rect["orders"] if o["state"] in ("overdue", "due_today")]
    listed.sort(key=lambda o: (o["state"] != "overdue", o["unit_code"], o["opened_at"]))
    lines = [_order_line(o, unit_names, ZoneInfo(cfg.timezone)) for o in listed]
    hint = f"超期及今日到期的 {len(lines)} 件见本消息的回复。" if lines else "没有超期或今日到期的督办单。"
    key = f"rectification:{day}"
    messages = [
        Message(
            key=key,
            kind="rectification_summary",
            channel=centre,
            text=f"{title}\n{counts}\n{hint}",
            blocks=json.dumps(
                [_header(title), _section(counts), {"type": "context", "elements": [{"type": "mrkdwn", "text": hint}]}],
                ensure_ascii=False,
            ),
        )
    ]
    for i, part in enumerate(chunks(lines), start=1):
        body = "\n".join(part)
        messages.append(
            Message(
                key=f"{key}:part{i}",
                kind="rectification_list",
                channel=centre,
                text=body,
                blocks=json.dumps([_section(body)], ensure_ascii=False),
                thread_of=key,
            )
        )
    by_unit: dict[str, list[str]] = {}
    for o, line in zip(listed, lines, strict=True):
        by_unit.setdefault(o["unit_code"], []).append(line)
    for code, unit_lines in sorted(by_unit.items()):
        channel = unit_channels.get(code) or centre  # an unknown unit has no duty channel: the centre acts
        body = f"{_unit_label(code, unit_names)} 督办提醒 {day}：超期或今日到期 {len(unit_lines)} 件\n" + "\n".join(
            unit_lines[:50]
        )
        if len(unit_lines) > 50:
            body += f"\n……其余 {len(unit_lines) - 50} 件见中心日报。"
        messages.append(
            Message(key=f"rectification-unit:{day}:{code}", kind="rectification_unit", channel=channel, text=body)
        )
    return messages


def fmt_score(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def assessment_lines(report: dict[str, Any], unit_names: dict[str, str]) -> list[str]:
    """One line per unit in table order; a unit under min_responses shows 不排名 instead of a rank."""
    return [
        f"{str(u['rank']) + '.' if u['ranked'] else '·'} {_unit_label(u['unit_code'], unit_names)} "
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
    o = report["overall"]
    t = report["targets"]
    period = f"{report['period']['start']} 至 {report['period']['end']}"
    overall = (
        f"*全市* 记录 {o['records']} 条，回访短信 {o['followups_sent']} 条，有效评价 {o['responses']} 条\n"
        f"满意率 {fmt_rate(o['satisfaction_rate'])}（目标 {fmt_rate(t['satisfaction'])}，回复率 {fmt_rate(o['reply_rate'])}） · "
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
        fallback = f"{title}（{period}）\n{overall}\n{head}\n" + "\n".join(inline)
        blocks = [_header(title), _section(f"统计期 {period}，评估时点 {report['as_of']}"), _section(overall)]
        blocks.append(_section(head + "\n" + "\n".join(inline)))
        if rest:
            blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": "其余单位见本消息的回复。"}]})
        messages.append(
            Message(
                key=ckey,
                kind="assessment_summary",
                channel=channel,
                text=fallback,
                blocks=json.dumps(blocks, ensure_ascii=False),
            )
        )
        for i, part in enumerate(chunks(rest), start=1):
            messages.append(
                Message(
                    key=f"{ckey}:part{i}",
                    kind="assessment_list",
                    channel=channel,
                    text="\n".join(part),
                    thread_of=ckey,
                )
            )
        if chart is not None:
            messages.append(
                Message(
                    key=f"{ckey}:chart",
                    kind="assessment_chart",
                    channel=channel,
                    text=f"{title}：各单位三项指标与目标线",
                    attachment=str(chart),
                )
            )
    return messages


def assessment_route(assessment: dict[str, Any], cfg: MinyiConfig, monthly: bool) -> tuple[str, str, list[str]]:
    """(outbox key, title, channels) of an assessment summary: the daily one to the centre; the monthly one,
    for the monthly meeting, to the centre and leadership channels."""
    if monthly:
        month = assessment["period"]["start"][:7]
        return (
            texts.ASSESSMENT_MONTHLY_KEY.format(month=month),
            texts.ASSESSMENT_MONTHLY_TITLE.format(month=month),
            [cfg.slack.center_channel, cfg.slack.leadership_channel],
        )
    day = assessment["business_date"]
    return (
        texts.ASSESSMENT_DAILY_KEY.format(business_date=day),
        texts.ASSESSMENT_DAILY_TITLE.format(business_date=day),
        [cfg.slack.center_channel],
    )


def unit_directory(cfg: MinyiConfig) -> tuple[dict[str, str], dict[str, str]]:
    """(names, duty channels) of the configured units; an unknown unit has neither and goes to the centre."""
    return {u.code: u.name for u in cfg.units}, {u.code: u.channel for u in cfg.units}
