"""V1 (version 2): immune-mediated red flags at any grade ask for the work-up (rule D2), once
per course, on treatment, held or stopped (`workup_on_any_red_flag`: false -> true).

Each case is one sentence of the item; the same timeline under version 1's value is checked
too (the work-up only with a discontinuation)."""

from __future__ import annotations

from typing import Any

import pytest

from policies import DEFAULT, LABEL, Decision, PolicyPack, pack_from_mapping
from tests.common.factories import (
    assessment,
    at,
    enrollment,
    run,
    treatment_change,
)

V2_DEFAULT = DEFAULT.model_copy(update={"workup_on_any_red_flag": True})
V2_LABEL = LABEL.model_copy(update={"workup_on_any_red_flag": True})
DEMYELINATING = {"ncs_pattern": "demyelinating"}


def workups(decisions: list[Decision]) -> list[tuple[str, str, str, list[str]]]:
    return [
        (d.trigger, d.rule, d.severity, d.audience)
        for d in decisions
        if d.action == "immune_workup"
    ]


E = enrollment(event_id="enr")
CASES: list[Any] = [
    pytest.param(
        [E, assessment(at(21), event_id="a1", motor=2, sensory=1)],
        [("a1", "D2", "urgent", ["physician", "neurology"])],
        [],
        id="V1-D2-motor-predominant-grade-2-on-treatment",
    ),
    pytest.param(
        [E, assessment(at(21), event_id="a1", sensory=0, findings=DEMYELINATING)],
        [("a1", "D2", "urgent", ["physician", "neurology"])],
        [],
        id="V1-D2-grade-0-with-a-demyelinating-pattern",
    ),
    pytest.param(
        [
            E,
            assessment(at(21), event_id="a1", sensory=1, findings={"asymmetric_weakness": True}),
            assessment(at(42), event_id="a2", sensory=1, findings={"asymmetric_weakness": True}),
        ],
        [("a1", "D2", "urgent", ["physician", "neurology"])],
        [],
        id="V1-D2-once-per-course",
    ),
    pytest.param(
        [
            E,
            assessment(at(21), event_id="a1", motor=2, sensory=1),
            assessment(at(42), event_id="a2", motor=3, sensory=1),
        ],
        [("a1", "D2", "urgent", ["physician", "neurology"])],
        [("a2", "D2", "urgent", ["physician", "neurology"])],
        id="V1-D2-an-earlier-work-up-is-the-one-a-discontinuation-does-not-repeat",
    ),
    pytest.param(
        [E, assessment(at(21), event_id="a1", motor=3, sensory=1)],
        [("a1", "D2", "urgent", ["physician", "neurology"])],
        [("a1", "D2", "urgent", ["physician", "neurology"])],
        id="V1-D2-a-discontinuing-assessment-has-one-work-up-not-two",
    ),
    pytest.param(
        [
            E,
            treatment_change(at(10), "held", event_id="h"),
            assessment(at(21), event_id="a1", sensory=0, findings={"asymmetric_weakness": True}),
        ],
        [("a1", "D2", "urgent", ["physician", "neurology"])],
        [],
        id="V1-D2-while-held",
    ),
    pytest.param(
        [
            E,
            treatment_change(at(10), "completed", event_id="c"),
            assessment(at(24), event_id="a1", sensory=1, findings=DEMYELINATING),
        ],
        [("a1", "D2", "urgent", ["physician", "neurology"])],
        [],
        id="V1-D2-after-the-stop",
    ),
    pytest.param(
        [
            E,
            assessment(at(21), event_id="a1", motor=2, sensory=1, source="patient"),
            assessment(at(42), event_id="a2", motor=2, sensory=1),
        ],
        [("a2", "D2", "urgent", ["physician", "neurology"])],
        [],
        id="V1-D2-a-patient-report-neither-asks-nor-uses-it-up",
    ),
    pytest.param(
        [E, assessment(at(21), event_id="a1", motor=1, sensory=1)],
        [],
        [],
        id="V1-D2-no-red-flag-no-work-up",
    ),
    pytest.param(
        [
            E,
            assessment(at(21), event_id="a1", sensory=1),
            treatment_change(at(30), "discontinued", event_id="d"),
            enrollment(at(200), event_id="enr2"),
            assessment(at(221), event_id="b1", sensory=0, findings=DEMYELINATING),
        ],
        [("b1", "D2", "urgent", ["physician", "neurology"])],
        [],
        id="V1-D2-a-new-course-may-ask-again",
    ),
]


@pytest.mark.parametrize(("timeline", "version_2", "version_1"), CASES)
def test_v1_work_up_at_any_grade(
    timeline: list[dict[str, Any]],
    version_2: list[tuple[str, str, str, list[str]]],
    version_1: list[tuple[str, str, str, list[str]]],
) -> None:
    assert workups(run(*timeline, pack=V2_DEFAULT)) == version_2
    assert workups(run(*timeline, pack=DEFAULT)) == version_1


def test_v1_the_dose_rules_apply_as_before() -> None:
    """The work-up is added; D1's reduction on the same assessment is unchanged."""
    timeline = [E, assessment(at(21), event_id="a1", motor=2, sensory=1)]
    without = [d.action for d in run(*timeline, pack=DEFAULT) if d.action != "immune_workup"]
    with_v1 = [d.action for d in run(*timeline, pack=V2_DEFAULT) if d.action != "immune_workup"]
    assert with_v1 == without
    assert "reduce_dose" in with_v1


def test_v1_during_a_label_hold_the_work_up_is_emitted_too() -> None:
    """A label hold (N = 3) emits nothing but resume or discontinue in version 1; the work-up
    is the exception in version 2."""
    held = [E, assessment(at(21), event_id="a1", sensory=3)]
    flagged = assessment(at(42), event_id="a2", sensory=2, findings=DEMYELINATING)
    assert "hold" in [d.action for d in run(*held, pack=LABEL) if d.trigger == "a1"]
    assert workups(run(*held, flagged, pack=V2_LABEL)) == [
        ("a2", "D2", "urgent", ["physician", "neurology"])
    ]
    assert workups(run(*held, flagged, pack=LABEL)) == []


def test_v1_a_site_file_switches_it_on() -> None:
    site: PolicyPack = pack_from_mapping(
        {"base": "default@1", "name": "stmarys", "workup_on_any_red_flag": True}
    )
    timeline = [E, assessment(at(21), event_id="a1", motor=2, sensory=1)]
    assert [w[0] for w in workups(run(*timeline, pack=site))] == ["a1"]
