"""The contract's events as pydantic models (CONTRACT.md, "Events").

Shared by `replay`, the HTTP API and the workers, so this module imports nothing but the
standard library and pydantic. Models are strict (no silent coercion of "2" to 2) and reject
unknown fields, except inside `findings` and `extra`. Validation errors are turned into
`FieldProblem`s that say which field, which value and why (see `describe_errors`).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from typing import Annotated, Any, Literal, TypeGuard

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    model_validator,
)

Route = Literal["IV", "SC"]
Schedule = Literal["twice_weekly", "weekly"]
RiskFactor = Literal[
    "diabetes",
    "baseline_neuropathy",
    "prior_thalidomide",
    "renal_insufficiency",
    "hypothyroidism",
    "vitamin_b12_deficiency",
    "alcohol",
]
TreatmentAction = Literal["dose_reduced", "held", "resumed", "discontinued", "completed"]
Therapy = Literal["ivig", "corticosteroids", "plasma_exchange", "rituximab", "other"]
CourseEndReason = Literal["completed", "death", "transferred", "other"]
NcsPattern = Literal["axonal", "demyelinating", "mixed", "normal"]
AssessmentSource = Literal["clinician", "nurse", "patient"]

EVENT_TYPES = (
    "enrollment",
    "assessment",
    "administration",
    "treatment_change",
    "immunotherapy",
    "course_end",
)


_DATE_TIME_START = re.compile(r"\d{4}-\d{2}-\d{2}")

# Bounds every accepted event keeps (CONTRACT.md, "Additions for policy version 2"), so that
# whatever is accepted can always be stored, folded and replayed: a date in year 9999 or a
# cycle of 10^8 would overflow the fold's date arithmetic long after the 202.
EARLIEST = dt.datetime(1900, 1, 1, tzinfo=dt.UTC)
LATEST = dt.datetime(2200, 1, 1, tzinfo=dt.UTC)
MAX_CYCLE = 100
MAX_DAY = 56
MAX_JSON_DEPTH = 8  # levels of objects and arrays in `findings` / `extra`, themselves included
MAX_JSON_BYTES = 16_384  # `findings` / `extra` as compact UTF-8 JSON
MAX_STRING = 512  # characters, of any string of an event (tighter limits stay where they are)


def _require_datetime_text(value: Any) -> Any:
    """Accept RFC 3339 text (or a datetime built in code), never a number, quoted or not."""
    if isinstance(value, dt.datetime) or (isinstance(value, str) and _DATE_TIME_START.match(value)):
        return value
    raise ValueError(
        f"{value!r} is not an RFC 3339 date-time string with an offset "
        "(e.g. 2026-03-02T08:40:00+01:00)"
    )


def _within_clinical_range(value: dt.datetime) -> dt.datetime:
    """1900-01-01 to 2200-01-01 UTC, both included; the offset is kept as given."""
    try:
        utc = value.astimezone(dt.UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+14:00 is before year 1 in UTC
        utc = None
    if utc is None or not EARLIEST <= utc <= LATEST:
        raise ValueError(
            f"{value.isoformat()!r} is out of range: clinical times lie between "
            "1900-01-01 and 2200-01-01 UTC"
        )
    return value


ClinicalTime = Annotated[
    AwareDatetime,
    BeforeValidator(_require_datetime_text),
    AfterValidator(_within_clinical_range),
    Field(strict=False),
]

# Strings that name things (ids, units, drugs) hold no control characters at all; free text
# (reasons, notes) may hold tabs and line breaks, nothing else below U+0020. U+0000 in
# particular can't be stored in a database text column (PostgreSQL).
NO_CONTROL = r"^[^\x00-\x1f\x7f]*$"
FREE_TEXT = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$"
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
EventId = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=NO_CONTROL)]
Name64 = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=NO_CONTROL)]
Name128 = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=NO_CONTROL)]
Text200 = Annotated[str, StringConstraints(max_length=200, pattern=FREE_TEXT)]
Text500 = Annotated[str, StringConstraints(max_length=500, pattern=FREE_TEXT)]
# A patient id: what every path (events, the API's paths, FHIR references, task arguments)
# accepts, and no more (it appears in URLs and in log-free task arguments).
PATIENT_ID_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"
_PATIENT_ID = re.compile(PATIENT_ID_PATTERN)
PatientId = Annotated[str, StringConstraints(pattern=PATIENT_ID_PATTERN)]


def is_patient_id(value: object) -> TypeGuard[str]:
    """Is `value` a patient id (a task argument comes from a queue: any JSON value)?"""
    return isinstance(value, str) and _PATIENT_ID.match(value) is not None


DoseMgM2 = Annotated[float, Field(gt=0, le=1.6)]
DoseMg = Annotated[float, Field(gt=0, le=10)]  # an administration's absolute dose
BsaM2 = Annotated[float, Field(ge=0.5, le=3.0)]  # a body surface area
Cycle = Annotated[int, Field(ge=1, le=MAX_CYCLE)]
Day = Annotated[int, Field(ge=1, le=MAX_DAY)]


def check_json_bounds(value: object) -> None:
    """`findings` / `extra`: at most MAX_JSON_DEPTH levels, MAX_JSON_BYTES as JSON, strings
    (keys too) of at most MAX_STRING characters without control characters, finite numbers.
    Iterative, so a value nested a thousand levels deep is refused, not a RecursionError."""
    stack: list[tuple[object, int, str]] = [(value, 1, "")]
    while stack:
        item, depth, where = stack.pop()
        if isinstance(item, dict | list):
            if depth > MAX_JSON_DEPTH:
                raise ValueError(
                    f"is nested more than {MAX_JSON_DEPTH} levels deep (at {where or 'the top'!r})"
                )
            pairs = item.items() if isinstance(item, dict) else enumerate(item)
            for key, child in pairs:
                path = f"{where}.{key}" if where else str(key)
                if isinstance(key, str):
                    _check_string(key, f"the key {path!r}")
                stack.append((child, depth + 1, path))
        elif isinstance(item, str):
            _check_string(item, f"the string at {where or 'the top'!r}")
        elif isinstance(item, float) and not math.isfinite(item):
            raise ValueError(f"holds {item!r} at {where or 'the top'!r}: numbers must be finite")
    size = len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())
    if size > MAX_JSON_BYTES:
        raise ValueError(f"is {size} bytes as JSON: at most {MAX_JSON_BYTES}")


def _check_string(text: str, what: str) -> None:
    if len(text) > MAX_STRING:
        raise ValueError(f"{what} is {len(text)} characters long: at most {MAX_STRING}")
    found = _CONTROL.search(text)
    if found is not None:
        raise ValueError(f"{what} holds the control character U+{ord(found.group()):04X}")


def _bounded_json(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if value is not None:
        check_json_bounds(value)
    return value


BoundedJson = Annotated[dict[str, Any], AfterValidator(_bounded_json)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


class BaselineGrades(_Strict):
    """CTCAE v5 grades at enrolment; an absent domain means grade 0. An empty object is
    accepted (no baseline was graded: version 2 asks for one, V7)."""

    sensory: Annotated[int, Field(ge=0, le=4)] | None = None
    motor: Annotated[int, Field(ge=0, le=4)] | None = None
    pain: Annotated[int, Field(ge=0, le=3)] | None = None
    autonomic: Annotated[int, Field(ge=0, le=4)] | None = None

    def graded(self) -> bool:
        """Was any domain graded?"""
        return any(v is not None for v in (self.sensory, self.motor, self.pain, self.autonomic))


class Grades(BaselineGrades):
    """CTCAE v5 grades of one assessment: at least one domain; an absent one means grade 0."""

    @model_validator(mode="after")
    def _at_least_one(self) -> Grades:
        if (
            self.sensory is None
            and self.motor is None
            and self.pain is None
            and self.autonomic is None
        ):
            raise ValueError("at least one of sensory, motor, pain, autonomic must be given")
        return self


class ProCtcae(_Strict):
    """The PRO-CTCAE item "numbness or tingling in your hands or feet", as the patient
    answered it (severity and interference, each 0-4, over the past 7 days)."""

    numbness_tingling_severity: Annotated[int, Field(ge=0, le=4)] | None = None
    numbness_tingling_interference: Annotated[int, Field(ge=0, le=4)] | None = None


class Findings(BaseModel):
    """Optional findings; extra keys are kept (sites record more than we interpret)."""

    model_config = ConfigDict(extra="allow", strict=True, frozen=True, allow_inf_nan=False)

    ncs_pattern: NcsPattern | None = None
    csf_albuminocytologic_dissociation: bool | None = None
    asymmetric_weakness: bool | None = None
    mrc_sum_score: Annotated[int, Field(ge=0, le=60)] | None = None
    rankin: Annotated[int, Field(ge=0, le=5)] | None = None
    incat: Annotated[int, Field(ge=0, le=10)] | None = None  # INCAT disability score
    new_weakness: bool | None = None  # new weakness, falls or trouble walking (a patient's word)
    pro_ctcae: ProCtcae | None = None

    @model_validator(mode="before")
    @classmethod
    def _unknown_nulls_dropped(cls, data: Any) -> Any:
        """An unknown finding given as null says nothing: it is dropped, as the canonical body
        drops it (so an event reads back equal from what was stored)."""
        if isinstance(data, dict):
            known = cls.model_fields
            return {k: v for k, v in data.items() if v is not None or k in known}
        return data

    @model_validator(mode="after")
    def _bounded(self) -> Findings:
        check_json_bounds(self.model_dump(exclude_none=True))
        return self


class _EventBase(_Strict):
    event_id: EventId
    patient_id: PatientId
    occurred_at: ClinicalTime
    extra: BoundedJson | None = None


class Enrollment(_EventBase):
    type: Literal["enrollment"]
    drug: Literal["bortezomib"]
    dose_mg_m2: DoseMgM2
    route: Route
    schedule: Schedule
    cycle_length_days: Annotated[int, Field(ge=7, le=56)] = 21
    age: Annotated[int, Field(ge=0, le=120)] | None = None
    risk_factors: list[RiskFactor] = Field(default_factory=list)
    concomitant: list[Name128] = Field(default_factory=list)
    baseline: BaselineGrades | None = None
    unit: Name64 | None = None
    # the body surface area, or what it is computed from (Mosteller) when doses come in mg
    bsa_m2: BsaM2 | None = None
    height_cm: Annotated[float, Field(ge=50, le=250)] | None = None
    weight_kg: Annotated[float, Field(ge=20, le=300)] | None = None

    def body_surface_area(self) -> float | None:
        """The given BSA, else Mosteller's sqrt(height x weight / 3600), else None."""
        if self.bsa_m2 is not None:
            return self.bsa_m2
        if self.height_cm is not None and self.weight_kg is not None:
            return math.sqrt(self.height_cm * self.weight_kg / 3600)
        return None


