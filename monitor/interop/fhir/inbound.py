"""FHIR resources in, contract events out (README, "FHIR ingest", has the table).

`map_fhir` reads a Bundle (transaction, batch or collection) or one resource and returns the
events it maps to, validated exactly as `POST /v1/events` validates them, and every problem
with its entry and location. It stores nothing: the API decides what a problem means for the
rest of the request (a transaction: nothing; a batch: the other entries proceed).

Event ids derive from what identifies the resource in the sending system (its first
identifier, else the entry's fullUrl, else `Type/id`), so a bundle sent again maps to the same
ids and is a no-op.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.codeableconcept import CodeableConcept
from fhir.resources.R4B.extension import Extension
from fhir.resources.R4B.medication import Medication
from fhir.resources.R4B.medicationadministration import MedicationAdministration
from fhir.resources.R4B.medicationrequest import MedicationRequest
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.procedure import Procedure
from fhir.resources.R4B.reference import Reference
from fhir_core.fhirabstractmodel import FHIRAbstractModel
from pydantic import ValidationError

from monitor.interop.fhir.codes import EXTENSION, NCIT, SYSTEM_NAMES, misplaced_system, shown
from monitor.interop.fhir.medication import (
    immunotherapy_of,
    is_bortezomib,
    medication_concept,
    read_dose,
    read_regimen,
    read_route,
)
from monitor.interop.fhir.problems import FhirProblems, IssueCode, Problem
from monitor.settings import Settings
from policies.events import Event, EventValidationError, parse_event

BundleKind = Literal["transaction", "batch", "collection", "resource"]
MAPPED_TYPES = ("Observation", "MedicationRequest", "MedicationAdministration", "Procedure")
GRADING_STATUSES = ("final", "amended", "corrected")
ORDER_STATUSES = {"active": "enrollment", "stopped": "discontinued", "completed": "completed"}
DOMAIN_TERMS = {
    "sensory": "peripheral sensory neuropathy",
    "motor": "peripheral motor neuropathy",
    "pain": "neuralgia",
    "autonomic": "autonomic severity",
}
# what a Bundle may hold, from its model (the entries are parsed one by one, below)
BUNDLE_ELEMENTS = {"resourceType"} | {n for n in Bundle.model_fields if not n.endswith("__ext")}
_PATIENT_REFERENCE = re.compile(r"^(?:.*/)?Patient/([^/]+)(?:/_history/[^/]+)?$")


@dataclass(frozen=True, slots=True)
class EntryProblem:
    """A problem of one bundle entry (`entry` None: of the request, or of a lone resource)."""

    entry: int | None
    location: str
    code: IssueCode
    message: str

    def __str__(self) -> str:
        return f"{self.location}: {self.message}"


@dataclass(frozen=True, slots=True)
class MappedEvent:
    """One event and the entries it came from (several Observations make one assessment)."""

    entries: tuple[int, ...]
    event: Event


@dataclass(frozen=True, slots=True)
class FhirMapping:
    kind: BundleKind
    entry_count: int
    events: list[MappedEvent]
    problems: list[EntryProblem]
    # entries read as part of another entry (a Medication an order references): no event
    consumed: dict[int, str] = field(default_factory=dict)


@dataclass(slots=True)
class _Source:
    """One parsed resource and what identifies it."""

    entry: int | None
    resource: FHIRAbstractModel
    raw: dict[str, Any]
    full_url: str | None

    @property
    def path(self) -> str:
        if self.entry is None:
            return str(self.raw.get("resourceType"))
        return f"Bundle.entry[{self.entry}].resource"

    def identity(self) -> str | None:
        identifiers = getattr(self.resource, "identifier", None) or []
        for identifier in identifiers:
            if identifier.value:
                return f"{identifier.system or ''}|{identifier.value}"
        if self.full_url:
            return self.full_url
        if self.resource_id:
            return f"{self.raw.get('resourceType')}/{self.resource_id}"
        return None

    @property
    def resource_id(self) -> str | None:
        value = getattr(self.resource, "id", None)
        return str(value) if value else None

    def reference(self) -> str | None:
        """How outbound resources point back at this one (no transient urn:uuid)."""
        if self.resource_id:
            return f"{self.raw.get('resourceType')}/{self.resource_id}"
        if self.full_url and not self.full_url.startswith("urn:"):
            return self.full_url
        return None


@dataclass(slots=True)
class _Draft:
    """An event before validation, with where each of its fields came from."""

    sources: list[_Source]
    keys: list[str]
    body: dict[str, Any]
    locations: dict[str, tuple[int | None, str]]

    def entries(self) -> tuple[int, ...]:
        return tuple(s.entry for s in self.sources if s.entry is not None)


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


def map_fhir(payload: Any, settings: Settings) -> FhirMapping:
    """Map a decoded FHIR JSON body to events; every problem is reported, nothing raised."""
    if not isinstance(payload, dict) or not isinstance(payload.get("resourceType"), str):
        return FhirMapping(
            "resource",
            0,
            [],
            [EntryProblem(None, "resourceType", "structure", "the body is not a FHIR resource")],
        )
    if payload["resourceType"] != "Bundle":
        source, problems = _parse(None, payload, None)
        sources = [source] if source is not None else []
        return _map_sources("resource", 1, sources, problems, settings)
    return _map_bundle(payload, settings)


# --- the Bundle ---------------------------------------------------------------------------


def _map_bundle(payload: dict[str, Any], settings: Settings) -> FhirMapping:
    kind = payload.get("type")
    entries = payload.get("entry")
    entries = [] if entries is None else entries
    request_problems: list[EntryProblem] = []
    if kind not in ("transaction", "batch", "collection"):
        request_problems.append(
            EntryProblem(
                None,
                "Bundle.type",
                "not-supported",
                f"{kind!r} is not accepted: send a transaction, batch or collection Bundle",
            )
        )
    if not isinstance(entries, list):
        request_problems.append(EntryProblem(None, "Bundle.entry", "structure", "is not a list"))
        entries = []
    elif len(entries) > settings.max_batch_events:
        request_problems.append(
            EntryProblem(
                None,
                "Bundle.entry",
                "value",
                f"{len(entries)} entries: at most {settings.max_batch_events} per request",
            )
        )
    extra = sorted(set(payload) - BUNDLE_ELEMENTS)
    for name in extra:
        request_problems.append(
            EntryProblem(None, f"Bundle.{name}", "structure", "unknown element of a Bundle")
        )
    if request_problems:
        return FhirMapping(
            kind if kind in ("transaction", "batch", "collection") else "batch",
            len(entries),
            [],
            request_problems,
        )
    assert kind in ("transaction", "batch", "collection")
    sources: list[_Source] = []
    problems: list[EntryProblem] = []
    for index, entry in enumerate(entries):
        where = f"Bundle.entry[{index}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("resource"), dict):
            problems.append(
                EntryProblem(index, f"{where}.resource", "required", "the entry has no resource")
            )
            continue
        request = entry.get("request")
        if kind in ("transaction", "batch") and isinstance(request, dict):
            method = request.get("method")
            if method not in ("POST", "PUT"):
                problems.append(
                    EntryProblem(
                        index,
                        f"{where}.request.method",
                        "not-supported",
                        f"{method!r}: entries are submitted with POST (or PUT); the service "
                        "does not serve reads or deletes here",
                    )
                )
                continue
        full_url = entry.get("fullUrl") if isinstance(entry.get("fullUrl"), str) else None
        source, parse_problems = _parse(index, entry["resource"], full_url)
        problems += parse_problems
        if source is not None:
            sources.append(source)
    return _map_sources(kind, len(entries), sources, problems, settings)


def _parse(
    entry: int | None, raw: dict[str, Any], full_url: str | None
) -> tuple[_Source | None, list[EntryProblem]]:
    """Validate one resource with its fhir.resources model; problems name FHIR paths."""
    resource_type = raw.get("resourceType")
    base = f"Bundle.entry[{entry}].resource" if entry is not None else str(resource_type)
    try:
        model = get_fhir_model_class(str(resource_type))
    except (ValueError, KeyError):
        return None, [
            EntryProblem(
                entry,
                f"{base}.resourceType",
                "not-supported",
                f"{resource_type!r} is not a FHIR R4 resource type",
            )
        ]
    try:
        resource = model.model_validate(raw)
    except ValidationError as exc:
        return None, [
            EntryProblem(entry, _path(base, err["loc"]), _issue_code(err), _fhir_message(err))
            for err in exc.errors()
        ]
    return _Source(entry, resource, raw, full_url), _raw_type_problems(entry, base, raw)


def _path(base: str, loc: tuple[Any, ...]) -> str:
    text = base
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text


def _issue_code(err: Any) -> IssueCode:
    kind = str(err["type"])
    if "missing" in kind:
        return "required"
    if kind == "extra_forbidden":
        return "structure"
    return "value"


def _fhir_message(err: Any) -> str:
    kind, value = str(err["type"]), err.get("input")
    if "missing" in kind:
        return "is required"
    if kind == "extra_forbidden":
        return "unknown element: check its name against FHIR R4"
    if isinstance(value, str) and re.match(
        r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?$", value
    ):
        return (
            f"{value!r} has no UTC offset: clinical times must carry one "
            "(e.g. 2026-03-02T08:40:00+01:00 or ...Z)"
        )
    shown_value = repr(value) if not isinstance(value, dict | list) else type(value).__name__
    return f"{shown_value[:60]}: {err['msg']}"


def _raw_type_problems(entry: int | None, base: str, raw: dict[str, Any]) -> list[EntryProblem]:
    """FHIR JSON integers are numbers: a quoted grade ("2") is refused, as the contract does."""
    problems = []
    candidates = [("valueInteger", raw.get("valueInteger"))]
    for index, component in enumerate(raw.get("component") or []):
        if isinstance(component, dict):
            candidates.append((f"component[{index}].valueInteger", component.get("valueInteger")))
    for name, value in candidates:
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            problems.append(
                EntryProblem(
                    entry,
                    f"{base}.{name}",
                    "value",
                    f"{value!r} is not a whole number (write it without quotes)",
                )
            )
    return problems


# --- resources to drafts --------------------------------------------------------------------


def _map_sources(
    kind: BundleKind,
    entry_count: int,
    sources: list[_Source],
    problems: list[EntryProblem],
    settings: Settings,
) -> FhirMapping:
    failed = {p.entry for p in problems}
    medications = {
        name: s.resource
        for s in sources
        if isinstance(s.resource, Medication)
        for name in _names(s)
    }
    used_medications: set[str] = set()
    drafts: list[_Draft] = []
    gradings: list[_Grading] = []
    for source in sources:
        if source.entry in failed or isinstance(source.resource, Medication):
            continue
        try:
            if isinstance(source.resource, Observation):
                gradings.append(_observation(source, source.resource, settings))
            elif isinstance(source.resource, MedicationRequest):
                drafts.append(_request(source, source.resource, settings, medications))
                used_medications |= _referenced(source.resource)
            elif isinstance(source.resource, MedicationAdministration):
                drafts.append(_administration(source, source.resource, settings, medications))
                used_medications |= _referenced(source.resource)
            elif isinstance(source.resource, Procedure):
                drafts.append(_procedure(source, source.resource, settings))
            else:
                raise FhirProblems([_unsupported(source)])
        except FhirProblems as exc:
            problems += [
                EntryProblem(source.entry, p.location, p.code, p.message) for p in exc.problems
            ]
    consumed: dict[int, str] = {}
    for source in sources:
        if not isinstance(source.resource, Medication):
            continue
        if source.entry is not None and used_medications & set(_names(source)):
            consumed[source.entry] = "read as the medication an order or administration references"
        else:
            problems.append(
                EntryProblem(
                    source.entry,
                    source.path,
                    "not-supported",
                    (
                        "a Medication is read only as the medication of an order or administration "
                        "in the same Bundle, and no entry references this one"
                    ),
                )
            )
    drafts += _join_gradings(gradings, problems)
    events: list[MappedEvent] = []
    for draft in drafts:
        event = _validate(draft, problems)
        if event is not None:
            events.append(MappedEvent(draft.entries(), event))
    return FhirMapping(kind, entry_count, events, problems, consumed)


def _names(source: _Source) -> list[str]:
    names = []
    if source.full_url:
        names.append(source.full_url)
    if source.resource_id:
        names.append(f"{source.raw.get('resourceType')}/{source.resource_id}")
    return names


def _referenced(resource: MedicationRequest | MedicationAdministration) -> set[str]:
    reference = resource.medicationReference
    return {reference.reference} if reference is not None and reference.reference else set()


def _unsupported(source: _Source) -> Problem:
    resource_type = source.raw.get("resourceType")
    why = (
        "Patient resources are not stored: the service keeps pseudonymous ids only; reference "
        "the patient as Patient/{id}"
        if resource_type == "Patient"
        else f"{resource_type} is not mapped; the service reads "
        + ", ".join(MAPPED_TYPES)
        + " (and a Medication they reference)"
    )
    return Problem(f"{source.path}.resourceType", "not-supported", why)


def _common(source: _Source, resource: Any) -> tuple[str, list[Problem]]:
    """The patient id, and refusals every mapped resource shares."""
    problems: list[Problem] = []
    if resource.modifierExtension:
        problems.append(
            Problem(
                f"{source.path}.modifierExtension",
                "not-supported",
                "a modifier extension changes the resource's meaning, and the service does "
                "not know this one: the resource cannot be read safely",
            )
        )
    subject: Reference | None = resource.subject
    patient_id = ""
    if subject is None:
        problems.append(
            Problem(
                f"{source.path}.subject",
                "required",
                "is required: the Patient/{id} the resource is about",
            )
        )
    else:
        found = patient_id_of(subject.reference)
        if found is None:
            given = subject.reference or (
                "an identifier only" if subject.identifier is not None else "no reference"
            )
            problems.append(
                Problem(
                    f"{source.path}.subject.reference",
                    "value",
                    f"{given!r} is not a Patient/{{id}} reference: the service needs the "
                    "patient's (pseudonymous) id",
                )
            )
        else:
            patient_id = found
    return patient_id, problems


def patient_id_of(reference: str | None) -> str | None:
    """The logical id of a `Patient/{id}` reference (relative, absolute or versioned)."""
    match = _PATIENT_REFERENCE.match(reference or "")
    return match.group(1) if match else None


def _time(value: Any, location: str, what: str) -> tuple[dt.datetime | None, list[Problem]]:
    if value is None:
        return None, [Problem(location, "required", f"is required: {what}")]
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value, []
    return None, [
        Problem(
            location,
            "value",
            f"{value!s} is a date without a time: give a date-time with an offset",
        )
    ]


def _moment(
    source: _Source, resource: Any, element: str, what: str, problems: list[Problem]
) -> tuple[dt.datetime | None, str]:
    """`<element>DateTime`, else `<element>Period.start`: when it happened, and where it was."""
    instant = getattr(resource, f"{element}DateTime")
    period = getattr(resource, f"{element}Period")
    name = f"{element}DateTime" if instant is not None else f"{element}Period.start"
    value = instant if instant is not None else (period.start if period is not None else None)
    at, time_problems = _time(value, f"{source.path}.{name}", what)
    problems += time_problems
    return at, f"{source.path}.{name}"


def _key(source: _Source, mapped: str) -> tuple[str, list[Problem]]:
    identity = source.identity()
    if identity is None:
        return "", [
            Problem(
                f"{source.path}.identifier",
                "required",
                "no identifier, fullUrl or id: an event id cannot be derived, so sending it "
                "again would record it twice",
            )
        ]
    return f"{source.raw.get('resourceType')}|{mapped}|{identity}", []


def _event_id(keys: list[str]) -> str:
    return "fhir-" + hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()[:32]


def _extensions(
    source: _Source, resource: Any, known: dict[str, str]
) -> tuple[dict[str, list[Extension]], list[Problem]]:
    """The service's own extensions on a resource; an unknown one of ours is refused (typo)."""
    found: dict[str, list[Extension]] = defaultdict(list)
    problems = []
    for index, extension in enumerate(resource.extension or []):
        url = extension.url or ""
        if not url.startswith(EXTENSION):
            continue  # other systems' extensions: not ours to read
        name = url[len(EXTENSION) :]
        if name not in known:
            problems.append(
                Problem(
                    f"{source.path}.extension[{index}].url",
                    "not-supported",
                    f"{url!r} is not an extension of this service on a "
                    f"{source.raw.get('resourceType')}; known: "
                    + ", ".join(EXTENSION + k for k in known),
                )
            )
            continue
        value = getattr(extension, known[name])
        if value is None:
            problems.append(
                Problem(
                    f"{source.path}.extension[{index}]",
                    "value",
                    f"{url} takes a {known[name]}",
                )
            )
            continue
        found[name].append(extension)
    return found, problems


