"""Event validation (CONTRACT.md, "Events"): every field rule, with the exact field path and a
message that names the value and says why; valid events of every type round-trip."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from policies.engine import ConflictingEventError, unique_events
from policies.events import (
    EVENT_TYPES,
    Administration,
    Assessment,
    CourseEnd,
    Enrollment,
    EventValidationError,
    FieldProblem,
    Immunotherapy,
    TreatmentChange,
    canonical_body,
    parse_event,
)

WHEN = "2026-03-02T08:40:00+01:00"

ENROLLMENT: dict[str, Any] = {
    "event_id": "u7-0001",
    "type": "enrollment",
    "patient_id": "P-0017",
    "occurred_at": WHEN,
    "drug": "bortezomib",
    "dose_mg_m2": 1.3,
    "route": "SC",
    "schedule": "weekly",
    "cycle_length_days": 21,
    "age": 67,
    "risk_factors": ["diabetes", "prior_thalidomide"],
    "concomitant": ["dexamethasone", "thalidomide"],
    "baseline": {"sensory": 1},
    "unit": "u7",
}
ASSESSMENT: dict[str, Any] = {
    "event_id": "u7-0042",
    "type": "assessment",
    "patient_id": "P-0017",
    "occurred_at": WHEN,
    "cycle": 3,
    "grades": {"sensory": 2, "pain": 1},
    "findings": {"ncs_pattern": "axonal", "mrc_sum_score": 58, "rankin": 1},
    "source": "nurse",
    "assessor": "RN 12",
}
ADMINISTRATION: dict[str, Any] = {
    "event_id": "u7-0043",
    "type": "administration",
    "patient_id": "P-0017",
    "occurred_at": WHEN,
    "dose_mg_m2": 1.0,
    "route": "SC",
    "cycle": 3,
    "day": 8,
}
TREATMENT_CHANGE: dict[str, Any] = {
    "event_id": "u7-0044",
    "type": "treatment_change",
    "patient_id": "P-0017",
    "occurred_at": WHEN,
    "action": "dose_reduced",
    "dose_mg_m2": 1.0,
    "schedule": "weekly",
    "route": "SC",
    "reason": "grade 2 sensory neuropathy",
    "decision_id": "d-0123456789abcdef01234567",
}
IMMUNOTHERAPY: dict[str, Any] = {
    "event_id": "u7-0045",
    "type": "immunotherapy",
    "patient_id": "P-0017",
    "occurred_at": WHEN,
    "therapy": "ivig",
    "dose": "2 g/kg over 5 days",
}
COURSE_END: dict[str, Any] = {
    "event_id": "u7-0046",
    "type": "course_end",
    "patient_id": "P-0017",
    "occurred_at": WHEN,
    "reason": "transferred",
}
VALID = {
    "enrollment": (ENROLLMENT, Enrollment),
    "assessment": (ASSESSMENT, Assessment),
    "administration": (ADMINISTRATION, Administration),
    "treatment_change": (TREATMENT_CHANGE, TreatmentChange),
    "immunotherapy": (IMMUNOTHERAPY, Immunotherapy),
    "course_end": (COURSE_END, CourseEnd),
}

DROP = object()


def changed(body: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """A copy of `body` with fields replaced (or removed, with DROP)."""
    out = dict(body)
    for key, value in fields.items():
        if value is DROP:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def nested(levels: int) -> dict[str, Any]:
    """An object `levels` levels deep: {"k": {"k": ... {}}}."""
    value: dict[str, Any] = {}
    for _ in range(levels - 1):
        value = {"k": value}
    return value


def problems_of(raw: Any) -> list[FieldProblem]:
    with pytest.raises(EventValidationError) as caught:
        parse_event(raw)
    return caught.value.problems


# (case id, event, field, fragments the message must contain). Every case is checked both as
# a decoded object and as the JSON text a file line or HTTP body carries.
A, E, T = ASSESSMENT, ENROLLMENT, TREATMENT_CHANGE
INVALID: list[tuple[str, dict[str, Any], str, list[str]]] = [
    # common fields
    ("event_id-empty", changed(A, event_id=""), "event_id", ["''", "too short", "at least 1"]),
    ("event_id-129", changed(A, event_id="x" * 129), "event_id", ["129", "at most 128"]),
    ("event_id-missing", changed(A, event_id=DROP), "event_id", ["required"]),
    ("event_id-number", changed(A, event_id=42), "event_id", ["42", "not a string"]),
    ("patient_id-space", changed(A, patient_id="P 17"), "patient_id", ["'P 17'", "A-Z a-z 0-9"]),
    ("patient_id-slash", changed(A, patient_id="P/17"), "patient_id", ["'P/17'", ". _ -"]),
    ("patient_id-accent", changed(A, patient_id="Jöhn"), "patient_id", ["'Jöhn'", "1-64"]),
    ("patient_id-65", changed(A, patient_id="P" * 65), "patient_id", ["'PPPP", "1-64"]),
    ("patient_id-empty", changed(A, patient_id=""), "patient_id", ["''", "1-64"]),
    ("occurred_at-missing", changed(A, occurred_at=DROP), "occurred_at", ["is required"]),
    (
        "occurred_at-no-offset",
        changed(A, occurred_at="2026-03-02T08:40:00"),
        "occurred_at",
        ["'2026-03-02T08:40:00'", "offset"],
    ),
    (
        "occurred_at-date-only",
        changed(A, occurred_at="2026-03-02"),
        "occurred_at",
        ["'2026-03-02'", "time", "offset"],
    ),
    (
        "occurred_at-epoch-number",
        changed(A, occurred_at=1772437200),
        "occurred_at",
        ["1772437200", "RFC 3339", "offset"],
    ),
    (
        "occurred_at-epoch-float",
        changed(A, occurred_at=1772437200.5),
        "occurred_at",
        ["1772437200.5", "RFC 3339"],
    ),
    (
        "occurred_at-words",
        changed(A, occurred_at="yesterday"),
        "occurred_at",
        ["'yesterday'", "RFC 3339"],
    ),
    (
        "occurred_at-hour-24",
        changed(A, occurred_at="2026-03-02T24:00:00Z"),
        "occurred_at",
        ["'2026-03-02T24:00:00Z'", "RFC 3339"],
    ),
    # grades (CTCAE v5)
    (
        "sensory-5",
        changed(A, grades={"sensory": 5}),
        "grades.sensory",
        ["5", "at most 4", "sensory", "0-4"],
    ),
    (
        "motor-5",
        changed(A, grades={"motor": 5}),
        "grades.motor",
        ["5", "at most 4", "course_end"],
    ),
    ("pain-4", changed(A, grades={"pain": 4}), "grades.pain", ["4", "at most 3", "0-3"]),
    (
        "autonomic-5",
        changed(A, grades={"autonomic": 5}),
        "grades.autonomic",
        ["5", "at most 4", "0-4"],
    ),
    (
        "sensory-negative",
        changed(A, grades={"sensory": -1}),
        "grades.sensory",
        ["-1", "at least 0"],
    ),
    ("motor-negative", changed(A, grades={"motor": -2}), "grades.motor", ["-2", "at least 0"]),
    (
        "grades-empty",
        changed(A, grades={}),
        "grades",
        ["at least one of sensory, motor, pain, autonomic"],
    ),
    ("grades-missing", changed(A, grades=DROP), "grades", ["is required"]),
    ("grades-not-object", changed(A, grades=2), "grades", ["2", "not an object"]),
    (
        "grade-string",
        changed(A, grades={"sensory": "2"}),
        "grades.sensory",
        ["'2'", "whole number"],
    ),
    ("grade-fraction", changed(A, grades={"pain": 1.5}), "grades.pain", ["1.5", "whole number"]),
    ("grade-bool", changed(A, grades={"motor": True}), "grades.motor", ["True", "whole number"]),
    (
        "grades-unknown-domain",
        changed(A, grades={"sensory": 1, "vision": 2}),
        "grades.vision",
        ["unknown field"],
    ),
    (
        "baseline-motor-5",
        changed(E, baseline={"motor": 5}),
        "baseline.motor",
        ["5", "at most 4"],
    ),
    # assessment extras
    ("cycle-0", changed(A, cycle=0), "cycle", ["0", "at least 1"]),
    ("cycle-string", changed(A, cycle="3"), "cycle", ["'3'", "whole number"]),
    (
        "findings-mrc-61",
        changed(A, findings={"mrc_sum_score": 61}),
        "findings.mrc_sum_score",
        ["61", "at most 60"],
    ),
    (
        "findings-rankin-6",
        changed(A, findings={"rankin": 6}),
        "findings.rankin",
        ["6", "at most 5"],
    ),
    (
        "findings-ncs-pattern",
        changed(A, findings={"ncs_pattern": "weird"}),
        "findings.ncs_pattern",
        ["'weird'", "'demyelinating'"],
    ),
    (
        "findings-csf-not-bool",
        changed(A, findings={"csf_albuminocytologic_dissociation": "yes"}),
        "findings.csf_albuminocytologic_dissociation",
        ["'yes'", "true or false"],
    ),
    ("source", changed(A, source="doctor"), "source", ["'doctor'", "'clinician'", "'nurse'"]),
    # enrollment
    ("dose-0", changed(E, dose_mg_m2=0), "dose_mg_m2", ["0", "greater than 0"]),
    ("dose-1.7", changed(E, dose_mg_m2=1.7), "dose_mg_m2", ["1.7", "at most 1.6"]),
    ("dose-negative", changed(E, dose_mg_m2=-1.3), "dose_mg_m2", ["-1.3", "greater than 0"]),
    ("dose-string", changed(E, dose_mg_m2="1.3"), "dose_mg_m2", ["'1.3'", "not a number"]),
    ("dose-missing", changed(E, dose_mg_m2=DROP), "dose_mg_m2", ["is required"]),
    ("route", changed(E, route="IM"), "route", ["'IM'", "'IV' or 'SC'"]),
    ("route-lowercase", changed(E, route="sc"), "route", ["'sc'", "'IV' or 'SC'"]),
    ("schedule", changed(E, schedule="daily"), "schedule", ["'daily'", "'twice_weekly'"]),
    (
        "drug-lenalidomide",
        changed(E, drug="lenalidomide"),
        "drug",
        ["'lenalidomide'", "bortezomib", "only"],
    ),
    ("drug-missing", changed(E, drug=DROP), "drug", ["is required"]),
    ("cycle_length-6", changed(E, cycle_length_days=6), "cycle_length_days", ["6", "at least 7"]),
    (
        "cycle_length-57",
        changed(E, cycle_length_days=57),
        "cycle_length_days",
        ["57", "at most 56"],
    ),
    ("age-121", changed(E, age=121), "age", ["121", "at most 120"]),
    ("age-negative", changed(E, age=-1), "age", ["-1", "at least 0"]),
    (
        "risk_factor-unknown",
        changed(E, risk_factors=["diabetes", "smoking"]),
        "risk_factors.1",
        ["'smoking'", "'diabetes'", "'vitamin_b12_deficiency'"],
    ),
    ("risk_factors-not-list", changed(E, risk_factors="diabetes"), "risk_factors", ["not a list"]),
    # administration
    (
        "administration-dose-1.7",
        changed(ADMINISTRATION, dose_mg_m2=1.7),
        "dose_mg_m2",
        ["1.7", "at most 1.6"],
    ),
    (
        "administration-dose-0",
        changed(ADMINISTRATION, dose_mg_m2=0),
        "dose_mg_m2",
        ["0", "greater than 0"],
    ),
    # a dose in mg (CONTRACT.md, "Additions for policy version 2"): exactly one of the two
    (
        "administration-dose_mg-and-dose_mg_m2",
        changed(ADMINISTRATION, dose_mg=1.8),
        "dose_mg",
        ["dose_mg_m2", "not both"],
    ),
    (
        "administration-no-dose",
        changed(ADMINISTRATION, dose_mg_m2=DROP),
        "dose_mg_m2",
        ["is required", "dose_mg"],
    ),
    (
        "administration-dose_mg-10.01",
        changed(ADMINISTRATION, dose_mg_m2=DROP, dose_mg=10.01),
        "dose_mg",
        ["10.01", "at most 10"],
    ),
    (
        "administration-bsa-3.5",
        changed(ADMINISTRATION, dose_mg_m2=DROP, dose_mg=2.4, bsa_m2=3.5),
        "bsa_m2",
        ["3.5", "at most 3.0"],
    ),
    ("administration-route", changed(ADMINISTRATION, route="PO"), "route", ["'PO'", "'IV'"]),
    ("administration-day-57", changed(ADMINISTRATION, day=57), "day", ["57", "at most 56"]),
    # treatment change, immunotherapy, course end
    (
        "treatment-action",
        changed(T, action="paused"),
        "action",
        ["'paused'", "'dose_reduced'", "'held'", "'completed'"],
    ),
    ("treatment-dose-1.7", changed(T, dose_mg_m2=1.7), "dose_mg_m2", ["1.7", "at most 1.6"]),
    (
        "immunotherapy-therapy",
        changed(IMMUNOTHERAPY, therapy="aspirin"),
        "therapy",
        ["'aspirin'", "'ivig'", "'plasma_exchange'"],
    ),
    (
        "course_end-reason",
        changed(COURSE_END, reason="bored"),
        "reason",
        ["'bored'", "'completed'", "'death'"],
    ),
    # the bounds every accepted event keeps (CONTRACT.md, additions for version 2)
    (
        "occurred_at-before-1900",
        changed(A, occurred_at="1899-12-31T23:59:59Z"),
        "occurred_at",
        ["1899-12-31T23:59:59", "out of range", "1900-01-01", "2200-01-01"],
    ),
    (
        "occurred_at-after-2200",
        changed(A, occurred_at="2200-01-01T00:00:01Z"),
        "occurred_at",
        ["2200-01-01T00:00:01", "out of range"],
    ),
    (
        "occurred_at-9999-in-utc-year-10000",
        changed(A, occurred_at="9999-12-31T23:59:59-01:00"),
        "occurred_at",
        ["9999-12-31T23:59:59-01:00", "out of range"],
    ),
    (
        "occurred_at-year-1-in-utc-year-0",
        changed(A, occurred_at="0001-01-01T00:00:00+14:00"),
        "occurred_at",
        ["0001-01-01T00:00:00+14:00", "out of range"],
    ),
    ("cycle-101", changed(A, cycle=101), "cycle", ["101", "at most 100"]),
    ("cycle-1e8", changed(A, cycle=100_000_000), "cycle", ["100000000", "at most 100"]),
    ("administration-cycle-101", changed(ADMINISTRATION, cycle=101), "cycle", ["at most 100"]),
    (
        "extra-9-levels",
        changed(A, extra=nested(9)),
        "extra",
        ["nested more than 8 levels", "k.k.k.k.k.k.k.k"],
    ),
    ("extra-20-levels", changed(A, extra=nested(20)), "extra", ["more than 8 levels"]),
    (
        "findings-9-levels",
        changed(A, findings={"lab": nested(8)}),
        "findings",
        ["nested more than 8 levels"],
    ),
    (
        "extra-over-16-kb",
        changed(A, extra={f"k{i}": "x" * 500 for i in range(34)}),
        "extra",
        ["bytes as JSON", "at most 16384"],
    ),
    (
        "extra-string-513",
        changed(A, extra={"note": "x" * 513}),
        "extra",
        ["'note'", "513 characters", "at most 512"],
    ),
    (
        "extra-key-513",
        changed(A, extra={"k" * 513: 1}),
        "extra",
        ["the key", "513 characters"],
    ),
    (
        "findings-string-513",
        changed(A, findings={"comment": "x" * 513}),
        "findings",
        ["513 characters", "at most 512"],
    ),
    ("extra-nul", changed(A, extra={"a": ["ok", "x\x00y"]}), "extra", ["a.1", "U+0000"]),
    ("decision_id-129", changed(T, decision_id="d" * 129), "decision_id", ["at most 128"]),
    (
        "event_id-control",
        changed(A, event_id="u7\x1b[31m"),
        "event_id",
        ["control character U+001B"],
    ),
    ("reason-nul", changed(T, reason="a\x00b"), "reason", ["NUL", "U+0000"]),
    ("unit-newline", changed(E, unit="u7\n"), "unit", ["U+000A"]),
    # type and unknown fields
    (
        "type-unknown",
        changed(A, type="lab_result"),
        "type",
        ["'lab_result'", "enrollment", "course_end"],
    ),
    ("type-missing", changed(A, type=DROP), "type", ["is required", "assessment"]),
    (
        "type-misspelt-enrolment",
        changed(E, type="enrolment"),
        "type",
        ["'enrolment'", "enrollment"],
    ),
    ("unknown-top-level", changed(A, grdes={"sensory": 1}), "grdes", ["unknown field"]),
    ("unknown-top-level-scalar", changed(A, nurse="Smith"), "nurse", ["'Smith'", "unknown field"]),
    (
        "enrollment-field-on-assessment",
        changed(A, drug="bortezomib"),
        "drug",
        ["unknown field"],
    ),
]


@pytest.mark.parametrize("as_json", [False, True], ids=["object", "json"])
@pytest.mark.parametrize(
    ("body", "field", "fragments"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID]
)
def test_invalid_event_names_the_field_and_why(
    body: dict[str, Any], field: str, fragments: list[str], as_json: bool
) -> None:
    problems = problems_of(json.dumps(body) if as_json else body)
    assert [p.field for p in problems] == [field], problems
    message = problems[0].message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    assert str(problems[0]) == f"{field}: {message}"


def test_the_case_table_covers_every_event_type() -> None:
    types = {c[1].get("type") for c in INVALID}
    assert set(EVENT_TYPES) <= types


def test_numeric_time_message_shows_the_value_and_an_example() -> None:
    [problem] = problems_of(changed(A, occurred_at=1772437200))
    assert problem.field == "occurred_at"
    assert "1772437200" in problem.message
    assert "2026-03-02T08:40:00+01:00" in problem.message


@pytest.mark.parametrize("text", ["1772437200", "1772437200.5"])
def test_numeric_timestamp_in_a_string_is_rejected(text: str) -> None:
    [problem] = problems_of(changed(A, occurred_at=text))
    assert problem.field == "occurred_at"
    assert repr(text) in problem.message
    assert "RFC 3339" in problem.message


@pytest.mark.parametrize("levels", [250, 990, 100_000])
def test_json_nested_hundreds_of_levels_is_refused_not_a_crash(levels: int) -> None:
    text = '{"event_id": "u7-1", "extra": ' + '{"k": ' * levels + "1" + "}" * levels + "}"
    problems = problems_of(text)
    assert [p.field for p in problems] == ["event"]
    assert "not valid JSON" in problems[0].message
    assert "recursion limit" in problems[0].message


def test_several_problems_are_all_reported_in_field_order() -> None:
    body = {
        "event_id": "",
        "type": "assessment",
        "patient_id": "a b",
        "grades": {"sensory": 5, "pain": 4},
        "colour": "red",
    }
    problems = problems_of(body)
    assert [p.field for p in problems] == [
        "event_id",
        "patient_id",
        "occurred_at",
        "grades.sensory",
        "grades.pain",
        "colour",
    ]
    assert problems[2].message == "is required"
    assert "5" in problems[3].message
    assert "4" in problems[4].message
    # The exception's text carries every problem too.
    with pytest.raises(EventValidationError, match=re.escape("grades.sensory: 5 is out of range")):
        parse_event(body)


def test_unknown_type_reports_only_the_type() -> None:
    """With an unknown type the other fields can't be checked: one clear problem, not noise."""
    problems = problems_of({"event_id": "x", "type": "vitals", "heart_rate": 80})
    assert [p.field for p in problems] == ["type"]
    assert "'vitals'" in problems[0].message
    for kind in EVENT_TYPES:
        assert kind in problems[0].message


