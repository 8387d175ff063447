"""Administrations given in mg (CONTRACT.md, "Additions for policy version 2"), rule D6.

An `administration` gives `dose_mg_m2`, or `dose_mg` (0 < x <= 10) that D6 compares per m² at
the body surface area of the course: the event's own `bsa_m2`, else the enrolment's, else
Mosteller's sqrt(height x weight / 3600) from the enrolment. Without one the dose is stored as
given and D6 emits `review_required`, reason `dose_not_comparable` (warning; infusion_unit,
pharmacy) instead of the dose comparison; the other checks still run. Both packs, both
versions (version 1 never accepted `dose_mg`, so nothing it decided changes).

Timelines start at T0; `enrollment` is 1.3 mg/m2 SC weekly with no body surface area unless a
case gives one. Each case gives every `adherence_deviation` by trigger under version 2 and
version 1, and the triggers of the `dose_not_comparable` reviews (the same in both).
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from policies import DEFAULT, LABEL, Decision, EventValidationError, PolicyPack, parse_event
from policies.events import Administration
from tests.common.factories import administration, assessment, at, run, treatment_change
from tests.policies.test_v2_dose_interval import (
    ABOVE,
    AFTER,
    HOLD,
    INTERVAL,
    ROUTE,
    V1,
    Bodies,
    Expected,
    deviations,
    enrol,
    v2,
    x,
)

MOSTELLER_170_70 = math.sqrt(170 * 70 / 3600)  # 1.8181...


def mg(when: Any, eid: str, dose_mg: float, route: str = "SC", **fields: Any) -> dict[str, Any]:
    """An administration in mg (`m1`, `m2`, ...)."""
    body = administration(when, 0, event_id=eid, route=route, dose_mg=dose_mg, **fields)
    del body["dose_mg_m2"]
    return body


def reviews(decisions: list[Decision]) -> list[str]:
    """The triggers of the `dose_not_comparable` reviews, each checked for its fields."""
    found = [d for d in decisions if d.reason == "dose_not_comparable"]
    for review in found:
        assert review.action == "review_required"
        assert review.rule == "D6"
        assert review.severity == "warning"
        assert review.audience == ["infusion_unit", "pharmacy"]
        assert review.sources == ["S5"]
    return [d.trigger for d in found]


# (pack, events, deviations under V2, deviations under V1, dose_not_comparable triggers)
CASES = [
    # -- "dose_mg with the course's body surface area: the event's own bsa_m2"
    pytest.param(
        DEFAULT,
        [enrol(), mg(at(0, 1), "m1", 2.4, bsa_m2=1.82)],  # 1.319 mg/m2
        {},
        {},
        [],
        id="dose_mg-at-the-events-bsa",
    ),
    pytest.param(
        DEFAULT,
        [enrol(bsa_m2=1.2), mg(at(0, 1), "m1", 2.4, bsa_m2=1.82)],  # 2.0 at the enrolment's
        {},
        {},
        [],
        id="dose_mg-the-events-bsa-before-the-enrolments",
    ),
    # -- "else the enrolment's"
    pytest.param(
        DEFAULT,
        [enrol(bsa_m2=1.82), mg(at(0, 1), "m1", 2.4)],
        {},
        {},
        [],
        id="dose_mg-at-the-enrolments-bsa",
    ),
    pytest.param(
        DEFAULT,
        [enrol(bsa_m2=1.2), mg(at(0, 1), "m1", 2.4)],  # 2.0 mg/m2
        {"m1": ABOVE},
        {"m1": ABOVE},
        [],
        id="dose_mg-above-at-the-enrolments-bsa",
    ),
    # -- "else Mosteller's sqrt(height x weight / 3600)"
    pytest.param(
        DEFAULT,
        [enrol(height_cm=170, weight_kg=70), mg(at(0, 1), "m1", 2.36)],  # 1.298 <= 1.3 + 0.05
        {},
        {},
        [],
        id="dose_mg-at-mosteller-within-the-tolerance",
    ),
    pytest.param(
        LABEL,
        [enrol(height_cm=170, weight_kg=70), mg(at(0, 1), "m1", 2.5)],  # 1.375 > 1.35
        {"m1": ABOVE},
        {"m1": ABOVE},
        [],
        id="dose_mg-at-mosteller-above-the-tolerance",
    ),
    # -- "a dose above the recommendation in mg"
    pytest.param(
        DEFAULT,
        [enrol(), mg(at(0, 1), "m1", 3.0, bsa_m2=1.82)],  # 1.65 mg/m2
        {"m1": ABOVE},
        {"m1": ABOVE},
        [],
        id="dose_mg-above-the-recommendation",
    ),
    pytest.param(
        DEFAULT,
        [
            enrol(bsa_m2=1.82),
            x(at(0, 1), "x1"),
            assessment(at(1), event_id="a", sensory=1),  # D1: 1.0 mg/m2
            mg(at(7, 1), "m1", 2.4),  # 1.32 > 1.05
        ],
        {"m1": ABOVE},
        {"m1": ABOVE},
        [],
        id="dose_mg-above-a-reduced-recommendation",
    ),
    # -- "with dose_mg and no body surface area ... D6 emits review_required, reason
    #    dose_not_comparable instead of a comparison"
    pytest.param(
        DEFAULT,
        [enrol(), mg(at(0, 1), "m1", 9.0)],
        {},
        {},
        ["m1"],
        id="dose_not_comparable-default",
    ),
    pytest.param(
        LABEL,
        [enrol(), mg(at(0, 1), "m1", 9.0)],
        {},
        {},
        ["m1"],
        id="dose_not_comparable-label",
    ),
    pytest.param(
        DEFAULT,
        [enrol(height_cm=170), mg(at(0, 1), "m1", 2.4)],  # Mosteller needs the weight too
        {},
        {},
        ["m1"],
        id="dose_not_comparable-height-without-weight",
    ),
    pytest.param(
        DEFAULT,
        [enrol(), mg(at(0, 1), "m1", 2.4), mg(at(7, 1), "m2", 2.4, bsa_m2=1.82)],
        {},
        {},
        ["m1"],
        id="dose_not_comparable-only-the-dose-without-a-bsa",
    ),
    # -- "the other checks still run and can still give their one deviation"; after a stop or
    #    in a hold the review is emitted too: the dose itself is unknown
    pytest.param(
        DEFAULT,
        [
            enrol(),
            x(at(0, 1), "x1"),
            treatment_change(at(1), "discontinued", event_id="tc"),
            mg(at(7, 1), "m1", 9.0),
        ],
        {"m1": AFTER},
        {"m1": AFTER},
        ["m1"],
        id="dose_not_comparable-after-discontinuation-both",
    ),
    pytest.param(
        LABEL,
        [
            enrol(),
            x(at(0, 1), "x1"),
            assessment(at(1), event_id="a", sensory=3),  # L2 hold
            mg(at(7, 1), "m1", 2.0),
        ],
        {"m1": HOLD},
        {"m1": HOLD},
        ["m1"],
        id="dose_not_comparable-during-hold-both",
    ),
    pytest.param(
        DEFAULT,
        [enrol(), x(at(0, 1), "x1"), mg(at(2, 1), "m1", 9.0)],
        {"m1": INTERVAL},
        {},
        ["m1"],
        id="dose_not_comparable-interval-still-checked",
    ),
    pytest.param(
        DEFAULT,
        [enrol(), mg(at(0, 1), "m1", 9.0, route="IV")],
        {"m1": ROUTE},
        {},
        ["m1"],
        id="dose_not_comparable-route-still-checked",
    ),
    pytest.param(
        DEFAULT,
        [enrol(), mg(at(0, 1), "m1", 2.4), x(at(2, 1), "x2")],
        {"x2": INTERVAL},
        {},
        ["m1"],
        id="dose_not_comparable-is-the-previous-dose-for-the-interval",
    ),
]


@pytest.mark.parametrize(("pack", "bodies", "expected", "_v1", "review"), CASES)
def test_dose_mg_under_version_2(
    pack: PolicyPack, bodies: Bodies, expected: Expected, _v1: Expected, review: list[str]
) -> None:
    decisions = run(*bodies, pack=v2(pack))
    assert deviations(decisions) == expected
    assert reviews(decisions) == review


@pytest.mark.parametrize(("pack", "bodies", "_v2", "expected", "review"), CASES)
def test_dose_mg_under_version_1(
    pack: PolicyPack, bodies: Bodies, _v2: Expected, expected: Expected, review: list[str]
) -> None:
    decisions = run(*bodies, pack=pack.model_copy(update=V1))
    assert deviations(decisions) == expected
    assert reviews(decisions) == review


def test_the_rationales_say_the_dose_was_converted() -> None:
    decisions = run(enrol(), mg(at(0, 1), "m1", 3.0, bsa_m2=1.82), pack=DEFAULT)
    [deviation] = [d for d in decisions if d.action == "adherence_deviation"]
    assert deviation.rationale.startswith(
        "A 3.00 mg (1.65 mg/m2 at BSA 1.82 m2) dose is above the recommended 1.30 mg/m2"
    )


def test_the_review_says_what_to_record() -> None:
    decisions = run(enrol(), mg(at(0, 1), "m1", 2.4), pack=DEFAULT)
    [review] = [d for d in decisions if d.action == "review_required"]
    assert review.trigger == "m1"
    assert review.at == at(0, 1)
    assert "A 2.40 mg dose was given" in review.rationale
    assert "mg/m2" in review.rationale
    for record in ("bsa_m2", "height_cm", "weight_kg"):
        assert record in review.rationale


def test_one_review_per_administration_with_its_own_id() -> None:
    bodies = [enrol(), mg(at(0, 1), "m1", 2.4), mg(at(7, 1), "m2", 2.4)]
    found = [d for d in run(*bodies, pack=DEFAULT) if d.reason == "dose_not_comparable"]
    assert [d.trigger for d in found] == ["m1", "m2"]
    assert len({d.decision_id for d in found}) == 2
    # the same timeline again: the same ids
    again = [d for d in run(*bodies, pack=DEFAULT) if d.reason == "dose_not_comparable"]
    assert [d.decision_id for d in again] == [d.decision_id for d in found]


def test_a_dose_in_mg_per_m2_is_still_read_as_given() -> None:
    event = parse_event(x(at(0), "x1", 1.3))
    assert isinstance(event, Administration)
    assert event.dose_per_m2(None) == 1.3
    assert event.dose_per_m2(2.0) == 1.3
    assert event.dose_text(2.0) == "1.30 mg/m2"


@pytest.mark.parametrize(
    ("fields", "course_bsa", "per_m2"),
    [
        pytest.param({"bsa_m2": 1.82}, None, 2.4 / 1.82, id="convert-events-bsa"),
        pytest.param({"bsa_m2": 1.82}, 1.2, 2.4 / 1.82, id="convert-events-bsa-first"),
        pytest.param({}, MOSTELLER_170_70, 2.4 / MOSTELLER_170_70, id="convert-courses-bsa"),
        pytest.param({}, None, None, id="convert-no-bsa"),
    ],
)
def test_dose_per_m2(
    fields: dict[str, Any], course_bsa: float | None, per_m2: float | None
) -> None:
    event = parse_event(mg(at(0), "m1", 2.4, **fields))
    assert isinstance(event, Administration)
    assert event.dose_per_m2(course_bsa) == per_m2  # not rounded


# -- "exactly one of dose_mg_m2 / dose_mg", and the bounds


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        pytest.param({"dose_mg_m2": 1.3, "dose_mg": 2.4}, "dose_mg", "not both", id="both-doses"),
        pytest.param({}, "dose_mg_m2", "is required", id="neither-dose"),
        pytest.param({"dose_mg": 0}, "dose_mg", "greater than 0", id="dose_mg-zero"),
        pytest.param({"dose_mg": 10.01}, "dose_mg", "at most 10", id="dose_mg-above-10"),
        pytest.param({"dose_mg": -1.0}, "dose_mg", "greater than 0", id="dose_mg-negative"),
        pytest.param({"dose_mg": "2.4"}, "dose_mg", "text", id="dose_mg-as-text"),
        pytest.param({"dose_mg": 2.4, "bsa_m2": 0.49}, "bsa_m2", "at least 0.5", id="bsa-low"),
        pytest.param({"dose_mg": 2.4, "bsa_m2": 3.01}, "bsa_m2", "at most 3", id="bsa-high"),
    ],
)
def test_the_dose_fields_are_refused_naming_the_field(
    fields: dict[str, Any], field: str, words: str
) -> None:
    body = administration(at(0), 0, event_id="m1")
    del body["dose_mg_m2"]
    with pytest.raises(EventValidationError) as refused:
        parse_event(body | fields)
    [problem] = refused.value.problems
    assert problem.field == field
    assert words in problem.message


@pytest.mark.parametrize("dose", [0.01, 2.4, 10, 10.0])
def test_dose_mg_within_the_bounds_is_accepted(dose: float) -> None:
    event = parse_event(mg(at(0), "m1", dose, bsa_m2=3.0))
    assert isinstance(event, Administration)
    assert event.dose_mg == dose
    assert event.dose_mg_m2 is None
