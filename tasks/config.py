"""Configuration: one strict TOML file plus a few environment variables (SPEC §2).

Why strict: an operator who mistypes `respone_days` must learn it before the run
does any work, not after a month of wrong deadlines. Every model forbids unknown
keys, and every error is turned into one line that names the key.

Secrets never live in the file; it names the environment variable (`token_env`)
that holds each token, read only when a client is built.
"""

from __future__ import annotations

import os
import re
import tomllib
from datetime import time
from functools import cached_property
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from minyi.tasks.errors import ConfigError

CHANNELS: tuple[str, ...] = ("110", "122", "12345", "968110", "window", "online")
RECORD_FIELDS: tuple[str, ...] = (
    "record_id",
    "channel",
    "matter",
    "handled_at",
    "unit_code",
    "officer_id",
    "citizen_name",
    "phone",
    "summary",
    "confidential",
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ClockConfig(_Strict):
    mode: Literal["working", "natural"] = "working"
    response_days: int = Field(3, ge=1, le=60)
    completion_days: int = Field(5, ge=1, le=120)
    calendar_file: str = ""


class FollowupConfig(_Strict):
    send_from: time = time(9, 0)
    send_until: time = time(21, 0)
    max_per_phone_per_day: int = Field(1, ge=1)
    max_age_days: int = Field(3, ge=0)
    manual_after_hours: int = Field(24, ge=1)

    @model_validator(mode="after")
    def _window_not_empty(self) -> FollowupConfig:
        if self.send_from >= self.send_until:
            raise ValueError("send_from must be earlier than send_until")
        return self


class TargetsConfig(_Strict):
    timely_response: float = Field(1.0, ge=0, le=1)
    satisfaction: float = Field(0.8, ge=0, le=1)
    resolution: float = Field(0.7, ge=0, le=1)


class WeightsConfig(_Strict):
    """The points score's weights (SPEC §11): non-negative, with a positive sum."""

    timely_response: float = Field(30, ge=0)
    satisfaction: float = Field(40, ge=0)
    resolution: float = Field(20, ge=0)
    timely_completion: float = Field(10, ge=0)

    @model_validator(mode="after")
    def _positive_sum(self) -> WeightsConfig:
        if self.timely_response + self.satisfaction + self.resolution + self.timely_completion <= 0:
            raise ValueError("the weights must have a positive sum")
        return self


class AssessmentConfig(_Strict):
    """Fair ranking (SPEC §7) and the points score (SPEC §11)."""

    min_responses: int = Field(30, ge=0)
    rank_by: Literal["targets", "score"] = "targets"
    weights: WeightsConfig = WeightsConfig()


class SmsConfig(_Strict):
    url: str = "http://127.0.0.1:8801"
    token_env: str = "MINYI_SMS_TOKEN"
    batch_size: int = Field(500, ge=1, le=10_000)
    timeout_seconds: float = Field(30.0, gt=0)
    # Not in SPEC §2's example; documented in docs/followups.md.
    signature: str = Field("青岛公安", min_length=1, max_length=20)
    max_attempts: int = Field(6, ge=1, le=20)
    backoff_seconds: float = Field(0.5, ge=0)
    max_backoff_seconds: float = Field(60.0, ge=0)
    # A run's claim on the batch it sends (SPEC §4), renewed while it lives; a dead run's is taken over after it.
    claim_seconds: float = Field(300.0, gt=0, le=3600)


class SlackConfig(_Strict):
    api_url: str = ""
    token_env: str = "MINYI_SLACK_TOKEN"
    center_channel: str = "C0CENTER"
    leadership_channel: str = "C0LEADERS"
    # Not in SPEC §2's example; documented in docs/reports.md.
    timeout_seconds: int = Field(15, ge=1)
    max_retries: int = Field(3, ge=0, le=10)
    backoff_seconds: float = Field(0.5, ge=0)


class NotifyConfig(_Strict):
    """Which notifier posts (SPEC §13); the names are the runtime's (`tasks.runtime.NOTIFIERS`), checked there."""

    delivery: str = "slack"
    # Not in SPEC §2's example; documented in docs/reports.md.
    max_wait_seconds: float = Field(120.0, ge=0, le=3600)  # sleeping for rate limits / back-offs, per pass
    backoff_seconds: float = Field(2.0, ge=0)  # after a rate-limited answer: base·2^(n−1) …
    max_backoff_seconds: float = Field(30.0, ge=0)  # … capped
    # A post claimed this long ago and still not marked sent belonged to a run that died (docs/security.md).
    claim_timeout_seconds: float = Field(300.0, ge=0)


class RobotConfig(_Strict):
    """A group robot (WeCom, DingTalk): each channel is the NAME of an env variable holding a webhook URL."""

    center_channel: str = ""
    leadership_channel: str = ""
    secret_env: str = ""  # DingTalk's signed webhooks: the variable holding the signing secret
    timeout_seconds: float = Field(15.0, gt=0)


class GuardConfig(_Strict):
    """The per-date run guard in the store (SPEC §6): a dead holder's lease expires within 5 minutes."""

    lease_seconds: float = Field(300.0, gt=0, le=300)


class IngestConfig(_Strict):
    """How sources are pulled; not in SPEC §2's example, documented in docs/configuration.md."""

    page_size: int = Field(5000, ge=1, le=5000)
    timeout_seconds: float = Field(30.0, gt=0)
    max_attempts: int = Field(6, ge=1, le=20)
    backoff_seconds: float = Field(0.5, ge=0)
    max_backoff_seconds: float = Field(60.0, ge=0)
    # Worker processes pulling sources (at most one per source); 1 = in the flow's process.
    # Unset = min(2, CPU count). docs/ingest.md.
    workers: int | None = Field(None, ge=1, le=64)


class SourceConfig(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    url: str
    token_env: str = ""
    fields: dict[str, str] = Field(default_factory=dict)

    @field_validator("url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        if not re.match(r"^https?://[^\s/]+", v):
            raise ValueError("must be an http(s) URL")
        return v.rstrip("/")

    @field_validator("fields")
    @classmethod
    def _known_fields(cls, v: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(v) - set(RECORD_FIELDS))
        if unknown:
            raise ValueError(f"unknown record field(s) {unknown}; known: {list(RECORD_FIELDS)}")
        return v


class UnitConfig(_Strict):
    code: str = Field(min_length=1)
    name: str = Field(min_length=1)
    parent: str = ""
    channel: str = Field(min_length=1)


class MinyiConfig(_Strict):
    """The whole TOML file."""

    timezone: str = "Asia/Shanghai"
    retention_days: int = Field(180, ge=1)
    clock: ClockConfig = ClockConfig()
    followup: FollowupConfig = FollowupConfig()
    targets: TargetsConfig = TargetsConfig()
    assessment: AssessmentConfig = AssessmentConfig()
    sms: SmsConfig = SmsConfig()
    notify: NotifyConfig = NotifyConfig()
    slack: SlackConfig = SlackConfig()
    wecom: RobotConfig = RobotConfig()
    dingtalk: RobotConfig = RobotConfig()
    ingest: IngestConfig = IngestConfig()
    guard: GuardConfig = GuardConfig()
    sources: list[SourceConfig] = Field(default_factory=list)
    units: list[UnitConfig] = Field(default_factory=list)

    model_config = ConfigDict(extra="forbid", frozen=True, ignored_types=(cached_property,))

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError, OSError) as exc:  # OSError: a name too long for a path
            raise ValueError(f"unknown timezone {v[:64]!r}") from exc
        return v

    @model_validator(mode="after")
    def _unique_names(self) -> MinyiConfig:
        for kind, names in (
            ("sources", [s.name for s in self.sources]),
            ("units", [u.code for u in self.units]),
        ):
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"{kind}: duplicate {dupes}")
        return self

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def channels(self) -> SlackConfig | RobotConfig:
        """The section whose channels the chosen notifier uses: `[{delivery}]`, or `[slack]`'s names for files."""
        section = getattr(self, self.notify.delivery, None)
        return section if isinstance(section, SlackConfig | RobotConfig) else self.slack

    @property
    def center_channel(self) -> str:
        return self.channels.center_channel

    @property
    def leadership_channel(self) -> str:
        return self.channels.leadership_channel

    def source(self, name: str) -> SourceConfig:
        for s in self.sources:
            if s.name == name:
                return s
        raise ConfigError(f"unknown source {name!r}")

    def unit_codes(self) -> set[str]:
        return {u.code for u in self.units}


class Settings(BaseSettings):
    """Environment: where the config, the store and the reports are."""

    model_config = SettingsConfigDict(env_prefix="MINYI_", extra="ignore")

    config: Path = Path("minyi.toml")
    database_url: str = ""
    reports_dir: Path = Path("reports")
    home: Path = Path(".minyi")

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.home / 'minyi.db').as_posix()}"


