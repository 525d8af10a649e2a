"""`minyi serve`: every deployment of the registry served from this one process (single machine, SPEC §9).

The same deployments as deployments/prefect.yaml, without a work pool: this
process polls the Prefect API, starts each scheduled or UI-triggered run as a
subprocess and reports it back. Schedules use the config's timezone, so a
bureau outside Asia/Shanghai gets its own 09:00.
"""

from __future__ import annotations

from typing import Any

from prefect.deployments.runner import EntrypointType, RunnerDeployment
from prefect.schedules import Cron

from minyi.deployments.entrypoints import resolve
from minyi.deployments.registry import SPECS, DeploymentSpec


def runner_deployment(spec: DeploymentSpec, timezone: str) -> RunnerDeployment:
    """The served form of one deployment."""
    target = resolve(spec)
    return target.to_deployment(
        name=spec.name,
        schedules=[Cron(spec.cron, timezone=timezone)] if spec.cron else None,
        parameters=dict(spec.parameters),
        tags=["minyi", *spec.tags],
        # module path, not file path: the subprocess imports minyi.flows.x like everything else does
        entrypoint_type=EntrypointType.MODULE_PATH,
    )


def plan(timezone: str) -> list[RunnerDeployment]:
    """Every deployment to serve."""
    return [runner_deployment(spec, timezone) for spec in SPECS]


def describe(deployment: RunnerDeployment) -> str:
    schedules: list[Any] = list(deployment.schedules or [])
    when = ", ".join(f"cron '{s.schedule.cron}' {s.schedule.timezone}" for s in schedules) or "run from the UI"
    return f"{deployment.flow_name}/{deployment.name}: {when}"


def serve_all(timezone: str, limit: int | None = None) -> None:
    """Register every installed deployment and run their flow runs until interrupted."""
    from prefect import serve

    served = plan(timezone)
    serve(*served, limit=limit, print_starting_message=False)