def _one(
    found: dict[str, list[Extension]], name: str, attribute: str, source: _Source
) -> tuple[Any, list[Problem]]:
    values = [getattr(e, attribute) for e in found.get(name, [])]
    if len(values) > 1:
        return None, [
            Problem(f"{source.path}.extension", "value", f"{EXTENSION}{name} is given twice")
        ]
    return (values[0] if values else None), []


def _extension_location(source: _Source, name: str) -> str:
    return f"{source.path}.extension({EXTENSION}{name})"


# --- Observation ----------------------------------------------------------------------------


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
    found, ext_problems = _extensions(source, obs, {"cycle": "valueInteger"})
    problems += ext_problems
    cycle, cycle_problems = _one(found, "cycle", "valueInteger", source)
    problems += cycle_problems
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
        },
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


# --- MedicationRequest, MedicationAdministration, Procedure ---------------------------------


def _request(
    source: _Source,
    request: MedicationRequest,
    settings: Settings,
    medications: dict[str, Medication],
) -> _Draft:
    patient_id, problems = _common(source, request)
    if request.doNotPerform:
        problems.append(
            Problem(
                f"{source.path}.doNotPerform",
                "not-supported",
                "an order not to give a drug is not mapped",
            )
        )
    concept = _medication(source, request, settings, medications, problems, bortezomib_only=True)
    mapped = ORDER_STATUSES.get(str(request.status))
    if mapped is None:
        problems.append(
            Problem(
                f"{source.path}.status",
                "not-supported",
                f"{request.status!r} is not mapped: active (a course starts), stopped or "
                "completed (it ends)",
            )
        )
    if problems or concept is None or mapped is None:
        raise FhirProblems(problems)
    instruction = request.dosageInstruction[0] if request.dosageInstruction else None
    repeat = instruction.timing.repeat if instruction and instruction.timing else None
    bounds = repeat.boundsPeriod if repeat is not None else None
    timing_path = f"{source.path}.dosageInstruction[0].timing.repeat.boundsPeriod"
    locations: dict[str, tuple[int | None, str]] = {
        "patient_id": (source.entry, f"{source.path}.subject.reference")
    }
    body: dict[str, Any] = {"patient_id": patient_id}
    if mapped == "enrollment":
        body |= _enrollment(source, request, settings, bounds, timing_path, locations, problems)
        key_name = "enrollment"
    else:
        body["type"] = "treatment_change"
        body["action"] = mapped
        key_name = f"treatment_change:{mapped}"
        end = bounds.end if bounds is not None else None
        at, time_problems = _time(end, f"{timing_path}.end", "when the order stopped")
        problems += time_problems
        if at is not None:
            body["occurred_at"] = at.isoformat()
            locations["occurred_at"] = (source.entry, f"{timing_path}.end")
        reason = _reason_text(request.statusReason)
        if reason:
            body["reason"] = reason
            locations["reason"] = (source.entry, f"{source.path}.statusReason")
    key, key_problems = _key(source, key_name)
    problems += key_problems
    if problems:
        raise FhirProblems(problems)
    return _Draft([source], [key], body, locations)


