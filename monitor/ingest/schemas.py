"""What `POST /v1/events` takes and answers."""

import json
from typing import Any

from pydantic import BaseModel, TypeAdapter

from monitor.ingest.service import IngestStatus
from policies.events import Event, EventValidationError, parse_event


class EventBatch(BaseModel):
    """`{"events": [...]}`: up to `max_batch_events` events, stored all or nothing."""

    events: list[Event]


# The request body as the OpenAPI document shows it: one event or a batch (the handler reads
# the body itself, to list every problem of every event at once).
BATCH_SCHEMA = TypeAdapter(Event | EventBatch).json_schema(
    ref_template="#/components/schemas/{model}"
)


class EventStatus(BaseModel):
    event_id: str
    status: IngestStatus


class EventsAccepted(BaseModel):
    """202: every event is stored (new or already there) and its processing queued."""

    accepted: int
    duplicates: int
    results: list[EventStatus]


class EventProblem(BaseModel):
    field: str
    message: str


class InvalidEvent(BaseModel):
    """One refused event (`index` null: the batch itself), with every problem it has."""

    index: int | None
    event_id: Any = None
    problems: list[EventProblem]


class EventsRefused(BaseModel):
    """422: nothing was stored; every problem of every event is listed."""

    detail: str
    errors: list[InvalidEvent]


Problems = list[dict[str, Any]]


def events_of(payload: Any, max_batch: int) -> tuple[list[Event], Problems | None]:
    """One event or `{"events": [...]}`, validated; every problem of every event listed."""
    if isinstance(payload, dict) and "events" in payload and "type" not in payload:
        extra = sorted(set(payload) - {"events"})
        raw = payload["events"]
        if extra:
            return [], _batch_problems([(k, "unknown field of a batch") for k in extra])
        if not isinstance(raw, list) or not 1 <= len(raw) <= max_batch:
            return [], _batch_problems([("events", f"must be a list of 1 to {max_batch} events")])
    else:
        raw = [payload]
    events: list[Event] = []
    problems: Problems = []
    for index, item in enumerate(raw):
        try:
            # a decoded JSON string must not be parsed again as JSON text: a double-encoded
            # body ("{\"event_id\": ...}") is a string, not an event
            events.append(parse_event(json.dumps(item) if isinstance(item, str) else item))
        except EventValidationError as exc:
            problems.append(
                {
                    "index": index,
                    "event_id": item.get("event_id") if isinstance(item, dict) else None,
                    "problems": [{"field": p.field, "message": p.message} for p in exc.problems],
                }
            )
    return events, (problems or None)


def _batch_problems(problems: list[tuple[str, str]]) -> Problems:
    """A problem of the batch itself (index null), not of one of its events."""
    return [{"index": None, "problems": [{"field": f, "message": m} for f, m in problems]}]
