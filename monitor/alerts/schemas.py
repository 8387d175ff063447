"""What the nurse feed takes (filters, an acknowledgement) and answers (alerts)."""

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from monitor.alerts.service import AlertAudience, AlertFilter, AlertKind
from policies.decisions import Severity
from policies.events import NO_CONTROL, ClinicalTime

Unit = Annotated[str, Field(min_length=1, max_length=64, pattern=NO_CONTROL)]


class AckRequest(BaseModel):
    """Who acknowledges (default: the token's name), when (default: now), an optional note."""

    model_config = ConfigDict(extra="forbid")

    by: Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f]+$")] | None = (
        None
    )
    at: ClinicalTime | None = Field(
        default=None,
        description="when it was acknowledged, RFC 3339 with offset; not before the alert was "
        "raised, not in the future",
    )
    note: Annotated[str, Field(max_length=2000, pattern=r"^[^\x00]*$")] | None = None


class FeedQuery(BaseModel):
    """The feed's filters (repeat a parameter for "any of")."""

    severity: list[Severity] = []
    audience: list[AlertAudience] = []
    unit: list[Unit] = []
    kind: list[AlertKind] = []
    acknowledged: bool | None = None

    def where(self) -> AlertFilter:
        return AlertFilter(
            severities=self.severity,
            audiences=self.audience,
            units=self.unit,
            kinds=self.kind,
            acknowledged=self.acknowledged,
        )


class AckView(BaseModel):
    by: str
    token: str | None
    at: str
    note: str | None
    recorded_at: str


class PatientReportView(BaseModel):
    """The patient report behind a `patient_reported_change` review (D9): when, the composite
    sensory grade (PRO-CTCAE, 0-3), the answers (0-4), new weakness, the patient's own words."""

    event_id: str
    reported_at: str
    sensory_grade: int | None
    numbness_tingling_severity: int | None
    numbness_tingling_interference: int | None
    new_weakness: bool
    comment: str | None


class AlertView(BaseModel):
    """An alert as the feed, the stream and webhooks show it."""

    id: int
    kind: AlertKind
    severity: Severity
    action: str | None
    audience: list[str]
    patient_id: str
    unit: str | None
    message: str
    decision_id: str | None
    decision_url: str
    escalates_alert_id: int | None
    clinical_at: str | None  # the clinical time it is about (the grading, the due time)
    created_at: str  # when it was raised
    acknowledged: bool
    ack: AckView | None
    # the feed's answers only (not webhooks): what the patient reported, for a D9 review
    patient_report: PatientReportView | None = None


class AlertPage(BaseModel):
    alerts: list[AlertView]
    next_cursor: int | None = Field(description="ask with cursor=<this> for the older page")
    next_after: int | None = Field(description="after a cursor: ask with after=<this> next")
    last_id: int


class AcknowledgedAlert(AlertView):
    already_acknowledged: bool
