"""`minyi demo`: a month in a synthetic city, told in two weeks of business dates (SPEC §9).

By default it covers a fixed period inside the bundled holiday data,
2026-11-02 … 2026-11-13 (10 business dates), whatever the real clock says, so
the story is the same on every machine and every day of the year. `--date`
(first business date) and `--days` (how many business dates) move it.

Each simulated day, in the bureau's time zone:

- 09:05  the daily loop for the previous business date (ingest, quality, SMS, orders, reports);
- 09:10  citizens answer the morning's SMS: most satisfied, some basically, some dissatisfied,
         a few odd texts, a TD, some silent (`minyi.sim.month.CITIZEN_ANSWERS`);
- 12:05  the sweep: replies in, visits due, orders opened, clocks, escalations, posts;
- 15:00  the call-back desk works through the visit queue (as `minyi visit` does);
- 17:00  the units report on their orders (as `minyi order` does): most on time, some late,
         QD-CY-PS01 never; then `lifecycle_scenes`;

and on the day after the last loop a closing sweep and report at 17:30, so the
last files show the whole period. Every instant is chosen inside the SMS send
window. The config is the shipped one with the loopback ports the demo got,
written to `.minyi/demo/minyi.toml`; Slack stays disabled so every post lands as
a file under `reports/outbox/`.
"""

from __future__ import annotations

import os
import time as wall
import zoneinfo
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path

import typer
from sqlalchemy import text as sql_text
from sqlalchemy.engine import Engine

from minyi.sim.city import SOURCES, CityConfig, unit_rows
from minyi.sim.month import NEVER_ANSWERS, Tally, citizens_reply, desk_calls, units_report
from minyi.sim.sms_gateway import SmsGateway
from minyi.sim.source_server import CityFeed, SourceServer
from minyi.tasks.config import Settings, parse_config
from minyi.tasks.errors import InputError
from minyi.tasks.rules.days import parse_date

__all__ = ["DEMO_START", "citizens_reply", "demo_config_text", "demo_dates", "lifecycle_scenes", "run_demo"]

DEMO_TZ = "Asia/Shanghai"
DEMO_START = date(2026, 11, 2)
DEMO_DAYS = 10
DEMO_RECORDS = 300
LOOP_AT, REPLIES_AT, SWEEP_AT, DESK_AT, UNITS_AT, CLOSE_AT = (
    time(9, 5),
    time(9, 10),
    time(12, 5),
    time(15, 0),
    time(17, 0),
    time(17, 30),
)


def demo_config_text(source_url: str, sms_url: str, ingest_workers: int | None = None) -> str:
    """The demo's TOML: every source of the city, every unit with a duty channel.

    `ingest_workers=1` pulls in the flow's own process: for a few hundred records a day,
    starting worker processes costs more than it saves (the month demo uses it).
    """
    lines = [
        f'timezone = "{DEMO_TZ}"',
        "",
        "[clock]",
        'mode = "working"',
        "response_days = 3",
        "completion_days = 5",
        "",
        "[sms]",
        f'url = "{sms_url}"',
        'token_env = "MINYI_SMS_TOKEN"',
        "",
        "[notify]",
        'delivery = "files"  # the demo posts to markdown files under reports/outbox/',
        "",
    ]
    if ingest_workers is not None:
        lines += ["[ingest]", f"workers = {ingest_workers}", ""]
    for s in SOURCES:
        lines += ["[[sources]]", f'name = "{s.name}"', f'url = "{source_url}/{s.name}"', ""]
    for u in unit_rows():
        lines += ["[[units]]"] + [f'{k} = "{v}"' for k, v in u.items()] + [""]
    return "\n".join(lines)


def demo_dates(start: date, days: int) -> list[date]:
    """`days` business dates from `start` on: the working days of the calendar (weekends and holidays skipped)."""
    from minyi.tasks.rules.calendar import load_calendar

    cal = load_calendar()
    first = cal.working_day_on_or_after(start)
    dates = [first] if first else []
    while first and len(dates) < days:
        nxt = cal.nth_working_day_after(dates[-1], 1)
        if nxt is None:
            break
        dates.append(nxt)
    if len(dates) < days:
        raise InputError(
            f"--date {start} --days {days}: the calendar data ends on {cal.last_covered_date()}; "
            "choose an earlier period"
        )
    return dates


@dataclass
class Scene:
    """What `lifecycle_scenes` gets each simulated afternoon, after the units have reported."""

    engine: Engine
    now: datetime
    tz: zoneinfo.ZoneInfo
    day_index: int
    tally: Tally
    gateway: SmsGateway | None = None
    last: bool = False  # the last simulated afternoon: a return is left for the centre to decide


# scene -> the first day (index into the calendar days) it may play on; each plays once
SCENES: dict[str, int] = {"return_reassign": 1, "extension": 2, "appeal": 3, "not_resolved": 1, "return_awaiting": 0}

