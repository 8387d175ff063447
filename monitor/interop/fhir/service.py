"""FHIR at the edge (no HTTP): FHIR R4 in, stored exactly as `POST /v1/events` stores events
(a transaction all or nothing; a batch or collection entry by entry; a lone resource one event),
and what the `$monitor-summary` Bundle is built from."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from fastapi.responses import JSONResponse
from fhir.resources.R4B.bundle import Bundle, BundleEntry, BundleEntryResponse
from fhir.resources.R4B.operationoutcome import OperationOutcome
from sqlmodel import Session, col, select

from monitor.alerts.service import alert_view
from monitor.auth.tokens import Principal
from monitor.ingest.service import (
    EventConflictError,
    IngestResult,
    IngestStatus,
    accept_events,
    dispatch,
)
from monitor.interop.fhir.inbound import EntryProblem, FhirMapping, MappedEvent, map_fhir
from monitor.interop.fhir.problems import IssueCode, Problem, information, operation_outcome
from monitor.operations.metrics import EVENTS_REJECTED
from monitor.patients.service import current_decisions, load_patient
from monitor.services import Services
from monitor.storage.models import AlertAckRow, AlertRow, EventRow

FHIR_JSON = "application/fhir+json"
ACTION = "POST /fhir/r4"
IN_CHUNK = 500  # event ids per `IN (...)`: well under any driver's parameter limit
Answer = tuple[int, str, Bundle | OperationOutcome]  # status, what the audit log says, body


def fhir_response(status: int, resource: Bundle | OperationOutcome) -> JSONResponse:
    return JSONResponse(
        status_code=status,
        content=resource.model_dump(mode="json", by_alias=True, exclude_none=True),
        media_type=FHIR_JSON,
    )


def outcome_response(
    status: int, code: IssueCode, message: str, location: str = "request"
) -> JSONResponse:
    return fhir_response(status, operation_outcome([Problem(location, code, message)]))


def accept_fhir(
    services: Services, payload: Any, principal: Principal, action: str = ACTION
) -> JSONResponse:
    """Map, store, audit and answer (the FHIR twin of `POST /v1/events`)."""
    status, resource, _ = _accept(services, payload, principal, action)
    return fhir_response(status, resource)


def create_resource(
    services: Services, resource_type: str, payload: Any, principal: Principal, base_url: str
) -> JSONResponse:
    """FHIR's create (`POST /fhir/r4/{type}`): a lone resource of that type, stored exactly as
    `accept_fhir` stores one, answered 201 with its `Location` and the resource, its `id` the
    event's. Sent again, nothing new is stored and the answer is 200 with the same Location
    (as FHIR's conditional create answers a match)."""
    action = f"{ACTION}/{resource_type}"
    given = payload.get("resourceType") if isinstance(payload, dict) else None
    if given != resource_type:
        said = repr(given) if len(repr(given)) <= 80 else repr(given)[:77] + "..."
        why = f"{said}: {ACTION}/{resource_type} creates {resource_type} resources"
        outcome = operation_outcome([Problem("resourceType", "invalid", why)])
        services.audit.record(principal, action, "1 resource", 400, services.settings.now())
        return fhir_response(400, outcome)
    status, resource, mapping = _accept(services, payload, principal, action)
    if status not in (200, 201) or not mapping.events:
        return fhir_response(status, resource)
    event_id = mapping.events[0].event.event_id
    return JSONResponse(
        status_code=status,
        content={**payload, "id": event_id},
        media_type=FHIR_JSON,
        headers={"Location": f"{base_url}/fhir/r4/{resource_type}/{event_id}"},
    )


def _accept(
    services: Services, payload: Any, principal: Principal, action: str
) -> tuple[int, Bundle | OperationOutcome, FhirMapping]:
    mapping = map_fhir(payload, services.settings)
    if not services.pack.patient_reports_advise_only:
        mapping = _without_patient_reports(mapping, services.pack.label)
    if mapping.kind in ("resource", "transaction"):
        status, what, resource = _all_or_nothing(services, mapping)
    else:
        status, what, resource = _each_entry(services, mapping)
    services.audit.record(principal, action, what, status, services.settings.now())
    return status, resource, mapping


def _without_patient_reports(mapping: FhirMapping, pack: str) -> FhirMapping:
    """A patient's report (a QuestionnaireResponse) is refused where the pack would take it as
    a clinician's grading (version 1, POLICY V9 off): it must never stop a drug by itself."""
    kept: list[MappedEvent] = []
    refused: list[EntryProblem] = []
    for mapped in mapping.events:
        if mapped.event.type != "assessment" or mapped.event.source != "patient":
            kept.append(mapped)
            continue
        entry = mapped.entries[0] if mapped.entries else None
        where = f"Bundle.entry[{entry}].resource" if entry is not None else "QuestionnaireResponse"
        refused.append(
            EntryProblem(entry, where, "not-supported", f"patient reports are taken only under a "
                         f"pack where they advise and clinicians decide (POLICY V9); this "
                         f"service decides with {pack}, which would treat it as a clinician's "
                         "grading")
        )  # fmt: skip
    if not refused:
        return mapping
    return FhirMapping(
        mapping.kind, mapping.entry_count, kept, [*mapping.problems, *refused], mapping.consumed
    )


def _store(services: Services, events: list[MappedEvent]) -> IngestResult:
    result = accept_events(services, [m.event for m in events], services.settings.now())
    dispatch(services, result)
    return result


def _all_or_nothing(services: Services, mapping: FhirMapping) -> Answer:
    """A transaction or a lone resource: every entry maps and stores, or nothing does."""
    if mapping.problems:
        EVENTS_REJECTED.inc(max(len(mapping.events), 1))
        return 422, f"{mapping.entry_count} entries", _outcome(mapping.problems, True)
    try:
        result = _store(services, mapping.events) if mapping.events else None
    except EventConflictError as exc:
        EVENTS_REJECTED.inc(len(mapping.events))
        conflicts = _conflicts(mapping, exc.event_ids)
        return 409, f"{mapping.entry_count} entries", _outcome(conflicts, True)
    statuses = dict(result.statuses) if result is not None else {}
    if mapping.kind == "resource":
        event = mapping.events[0].event if mapping.events else None
        status = 201 if event is not None and statuses.get(event.event_id) == "accepted" else 200
        what = (
            f"{'stored' if status == 201 else 'already stored'} as event {event.event_id}"
            if event is not None
            else "nothing to store"
        )
        return status, "1 resource", information(what)
    bundle = _response_bundle("transaction-response", mapping, statuses, {})
    return 200, f"{mapping.entry_count} entries", bundle


def _each_entry(services: Services, mapping: FhirMapping) -> Answer:
    """A batch or collection: each entry stands alone; failed ones say why."""
    if any(p.entry is None for p in mapping.problems):  # the Bundle itself is wrong
        return 422, f"{mapping.entry_count} entries", _outcome(mapping.problems, True)
    failed: dict[int, list[EntryProblem]] = {}
    for problem in mapping.problems:
        assert problem.entry is not None
        failed.setdefault(problem.entry, []).append(problem)
    pending = list(mapping.events)
    statuses: dict[str, IngestStatus] = {}
    while pending:
        try:
            result = _store(services, pending)
        except EventConflictError as exc:
            # those entries fail; the rest are stored on the next pass
            for problem in _conflicts(mapping, exc.event_ids):
                assert problem.entry is not None
                failed.setdefault(problem.entry, []).append(problem)
            EVENTS_REJECTED.inc(len(exc.event_ids))
            pending = [m for m in pending if m.event.event_id not in exc.event_ids]
            continue
        statuses.update(result.statuses)
        break
    EVENTS_REJECTED.inc(len(failed))
    bundle = _response_bundle("batch-response", mapping, statuses, failed)
    return 200, f"{mapping.entry_count} entries, {len(failed)} failed", bundle


def _conflicts(mapping: FhirMapping, event_ids: list[str]) -> list[EntryProblem]:
    problems = []
    for mapped in mapping.events:
        if mapped.event.event_id not in event_ids:
            continue
        for entry in mapped.entries or (None,):
            problems.append(
                EntryProblem(
                    entry,
                    f"Bundle.entry[{entry}].resource" if entry is not None else "resource",
                    "conflict",
                    f"it maps to event {mapped.event.event_id}, already stored with other "
                    "content: a correction of a recorded resource is not applied automatically; "
                    "send the corrected grading as a new resource (new identifier)",
                )
            )
    return problems


def _outcome(problems: list[EntryProblem], nothing_stored: bool) -> OperationOutcome:
    described = [
        Problem(
            p.location,
            p.code,
            p.message,
        )
        for p in problems
    ]
    outcome = operation_outcome(described)
    if nothing_stored:
        outcome.issue.append(information("nothing was stored").issue[0])
    return outcome


def _response_bundle(
    kind: str,
    mapping: FhirMapping,
    statuses: Mapping[str, str],
    failed: dict[int, list[EntryProblem]],
) -> Bundle:
    by_entry: dict[int, str] = {}
    for mapped in mapping.events:
        for entry in mapped.entries:
            by_entry[entry] = mapped.event.event_id
    entries = []
    for index in range(mapping.entry_count):
        if index in failed:
            conflict = all(p.code == "conflict" for p in failed[index])
            response = BundleEntryResponse(
                status="409 Conflict" if conflict else "422 Unprocessable Entity",
                outcome=_outcome(failed[index], nothing_stored=False),
            )
        elif index in by_entry:
            event_id = by_entry[index]
            accepted = statuses.get(event_id) == "accepted"
            response = BundleEntryResponse(
                status="201 Created" if accepted else "200 OK",
                outcome=information(
                    f"{'stored' if accepted else 'already stored'} as event {event_id}"
                ),
            )
        else:
            response = BundleEntryResponse(
                status="200 OK",
                outcome=information(mapping.consumed.get(index, "nothing to store")),
            )
        entries.append(BundleEntry(response=response))
    return Bundle(type=kind, entry=entries)


Loaded = tuple[
    dict[str, Any], list[dict[str, Any]], dict[str, dict[str, Any]], list[dict[str, Any]]
]


def load_summary(session: Session, patient_id: str) -> Loaded | None:
    """State, current decisions, their trigger events and every alert (with its ack); None
    for a patient the service has no event of (as `GET /v1/patients/{id}`)."""
    record = load_patient(session, patient_id)
    if not record.known:
        return None
    state: dict[str, Any] = json.loads(record.row.state) if record.row is not None else {}
    decisions = current_decisions(session, patient_id)
    wanted = sorted({d["trigger"] for d in decisions if not d["trigger"].startswith("timer:")})
    triggers: dict[str, dict[str, Any]] = {}
    for start in range(0, len(wanted), IN_CHUNK):
        for event_id, body in session.execute(
            select(col(EventRow.event_id), col(EventRow.body)).where(
                col(EventRow.patient_id) == patient_id,
                col(EventRow.event_id).in_(wanted[start : start + IN_CHUNK]),
            )
        ).all():
            triggers[event_id] = json.loads(body)
    alerts = [
        alert_view(alert, ack)
        for alert, ack in session.execute(
            select(AlertRow, AlertAckRow)
            .outerjoin(AlertAckRow, col(AlertAckRow.alert_id) == col(AlertRow.id))
            .where(col(AlertRow.patient_id) == patient_id)
            .order_by(col(AlertRow.id))
        ).all()
    ]
    return state, decisions, triggers, alerts
