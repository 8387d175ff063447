"""What the chair list answers and what the chair's forms send."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, ConfigDict, Field

from monitor.patients.schemas import ClearanceView
from monitor.report_windows.schemas import WeeklyReport
from policies.events import ClinicalTime, Cycle, Day, DoseMgM2, Grades, Route


class Regimen(BaseModel):
    """The current recommendation, shown even when the dose is not cleared."""

    dose_mg_m2: float | None
    dose_mg: float | None  # null without a body surface area
    schedule: str | None
    route: str | None


class Reassessment(BaseModel):
    due_at: str | None
    overdue: bool


class ChairPatient(BaseModel):
    patient_id: str
    status: str
    clearance: ClearanceView
    regimen: Regimen
    last_dose_at: str | None
    next_dose_not_before: str | None
    reassessment: Reassessment | None
    weekly_report: WeeklyReport | None = Field(
        description="this week's patient symptom report: due or reported, and missed weeks"
    )


class ChairList(BaseModel):
    """A unit's patients on treatment (active or held) and whether each may be dosed."""

    unit: str
    date: dt.date
    as_of: str  # the time clearance was judged at
    patients: list[ChairPatient]


class AdministrationForm(BaseModel):
    """A dose given at the chair: in mg/m2 or in mg (converted by the course's body surface
    area); checked again against clearance when it is recorded."""

    model_config = ConfigDict(extra="forbid")

    dose_mg_m2: DoseMgM2 | None = None
    dose_mg: float | None = Field(default=None, gt=0, le=10)
    route: Route
    given_at: ClinicalTime | None = None  # default: now
    cycle: Cycle | None = None
    day: Day | None = None


class AssessmentForm(BaseModel):
    """A grading recorded at the chair (CTCAE, the four domains)."""

    model_config = ConfigDict(extra="forbid")

    grades: Grades
    cycle: Cycle | None = None
    assessed_at: ClinicalTime | None = None  # default: now


class Recorded(BaseModel):
    event_id: str
    patient_id: str


class Refusal(BaseModel):
    message: str
    reasons: list[str]


class Refused(BaseModel):
    detail: Refusal
