"""What the `minyi` commands print: one plain-text renderer per stage summary.

Kept apart from the CLI so that the demo and the CLI both use it without importing each other.
"""

from __future__ import annotations


def render_ingest(summary: object) -> str:
    from minyi.tasks.stages.ingest import IngestSummary

    assert isinstance(summary, IngestSummary)
    lines = [f"ingest {summary.business_date}:"]
    for p in summary.sources:
        lines.append(
            f"  {p.source:<20} {p.status:<6} fetched {p.fetched:>7}  records {p.accepted:>7}  "
            f"quarantined {p.quarantined:>5}  pages {p.pages:>4}" + (f"  error: {p.error}" if p.error else "")
        )
    if summary.unknown_units:
        lines.append("  unknown units: " + ", ".join(f"{c} ({n})" for c, n in summary.unknown_units))
    return "\n".join(lines)


def _render_sms(sms: object) -> str:
    from minyi.tasks.stages.sms import FlushSummary

    assert isinstance(sms, FlushSummary)
    if not sms.window_open:
        line = f"  sms      outside the send window: {sms.queued} queued for the next run"
    else:
        line = (
            f"  sms      sent {sms.sent} (duplicate {sms.duplicate})  rejected {sms.rejected}  "
            f"still queued {sms.queued} (held {sms.held})"
        )
    if sms.opted_out or sms.stale:
        line += f"  withdrawn: opted out {sms.opted_out}, stale {sms.stale}"
    return line + (f"  error: {sms.error}" if sms.error else "")


def _render_replies(r: object) -> str:
    from minyi.tasks.stages.replies import ReplySummary

    assert isinstance(r, ReplySummary)
    answers = ", ".join(f"{k} {v}" for k, v in sorted(r.answers.items())) or "none"
    return (
        f"  replies  new {r.new}  matched {r.matched}  unmatched {r.unmatched} (in store {r.unmatched_total})  "
        f"opt-outs {r.opt_outs}  answers: {answers}"
        + (f"  rejected {r.rejected}" if r.rejected else "")
        + (f"  error: {r.error}" if r.error else "")
    )


def render_quality(summary: object) -> str:
    from minyi.tasks.stages.quality import QualitySummary

    assert isinstance(summary, QualitySummary)
    lines = [f"quality {summary.business_date}:"]
    for s in summary.sources:
        failed = ", ".join(o.name for o in s.expectations if o.success is False) or "none"
        lines.append(
            f"  {s.source:<20} gate {s.gate:<10} records {s.accepted:>7}  quarantined {s.quarantined:>5}  "
            f"failed: {failed}"
        )
    for o in summary.store.expectations:
        state = "n/a" if o.success is None else ("ok" if o.success else f"BROKEN by {o.unexpected}")
        lines.append(f"  store    {o.name}: {state}" + (f" ({', '.join(o.sample[:5])})" if o.sample else ""))
    if summary.report_dir:
        lines.append(f"  report   {summary.report_dir}/quality.json")
    return "\n".join(lines)


def render_followup(summary: object) -> str:
    from minyi.flows.followup import FollowupSummary

    assert isinstance(summary, FollowupSummary)
    lines = [f"followup {summary.business_date}:"]
    if summary.plan is not None:
        p = summary.plan
        skipped = ", ".join(f"{k} {v}" for k, v in sorted(p.skipped.items())) or "none"
        lines.append(f"  plan     newly decided {p.planned}  sms {p.sms}  manual {p.manual}  skipped: {skipped}")
    lines += [_render_sms(summary.sms), _render_replies(summary.replies)]
    lines.append(f"  visits   newly queued for no reply {summary.visits_queued}")
    return "\n".join(lines)


def render_sweep(summary: object) -> str:
    from minyi.flows.sweep import SweepSummary

    assert isinstance(summary, SweepSummary)
    return "\n".join(
        [
            f"sweep as of {summary.as_of.isoformat()}:",
            _render_replies(summary.replies),
            f"  visits   newly queued for no reply {summary.visits_queued}",
            _render_sms(summary.sms),
        ]
        + ([render_supervision(summary.supervision)] if summary.supervision else [])
    )


def render_supervision(summary: object) -> str:
    from minyi.flows.supervise import SuperviseSummary

    assert isinstance(summary, SuperviseSummary)
    fired = ", ".join(f"{level} {n}" for level, n in summary.escalations.items())
    line = f"  orders   opened {summary.opened}, clocks computed {summary.dues_computed}; escalations {fired}"
    if summary.pending_calendar:
        line += f"; {summary.pending_calendar} pending_calendar (supply [clock] calendar_file)"
    return line


