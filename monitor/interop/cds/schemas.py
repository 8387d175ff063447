"""CDS Hooks 2.0: the services this monitor offers, the requests they take and what they
answer (discovery, cards, feedback)."""

import datetime as dt
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from policies.events import PATIENT_ID_PATTERN, ClinicalTime

MAX_FEEDBACK = 100
REF = "#/components/schemas/{model}"
ModelT = TypeVar("ModelT", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class CdsService:
    id: str
    hook: str  # what discovery advertises
    accepts: tuple[str, ...]  # the hooks it answers
    title: str
    description: str


CHECK = "Checks a draft bortezomib order against the patient's neuropathy course"
SERVICES: dict[str, CdsService] = {
    s.id: s
    for s in (
        CdsService(
            "bortezomib-order-check",
            "order-sign",
            ("order-sign", "order-select"),
            "Bortezomib order check (neuropathy)",
            CHECK + " before it is signed: cancel it when bortezomib is held or "
            "discontinued, lower it to the recommended dose, schedule and route when it "
            "exceeds them, and say when a neuropathy reassessment is due.",
        ),
        CdsService(
            "bortezomib-order-select",
            "order-select",
            ("order-select",),
            "Bortezomib order check at selection (neuropathy)",
            CHECK + " as it is selected (the same check as bortezomib-order-check, for the "
            "selected orders only).",
        ),
    )
}


class CdsOrderContext(BaseModel):
    """`context` of order-sign and order-select (`selections` is order-select's)."""

    model_config = ConfigDict(extra="allow")

    user_id: str = Field(alias="userId", min_length=1, max_length=256)
    patient_id: str = Field(alias="patientId", pattern=PATIENT_ID_PATTERN)
    encounter_id: str | None = Field(default=None, alias="encounterId", max_length=256)
    draft_orders: dict[str, Any] = Field(alias="draftOrders")
    selections: list[Annotated[str, Field(min_length=1, max_length=256)]] | None = None


class CdsHookRequest(BaseModel):
    """A CDS Hooks call. `fhirAuthorization` is accepted and ignored (the service reads
    nothing from the client's FHIR server), and never echoed in an error."""

    model_config = ConfigDict(extra="allow")

    hook: str = Field(min_length=1, max_length=64)
    hook_instance: str = Field(alias="hookInstance", min_length=1, max_length=128)
    fhir_server: str | None = Field(default=None, alias="fhirServer")
    fhir_authorization: Any = Field(default=None, alias="fhirAuthorization")
    context: CdsOrderContext
    prefetch: dict[str, Any] | None = None


class CdsCoding(BaseModel):
    system: str | None = Field(default=None, max_length=256)
    code: str = Field(min_length=1, max_length=64)
    display: str | None = Field(default=None, max_length=256)


class CdsOverrideReason(BaseModel):
    reason: CdsCoding | None = None
    user_comment: str | None = Field(default=None, alias="userComment", max_length=2000)


class CdsAcceptedSuggestion(BaseModel):
    id: str = Field(min_length=1, max_length=64)


class CdsFeedback(BaseModel):
    card: str = Field(min_length=1, max_length=64)
    outcome: Literal["accepted", "overridden"]
    accepted_suggestions: list[CdsAcceptedSuggestion] | None = Field(
        default=None, alias="acceptedSuggestions"
    )
    override_reason: CdsOverrideReason | None = Field(default=None, alias="overrideReason")
    # the service's one bound on times (1900-2200 UTC), kept in UTC (the spec's form)
    outcome_timestamp: ClinicalTime = Field(alias="outcomeTimestamp")

    @field_validator("outcome_timestamp")
    @classmethod
    def _utc(cls, value: dt.datetime) -> dt.datetime:
        return value.astimezone(dt.UTC)


class CdsFeedbackRequest(BaseModel):
    feedback: list[CdsFeedback] = Field(min_length=1, max_length=MAX_FEEDBACK)


class DiscoveredService(BaseModel):
    hook: str
    title: str
    description: str
    id: str
    usageRequirements: str  # noqa: N815  # the spec's name


class Discovery(BaseModel):
    services: list[DiscoveredService]


class Cards(BaseModel):
    """One card per draft bortezomib order (CDS Hooks card objects)."""

    cards: list[dict[str, Any]]


class FeedbackRecorded(BaseModel):
    recorded: int
    duplicates: int


def components(*models: type[BaseModel]) -> dict[str, Any]:
    """The models and the models they use, as OpenAPI components (the routes read their
    bodies themselves, to answer in the CDS Hooks error shape)."""
    found: dict[str, Any] = {}
    for model in models:
        schema = model.model_json_schema(by_alias=True, ref_template=REF)
        found.update({model.__name__: schema, **schema.pop("$defs", {})})
    return found


def request_body(model: type[BaseModel]) -> dict[str, Any]:
    ref = {"$ref": REF.format(model=model.__name__)}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": ref}}}}


def validated(model: type[ModelT], payload: Any) -> tuple[ModelT | None, list[tuple[str, str]]]:
    """The payload as the model, or each problem as (`body.<field path>`, message)."""
    try:
        return model.model_validate(payload), []
    except ValidationError as exc:
        return None, [
            (".".join(["body", *(str(p) for p in err["loc"])]), str(err["msg"]))
            for err in exc.errors()
        ]
