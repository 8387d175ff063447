"""Observation -> assessment: one CTCAE neuropathy grading per Observation (or per component),
the domain from the configured term codes (MONITOR_FHIR_TERM_CODES), the grade a valueInteger or
a coded grade (an NCIt grade concept, or a digit of MONITOR_FHIR_GRADE_SYSTEMS), the time its
effective[x] (of a period, its end). Observations of one patient and instant are joined into one
assessment, which is stored whole or not at all. (Body measurements are `body_size`'s.)
"""

from __future__ import annotations

import datetime as dt
import re
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fhir.resources.R4B.codeableconcept import CodeableConcept
from fhir.resources.R4B.observation import Observation

from monitor.interop.fhir.codes import NCIT, NCIT_GRADES, SYSTEM_NAMES, misplaced_system, shown
from monitor.interop.fhir.inbound.common import (
    EntryProblem,
    _common,
    _Draft,
    _extension_location,
    _extensions,
    _key,
    _one,
    _Source,
    _SubjectResolver,
    _time,
)
from monitor.interop.fhir.problems import FhirProblems, Problem
from monitor.settings import Settings

GRADING_STATUSES = ("final", "amended", "corrected")
# findings a grading may carry, as the service's extensions: extension -> (finding, value type)
FINDINGS = {
    "incat": ("incat", "valueInteger"),
    "new-weakness": ("new_weakness", "valueBoolean"),
}
DOMAIN_TERMS = {
    "sensory": "peripheral sensory neuropathy",
    "motor": "peripheral motor neuropathy",
    "pain": "neuralgia",
    "autonomic": "autonomic severity",
}


@dataclass(slots=True)
class _Grading:
    """One Observation's grades, before Observations of one patient and time are joined."""

    source: _Source
    key: str
    patient_id: str
    at: dt.datetime
    grades: dict[str, tuple[Any, str]]  # domain -> (grade, location)
    cycle: int | None
    standalone: bool  # an Observation with components is an assessment of its own
    locations: dict[str, str]
    findings: dict[str, Any]  # finding -> value, from the extensions


def _observation(
    source: _Source, obs: Observation, settings: Settings, subjects: _SubjectResolver
) -> _Grading:
    patient_id, problems = _common(source, obs, subjects)
    if obs.status not in GRADING_STATUSES:
        problems.append(
            Problem(
                f"{source.path}.status",
                "value",
                f"{obs.status!r} is not mapped: only final, amended or corrected gradings "
                "become assessments",
            )
        )
    at, time_location = _effective(source, obs, "when the grading was done", problems)
    terms = {code: domain for domain, codes in settings.fhir_term_codes.items() for code in codes}
    grades: dict[str, tuple[Any, str]] = {}
    if obs.component:
        for index, component in enumerate(obs.component):
            where = f"{source.path}.component[{index}]"
            domain = _domain(component.code, f"{where}.code", terms, settings, problems)
            grade, location = _grade(component, where, settings, problems)
            if domain is not None and domain in grades:
                problems.append(
                    Problem(
                        f"{where}.code", "value", f"{domain} is graded twice in this Observation"
                    )
                )
            elif domain is not None and grade is not None:
                grades[domain] = (grade, location)
    else:
        domain = _domain(obs.code, f"{source.path}.code", terms, settings, problems)
        grade, location = _grade(obs, source.path, settings, problems)
        if domain is not None and grade is not None:
            grades[domain] = (grade, location)
    found, ext_problems = _extensions(
        source,
        obs,
        {"cycle": "valueInteger", **{name: kind for name, (_, kind) in FINDINGS.items()}},
    )
    problems += ext_problems
    cycle, cycle_problems = _one(found, "cycle", "valueInteger", source)
    problems += cycle_problems
    findings: dict[str, Any] = {}
    for name, (finding, kind) in FINDINGS.items():
        value, one_problems = _one(found, name, kind, source)
        problems += one_problems
        if value is not None:
            findings[finding] = value
    key, key_problems = _key(source, "assessment")
    problems += key_problems
    if problems:
        raise FhirProblems(problems)
    assert at is not None
    return _Grading(
        source=source,
        key=key,
        patient_id=patient_id,
        at=at,
        grades=grades,
        cycle=cycle,
        standalone=bool(obs.component),
        locations={
            "patient_id": f"{source.path}.subject.reference",
            "occurred_at": time_location,
            "cycle": _extension_location(source, "cycle"),
            **{
                f"findings.{finding}": _extension_location(source, name)
                for name, (finding, _) in FINDINGS.items()
            },
        },
        findings=findings,
    )


