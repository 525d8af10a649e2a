"""What every flow and command needs first: the config, the settings and a ready store.

Loaded once per process per (config path, database URL) and validated before any
work starts, so a bad key or an unreachable database stops a run in its first
second with one line.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from sqlalchemy.engine import Engine

from minyi.tasks.adapters.notify.base import Notifier
from minyi.tasks.config import MinyiConfig, Settings, load_config
from minyi.tasks.errors import ConfigError
from minyi.tasks.rules.masking import install_log_masking
from minyi.tasks.store.engine import ensure_ready, get_engine

if TYPE_CHECKING:
    from minyi.tasks.adapters.sms import SmsGateway

_ready: set[str] = set()

# `[notify] delivery` → the notifier class ("module:Class" under minyi.tasks.adapters.notify, imported only when chosen).
# The ONE place a notifier is chosen; a new vendor is one file in tasks/adapters/notify/ and one line here.
NOTIFIERS: dict[str, str] = {
    "slack": "slack:SlackNotifier",
    "wecom": "wecom:WecomNotifier",
    "dingtalk": "dingtalk:DingtalkNotifier",
    "files": "files:FileNotifier",
}


def notifier_class(delivery: str) -> type:
    if delivery not in NOTIFIERS:
        raise ConfigError(f"notify.delivery: unknown {delivery!r}; known: {', '.join(NOTIFIERS)}")
    module, cls = NOTIFIERS[delivery].split(":")
    return getattr(importlib.import_module(f"minyi.tasks.adapters.notify.{module}"), cls)


def build_notifier(config: MinyiConfig, reports_dir: Path) -> Notifier:
    """The chosen notifier, or a ConfigError naming the token or webhook variable that is unset (SPEC §2)."""
    return notifier_class(config.notify.delivery).from_config(config, reports_dir)


def quiet_third_parties() -> None:
    """No analytics leave this machine (there is no network, and a police bureau would not want it)."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    install_log_masking()  # PIPL: no handler of this process ever sees an unmasked mobile number


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    config: MinyiConfig

    @property
    def tz(self) -> ZoneInfo:
        return self.config.tz

    @cached_property
    def engine(self) -> Engine:
        return get_engine(self.settings.resolved_database_url())

    def sms_gateway(self) -> SmsGateway:
        """The SMS gateway this deployment talks to (the one place it is chosen): SPEC §4's HTTP contract."""
        from minyi.tasks.adapters.sms import GatewayClient

        return GatewayClient(self.config.sms)

    @property
    def reports_dir(self) -> Path:
        """Absolute, so writers that change directory (GX Data Docs) and operators agree on one place."""
        return self.settings.reports_dir.resolve()

    @cached_property
    def notifier(self) -> Notifier:
        """The one notifier every post goes through (`[notify] delivery`)."""
        return build_notifier(self.config, self.reports_dir)


def load_runtime(check_store: bool = True) -> Runtime:
    """Config and store from the environment (MINYI_CONFIG, MINYI_DATABASE_URL, MINYI_REPORTS_DIR)."""
    install_log_masking()
    settings = Settings()
    rt = Runtime(settings, load_config(settings.config))
    url = settings.resolved_database_url()
    if check_store:
        rt.notifier  # noqa: B018 (a missing token or webhook variable stops the run before any work)
        if url not in _ready:
            ensure_ready(rt.engine)
            _ready.add(url)
    return rt
