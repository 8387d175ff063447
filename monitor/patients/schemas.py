"""What the patient endpoints answer. Open shapes (the course state, a decision's optional
fields) allow further keys; the keys declared here are always there (but a dose's `dose_mg`,
only when the dose was given in mg)."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class MonitoringStatus(Open):
    """`running`, or `stopped` with the dead letter that stopped it (since, reason, error)."""

    status: Literal["running", "stopped"]


class QuarantinedEvent(BaseModel):
    event_id: str
    patient_id: str
    type: str
    occurred_at: str
    quarantined_at: str
    quarantined_by: str | None
    reason: str | None


class DueReassessment(BaseModel):
    patient_id: str
    unit: str | None
    status: str
    due_at: str | None  # when it was (or is) due
    overdue: bool  # not done by due + grace, and not made up yet


class DueReassessments(BaseModel):
    """The reassessments due (soonest first, the overdue ones before them)."""

    due_before: str
    reassessments: list[DueReassessment]


class PatientView(Open):
    """The course state (its keys depend on the status), the events still in the pipeline,
    and whether the patient's monitoring runs."""

    patient_id: str
    status: str
    pending_events: int
    evaluated_at: str | None
    monitoring: MonitoringStatus
    quarantined_events: list[QuarantinedEvent]


class DecisionView(Open):
    """One decision (CONTRACT.md, "Decisions"); optional action fields appear when set. A
    superseded one says since when (`superseded_at`) and why (`superseded_reason`:
    `later_events` or `policy_change`, then with `superseded_by`, the new pack's matching
    decision); one that came with a policy change says since when it is in force
    (`in_force_from`)."""

    decision_id: str
    patient_id: str
    at: str
    trigger: str
    action: str
    severity: str
    audience: list[str]
    rule: str
    policy: str
    rationale: str
    sources: list[str]


class DecisionsView(BaseModel):
    patient_id: str
    decisions: list[DecisionView]


class ClearanceView(BaseModel):
    """May the dose be given now: the dose, schedule and route only when cleared. When the
    enrolment gave the body surface area (or height and weight), also `bsa_m2` and the dose in
    mg (`dose_mg`, rounded to 0.01 mg)."""

    model_config = ConfigDict(extra="allow")

    cleared: bool
    dose_mg_m2: float | None
    schedule: str | None
    route: str | None
    status: str
    reasons: list[str]


class GradePoint(Open):
    """One grading: when, the cycle, and the grade of each domain graded."""

    at: str
    cycle: int | None


class DosePoint(BaseModel):
    """A dose: the enrolment's, or one given. One given in mg also has `dose_mg`; its
    `dose_mg_m2` is then converted at the body surface area, null without one."""

    at: str
    dose_mg_m2: float | None
    source: Literal["enrollment", "given"]
    dose_mg: float | None = Field(default=None, exclude_if=lambda value: value is None)


class DoseDecisionPoint(BaseModel):
    at: str
    action: str
    dose_mg_m2: float | None
    rule: str


class ImmunotherapyEpisode(BaseModel):
    """One immunotherapy episode (POLICY V10: a therapy's events up to 7 days after its first)
    and its D8 response check, due 28 days after the first: `response`, `no_response` (the D8
    decision, `decision_id`, made at `checked_at`), `pending` (not yet due), `not_done` (due and
    passed without one) or `no_baseline` (no clinician or nurse grading before the therapy)."""

    therapy: str
    started_at: str
    last_at: str
    events: int
    check_due_at: str
    outcome: Literal["response", "no_response", "pending", "not_done", "no_baseline"]
    decision_id: str | None
    checked_at: str | None


class MeasurePoint(Open):
    """A clinician's or nurse's assessment with response measures: whichever of
    `mrc_sum_score`, `incat` and `rankin` it carries."""

    at: str


class HistoryView(BaseModel):
    """A patient report's grade point has `source: patient`, `new_weakness` and `pro_ctcae`
    (the answers); a clinician's has no `source`."""

    patient_id: str
    grades: list[GradePoint]
    doses: list[DosePoint]
    dose_decisions: list[DoseDecisionPoint]
    immunotherapy: list[ImmunotherapyEpisode]
    response_measures: list[MeasurePoint]
    unreadable_events: list[str]
