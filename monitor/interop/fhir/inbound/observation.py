"""Observation -> assessment: one CTCAE neuropathy grading per Observation (or per component),
the domain from the configured term codes (MONITOR_FHIR_TERM_CODES), the grade a valueInteger or
a coded grade. Observations of one patient and instant are joined into one assessment, which is
stored whole or not at all.
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

from monitor.interop.fhir.codes import NCIT, SYSTEM_NAMES, misplaced_system, shown
from monitor.interop.fhir.inbound.common import (
    EntryProblem,
    _common,
    _Draft,
    _extension_location,
    _extensions,
    _key,
    _one,
    _Source,
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


def _observation(source: _Source, obs: Observation, settings: Settings) -> _Grading:
    patient_id, problems = _common(source, obs)
    if obs.status not in GRADING_STATUSES:
        problems.append(
            Problem(
                f"{source.path}.status",
                "value",
                f"{obs.status!r} is not mapped: only final, amended or corrected gradings "
                "become assessments",
            )
        )
    raw_time = obs.effectiveDateTime or obs.effectiveInstant
    time_location = f"{source.path}." + (
        "effectiveInstant" if obs.effectiveInstant is not None else "effectiveDateTime"
    )
    if raw_time is None and obs.effectivePeriod is not None:
        problems.append(
            Problem(
                f"{source.path}.effectivePeriod",
                "not-supported",
                "a grading is at one time: give effectiveDateTime (with offset)",
            )
        )
        at = None
    else:
        at, time_problems = _time(raw_time, time_location, "when the grading was done")
        problems += time_problems
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
        for coding in concept.coding or []:
            if coding.system in settings.fhir_grade_systems and re.fullmatch(
                r"\d", coding.code or ""
            ):
                return int(coding.code), f"{where}.valueCodeableConcept"
        problems.append(
            Problem(
                f"{where}.valueCodeableConcept",
                "code-invalid",
                f"{shown(concept)} is not a coded CTCAE grade: a code 0-4 in "
                + " or ".join(settings.fhir_grade_systems),
            )
        )
        return None, ""
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
