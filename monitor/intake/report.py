"""A patient's report as an assessment event (h16's shared definition): `source: patient`, the
sensory grade is the PRO-CTCAE composite of the two answers; motor is not asked."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from policies.events import Event, Text500, parse_event
from policies.pro_ctcae import composite_grade

Answer = Annotated[int, Field(ge=0, le=4, strict=True)]


class PatientReportForm(BaseModel):
    """What the report page sends: the answers as given (0-4 on the PRO-CTCAE scales)."""

    model_config = ConfigDict(extra="forbid")

    numbness_tingling_severity: Answer
    # asked only when severity is not 0 ("None"): then required, else absent
    numbness_tingling_interference: Answer | None = None
    new_weakness: Annotated[bool, Field(strict=True)]
    comment: Text500 | None = None  # free text, at most 500 characters

    @model_validator(mode="after")
    def _interference_when_asked(self) -> PatientReportForm:
        asked = self.numbness_tingling_severity > 0
        given = self.numbness_tingling_interference is not None
        if asked and not given:
            raise ValueError(
                "numbness_tingling_interference: required when numbness_tingling_severity "
                "is 1-4 (the question is asked then)"
            )
        if given and not asked:
            raise ValueError(
                "numbness_tingling_interference: not asked when numbness_tingling_severity "
                "is 0 (no numbness or tingling): leave it out"
            )
        return self


def report_event(form: PatientReportForm, patient_id: str, now: dt.datetime) -> Event:
    """The assessment event of a report received `now`."""
    severity = form.numbness_tingling_severity
    interference = form.numbness_tingling_interference
    answered: dict[str, int] = {"numbness_tingling_severity": severity}
    if interference is not None:
        answered["numbness_tingling_interference"] = interference
    findings: dict[str, Any] = {"pro_ctcae": answered, "new_weakness": form.new_weakness}
    comment = (form.comment or "").strip()
    if comment:
        findings["patient_comment"] = comment
    return parse_event(
        {
            "event_id": f"pr-{uuid.uuid4().hex}",
            "type": "assessment",
            "patient_id": patient_id,
            "occurred_at": now.astimezone(dt.UTC).isoformat(),
            "source": "patient",
            "grades": {"sensory": composite_grade(severity, interference)},
            "findings": findings,
        }
    )
