"""Deployments (SPEC §9) on a real Prefect server backed by PostgreSQL, as an operator uses them.

The slow half starts `prefect server start` on loopback with its own
PREFECT_HOME and a throwaway PostgreSQL database, deploys deployments/prefect.yaml
to a process work pool, runs a real worker and `minyi serve` in subprocesses,
and triggers runs through the API exactly as the UI's "Run" form does.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from minyi.deployments.entrypoints import FlowNotInstalled, discovered, resolve, stage_of
from minyi.deployments.registry import SPECS, render_prefect_yaml, spec
from minyi.sim.sms_gateway import SmsGateway
from minyi.sim.source_server import SourceServer, StaticFeed
from tests.conftest import PG_ADMIN_URL
from tests.support import PG_IN_TEST, Env, at, config_toml, make_record

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DAY = date(2026, 11, 21)
AS_OF = at("2026-11-22 09:05")


# --- the deployment layer, without a server -------------------------------------------------------------------------


def test_prefect_yaml_is_the_registry_rendered() -> None:
    assert (REPO / "deployments" / "prefect.yaml").read_text(encoding="utf-8") == render_prefect_yaml(), (
        "deployments/prefect.yaml is stale: .venv/bin/python -m minyi.deployments.registry > deployments/prefect.yaml"
    )


def test_schedules_are_09_00_daily_hourly_sweep_and_the_first_of_the_month_in_shanghai() -> None:
    deployments = {d["name"]: d for d in yaml.safe_load(render_prefect_yaml())["deployments"]}
    assert deployments["daily-loop"]["schedules"] == [
        {"cron": "0 9 * * *", "timezone": "Asia/Shanghai", "active": True}
    ]
    assert deployments["sweep"]["schedules"][0]["cron"] == "15 9-21 * * *"
    assert deployments["monthly-assessment"]["schedules"][0]["cron"] == "0 10 1 * *"
    for operator in ("backfill", "record-visit", "report-order", "resend"):
        assert deployments[operator]["schedules"] == []
        assert "operator" in deployments[operator]["tags"]


def test_every_deployment_runs_the_flow_of_its_name() -> None:
    for s in SPECS:
        target = resolve(s)
        assert target.name in s.flow_names and discovered()[target.name] is stage_of(target)


def test_a_deployment_whose_flow_is_missing_is_an_error_naming_it() -> None:
    from dataclasses import replace

    with pytest.raises(FlowNotInstalled, match="deployment 'resend': no flow named 'nothing'"):
        resolve(replace(spec("resend"), flow_names=("nothing",)))


def test_daily_loop_form_has_date_pickers_and_descriptions() -> None:
    from prefect.utilities.callables import parameter_schema

    from minyi.flows.daily_loop import daily_loop

    props = parameter_schema(daily_loop).model_dump()["properties"]
    assert {"format": "date", "type": "string"} in props["business_date"]["anyOf"]
    assert {"format": "date-time", "type": "string"} in props["as_of"]["anyOf"]
    assert "yesterday" in daily_loop.description or "day before" in props["business_date"]["description"]
    assert props["as_of"]["description"]


def test_backfill_form_requires_start_and_end_dates() -> None:
    from prefect.utilities.callables import parameter_schema

    from minyi.flows.backfill import backfill

    schema = parameter_schema(backfill).model_dump()
    assert schema["required"] == ["start", "end"]
    assert schema["properties"]["start"]["format"] == "date"
    assert "stale" in backfill.description


# --- one daily loop per business date, and backfill, in process -----------------------------------------------------


@pytest.fixture
def source() -> Iterator[tuple[SourceServer, StaticFeed]]:
    feed = StaticFeed()
    with SourceServer(feed) as srv:
        yield srv, feed


@pytest.fixture
def gateway() -> Iterator[SmsGateway]:
    with SmsGateway() as gw:
        yield gw


def city_config(server: SourceServer, gateway: SmsGateway, **ingest: Any) -> str:
    """police110 from the loopback source, SMS to the loopback gateway, Slack off (posts land as files)."""
    return config_toml(
        {"police110": server.url_for("police110")},
        sections={"sms": {"url": gateway.url, "backoff_seconds": 0.01}, "ingest": ingest},
    )


def test_a_second_daily_loop_for_a_date_still_running_is_cancelled_and_pulls_nothing(
    env: Env, source: tuple[SourceServer, StaticFeed], gateway: SmsGateway, prefect_harness: None
) -> None:
    from minyi.flows.daily_loop import daily_loop
    from minyi.flows.exclusive import exclusive

    server, feed = source
    feed.data[("police110", DAY)] = [make_record(i, DAY) for i in range(5)]
    env.write_config(city_config(server, gateway))
    with exclusive(f"daily-loop:{DAY}"):  # the first click's run, still going
        state = daily_loop(business_date=DAY, as_of=AS_OF, return_state=True)
    assert state.is_cancelled()
    assert "already running" in state.message
    assert server.requests == []
    assert gateway.delivered == {}
    assert env.scalar("SELECT COUNT(*) FROM records") == 0


def test_the_lease_of_one_business_date_does_not_hold_up_another_or_outlive_its_run(env: Env) -> None:
    from minyi.flows.exclusive import AlreadyRunning, exclusive

    env.write_config(config_toml())

    with exclusive("daily-loop:2026-11-20"), exclusive("daily-loop:2026-11-21"):
        with pytest.raises(AlreadyRunning), exclusive("daily-loop:2026-11-20"):
            pass
    with exclusive("daily-loop:2026-11-20"):  # released when the first holder finished
        pass


@PG_IN_TEST
def test_backfill_reruns_each_date_in_order_at_one_as_of_and_old_dates_send_no_sms(
    env: Env, source: tuple[SourceServer, StaticFeed], gateway: SmsGateway, prefect_harness: None
) -> None:
    from minyi.flows.backfill import backfill

    server, feed = source
    stale, fresh = date(2026, 11, 18), date(2026, 11, 19)  # 4 and 3 days before as_of; max_age_days = 3
    for d in (stale, fresh):
        feed.data[("police110", d)] = [make_record(i, d, phone=f"139{d.day:02d}{i:06d}") for i in range(2)]
    env.write_config(city_config(server, gateway))
    summary = backfill(start=stale, end=fresh, as_of=AS_OF)
    assert [s.business_date for s in summary.days] == [stale, fresh]
    assert {s.as_of for s in summary.days} == {AS_OF}
    assert [q["date"] for _, _, q, _ in server.requests] == [stale.isoformat(), fresh.isoformat()]
    assert env.scalar("SELECT COUNT(*) FROM records") == 4
    assert env.scalar("SELECT COUNT(*) FROM followups WHERE skip_reason = 'stale'") == 2
    assert {d.to for d in gateway.delivered.values()} == {f"13919{i:06d}" for i in range(2)}


def test_backfill_with_end_before_start_is_refused_by_the_cli(env: Env) -> None:
    env.write_config(config_toml({}))
    done = subprocess.run(
        [str(BIN / "minyi"), "backfill", "--start", "2026-11-21", "--end", "2026-11-20"],
        env=env.cli_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert done.stderr.strip().splitlines()[-1] == "minyi: --end 2026-11-20 is before --start 2026-11-21"


# --- a real Prefect server on PostgreSQL, a worker and `minyi serve` -------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen[Any], grace: float = 10.0) -> None:
    """Stop a process we started, and its children (it leads its own process group)."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)
    except ProcessLookupError:
        pass