_CANDIDATES = sql_text(
    "SELECT source, record_id, unit_code FROM orders WHERE status = 'open' AND responded_at IS NULL "
    "AND closed_at IS NULL AND (completion_due IS NULL OR completion_due > :now) ORDER BY opened_at DESC, id"
)
_UNANSWERED_VERIFICATION = sql_text(
    "SELECT message_id, phone_norm FROM verifications WHERE status = 'sent' AND answer IS NULL AND sent_at <= :now "
    "ORDER BY sent_at, id LIMIT 1"
)


def lifecycle_scenes(scene: Scene) -> None:
    """The order lifecycle's scenes of the demo month (SPEC §5), each once, on the first day it can play.

    A unit returns an order (退单) and the centre reassigns it (改派); a unit asks for an
    extension (延期) and the centre approves it; a unit appeals a dissatisfied answer
    (申诉) and the centre upholds it (剔除); and a citizen answers a verification
    call-back with 2 (复核未解决), which the next sweep turns into a reopen. Each goes
    through the domain function behind `minyi order` (`apply_action`) or the loopback
    gateway, so what the channels and reports show is what an operator would cause.
    """
    from minyi.tasks.errors import MinyiError
    from minyi.tasks.runtime import load_runtime
    from minyi.tasks.stages.orders import apply_action

    cfg = load_runtime().config
    played = scene.tally.lifecycle
    now = scene.now

    def act(ref: str, action: str, at: datetime, **kw: object) -> bool:
        try:
            with scene.engine.begin() as conn:
                apply_action(conn, cfg, ref, action, recorded_at=at, by=kw.pop("by", "演示单位"), **kw)  # type: ignore[arg-type]
        except MinyiError:
            return False
        return True

    def due(name: str) -> bool:
        return name not in played and scene.day_index >= SCENES[name]

    with scene.engine.connect() as conn:
        candidates = [(f"{s}:{r}", u) for s, r, u in conn.execute(_CANDIDATES, {"now": now})]
    codes = [u.code for u in cfg.units]
    for ref, unit in candidates:
        if due("return_reassign") and unit in codes:
            target = next(c for c in codes if c != unit)
            if act(ref, "returned", now, note="该事项不属本所辖区") and act(
                ref, "reassign", now + timedelta(minutes=20), unit=target, by="演示中心"
            ):
                played.add("return_reassign")
                continue
        if scene.last and due("return_awaiting") and act(ref, "returned", now, note="群众所述地址属邻区"):
            played.add("return_awaiting")  # awaiting the centre in the last reports (status returned)
            continue
        if due("extension") and act(ref, "extend", now, days=3, note="需协调住建部门现场勘查"):
            act(ref, "approve-extension", now + timedelta(minutes=20), by="演示中心")
            played.add("extension")
            continue
        if due("appeal") and act(ref, "appeal", now, note="群众不满的是法律规定本身，非办理问题"):
            act(ref, "uphold-appeal", now + timedelta(minutes=20), by="演示中心")
            played.add("appeal")
            continue
    if due("not_resolved") and scene.gateway is not None:
        with scene.engine.connect() as conn:
            row = conn.execute(_UNANSWERED_VERIFICATION, {"now": now}).first()
        if row is not None:
            scene.gateway.inject_reply(row.phone_norm, "2", now, row.message_id, reply_id=f"demo:{row.message_id}")
            played.add("not_resolved")


def _at(day: date, clock: time, tz: zoneinfo.ZoneInfo) -> datetime:
    return datetime.combine(day, clock, tz)


