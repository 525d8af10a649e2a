"""`make ui-check`: the operator UI in a real browser (Debian's Chromium driven by Playwright). Not in `make test`.

1. `prefect server start` on a free loopback port with a temporary PREFECT_HOME;
2. a one-day demo (`minyi demo --days 1`) in a temporary MINYI_HOME against that server: a store with
   open orders and a call-back queue, and the `callback-queue` artifact its sweeps published;
3. `minyi serve` against that server and store;
4. Chromium opens every operator deployment's Custom run form (a screenshot each under reports/ui/),
   fills and submits `record-visit` (the ref copied from the queue artifact) and `report-order`;
5. asserts the runs complete, the store changed as `minyi visit` / `minyi order` change it,
   and the queue artifact listed the visit before and does not after.

Needs /usr/bin/chromium (`apt-get install -y chromium`) and the `ui` extra (playwright).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, text

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
CHROMIUM = os.environ.get("MINYI_CHROMIUM", "/usr/bin/chromium")
SHOTS = REPO / "reports" / "ui"
OPERATOR = ("record-visit", "report-order", "backfill", "resend")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[Any]:
    return subprocess.Popen(args, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)


def stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)
    except ProcessLookupError:
        pass


def say(line: str) -> None:
    print(f"ui-check: {line}", flush=True)


class Api:
    def __init__(self, url: str) -> None:
        self.url = url

    def __call__(self, method: str, path: str, **kw: Any) -> Any:
        for attempt in range(20):  # a busy server on SQLite answers 503 now and then: ask again
            r = httpx.request(method, f"{self.url}{path}", timeout=30, **kw)
            if r.status_code != 503 or attempt == 19:
                break
            time.sleep(1 + attempt / 2)
        r.raise_for_status()
        return r.json() if r.content else None

    def wait_healthy(self, proc: subprocess.Popen[Any], log: Path, seconds: float = 180) -> None:
        deadline = time.monotonic() + seconds
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"prefect server exited:\n{log.read_text(errors='replace')[-3000:]}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("prefect server did not start in time")
            time.sleep(0.5)

    def queue_refs(self) -> list[str]:
        import json

        art = self("GET", "/artifacts/callback-queue/latest")
        data = art["data"]
        rows = json.loads(data) if isinstance(data, str) else data
        return [r["ref"] for r in rows if r.get("ref")]

    def deployments(self) -> dict[str, dict[str, Any]]:
        return {d["name"]: d for d in self("POST", "/deployments/filter", json={})}

    def runs_of(self, deployment_id: str) -> list[dict[str, Any]]:
        body = {"flow_runs": {"deployment_id": {"any_": [deployment_id]}}, "sort": "EXPECTED_START_TIME_DESC"}
        return self("POST", "/flow_runs/filter", json=body)

    def wait_run(self, deployment_id: str, seconds: float = 300) -> dict[str, Any]:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            runs = self.runs_of(deployment_id)
            if runs and runs[0]["state_type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
                return runs[0]
            time.sleep(1)
        raise SystemExit(f"no finished run of deployment {deployment_id} in {seconds:.0f} s")


def field_of(page: Any, title: str) -> Any:
    """The form property whose label is `title` (Prefect's schema form: div.schema-form-property)."""
    label = page.locator(".schema-form-property__label", has_text=title).first
    return label.locator("xpath=ancestor::div[contains(concat(' ', @class, ' '), ' schema-form-property ')][1]")


def fill_form(page: Any, values: dict[str, str]) -> None:
    """Fill the schema form by field title: a text box, or a drop-down (Prefect's p-select)."""
    for title, value in values.items():
        field = field_of(page, title)
        box = field.locator("textarea, input")
        if box.count():
            box.first.fill(value)
            continue
        # Prefect's p-select opens from the keyboard (a synthetic click does not open it headless)
        field.locator("button.p-select-button__control").first.focus()
        page.keyboard.press("ArrowDown")
        exact = re.compile(rf"^\s*{re.escape(value)}\s*$")
        page.locator(".p-select-option__text").filter(has_text=exact).first.click()


def chromium_fonts(tmp: Path) -> dict[str, str]:
    """A fontconfig for the browser alone with Noto Sans SC from the chart's font package, so screenshots show
    the Chinese labels (this machine has no CJK system font; an operator's browser has one)."""
    import pylopdf_fonts_zh_cn

    conf = tmp / "fonts.conf"
    conf.write_text(
        '<?xml version="1.0"?><!DOCTYPE fontconfig SYSTEM "fonts.dtd"><fontconfig>'
        '<include ignore_missing="yes">/etc/fonts/fonts.conf</include>'
        f"<dir>{pylopdf_fonts_zh_cn.sans_path().parent}</dir><cachedir>{tmp / 'fontcache'}</cachedir>"
        "</fontconfig>",
        encoding="utf-8",
    )
    return dict(os.environ) | {"FONTCONFIG_FILE": str(conf)}


def main() -> int:
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"ui-check: {CHROMIUM} not found; install it: apt-get update && apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    for old in SHOTS.glob("*.png"):
        old.unlink()
    tmp = Path(tempfile.mkdtemp(prefix="minyi-ui-"))
    port = free_port()
    api = Api(f"http://127.0.0.1:{port}/api")
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MINYI_"))}
    base.update(
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
        GX_ANALYTICS_ENABLED="false",
        PREFECT_RUNNER_POLL_FREQUENCY="1",
    )
    # the UI asks the API at PREFECT_UI_API_URL (default port 4200, not ours)
    server_env = base | {"PREFECT_HOME": str(tmp / "prefect-server"), "PREFECT_UI_API_URL": api.url}
    client = base | {
        "PREFECT_API_URL": api.url,
        "PREFECT_HOME": str(tmp / "prefect-client"),
        "MINYI_HOME": str(tmp / "home"),
        "MINYI_REPORTS_DIR": str(tmp / "reports"),
        "MINYI_DATABASE_URL": f"sqlite:///{tmp / 'minyi.db'}",
    }
    procs: list[subprocess.Popen[Any]] = []
    started = forms = 0
    try:
        server_log = tmp / "server.log"
        procs.append(
            start(
                [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                server_env,
                server_log,
            )
        )
        api.wait_healthy(procs[0], server_log)
        say(f"prefect server on {api.url}")
        demo = subprocess.run(
            [str(BIN / "minyi"), "demo", "--days", "1", "--records", "120"],
            env=client,
            capture_output=True,
            text=True,
            timeout=900,
        )
        if demo.returncode:
            raise SystemExit(f"demo failed:\n{demo.stdout[-2000:]}\n{demo.stderr[-3000:]}")
        client["MINYI_CONFIG"] = str(tmp / "home" / "demo" / "minyi.toml")
        say("one-day demo store ready")
        procs.append(start([str(BIN / "minyi"), "serve"], client, tmp / "serve.log"))
        check = subprocess.run([str(BIN / "minyi"), "serve", "--check"], env=client, capture_output=True, text=True)
        expected = sum(1 for line in check.stdout.splitlines() if line.startswith("serving"))
        deadline = time.monotonic() + 180
        while len(api.deployments()) < expected:
            if procs[-1].poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"minyi serve did not register: {(tmp / 'serve.log').read_text()[-3000:]}")
            time.sleep(1)
        deployments = api.deployments()
        for d in deployments.values():
            if d.get("schedules"):
                api("PATCH", f"/deployments/{d['id']}", json={"paused": True})
        say(f"minyi serve registered {len(deployments)} deployments")

        engine = create_engine(client["MINYI_DATABASE_URL"])
        queue_before = api.queue_refs()
        assert queue_before, "the demo's sweep published an empty call-back queue"
        visit_ref = queue_before[0]
        with engine.connect() as conn:
            order_ref = conn.execute(
                text("SELECT source || ':' || record_id FROM orders WHERE status = 'open' ORDER BY id LIMIT 1")
            ).scalar_one()

        ui = f"http://127.0.0.1:{port}"
        with sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"], env=chromium_fonts(tmp)
            )
            page = browser.new_page(viewport={"width": 1280, "height": 1400})
            page.set_default_timeout(60_000)
            for name in sorted(deployments, key=lambda n: (n not in OPERATOR, n)):
                d = deployments[name]
                page.goto(f"{ui}/deployments/deployment/{d['id']}/run")
                page.wait_for_load_state("networkidle")
                shot = SHOTS / f"form-{name}.png"
                try:
                    for p in d["parameter_openapi_schema"].get("properties", {}).values():
                        page.locator(".schema-form-property__label", has_text=p["title"]).first.wait_for()
                finally:
                    page.screenshot(path=str(shot), full_page=True)
                forms += 1
            say(f"{forms} run forms opened, screenshots in {SHOTS}")

            submissions = {
                "record-visit": {"记录 record": visit_ref, "回访结果 outcome": "satisfied", "备注 note": "ui-check"},
                "report-order": {"督办单 ref": order_ref, "动作 action": "responded", "备注 note": "ui-check"},
            }
            for name, values in submissions.items():
                d = deployments[name]
                page.goto(f"{ui}/deployments/deployment/{d['id']}/run")
                page.wait_for_load_state("networkidle")
                fill_form(page, values)
                page.screenshot(path=str(SHOTS / f"filled-{name}.png"), full_page=True)
                page.get_by_role("button", name="Submit").last.click()
                run = api.wait_run(d["id"])
                started += 1
                page.goto(f"{ui}/runs/flow-run/{run['id']}")
                page.wait_for_load_state("networkidle")
                page.screenshot(path=str(SHOTS / f"run-{name}.png"), full_page=True)
                assert run["state_type"] == "COMPLETED", f"{name} run ended {run['state_type']}: {run['state_name']}"
                say(f"{name} run {run['name']} completed")
            browser.close()

        source, record_id = visit_ref.split(":", 1)
        with engine.connect() as conn:
            outcome, satisfaction = conn.execute(
                text("SELECT visit_outcome, satisfaction FROM followups WHERE source = :s AND record_id = :r"),
                {"s": source, "r": record_id},
            ).one()
            note = conn.execute(
                text(
                    "SELECT a.note FROM answers a JOIN followups f ON f.id = a.followup_id "
                    "WHERE f.source = :s AND f.record_id = :r AND a.via = 'visit' ORDER BY a.id DESC LIMIT 1"
                ),
                {"s": source, "r": record_id},
            ).scalar_one()
            status, responded = conn.execute(
                text("SELECT status, responded_at FROM orders WHERE source || ':' || record_id = :ref"),
                {"ref": order_ref},
            ).one()
        assert (outcome, satisfaction, note) == ("satisfied", "satisfied", "ui-check"), (outcome, satisfaction, note)
        assert status == "responded" and responded is not None, (status, responded)
        queue_after = api.queue_refs()
        assert visit_ref in queue_before and visit_ref not in queue_after, "the queue artifact still lists the visit"
        say(
            f"store changed as the CLI would: {visit_ref} visit satisfied, {order_ref} responded; "
            f"queue artifact {len(queue_before)} → {len(queue_after)} visits"
        )
        say(f"PASS: {forms} forms checked, {started} runs started and completed")
        return 0
    finally:
        for p in reversed(procs):
            stop(p)
        if os.environ.get("MINYI_UI_KEEP"):
            say(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