@pytest.mark.parametrize(
    ("raw", "fragments"),
    [
        ("{not json", ["not valid JSON"]),
        ('{"event_id": "e1",', ["not valid JSON"]),
        ("", ["not valid JSON"]),
        ("[1, 2]", ["array", "object"]),
        ("null", ["null", "object"]),
        ("42", ["number", "object"]),
        ('"assessment"', ["string", "object"]),
    ],
    ids=["broken", "truncated", "empty", "array", "null", "number", "string"],
)
def test_text_that_is_not_one_json_object(raw: str, fragments: list[str]) -> None:
    [problem] = problems_of(raw)
    assert problem.field == "event"
    for fragment in fragments:
        assert fragment in problem.message


# --- what is allowed ------------------------------------------------------------------------


def test_findings_and_extra_keep_unknown_keys() -> None:
    body = changed(
        A,
        findings={"ncs_pattern": "demyelinating", "vibration_score": 3, "lab": {"cmap": 2.1}},
        extra={"ehr_ref": "X-1", "nested": {"a": [1, 2]}},
    )
    event = parse_event(body)
    assert isinstance(event, Assessment)
    assert event.findings is not None
    assert event.findings.ncs_pattern == "demyelinating"
    dumped = event.model_dump(mode="json", exclude_none=True)
    assert dumped["findings"] == {
        "ncs_pattern": "demyelinating",
        "vibration_score": 3,
        "lab": {"cmap": 2.1},
    }
    assert dumped["extra"] == {"ehr_ref": "X-1", "nested": {"a": [1, 2]}}