def run_demo(date_arg: str | None, days: int, records: int) -> None:
    tz = zoneinfo.ZoneInfo(DEMO_TZ)
    start = parse_date(date_arg) if date_arg else DEMO_START
    if days < 1:
        raise InputError(f"--days {days}: at least 1")
    dates = demo_dates(start, days)
    os.environ.setdefault("MINYI_DEMO", "1")  # the synthetic city may use the public demo pseudonym key quietly
    # The story is the demo's own lines; Prefect's per-task logs stay in the console only as warnings, and
    # are not shipped to the ephemeral API (a quarter of the demo's time went there).
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_LOGGING_TO_API_ENABLED", "false")
    settings = Settings()
    home = settings.home / "demo"
    home.mkdir(parents=True, exist_ok=True)
    began = wall.perf_counter()

    feed = CityFeed(CityConfig(records_per_day=records))
    with SourceServer(feed) as source_server, SmsGateway() as sms_gateway:
        cfg_path = home / "minyi.toml"
        text = demo_config_text(source_server.url, sms_gateway.url, ingest_workers=1)
        parse_config(text, str(cfg_path))  # the demo must itself be a valid config
        cfg_path.write_text(text, encoding="utf-8")
        os.environ["MINYI_CONFIG"] = str(cfg_path)

        from minyi.tasks.runtime import load_runtime
        from minyi.tasks.store.engine import upgrade

        rt = load_runtime(check_store=False)
        upgrade(rt.engine)
        reports = Path(settings.reports_dir).resolve()
        typer.echo(
            f"minyi demo: {len(dates)} business dates {dates[0]} … {dates[-1]}, {records} records/day\n"
            f"  config   {cfg_path}\n"
            f"  store    {rt.engine.url.render_as_string(hide_password=True)}\n"
            f"  sources  {source_server.url} ({len(SOURCES)} sources); sms {sms_gateway.url} (local gateway)"
        )

        from minyi.flows.daily_loop import daily_loop
        from minyi.flows.report import report
        from minyi.flows.sweep import sweep
        from minyi.tasks.rules.calendar import load_calendar

        working = load_calendar().is_working_day
        tally = Tally()
        loops = set(dates)
        calendar_days = [dates[0] + timedelta(days=i + 1) for i in range((dates[-1] - dates[0]).days + 1)]
        for index, today in enumerate(calendar_days):
            business = today - timedelta(days=1)
            line = [f"  {today} {'一二三四五六日'[today.weekday()]}"]
            if business in loops:
                daily_loop(business_date=business, as_of=_at(today, LOOP_AT, tz))
                replied = citizens_reply(rt.engine, sms_gateway, business, _at(today, REPLIES_AT, tz))
                tally.replies += replied
                line.append(f"loop {business} · {replied} replies")
            if business not in loops and not working(today):
                typer.echo(" · ".join([*line, "rest day: no loop, no sweep"]))
                continue
            s = sweep(as_of=_at(today, SWEEP_AT, tz))
            fired = s.supervision.escalations if s.supervision else {}
            line.append(f"sweep: {s.orders_opened or 0} orders opened, escalations {sum(fired.values())}")
            visits = desk_calls(rt.engine, _at(today, DESK_AT, tz), tz, tally)
            reported = units_report(rt.engine, _at(today, UNITS_AT, tz), tz, tally)
            lifecycle_scenes(
                Scene(
                    rt.engine, _at(today, UNITS_AT, tz), tz, index, tally, sms_gateway, index == len(calendar_days) - 1
                )
            )
            line.append(f"{visits} visits · {reported} unit reports")
            typer.echo(" · ".join(line))
        closing = _at(calendar_days[-1], CLOSE_AT, tz)
        sweep(as_of=closing)
        report(business_date=dates[-1], as_of=closing)

        typer.echo(summary_text(rt.engine, dates, reports, cfg_path, tally, wall.perf_counter() - began))


def _counts(engine: Engine, sql: str) -> Counter[str]:
    with engine.connect() as conn:
        return Counter({str(k): int(n) for k, n in conn.execute(sql_text(sql)).all()})


def summary_text(engine: Engine, dates: list[date], reports: Path, cfg: Path, tally: Tally, seconds: float) -> str:
    """What happened and where to look, in Chinese and English."""
    with engine.connect() as conn:
        n_records = conn.execute(sql_text("SELECT COUNT(*) FROM records")).scalar() or 0
        sent = conn.execute(sql_text("SELECT COUNT(*) FROM followups WHERE sms_status = 'sent'")).scalar() or 0
    satisfaction = _counts(
        engine, "SELECT satisfaction, COUNT(*) FROM followups WHERE satisfaction IS NOT NULL GROUP BY 1"
    )
    statuses = _counts(engine, "SELECT status, COUNT(*) FROM orders GROUP BY status")
    levels = _counts(engine, "SELECT level, COUNT(*) FROM escalations GROUP BY level")
    lifecycle = _counts(
        engine,
        "SELECT stage, COUNT(*) FROM order_events WHERE stage NOT IN "
        "('responded', 'rectified', 'feedback') GROUP BY stage",
    )
    last = reports / dates[-1].isoformat()

    def show(c: Counter[str]) -> str:
        return ", ".join(f"{k} {v}" for k, v in sorted(c.items())) or "none"

    return "\n".join(
        [
            f"minyi demo: done in {seconds:.0f} s",
            f"  演示：{dates[0]} 至 {dates[-1]} 共 {len(dates)} 个工作日，{n_records} 条记录，发出回访短信 {sent} 条，"
            f"群众回复 {tally.replies} 条；人工回访 {sum(tally.visits.values())} 次；"
            f"督办单 {sum(statuses.values())} 件（{show(statuses)}）；预警升级 {sum(levels.values())} 次（{show(levels)}）；"
            f"{NEVER_ANSWERS} 从未答复。",
            f"  demo: {len(dates)} business dates, {n_records} records, {sent} SMS sent, {tally.replies} replies",
            f"  satisfaction  {show(satisfaction)}",
            f"  visits        {show(tally.visits)}",
            f"  unit reports  {show(tally.reports)} ({NEVER_ANSWERS} never answers)",
            f"  orders        {show(statuses)}",
            f"  escalations   {show(levels)}",
            f"  lifecycle     {show(lifecycle)} (退单改派 return/reassign, 延期 extension, 申诉 appeal, 复核 reopen)",
            "  请查看 where to look:",
            f"    {last}/assessment.png       考核图表 the chart",
            f"    {last}/assessment.json      考核指标 the metrics",
            f"    {last}/rectification.json   督办单 every order and its escalations",
            f"    {reports}/outbox/           各值班频道消息 posts per duty channel and day",
            f"    MINYI_CONFIG={cfg} minyi status    值班总览 the duty officer's screen",
            f"    MINYI_CONFIG={cfg} minyi visits    回访队列 the call-back queue (full numbers)",
        ]
    )
