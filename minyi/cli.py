"""The `minyi` command (SPEC §9): each command does what the matching flow does.

Refusals exit non-zero with no traceback; the last line of stderr names the
problem. Config and store are checked before Prefect starts, so a mistake costs
a second, not an ephemeral server's start-up.
"""

from __future__ import annotations

import os
import sys
from datetime import date as _date
from datetime import datetime as _datetime
from typing import Annotated, NoReturn

import typer

from minyi.render import (
    render_followup,
    render_ingest,
    render_quality,
    render_report,
    render_summary,
    render_sweep,
)
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
    """The refusal contract: one line on stderr, last, and a non-zero exit.

    Last means last: what Prefect logs at exit ("Stopping temporary server", a failed final
    event upload) would follow it, so once the line is out, stderr goes to /dev/null.
    """
    sys.stdout.flush()
    typer.echo(f"minyi: {message}", err=True)
    sys.stderr.flush()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    sys.exit(code)


def _prepare(date: str | None = None, as_of: str | None = None) -> tuple[_date | None, _datetime | None]:
    """The preamble of every flow command: parse --date/--as-of, then load config and store.

    Both are checked before Prefect starts, so a mistake costs a second, not a server's start-up.
    """
    from minyi.tasks.rules.days import parse_date, parse_instant
    from minyi.tasks.runtime import load_runtime

    day = parse_date(date) if date else None
    now = parse_instant(as_of) if as_of else None
    load_runtime()
    return day, now


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the store's tables to the newest schema."""
    from minyi.tasks.runtime import load_runtime
    from minyi.tasks.store.engine import upgrade

    rt = load_runtime(check_store=False)
    rev = upgrade(rt.engine)
    typer.echo(f"database at revision {rev}: {rt.engine.url.render_as_string(hide_password=True)}")


@app.command("run")
def run(date: DateOpt = None, as_of: AsOfOpt = None) -> None:
    """Run the daily loop for a business date."""
    day, now = _prepare(date, as_of)
    from minyi.flows.daily_loop import daily_loop

    summary = daily_loop(business_date=day, as_of=now)
    typer.echo(render_summary(summary))


@app.command("ingest")
def ingest_cmd(date: DateOpt = None, as_of: AsOfOpt = None) -> None:
    """Pull every source for a business date (stage 1 alone)."""
    day, now = _prepare(date, as_of)
    from minyi.flows.ingest import ingest

    typer.echo(render_ingest(ingest(business_date=day, as_of=now)))