def _enrollment(
    source: _Source,
    request: MedicationRequest,
    settings: Settings,
    bounds: Any,
    timing_path: str,
    locations: dict[str, tuple[int | None, str]],
    problems: list[Problem],
) -> dict[str, Any]:
    body: dict[str, Any] = {"type": "enrollment", "drug": "bortezomib"}
    start = bounds.start if bounds is not None else None
    time_location = f"{timing_path}.start" if start is not None else f"{source.path}.authoredOn"
    at, time_problems = _time(
        start if start is not None else request.authoredOn,
        time_location,
        "when the course starts (authoredOn, or the dosage's boundsPeriod.start)",
    )
    problems += time_problems
    if at is not None:
        body["occurred_at"] = at.isoformat()
    dosage = f"{source.path}.dosageInstruction[0]"
    locations |= {
        "occurred_at": (source.entry, time_location),
        "dose_mg_m2": (source.entry, f"{dosage}.doseAndRate[0].doseQuantity"),
        "route": (source.entry, f"{dosage}.route"),
        "schedule": (source.entry, f"{dosage}.timing.repeat"),
        "cycle_length_days": (source.entry, _extension_location(source, "cycle-length-days")),
        "age": (source.entry, _extension_location(source, "age")),
        "risk_factors": (source.entry, _extension_location(source, "risk-factor")),
        "unit": (source.entry, f"{source.path}.performer"),
    }
    try:
        regimen = read_regimen(request, settings, source.path)
    except FhirProblems as exc:
        problems += exc.problems
    else:
        for name, value in (
            ("dose_mg_m2", regimen.dose_mg_m2),
            ("route", regimen.route),
            ("schedule", regimen.schedule),
        ):
            if value is not None:
                body[name] = value
    found, ext_problems = _extensions(
        source,
        request,
        {"cycle-length-days": "valueInteger", "age": "valueInteger", "risk-factor": "valueCode"},
    )
    problems += ext_problems
    for name, field_name in (("cycle-length-days", "cycle_length_days"), ("age", "age")):
        value, one_problems = _one(found, name, "valueInteger", source)
        problems += one_problems
        if value is not None:
            body[field_name] = value
    risks = [str(e.valueCode) for e in found.get("risk-factor", [])]
    if risks:
        body["risk_factors"] = risks
    unit = _unit(request)
    if unit is not None:
        body["unit"] = unit
    return body


