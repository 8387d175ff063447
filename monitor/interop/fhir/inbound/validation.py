"""Drafts validated exactly as `POST /v1/events` validates an event, each with its id derived
from its resources' keys (a Bundle sent again maps to the same ids); a contract problem is
reported at the FHIR element its field came from.
"""

from __future__ import annotations

import hashlib

from monitor.interop.fhir.inbound.common import EntryProblem, _Draft
from monitor.interop.fhir.inbound.observation import _with_group
from policies.events import Event, EventValidationError, parse_event


def _event_id(keys: list[str]) -> str:
    return "fhir-" + hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()[:32]


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
