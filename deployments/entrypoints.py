"""Module-path entrypoints for every deployment: `minyi.deployments.entrypoints:<name>`.

Each attribute is the flow whose Prefect name the registry gives, found by
importing the modules of `minyi.flows`. Why by name rather than a fixed file
path: the entrypoints stay valid when a stage moves between modules, and a
deployment whose flow has not landed yet still deploys, as a clearly marked
placeholder that fails with one line instead of breaking `prefect deploy --all`.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
from functools import cache
from typing import Any

from prefect import Flow, flow

from minyi.deployments.registry import SPECS, DeploymentSpec
from minyi.tasks.errors import MinyiError

log = logging.getLogger(__name__)


class FlowNotInstalled(MinyiError):
    """The deployment's flow is not in this installation of minyi."""


@cache
def discovered() -> dict[str, Flow[Any, Any]]:
    """Every Prefect flow defined in a module of minyi.flows, by flow name."""
    import minyi.flows as package

    found: dict[str, Flow[Any, Any]] = {}
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        try:
            module = importlib.import_module(f"{package.__name__}.{info.name}")
        except Exception as exc:  # one broken module must not take the daily loop's deployment down with it
            log.warning("minyi.flows.%s cannot be imported, its flows are not deployed: %s", info.name, exc)
            continue
        for value in vars(module).values():
            if isinstance(value, Flow) and value.__module__ == module.__name__:
                found.setdefault(value.name, value)
    return found


def is_placeholder(candidate: Flow[Any, Any]) -> bool:
    return getattr(candidate, "_minyi_placeholder", False)


def _placeholder(spec: DeploymentSpec) -> Flow[Any, Any]:
    name = spec.flow_names[0]

    def not_installed() -> None:
        raise FlowNotInstalled(
            f"flow {name!r} is not in this installation of minyi; upgrade minyi on the workers and re-run prefect deploy"
        )

    not_installed.__doc__ = (
        f"PENDING: placeholder for the {name!r} flow, which this version of minyi does not have yet."
    )
    placeholder = flow(name=name)(not_installed)
    placeholder._minyi_placeholder = True  # type: ignore[attr-defined]
    return placeholder


def resolve(spec: DeploymentSpec) -> Flow[Any, Any]:
    """The flow a deployment runs (as its operator form, deployments/forms.py), or its placeholder."""
    return _resolve(spec.name)


@cache
def _resolve(name: str) -> Flow[Any, Any]:
    from minyi.deployments.forms import form_flow
    from minyi.deployments.registry import spec as spec_named

    spec = spec_named(name)
    flows = discovered()
    for name in spec.flow_names:
        if name in flows:
            return form_flow(flows[name], spec.attr, spec.title)
    return _placeholder(spec)


def stage_of(candidate: Flow[Any, Any]) -> Flow[Any, Any]:
    """The stage's own flow behind a form flow (the flow itself for a placeholder)."""
    return getattr(candidate, "_minyi_form_of", candidate)


def pending() -> list[str]:
    """Deployments whose flow is not in this tree (a placeholder stands in)."""
    return [s.name for s in SPECS if is_placeholder(resolve(s))]


def __getattr__(attr: str) -> Flow[Any, Any]:
    """`entrypoints.daily_loop` etc.: resolved on first access (PEP 562), so importing this module stays cheap."""
    for s in SPECS:
        if s.attr == attr:
            return resolve(s)
    raise AttributeError(attr)
