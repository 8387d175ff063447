"""AdverseEvent -> assessment: an oncology system's record of a CTCAE neuropathy grade.

R4's `AdverseEvent.severity` is only mild | moderate | severe, not a CTCAE grade; the grade is
read where HL7's Adverse Event Clinical Research R4 Backport IG (STU1) puts it, the extension
`ae-grade` (valueCodeableConcept: an NCIt grade concept, or a digit of a configured grade system).
The term is `event` (MedDRA, or the NCIt codes a site configures), the time `detected`, else
`date`. An AdverseEvent joins the Observations of the same patient and instant into one
assessment, as Observations join each other.
"""

from __future__ import annotations

from typing import Any

from fhir.resources.R4B.adverseevent import AdverseEvent

from monitor.interop.fhir.codes import AE_GRADE_EXTENSION, shown
from monitor.interop.fhir.inbound.common import (
    _common,
    _extension_location,
    _extensions,
    _key,
    _one,
    _Source,
    _SubjectResolver,
    _time,
)
from monitor.interop.fhir.inbound.observation import _coded_grade, _domain, _Grading
from monitor.interop.fhir.problems import FhirProblems, Problem
from monitor.settings import Settings


def _adverse_event(
    source: _Source, event: AdverseEvent, settings: Settings, subjects: _SubjectResolver
) -> _Grading:
    patient_id, problems = _common(source, event, subjects)
    if event.actuality != "actual":
        problems.append(
            Problem(
                f"{source.path}.actuality",
                "not-supported",
                f"{event.actuality!r} is not mapped: only an actual adverse event is a grading "
                "(a potential one, a near miss, grades nothing)",
            )
        )
    name = "detected" if event.detected is not None else "date"
    time_location = f"{source.path}.{name}"
    at, time_problems = _time(
        event.detected if event.detected is not None else event.date,
        time_location,
        "when the adverse event was detected (detected), or when it occurred (date)",
    )
    problems += time_problems
    terms = {code: domain for domain, codes in settings.fhir_term_codes.items() for code in codes}
    if event.event is None:
        domain = None
        problems.append(
            Problem(
                f"{source.path}.event",
                "required",
                "is required: the CTCAE term (e.g. MedDRA 10034620 peripheral sensory neuropathy)",
            )
        )
    else:
        domain = _domain(event.event, f"{source.path}.event", terms, settings, problems)
    grade, grade_location = _grade(source, event, settings, problems)
    found, ext_problems = _extensions(source, event, {"cycle": "valueInteger"})
    problems += ext_problems
    cycle, cycle_problems = _one(found, "cycle", "valueInteger", source)
    problems += cycle_problems
    key, key_problems = _key(source, "assessment")
    problems += key_problems
    if problems:
        raise FhirProblems(problems)
    assert at is not None
    assert domain is not None
    assert grade is not None
    return _Grading(
        source=source,
        key=key,
        patient_id=patient_id,
        at=at,
        grades={domain: (grade, grade_location)},
        cycle=cycle,
        standalone=False,
        locations={
            "patient_id": f"{source.path}.subject",
            "occurred_at": time_location,
            "cycle": _extension_location(source, "cycle"),
        },
        findings={},
    )


def _grade(
    source: _Source, event: AdverseEvent, settings: Settings, problems: list[Problem]
) -> tuple[int | None, str]:
    found = [
        (index, extension)
        for index, extension in enumerate(event.extension or [])
        if extension.url == AE_GRADE_EXTENSION
    ]
    if len(found) > 1:
        problems.append(
            Problem(f"{source.path}.extension", "value", f"{AE_GRADE_EXTENSION} is given twice")
        )
        return None, ""
    if not found:
        severity: Any = event.severity
        problems.append(
            Problem(
                f"{source.path}.extension",
                "required",
                f"the CTCAE grade is required, as the extension {AE_GRADE_EXTENSION} "
                "(valueCodeableConcept, e.g. NCIt C41339 grade 2)"
                + (
                    f"; severity ({shown(severity)}) is mild/moderate/severe, not a CTCAE grade"
                    if severity is not None
                    else ""
                ),
            )
        )
        return None, ""
    index, extension = found[0]
    location = f"{source.path}.extension[{index}].valueCodeableConcept"
    if extension.valueCodeableConcept is None:
        problems.append(
            Problem(
                f"{source.path}.extension[{index}]",
                "value",
                f"{AE_GRADE_EXTENSION} takes a valueCodeableConcept (the coded grade)",
            )
        )
        return None, ""
    grade = _coded_grade(extension.valueCodeableConcept, location, settings, problems)
    return grade, location
