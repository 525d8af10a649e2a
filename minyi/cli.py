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


def render_supervision(summary: object) -> str:
    from minyi.flows.supervise import SuperviseSummary

    assert isinstance(summary, SuperviseSummary)
    fired = ", ".join(f"{level} {n}" for level, n in summary.escalations.items())
    line = f"  orders   opened {summary.opened}, clocks computed {summary.dues_computed}; escalations {fired}"
    if summary.pending_calendar:
        line += f"; {summary.pending_calendar} pending_calendar (supply [clock] calendar_file)"
    return line


def render_summary(summary: object) -> str:
    from minyi.flows.daily_loop import LoopSummary

    assert isinstance(summary, LoopSummary)
    return "\n".join(
        [
            f"daily loop {summary.business_date} as of {summary.as_of.isoformat()}",
            render_ingest(summary.ingest),
        ]
        + ([render_supervision(summary.supervision)] if summary.supervision else [])
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