class Assessment(_EventBase):
    type: Literal["assessment"]
    grades: Grades
    cycle: Cycle | None = None
    findings: Findings | None = None
    source: AssessmentSource | None = None
    assessor: Name128 | None = None


class FieldError(ValueError):
    """A model validator's problem that belongs to one field: `describe_errors` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class Administration(_EventBase):
    """A dose given: per m² (`dose_mg_m2`) or in mg (`dose_mg`), exactly one of them. A dose in
    mg is compared per m² at the body surface area of `dose_per_m2`."""

    type: Literal["administration"]
    dose_mg_m2: DoseMgM2 | None = None
    dose_mg: DoseMg | None = None
    bsa_m2: BsaM2 | None = None  # the patient's body surface area at this dose
    route: Route
    cycle: Cycle | None = None
    day: Day | None = None

    @model_validator(mode="after")
    def _one_dose(self) -> Administration:
        if self.dose_mg_m2 is not None and self.dose_mg is not None:
            raise FieldError(
                "dose_mg",
                "give the dose once: dose_mg_m2 (per body surface area) or dose_mg, not both",
            )
        if self.dose_mg_m2 is None and self.dose_mg is None:
            raise FieldError(
                "dose_mg_m2", "is required: the dose per body surface area, or in mg as dose_mg"
            )
        return self

    def dose_per_m2(self, course_bsa_m2: float | None) -> float | None:
        """The dose in mg/m²: as given, else `dose_mg` over the event's own body surface area,
        else over the course's (the enrolment's, given or Mosteller's); None without either."""
        if self.dose_mg_m2 is not None:
            return self.dose_mg_m2
        bsa = self.bsa_m2 if self.bsa_m2 is not None else course_bsa_m2
        if self.dose_mg is None or bsa is None:
            return None
        return self.dose_mg / bsa

    def dose_text(self, course_bsa_m2: float | None) -> str:
        """For rationales: `1.30 mg/m2`, `2.40 mg (1.32 mg/m2 at BSA 1.82 m2)`, or `2.40 mg`
        when it cannot be converted."""
        if self.dose_mg_m2 is not None:
            return f"{self.dose_mg_m2:.2f} mg/m2"
        bsa = self.bsa_m2 if self.bsa_m2 is not None else course_bsa_m2
        per_m2 = self.dose_per_m2(course_bsa_m2)
        if per_m2 is None or bsa is None:
            return f"{self.dose_mg:.2f} mg"
        return f"{self.dose_mg:.2f} mg ({per_m2:.2f} mg/m2 at BSA {bsa:.2f} m2)"


