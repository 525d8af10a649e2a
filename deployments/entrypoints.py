"""Module-path entrypoints for every deployment: `minyi.deployments.entrypoints:<name>`.

Each attribute is the flow whose Prefect name the registry gives, found by
importing the modules of `minyi.flows`. Why by name rather than a fixed file
path: the entrypoints stay valid when a stage moves between modules. Every
deployment's flow must exist: a missing one is an error naming it (a test checks
that each spec resolves).
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
from functools import cache
from typing import Any

from prefect import Flow

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


def resolve(spec: DeploymentSpec) -> Flow[Any, Any]:
    """The flow a deployment runs, as its operator form (deployments/forms.py); FlowNotInstalled (one line)
    when no module of minyi.flows defines it."""
    return _resolve(spec.name, spec.flow_names, spec.attr, spec.title)


@cache
def _resolve(deployment: str, flow_names: tuple[str, ...], attr: str, title: str) -> Flow[Any, Any]:
    """One form flow per deployment and process (Prefect registers a flow by its function)."""
    from minyi.deployments.forms import form_flow

    flows = discovered()
    for name in flow_names:
        if name in flows:
            return form_flow(flows[name], attr, title)
    raise FlowNotInstalled(f"deployment {deployment!r}: no flow named {' or '.join(map(repr, flow_names))}")


def stage_of(candidate: Flow[Any, Any]) -> Flow[Any, Any]:
    """The stage's own flow behind a form flow."""
    return getattr(candidate, "_minyi_form_of", candidate)


def __getattr__(attr: str) -> Flow[Any, Any]:
    """`entrypoints.daily_loop` etc.: resolved on first access (PEP 562), so importing this module stays cheap."""
    for s in SPECS:
        if s.attr == attr:
            return resolve(s)
    raise AttributeError(attr)
