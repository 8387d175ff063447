"""One typed settings object, read once from `MONITOR_*` environment variables.

Nothing reads configuration at import time but `workers.app`, whose module-level Celery app (the
one `celery -A workers.app` finds) is configured from `get_settings()` when it is imported.
`get_settings()` builds the settings on first use; tests build their own `Settings(...)` and pass
it down (or call `get_settings.cache_clear()`).
"""

from __future__ import annotations

import datetime as dt
import functools
import ipaddress
import pathlib
import re
from typing import Annotated, Literal, get_args

import jwt
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from monitor.auth.roles import STAFF_ROLES
from monitor.operations.clock import wall_now
from policies.decisions import Audience
from policies.events import Therapy
from policies.packs import PackName

NeuropathyDomain = Literal["sensory", "motor", "pain", "autonomic"]
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
MEDDRA = "http://terminology.hl7.org/CodeSystem/MDRAE"
ATC = "http://www.whocc.no/atc"
# The service's own FHIR namespace: its code systems, extensions and identifier systems.
FHIR_BASE = "https://bipn-monitor.example/fhir"
# a browser's Origin header: scheme, host (lower case, as browsers serialise it), optional port
_ORIGIN = re.compile(r"https?://([a-z0-9.-]+|\[[0-9a-f:]+\])(:[0-9]{1,5})?")


def _coding(value: str) -> str:
    """`system|code`, both present: a code alone is ambiguous across code systems."""
    system, sep, code = value.partition("|")
    if not sep or not system.strip() or not code.strip() or "|" in code:
        raise ValueError(f"{value!r} is not system|code (e.g. {RXNORM}|358258)")
    return f"{system.strip()}|{code.strip()}"


def _default_terms() -> dict[NeuropathyDomain, list[str]]:
    """MedDRA codes of the CTCAE v5 terms (CTCAE lists each term's MedDRA code)."""
    return {
        "sensory": [f"{MEDDRA}|10034620"],
        "motor": [f"{MEDDRA}|10034580"],
        "pain": [f"{MEDDRA}|10029223"],
        "autonomic": [],
    }


def _default_immunotherapies() -> dict[Therapy, list[str]]:
    """ATC (and RxNorm) codes; plasma exchange is a procedure with no built-in code."""
    return {
        "ivig": [f"{ATC}|J06BA02"],
        "corticosteroids": [
            f"{ATC}|H02AB01",
            f"{ATC}|H02AB02",
            f"{ATC}|H02AB04",
            f"{ATC}|H02AB06",
            f"{ATC}|H02AB07",
            f"{RXNORM}|3264",
        ],
        "plasma_exchange": [],
        "rituximab": [f"{ATC}|L01FA01", f"{ATC}|L01XC02"],
    }


def _network(value: object) -> object:
    """A CIDR text as a network (host bits allowed: `10.20.3.4/16` is 10.20.0.0/16)."""
    if isinstance(value, str):
        try:
            return ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise ValueError(f"{value!r} is not a network (e.g. 10.20.0.0/16)") from None
    return value


AllowedNetwork = Annotated[ipaddress.IPv4Network | ipaddress.IPv6Network, BeforeValidator(_network)]