class TreatmentChange(_EventBase):
    type: Literal["treatment_change"]
    action: TreatmentAction
    dose_mg_m2: DoseMgM2 | None = None
    schedule: Schedule | None = None
    route: Route | None = None
    reason: Text500 | None = None
    decision_id: Name128 | None = None


class Immunotherapy(_EventBase):
    type: Literal["immunotherapy"]
    therapy: Therapy
    dose: Text200 | float | None = None


class CourseEnd(_EventBase):
    type: Literal["course_end"]
    reason: CourseEndReason


Event = Annotated[
    Enrollment | Assessment | Administration | TreatmentChange | Immunotherapy | CourseEnd,
    Field(discriminator="type"),
]
EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)


class FieldProblem(BaseModel):
    """One specific validation problem: which field, and why (the value is in the message)."""

    model_config = ConfigDict(frozen=True)

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class EventValidationError(ValueError):
    """Raised by `parse_event` with every problem of one event."""

    def __init__(self, problems: list[FieldProblem]) -> None:
        super().__init__("; ".join(str(p) for p in problems))
        self.problems = problems


def parse_event(raw: object) -> Event:
    """Validate one event: JSON text (str or bytes), or an already-decoded JSON value."""
    try:
        if isinstance(raw, str | bytes):
            return EVENT_ADAPTER.validate_json(raw)
        return EVENT_ADAPTER.validate_python(raw)
    except ValidationError as exc:
        raise EventValidationError(describe_errors(exc)) from None


