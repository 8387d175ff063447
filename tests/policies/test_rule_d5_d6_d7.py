"""D5 (reassessment schedule, overdue), D6 (adherence), D7 (no active course); both packs.

Enrolment at T0 (day 0, 09:00 UTC), 1.3 mg/m2 SC weekly, 21-day cycles: the first reassessment
is due at day 21 and is overdue at day 21 + 2 = day 23. An assessment labelled `cycle` c is taken
for cycle c, so the next reassessment is due at day 1 of cycle c + 1 = start + c * cycle length.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from policies import DEFAULT, LABEL, Decision, PolicyPack
from tests.common.factories import (
    administration,
    assessment,
    at,
    course_end,
    enrollment,
    immunotherapy,
    run,
    treatment_change,
)

PACKS = [
    pytest.param(DEFAULT, "default@1", id="default"),
    pytest.param(LABEL, "label@1", id="label"),
]
SECOND = dt.timedelta(seconds=1)


def of(decisions: list[Decision], action: str, trigger: str | None = None) -> list[Decision]:
    return [
        d for d in decisions if d.action == action and (trigger is None or d.trigger == trigger)
    ]


def only(decisions: list[Decision], action: str, trigger: str | None = None) -> Decision:
    found = of(decisions, action, trigger)
    assert len(found) == 1, [d.to_json_dict() for d in found]
    return found[0]


# --- D5: when the next reassessment is due -------------------------------------------------------

# (rule, cycle length, assessment time, cycle, expected due)
DUE_CASES = [
    pytest.param("D5", 21, at(21), 2, at(42), id="D5-cycle-2-at-its-day-1"),
    pytest.param("D5", 21, at(25), 2, at(42), id="D5-cycle-2-late-still-start-based"),
    pytest.param("D5", 21, at(19), 2, at(42), id="D5-cycle-2-early-still-start-based"),
    pytest.param("D5", 21, at(42, hours=5), 3, at(63), id="D5-cycle-3-time-of-day-ignored"),
    pytest.param("D5", 21, at(3), 1, at(21), id="D5-cycle-1"),
    pytest.param("D5", 28, at(28), 2, at(56), id="D5-cycle-2-of-28-days"),
    pytest.param("D5", 21, at(25), None, at(46), id="D5-no-cycle-time-based"),
    pytest.param("D5", 21, at(21, hours=6), None, at(42, hours=6), id="D5-no-cycle-keeps-time"),
    pytest.param("D5", 28, at(30, hours=3), None, at(58, hours=3), id="D5-no-cycle-28-days"),
]


@pytest.mark.parametrize(("pack", "policy"), PACKS)
@pytest.mark.parametrize(("rule", "length", "when", "cycle", "due"), DUE_CASES)
def test_d5_next_due(
    pack: PolicyPack,
    policy: str,
    rule: str,
    length: int,
    when: dt.datetime,
    cycle: int | None,
    due: dt.datetime,
) -> None:
    extra = {"cycle": cycle} if cycle is not None else {}
    decisions = run(
        enrollment(event_id="enr", cycle_length_days=length),
        assessment(when, event_id="a", sensory=0, **extra),
        pack=pack,
    )
    scheduled = only(decisions, "schedule_reassessment", "a")
    assert (scheduled.rule, scheduled.policy, scheduled.severity, scheduled.at) == (
        rule,
        policy,
        "info",
        when,
    )
    assert scheduled.due_at == due


# --- D5: overdue ---------------------------------------------------------------------------------

# (rule, events after the enrolment, until, expected overdue decisions as (at, due_at))
OVERDUE_CASES = [
    pytest.param("D5", [], at(23), [(at(23), at(21))], id="D5-overdue-at-due-plus-grace"),
    pytest.param("D5", [], at(23) - SECOND, [], id="D5-not-overdue-before-due-plus-grace"),
    pytest.param("D5", [], at(22), [], id="D5-until-cut-off"),
    pytest.param("D5", [], at(200), [(at(23), at(21))], id="D5-one-overdue-then-nothing"),
    pytest.param(
        "D5",
        [assessment(at(23), event_id="a", sensory=0)],
        at(23),
        [],
        id="D5-assessment-exactly-at-due-plus-grace-is-on-time",
    ),
    pytest.param(
        "D5",
        [assessment(at(23) + SECOND, event_id="a", sensory=0)],
        at(23) + SECOND,
        [(at(23), at(21))],
        id="D5-assessment-1s-after-due-plus-grace-is-late",
    ),
    pytest.param(
        "D5",
        [assessment(at(5), event_id="a", sensory=0)],
        at(28) - SECOND,
        [],
        id="D5-early-assessment-satisfies-the-pending-one",
    ),
    pytest.param(
        "D5",
        [assessment(at(5), event_id="a", sensory=0)],
        at(28),
        [(at(28), at(26))],
        id="D5-early-assessment-schedules-from-its-own-time",
    ),
    pytest.param(
        "D5",
        [assessment(at(30), event_id="a", sensory=0)],
        at(53),
        [(at(23), at(21)), (at(53), at(51))],
        id="D5-late-assessment-schedules-the-next",
    ),
    pytest.param(
        "D5",
        [assessment(at(21), event_id="a", cycle=2, sensory=0)],
        at(44),
        [(at(44), at(42))],
        id="D5-cycle-based-due-overdue",
    ),
    pytest.param(
        "D5",
        [treatment_change(at(1), "discontinued", event_id="stop")],
        at(17),
        [(at(17), at(15))],
        id="D5-watch-reassessment-overdue",
    ),
    pytest.param(
        "D5",
        [treatment_change(at(40), "held", event_id="held")],
        None,
        [(at(23), at(21))],
        id="D5-default-until-is-the-latest-event",
    ),
]


@pytest.mark.parametrize(("pack", "policy"), PACKS)
@pytest.mark.parametrize(("rule", "bodies", "until", "expected"), OVERDUE_CASES)
def test_d5_overdue(
    pack: PolicyPack,
    policy: str,
    rule: str,
    bodies: list[dict[str, Any]],
    until: dt.datetime | None,
    expected: list[tuple[dt.datetime, dt.datetime]],
) -> None:
    decisions = run(enrollment(event_id="enr"), *bodies, pack=pack, until=until)
    overdue = of(decisions, "reassessment_overdue")
    assert [(d.at, d.due_at) for d in overdue] == expected
    for d in overdue:
        assert (d.rule, d.policy, d.severity, d.audience, d.trigger) == (
            rule,
            policy,
            "warning",
            ["nurse"],
            "timer:reassessment_overdue",
        )
    # an overdue never schedules: only enrolment and events schedule reassessments
    assert {d.trigger for d in of(decisions, "schedule_reassessment")} <= {
        "enr",
        "a",
        "stop",
    }


@pytest.mark.parametrize(("pack", "policy"), PACKS)
def test_d5_late_assessment_after_overdue_schedules_again(pack: PolicyPack, policy: str) -> None:
    decisions = run(
        enrollment(event_id="enr"),
        assessment(at(100), event_id="a", cycle=5, sensory=0),
        pack=pack,
    )
    assert [d.at for d in of(decisions, "reassessment_overdue")] == [at(23)]
    assert only(decisions, "schedule_reassessment", "a").due_at == at(105)


# --- D6: adherence -------------------------------------------------------------------------------

URGENT_AFTER = ("dose_after_discontinuation", "urgent")
URGENT_HOLD = ("dose_during_hold", "urgent")
ABOVE = ("dose_above_recommended", "warning")


def tc(day: int, action: str, **fields: Any) -> dict[str, Any]:
    return treatment_change(at(day), action, event_id=f"tc{day}", **fields)


# (rule, enrolment dose, events before the dose (days 2-9), dose given at day 10, expected)
ADHERENCE_CASES = [
    pytest.param("D6", 1.3, [], 1.3, None, id="D6-recommended-dose"),
    pytest.param("D6", 1.3, [], 1.0, None, id="D6-lower-dose"),
    pytest.param("D6", 1.3, [], 1.35, None, id="D6-tolerance-1.3+0.05-inside"),
    pytest.param("D6", 1.3, [], 1.36, ABOVE, id="D6-tolerance-1.3+0.06-above"),
    pytest.param("D6", 1.3, [], 1.6, ABOVE, id="D6-1.6-above-1.3"),
    pytest.param("D6", 1.0, [], 1.05, None, id="D6-tolerance-1.0+0.05-inside"),
    pytest.param("D6", 1.0, [], 1.06, ABOVE, id="D6-tolerance-1.0+0.06-above"),
    pytest.param("D6", 0.7, [], 0.75, None, id="D6-tolerance-0.7+0.05-inside"),
    pytest.param("D6", 0.7, [], 0.76, ABOVE, id="D6-tolerance-0.7+0.06-above"),
    pytest.param(
        "D6", 1.3, [tc(3, "dose_reduced", dose_mg_m2=1.0)], 1.3, ABOVE, id="D6-above-recorded-1.0"
    ),
    pytest.param(
        "D6", 1.3, [tc(3, "dose_reduced", dose_mg_m2=1.0)], 1.0, None, id="D6-at-recorded-1.0"
    ),
    pytest.param(
        "D6", 1.3, [tc(3, "dose_reduced")], 1.3, None, id="D6-recorded-reduction-without-dose"
    ),
    pytest.param(
        "D6",
        1.3,
        [assessment(at(5), event_id="a", cycle=1, autonomic=3)],
        0.7,
        URGENT_AFTER,
        id="D6-after-discontinue-decision",
    ),
    pytest.param(
        "D6", 1.3, [tc(3, "discontinued")], 0.7, URGENT_AFTER, id="D6-after-recorded-discontinued"
    ),
    pytest.param(
        "D6",
        1.3,
        [tc(3, "discontinued")],
        1.5,
        URGENT_AFTER,
        id="D6-priority-after-discontinuation-over-above",
    ),
    pytest.param("D6", 1.3, [tc(3, "held")], 1.3, URGENT_HOLD, id="D6-recorded-held-is-a-hold"),
    pytest.param("D6", 1.3, [tc(3, "held")], 0.7, URGENT_HOLD, id="D6-any-dose-during-hold"),
    pytest.param(
        "D6", 1.3, [tc(3, "held")], 1.5, URGENT_HOLD, id="D6-priority-during-hold-over-above"
    ),
    pytest.param(
        "D6",
        1.3,
        [tc(3, "held"), tc(5, "discontinued")],
        1.5,
        URGENT_AFTER,
        id="D6-priority-after-discontinuation-over-hold-held-first",
    ),
    pytest.param(
        "D6",
        1.3,
        [tc(3, "discontinued"), tc(5, "held")],
        1.5,
        URGENT_AFTER,
        id="D6-priority-after-discontinuation-over-hold-held-after",
    ),
    pytest.param(
        "D6", 1.3, [tc(3, "held"), tc(5, "resumed")], 1.3, None, id="D6-held-then-resumed"
    ),
    pytest.param(
        "D6",
        1.3,
        [tc(3, "held"), tc(5, "resumed", dose_mg_m2=1.0)],
        1.3,
        ABOVE,
        id="D6-resumed-at-1.0-then-1.3",
    ),
    pytest.param("D6", 1.3, [tc(3, "completed")], 1.3, None, id="D6-after-completed-same-dose"),
    pytest.param("D6", 1.3, [tc(3, "completed")], 1.5, ABOVE, id="D6-after-completed-above"),
    pytest.param(
        "D6",
        1.3,
        [tc(3, "completed"), tc(5, "held")],
        1.3,
        None,
        id="D6-after-completed-only-dose-comparison-held-after",
    ),
    pytest.param(
        "D6",
        1.3,
        [tc(3, "held"), tc(5, "completed")],
        1.3,
        None,
        id="D6-after-completed-only-dose-comparison-held-before",
    ),
    pytest.param(
        "D6",
        1.3,
        [tc(3, "completed"), tc(5, "discontinued")],
        1.3,
        URGENT_AFTER,
        id="D6-completed-then-discontinued",
    ),
    pytest.param(
        "D6",
        1.3,
        [assessment(at(5), event_id="a", cycle=1, autonomic=3), tc(7, "completed")],
        0.7,
        URGENT_AFTER,
        id="D6-discontinue-decision-then-completed",
    ),
]


@pytest.mark.parametrize(("pack", "policy"), PACKS)
@pytest.mark.parametrize(("rule", "dose", "before", "given", "expected"), ADHERENCE_CASES)
def test_d6_adherence(
    pack: PolicyPack,
    policy: str,
    rule: str,
    dose: float,
    before: list[dict[str, Any]],
    given: float,
    expected: tuple[str, str] | None,
) -> None:
    decisions = run(
        enrollment(event_id="enr", dose_mg_m2=dose),
        *before,
        administration(at(10), given, event_id="dose"),
        pack=pack,
    )
    _check_deviation(decisions, rule, policy, expected)


def _check_deviation(
    decisions: list[Decision], rule: str, policy: str, expected: tuple[str, str] | None
) -> None:
    deviations = of(decisions, "adherence_deviation")
    if expected is None:
        assert deviations == []
        assert [d for d in decisions if d.trigger == "dose"] == []
        return
    assert len(deviations) == 1  # at most one per administration
    (d,) = deviations
    assert (d.reason, d.severity) == expected
    assert (d.rule, d.policy, d.trigger, d.at) == (rule, policy, "dose", at(10))
    assert "infusion_unit" in d.audience
    assert [x.action for x in decisions if x.trigger == "dose"] == ["adherence_deviation"]


# pack-specific recommendations: (pack, policy, rule, grades at day 5, dose given, expected)
ADHERENCE_PACK_CASES = [
    pytest.param(
        DEFAULT, "default@1", "D6", {"sensory": 1}, 1.3, ABOVE, id="D6-default-after-D1-reduction"
    ),
    pytest.param(
        DEFAULT, "default@1", "D6", {"sensory": 1}, 1.0, None, id="D6-default-at-D1-reduced-dose"
    ),
    pytest.param(
        DEFAULT,
        "default@1",
        "D6",
        {"sensory": 3},
        0.7,
        URGENT_AFTER,
        id="D6-default-after-D2-discontinue",
    ),
    pytest.param(
        LABEL, "label@1", "D6", {"sensory": 2}, 1.3, ABOVE, id="D6-label-after-L1-reduction"
    ),
    pytest.param(
        LABEL, "label@1", "D6", {"sensory": 3}, 0.7, URGENT_HOLD, id="D6-label-during-L2-hold"
    ),
    pytest.param(
        LABEL,
        "label@1",
        "D6",
        {"sensory": 2, "pain": 1},
        1.5,
        URGENT_HOLD,
        id="D6-label-during-L2-hold-priority-over-above",
    ),
    pytest.param(
        LABEL,
        "label@1",
        "D6",
        {"sensory": 4},
        0.7,
        URGENT_AFTER,
        id="D6-label-after-L3-discontinue",
    ),
]


@pytest.mark.parametrize(
    ("pack", "policy", "rule", "grades", "given", "expected"), ADHERENCE_PACK_CASES
)
def test_d6_adherence_pack_recommendation(
    pack: PolicyPack,
    policy: str,
    rule: str,
    grades: dict[str, int],
    given: float,
    expected: tuple[str, str] | None,
) -> None:
    decisions = run(
        enrollment(event_id="enr"),
        assessment(at(5), event_id="a", cycle=1, **grades),
        administration(at(10), given, event_id="dose"),
        pack=pack,
    )
    _check_deviation(decisions, rule, policy, expected)


@pytest.mark.parametrize(
    ("rule", "given", "expected"),
    [
        pytest.param("D6", 0.7, None, id="D6-label-after-L2-resume-at-0.7"),
        pytest.param("D6", 1.0, ABOVE, id="D6-label-after-L2-resume-1.0-above-0.7"),
    ],
)
def test_d6_label_after_resume(rule: str, given: float, expected: tuple[str, str] | None) -> None:
    decisions = run(
        enrollment(event_id="enr"),
        assessment(at(3), event_id="a1", cycle=1, sensory=3),
        assessment(at(6), event_id="a2", cycle=1, sensory=1),
        administration(at(10), given, event_id="dose"),
        pack=LABEL,
    )
    assert only(decisions, "resume").dose_mg_m2 == 0.7
    _check_deviation(decisions, rule, "label@1", expected)


# --- D7: no active course ------------------------------------------------------------------------

NO_COURSE = ("review_required", "no_active_course")

# (rule, events, expected (trigger, action, reason) of every non-scheduling decision)
NO_COURSE_CASES = [
    pytest.param(
        "D7",
        [assessment(at(5), event_id="x", sensory=2)],
        [("x", *NO_COURSE)],
        id="D7-assessment-without-enrolment",
    ),
    pytest.param(
        "D7",
        [administration(at(5), 1.3, event_id="x")],
        [("x", *NO_COURSE)],
        id="D7-administration-without-enrolment",
    ),
    pytest.param(
        "D7",
        [
            treatment_change(at(5), "discontinued", event_id="x1"),
            immunotherapy(at(6), event_id="x2"),
            course_end(at(7), event_id="x3"),
        ],
        [],
        id="D7-other-events-without-course-are-only-stored",
    ),
    pytest.param(
        "D7",
        [
            enrollment(event_id="enr"),
            course_end(at(10), event_id="end"),
            assessment(at(21), event_id="x1", sensory=3),
            administration(at(22), 1.6, event_id="x2"),
        ],
        [("x1", *NO_COURSE), ("x2", *NO_COURSE)],
        id="D7-after-course_end",
    ),
    pytest.param(
        "D7",
        [
            enrollment(event_id="enr"),
            course_end(at(10), event_id="end"),
            assessment(at(21), event_id="x1", sensory=2),
            enrollment(at(30), event_id="enr2"),
            assessment(at(51), event_id="a2", cycle=2, sensory=2),
            administration(at(52), 1.0, event_id="x2"),
        ],
        [("x1", *NO_COURSE), ("a2", "reduce_dose", None)],
        id="D7-new-enrolment-starts-a-new-course",
    ),
    pytest.param(
        "D7",
        [
            assessment(at(-1), event_id="x", sensory=1),
            enrollment(event_id="enr"),
            assessment(at(21), event_id="a", cycle=2, sensory=2),
        ],
        [("x", *NO_COURSE), ("a", "reduce_dose", None)],
        id="D7-assessment-before-enrolment-in-time",
    ),
    pytest.param(
        "D7",
        [
            assessment(at(21), event_id="a", cycle=2, sensory=2),
            administration(at(22), 1.0, event_id="d"),
            enrollment(event_id="enr"),
        ],
        [("a", "reduce_dose", None)],
        id="D7-enrolment-arriving-late-recomputes-the-timeline",
    ),
]


@pytest.mark.parametrize(("pack", "policy"), PACKS)
@pytest.mark.parametrize(("rule", "bodies", "expected"), NO_COURSE_CASES)
def test_d7_no_active_course(
    pack: PolicyPack,
    policy: str,
    rule: str,
    bodies: list[dict[str, Any]],
    expected: list[tuple[str, str, str | None]],
) -> None:
    decisions = run(*bodies, pack=pack)
    got = sorted(
        (d.trigger, d.action, d.reason)
        for d in decisions
        if d.action not in {"schedule_reassessment", "reassessment_overdue"}
    )
    assert got == sorted(expected)
    for d in decisions:
        if d.reason == "no_active_course":
            assert (d.rule, d.policy, d.severity) == (rule, policy, "warning")
            assert of(decisions, "schedule_reassessment", d.trigger) == []


# (rule, events ending with `end` at end_day, until): course_end drops the pending reassessment
# and both timers, and starts no watch
COURSE_END_CASES = [
    pytest.param(
        "D7",
        [enrollment(event_id="enr"), course_end(at(5), event_id="end")],
        5,
        at(100),
        id="D7-course_end-drops-pending-reassessment",
    ),
    pytest.param(
        "D7",
        [
            enrollment(event_id="enr", baseline={"sensory": 2}),
            treatment_change(at(1), "discontinued", event_id="stop"),
            assessment(at(15), event_id="a", sensory=2, motor=1),
            course_end(at(16), event_id="end"),
        ],
        16,
        at(100),
        id="D7-course_end-drops-escalation-timer",
    ),
    pytest.param(
        "D7",
        [
            enrollment(event_id="enr"),
            assessment(at(21), event_id="a", cycle=2, sensory=1),
            course_end(at(30), reason="death", event_id="end"),
        ],
        30,
        at(100),
        id="D7-course_end-death",
    ),
]


@pytest.mark.parametrize(("pack", "policy"), PACKS)
@pytest.mark.parametrize(("rule", "bodies", "end_day", "until"), COURSE_END_CASES)
def test_d7_course_end_drops_timers(
    pack: PolicyPack,
    policy: str,
    rule: str,
    bodies: list[dict[str, Any]],
    end_day: int,
    until: dt.datetime,
) -> None:
    decisions = run(*bodies, pack=pack, until=until)
    assert [d.to_json_dict() for d in decisions if d.at >= at(end_day)] == []
    assert of(decisions, "reassessment_overdue") == []
    assert of(decisions, "escalation_unanswered") == []
    assert rule not in {d.rule for d in decisions}
    assert {d.policy for d in decisions} == {policy}
