"""`POST /fhir/r4`: FHIR R4 in, stored exactly as `POST /v1/events` stores events.

A transaction is all or nothing; a batch (or a collection) stores every entry that maps and
answers each entry on its own; a lone resource is one event. Same validation, idempotency
(ids derived from the resources' identifiers) and durability (stored with its outbox row
before the answer) as the JSON API.
"""

from collections.abc import Callable, Mapping
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from fhir.resources.R4B.bundle import Bundle, BundleEntry, BundleEntryResponse
from fhir.resources.R4B.operationoutcome import OperationOutcome
from starlette.concurrency import run_in_threadpool

from monitor.api.guard import BodyTooLargeError
from monitor.api.json_body import InvalidJsonError, parse_json
from monitor.auth.tokens import Principal
from monitor.ingest.service import EventConflictError, IngestResult, IngestStatus, store_events
from monitor.interop.fhir.inbound import EntryProblem, FhirMapping, MappedEvent, map_fhir
from monitor.interop.fhir.problems import IssueCode, Problem, information, operation_outcome
from monitor.operations.metrics import EVENTS_ACCEPTED, EVENTS_DUPLICATE, EVENTS_REJECTED
from monitor.services import Services

FHIR_JSON = "application/fhir+json"
ACCEPTED_TYPES = (FHIR_JSON, "application/json")
ACTION = "POST /fhir/r4"
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


def add_fhir_ingest_routes(
    app: FastAPI, services: Services, require: Callable[..., Callable[..., Principal]]
) -> None:
    @app.post(
        "/fhir/r4",
        summary="FHIR R4 in: a Bundle (transaction, batch, collection) or one resource",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {FHIR_JSON: {"schema": {"type": "object"}}},
            }
        },
        responses={
            200: {"description": "a transaction-response or batch-response Bundle"},
            201: {"description": "a lone resource, stored as an event"},
            409: {"description": "an event id reused with another body (OperationOutcome)"},
            413: {"description": "body too large"},
            415: {"description": "not FHIR JSON"},
            422: {"description": "unmappable resources (OperationOutcome naming each)"},
        },
    )
    async def post_fhir(
        request: Request, principal: Annotated[Principal, Depends(require("ingest"))]
    ) -> JSONResponse:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type not in ACCEPTED_TYPES:
            return outcome_response(
                415,
                "not-supported",
                f"Content-Type must be {FHIR_JSON} (or application/json), not {content_type!r}",
            )
        try:
            raw = await request.body()  # bounded as it streams (guard)
        except BodyTooLargeError as exc:
            return outcome_response(413, "too-costly", str(exc.detail))
        try:
            payload = parse_json(raw)
        except InvalidJsonError as exc:
            return outcome_response(400, "structure", f"the body is not valid JSON: {exc}")
        return await run_in_threadpool(accept, payload, principal)

    def accept(payload: Any, principal: Principal) -> JSONResponse:
        mapping = map_fhir(payload, services.settings)
        if mapping.kind in ("resource", "transaction"):
            status, what, resource = _all_or_nothing(mapping)
        else:
            status, what, resource = _each_entry(mapping)
        services.audit.record(principal, ACTION, what, status, services.settings.now())
        return fhir_response(status, resource)

    def _store(events: list[MappedEvent]) -> IngestResult:
        result = store_events(services.sessions, [m.event for m in events], services.settings.now())
        accepted = sum(1 for _, s in result.statuses if s == "accepted")
        EVENTS_ACCEPTED.inc(accepted)
        EVENTS_DUPLICATE.inc(len(result.statuses) - accepted)
        if result.patients and services.dispatcher is not None:
            services.dispatcher.enqueue(result.patients)  # after the commit (outbox)
        return result

    def _all_or_nothing(mapping: FhirMapping) -> Answer:
        """A transaction or a lone resource: every entry maps and stores, or nothing does."""
        if mapping.problems:
            EVENTS_REJECTED.inc(max(len(mapping.events), 1))
            return 422, f"{mapping.entry_count} entries", _outcome(mapping.problems, True)
        try:
            result = _store(mapping.events) if mapping.events else None
        except EventConflictError as exc:
            EVENTS_REJECTED.inc(len(mapping.events))
            conflicts = _conflicts(mapping, exc.event_ids)
            return 409, f"{mapping.entry_count} entries", _outcome(conflicts, True)
        statuses = dict(result.statuses) if result is not None else {}
        if mapping.kind == "resource":
            event = mapping.events[0].event if mapping.events else None
            status = (
                201 if event is not None and statuses.get(event.event_id) == "accepted" else 200
            )
            what = (
                f"{'stored' if status == 201 else 'already stored'} as event {event.event_id}"
                if event is not None
                else "nothing to store"
            )
            return status, "1 resource", information(what)
        bundle = _response_bundle("transaction-response", mapping, statuses, {})
        return 200, f"{mapping.entry_count} entries", bundle

    def _each_entry(mapping: FhirMapping) -> Answer:
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
                result = _store(pending)
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