def _unit(request: MedicationRequest) -> str | None:
    """The infusion unit: the intended performer's id when it is an organisation or place."""
    performer = request.performer
    if performer is None or not performer.reference:
        return None
    match = re.match(
        r"^(?:.*/)?(Organization|HealthcareService|Location)/([^/]+)$", performer.reference
    )
    return match.group(2) if match else None


def _reason_text(concept: CodeableConcept | None) -> str | None:
    if concept is None:
        return None
    if concept.text:
        return concept.text
    for coding in concept.coding or []:
        if coding.display or coding.code:
            return coding.display or coding.code
    return None


def _medication(
    source: _Source,
    resource: MedicationRequest | MedicationAdministration,
    settings: Settings,
    medications: dict[str, Medication],
    problems: list[Problem],
    bortezomib_only: bool,
) -> CodeableConcept | None:
    try:
        concept = medication_concept(resource, source.path, medications)
    except FhirProblems as exc:
        problems += exc.problems
        return None
    if is_bortezomib(concept, settings) or (
        not bortezomib_only and immunotherapy_of(concept, settings) is not None
    ):
        return concept
    location = (
        f"{source.path}.medicationCodeableConcept"
        if resource.medicationCodeableConcept is not None
        else f"{source.path}.medicationReference"
    )
    expected = " or ".join(settings.fhir_bortezomib_codes)
    hint = misplaced_system(concept, settings.fhir_bortezomib_codes)
    what = (
        f"is not bortezomib ({expected}): v1 monitors bortezomib courses only"
        if bortezomib_only
        else f"is neither bortezomib ({expected}) nor an immunotherapy the service maps "
        "(MONITOR_FHIR_IMMUNOTHERAPY_CODES)"
    )
    problems.append(
        Problem(
            location, "code-invalid", (hint + ". " if hint else "") + f"{shown(concept)} {what}"
        )
    )
    return None


