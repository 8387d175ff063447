"""D3 (coasting watch) and D4 (escalation to immunotherapy), both packs.

Most timelines stop the drug the same way in both packs: an enrolment at T0 whose `baseline` is
the wanted stop grades, then a recorded `treatment_change` `discontinued` at day 1 (no assessment
before it, so the stop grades are the baseline). Hence, by hand from POLICY.md:
window_end = day 1 + 90 = day 91; the first watch reassessment is due at day 1 + 14 = day 15.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from policies import DEFAULT, LABEL, Decision, PolicyPack
from tests.common.factories import (
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
OPTIONS_SOURCES = {"S1", "S4", "S8"}  # D4 options: IVIg, plasma exchange, corticosteroids


def of(decisions: list[Decision], action: str, trigger: str | None = None) -> list[Decision]:
    return [
        d for d in decisions if d.action == action and (trigger is None or d.trigger == trigger)
    ]


def only(decisions: list[Decision], action: str, trigger: str | None = None) -> Decision:
    found = of(decisions, action, trigger)
    assert len(found) == 1, [d.to_json_dict() for d in found]
    return found[0]


STOP_ACTIONS = [
    pytest.param("discontinued", id="stop-discontinued"),
    pytest.param("completed", id="stop-completed"),
]


def stopped(stop: dict[str, int] | None, action: str = "discontinued") -> list[dict[str, Any]]:
    """Enrolment with `stop` as baseline, drug recorded `action` (stopped) at day 1."""
    enrol = enrollment(event_id="enr", **({"baseline": stop} if stop else {}))
    return [enrol, treatment_change(at(1), action, event_id="stop")]


def check(
    days: float, grades: dict[str, Any], event_id: str = "a", **fields: Any
) -> dict[str, Any]:
    return assessment(at(days), event_id=event_id, **grades, **fields)


def watch_actions(decisions: list[Decision], trigger: str) -> list[str]:
    """What one assessment emitted, reassessment scheduling left out."""
    return sorted(
        d.action for d in decisions if d.trigger == trigger and d.action != "schedule_reassessment"
    )


def due_from(decisions: list[Decision], trigger: str) -> list[dt.datetime | None]:
    return [d.due_at for d in of(decisions, "schedule_reassessment", trigger)]


# --- D3: start of the watch ----------------------------------------------------------------------


@pytest.mark.parametrize(("pack", "policy"), PACKS)
@pytest.mark.parametrize(
    ("rule", "bodies", "start_trigger", "start_day"),
    [
        pytest.param(
            "D3",
            [enrollment(event_id="enr"), treatment_change(at(10), "discontinued", event_id="tc")],
            "tc",
            10,
            id="D3-start-recorded-discontinued",
        ),
        pytest.param(
            "D3",
            [enrollment(event_id="enr"), treatment_change(at(10), "completed", event_id="tc")],
            "tc",
            10,
            id="D3-start-recorded-completed",
        ),
        pytest.param(
            "D3",
            [enrollment(event_id="enr"), assessment(at(21), event_id="a", cycle=2, autonomic=3)],
            "a",
            21,
            id="D3-start-service-discontinue",
        ),
        pytest.param(
            "D3",
            [
                enrollment(event_id="enr"),
                assessment(at(21), event_id="a", cycle=2, autonomic=3),
                treatment_change(at(25), "discontinued", event_id="tc"),
            ],
            "a",
            21,
            id="D3-earlier-wins-service-discontinue-then-recorded-discontinued",
        ),
        pytest.param(
            "D3",
            [
                enrollment(event_id="enr"),
                assessment(at(21), event_id="a", cycle=2, autonomic=3),
                treatment_change(at(25), "completed", event_id="tc"),
            ],
            "a",
            21,
            id="D3-earlier-wins-service-discontinue-then-recorded-completed",
        ),
        pytest.param(
            "D3",
            [
                enrollment(event_id="enr"),
                treatment_change(at(15), "completed", event_id="tc"),
                assessment(at(21), event_id="a", cycle=2, autonomic=3),
            ],
            "tc",
            15,
            id="D3-earlier-wins-recorded-completed-then-severe-assessment",
        ),
        pytest.param(
            "D3",
            [
                enrollment(event_id="enr"),
                treatment_change(at(12), "completed", event_id="tc"),
                treatment_change(at(20), "discontinued", event_id="tc2"),
            ],
            "tc",
            12,
            id="D3-earlier-wins-completed-then-discontinued",
        ),
        pytest.param(
            "D3",
            [
                treatment_change(at(25), "discontinued", event_id="tc"),
                assessment(at(21), event_id="a", cycle=2, autonomic=3),
                enrollment(event_id="enr"),
            ],
            "a",
            21,
            id="D3-earlier-wins-input-order-irrelevant",
        ),
    ],
)
def test_d3_watch_starts_at_the_earliest_stop(
    pack: PolicyPack,
    policy: str,
    rule: str,
    bodies: list[dict[str, Any]],
    start_trigger: str,
    start_day: int,
) -> None:
    decisions = run(*bodies, pack=pack)
    start = only(decisions, "coasting_watch_started")
    assert (start.rule, start.policy, start.severity, start.trigger, start.at) == (
        rule,
        policy,
        "info",
        start_trigger,
        at(start_day),
    )
    assert start.window_end == at(start_day + 90)
    assert {"S3", "S7"} <= set(start.sources)
    # the stop schedules the first watch reassessment at +14 days
    assert due_from(decisions, start_trigger) == [at(start_day + 14)]


# --- D3: stop grades -----------------------------------------------------------------------------

# (rule, timeline, expected actions of the assessment `a`)
STOP_GRADE_CASES = [
    pytest.param(
        "D3",
        [
            enrollment(event_id="enr"),
            assessment(at(21), event_id="a0", cycle=2, sensory=2),
            treatment_change(at(22), "discontinued", event_id="stop"),
            check(36, {"sensory": 3}),
        ],
        ["coasting_worsening"],
        id="D3-stop-grades-last-assessment-before-stop",
    ),
    pytest.param(
        "D3",
        [
            enrollment(event_id="enr"),
            assessment(at(21), event_id="a-assessment", cycle=2, sensory=2),
            treatment_change(at(21), "discontinued", event_id="b-stop"),
            check(35, {"sensory": 3}),
        ],
        ["coasting_worsening"],
        id="D3-stop-grades-assessment-at-the-stop-instant-id-sorted-first",
    ),
    pytest.param(
        "D3",
        [*stopped({"sensory": 2}), check(15, {"sensory": 3})],
        ["coasting_worsening"],
        id="D3-stop-grades-baseline-when-no-assessment",
    ),
    pytest.param(
        "D3",
        [*stopped(None), check(15, {"sensory": 2})],
        ["escalate_immunotherapy"],
        id="D3-stop-grades-zero-without-baseline",
    ),
    pytest.param(
        "D3",
        [
            *stopped({"sensory": 2}),
            check(15, {"sensory": 0}, event_id="a1"),
            check(29, {"sensory": 2}, event_id="a"),
        ],
        ["coasting_worsening"],
        id="D3-stop-grades-fixed-worse-than-previous-not-than-stop",
    ),
    pytest.param(
        "D3",
        [
            *stopped({"sensory": 1}),
            check(15, {"sensory": 2}, event_id="a1"),
            check(29, {"sensory": 2}, event_id="a", findings={"ncs_pattern": "demyelinating"}),
        ],
        [],
        id="D3-not-worse-than-previous-nothing-even-with-red-flag",
    ),
]


@pytest.mark.parametrize(("pack", "policy"), PACKS)
@pytest.mark.parametrize(("rule", "bodies", "expected"), STOP_GRADE_CASES)
def test_d3_stop_grades(
    pack: PolicyPack, policy: str, rule: str, bodies: list[dict[str, Any]], expected: list[str]
) -> None:
    decisions = run(*bodies, pack=pack)
    assert watch_actions(decisions, "a") == expected
    for d in of(decisions, "coasting_worsening"):
        assert (d.rule, d.policy) == (rule, policy)


@pytest.mark.parametrize(("pack", "policy"), PACKS)
def test_d3_stop_grades_include_an_assessment_at_the_stop_instant(
    pack: PolicyPack, policy: str
) -> None:
    """POLICY.md: "Stop grades: the last assessment at or before the stop" (here: at it)."""
    decisions = run(
        enrollment(event_id="enr"),
        assessment(at(21), event_id="z-assessment", cycle=2, sensory=2),
        treatment_change(at(21), "discontinued", event_id="b-stop"),
        check(35, {"sensory": 3}, event_id="a"),
        pack=pack,
    )
    assert of(decisions, "escalate_immunotherapy") == []
    assert watch_actions(decisions, "a") == ["coasting_worsening"]


# --- D3: cadence and closing ---------------------------------------------------------------------

# (rule, stop grades, assessment day, grades, expected due day or None, expected other actions)
CADENCE_CASES = [
    pytest.param("D3", {"sensory": 2}, 15, {"sensory": 2}, 29, [], id="D3-inside-window-stable"),
    pytest.param(
        "D3", {"sensory": 2}, 15, {"sensory": 1}, 29, [], id="D3-inside-window-improved-+14"
    ),
    pytest.param(
        "D3", {"sensory": 2}, 60, {"sensory": 0}, 74, [], id="D3-inside-window-G0-not-closed"
    ),
    pytest.param("D3", {"sensory": 2}, 91, {"sensory": 2}, 105, [], id="D3-at-window_end-+14"),
    pytest.param(
        "D3", {"sensory": 2}, 91, {"sensory": 1}, 105, [], id="D3-at-window_end-G1-not-closed"
    ),
    pytest.param("D3", {"sensory": 2}, 92, {"sensory": 2}, 120, [], id="D3-after-window-G2-+28"),
    pytest.param("D3", {"sensory": 3}, 92, {"sensory": 3}, 120, [], id="D3-after-window-G3-+28"),
    pytest.param(
        "D3",
        {"sensory": 2},
        15,
        {"sensory": 3},
        22,
        ["coasting_worsening"],
        id="D3-coasting-worsening-sensory-+7",
    ),
    pytest.param(
        "D3",
        {"sensory": 2},
        15,
        {"sensory": 2, "pain": 1},
        22,
        ["coasting_worsening"],
        id="D3-coasting-worsening-pain-+7",
    ),
    pytest.param(
        "D3",
        {"sensory": 2},
        15,
        {"sensory": 2, "autonomic": 1},
        22,
        ["coasting_worsening"],
        id="D3-coasting-worsening-autonomic-+7",
    ),
    pytest.param(
        "D3",
        {"sensory": 2},
        91,
        {"sensory": 3},
        98,
        ["coasting_worsening"],
        id="D3-coasting-worsening-at-window_end-+7",
    ),
    pytest.param(
        "D4",
        {"sensory": 2},
        15,
        {"sensory": 2, "motor": 1},
        29,
        ["escalate_immunotherapy"],
        id="D4-escalating-inside-window-uses-+14",
    ),
    pytest.param(
        "D4",
        {"sensory": 2},
        92,
        {"sensory": 3},
        120,
        ["escalate_immunotherapy"],
        id="D4-escalating-after-window-uses-+28",
    ),
    pytest.param(
        "D3", {"sensory": 2}, 92, {"sensory": 1}, None, ["watch_closed"], id="D3-closed-G1"
    ),
    pytest.param(
        "D3", {"sensory": 2}, 92, {"sensory": 0}, None, ["watch_closed"], id="D3-closed-G0"
    ),
    pytest.param(
        "D3",
        {"sensory": 2, "autonomic": 2},
        92,
        {"sensory": 1, "autonomic": 2},
        None,
        ["watch_closed"],
        id="D3-closed-G1-autonomic-not-in-G",
    ),
    pytest.param(
        "D4",
        {"sensory": 1},
        92,
        {"sensory": 1, "pain": 1},
        120,
        ["escalate_immunotherapy"],
        id="D3-not-closed-on-escalating-assessment",
    ),
]


@pytest.mark.parametrize("stop_action", STOP_ACTIONS)
@pytest.mark.parametrize(("pack", "policy"), PACKS)
@pytest.mark.parametrize(("rule", "stop", "day", "grades", "due_day", "expected"), CADENCE_CASES)
def test_d3_cadence(
    pack: PolicyPack,
    policy: str,
    stop_action: str,
    rule: str,
    stop: dict[str, int],
    day: int,
    grades: dict[str, int],
    due_day: int | None,
    expected: list[str],
) -> None:
    decisions = run(*stopped(stop, stop_action), check(day, grades), pack=pack, until=at(day + 200))
    assert watch_actions(decisions, "a") == expected
    assert due_from(decisions, "a") == ([at(due_day)] if due_day is not None else [])
    for d in decisions:
        if d.trigger == "a" and d.action != "schedule_reassessment":
            assert (d.rule, d.policy) == (rule, policy)
    if due_day is None:  # closed: nothing more is scheduled, so nothing can become overdue
        after = [d for d in decisions if d.at > at(day)]
        assert after == []


@pytest.mark.parametrize(("pack", "policy"), PACKS)
def test_d3_decision_fields(pack: PolicyPack, policy: str) -> None:
    decisions = run(
        *stopped({"sensory": 2}),
        check(15, {"sensory": 3}, event_id="a1"),
        check(92, {"sensory": 1}, event_id="a2"),
        pack=pack,
    )
    worse = only(decisions, "coasting_worsening")
    assert (worse.rule, worse.policy, worse.severity, worse.audience, worse.at) == (
        "D3",
        policy,
        "warning",
        ["nurse"],
        at(15),
    )
    closed = only(decisions, "watch_closed")
    assert (closed.rule, closed.policy, closed.severity, closed.trigger, closed.at) == (
        "D3",
        policy,
        "info",
        "a2",
        at(92),
    )


@pytest.mark.parametrize(("pack", "policy"), PACKS)
def test_d3_full_watch(pack: PolicyPack, policy: str) -> None:
    """A whole watch, stop at day 1 (window_end day 91), assessments exactly when due."""
    bodies = [
        *stopped({"sensory": 2}),
        check(15, {"sensory": 2}, event_id="w1"),  # +14 -> 29
        check(29, {"sensory": 3}, event_id="w2"),  # coasting worsening, +7 -> 36
        check(36, {"sensory": 3}, event_id="w3"),  # stable, +14 -> 50
        check(50, {"sensory": 2}, event_id="w4"),  # better, +14 -> 64
        check(91, {"sensory": 2}, event_id="w5"),  # window_end itself, +14 -> 105
        check(105, {"sensory": 2}, event_id="w6"),  # after the window, +28 -> 133
        check(133, {"sensory": 1}, event_id="w7"),  # G <= 1 after the window: closed
    ]
    decisions = run(*bodies, pack=pack, until=at(400))
    expected_due = {
        "stop": at(15),
        "w1": at(29),
        "w2": at(36),
        "w3": at(50),
        "w4": at(64),
        "w5": at(105),
        "w6": at(133),
    }
    scheduled = {d.trigger: d.due_at for d in of(decisions, "schedule_reassessment")}
    assert {k: v for k, v in scheduled.items() if k != "enr"} == expected_due
    assert [d.trigger for d in of(decisions, "coasting_worsening")] == ["w2"]
    assert [d.trigger for d in of(decisions, "watch_closed")] == ["w7"]
    assert of(decisions, "escalate_immunotherapy") == []
    # w4 came 14 days after w3 but the pending check of w4 (due 64) was missed until w5 at 91
    assert [(d.at, d.due_at) for d in of(decisions, "reassessment_overdue")] == [(at(66), at(64))]
    assert [d for d in decisions if d.at > at(133)] == []


# --- D4: triggers --------------------------------------------------------------------------------

# (rule, stop grades, assessment day, grades, findings, expected `triggers`)
# POLICY.md numbers the triggers 1-5 but names none; the names are the engine's vocabulary.
TRIGGER_CASES = [
    pytest.param(
        "D4",
        {"sensory": 3},
        15,
        {"sensory": 3, "motor": 1},
        None,
        ["motor_worsening"],
        id="D4-1-new-motor-weakness",
    ),
    pytest.param(
        "D4",
        {"sensory": 2, "motor": 1},
        15,
        {"sensory": 2, "motor": 2},
        None,
        ["motor_worsening"],
        id="D4-1-worsening-motor-weakness",
    ),
    pytest.param(
        "D4",
        {"sensory": 1},
        15,
        {"sensory": 3},
        None,
        ["two_grade_rise"],
        id="D4-2-sensory-2-grades-above-stop",
    ),
    pytest.param(
        "D4",
        {"sensory": 1},
        15,
        {"sensory": 1, "pain": 2},
        None,
        ["two_grade_rise"],
        id="D4-2-pain-2-grades-above-stop",
    ),
    pytest.param(
        "D4",
        {"sensory": 2},
        15,
        {"sensory": 2, "autonomic": 2},
        None,
        ["two_grade_rise"],
        id="D4-2-autonomic-2-grades-above-stop",
    ),
    pytest.param(
        "D4", {"sensory": 3}, 15, {"sensory": 4}, None, ["grade_4"], id="D4-3-G-reaches-4"
    ),
    pytest.param(
        "D4",
        {"sensory": 2},
        15,
        {"sensory": 3},
        {"ncs_pattern": "demyelinating"},
        ["red_flag_worsening"],
        id="D4-4-worsening-with-demyelinating-NCS",
    ),
    pytest.param(
        "D4",
        {"sensory": 2},
        15,
        {"sensory": 2, "pain": 1},
        {"ncs_pattern": "mixed"},
        ["red_flag_worsening"],
        id="D4-4-worsening-with-mixed-NCS",
    ),
    pytest.param(
        "D4",
        {"sensory": 2},
        15,
        {"sensory": 3},
        {"csf_albuminocytologic_dissociation": True},
        ["red_flag_worsening"],
        id="D4-4-worsening-with-CSF-dissociation",
    ),
    pytest.param(
        "D4",
        {"sensory": 2},
        15,
        {"sensory": 2, "autonomic": 1},
        {"asymmetric_weakness": True},
        ["red_flag_worsening"],
        id="D4-4-worsening-with-asymmetric-weakness",
    ),
    pytest.param(
        "D4",
        {"sensory": 2},
        92,
        {"sensory": 3},
        None,
        ["worsening_after_window"],
        id="D4-5-worsening-after-window",
    ),
    pytest.param(
        "D4",
        {"sensory": 2},
        15,
        {"sensory": 4, "motor": 1},
        None,
        ["motor_worsening", "two_grade_rise", "grade_4"],
        id="D4-1-2-3-together",
    ),
    pytest.param(
        "D4",
        {"sensory": 2},
        92,
        {"sensory": 4, "motor": 1},
        {"csf_albuminocytologic_dissociation": True},
        [
            "motor_worsening",
            "two_grade_rise",
            "grade_4",
            "red_flag_worsening",
            "worsening_after_window",
        ],
        id="D4-all-five-together",
    ),
]

# Sources POLICY.md cites for each trigger (trigger 3 cites none).
TRIGGER_SOURCES = {
    "motor_worsening": {"S1", "S2", "S3"},
    "two_grade_rise": {"S2", "S3"},
    "grade_4": set(),
    "red_flag_worsening": {"S3"},
    "worsening_after_window": {"S1", "S3"},
}


@pytest.mark.parametrize("stop_action", STOP_ACTIONS)
@pytest.mark.parametrize(("pack", "policy"), PACKS)
@pytest.mark.parametrize(("rule", "stop", "day", "grades", "findings", "triggers"), TRIGGER_CASES)
def test_d4_escalation_triggers(
    pack: PolicyPack,
    policy: str,
    stop_action: str,
    rule: str,
    stop: dict[str, int],
    day: int,
    grades: dict[str, int],
    findings: dict[str, Any] | None,
    triggers: list[str],
) -> None:
    extra = {"findings": findings} if findings is not None else {}
    decisions = run(*stopped(stop, stop_action), check(day, grades, **extra), pack=pack)
    escalation = only(decisions, "escalate_immunotherapy")
    assert (escalation.rule, escalation.policy, escalation.severity, escalation.at) == (
        rule,
        policy,
        "urgent",
        at(day),
    )
    assert set(escalation.audience) == {"physician", "neurology"}
    assert escalation.triggers == triggers
    cited = set().union(OPTIONS_SOURCES, *(TRIGGER_SOURCES[t] for t in triggers))
    assert cited <= set(escalation.sources)
    for option in ("IVIg", "2 g/kg", "plasma exchange", "corticosteroids"):
        assert option in escalation.rationale
    assert of(decisions, "coasting_worsening") == []


# (rule, stop grades, assessment day, grades, findings, expected actions of `a`)
NO_TRIGGER_CASES = [
    pytest.param(
        "D3",
        {"sensory": 2},
        15,
        {"sensory": 3},
        None,
        ["coasting_worsening"],
        id="D3-worse-one-grade-no-trigger",
    ),
    pytest.param(
        "D3",
        {"sensory": 2},
        15,
        {"sensory": 3},
        {"ncs_pattern": "axonal"},
        ["coasting_worsening"],
        id="D4-4-axonal-NCS-is-not-a-red-flag",
    ),
    pytest.param(
        "D3",
        {"sensory": 2},
        15,
        {"sensory": 3},
        {"asymmetric_weakness": False, "csf_albuminocytologic_dissociation": False},
        ["coasting_worsening"],
        id="D4-4-negative-findings-are-not-red-flags",
    ),
    pytest.param(
        "D3",
        {"motor": 3},
        15,
        {"motor": 3, "pain": 1},
        None,
        ["coasting_worsening"],
        id="D4-4-motor-predominance-is-not-a-trigger-4-flag",
    ),
    pytest.param(
        "D3",
        {"sensory": 4},
        15,
        {"sensory": 4, "pain": 1},
        None,
        ["coasting_worsening"],
        id="D4-3-G4-already-at-stop",
    ),
    pytest.param(
        "D3",
        {"motor": 2},
        15,
        {"motor": 2, "sensory": 1},
        None,
        ["coasting_worsening"],
        id="D4-1-motor-not-above-stop",
    ),
    pytest.param(
        "D3",
        {"sensory": 2},
        15,
        {"sensory": 2},
        {"ncs_pattern": "demyelinating", "asymmetric_weakness": True},
        [],
        id="D4-4-red-flags-without-worsening",
    ),
    pytest.param("D3", {"sensory": 2}, 92, {"sensory": 2}, None, [], id="D4-5-stable-after-window"),
]


@pytest.mark.parametrize(("pack", "policy"), PACKS)
@pytest.mark.parametrize(
    ("rule", "stop", "day", "grades", "findings", "expected"), NO_TRIGGER_CASES
)
def test_d4_not_triggered(
    pack: PolicyPack,
    policy: str,
    rule: str,
    stop: dict[str, int],
    day: int,
    grades: dict[str, int],
    findings: dict[str, Any] | None,
    expected: list[str],
) -> None:
    extra = {"findings": findings} if findings is not None else {}
    decisions = run(*stopped(stop), check(day, grades, **extra), pack=pack)
    assert watch_actions(decisions, "a") == expected
    assert of(decisions, "escalate_immunotherapy") == []
    for d in of(decisions, "coasting_worsening"):
        assert (d.rule, d.policy) == (rule, policy)


@pytest.mark.parametrize(("pack", "policy"), PACKS)
@pytest.mark.parametrize(
    ("rule", "bodies", "escalations", "silent"),
    [
        pytest.param(
            "D4",
            [
                *stopped({"sensory": 2}),
                check(50, {"sensory": 1}, event_id="a1"),
                check(92, {"sensory": 2}, event_id="a2"),
            ],
            [("a2", ["worsening_after_window"])],
            [],
            id="D4-5-worse-than-previous-though-not-than-stop",
        ),
        pytest.param(
            "D4",
            [
                *stopped({"sensory": 2}),
                check(15, {"sensory": 2, "motor": 1}, event_id="a1"),
                check(29, {"sensory": 3, "motor": 2}, event_id="a2"),
                check(43, {"sensory": 4, "motor": 3}, event_id="a3"),
                check(120, {"sensory": 4, "motor": 4}, event_id="a4"),
            ],
            [("a1", ["motor_worsening"])],
            ["a2", "a3", "a4"],
            id="D4-once-per-course-later-worsening-silent",
        ),
        pytest.param(
            "D4",
            [
                *stopped({"sensory": 2}),
                check(92, {"sensory": 1}, event_id="a1"),
                check(150, {"sensory": 1, "pain": 1}, event_id="a2"),
            ],
            [("a2", ["worsening_after_window"])],
            [],
            id="D4-stays-active-after-watch-closed",
        ),
        pytest.param(
            "D4",
            [
                *stopped({"sensory": 2}),
                check(15, {"sensory": 2, "motor": 1}, event_id="a1"),
                course_end(at(20), event_id="end"),
                enrollment(at(30), event_id="enr2", baseline={"sensory": 2}),
                treatment_change(at(31), "discontinued", event_id="stop2"),
                check(45, {"sensory": 2, "motor": 1}, event_id="a2"),
            ],
            [("a1", ["motor_worsening"]), ("a2", ["motor_worsening"])],
            [],
            id="D4-once-per-course-new-course-escalates-again",
        ),
    ],
)
def test_d4_once_per_course(
    pack: PolicyPack,
    policy: str,
    rule: str,
    bodies: list[dict[str, Any]],
    escalations: list[tuple[str, list[str]]],
    silent: list[str],
) -> None:
    decisions = run(*bodies, pack=pack)
    got = [(d.trigger, d.triggers) for d in of(decisions, "escalate_immunotherapy")]
    assert got == escalations
    assert {d.rule for d in of(decisions, "escalate_immunotherapy")} == {rule}
    for trigger in silent:  # after the one escalation: no escalation, no coasting_worsening
        assert watch_actions(decisions, trigger) == []


@pytest.mark.parametrize(("pack", "policy"), PACKS)
def test_d4_after_escalation_cadence_is_normal(pack: PolicyPack, policy: str) -> None:
    decisions = run(
        *stopped({"sensory": 2}),
        check(15, {"sensory": 2, "motor": 1}, event_id="a1"),
        check(29, {"sensory": 3, "motor": 1}, event_id="a2"),
        pack=pack,
    )
    assert due_from(decisions, "a1") == [at(29)]
    assert due_from(decisions, "a2") == [at(43)]  # no coasting_worsening, so not +7


# --- D4: escalation_unanswered -------------------------------------------------------------------

# escalation at day 15 (09:00): the answer deadline is day 22 (09:00)
# (rule, immunotherapy time or None, until, expected escalation_unanswered times)
UNANSWERED_CASES = [
    pytest.param("D4", None, at(22), [at(22)], id="D4-unanswered-at-+7-days"),
    pytest.param("D4", None, at(22) - SECOND, [], id="D4-unanswered-not-before-+7-days"),
    pytest.param("D4", None, at(200), [at(22)], id="D4-unanswered-only-once"),
    pytest.param("D4", at(22), at(40), [], id="D4-immunotherapy-exactly-at-+7-answers"),
    pytest.param("D4", at(18), at(40), [], id="D4-immunotherapy-within-7-days-answers"),
    pytest.param("D4", at(22) + SECOND, at(40), [at(22)], id="D4-immunotherapy-after-+7-too-late"),
    pytest.param(
        "D4", at(10), at(40), [at(22)], id="D4-immunotherapy-before-escalation-does-not-answer"
    ),
]


@pytest.mark.parametrize(("pack", "policy"), PACKS)
@pytest.mark.parametrize(("rule", "therapy_at", "until", "expected"), UNANSWERED_CASES)
def test_d4_escalation_unanswered(
    pack: PolicyPack,
    policy: str,
    rule: str,
    therapy_at: dt.datetime | None,
    until: dt.datetime,
    expected: list[dt.datetime],
) -> None:
    bodies = [*stopped({"sensory": 2}), check(15, {"sensory": 2, "motor": 1})]
    if therapy_at is not None:
        bodies.append(immunotherapy(therapy_at, event_id="ivig"))
    decisions = run(*bodies, pack=pack, until=until)
    assert only(decisions, "escalate_immunotherapy").at == at(15)
    unanswered = of(decisions, "escalation_unanswered")
    assert [d.at for d in unanswered] == expected
    for d in unanswered:
        assert (d.rule, d.policy, d.severity, d.trigger) == (
            rule,
            policy,
            "urgent",
            "timer:escalation_unanswered",
        )
        assert set(d.sources) >= OPTIONS_SOURCES


@pytest.mark.parametrize(("pack", "policy"), PACKS)
def test_d4_immunotherapy_at_the_escalation_instant_answers(pack: PolicyPack, policy: str) -> None:
    decisions = run(
        *stopped({"sensory": 2}),
        immunotherapy(at(15), event_id="a-ivig"),
        check(15, {"sensory": 2, "motor": 1}, event_id="z-assessment"),
        pack=pack,
        until=at(40),
    )
    assert only(decisions, "escalate_immunotherapy").trigger == "z-assessment"
    assert of(decisions, "escalation_unanswered") == []
