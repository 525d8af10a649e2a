"""The `minyi` command (SPEC §9): each command does what the matching flow does.

Refusals exit non-zero with no traceback; the last line of stderr names the
problem. Config and store are checked before Prefect starts, so a mistake costs
a second, not an ephemeral server's start-up.
"""

from __future__ import annotations

import sys
from typing import Annotated, NoReturn

import typer

from minyi.tasks.runtime import quiet_third_parties

quiet_third_parties()

app = typer.Typer(
    name="minyi",
    help="Public Opinion 110: the daily follow-up and supervision loop.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
db_app = typer.Typer(help="The store.", no_args_is_help=True)
app.add_typer(db_app, name="db")

DateOpt = Annotated[str | None, typer.Option("--date", help="Business date YYYY-MM-DD (default: yesterday).")]
AsOfOpt = Annotated[
    str | None,
    typer.Option("--as-of", help="The instant 'now', ISO 8601 with offset (default: the real clock)."),
]


def _fail(message: str, code: int = 2) -> NoReturn:
    """The refusal contract: one line on stderr, last, and a non-zero exit."""
    sys.stdout.flush()
    typer.echo(f"minyi: {message}", err=True)
    sys.exit(code)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the store's tables to the newest schema."""
    from minyi.tasks.runtime import load_runtime
    from minyi.tasks.store import upgrade

    rt = load_runtime(check_store=False)
    rev = upgrade(rt.engine)
    typer.echo(f"database at revision {rev}: {rt.engine.url.render_as_string(hide_password=True)}")


@app.command("run")
def run(date: DateOpt = None, as_of: AsOfOpt = None) -> None:
    """Run the daily loop for a business date."""
    from minyi.tasks.days import parse_date, parse_instant
    from minyi.tasks.runtime import load_runtime

    day = parse_date(date) if date else None
    now = parse_instant(as_of) if as_of else None
    load_runtime()
    from minyi.flows.daily_loop import daily_loop

    summary = daily_loop(business_date=day, as_of=now)
    typer.echo(render_summary(summary))


@app.command("ingest")
def ingest_cmd(date: DateOpt = None, as_of: AsOfOpt = None) -> None:
    """Pull every source for a business date (stage 1 alone)."""
    from minyi.tasks.days import parse_date, parse_instant
    from minyi.tasks.runtime import load_runtime

    day = parse_date(date) if date else None
    now = parse_instant(as_of) if as_of else None
    load_runtime()
    from minyi.flows.ingest import ingest

    typer.echo(render_ingest(ingest(business_date=day, as_of=now)))


@app.command("backfill")
def backfill(
    start: Annotated[str, typer.Option("--start", help="First business date YYYY-MM-DD.")],
    end: Annotated[str, typer.Option("--end", help="Last business date YYYY-MM-DD.")],
    as_of: AsOfOpt = None,
) -> None:
    """Re-run the daily loop for each business date from --start to --end, in order."""
    from minyi.tasks.days import date_range, parse_date, parse_instant
    from minyi.tasks.runtime import load_runtime

    first, last = parse_date(start, "--start"), parse_date(end, "--end")
    date_range(first, last)  # an inverted range is refused before Prefect starts
    now = parse_instant(as_of) if as_of else None
    load_runtime()
    from minyi.flows.backfill import backfill as backfill_flow

    for summary in backfill_flow(start=first, end=last, as_of=now).days:
        typer.echo(render_summary(summary))


@app.command("serve")
def serve_cmd(
    check: Annotated[bool, typer.Option("--check", help="List what would be served, then exit.")] = False,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="At most this many flow runs at once (default: no limit).")
    ] = None,
) -> None:
    """Serve every deployment (schedules and operator flows) from this machine until interrupted."""
    from minyi.deployments.serve import describe, plan, serve_all
    from minyi.tasks.runtime import load_runtime

    tz = load_runtime().config.timezone
    served, pending = plan(tz)
    for deployment in served:
        typer.echo(f"serving  {describe(deployment)}")
    for name in pending:
        typer.echo(f"pending  {name}: its flow is not in this installation of minyi")
    if not check:
        serve_all(tz, limit)


@app.command("quality")
def quality_cmd(
    date: DateOpt = None,
    as_of: AsOfOpt = None,
    force: Annotated[
        bool, typer.Option("--force", help="Release every held gate of the date (lets its SMS go).")
    ] = False,
) -> None:
    """Validate a business date's records and the store, and set the gates (stage 2 alone)."""
    from minyi.tasks.days import parse_date, parse_instant
    from minyi.tasks.runtime import load_runtime

    day = parse_date(date) if date else None
    now = parse_instant(as_of) if as_of else None
    load_runtime()
    from minyi.flows.quality import quality

    typer.echo(render_quality(quality(business_date=day, as_of=now, force=force)))