def render_report(summary: object) -> str:
    from minyi.flows.report import ReportSummary

    assert isinstance(summary, ReportSummary)
    lines = [
        f"report {summary.business_date}: {summary.directory}",
        f"  assessment  {summary.units} units, {summary.units_missing_targets} missing targets",
        f"  orders      {summary.orders_listed} listed, {summary.overdue} overdue",
    ]
    if summary.delivery:
        d = summary.delivery
        lines.append(
            f"  channels    {summary.messages_enqueued} new messages; via {d.poster}: {d.sent} posted, "
            f"{d.failed} failed, {d.pending} pending"
            + (f", {d.stuck} stuck (unconfirmed or failing)" if d.stuck else "")
        )
    return "\n".join(lines)


def render_summary(summary: object) -> str:
    from minyi.flows.daily_loop import LoopSummary

    assert isinstance(summary, LoopSummary)
    return "\n".join(
        [
            f"daily loop {summary.business_date} as of {summary.as_of.isoformat()}",
            render_ingest(summary.ingest),
        ]
        + ([render_quality(summary.quality)] if summary.quality else [])
        + ([render_followup(summary.followup)] if summary.followup else [])
        + ([render_supervision(summary.supervision)] if summary.supervision else [])
        + ([render_report(summary.report)] if summary.report else [])
        + ([render_warnings(summary.warnings)] if summary.warnings else [])
    )


def render_warnings(summary: object) -> str:
    from minyi.flows.warnings import WarningsSummary

    assert isinstance(summary, WarningsSummary)
    kinds = ", ".join(f"{n} {k}" for k, n in summary.by_kind.items()) or "none"
    return f"warnings {summary.business_date}: {summary.warnings} ({kinds}); {summary.posted} new posts; {summary.path}"


def render_status(status: object, tz: object, width: int | None = None) -> str:
    """`minyi status`: rich tables, one screen for the duty officer (plain text when not a terminal)."""
    from io import StringIO

    from rich.console import Console
    from rich.table import Table

    from minyi.tasks.stages.status import Status

    assert isinstance(status, Status)

    def local(instant: object) -> str:
        return instant.astimezone(tz).strftime("%Y-%m-%d %H:%M") if instant else "-"  # type: ignore[attr-defined]

    out = StringIO()
    console = Console(file=out, width=width or 110, force_terminal=False, color_system=None, highlight=False)
    console.print(f"minyi status 值班总览 as of {local(status.as_of)}", style="bold")

    runs = Table(title="最近运行 last runs", title_justify="left")
    for col in ("运行 run", "业务日期 date", "as_of", "结束 finished", "结果 outcome", "说明 detail"):
        runs.add_column(col)
    for kind, r in status.runs.items():
        if r is None:
            runs.add_row(kind, "-", "-", "-", "未运行 never", "")
        else:
            day = r.business_date.isoformat() if r.business_date else "-"
            runs.add_row(kind, day, local(r.as_of), local(r.finished_at), r.outcome, (r.detail or "")[:160])
    console.print(runs)

    queue = Table(title="待办 waiting", title_justify="left")
    queue.add_column("项目 item")
    queue.add_column("数量 count", justify="right")
    queue.add_row("短信待发 SMS queued", str(status.sms_queued))
    queue.add_row("  其中被质量闸门拦截 of which held by a gate", str(status.sms_held))
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(status.visits_by_reason.items()))
    queue.add_row(f"待回访 visits due ({reasons or '-'})", str(status.visits_due))
    queue.add_row("退回待中心处理 returned orders awaiting the centre", str(status.returned or 0))
    queue.add_row("今日到期督办单 orders due today", str(status.totals["due_today"]))
    queue.add_row("超期督办单 orders overdue", str(status.totals["overdue"]))
    console.print(queue)

    units = Table(title="各单位督办单 orders per unit (open at as_of)", title_justify="left")
    for col, justify in (("单位 unit", "left"), ("在办 open", "right"), ("今日到期 due today", "right")):
        units.add_column(col, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    units.add_column("超期 overdue", justify="right")
    units.add_column("待日历 pending_calendar", justify="right")
    for u in status.units:
        label = f"{u.name} {u.code}" if u.name else f"{u.code} (未配置单位)"
        units.add_row(label, str(u.open), str(u.due_today), str(u.overdue), str(u.pending_calendar))
    if not status.units:
        units.add_row("无在办督办单 no open orders", "0", "0", "0", "0")
    console.print(units)

    if status.warnings is None:
        where = f" for {status.warnings_date}" if status.warnings_date else ""
        console.print(f"预警 warnings: 无 warnings.json{where}")
    else:
        console.print(f"预警 warnings ({status.warnings_date}): {len(status.warnings)}")
        for w in status.warnings[:10]:
            console.print(f"  - {w.get('kind', '')} {w.get('unit_code', '')} {w.get('text', w.get('message', ''))}")
    console.print(
        f"节假日数据截止 calendar data ends {status.calendar_end} ({status.calendar_days_left} 天后 days from today)"
    )
    return out.getvalue().rstrip()