@pytest.mark.parametrize(
    "body",
    [
        changed(A, event_id="x"),
        changed(A, event_id="x" * 128),
        changed(A, patient_id="Az09._-" + "p" * 57),
        changed(A, grades={"sensory": 4, "motor": 4, "pain": 3, "autonomic": 4}),
        changed(A, grades={"autonomic": 0}),
        changed(A, cycle=1, findings={"mrc_sum_score": 60, "rankin": 5}),
        changed(A, findings={"mrc_sum_score": 0, "rankin": 0}),
        changed(A, occurred_at="2026-03-02T07:40:00Z"),
        changed(A, occurred_at="2026-03-02T02:40:00-05:00"),
        changed(A, occurred_at="2026-03-02T07:40:00.250+00:00"),
        changed(E, dose_mg_m2=1.6, cycle_length_days=7, age=0),
        changed(E, dose_mg_m2=0.01, cycle_length_days=56, age=120),
        changed(E, cycle_length_days=DROP, age=DROP, risk_factors=DROP, baseline=DROP),
        changed(ADMINISTRATION, dose_mg_m2=1, cycle=DROP, day=DROP),
        changed(A, occurred_at="1900-01-01T00:00:00Z", cycle=100),
        changed(A, occurred_at="2200-01-01T00:00:00Z"),
        changed(A, occurred_at="1900-01-01T01:00:00+01:00"),
        changed(ADMINISTRATION, cycle=100, day=56),
        changed(A, extra=nested(8), findings={"lab": nested(7)}),
        changed(A, extra={f"k{i:02}": "x" * 470 for i in range(34)}),
        changed(A, extra={"note": "x" * 512, "k" * 512: "tab\tand\nnewline"}),
    ],
    ids=[
        "event_id-1",
        "event_id-128",
        "patient_id-64",
        "grades-max",
        "grades-one-zero",
        "findings-max",
        "findings-min",
        "utc-z",
        "negative-offset",
        "fraction",
        "enrollment-upper-bounds",
        "enrollment-lower-bounds",
        "enrollment-minimal",
        "dose-integer",
        "first-instant",
        "last-instant",
        "first-instant-with-offset",
        "administration-upper-bounds",
        "json-8-levels",
        "json-under-16-kb",
        "strings-512",
    ],
)
def test_boundary_values_are_accepted(body: dict[str, Any]) -> None:
    event = parse_event(body)
    assert event.event_id == body["event_id"]
    assert event.patient_id == body["patient_id"]