def _effective(
    source: _Source, obs: Observation, what: str, problems: list[Problem]
) -> tuple[dt.datetime | None, str]:
    """effectiveDateTime or effectiveInstant; of an effectivePeriod its end (the time the
    finding or measurement was complete), else its start. The offset is kept as given."""
    period = obs.effectivePeriod
    value: Any
    if obs.effectiveInstant is not None:
        name, value = "effectiveInstant", obs.effectiveInstant
    elif period is not None and obs.effectiveDateTime is None:
        name = "effectivePeriod.end" if period.end is not None else "effectivePeriod.start"
        value = period.end if period.end is not None else period.start
    else:
        name, value = "effectiveDateTime", obs.effectiveDateTime
    at, time_problems = _time(value, f"{source.path}.{name}", what)
    problems += time_problems
    return at, f"{source.path}.{name}"


def _domain(
    concept: CodeableConcept | None,
    location: str,
    terms: Mapping[str, str],
    settings: Settings,
    problems: list[Problem],
) -> str | None:
    for coding in (concept.coding or []) if concept is not None else []:
        domain = terms.get(f"{coding.system}|{coding.code}")
        if domain is not None:
            return domain
    hint = misplaced_system(concept, terms)
    expected = "; ".join(
        f"{DOMAIN_TERMS[domain]}: "
        + (", ".join(_named(c) for c in codes) or "none configured (MONITOR_FHIR_TERM_CODES)")
        for domain, codes in settings.fhir_term_codes.items()
    )
    ncit = (
        ""
        if any(c.startswith(NCIT) for v in settings.fhir_term_codes.values() for c in v)
        else ("; NCIt codes are read once configured in MONITOR_FHIR_TERM_CODES")
    )
    problems.append(
        Problem(
            location,
            "code-invalid",
            (hint + ". " if hint else "")
            + f"{shown(concept)} is not a CTCAE neuropathy term the service maps "
            + f"({expected}{ncit})",
        )
    )
    return None


def _named(coding: str) -> str:
    system, _, code = coding.partition("|")
    return f"{SYSTEM_NAMES.get(system, system)} {code}"


def _grade(
    element: Any, where: str, settings: Settings, problems: list[Problem]
) -> tuple[Any, str]:
    if element.valueInteger is not None:
        return element.valueInteger, f"{where}.valueInteger"
    concept = element.valueCodeableConcept
    if concept is not None:
        grade = _coded_grade(concept, f"{where}.valueCodeableConcept", settings, problems)
        return grade, (f"{where}.valueCodeableConcept" if grade is not None else "")
    given = [
        name
        for name in type(element).model_fields
        if name.startswith("value")
        and not name.endswith("__ext")
        and getattr(element, name) is not None
    ]
    absent = getattr(element, "dataAbsentReason", None)
    problems.append(
        Problem(
            f"{where}.value[x]",
            "required" if not given else "value",
            f"{given[0]} is not a grade: give valueInteger (0-4) or a coded grade"
            if given
            else "is required: the CTCAE grade as valueInteger (0-4) or a coded grade"
            + (f" (dataAbsentReason: {shown(absent)})" if absent is not None else ""),
        )
    )
    return None, ""


