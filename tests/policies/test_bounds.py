"""Issue 11, "accepted means processable", in the pure core: any event the models accept can be
folded and replayed, and its decisions serialised and read back, whatever its values.

The events are generated from the models themselves (`tests.common.event_strategies`: each event
type's own JSON schema), with clinical times at both ends of the range and beyond. Whatever the
models refuse is skipped; whatever they accept must go through.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policies import DEFAULT, LABEL, Decision, EventValidationError, evaluate, parse_event
from policies.engine import FoldError, evaluate_patient
from policies.events import (
    EARLIEST,
    LATEST,
    Administration,
    Assessment,
    CourseEnd,
    Enrollment,
    Event,
    Immunotherapy,
    TreatmentChange,
    canonical_body,
)
from tests.common.event_strategies import schema_bodies

MODELS = (Enrollment, Assessment, Administration, TreatmentChange, Immunotherapy, CourseEnd)
GRADES = st.fixed_dictionaries(
    {},
    optional={
        "sensory": st.integers(0, 4),
        "motor": st.integers(0, 4),
        "pain": st.integers(0, 3),
        "autonomic": st.integers(0, 4),
    },
).filter(bool)
# Drawn grade objects are mostly refused (nulls, 2.0 for 2): half of the assessments keep the
# rest of their drawn body with grades that pass, so folds see graded courses too.
ASSESSMENTS = st.one_of(
    schema_bodies(Assessment),
    st.tuples(schema_bodies(Assessment), GRADES).map(lambda pair: {**pair[0], "grades": pair[1]}),
)
ANY_EVENT = st.one_of(ASSESSMENTS, ASSESSMENTS, *(schema_bodies(model) for model in MODELS))
ENROLMENT = schema_bodies(Enrollment)


def one_patient(bodies: list[dict[str, Any]], patient: str = "PB") -> list[Event]:
    """The accepted ones among `bodies`, as one patient's events with distinct ids."""
    events = []
    for number, body in enumerate(bodies):
        candidate = {**body, "patient_id": patient, "event_id": f"b-{number}"}
        try:
            events.append(parse_event(candidate))
        except EventValidationError:
            continue
    return events


BOUNDS_SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@BOUNDS_SETTINGS
@given(enrolment=ENROLMENT, rest=st.lists(ANY_EVENT, max_size=6))
def test_any_accepted_timeline_folds_replays_and_serialises(
    enrolment: dict[str, Any], rest: list[dict[str, Any]]
) -> None:
    events = one_patient([enrolment, *rest])
    for event in events:
        # the stored form parses back to the same event
        assert parse_event(canonical_body(event)) == event
    for pack in (DEFAULT, LABEL):
        # at the latest event, and at the far end of the range (every timer fires)
        for until in (None, LATEST + dt.timedelta(days=400)):
            decisions = evaluate(pack, events, until)
            for decision in decisions:
                text = decision.model_dump_json(exclude_none=True)
                assert Decision.model_validate_json(text) == decision
                json.loads(text)


@BOUNDS_SETTINGS
@given(body=ANY_EVENT)
def test_what_the_models_accept_they_accept_again_as_json(body: dict[str, Any]) -> None:
    """Accepted as an object means accepted as the JSON text a file or request carries."""
    try:
        event = parse_event(body)
    except EventValidationError:
        return
    assert parse_event(json.dumps(body)) == event
    assert parse_event(canonical_body(event)) == event


def test_the_generator_reaches_the_edges() -> None:
    """The strategy is not vacuous: accepted events include both ends of the time range and
    the largest cycle (so the properties above do test the bounds)."""
    seen: set[str] = set()

    @settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
    @given(body=schema_bodies(Assessment))
    def collect(body: dict[str, Any]) -> None:
        try:
            event = parse_event(body)
        except EventValidationError:
            return
        assert isinstance(event, Assessment)
        utc = event.occurred_at.astimezone(dt.UTC)
        if utc == EARLIEST:
            seen.add("earliest")
        if utc == LATEST:
            seen.add("latest")
        if event.cycle == 100:
            seen.add("cycle-100")

    collect()
    assert {"earliest", "latest"} <= seen, seen


# --- a fold that fails names its event ------------------------------------------------------


def fail_at(monkeypatch: pytest.MonkeyPatch, event_id: str) -> None:
    """Make the engine's assessment rule raise, as a defect would, at one event."""
    import policies.engine as engine

    original = engine._assessment

    def failing(fold: Any, course: Any, event: Assessment) -> None:
        if event.event_id == event_id:
            raise OverflowError("date value out of range")
        original(fold, course, event)

    monkeypatch.setattr(engine, "_assessment", failing)


def test_a_failing_rule_is_a_fold_error_naming_the_event(monkeypatch: pytest.MonkeyPatch) -> None:
    """Defence in depth: should a rule still raise, the error names the event (so it can be
    quarantined) and keeps the cause."""
    fail_at(monkeypatch, "boom")
    events = [
        parse_event(b)
        for b in (
            _body("enrollment", "e0", "2026-01-05T09:00:00Z"),
            _body("assessment", "ok", "2026-01-26T09:00:00Z"),
            _body("assessment", "boom", "2026-02-16T09:00:00Z"),
        )
    ]
    with pytest.raises(FoldError) as caught:
        evaluate_patient(DEFAULT, "PB", events, dt.datetime(2026, 3, 1, tzinfo=dt.UTC))
    assert caught.value.event_id == "boom"
    assert str(caught.value) == "the fold failed at event boom"
    assert isinstance(caught.value.__cause__, OverflowError)


def test_a_failing_timer_names_the_event_after_which_it_fired(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import policies.engine as engine

    def failing(*_args: Any) -> None:
        raise ArithmeticError("timer")

    monkeypatch.setattr(engine, "d5_reassessment_overdue", failing)
    events = [parse_event(_body("enrollment", "e0", "2026-01-05T09:00:00Z"))]
    with pytest.raises(FoldError) as caught:
        evaluate_patient(DEFAULT, "PB", events, dt.datetime(2026, 6, 1, tzinfo=dt.UTC))
    assert caught.value.event_id == "e0"
    assert str(caught.value) == "the fold failed at a timer after event e0"


def _body(kind: str, event_id: str, at: str) -> dict[str, Any]:
    base: dict[str, Any] = {
        "event_id": event_id,
        "type": kind,
        "patient_id": "PB",
        "occurred_at": at,
    }
    if kind == "enrollment":
        return base | {
            "drug": "bortezomib",
            "dose_mg_m2": 1.3,
            "route": "SC",
            "schedule": "weekly",
        }
    return base | {"grades": {"sensory": 1}}
