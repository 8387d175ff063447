"""The order check (no HTTP): the draft bortezomib orders of a hook call, read and checked
against what the monitor knows of the patient; the cards recorded for their feedback."""

import datetime as dt
import json
from typing import Any

from fhir.resources.R4B.medication import Medication
from fhir.resources.R4B.medicationrequest import MedicationRequest
from pydantic import ValidationError
from sqlmodel import Session

from monitor.auth.tokens import Principal
from monitor.interop.cds.cards import CourseView, DraftOrder, IssuedCard
from monitor.interop.cds.schemas import CdsHookRequest, CdsService
from monitor.interop.fhir.codes import coding_keys
from monitor.interop.fhir.inbound import patient_id_of
from monitor.interop.fhir.medication import order_is_bortezomib, read_regimen
from monitor.interop.fhir.problems import FhirProblems
from monitor.patients.service import current_decisions, load_patient
from monitor.services import Services
from monitor.storage.models import CdsCardRow
from policies.clearance import clearance


def request_problems(service: CdsService, body: CdsHookRequest) -> list[tuple[str, str]]:
    problems = []
    if body.hook not in service.accepts:
        problems.append(
            ("body.hook", f"{body.hook!r} is not a hook {service.id} answers: "
             + ", ".join(service.accepts))
        )  # fmt: skip
    if body.hook == "order-select" and not body.context.selections:
        problems.append(
            ("body.context.selections", "is required for order-select: the ids of the newly "
             "selected orders (e.g. MedicationRequest/123)")
        )  # fmt: skip
    drafts = body.context.draft_orders
    if drafts.get("resourceType") != "Bundle":
        problems.append(("body.context.draftOrders.resourceType", "must be 'Bundle'"))
    if not isinstance(drafts.get("entry", []), list):
        problems.append(("body.context.draftOrders.entry", "must be a list of entries"))
    return problems


def draft_orders(
    body: CdsHookRequest, services: Services
) -> tuple[list[DraftOrder], list[tuple[str, str]]]:
    """The draft bortezomib MedicationRequests the hook is about (order-select: the selected
    ones), each validated with fhir.resources and its regimen read. Other resources are not
    this service's business and are not parsed."""
    context = body.context
    selections = set(context.selections or []) if body.hook == "order-select" else None
    orders: list[DraftOrder] = []
    problems: list[tuple[str, str]] = []
    medications = _draft_medications(context.draft_orders.get("entry") or [])
    for index, entry in enumerate(context.draft_orders.get("entry") or []):
        where = f"body.context.draftOrders.entry.{index}.resource"
        raw = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(raw, dict) or raw.get("resourceType") != "MedicationRequest":
            continue
        reference = f"MedicationRequest/{raw['id']}" if isinstance(raw.get("id"), str) else None
        if selections is not None and reference not in selections:
            continue
        if not _may_be_bortezomib(raw, services, medications):
            continue  # another drug's order, valid or not, is the EHR's business (the sandbox's
            # R4 drafts, e.g., carry `category` as one object and no `intent` before a pick)
        try:
            request = MedicationRequest.model_validate(raw)
        except ValidationError as exc:
            for err in exc.errors():
                field = ".".join([where, *(str(p) for p in err["loc"])])
                problems.append((field, str(err["msg"])))
            continue
        except (KeyError, TypeError, ValueError) as exc:  # fhir.resources: an unknown type
            problems.append((where, f"is not a valid MedicationRequest: {exc}"))
            continue
        if not order_is_bortezomib(request, services.settings, medications):
            continue
        subject = request.subject.reference if request.subject is not None else None
        if subject and patient_id_of(subject) != context.patient_id:
            problems.append(
                (f"{where}.subject", f"{subject!r} is not the context's patient "
                 f"Patient/{context.patient_id}")
            )  # fmt: skip
            continue
        try:
            regimen = read_regimen(request, services.settings, "MedicationRequest")
            orders.append(DraftOrder(reference, request, regimen))
        except FhirProblems as exc:
            orders.append(DraftOrder(reference, request, None, tuple(str(p) for p in exc.problems)))
    return orders, problems