def _administration(
    source: _Source,
    given: MedicationAdministration,
    settings: Settings,
    medications: dict[str, Medication],
) -> _Draft:
    patient_id, problems = _common(source, given)
    concept = _medication(source, given, settings, medications, problems, bortezomib_only=False)
    if concept is None:
        raise FhirProblems(problems)
    at, time_location = _moment(source, given, "effective", "when it was given", problems)
    locations: dict[str, tuple[int | None, str]] = {
        "patient_id": (source.entry, f"{source.path}.subject.reference"),
        "occurred_at": (source.entry, time_location),
    }
    body: dict[str, Any] = {"patient_id": patient_id}
    if at is not None:
        body["occurred_at"] = at.isoformat()
    therapy = None if is_bortezomib(concept, settings) else immunotherapy_of(concept, settings)
    if therapy is not None:
        key_name = _immunotherapy(source, given.status, therapy, body, problems)
        if given.dosage is not None and given.dosage.dose is not None:
            amount = given.dosage.dose
            body["dose"] = f"{amount.value:g} {amount.unit or amount.code or ''}".strip()
    elif given.status == "completed":
        key_name = "administration"
        body["type"] = "administration"
        dosage = given.dosage
        where = f"{source.path}.dosage"
        locations |= {
            "dose_mg_m2": (source.entry, f"{where}.dose"),
            "route": (source.entry, f"{where}.route"),
            "cycle": (source.entry, _extension_location(source, "cycle")),
            "day": (source.entry, _extension_location(source, "day")),
        }
        dose, dose_problems = read_dose(dosage.dose if dosage else None, f"{where}.dose")
        route, route_problems = read_route(dosage.route if dosage else None, f"{where}.route")
        problems += dose_problems + route_problems
        if dose is not None:
            body["dose_mg_m2"] = dose
        if route is not None:
            body["route"] = route
        found, ext_problems = _extensions(
            source, given, {"cycle": "valueInteger", "day": "valueInteger"}
        )
        problems += ext_problems
        for name in ("cycle", "day"):
            value, one_problems = _one(found, name, "valueInteger", source)
            problems += one_problems
            if value is not None:
                body[name] = value
    elif given.status == "stopped":
        key_name = "treatment_change:held"
        body |= {"type": "treatment_change", "action": "held"}
        reason = _reason_text(given.statusReason[0] if given.statusReason else None)
        if reason:
            body["reason"] = reason
    else:
        key_name = ""
        problems.append(
            Problem(
                f"{source.path}.status",
                "not-supported",
                f"{given.status!r} is not mapped for bortezomib: completed (a dose given) or "
                "stopped (the course is held)",
            )
        )
    key, key_problems = _key(source, key_name)
    problems += key_problems
    if problems:
        raise FhirProblems(problems)
    return _Draft([source], [key], body, locations)