def _start(args: list[str], env: dict[str, str], log: Path, cwd: Path = REPO) -> subprocess.Popen[Any]:
    return subprocess.Popen(
        args,
        env=env,
        cwd=cwd,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


class PrefectServer:
    def __init__(self, api_url: str, home: Path, logs: Path) -> None:
        self.api_url = api_url
        self.home = home
        self.logs = logs

    def client_env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        env.update(
            PREFECT_API_URL=self.api_url,
            PREFECT_HOME=str(self.home / "client"),
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            PREFECT_CLI_PROMPT="false",
            DO_NOT_TRACK="1",
            GX_ANALYTICS_ENABLED="false",
            # poll every second instead of every 10 s: the tests wait on workers and `minyi serve`
            PREFECT_WORKER_QUERY_SECONDS="1",
            PREFECT_RUNNER_POLL_FREQUENCY="1",
        )
        env.update(extra)
        return env

    def api(self, method: str, path: str, **kw: Any) -> Any:
        r = httpx.request(method, f"{self.api_url}{path}", timeout=30, **kw)
        r.raise_for_status()
        return r.json() if r.content else None


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    """`prefect server start` on a free loopback port, on a throwaway PostgreSQL database."""
    name = f"prefect_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    db_url = make_url(PG_ADMIN_URL).set(drivername="postgresql+asyncpg", database=name)
    home = tmp_path_factory.mktemp("prefect")
    port = _free_port()
    server = PrefectServer(f"http://127.0.0.1:{port}/api", home, home)
    env = server.client_env(
        PREFECT_HOME=str(home / "server"),
        PREFECT_SERVER_DATABASE_CONNECTION_URL=db_url.render_as_string(hide_password=False),
        PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS="2",
        PREFECT_UI_ENABLED="false",
    )
    env.pop("PREFECT_API_URL")
    proc = _start(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env,
        home / "server.log",
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, (home / "server.log").read_text(errors="replace")[-3000:]
            try:
                if httpx.get(f"{server.api_url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "prefect server did not start in 120 s"
            time.sleep(0.5)
        yield server
    finally:
        _stop(proc)
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="module")
def city(tmp_path_factory: pytest.TempPathFactory, pg_database: str) -> Iterator[tuple[SourceServer, SmsGateway, Env]]:
    """A loopback records source, SMS gateway and a minyi store on PostgreSQL, shared by the worker and `minyi serve`."""
    from minyi.tasks.store.engine import get_engine
    from tests.conftest import _truncate_all

    _truncate_all(pg_database)
    root = tmp_path_factory.mktemp("minyi")
    mp = pytest.MonkeyPatch()
    env = Env(url=pg_database, dir=root, engine=get_engine(pg_database), monkeypatch=mp)
    with SourceServer(StaticFeed()) as srv, SmsGateway() as gw:
        env.write_config(city_config(srv, gw, page_size=10))
        try:
            yield srv, gw, env
        finally:
            mp.undo()


def _minyi_env(server: PrefectServer, env: Env) -> dict[str, str]:
    keys = ("MINYI_DATABASE_URL", "MINYI_CONFIG", "MINYI_REPORTS_DIR", "MINYI_HOME")
    return server.client_env(**{k: v for k, v in env.cli_env().items() if k in keys})


def _deployment(server: PrefectServer, name: str) -> dict[str, Any]:
    return server.api("GET", f"/deployments/name/{name}/{name}")


def _pause_schedules(server: PrefectServer) -> None:
    """No scheduled sweep or loop may fire into a test that happens to run at 09:15 Shanghai; UI runs still work."""
    for d in server.api("POST", "/deployments/filter", json={}):
        if d["schedules"]:
            server.api("PATCH", f"/deployments/{d['id']}", json={"paused": True})


def _trigger(server: PrefectServer, deployment_id: str, parameters: dict[str, Any]) -> str:
    """What the UI's Run → Custom run form posts."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: server.api_url}), get_client(sync_client=True) as client:
        return str(client.create_flow_run_from_deployment(uuid.UUID(deployment_id), parameters=parameters).id)


def _wait_final(server: PrefectServer, run_ids: list[str], timeout: float, logs: list[Path]) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        runs = [server.api("GET", f"/flow_runs/{rid}") for rid in run_ids]
        if all(r["state"]["type"] in ("COMPLETED", "FAILED", "CANCELLED", "CRASHED") for r in runs):
            return runs
        if time.monotonic() > deadline:
            tails = "\n".join(p.read_text(errors="replace")[-3000:] for p in logs if p.exists())
            pytest.fail(f"runs not finished in {timeout} s: {[r['state']['type'] for r in runs]}\n{tails}")
        time.sleep(0.5)


@pytest.mark.slow
def test_deployed_daily_loop_is_scheduled_and_runs_on_a_worker_from_the_ui_form(
    prefect_server: PrefectServer, city: tuple[SourceServer, SmsGateway, Env]
) -> None:
    server, (src, gateway, env) = prefect_server, city
    run_env = _minyi_env(server, env)
    src.feed.data[("police110", DAY)] = [make_record(i, DAY) for i in range(25)]

    subprocess.run(
        [str(BIN / "prefect"), "work-pool", "create", "minyi", "--type", "process", "--overwrite"],
        env=run_env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    deployed = subprocess.run(
        [str(BIN / "prefect"), "--no-prompt", "deploy", "--all", "--prefect-file", "deployments/prefect.yaml"],
        env=run_env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert deployed.returncode == 0, deployed.stdout[-3000:] + deployed.stderr[-3000:]

    loop = _deployment(server, "daily-loop")
    assert loop["work_pool_name"] == "minyi"
    assert [(s["schedule"]["cron"], s["schedule"]["timezone"]) for s in loop["schedules"]] == [
        ("0 9 * * *", "Asia/Shanghai")
    ]
    assert "business_date" in loop["parameter_openapi_schema"]["properties"]
    assert server.api("GET", "/deployments/name/backfill/backfill")["schedules"] == []

    # the server's scheduler fills the calendar (SQLAlchemy 2.1 silently does not)
    deadline = time.monotonic() + 60
    scheduled: list[dict[str, Any]] = []
    while not scheduled and time.monotonic() < deadline:
        scheduled = server.api(
            "POST",
            "/flow_runs/filter",
            json={
                "deployments": {"id": {"any_": [loop["id"]]}},
                "flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}},
            },
        )
        time.sleep(1)
    assert scheduled, "the scheduler created no scheduled runs for daily-loop"
    starts = {
        datetime.fromisoformat(r["expected_start_time"]).astimezone(at("2026-01-01 00:00").tzinfo) for r in scheduled
    }
    assert {(s.hour, s.minute) for s in starts} == {(9, 0)}

    _pause_schedules(server)
    worker_log = server.logs / "worker.log"
    worker = _start(
        [str(BIN / "prefect"), "worker", "start", "--pool", "minyi", "--type", "process"], run_env, worker_log
    )
    try:
        run_id = _trigger(server, loop["id"], {"business_date": DAY.isoformat(), "as_of": AS_OF.isoformat()})
        (run,) = _wait_final(server, [run_id], 120, [worker_log])
    finally:
        _stop(worker)
    assert run["state"]["type"] == "COMPLETED", run["state"]
    assert run["name"] == f"daily-loop-{DAY}"
    assert env.scalar("SELECT COUNT(*) FROM records WHERE business_date = :d", d=DAY) == 25
    sent = env.rows("SELECT message_id FROM followups WHERE business_date = :d AND sms_status = 'sent'", d=DAY)
    assert len(sent) == 25
    assert all(m in gateway.delivered for (m,) in sent)
    artifacts = server.api("POST", "/artifacts/filter", json={"artifacts": {"key": {"any_": ["ingest-summary"]}}})
    assert artifacts, "the ingest summary table is not on the server for the operator to read"
    report = orjson.loads((env.dir / "reports" / DAY.isoformat() / "assessment.json").read_bytes())
    assert report["overall"]["records"] == 25
    assert report["overall"]["followups_sent"] == 25


@pytest.mark.slow
def test_two_ui_triggers_for_one_business_date_do_one_days_work_under_minyi_serve(
    prefect_server: PrefectServer, city: tuple[SourceServer, SmsGateway, Env]
) -> None:
    server, (src, gateway, env) = prefect_server, city
    day = date(2026, 11, 20)
    src.feed.data[("police110", day)] = [make_record(i, day) for i in range(30)]
    src.state("police110").page_delay = 1.5  # three pages: the first run holds the date for ~5 s
    serve_log = server.logs / "serve.log"
    started = time.time()
    proc = _start([str(BIN / "minyi"), "serve"], _minyi_env(server, env), serve_log)
    try:
        deadline = time.monotonic() + 90
        while True:  # `minyi serve` has registered its deployments and polls them (the worker is gone)
            try:
                loop = _deployment(server, "daily-loop")
                polled = loop.get("last_polled")
                if polled and datetime.fromisoformat(polled).timestamp() > started:
                    break
            except httpx.HTTPStatusError:
                pass
            assert proc.poll() is None, serve_log.read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, serve_log.read_text(errors="replace")[-3000:]
            time.sleep(0.5)
        _pause_schedules(server)
        params = {"business_date": day.isoformat(), "as_of": AS_OF.isoformat()}
        ids: list[str] = []
        clicks = [threading.Thread(target=lambda: ids.append(_trigger(server, loop["id"], params))) for _ in range(2)]
        for t in clicks:
            t.start()
        for t in clicks:
            t.join()
        runs = _wait_final(server, ids, 120, [serve_log])
    finally:
        _stop(proc)
        src.state("police110").page_delay = 0
    states = sorted(r["state"]["type"] for r in runs)
    assert states == ["CANCELLED", "COMPLETED"], [r["state"] for r in runs]
    (cancelled,) = [r for r in runs if r["state"]["type"] == "CANCELLED"]
    assert "already running" in cancelled["state"]["message"]
    assert [q.get("cursor") for _, s, q, _ in src.requests if q.get("date") == day.isoformat()] == [None, "10", "20"]
    assert env.scalar("SELECT COUNT(*) FROM records WHERE business_date = :d", d=day) == 30
    day_messages = [m for (m,) in env.rows("SELECT message_id FROM followups WHERE business_date = :d", d=day)]
    assert len(day_messages) == 30 and all(m in gateway.delivered for m in day_messages)
    assert {gateway.sends_of(m) for m in day_messages} == {1}  # one batch carried each: no second relay ran


# --- tokens from Prefect Secret blocks (SPEC §2) ----------------------------------------------------------------------


def test_token_env_may_name_a_prefect_secret_block(prefect_harness: None) -> None:
    from prefect.blocks.system import Secret

    from minyi.tasks.config import secret_from_env

    Secret(value=" sms-token-123 ").save("minyi-test-sms-token", overwrite=True)
    assert secret_from_env("prefect-secret:minyi-test-sms-token") == "sms-token-123"


def test_a_missing_secret_block_is_a_config_error_naming_it(prefect_harness: None) -> None:
    from minyi.tasks.config import secret_from_env
    from minyi.tasks.errors import ConfigError

    with pytest.raises(ConfigError, match="no Prefect Secret block named 'minyi-no-such-block'"):
        secret_from_env("prefect-secret:minyi-no-such-block")