def _may_be_bortezomib(
    raw: dict[str, Any], services: Services, medications: dict[str, Medication]
) -> bool:
    """Read before the order is validated: could it be bortezomib? Its inline codes decide; a
    medicationReference decides by the Medication it names, and one that cannot be resolved
    here counts as possibly bortezomib, so a malformed bortezomib order is refused, not missed.
    """
    bortezomib = set(services.settings.fhir_bortezomib_codes)
    concept = raw.get("medicationCodeableConcept")
    if isinstance(concept, dict):
        return bool(_raw_coding_keys(concept) & bortezomib)
    reference = raw.get("medicationReference")
    target = reference.get("reference") if isinstance(reference, dict) else None
    if not isinstance(target, str) or not target:
        return False  # no drug named yet: nothing for this service to check
    if target.startswith("#"):
        for contained in raw.get("contained") or []:
            if isinstance(contained, dict) and f"#{contained.get('id')}" == target:
                code = contained.get("code")
                return not isinstance(code, dict) or bool(_raw_coding_keys(code) & bortezomib)
        return True
    found = medications.get(target)
    if found is None:
        return True
    return bool(set(coding_keys(found.code)) & bortezomib)


def _raw_coding_keys(concept: dict[str, Any]) -> set[str]:
    codings = concept.get("coding")
    return {
        f"{c.get('system')}|{c.get('code')}"
        for c in (codings if isinstance(codings, list) else [])
        if isinstance(c, dict)
    }


def _draft_medications(entries: list[Any]) -> dict[str, Medication]:
    """Medications in draftOrders, by `Medication/{id}` and fullUrl: an order may point at one."""
    found: dict[str, Medication] = {}
    for entry in entries:
        raw = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(raw, dict) or raw.get("resourceType") != "Medication":
            continue
        try:
            medication = Medication.model_validate(raw)
        except ValidationError:
            continue  # an unreadable Medication: the order pointing at it is not recognised
        if medication.id:
            found[f"Medication/{medication.id}"] = medication
        if isinstance(entry.get("fullUrl"), str):
            found[entry["fullUrl"]] = medication
    return found


def course_of(services: Services, patient_id: str) -> CourseView:
    """What the monitor knows of the patient: state, clearance, current decisions."""
    with services.sessions() as session:
        record = load_patient(session, patient_id)
        decisions = current_decisions(session, patient_id)
    state = record.state()
    known, pending = record.known, record.pending_events
    return CourseView(
        patient_id=patient_id,
        known=known,
        state=state,
        clearance=clearance(state, pending, services.settings.now(), record.monitoring_error),
        pending_events=pending,
        decisions=decisions,
        policy=services.pack.label,
        tolerance_mg_m2=services.pack.dose_tolerance_mg_m2,
    )


def record_cards(
    session: Session,
    *,
    service: CdsService,
    body: CdsHookRequest,
    course: CourseView,
    cards: list[IssuedCard],
    principal: Principal,
    now: dt.datetime,
) -> None:
    """Each card issued, kept for the feedback that may follow (and the adherence audit)."""
    for card in cards:
        session.add(
            CdsCardRow(
                uuid=card.uuid,
                service_id=service.id,
                hook=body.hook,
                hook_instance=body.hook_instance,
                patient_id=body.context.patient_id,
                unit=_text(course.state.get("unit")),
                order_ref=card.order_ref[:128] if card.order_ref else None,
                indicator=card.indicator,
                rule=card.rule[:8],
                policy=card.policy[:64],
                decision_id=card.decision_id,
                suggestions=json.dumps(list(card.suggestion_ids)),
                principal=principal.name,
                created_at=now,
            )
        )


def _text(value: Any) -> str | None:
    return value[:64] if isinstance(value, str) and value else None
