"""A change of policy pack tells only what is still actionable and changed (policies.changeover).

Table-driven over real folds: each case is a timeline folded under default@1 (the pack in use)
and default@2 (the new one); the plan names the new decisions to alert and the old ones to
correct, as (trigger, action) pairs.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import pytest

from policies import Decision, builtin_pack, evaluate_patient
from policies.changeover import (
    CourseView,
    differing_fields,
    match_decisions,
    plan_changeover,
    still_actionable,
)
from tests.common import factories as f
from tests.common.factories import at

V1, V2 = builtin_pack("default@1"), builtin_pack("default@2")
BASELINE = {"baseline": {"sensory": 0, "motor": 0, "pain": 0, "autonomic": 0}}
Pair = tuple[str, str]


@dataclass(frozen=True)
class Case:
    id: str
    bodies: list[dict[str, Any]]
    now: dt.datetime
    alerted: set[Pair] = field(default_factory=set)
    corrected: set[Pair] = field(default_factory=set)


CASES = [
    Case(
        "same-advice-nothing-said",
        [f.enrollment(at(0), "E", "e", **BASELINE), f.assessment(at(21), "E", "a21", cycle=2)],
        at(25),
    ),
    Case(
        "same-discontinuation-and-watch-nothing-said",
        [
            f.enrollment(at(0), "F", "e", **BASELINE),
            f.assessment(at(21), "F", "a21", sensory=3, cycle=2),
        ],
        at(25),
    ),
    Case(
        "same-reduction-nothing-said",
        [
            f.enrollment(at(0), "G", "e", **BASELINE),
            f.assessment(at(21), "G", "a21", sensory=1, cycle=2),
        ],
        at(25),
    ),
    Case(
        # V3: a grading inside the pre-cycle window satisfies the pending day-21 reassessment
        "V3-pending-due-changed-corrected-and-alerted",
        [f.enrollment(at(0), "A", "e", **BASELINE), f.assessment(at(14), "A", "a14")],
        at(20),
        alerted={("a14", "schedule_reassessment")},
        corrected={("a14", "schedule_reassessment")},
    ),
    Case(
        # V1: a motor-predominant grade 2 at the latest grading asks for the work-up now
        "V1-workup-at-the-latest-grading-alerted",
        [
            f.enrollment(at(0), "C", "e", **BASELINE),
            f.assessment(at(18), "C", "a18", motor=2, sensory=1),
        ],
        at(20),
        alerted={("a18", "immune_workup"), ("a18", "schedule_reassessment")},
        corrected={("a18", "schedule_reassessment")},
    ),
    Case(
        # V7 at the enrolment is history once a grading followed: not alerted
        "V7-no-baseline-at-an-old-enrolment-not-alerted",
        [f.enrollment(at(0), "D", "e"), f.assessment(at(21), "D", "a21", cycle=2)],
        at(25),
    ),
    Case(
        # V7 at the enrolment that is the latest event: the current picture, alerted
        "V7-no-baseline-at-the-latest-enrolment-alerted",
        [f.enrollment(at(0), "H", "e")],
        at(2),
        alerted={("e", "review_required")},
    ),
]


def _outcomes(case: Case) -> tuple[Any, Any]:
    events = f.events(*case.bodies)
    patient = case.bodies[0]["patient_id"]
    return (
        evaluate_patient(V1, patient, events, case.now),
        evaluate_patient(V2, patient, events, case.now),
    )


def _pairs(ids: frozenset[str], decisions: list[Decision]) -> set[Pair]:
    named = {d.decision_id: (d.trigger, d.action) for d in decisions}
    return {named[i] for i in ids}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_the_changeover_tells_what_is_actionable_and_changed(case: Case) -> None:
    before, after = _outcomes(case)
    plan = plan_changeover(
        before.decisions, CourseView.of(before.state), after.decisions, CourseView.of(after.state)
    )
    assert _pairs(plan.alert, after.decisions) == case.alerted
    assert _pairs(plan.correct, before.decisions) == case.corrected
    # every old decision with a partner names it (the superseded row records it)
    new_ids = {d.decision_id for d in after.decisions}
    assert set(plan.replaced_by.values()) <= new_ids
    assert len(plan.replaced_by) == len(before.decisions)  # v2 keeps every v1 decision's kind


def test_a_fresh_decision_is_alerted_whatever_it_is() -> None:
    before, after = _outcomes(CASES[0])
    history = next(d for d in after.decisions if d.trigger == "e")
    plan = plan_changeover(
        before.decisions,
        CourseView.of(before.state),
        after.decisions,
        CourseView.of(after.state),
        fresh=frozenset({history.decision_id}),
    )
    assert plan.alert == {history.decision_id}
    assert plan.correct == frozenset()


def test_nothing_is_actionable_without_a_course() -> None:
    bodies = [f.enrollment(at(0), "X", "e"), f.course_end(at(5), patient="X", event_id="end")]
    outcome = evaluate_patient(V2, "X", f.events(*bodies), at(6))
    assert outcome.state.course is None
    assert CourseView.of(outcome.state) is None
    assert still_actionable(outcome.decisions, None) == set()


def _actionable(bodies: list[dict[str, Any]], now: dt.datetime) -> set[Pair]:
    outcome = evaluate_patient(V2, bodies[0]["patient_id"], f.events(*bodies), now)
    ids = still_actionable(outcome.decisions, CourseView.of(outcome.state))
    return _pairs(frozenset(ids), outcome.decisions)


def test_an_overdue_reassessment_and_its_missed_review_stay_actionable() -> None:
    bodies = [f.enrollment(at(0), "O", "e", **BASELINE)]
    # due day 21, overdue at day 23, missed (V5) 7 days later
    assert _actionable(bodies, at(40)) == {
        ("e", "schedule_reassessment"),
        ("timer:reassessment_overdue", "reassessment_overdue"),
        ("timer:reassessment_missed", "review_required"),
    }


def test_an_unanswered_escalation_stays_actionable_until_answered() -> None:
    bodies = [
        f.enrollment(at(0), "S", "e", **BASELINE),
        f.assessment(at(21), "S", "a21", sensory=3, cycle=2),
        f.assessment(at(35), "S", "a35", sensory=3, motor=3),
        f.assessment(at(49), "S", "a49", sensory=4, motor=3),
    ]
    actionable = _actionable(bodies, at(50))
    assert ("a21", "discontinue") in actionable  # the current dose recommendation
    escalations = {p for p in actionable if p[1] == "escalate_immunotherapy"}
    assert len(escalations) == 1
    answered = [*bodies, f.immunotherapy(at(50), patient="S", event_id="ivig")]
    assert not {p for p in _actionable(answered, at(51)) if p[1] == "escalate_immunotherapy"}


def test_history_is_not_actionable() -> None:
    bodies = [
        f.enrollment(at(0), "Q", "e", **BASELINE),
        f.assessment(at(21), "Q", "a21", sensory=1, cycle=2),
        f.assessment(at(42), "Q", "a42", sensory=1, cycle=3),
    ]
    actionable = _actionable(bodies, at(43))
    assert ("a21", "reduce_dose") in actionable  # still the current dose recommendation
    assert ("e", "schedule_reassessment") not in actionable  # satisfied long ago
    assert ("a21", "schedule_reassessment") not in actionable
    assert ("a42", "schedule_reassessment") in actionable


def test_decisions_match_by_trigger_action_and_reason() -> None:
    before, after = _outcomes(CASES[3])
    pairs, unmatched = match_decisions(before.decisions, after.decisions)
    assert unmatched == []
    changed = {
        (new.trigger, new.action): differing_fields(old, new)
        for new, old in pairs
        if old is not None and differing_fields(old, new)
    }
    assert changed == {("a14", "schedule_reassessment"): ["due_at"]}
