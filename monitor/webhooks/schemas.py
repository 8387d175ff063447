"""What webhook administration takes (a registration) and answers (endpoints, deliveries)."""

from typing import Annotated, Literal

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, field_validator

from monitor.alerts.schemas import Unit
from monitor.alerts.service import AlertAudience, AlertKind
from monitor.webhooks import signing
from policies.decisions import Severity

# what an endpoint may be sent: alerts, and weekly patient reports coming due (issue 16)
EventType = Literal["alert", "report_due"]


def _alerts_only() -> list[EventType]:
    return ["alert"]


class WebhookFilters(BaseModel):
    """Which events go to the endpoint: the event types (default alerts only), and which
    alerts; an empty alert filter means all. `unit` applies to `report_due` too."""

    model_config = ConfigDict(extra="forbid")

    severity: list[Severity] = []
    audience: list[AlertAudience] = []
    unit: list[Unit] = []
    kind: list[AlertKind] = []
    type: Annotated[list[EventType], Field(min_length=1)] = Field(
        default_factory=_alerts_only,
        description="the event types sent: `alert`, `report_due` (default: alerts only)",
    )

    @field_validator("type")
    @classmethod
    def _once_each(cls, value: list[EventType]) -> list[EventType]:
        return list(dict.fromkeys(value))


class WebhookRegistration(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f]+$")]
    url: AnyHttpUrl
    secret: Annotated[str, Field(max_length=128)] | None = Field(
        default=None,
        description="a Standard Webhooks secret, `whsec_` + base64 of 24-64 random bytes; "
        "omitted: one is generated",
    )
    filters: WebhookFilters = WebhookFilters()

    @field_validator("secret")
    @classmethod
    def _whsec(cls, value: str | None) -> str | None:
        why = None if value is None else signing.secret_problem(value)
        if why is not None:
            raise ValueError(why)
        return value

    @field_validator("url")
    @classmethod
    def _plain_url(cls, value: AnyHttpUrl) -> AnyHttpUrl:
        if value.username or value.password:
            raise ValueError("credentials in the URL would be stored and logged: use the secret")
        if len(str(value)) > 2048:
            raise ValueError("longer than 2048 characters")
        return value


class EndpointFilters(BaseModel):
    severity: list[str]
    audience: list[str]
    unit: list[str]
    kind: list[str]
    type: list[str]


class SecretView(BaseModel):
    """An active signing secret, without its value (shown only when created)."""

    id: int
    created_at: str


class EndpointView(BaseModel):
    """An endpoint for `admin`; a secret is never shown again after it was created."""

    id: int
    name: str
    url: str
    filters: EndpointFilters
    created_at: str
    active: bool
    secrets: list[SecretView] = Field(description="the active secrets: each signs every request")


class RegisteredEndpoint(EndpointView):
    secret: str = Field(description="shown this once: the receiver checks signatures with it")


class NewSecret(BaseModel):
    """A secret added to an endpoint: it signs from now on, beside the ones already active."""

    id: int
    webhook_id: int
    created_at: str
    secret: str = Field(description="shown this once: give it to the receiver")


class EndpointList(BaseModel):
    webhooks: list[EndpointView]


class AttemptView(BaseModel):
    attempt: int
    at: str | None
    status_code: int | None
    outcome: str
    error: str | None
    duration_ms: float


class DeliveryView(BaseModel):
    id: int
    type: str  # alert | report_due
    alert_id: int | None
    report_window_id: int | None
    endpoint_id: int
    status: str
    attempts: int
    next_attempt_at: str | None
    last_error: str | None
    created_at: str | None
    delivered_at: str | None
    failed_at: str | None
    history: list[AttemptView]


class DeliveryList(BaseModel):
    deliveries: list[DeliveryView]


class DeliveryRequeued(BaseModel):
    delivery_id: int
    status: Literal["pending"]
