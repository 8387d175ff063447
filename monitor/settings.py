"""One typed settings object, read once from `MONITOR_*` environment variables.

Nothing reads configuration at import time: `get_settings()` builds it on first use, tests build
their own `Settings(...)` and pass it down (or call `get_settings.cache_clear()`).
"""

from __future__ import annotations

import datetime as dt
import functools
import pathlib
from typing import Annotated, Literal, get_args

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from policies.decisions import Audience

# nurse, infusion unit and pharmacy escalate to the physician; physician and neurology are the
# top of the ladder, so their unanswered alert is paged to the physician again, as escalated.
ESCALATION_TARGETS: dict[str, str] = {
    "nurse": "physician",
    "infusion_unit": "physician",
    "pharmacy": "physician",
    "neurology": "physician",
    "physician": "physician",
}


class Settings(BaseSettings):
    """Every setting of the service; the embedded default needs none of them."""

    model_config = SettingsConfigDict(env_prefix="MONITOR_", extra="forbid", frozen=True)

    database_url: str = Field(
        default="sqlite:///./var/monitor.db",
        description="SQLAlchemy URL; production: postgresql+psycopg://user@host/db",
    )
    broker_url: str | None = Field(
        default=None,
        description="Celery broker (redis://host:6379/0). Unset: an in-process worker "
        "(the embedded default; durability comes from the database outbox)",
    )
    policy: Literal["default", "label"] = "default"
    policy_file: pathlib.Path | None = Field(
        default=None, description="a site pack (TOML); its `base` then decides the rules"
    )
    data_dir: pathlib.Path = Field(
        default=pathlib.Path("var"), description="where the embedded mode keeps its files"
    )
    max_batch_events: Annotated[int, Field(ge=1, le=10_000)] = 1_000
    max_body_bytes: Annotated[int, Field(ge=1_024)] = 5_000_000
    task_max_retries: Annotated[int, Field(ge=0, le=50)] = 5
    task_retry_backoff_s: Annotated[float, Field(gt=0, le=600)] = 1.0
    task_retry_backoff_max_s: Annotated[float, Field(gt=0, le=3_600)] = 60.0
    outbox_redrive_after_s: Annotated[float, Field(gt=0)] = 30.0
    scheduler_interval_s: Annotated[float, Field(gt=0)] = 5.0
    scheduler_lease_s: Annotated[float, Field(gt=0)] = Field(
        default=30.0,
        description="how long a scheduler replica's lease lasts without renewal; another "
        "replica takes over after it (keep it a few times scheduler_interval_s)",
    )
    escalate_after_s: Annotated[float, Field(gt=0)] = Field(
        default=1800.0,
        description="an urgent alert unacknowledged this long is escalated (default 30 min)",
    )
    escalation_targets: dict[str, str] = Field(
        default_factory=lambda: dict(ESCALATION_TARGETS),
        description="who hears an escalation, per audience of the unacknowledged alert "
        "(JSON object); the top of the ladder is paged again",
    )
    reminder_before_s: Annotated[float, Field(gt=0)] = Field(
        default=86400.0,
        description="a reminder alert goes to the nurse feed this long before a "
        "reassessment is due (default one day)",
    )
    stream_poll_s: Annotated[float, Field(gt=0, le=60)] = Field(
        default=1.0, description="how often the SSE feed looks for new alerts"
    )
    stream_max_s: Annotated[float, Field(gt=0)] = Field(
        default=300.0,
        description="an SSE stream ends after this long; clients reconnect with "
        "Last-Event-ID (their token is checked again, load spreads over API processes)",
    )
    report_ack_target_minutes: Annotated[float, Field(gt=0)] = Field(
        default=60.0,
        description="adherence report: the share of urgent alerts acknowledged within this",
    )
    webhook_timeout_s: Annotated[float, Field(gt=0, le=60)] = 10.0
    webhook_max_attempts: Annotated[int, Field(ge=1, le=30)] = 8
    webhook_backoff_s: Annotated[float, Field(gt=0)] = Field(
        default=2.0, description="first retry delay; doubles each attempt (with jitter)"
    )
    webhook_backoff_max_s: Annotated[float, Field(gt=0)] = 600.0
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    fixed_now: dt.datetime | None = Field(
        default=None,
        description="freeze the service clock (tests, demos); RFC 3339 with offset",
    )

    @field_validator("fixed_now")
    @classmethod
    def _aware(cls, value: dt.datetime | None) -> dt.datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("needs a UTC offset, e.g. 2026-05-01T09:00:00Z")
        return value

    @field_validator("escalation_targets")
    @classmethod
    def _known_audiences(cls, value: dict[str, str]) -> dict[str, str]:
        known = set(get_args(Audience))
        unknown = sorted((set(value) | set(value.values())) - known)
        if unknown:
            raise ValueError(f"unknown audience(s) {unknown}; known: {sorted(known)}")
        return value

    @field_validator("policy_file")
    @classmethod
    def _exists(cls, value: pathlib.Path | None) -> pathlib.Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"{value} is not a file")
        return value

    @property
    def embedded(self) -> bool:
        """No broker configured: worker and scheduler run inside the serving process."""
        return self.broker_url is None

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def now(self) -> dt.datetime:
        """The service clock, aware UTC."""
        if self.fixed_now is not None:
            return self.fixed_now.astimezone(dt.UTC)
        return dt.datetime.now(dt.UTC)


@functools.cache
def get_settings() -> Settings:
    """The process's settings, read from the environment on first use."""
    return Settings()
