"""`minyi demo`: the synthetic city served on loopback and run through the daily loop.

It writes its own config (the shipped one with the loopback ports it got) to
`.minyi/demo/minyi.toml`, uses the default store unless MINYI_DATABASE_URL says
otherwise, and leaves Slack disabled so every post lands as a file.
"""

from __future__ import annotations

import os
from datetime import date, datetime, time, timedelta
from pathlib import Path

import typer
from sqlalchemy import text as sql_text
from sqlalchemy.engine import Engine

from minyi.sim.city import SOURCES, CityConfig, unit_rows
from minyi.sim.sms_gateway import SmsGateway
from minyi.sim.source_server import CityFeed, SourceServer
from minyi.tasks.config import Settings, parse_config
from minyi.tasks.days import local_date, now, parse_date, parse_instant

DEMO_TZ = "Asia/Shanghai"


def demo_config_text(source_url: str, sms_url: str) -> str:
    """The demo's TOML: every source of the city, every unit with a duty channel."""
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
    for s in SOURCES:
        lines += ["[[sources]]", f'name = "{s.name}"', f'url = "{source_url}/{s.name}"', ""]
    for u in unit_rows():
        lines += ["[[units]]"] + [f'{k} = "{v}"' for k, v in u.items()] + [""]
    return "\n".join(lines)


def run_demo(date_arg: str | None, as_of_arg: str | None, records: int) -> None:
    import zoneinfo

    tz = zoneinfo.ZoneInfo(DEMO_TZ)
    as_of = parse_instant(as_of_arg) if as_of_arg else datetime.combine(local_date(now(), tz), time(9, 5), tz)
    day = parse_date(date_arg) if date_arg else local_date(as_of, tz) - timedelta(days=1)
    os.environ.setdefault("MINYI_DEMO", "1")  # the synthetic city may use the public demo pseudonym key quietly
    settings = Settings()
    home = settings.home / "demo"
    home.mkdir(parents=True, exist_ok=True)

    feed = CityFeed(CityConfig(records_per_day=records))
    with SourceServer(feed) as source_server, SmsGateway() as sms_gateway:
        cfg_path = home / "minyi.toml"
        text = demo_config_text(source_server.url, sms_gateway.url)
        parse_config(text, str(cfg_path))  # the demo must itself be a valid config
        cfg_path.write_text(text, encoding="utf-8")
        os.environ["MINYI_CONFIG"] = str(cfg_path)

        from minyi.tasks.runtime import load_runtime
        from minyi.tasks.store import upgrade

        rt = load_runtime(check_store=False)
        upgrade(rt.engine)
        typer.echo(f"minyi demo: {records} records/day for {day}, as of {as_of.isoformat()}")
        typer.echo(f"  config   {cfg_path}")
        typer.echo(f"  store    {rt.engine.url.render_as_string(hide_password=True)}")
        typer.echo(f"  sources  {source_server.url} ({len(SOURCES)} sources)")
        typer.echo(f"  sms      {sms_gateway.url} (local gateway)")

        from minyi.flows.daily_loop import daily_loop
        from minyi.render import render_summary

        summary = daily_loop(business_date=day, as_of=as_of)
        typer.echo(render_summary(summary))
        typer.echo(f"  reports  {Path(settings.reports_dir).resolve() / day.isoformat()}")

        # Citizens answer during the morning; the noon sweep reads them, queues visits and opens orders.
        answered = citizens_reply(rt.engine, sms_gateway, day, as_of)
        from minyi.flows.sweep import sweep
        from minyi.render import render_sweep

        typer.echo(f"minyi demo: {answered} citizens replied; sweep at {(as_of + timedelta(hours=3)).isoformat()}")
        typer.echo(render_sweep(sweep(as_of=as_of + timedelta(hours=3))))

        # The files are refreshed with the answers; what was posted this morning stays as posted.
        from minyi.flows.report import report
        from minyi.render import render_report

        typer.echo(render_report(report(business_date=day, as_of=as_of + timedelta(hours=3))))
        typer.echo("  visits   `minyi visits` lists the call centre's queue (MINYI_CONFIG=" + str(cfg_path) + ")")


# A plausible spread of answers, by the message's position: most satisfied, some not, a few odd.
_DEMO_ANSWERS = ("1", "1", "满意", "１", "2", "基本满意", "3", "不满意", " 2 ", "TD", "收到谢谢", None, None)


def citizens_reply(engine: Engine, gateway: SmsGateway, day: date, as_of: datetime) -> int:
    """Inject replies to the day's sent SMS at the local gateway (reply ids are stable, so a re-run adds none)."""
    with engine.connect() as conn:
        rows = conn.execute(
            sql_text(
                "SELECT message_id, phone_norm FROM followups WHERE business_date = :d AND sms_status = 'sent' "
                "ORDER BY id"
            ),
            {"d": day},
        ).all()
    answered = 0
    for i, (message_id, phone) in enumerate(rows):
        answer = _DEMO_ANSWERS[i % len(_DEMO_ANSWERS)]
        if answer is None:
            continue
        received = as_of + timedelta(minutes=5 + i % 115)
        # Every third citizen's phone drops the message id: matched by phone within 7 days instead.
        gateway.inject_reply(phone, answer, received, message_id if i % 3 else None, reply_id=f"demo:{message_id}")
        answered += 1
    return answered
