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
    from minyi.tasks.days import parse_date, parse_instant
    from minyi.tasks.runtime import load_runtime

    day = parse_date(date) if date else None
    now = parse_instant(as_of) if as_of else None
    load_runtime()
    return day, now


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
    from minyi.tasks.days import date_range, parse_date

    first, last = parse_date(start, "--start"), parse_date(end, "--end")
    date_range(first, last)  # an inverted range is refused before Prefect starts
    _, now = _prepare(None, as_of)
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
    from minyi.tasks.runtime import load_runtime
    from minyi.tasks.slack import select_for_resend

    _, now = _prepare(None, as_of)
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
    _, now = _prepare(None, as_of)
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
