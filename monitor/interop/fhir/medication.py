"""Bortezomib orders and doses in FHIR: which medication, what dose, route and schedule.

Shared by the ingest mapping (the `inbound` package) and the CDS Hooks order check, so both read a
MedicationRequest the same way, and the CDS `update` suggestion writes one the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from fhir.resources.R4B.codeableconcept import CodeableConcept
from fhir.resources.R4B.dosage import Dosage, DosageDoseAndRate
from fhir.resources.R4B.medication import Medication
from fhir.resources.R4B.medicationadministration import MedicationAdministration
from fhir.resources.R4B.medicationrequest import MedicationRequest
from fhir.resources.R4B.quantity import Quantity
from fhir.resources.R4B.reference import Reference
from fhir.resources.R4B.timing import Timing, TimingRepeat

from monitor.interop.fhir.codes import ROUTE_CODES, SNOMED, UCUM, coding_keys, route_concept, shown
from monitor.interop.fhir.problems import FhirProblems, Problem
from monitor.settings import Settings

Route = Literal["IV", "SC"]
Schedule = Literal["twice_weekly", "weekly"]
DOSE_UNIT = "mg/m2"
GIVEN_UNIT = "mg"  # an administration may give its dose in mg (D6 converts it at the BSA)
# Timing.repeat (frequency per 1 week) of the contract's schedules
SCHEDULE_FREQUENCY: dict[Schedule, int] = {"weekly": 1, "twice_weekly": 2}


@dataclass(frozen=True, slots=True)
class Regimen:
    """What an order or administration says; a part it does not give is None."""

    dose_mg_m2: float | None
    route: Route | None
    schedule: Schedule | None


def medication_concept(
    resource: MedicationRequest | MedicationAdministration,
    where: str,
    bundle_medications: dict[str, Medication] | None = None,
) -> CodeableConcept:
    """The medication's code: inline, or from a contained (or same-bundle) Medication."""
    if resource.medicationCodeableConcept is not None:
        return resource.medicationCodeableConcept
    reference: Reference | None = resource.medicationReference
    if reference is None or not reference.reference:
        raise FhirProblems(
            [Problem(f"{where}.medication[x]", "required", "is required: the drug, coded")]
        )
    target = reference.reference
    found: Medication | None = None
    if target.startswith("#"):
        for item in resource.contained or []:
            if isinstance(item, Medication) and item.id == target[1:]:
                found = item
    elif bundle_medications is not None:
        found = bundle_medications.get(target)
    if found is None or found.code is None:
        raise FhirProblems(
            [
                Problem(
                    f"{where}.medicationReference",
                    "not-supported",
                    f"{target!r} does not resolve to a coded Medication contained in the "
                    "resource or in the same Bundle",
                )
            ]
        )
    return found.code


def is_bortezomib(concept: CodeableConcept | None, settings: Settings) -> bool:
    return bool(set(coding_keys(concept)) & set(settings.fhir_bortezomib_codes))


def order_is_bortezomib(
    request: MedicationRequest,
    settings: Settings,
    bundle_medications: dict[str, Medication] | None = None,
) -> bool:
    """For the CDS order check: is this draft order bortezomib (unresolvable: no)?"""
    try:
        concept = medication_concept(request, "MedicationRequest", bundle_medications)
        return is_bortezomib(concept, settings)
    except FhirProblems:
        return False


def immunotherapy_of(concept: CodeableConcept | None, settings: Settings) -> str | None:
    """The contract's `therapy` for a coded drug or procedure, if it is one."""
    known = {
        code: therapy
        for therapy, codes in settings.fhir_immunotherapy_codes.items()
        for code in codes
    }
    for coding_key in coding_keys(concept):
        if coding_key in known:
            return known[coding_key]
    return None


def read_dose(quantity: Quantity | None, where: str) -> tuple[float | None, list[Problem]]:
    """A dose in mg/m2 (UCUM); an absolute dose (mg) is refused: an order works per m²."""
    value, _, problems = _read_quantity(quantity, where, (DOSE_UNIT,))
    return value, problems


def read_given_dose(
    quantity: Quantity | None, where: str
) -> tuple[str | None, float | None, list[Problem]]:
    """A dose given: in mg/m2 (`dose_mg_m2`) or in mg (`dose_mg`, which D6 converts at the
    body surface area); (the event field, the value, problems)."""
    value, unit, problems = _read_quantity(quantity, where, (DOSE_UNIT, GIVEN_UNIT))
    if value is None:
        return None, None, problems
    return ("dose_mg" if unit == GIVEN_UNIT else "dose_mg_m2"), value, problems