def canonical_body(event: Event) -> str:
    """The event as canonical JSON: two bodies are "the same" when these strings are equal.

    Times keep their offsets, so the same instant written with another offset is another body;
    numbers compare by value (1 and 1.0 are the same dose).
    """
    return json.dumps(event.model_dump(mode="json", exclude_none=True), sort_keys=True)


# --- error messages -------------------------------------------------------------------------

_RANGE_HINTS = {
    "grades.sensory": "CTCAE v5 sensory neuropathy is graded 0-4",
    "grades.motor": "CTCAE v5 motor neuropathy is graded 0-4; grade 5 (death) is a course_end",
    "grades.pain": "CTCAE v5 neuralgia is graded 0-3",
    "grades.autonomic": "autonomic severity is graded 0-4",
    "baseline.sensory": "CTCAE v5 sensory neuropathy is graded 0-4",
    "baseline.motor": "CTCAE v5 motor neuropathy is graded 0-4",
    "baseline.pain": "CTCAE v5 neuralgia is graded 0-3",
    "baseline.autonomic": "autonomic severity is graded 0-4",
}


def _field_name(loc: tuple[int | str, ...], tagged: bool) -> str:
    parts = [str(p) for p in (loc[1:] if tagged and loc else loc)]
    return ".".join(parts) if parts else "event"


def _show(value: Any) -> str:
    text = repr(value) if not isinstance(value, dict | list) else type(value).__name__
    return text if len(text) <= 60 else text[:57] + "..."


