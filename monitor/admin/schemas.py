"""What the operators' endpoints take and answer: dead letters, quarantined events, tokens."""

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from monitor.patients.schemas import QuarantinedEvent
from policies.events import FREE_TEXT, NO_CONTROL


class DeadLetterView(BaseModel):
    """Work that failed for good: which task, patient and event, why, after how many tries."""

    id: int
    task: str
    patient_id: str | None
    reason: str
    error: str
    attempts: int
    created_at: str
    retried_at: str | None
    event_id: str | None


class DeadLetterList(BaseModel):
    dead_letters: list[DeadLetterView]


class DeadLetterRequeued(BaseModel):
    dead_letter_id: int
    status: Literal["requeued"]


class QuarantineRequest(BaseModel):
    """Which event to set aside, and why (shown on the patient page)."""

    model_config = ConfigDict(extra="forbid")

    event_id: Annotated[str, Field(min_length=1, max_length=128, pattern=NO_CONTROL)]
    reason: Annotated[str, Field(min_length=1, max_length=512, pattern=FREE_TEXT)]


class QuarantineView(BaseModel):
    event_id: str
    patient_id: str
    quarantined: bool = Field(description="the event's state now")
    changed: bool = Field(description="false: it already was in that state")
    quarantined_at: str | None
    quarantined_by: str | None
    reason: str | None


class QuarantinedList(BaseModel):
    quarantined_events: list[QuarantinedEvent]


class TokenView(BaseModel):
    """A token as the admin sees it: never the token or its hash."""

    id: int
    name: str
    role: str
    units: list[str] | None  # the units it is bound to; null: every unit
    state: Literal["active", "revoked", "expired"]
    created_at: str
    expires_at: str | None
    revoked_at: str | None


class TokenList(BaseModel):
    tokens: list[TokenView]


class RevokedToken(TokenView):
    already_revoked: bool