def _read_quantity(
    quantity: Quantity | None, where: str, units: tuple[str, ...]
) -> tuple[float | None, str | None, list[Problem]]:
    if quantity is None:
        return None, None, []
    unit = quantity.code or quantity.unit
    problems: list[Problem] = []
    if quantity.system is not None and quantity.system != UCUM:
        problems.append(
            Problem(f"{where}.system", "code-invalid", f"{quantity.system!r} is not UCUM ({UCUM})")
        )
    if unit not in units:
        expected = " or ".join(units)
        why = (
            "the dose must be per body surface area"
            if units == (DOSE_UNIT,)
            else "the dose per body surface area, or in mg"
        )
        problems.append(
            Problem(f"{where}.code", "value", f"unit {unit!r} is not {expected} (UCUM): {why}")
        )
    if quantity.value is None:
        problems.append(Problem(f"{where}.value", "required", "is required"))
    if problems:
        return None, None, problems
    assert quantity.value is not None
    return float(quantity.value), unit, []


def read_route(concept: CodeableConcept | None, where: str) -> tuple[Route | None, list[Problem]]:
    if concept is None:
        return None, []
    for coding in concept.coding or []:
        if coding.system == SNOMED and coding.code in ROUTE_CODES:
            route: Route = "IV" if ROUTE_CODES[coding.code] == "IV" else "SC"
            return route, []
    return None, [
        Problem(
            where,
            "code-invalid",
            f"{shown(concept)} is not a route the service knows: SNOMED CT 47625008 "
            "(intravenous) or 34206005 (subcutaneous)",
        )
    ]


def read_schedule(timing: Timing | None, where: str) -> tuple[Schedule | None, list[Problem]]:
    """Weekly or twice weekly, from `repeat` frequency per 1 week."""
    repeat = timing.repeat if timing is not None else None
    if repeat is None or (repeat.frequency is None and repeat.period is None):
        return None, []
    frequency, period, unit = repeat.frequency or 1, repeat.period, repeat.periodUnit
    if period is not None and float(period) == 1 and unit == "wk":
        for schedule, per_week in SCHEDULE_FREQUENCY.items():
            if frequency == per_week:
                return schedule, []
    return None, [
        Problem(
            f"{where}.repeat",
            "value",
            f"{frequency} per {period} {unit} is not a bortezomib schedule the service knows: "
            "frequency 1 (weekly) or 2 (twice weekly) per period 1 wk",
        )
    ]


def read_regimen(request: MedicationRequest, settings: Settings, where: str) -> Regimen:
    """Dose, route and schedule of an order's (single) dosage instruction."""
    instructions = request.dosageInstruction or []
    if not instructions:
        return Regimen(None, None, None)
    if len(instructions) > 1:
        raise FhirProblems(
            [
                Problem(
                    f"{where}.dosageInstruction",
                    "not-supported",
                    f"{len(instructions)} dosage instructions: one regimen per order is "
                    "expected (a split would be ignored otherwise)",
                )
            ]
        )
    dosage = instructions[0]
    at = f"{where}.dosageInstruction[0]"
    quantity = None
    if dosage.doseAndRate:
        quantity = dosage.doseAndRate[0].doseQuantity
    dose, problems = read_dose(quantity, f"{at}.doseAndRate[0].doseQuantity")
    route, route_problems = read_route(dosage.route, f"{at}.route")
    schedule, schedule_problems = read_schedule(dosage.timing, f"{at}.timing")
    problems += route_problems + schedule_problems
    if problems:
        raise FhirProblems(problems)
    return Regimen(dose, route, schedule)


def regimen_dosage(dose_mg_m2: float, route: Route, schedule: Schedule) -> Dosage:
    """A Dosage that `read_regimen` reads back as the same regimen."""
    return Dosage(
        text=f"bortezomib {dose_mg_m2:g} {DOSE_UNIT} {route} {schedule.replace('_', ' ')}",
        timing=Timing(
            repeat=TimingRepeat(frequency=SCHEDULE_FREQUENCY[schedule], period=1, periodUnit="wk")
        ),
        route=route_concept(route),
        doseAndRate=[
            DosageDoseAndRate(
                doseQuantity=Quantity(value=dose_mg_m2, unit=DOSE_UNIT, system=UCUM, code=DOSE_UNIT)
            )
        ],
    )