@app.command("followup")
def followup_cmd(date: DateOpt = None, as_of: AsOfOpt = None) -> None:
    """Plan and send the day's follow-up SMS, ingest replies, queue visits (stage 3 alone)."""
    from minyi.tasks.days import parse_date, parse_instant
    from minyi.tasks.runtime import load_runtime

    day = parse_date(date) if date else None
    now = parse_instant(as_of) if as_of else None
    load_runtime()
    from minyi.flows.followup import followup

    typer.echo(render_followup(followup(business_date=day, as_of=now)))


@app.command("sweep")
def sweep_cmd(as_of: AsOfOpt = None) -> None:
    """Hourly: ingest SMS replies, queue visits due, run supervision, flush the SMS outbox."""
    from minyi.tasks.days import parse_instant
    from minyi.tasks.runtime import load_runtime

    now = parse_instant(as_of) if as_of else None
    load_runtime()
    from minyi.flows.sweep import sweep

    typer.echo(render_sweep(sweep(as_of=now)))


@app.command("report")
def report_cmd(date: DateOpt = None, as_of: AsOfOpt = None) -> None:
    """Write the day's rectification and assessment reports and post their summaries (stage 5 alone)."""
    from minyi.tasks.days import parse_date, parse_instant
    from minyi.tasks.runtime import load_runtime

    day = parse_date(date) if date else None
    now = parse_instant(as_of) if as_of else None
    load_runtime()
    from minyi.flows.report import report

    typer.echo(render_report(report(business_date=day, as_of=now)))


@app.command("assess")
def assess_cmd(
    month: Annotated[str | None, typer.Option("--month", help="YYYY-MM (default: the month before --as-of).")] = None,
    as_of: AsOfOpt = None,
) -> None:
    """The monthly assessment of a whole month, to the centre and leadership channels."""
    from minyi.tasks.days import parse_instant
    from minyi.tasks.runtime import load_runtime

    now = parse_instant(as_of) if as_of else None
    load_runtime()
    from minyi.flows.report import monthly_assessment

    typer.echo(render_report(monthly_assessment(month=month, as_of=now)))


@app.command("resend")
def resend_cmd(
    key: Annotated[
        list[str] | None, typer.Option("--key", help="Outbox key, e.g. rectification:2026-11-21 (repeatable).")
    ] = None,
    kind: Annotated[str | None, typer.Option("--kind", help="Every sent message of this kind.")] = None,
    channel: Annotated[str | None, typer.Option("--channel", help="Every sent message to this channel id.")] = None,
    as_of: AsOfOpt = None,
) -> None:
    """Post chosen channel messages again on purpose (a normal re-run never posts twice)."""
    from minyi.tasks.days import parse_instant
    from minyi.tasks.runtime import load_runtime
    from minyi.tasks.slack import select_for_resend

    now = parse_instant(as_of) if as_of else None
    rt = load_runtime()
    with rt.engine.connect() as conn:
        select_for_resend(conn, key or [], kind, channel)  # refuse before Prefect starts
    from minyi.flows.deliver import resend

    d = resend(keys=key or [], kind=kind, channel=channel, as_of=now)
    typer.echo(f"resend via {d.poster}: {d.sent} posted, {d.failed} failed, {d.pending} still pending")


@app.command("visit")
def visit_cmd(
    record: Annotated[str, typer.Argument(metavar="SOURCE:RECORD_ID", help="The record visited.")],
    outcome: Annotated[
        str, typer.Option("--outcome", help="satisfied | basically_satisfied | dissatisfied | unreachable")
    ],
    note: Annotated[str | None, typer.Option("--note", help="Free text for the centre.")] = None,
    at: Annotated[
        str | None, typer.Option("--at", help="When the visit happened, ISO 8601 with offset (default: now).")
    ] = None,
) -> None:
    """Record a manual visit's outcome (a one-row action: answers at once, no flow run)."""
    from minyi.tasks.days import now, parse_instant
    from minyi.tasks.runtime import load_runtime
    from minyi.tasks.visits import check_outcome, parse_ref, record_visit

    parse_ref(record)
    check_outcome(outcome)
    when = parse_instant(at, "--at") if at else None
    rt = load_runtime()
    done = record_visit(rt.engine, record, outcome, note, when, now())
    verb = "recorded" if done.new else "already recorded"
    line = (
        f"visit {verb}: {done.source}:{done.record_id} {done.outcome} at {done.at.astimezone(rt.tz).isoformat()}; "
        f"satisfaction {done.satisfaction or '-'}"
    )
    if done.orders_opened:
        line += f"; {done.orders_opened} order(s) opened"
    typer.echo(line)