def _json_kind(value: Any) -> str:
    kinds = {list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else kinds.get(type(value), type(value).__name__)


def _message(err: Any, field: str) -> str:
    kind = err["type"]
    value = err.get("input")
    ctx = err.get("ctx") or {}
    shown = _show(value)
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return f"unknown field (value {shown}); check the spelling against the contract"
    if kind == "union_tag_invalid":
        return f"unknown event type {ctx.get('tag')!r}: expected one of " + ", ".join(EVENT_TYPES)
    if kind == "union_tag_not_found":
        return "is required: one of " + ", ".join(EVENT_TYPES)
    if kind == "timezone_aware" and isinstance(value, str) and "T" not in value.upper():
        return f"{shown} is a date without a time: give a date-time with an offset"
    if kind == "timezone_aware":
        return (
            f"{shown} has no UTC offset: clinical times must carry one "
            "(e.g. 2026-03-02T08:40:00+01:00 or ...Z)"
        )
    if kind in {"datetime_from_date_parsing", "datetime_parsing", "datetime_type"}:
        return f"{shown} is not an RFC 3339 date-time with an offset"
    if kind in {"greater_than_equal", "less_than_equal", "greater_than", "less_than"}:
        bound = {
            "greater_than_equal": f"at least {ctx.get('ge')}",
            "less_than_equal": f"at most {ctx.get('le')}",
            "greater_than": f"greater than {ctx.get('gt')}",
            "less_than": f"less than {ctx.get('lt')}",
        }[kind]
        hint = _RANGE_HINTS.get(field)
        return f"{shown} is out of range: must be {bound}" + (f" ({hint})" if hint else "")
    if kind == "literal_error":
        expected = ctx.get("expected", "")
        if field == "drug":
            return f"{shown} is not supported: v1 monitors bortezomib courses only"
        return f"{shown} is not allowed: expected {expected}"
    if kind == "string_pattern_mismatch" and field == "patient_id":
        return f"{shown} is not a valid id: 1-64 characters of A-Z a-z 0-9 . _ -"
    if kind == "string_pattern_mismatch" and ctx.get("pattern") in (FREE_TEXT, NO_CONTROL):
        found = re.search(r"[\x00-\x1f\x7f]", value) if isinstance(value, str) else None
        code = f"U+{ord(found.group()):04X}" if found else "a control character"
        if code == "U+0000":
            return "contains the NUL character (U+0000), which cannot be stored"
        return f"contains the control character {code}, which is not allowed here"
    if kind == "string_too_short":
        return f"{shown} is too short: at least {ctx.get('min_length')} character(s)"
    if kind == "string_too_long":
        return f"is too long ({len(value)} characters): at most {ctx.get('max_length')}"
    if kind in {"int_type", "int_from_float", "int_parsing"}:
        if isinstance(value, str):
            return f"{shown} is text, not a whole number (write it without quotes)"
        return f"{shown} is not a whole number"
    if kind in {"float_type", "float_parsing"}:
        if isinstance(value, str):
            return f"{shown} is text, not a number (write it without quotes)"
        return f"{shown} is not a number"
    if kind == "string_type":
        return f"{shown} is not a string"
    if kind == "bool_type":
        return f"{shown} is not true or false"
    if kind in {"model_type", "dict_type", "model_attributes_type"}:
        if field == "event":
            return f"a JSON {_json_kind(value)} is not an event: each line must be one JSON object"
        return f"{shown} is not an object"
    if kind == "list_type":
        return f"{shown} is not a list"
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    return f"{shown}: {err['msg']}"


def describe_errors(exc: ValidationError) -> list[FieldProblem]:
    """Turn pydantic errors into `field: message` problems, one per error, in order."""
    problems: list[FieldProblem] = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        tagged = bool(loc) and isinstance(loc[0], str) and loc[0] in EVENT_TYPES
        if err["type"] in {"union_tag_invalid", "union_tag_not_found"}:
            field = "type"
        elif err["type"] == "json_invalid":
            problems.append(
                FieldProblem(field="event", message=f"not valid JSON ({err['ctx']['error']})")
            )
            continue
        else:
            error = (err.get("ctx") or {}).get("error")
            if isinstance(error, FieldError):
                loc = (*loc, error.field)
            field = _field_name(loc, tagged)
        problems.append(FieldProblem(field=field, message=_message(err, field)))
    return problems
