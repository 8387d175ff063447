"""What the weekly reports list answers (and the chair list's `weekly_report`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class WeeklyReport(BaseModel):
    """A course's weekly patient reports: the current window and the count over the course."""

    window: int = Field(description="the current window's index, 0 from the enrolment")
    window_start: str
    window_end: str
    state: Literal["due", "reported"] = Field(
        description="`reported`: a patient report in the current window; `due`: none yet"
    )
    reported_at: str | None = Field(description="the current window's first patient report")
    reported: int = Field(description="windows of the course with a patient report")
    missed: int = Field(description="windows of the course that ended without one")


class ReportingPatient(BaseModel):
    patient_id: str
    status: str
    weekly_report: WeeklyReport


class UnitReports(BaseModel):
    """A unit's patients asked for weekly reports, the current window unreported first."""

    unit: str
    as_of: str
    patients: list[ReportingPatient]