@app.command("visits")
def visits_cmd(
    all_: Annotated[bool, typer.Option("--all", help="Include visits that already have an outcome.")] = False,
    unit: Annotated[str | None, typer.Option("--unit", help="Only this unit code.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many lines.")] = 500,
) -> None:
    """The manual-visit queue for call-centre staff, oldest first, with FULL phone numbers (they must dial)."""
    from minyi.tasks.masking import mask_name
    from minyi.tasks.runtime import load_runtime
    from minyi.tasks.visits import list_visits

    rt = load_runtime()
    rows = list_visits(rt.engine, include_done=all_, unit=unit, limit=limit)
    shown = f" (first {limit})" if len(rows) == limit else ""
    typer.echo((f"{len(rows)} visit(s) to make" if not all_ else f"{len(rows)} visit(s)") + shown + ", oldest first")
    for v in rows:
        typer.echo(
            "  ".join(
                [
                    v.ref,
                    v.business_date.isoformat(),
                    v.reason,
                    v.queued_at.astimezone(rt.tz).strftime("%m-%d %H:%M"),
                    v.phone or "-",
                    mask_name(v.citizen_name) or "-",
                    v.unit_name or v.unit_code,
                    v.matter,
                ]
                + ([f"last outcome {v.visit_outcome}"] if v.visit_outcome else [])
            )
        )


@app.command("order")
def order_cmd(
    record: Annotated[str, typer.Argument(metavar="SOURCE:RECORD_ID", help="The record the order was opened for.")],
    stage: Annotated[str, typer.Option("--stage", help="responded | rectified | feedback (feedback closes).")],
    resolved: Annotated[
        bool | None,
        typer.Option("--resolved/--unresolved", help="Required with --stage feedback: was the problem resolved?"),
    ] = None,
    note: Annotated[str | None, typer.Option("--note", help="Free text kept with the report.")] = None,
    at: Annotated[
        str | None, typer.Option("--at", help="When it happened, ISO 8601 with offset (default: now).")
    ] = None,
) -> None:
    """Record a unit's report on a supervision order (a one-row action: answers at once, no flow run)."""
    from minyi.tasks.days import now, parse_instant
    from minyi.tasks.errors import InputError
    from minyi.tasks.orders import STAGES, apply_report, parse_ref
    from minyi.tasks.runtime import load_runtime

    parse_ref(record)
    if stage not in STAGES:
        raise InputError(f"--stage {stage!r}: expected one of {', '.join(STAGES)}")
    when = parse_instant(at, "--at") if at else None
    rt = load_runtime()
    recorded = now()
    with rt.engine.begin() as conn:
        outcome = apply_report(conn, record, stage, resolved, when or recorded, note, recorded, rt.tz)  # type: ignore[arg-type]
    typer.echo(outcome.describe(rt.tz))


@app.command("retention")
def retention_cmd(as_of: AsOfOpt = None) -> None:
    """De-identify records and follow-ups older than `retention_days` (names, numbers, free text; counts stay)."""
    from minyi.tasks.days import parse_instant
    from minyi.tasks.runtime import load_runtime

    now = parse_instant(as_of) if as_of else None
    load_runtime()
    from minyi.flows.retention import retention

    r = retention(as_of=now)
    typer.echo(
        f"retention {r.retention_days} days: business dates before {r.cutoff} de-identified: {r.days} date(s), "
        f"{r.records} records, {r.followups} follow-ups, {r.quarantined} quarantined rows, {r.replies} replies, "
        f"{r.notes} notes"
    )


@app.command("demo")
def demo(
    date: DateOpt = None,
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="Default: today 09:05 local, inside the SMS send window.")
    ] = None,
    records: Annotated[int, typer.Option("--records", min=10, help="Records in the synthetic city's day.")] = 2000,
) -> None:
    """A synthetic city, served on loopback, run through the loop end to end on the embedded default."""
    from minyi.demo import run_demo

    run_demo(date, as_of, records)


def render_ingest(summary: object) -> str:
    from minyi.tasks.ingest import IngestSummary

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
    from minyi.tasks.sms import FlushSummary

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
    from minyi.tasks.replies import ReplySummary

    assert isinstance(r, ReplySummary)
    answers = ", ".join(f"{k} {v}" for k, v in sorted(r.answers.items())) or "none"
    return (
        f"  replies  new {r.new}  matched {r.matched}  unmatched {r.unmatched} (in store {r.unmatched_total})  "
        f"opt-outs {r.opt_outs}  answers: {answers}" + (f"  error: {r.error}" if r.error else "")
    )


def render_quality(summary: object) -> str:
    from minyi.tasks.quality import QualitySummary

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
    )


_USAGE_ERRORS = {"NoSuchOption", "BadParameter", "MissingParameter", "UsageError", "BadOptionUsage", "BadArgumentUsage"}


def main() -> None:
    """Entry point: MinyiError → one line on stderr and its exit code; nothing else is swallowed."""
    from minyi.tasks.errors import MinyiError

    try:
        code = app(standalone_mode=False)
    except MinyiError as exc:
        _fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__, exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        _fail("aborted", 130)
    except Exception as exc:
        if type(exc).__name__ == "CancelledRun":  # e.g. the daily loop for that date is running elsewhere
            _fail(str(exc).splitlines()[0] if str(exc) else "the flow run was cancelled", 4)
        # Usage errors (typer's vendored click) arrive here in non-standalone mode.
        if type(exc).__name__ in _USAGE_ERRORS and hasattr(exc, "format_message"):
            _fail(exc.format_message().replace("\n", " "), getattr(exc, "exit_code", 2))
        raise
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