def _immunotherapy(
    source: _Source, status: Any, therapy: str, body: dict[str, Any], problems: list[Problem]
) -> str:
    if status not in ("completed", "in-progress"):
        problems.append(
            Problem(
                f"{source.path}.status",
                "not-supported",
                f"{status!r} is not mapped: an immunotherapy counts once it is in progress or "
                "completed",
            )
        )
    body |= {"type": "immunotherapy", "therapy": therapy}
    return "immunotherapy"


def _procedure(source: _Source, procedure: Procedure, settings: Settings) -> _Draft:
    patient_id, problems = _common(source, procedure)
    therapy = immunotherapy_of(procedure.code, settings)
    if therapy is None:
        codes = "; ".join(
            f"{t}: {', '.join(c) or 'none configured'}"
            for t, c in settings.fhir_immunotherapy_codes.items()
        )
        problems.append(
            Problem(
                f"{source.path}.code",
                "code-invalid",
                f"{shown(procedure.code)} is not an immunotherapy the service maps ({codes}; "
                "set MONITOR_FHIR_IMMUNOTHERAPY_CODES)",
            )
        )
        raise FhirProblems(problems)
    at, time_location = _moment(source, procedure, "performed", "when it was done", problems)
    body: dict[str, Any] = {"patient_id": patient_id}
    if at is not None:
        body["occurred_at"] = at.isoformat()
    key_name = _immunotherapy(source, procedure.status, therapy, body, problems)
    key, key_problems = _key(source, key_name)
    problems += key_problems
    if problems:
        raise FhirProblems(problems)
    locations = {
        "patient_id": (source.entry, f"{source.path}.subject.reference"),
        "occurred_at": (source.entry, time_location),
    }
    return _Draft([source], [key], body, locations)


# --- validation as POST /v1/events validates ------------------------------------------------


def _validate(draft: _Draft, problems: list[EntryProblem]) -> Event | None:
    body = dict(draft.body)
    body["event_id"] = _event_id(draft.keys)
    references = sorted({r for s in draft.sources if (r := s.reference()) is not None})
    if references:
        body["extra"] = {"fhir_source": references}
    try:
        return parse_event(body)
    except EventValidationError as exc:
        found = []
        for problem in exc.problems:
            entry, location = draft.locations.get(
                problem.field.split(".")[0]
                if problem.field not in draft.locations
                else problem.field,
                (draft.sources[0].entry, draft.sources[0].path),
            )
            found.append(
                EntryProblem(entry, location, "value", f"{problem.field}: {problem.message}")
            )
        problems += found
        if len(draft.sources) > 1:
            problems += _with_group(draft.sources, found)
        return None