@app.command("backfill")
def backfill(
    start: Annotated[str, typer.Option("--start", help="First business date YYYY-MM-DD.")],
    end: Annotated[str, typer.Option("--end", help="Last business date YYYY-MM-DD.")],
    as_of: AsOfOpt = None,
) -> None:
    """Re-run the daily loop for each business date from --start to --end, in order."""
    from minyi.tasks.rules.days import date_range, parse_date

    first, last = parse_date(start, "--start"), parse_date(end, "--end")
    date_range(first, last)  # an inverted range is refused before Prefect starts
    _, now = _prepare(None, as_of)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    import minyi.flows.backfill as backfill_module

    dates = date_range(first, last)
    # On stderr, and only on a terminal: a pipe or a log file gets the summaries alone.
    console = Console(stderr=True)
    columns = (TextColumn("backfill {task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, disable=not console.is_terminal, transient=True) as progress:
        bar = progress.add_task(f"{first} … {last}", total=len(dates))
        backfill_module.on_date_done = lambda day: progress.update(bar, advance=1, description=f"{day} done")
        try:
            result = backfill_module.backfill(start=first, end=last, as_of=now)
        finally:
            backfill_module.on_date_done = None
    for summary in result.days:
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
    for deployment in plan(tz):
        typer.echo(f"serving  {describe(deployment)}")
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
    day, now = _prepare(date, as_of)
    from minyi.flows.quality import quality

    typer.echo(render_quality(quality(business_date=day, as_of=now, force=force)))


@app.command("followup")
def followup_cmd(date: DateOpt = None, as_of: AsOfOpt = None) -> None:
    """Plan and send the day's follow-up SMS, ingest replies, queue visits (stage 3 alone)."""
    day, now = _prepare(date, as_of)
    from minyi.flows.followup import followup

    typer.echo(render_followup(followup(business_date=day, as_of=now)))


@app.command("sweep")
def sweep_cmd(as_of: AsOfOpt = None) -> None:
    """Hourly: ingest SMS replies, queue visits due, run supervision, flush the SMS outbox."""
    _, now = _prepare(None, as_of)
    from minyi.flows.sweep import sweep

    typer.echo(render_sweep(sweep(as_of=now)))


@app.command("report")
def report_cmd(date: DateOpt = None, as_of: AsOfOpt = None) -> None:
    """Write the day's rectification and assessment reports and post their summaries (stage 5 alone)."""
    day, now = _prepare(date, as_of)
    from minyi.flows.report import report

    typer.echo(render_report(report(business_date=day, as_of=now)))


@app.command("assess")
def assess_cmd(
    month: Annotated[str | None, typer.Option("--month", help="YYYY-MM (default: the month before --as-of).")] = None,
    as_of: AsOfOpt = None,
) -> None:
    """The monthly assessment of a whole month, to the centre and leadership channels."""
    _, now = _prepare(None, as_of)
    from minyi.flows.report import monthly_assessment

    typer.echo(render_report(monthly_assessment(month=month, as_of=now)))


@app.command("explain")
def explain_cmd(
    unit_code: Annotated[str, typer.Argument(metavar="UNIT_CODE", help="The unit, e.g. QD-SN-PS01.")],
    metric: Annotated[str, typer.Argument(metavar="METRIC", help="A count of assessment.json, e.g. dissatisfied.")],
    date: DateOpt = None,
    as_of: AsOfOpt = None,
) -> None:
    """The records behind one unit's count in the assessment (SOURCE:RECORD_ID lines, then UNIT_CODE METRIC = N)."""
    from minyi.tasks.rules.days import resolve_day
    from minyi.tasks.runtime import load_runtime
    from minyi.tasks.stages.kpis import LINEAGE_METRICS, explain_count

    if metric not in LINEAGE_METRICS:
        from minyi.tasks.errors import InputError

        raise InputError(f"METRIC {metric!r}: expected one of {', '.join(LINEAGE_METRICS)}")
    day, now = _prepare(date, as_of)
    rt = load_runtime()
    business_date, instant = resolve_day(day, now, rt.tz)
    with rt.engine.connect() as conn:
        refs = explain_count(conn, unit_code, metric, business_date, instant)
    for ref in refs:
        typer.echo(ref)
    typer.echo(f"{unit_code} {metric} = {len(refs)}")


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
    from minyi.tasks.adapters.notify.engine import select_for_resend
    from minyi.tasks.runtime import load_runtime

    _, now = _prepare(None, as_of)
    rt = load_runtime()
    with rt.engine.connect() as conn:
        select_for_resend(conn, key or [], kind, channel)  # refuse before Prefect starts
    from minyi.flows.deliver import resend

    d = resend(keys=key or [], kind=kind, channel=channel, as_of=now)
    typer.echo(f"resend via {d.poster}: {d.sent} posted, {d.failed} failed, {d.pending} still pending")


ByOpt = Annotated[str | None, typer.Option("--by", help="Who records it (default: MINYI_OPERATOR, else the OS user).")]
NoteOpt = Annotated[str | None, typer.Option("--note", help="Free text (mobiles masked; at most 2,000 characters).")]
AtOpt = Annotated[
    str | None,
    typer.Option("--at", help="When it happened, ISO 8601 with offset (default: --as-of; > 24 h earlier: backdated)."),
]
RecordedOpt = Annotated[
    str | None,
    typer.Option("--as-of", help="When it is recorded, ISO 8601 with offset (default: the real clock)."),
]


def _when(at: str | None, as_of: str | None) -> tuple[_datetime | None, _datetime]:
    from minyi.tasks.rules.days import now, parse_instant

    recorded = parse_instant(as_of, "--as-of") if as_of else now()
    return (parse_instant(at, "--at") if at else None), recorded


@app.command("visit")
def visit_cmd(
    record: Annotated[str, typer.Argument(metavar="SOURCE:RECORD_ID", help="The record visited.")],
    outcome: Annotated[
        str, typer.Option("--outcome", help="satisfied | basically_satisfied | dissatisfied | unreachable")
    ],
    note: NoteOpt = None,
    at: AtOpt = None,
    by: ByOpt = None,
    as_of: RecordedOpt = None,
) -> None:
    """Record a manual visit's outcome (a one-row action: answers at once, no flow run)."""
    from minyi.tasks.rules.lifecycle import clean_note, operator, parse_ref, when_recorded
    from minyi.tasks.runtime import load_runtime
    from minyi.tasks.stages.visits import check_outcome, record_visit

    parse_ref(record)
    check_outcome(outcome)
    when, recorded = _when(at, as_of)
    when_recorded(when, recorded)
    clean_note(note)
    operator(by)
    rt = load_runtime()
    done = record_visit(rt.engine, record, outcome, note, when, recorded, by=by)
    verb = "recorded" if done.new else "already recorded"
    line = (
        f"visit {verb}: {done.source}:{done.record_id} {done.outcome} at {done.at.astimezone(rt.tz).isoformat()} "
        f"by {done.by}{' (backdated)' if done.backdated else ''}; satisfaction {done.satisfaction or '-'}"
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
    from minyi.tasks.rules.masking import mask_name
    from minyi.tasks.runtime import load_runtime
    from minyi.tasks.stages.visits import list_visits

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
    stage: Annotated[
        str | None, typer.Option("--stage", help="responded | rectified | feedback (closes) | returned (退单).")
    ] = None,
    resolved: Annotated[
        bool | None,
        typer.Option("--resolved/--unresolved", help="Required with --stage feedback: was the problem resolved?"),
    ] = None,
    reassign: Annotated[str | None, typer.Option("--reassign", help="Centre: move the order to this unit.")] = None,
    keep: Annotated[bool, typer.Option("--keep", help="Centre: refuse a return (back to open).")] = False,
    extend: Annotated[
        int | None, typer.Option("--extend", help="Unit: ask for N more days (1-10) before completion_due.")
    ] = None,
    approve_extension: Annotated[bool, typer.Option("--approve-extension", help="Centre: approve it.")] = False,
    reject_extension: Annotated[bool, typer.Option("--reject-extension", help="Centre: reject it.")] = False,
    appeal: Annotated[bool, typer.Option("--appeal", help="Unit: the dissatisfied answer is unreasonable.")] = False,
    uphold_appeal: Annotated[bool, typer.Option("--uphold-appeal", help="Centre: uphold (excluded).")] = False,
    reject_appeal: Annotated[bool, typer.Option("--reject-appeal", help="Centre: reject the appeal.")] = False,
    note: NoteOpt = None,
    at: AtOpt = None,
    by: ByOpt = None,
    as_of: RecordedOpt = None,
) -> None:
    """Report a stage or act on a supervision order (a one-row action: answers at once, no flow run)."""
    from minyi.tasks.errors import InputError
    from minyi.tasks.rules.lifecycle import STAGES, clean_note, operator, parse_ref, when_recorded
    from minyi.tasks.runtime import load_runtime
    from minyi.tasks.stages.orders import apply_action

    parse_ref(record)
    chosen = [
        name
        for name, on in (
            ("reassign", reassign is not None),
            ("keep", keep),
            ("extend", extend is not None),
            ("approve-extension", approve_extension),
            ("reject-extension", reject_extension),
            ("appeal", appeal),
            ("uphold-appeal", uphold_appeal),
            ("reject-appeal", reject_appeal),
        )
        if on
    ]
    if stage is not None:
        if stage not in STAGES:
            raise InputError(f"--stage {stage!r}: expected one of {', '.join(STAGES)}")
        chosen.insert(0, stage)
    if len(chosen) != 1:
        raise InputError(
            "give exactly one of --stage, --reassign, --keep, --extend, --approve-extension, --reject-extension, "
            f"--appeal, --uphold-appeal, --reject-appeal (got {', '.join(chosen) or 'none'})"
        )
    when, recorded = _when(at, as_of)
    when_recorded(when, recorded)
    clean_note(note)
    operator(by)
    rt = load_runtime()
    with rt.engine.begin() as conn:
        outcome = apply_action(
            conn,
            rt.config,
            record,
            chosen[0],
            recorded_at=recorded,
            at=when,
            by=by,
            note=note,
            resolved=resolved,
            unit=reassign,
            days=extend,
        )
    typer.echo(outcome.describe(rt.tz))


@app.command("retention")
def retention_cmd(as_of: AsOfOpt = None) -> None:
    """De-identify records and follow-ups older than `retention_days` (names, numbers, free text; counts stay)."""
    _, now = _prepare(None, as_of)
    from minyi.flows.retention import retention

    r = retention(as_of=now)
    typer.echo(
        f"retention {r.retention_days} days: business dates before {r.cutoff} de-identified: {r.days} date(s), "
        f"{r.records} records, {r.followups} follow-ups, {r.quarantined} quarantined rows, {r.replies} replies, "
        f"{r.notes} notes"
    )


@app.command("status")
def status_cmd(as_of: AsOfOpt = None) -> None:
    """One screen for the duty officer: last runs, SMS waiting, visits due, orders per unit, warnings, calendar."""
    from pathlib import Path

    from minyi.render import render_status
    from minyi.tasks.config import Settings
    from minyi.tasks.rules.days import now, parse_instant
    from minyi.tasks.runtime import load_runtime
    from minyi.tasks.stages.reports import unit_directory
    from minyi.tasks.stages.status import collect_status

    instant = parse_instant(as_of) if as_of else now()
    rt = load_runtime()
    names, _ = unit_directory(rt.config)
    status = collect_status(rt.engine, instant, rt.tz, names, Path(Settings().reports_dir))
    typer.echo(render_status(status, rt.tz))


@app.command("demo")
def demo(
    date: Annotated[
        str | None, typer.Option("--date", help="First business date YYYY-MM-DD (default: 2026-11-02).")
    ] = None,
    days: Annotated[int, typer.Option("--days", min=1, help="Business dates to simulate (working days).")] = 10,
    records: Annotated[int, typer.Option("--records", min=10, help="Records in the synthetic city's day.")] = 300,
) -> None:
    """A month in a synthetic city on loopback: daily loops, sweeps, replies, visits, unit reports, escalations."""
    from minyi.demo import run_demo

    run_demo(date, days, records)


_USAGE_ERRORS = {"NoSuchOption", "BadParameter", "MissingParameter", "UsageError", "BadOptionUsage", "BadArgumentUsage"}


def main() -> None:
    """Entry point: MinyiError → one line on stderr and its exit code; nothing else is swallowed."""
    import os

    from minyi.tasks.errors import MinyiError

    # Without PREFECT_API_URL a flow command starts Prefect's temporary server; a fresh PREFECT_HOME first
    # migrates Prefect's own database, which on a busy 2-core machine outlasts Prefect's 20 s default.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
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