def test_enrollment_defaults() -> None:
    event = parse_event(changed(E, cycle_length_days=DROP, risk_factors=DROP, concomitant=DROP))
    assert isinstance(event, Enrollment)
    assert event.cycle_length_days == 21
    assert event.risk_factors == []
    assert event.concomitant == []


@pytest.mark.parametrize("kind", EVENT_TYPES)
def test_valid_events_round_trip(kind: str) -> None:
    body, model = VALID[kind]
    from_object = parse_event(body)
    from_text = parse_event(json.dumps(body))
    from_bytes = parse_event(json.dumps(body).encode())
    assert type(from_object) is model
    assert from_object == from_text == from_bytes
    # The wire form comes back unchanged (all fields given, so no defaults appear).
    assert from_object.model_dump(mode="json", exclude_none=True) == body
    # And the canonical body parses to the same event again.
    again = parse_event(canonical_body(from_object))
    assert canonical_body(again) == canonical_body(from_object)
    assert json.loads(canonical_body(from_object)) == body


def test_canonical_body_keeps_the_offset() -> None:
    local = parse_event(A)
    same_instant_utc = parse_event(changed(A, occurred_at="2026-03-02T07:40:00Z"))
    assert local.occurred_at == same_instant_utc.occurred_at  # one instant...
    assert json.loads(canonical_body(local))["occurred_at"] == "2026-03-02T08:40:00+01:00"
    assert json.loads(canonical_body(same_instant_utc))["occurred_at"] == "2026-03-02T07:40:00Z"
    assert canonical_body(local) != canonical_body(same_instant_utc)  # ...two bodies


def test_canonical_body_is_independent_of_key_order_and_number_spelling() -> None:
    reordered = dict(reversed(list(ADMINISTRATION.items())))
    integer_dose = changed(ADMINISTRATION, dose_mg_m2=1)
    assert canonical_body(parse_event(reordered)) == canonical_body(parse_event(ADMINISTRATION))
    assert canonical_body(parse_event(integer_dose)) == canonical_body(
        parse_event(changed(ADMINISTRATION, dose_mg_m2=1.0))
    )


def test_same_id_same_instant_another_offset_is_a_conflict_not_a_duplicate() -> None:
    local = parse_event(A)
    same_instant_utc = parse_event(changed(A, occurred_at="2026-03-02T07:40:00Z"))
    assert unique_events([local, parse_event(dict(A))]) == [local]
    with pytest.raises(ConflictingEventError, match="'u7-0042'"):
        unique_events([local, same_instant_utc])