def _coded_grade(
    concept: CodeableConcept, location: str, settings: Settings, problems: list[Problem]
) -> int | None:
    """A CTCAE grade coded as an NCIt grade concept, or as a digit of a configured system."""
    for coding in concept.coding or []:
        if coding.system == NCIT and coding.code in NCIT_GRADES:
            grade = NCIT_GRADES[coding.code]
            if grade == 5:
                problems.append(
                    Problem(
                        location,
                        "value",
                        f"NCIt {coding.code} is CTCAE grade 5 (death related to the adverse "
                        "event): gradings hold grades 0-4; record a death as the course's end "
                        "(course_end, reason death)",
                    )
                )
                return None
            return grade
        if coding.system in settings.fhir_grade_systems and re.fullmatch(r"\d", coding.code or ""):
            return int(coding.code or "")
    problems.append(
        Problem(
            location,
            "code-invalid",
            f"{shown(concept)} is not a coded CTCAE grade: an NCIt grade concept ("
            + ", ".join(f"{code} grade {grade}" for code, grade in NCIT_GRADES.items() if grade < 5)
            + f", system {NCIT}) or a code 0-4 in "
            + " or ".join(settings.fhir_grade_systems),
        )
    )
    return None


def _join_gradings(gradings: list[_Grading], problems: list[EntryProblem]) -> list[_Draft]:
    """Observations of one patient and instant make one assessment; a bad member fails all."""
    groups: dict[tuple[str, dt.datetime], list[_Grading]] = defaultdict(list)
    drafts = []
    for grading in gradings:
        if grading.standalone:
            drafts.append(_grading_draft([grading], problems))
        else:
            groups[(grading.patient_id, grading.at)].append(grading)
    for members in groups.values():
        drafts.append(_grading_draft(members, problems))
    return [d for d in drafts if d is not None]


def _grading_draft(members: list[_Grading], problems: list[EntryProblem]) -> _Draft | None:
    first = members[0]
    grades: dict[str, Any] = {}
    locations: dict[str, tuple[int | None, str]] = {
        f: (first.source.entry, loc) for f, loc in first.locations.items()
    }
    conflicts: list[EntryProblem] = []
    for member in members:
        for domain, (grade, location) in member.grades.items():
            if domain in grades:
                conflicts.append(
                    EntryProblem(
                        member.source.entry,
                        location,
                        "conflict",
                        f"{domain} is graded by two Observations of this patient at "
                        f"{member.at.isoformat()}: one assessment holds one grade per domain",
                    )
                )
            grades[domain] = grade
            locations[f"grades.{domain}"] = (member.source.entry, location)
    findings: dict[str, Any] = {}
    for member in members:
        for finding, value in member.findings.items():
            if finding in findings and findings[finding] != value:
                conflicts.append(
                    EntryProblem(
                        member.source.entry,
                        member.locations[f"findings.{finding}"],
                        "conflict",
                        f"Observations of one assessment give different {finding} values",
                    )
                )
            findings[finding] = value
            locations[f"findings.{finding}"] = (
                member.source.entry,
                member.locations[f"findings.{finding}"],
            )
    cycles = {m.cycle for m in members if m.cycle is not None}
    if len(cycles) > 1:
        conflicts.append(
            EntryProblem(
                first.source.entry,
                first.locations["cycle"],
                "conflict",
                f"Observations of one assessment give different cycles {sorted(cycles)}",
            )
        )
    if conflicts:
        problems += conflicts + _with_group([m.source for m in members], conflicts)
        return None
    body: dict[str, Any] = {
        "type": "assessment",
        "patient_id": first.patient_id,
        "occurred_at": first.at.isoformat(),
        "grades": grades,
    }
    if cycles:
        body["cycle"] = cycles.pop()
    if findings:
        body["findings"] = findings
    return _Draft([m.source for m in members], [m.key for m in members], body, locations)


def _with_group(sources: list[_Source], problems: list[EntryProblem]) -> list[EntryProblem]:
    """The other members of a failed group fail too, saying why (nothing partial is stored)."""
    failed = {p.entry for p in problems}
    named = ", ".join(str(e) for e in sorted(e for e in failed if e is not None))
    return [
        EntryProblem(
            source.entry,
            source.path,
            "invalid",
            f"rejected with entry {named}: the Observations of one patient and time make one "
            "assessment, which is stored whole or not at all",
        )
        for source in sources
        if source.entry not in failed
    ]
