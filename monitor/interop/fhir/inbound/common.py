"""What the inbound mapping's modules share: the result types (`FhirMapping`, `MappedEvent`,
`EntryProblem`), one parsed resource (`_Source`) and an event before validation (`_Draft`), and
the helpers every resource mapper uses: the patient reference, times, event keys, the service's
extensions, reason texts, the immunotherapy an administration or procedure records.

A leading underscore here means private to the `inbound` package, not to this module.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from fhir.resources.R4B.codeableconcept import CodeableConcept
from fhir.resources.R4B.extension import Extension
from fhir.resources.R4B.reference import Reference
from fhir_core.fhirabstractmodel import FHIRAbstractModel

from monitor.interop.fhir.codes import EXTENSION
from monitor.interop.fhir.problems import IssueCode, Problem
from policies.events import Event

BundleKind = Literal["transaction", "batch", "collection", "resource"]
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
        if not isinstance(identifiers, list):  # AdverseEvent: one identifier, not a list
            identifiers = [identifiers]
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


def _common(
    source: _Source, resource: Any, subjects: _SubjectResolver
) -> tuple[str, list[Problem]]:
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
        found, subject_problems = subjects.patient_id(source, subject)
        problems += subject_problems
        if found is not None:
            patient_id = found
    return patient_id, problems


class _SubjectResolver(Protocol):
    """How `_common` reads a subject (`subject._Subjects`: the Bundle's Patients, the key)."""

    def patient_id(
        self, source: _Source, subject: Reference
    ) -> tuple[str | None, list[Problem]]: ...


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


def _reason_text(concept: CodeableConcept | None) -> str | None:
    if concept is None:
        return None
    if concept.text:
        return concept.text
    for coding in concept.coding or []:
        if coding.display or coding.code:
            return coding.display or coding.code
    return None


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
