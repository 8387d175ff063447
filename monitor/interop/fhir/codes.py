"""Codings: how the service recognises codes in FHIR, and says which it saw when it can't."""

from __future__ import annotations

from collections.abc import Iterable

from fhir.resources.R4B.codeableconcept import CodeableConcept
from fhir.resources.R4B.coding import Coding

from monitor.settings import ATC, FHIR_BASE, MEDDRA, RXNORM

SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
NCIT = "http://ncicb.nci.nih.gov/xml/owl/EVS/Thesaurus.owl"
EXTENSION = f"{FHIR_BASE}/StructureDefinition/"
LOINC = "http://loinc.org"

# NCIt concepts of the CTCAE grades, as HL7's value set adverse-event-clinical-research-grades
# (terminology.hl7.org) lists them for 1-5 and CodeX Radiation Therapy's grade value set for 0
NCIT_GRADES = {
    "C75533": 0,  # Absent Adverse Event
    "C41338": 1,  # Grade 1 Mild Adverse Event
    "C41339": 2,  # Grade 2 Moderate Adverse Event
    "C41340": 3,  # Grade 3 Severe Adverse Event
    "C41337": 4,  # Grade 4 Life Threatening or Disabling Adverse Event
    "C48275": 5,  # Grade 5 Death Related to Adverse Event
}
# where an R4 AdverseEvent carries its grade: HL7 Adverse Event Clinical Research R4 Backport
# IG (STU1), extension AdverseEventGrade (valueCodeableConcept, bound to the grades above)
AE_GRADE_EXTENSION = "http://hl7.org/fhir/uv/ae-research-backport-ig/StructureDefinition/ae-grade"

# SNOMED CT routes of administration the contract knows (CONTRACT.md: IV | SC)
ROUTE_CODES = {"47625008": "IV", "34206005": "SC"}
ROUTE_DISPLAY = {"IV": "Intravenous route", "SC": "Subcutaneous route"}
SYSTEM_NAMES = {
    MEDDRA: "MedDRA",
    NCIT: "NCIt",
    RXNORM: "RxNorm",
    ATC: "ATC",
    SNOMED: "SNOMED CT",
    UCUM: "UCUM",
    LOINC: "LOINC",
}


def key(system: str | None, code: str | None) -> str:
    return f"{system or ''}|{code or ''}"


def coding_keys(concept: CodeableConcept | None) -> list[str]:
    """`system|code` of every coding of a concept (none for a text-only concept)."""
    if concept is None:
        return []
    return [key(c.system, c.code) for c in concept.coding or [] if c.code]


def shown(concept: CodeableConcept | None) -> str:
    """The codings (with displays) of a concept as an error message shows them."""
    if concept is None:
        return "nothing"
    parts = [
        f"{c.system or '(no system)'}|{c.code or '(no code)'}"
        + (f" ({c.display})" if c.display else "")
        for c in concept.coding or []
    ]
    if not parts:
        return f"text only ({concept.text!r})" if concept.text else "no coding"
    return ", ".join(parts)


def misplaced_system(concept: CodeableConcept | None, known: Iterable[str]) -> str | None:
    """A coding whose code is a known one but under another system: a common mapping slip."""
    by_code: dict[str, str] = {}
    for entry in known:
        system, _, code = entry.partition("|")
        by_code.setdefault(code, system)
    for coding in (concept.coding or []) if concept is not None else []:
        expected = by_code.get(coding.code or "")
        if expected is not None and coding.system != expected:
            name = SYSTEM_NAMES.get(expected, expected)
            return (
                f"{coding.code} is a {name} code, but its system is "
                f"{coding.system or '(missing)'!r}; {name}'s system is {expected}"
            )
    return None


def route_concept(route: str) -> CodeableConcept:
    code = next(c for c, r in ROUTE_CODES.items() if r == route)
    return CodeableConcept(
        coding=[Coding(system=SNOMED, code=code, display=ROUTE_DISPLAY[route])], text=route
    )
