"""The deployments of SPEC §9, in one list that both `minyi serve` and `deployments/prefect.yaml` are built from.

Scheduled: the daily loop at 09:00, the sweep every hour 09:15–21:15, the
monthly assessment on the 1st (10:00, after the 09:00 loop has closed the
month's last business date) and the nightly retention run at 03:30, all in the
bureau's local time. Everything else is
an operator deployment with no schedule, run from the UI's "Run" form.

Each deployment names the Prefect flow it runs by the flow's *name*; the flow
is found wherever it lives under `minyi.flows` (see entrypoints.py), so a stage
added later is picked up without editing this package.
"""

from __future__ import annotations

from dataclasses import dataclass, field

WORK_POOL = "minyi"
DEFAULT_TIMEZONE = "Asia/Shanghai"


@dataclass(frozen=True)
class DeploymentSpec:
    name: str
    """Deployment name; the UI shows `<flow name>/<deployment name>`."""
    flow_names: tuple[str, ...]
    """Prefect flow names this deployment accepts, first preferred."""
    cron: str | None = None
    tags: tuple[str, ...] = ()
    parameters: dict[str, object] = field(default_factory=dict)
    title: str = ""
    """Chinese name shown first in the deployment's description, e.g. 记录回访 (the flow's docstring follows)."""

    @property
    def attr(self) -> str:
        """The attribute of minyi.deployments.entrypoints that resolves to the flow."""
        return self.name.replace("-", "_")

    @property
    def entrypoint(self) -> str:
        return f"minyi.deployments.entrypoints:{self.attr}"


SPECS: tuple[DeploymentSpec, ...] = (
    # scheduled (SPEC §9)
    DeploymentSpec("daily-loop", ("daily-loop",), cron="0 9 * * *", tags=("scheduled",), title="每日闭环"),
    DeploymentSpec("sweep", ("sweep",), cron="15 9-21 * * *", tags=("scheduled",), title="每小时巡检"),
    DeploymentSpec(
        "monthly-assessment",
        ("monthly-assessment", "assessment"),
        cron="0 10 1 * *",
        tags=("scheduled",),
        title="月度考核",
    ),
    # PIPL retention: de-identify what is older than retention_days, nightly, away from the day's work
    DeploymentSpec("retention", ("retention",), cron="30 3 * * *", tags=("scheduled",), title="数据去标识化"),
    # operator flows: unscheduled, typed forms in the UI
    DeploymentSpec("backfill", ("backfill",), tags=("operator",), title="补跑"),
    DeploymentSpec("record-visit", ("record-visit",), tags=("operator",), title="记录回访"),
    DeploymentSpec("report-order", ("report-order",), tags=("operator",), title="督办单反馈"),
    DeploymentSpec("resend", ("resend",), tags=("operator",), title="重发消息"),
    # SPEC §12: the records behind one unit's count, as a table artifact
    DeploymentSpec("explain", ("explain",), tags=("operator",), title="指标溯源"),
    # each stage of the loop alone (SPEC §1), e.g. quality with force=true to release a held gate (SPEC §8)
    DeploymentSpec("ingest", ("ingest",), tags=("stage",), title="数据接入"),
    DeploymentSpec("quality", ("quality",), tags=("stage",), title="数据质量"),
    DeploymentSpec("followup", ("followup",), tags=("stage",), title="短信回访"),
    DeploymentSpec("supervise", ("supervise",), tags=("stage",), title="督办"),
    DeploymentSpec("report", ("report",), tags=("stage",), title="报表"),
)


def spec(name: str) -> DeploymentSpec:
    for s in SPECS:
        if s.name == name:
            return s
    raise KeyError(name)


def render_prefect_yaml(timezone: str = DEFAULT_TIMEZONE) -> str:
    """deployments/prefect.yaml, as `prefect deploy --all` expects it (a test keeps the file equal to this)."""
    import yaml

    doc: dict[str, object] = {
        "name": "minyi",
        "prefect-version": "3.8.8",
        "build": None,
        "push": None,
        # minyi is an installed package on every worker: nothing to pull, entrypoints are module paths
        "pull": [],
        "deployments": [
            {
                "name": s.name,
                "entrypoint": s.entrypoint,
                "tags": ["minyi", *s.tags],
                "parameters": dict(s.parameters),
                "schedules": [{"cron": s.cron, "timezone": timezone, "active": True}] if s.cron else [],
                "work_pool": {"name": WORK_POOL, "work_queue_name": "default", "job_variables": {}},
            }
            for s in SPECS
        ],
    }
    header = [
        "# Generated from minyi/deployments/registry.py: edit the registry, then",
        "#   .venv/bin/python -m minyi.deployments.registry > deployments/prefect.yaml",
        "# Deploy (from the repo root, with PREFECT_API_URL set):",
        f"#   prefect work-pool create {WORK_POOL} --type process   # once",
        "#   prefect deploy --all --prefect-file deployments/prefect.yaml",
        "# Descriptions and parameter forms come from each flow's docstring and signature.",
    ]
    return "\n".join(header) + "\n" + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=120)


if __name__ == "__main__":
    print(render_prefect_yaml(), end="")