class CdsClient(BaseModel):
    """A CDS Hooks client allowed to call: its issuer, and where its public key comes from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    iss: Annotated[str, Field(min_length=1)]
    jwks_url: str | None = None
    jwks: dict[str, object] | None = None
    public_key: str | None = Field(default=None, description="PEM text")

    @model_validator(mode="after")
    def _one_key_source(self) -> CdsClient:
        given = [x for x in (self.jwks_url, self.jwks, self.public_key) if x is not None]
        if len(given) != 1:
            raise ValueError(f"client {self.iss!r}: give exactly one of jwks_url, jwks, public_key")
        # a bad key is a configuration error at start-up, not a 401 for every call later
        if self.public_key is not None:
            try:
                serialization.load_pem_public_key(self.public_key.encode())
            except (ValueError, TypeError, UnsupportedAlgorithm):
                raise ValueError(
                    f"client {self.iss!r}: public_key is not a PEM public key"
                ) from None
        if self.jwks is not None:
            try:
                jwt.PyJWKSet.from_dict(self.jwks)
            except jwt.PyJWTError as exc:
                raise ValueError(
                    f"client {self.iss!r}: jwks is not a usable JWK Set ({exc})"
                ) from None
        if self.jwks_url is not None and not re.match(r"^https?://\S+$", self.jwks_url):
            raise ValueError(
                f"client {self.iss!r}: jwks_url {self.jwks_url!r} is not an http(s) URL"
            )
        return self


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
        default="",
        description="SQLAlchemy URL; production: postgresql+psycopg://user@host/db. Unset: "
        "SQLite in data_dir (`sqlite:///{data_dir}/monitor.db`)",
    )
    broker_url: str | None = Field(
        default=None,
        description="Celery broker (redis://host:6379/0). Unset: an in-process worker "
        "(the embedded default; durability comes from the database outbox)",
    )
    policy: PackName = Field(
        default="default@1",
        description="the built-in pack this service decides with: `default@1` unless an "
        "operator changes it (a software upgrade never changes a running service's policy: "
        "compare first with `python -m monitor policy diff`); `default`/`label` mean their "
        "latest version (2)",
    )
    policy_file: pathlib.Path | None = Field(
        default=None, description="a site pack (TOML); its `base` then decides the rules"
    )
    data_dir: pathlib.Path = Field(
        default=pathlib.Path("var"),
        description="where the embedded mode keeps its files: the SQLite database (unless "
        "database_url says otherwise), the audit key and the audit checkpoints",
    )
    audit_key: SecretStr | None = Field(
        default=None,
        description="the key of the audit log's hash chain (HMAC), at least 32 characters; "
        "required in production. Unset in the embedded mode: generated once into "
        "{data_dir}/audit.key",
    )
    patient_id_key: SecretStr | None = Field(
        default=None,
        description="the key (HMAC-SHA256, at least 32 characters) that turns a FHIR subject "
        "given by identifier (system|value, e.g. an MRN) into a pseudonymous patient id; the "
        "identifier itself is never stored. Unset: such subjects are refused. Keep it secret "
        "and never change it: another key gives the same patient another id",
    )
    audit_checkpoint_path: pathlib.Path | None = Field(
        default=None,
        description="where signed checkpoints of the audit chain are appended (JSON lines); "
        "keep it where the database's administrators cannot rewrite it. Default "
        "{data_dir}/audit-checkpoints.jsonl",
    )
    audit_checkpoint_interval_s: Annotated[float, Field(gt=0)] = Field(
        default=60.0, description="how often the scheduler writes an audit checkpoint"
    )
    token_cache_s: Annotated[float, Field(ge=0, le=60)] = Field(
        default=2.0,
        description="how long the API keeps a verified bearer token in memory (0: not at "
        "all); a revocation in another process is seen within this time",
    )
    max_batch_events: Annotated[int, Field(ge=1, le=10_000)] = 1_000
    max_body_bytes: Annotated[int, Field(ge=1_024)] = 5_000_000
    task_max_retries: Annotated[int, Field(ge=0, le=50)] = 5
    task_retry_backoff_s: Annotated[float, Field(gt=0, le=600)] = 1.0
    task_retry_backoff_max_s: Annotated[float, Field(gt=0, le=3_600)] = 60.0
    task_events: bool = Field(
        default=False,
        description="Celery task events, for monitoring (Flower, `celery events`): workers "
        "send task-received/-started/-succeeded/-failed/-retried (worker_send_task_events) "
        "and every process that publishes tasks sends task-sent (task_send_sent_event). Off "
        "by default (extra broker traffic, fanned out to whoever listens; workers' heartbeats "
        "are sent either way); Flower may still switch the workers' events on by a broadcast "
        "(its enable_events). process_patient's arguments appear in events as in the logs: "
        "masked ([patient])",
    )
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
    alert_info_decisions: bool = Field(
        default=False,
        description="raise feed alerts for the informational decisions too (a reassessment "
        "scheduled, the coasting watch started or closed); off: they stay on the patient page "
        "and the due-reassessments list, and reminders and overdue alerts still come",
    )
    reminder_before_s: Annotated[float, Field(gt=0)] = Field(
        default=86400.0,
        description="a reminder alert goes to the nurse feed this long before a "
        "reassessment is due (default one day)",
    )
    stream_poll_s: Annotated[float, Field(gt=0, le=60)] = Field(
        default=1.0, description="how often the SSE feed looks for new alerts"
    )
    stream_push: bool = Field(
        default=True,
        description="on PostgreSQL, the SSE feed is woken by LISTEN/NOTIFY when alerts are "
        "stored (the poll stays as the fallback); off: polling only",
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
    webhook_timeout_s: Annotated[float, Field(gt=0, le=60)] = Field(
        default=10.0,
        description="the whole of one delivery attempt: connect, send and read the answer",
    )
    webhook_allow_networks: list[AllowedNetwork] = Field(
        default_factory=list,
        description="networks (CIDR, e.g. 10.20.0.0/16) webhooks may reach although they are "
        "private, loopback or link-local: an on-premise receiver. Everything else of those "
        "ranges, and metadata hostnames, is refused",
    )
    webhook_max_response_bytes: Annotated[int, Field(ge=0, le=1_048_576)] = Field(
        default=65_536, description="how much of a receiver's answer is read (the rest dropped)"
    )
    webhook_max_attempts: Annotated[int, Field(ge=1, le=30)] = 8
    webhook_backoff_s: Annotated[float, Field(gt=0)] = Field(
        default=2.0, description="first retry delay; doubles each attempt (with jitter)"
    )
    webhook_backoff_max_s: Annotated[float, Field(gt=0)] = 600.0
    public_base_url: str | None = Field(
        default=None,
        description="the service's address as EHRs and browsers reach it (https://host/path, "
        "no trailing slash): links in CDS cards and FHIR resources, and the audience CDS "
        "Hooks JWTs must name. Unset: taken from each request",
    )
    intake_link_days: Annotated[int, Field(ge=1, le=90)] = Field(
        default=14,
        description="how long a patient's invite link to the report page (/report) stays valid",
    )
    care_team_phone: str | None = Field(
        default=None,
        max_length=40,
        pattern=r"^[0-9+() .-]{3,40}$",
        description="the number the report page tells patients to call if they feel unwell "
        "(digits, spaces, + ( ) . -). Unset: the page says to call their care team",
    )
    fhir_bortezomib_codes: list[str] = Field(
        default_factory=lambda: [f"{RXNORM}|358258"],
        description="codings (system|code) that identify bortezomib in FHIR medications",
    )
    fhir_term_codes: dict[NeuropathyDomain, list[str]] = Field(
        default_factory=lambda: _default_terms(),
        description="codings (system|code) of the CTCAE terms an Observation grades, per "
        "domain (JSON object). MedDRA is built in; add the NCIt codes of your release, and "
        "a site code for autonomic severity",
    )
    fhir_grade_systems: list[str] = Field(
        default_factory=lambda: [f"{FHIR_BASE}/CodeSystem/ctcae-grade"],
        description="code systems whose codes are CTCAE grades written as digits (0-4), "
        "accepted in Observation.valueCodeableConcept",
    )
    fhir_immunotherapy_codes: dict[Therapy, list[str]] = Field(
        default_factory=lambda: _default_immunotherapies(),
        description="codings (system|code) of immunotherapies, in a Procedure's code or a "
        "MedicationAdministration's medication (JSON object); add your plasma-exchange "
        "procedure code",
    )
    cds_clients: list[CdsClient] = Field(
        default_factory=list,
        description="CDS Hooks clients (JSON list of {iss, jwks_url | jwks | public_key}) "
        "whose signed JWTs are accepted; a bearer token of this service is accepted too",
    )
    cds_jwt_max_lifetime_s: Annotated[float, Field(gt=0, le=3_600)] = Field(
        default=300.0,
        description="the longest a CDS Hooks JWT may be valid (exp - iat, and exp from now), "
        "plus 30 s of clock skew: a client signs a new short-lived token for every call",
    )
    cds_allowed_origins: list[str] = Field(
        default_factory=list,
        description="browser origins (scheme://host[:port]) that may call the CDS Hooks "
        "routes (/cds-services and below) cross-origin, e.g. https://sandbox.cds-hooks.org; "
        "empty: no CORS headers. The rest of the API never sends CORS headers",
    )
    # --- staff sign-in: the hospital's OpenID Connect provider (monitor/auth/oidc.py) ---
    oidc_issuer: str | None = Field(
        default=None,
        description="the OpenID Connect provider staff sign in with: its issuer URL, exactly "
        "as its tokens' `iss` (keys from {issuer}/.well-known/openid-configuration -> "
        "jwks_uri). Unset (default): no sign-in, API tokens only",
    )
    oidc_audience: str | None = Field(
        default=None,
        description="the `aud` the provider's access tokens for this service carry (its "
        "resource indicator or API identifier); required with oidc_issuer",
    )
    oidc_role_claim: str = Field(
        default="roles",
        description="the access-token claim holding the user's roles or groups (a string or "
        "a list; a dotted path reads a nested claim, e.g. realm_access.roles)",
    )
    oidc_role_map: dict[str, str] = Field(
        default_factory=dict,
        description="claim values -> the service's roles (JSON object, e.g. "
        '{"onc-nurses": "nurse"}); empty: the values are the role names themselves. Staff '
        "roles only: nurse, physician, pharmacy, infusion, auditor, admin",
    )
    oidc_units_claim: str = Field(
        default="units",
        description="the claim holding the units a user sees (a string or a list); every role "
        "but admin needs it. Empty: nobody signed in is bound to units (every unit)",
    )
    oidc_leeway_s: Annotated[int, Field(ge=0, le=120)] = Field(
        default=30, description="clock skew allowed on exp, nbf and iat of the provider's tokens"
    )
    oidc_client_id: str | None = Field(
        default=None,
        description="the web pages' sign-in: the client registered with the provider "
        "(authorization code with PKCE, redirect URI {public_base_url}/auth/callback). Unset: "
        "the pages ask for a pasted API token",
    )
    oidc_client_secret: SecretStr | None = Field(
        default=None,
        description="only for a confidential client; a public client (PKCE alone) has none",
    )
    oidc_scope: str = Field(
        default="openid",
        description="the scopes the pages ask for, space-separated (openid included; add the "
        "one your provider needs to issue the access token for oidc_audience)",
    )
    session_secret: SecretStr | None = Field(
        default=None,
        description="signs the sign-in's short-lived cookie (state, nonce, PKCE verifier), at "
        "least 32 characters; required with oidc_client_id",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    otel_exporter: Literal["none", "otlp", "console"] = Field(
        default="none",
        description="OpenTelemetry traces (monitor.operations.tracing): `none` (off), `console` "
        "(spans on stdout) or `otlp` (to OTEL_EXPORTER_OTLP_ENDPOINT, the standard variable; "
        "needs the `otlp` extra). Each process traces as bipn-monitor-api, -worker, -scheduler "
        "or -serve",
    )
    fixed_now: dt.datetime | None = Field(
        default=None,
        description="freeze the service clock (tests, demos); RFC 3339 with offset",
    )

    @model_validator(mode="after")
    def _database_in_data_dir(self) -> Settings:
        """The default database lives in data_dir (frozen model: set once, here)."""
        if not self.database_url:
            object.__setattr__(self, "database_url", f"sqlite:///{self.data_dir / 'monitor.db'}")
        return self

    @field_validator("audit_key", "patient_id_key")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 32:
            raise ValueError("must be at least 32 characters (a random secret)")
        return value

    @field_validator("fixed_now")
    @classmethod
    def _aware(cls, value: dt.datetime | None) -> dt.datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("needs a UTC offset, e.g. 2026-05-01T09:00:00Z")
        return value

    @field_validator("fhir_bortezomib_codes", "fhir_grade_systems")
    @classmethod
    def _not_blank(cls, value: list[str]) -> list[str]:
        blank = [v for v in value if not v.strip()]
        if blank:
            raise ValueError("entries must not be blank")
        return value

    @field_validator("fhir_bortezomib_codes")
    @classmethod
    def _codings(cls, value: list[str]) -> list[str]:
        return [_coding(v) for v in value]

    @field_validator("fhir_term_codes", "fhir_immunotherapy_codes", mode="before")
    @classmethod
    def _over_defaults(cls, value: object, info: ValidationInfo) -> object:
        """A site names the keys it changes; the others keep their built-in codes."""
        defaults = (
            _default_terms() if info.field_name == "fhir_term_codes" else _default_immunotherapies()
        )
        return {**defaults, **value} if isinstance(value, dict) else value

    @field_validator("fhir_term_codes", "fhir_immunotherapy_codes")
    @classmethod
    def _coding_lists(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        mapped = {key: [_coding(v) for v in codes] for key, codes in value.items()}
        owners: dict[str, str] = {}
        for key, codes in mapped.items():
            for code in codes:
                if owners.setdefault(code, key) != key:
                    raise ValueError(f"{code} is listed under both {owners[code]} and {key}")
        return mapped

    @field_validator("public_base_url")
    @classmethod
    def _base_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not re.match(r"^https?://[^/\s]+(/\S*)?$", value) or value.endswith("/"):
            raise ValueError(f"{value!r} is not an http(s) URL without a trailing slash")
        return value

    @field_validator("cds_allowed_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        """Exact origins as browsers send them: no wildcard, path or trailing slash."""
        for origin in value:
            if not _ORIGIN.fullmatch(origin):
                raise ValueError(
                    f"{origin!r} is not an origin: scheme://host[:port] in lower case, without "
                    "path, trailing slash or wildcard (e.g. https://sandbox.cds-hooks.org)"
                )
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

    @field_validator("session_secret")
    @classmethod
    def _secret_long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 32:
            raise ValueError("must be at least 32 characters (a random secret)")
        return value

    @field_validator("oidc_issuer")
    @classmethod
    def _issuer_url(cls, value: str | None) -> str | None:
        """https, or http on this machine only (a provider run for a test or a demo)."""
        if value is not None and not (
            re.match(r"^https://[^/\s]+(/\S*)?$", value)
            or re.match(r"^http://(127\.0\.0\.1|localhost|\[::1\])(:\d+)?(/\S*)?$", value)
        ):
            raise ValueError(f"{value!r} is not an https URL (http only on localhost)")
        return value

    @field_validator("oidc_role_map")
    @classmethod
    def _staff_roles(cls, value: dict[str, str]) -> dict[str, str]:
        wrong = sorted({role for role in value.values() if role not in STAFF_ROLES})
        if wrong:
            raise ValueError(f"role(s) {wrong} cannot be signed in to; staff roles: {STAFF_ROLES}")
        return value

    @model_validator(mode="after")
    def _oidc_complete(self) -> Settings:
        """Sign-in settings come together, or not at all (a half-configured provider would
        accept nothing, or sign in without checking who)."""
        if (self.oidc_issuer is None) != (self.oidc_audience is None):
            raise ValueError("oidc_issuer and oidc_audience go together: set both, or neither")
        if self.oidc_client_id is not None:
            if self.oidc_issuer is None:
                raise ValueError("oidc_client_id needs oidc_issuer and oidc_audience")
            if self.session_secret is None:
                raise ValueError(
                    "oidc_client_id needs session_secret (a random secret of at least 32 "
                    "characters): it signs the sign-in's cookie"
                )
            if "openid" not in self.oidc_scope.split():
                raise ValueError(f"oidc_scope {self.oidc_scope!r} must include openid")
        return self

    @property
    def oidc_enabled(self) -> bool:
        """The API accepts the provider's access tokens."""
        return self.oidc_issuer is not None

    @property
    def sign_in_enabled(self) -> bool:
        """The web pages sign staff in at the provider (else they ask for an API token)."""
        return self.oidc_client_id is not None

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
        return wall_now()


@functools.cache
def get_settings() -> Settings:
    """The process's settings, read from the environment on first use."""
    return Settings()