def _describe(err: ValidationError) -> str:
    first = err.errors()[0]
    loc = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in first["loc"]).replace(".[", "[")
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        msg = "unknown key"
    elif first["type"] == "missing":
        msg = "missing required key"
    return f"{loc}: {msg}" if loc else msg


def parse_config(text: str, origin: str = "<config>") -> MinyiConfig:
    """Parse TOML text into a validated config, or raise ConfigError naming the key."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config {origin}: invalid TOML: {exc}") from None
    try:
        return MinyiConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"config {origin}: {_describe(exc)}") from None


def load_config(path: str | Path | None = None) -> MinyiConfig:
    """Load the config named by `path`, else `MINYI_CONFIG`, else ./minyi.toml."""
    p = Path(path) if path else Settings().config
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"config {p}: cannot read ({exc.strerror or exc})") from None
    return parse_config(text, str(p))


SECRET_BLOCK_PREFIX = "prefect-secret:"


def secret_from_env(var: str) -> str | None:
    """A token named by `token_env`; None when the variable is unset or empty.

    `token_env = "prefect-secret:minyi-sms-token"` names a Prefect Secret block
    instead (read from the Prefect API the run talks to); a block that does not
    exist is a ConfigError, not a silently disabled client.
    """
    if not var:
        return None
    if var.startswith(SECRET_BLOCK_PREFIX):
        return _secret_block(var.removeprefix(SECRET_BLOCK_PREFIX))
    value = os.environ.get(var, "").strip()
    return value or None


def _secret_block(name: str) -> str | None:
    from prefect.blocks.system import Secret

    try:
        value = Secret.load(name, validate=False).get()
    except ValueError:
        raise ConfigError(f"token_env {SECRET_BLOCK_PREFIX}{name}: no Prefect Secret block named {name!r}") from None
    return str(value).strip() or None
