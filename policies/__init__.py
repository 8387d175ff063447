"""The clinical core: events in, decisions out. Pure: standard library and pydantic only.

from policies import evaluate, builtin_pack
decisions = evaluate(builtin_pack("default"), events, until)
"""

from policies.decisions import Decision
from policies.engine import (
    ConflictingEventError,
    FoldError,
    PatientOutcome,
    evaluate,
    evaluate_patient,
    unique_events,
)
from policies.events import Event, EventValidationError, FieldProblem, parse_event
from policies.packs import DEFAULT, LABEL, PackError, PolicyPack, builtin_pack, pack_from_mapping

__all__ = [
    "DEFAULT",
    "LABEL",
    "ConflictingEventError",
    "Decision",
    "Event",
    "EventValidationError",
    "FieldProblem",
    "FoldError",
    "PackError",
    "PatientOutcome",
    "PolicyPack",
    "builtin_pack",
    "evaluate",
    "evaluate_patient",
    "pack_from_mapping",
    "parse_event",
    "unique_events",
]
