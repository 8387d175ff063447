"""D1 (dose reduction at grades 1-2) and D2 (discontinuation, immune work-up), pack `default`.

Timelines: an enrolment at T0 (1.3 mg/m2 SC weekly, 21-day cycles, baseline 0 unless given), then
one step every 21 days (step k at day 21*k, assessments labelled cycle k+1). G = max(sensory,
motor, pain).
"""

from __future__ import annotations

from typing import Any

import pytest

from policies import DEFAULT, Decision
from tests.common.factories import administration, assessment, at, enrollment, run, treatment_change

DOSE_ACTIONS = {"reduce_dose", "review_required", "discontinue", "immune_workup", "hold", "resume"}

Step = dict[str, Any] | tuple[str, Any]
Expected = tuple[str, str, float | None, str | None, str | None, str | None]


def of(decisions: list[Decision], action: str) -> list[Decision]:
    return [d for d in decisions if d.action == action]


def only(decisions: list[Decision], action: str) -> Decision:
    found = of(decisions, action)
    assert len(found) == 1, [d.to_json_dict() for d in found]
    return found[0]


def timeline(steps: list[Step], **enrol: Any) -> list[dict[str, Any]]:
    """Enrolment `enr`, then step k (id `s{k}`) at day 21*k.

    A step is a grades dict (an assessment, optionally with `findings`), or
    (`dose_reduced`, fields) for a recorded treatment change, or (`admin`, dose).
    """
    bodies = [enrollment(event_id="enr", **enrol)]
    for k, step in enumerate(steps, start=1):
        when, sid = at(21 * k), f"s{k}"
        if isinstance(step, tuple):
            kind, value = step
            if kind == "admin":
                bodies.append(administration(when, value, event_id=sid))
            else:
                bodies.append(treatment_change(when, kind, event_id=sid, **value))
        else:
            bodies.append(assessment(when, event_id=sid, cycle=k + 1, **step))
    return bodies


def dose_decisions(decisions: list[Decision]) -> list[Expected]:
    return sorted(
        (d.trigger, d.action, d.dose_mg_m2, d.schedule, d.route, d.reason)
        for d in decisions
        if d.action in DOSE_ACTIONS
    )


def reduce(k: int, dose: float, schedule: str = "weekly", route: str = "SC") -> Expected:
    return (f"s{k}", "reduce_dose", dose, schedule, route, None)


def lowest(k: int) -> Expected:
    return (f"s{k}", "review_required", None, None, None, "lowest_dose_level")


S0: dict[str, Any] = {"sensory": 0}
S1: dict[str, Any] = {"sensory": 1}
S2: dict[str, Any] = {"sensory": 2}
S3: dict[str, Any] = {"sensory": 3}
S4: dict[str, Any] = {"sensory": 4}

# --- D1 ----------------------------------------------------------------------------------------

# (rule, enrolment fields, steps, expected dose decisions)
D1_CASES = [
    pytest.param("D1", {}, [S1], [reduce(1, 1.0)], id="D1-G1-reduces-1.3-to-1.0"),
    pytest.param("D1", {}, [S1, S2], [reduce(1, 1.0), reduce(2, 0.7)], id="D1-chain-1.3-1.0-0.7"),
    pytest.param("D1", {}, [S2], [reduce(1, 1.0)], id="D1-G0-to-G2-moves-one-level-only"),
    pytest.param("D1", {}, [S0], [], id="D1-G0-no-change"),
    pytest.param("D1", {}, [S1, S1, S1], [reduce(1, 1.0)], id="D1-stable-G1-no-change"),
    pytest.param(
        "D1",
        {},
        [S1, S2, S2],
        [reduce(1, 1.0), reduce(2, 0.7)],
        id="D1-stable-G2-after-chain-no-change",
    ),
    pytest.param("D1", {}, [S2, S1], [reduce(1, 1.0)], id="D1-lower-grade-no-change"),
    pytest.param("D1", {}, [S2, S1, S2], [reduce(1, 1.0)], id="D1-back-up-to-reference-no-change"),
    pytest.param("D1", {}, [{"motor": 1}], [reduce(1, 1.0)], id="D1-G-from-motor"),
    pytest.param("D1", {}, [{"pain": 2}], [reduce(1, 1.0)], id="D1-G-from-pain"),
    pytest.param(
        "D1",
        {},
        [{"sensory": 1, "motor": 1, "pain": 1}, {"sensory": 1, "pain": 2}],
        [reduce(1, 1.0), reduce(2, 0.7)],
        id="D1-G-is-max-of-domains",
    ),
    pytest.param("D1", {}, [{"autonomic": 2}], [], id="D1-autonomic-2-is-not-in-G"),
    pytest.param("D1", {"baseline": S1}, [S1], [], id="D1-reference-baseline-G1-stable"),
    pytest.param(
        "D1", {"baseline": S1}, [S2], [reduce(1, 1.0)], id="D1-reference-baseline-G1-rise-to-2"
    ),
    pytest.param("D1", {"baseline": {"pain": 2}}, [S2], [], id="D1-reference-baseline-pain-2"),
    pytest.param(
        "D1",
        {"route": "IV", "schedule": "twice_weekly"},
        [S1],
        [reduce(1, 1.0, "weekly", "SC")],
        id="D1-reduction-switches-IV-twice-weekly-to-weekly-SC",
    ),
    pytest.param("D1", {"dose_mg_m2": 1.0}, [S1], [reduce(1, 0.7)], id="D1-enrolled-at-1.0"),
    pytest.param("D1", {"dose_mg_m2": 0.7}, [S1], [lowest(1)], id="D1-lowest-level-review"),
    pytest.param(
        "D1",
        {"dose_mg_m2": 0.7},
        [S1, S1],
        [lowest(1)],
        id="D1-lowest-level-review-not-repeated-on-stable-G",
    ),
    pytest.param(
        "D1",
        {"dose_mg_m2": 0.7},
        [S1, S1, S2],
        [lowest(1), lowest(3)],
        id="D1-lowest-level-review-again-on-further-rise",
    ),
    pytest.param(
        "D1",
        {"dose_mg_m2": 0.7},
        [S2, S1, S2],
        [lowest(1)],
        id="D1-lowest-level-reference-becomes-that-G",
    ),
    pytest.param(
        "D1",
        {"dose_mg_m2": 1.0},
        [S1, S2, S2],
        [reduce(1, 0.7), lowest(2)],
        id="D1-lowest-level-after-reduction-to-0.7",
    ),
    pytest.param(
        "D1",
        {},
        [("dose_reduced", {"dose_mg_m2": 1.0}), S1],
        [reduce(2, 0.7)],
        id="D1-recorded-dose_reduced-sets-current-dose",
    ),
    pytest.param(
        "D1",
        {},
        [S2, S1, ("dose_reduced", {"dose_mg_m2": 0.7}), S2],
        [reduce(1, 1.0), lowest(4)],
        id="D1-recorded-dose_reduced-with-dose-resets-reference",
    ),
    pytest.param(
        "D1",
        {},
        [S2, S1, ("dose_reduced", {}), S2],
        [reduce(1, 1.0), reduce(4, 0.7)],
        id="D1-recorded-dose_reduced-without-dose-resets-reference-keeps-dose",
    ),
    pytest.param(
        "D1",
        {},
        [S1, ("dose_reduced", {"dose_mg_m2": 0.7}), S1],
        [reduce(1, 1.0)],
        id="D1-recorded-dose_reduced-stable-G-no-review",
    ),
    pytest.param(
        "D1",
        {"baseline": S1},
        [("dose_reduced", {}), S1],
        [],
        id="D1-recorded-dose_reduced-before-any-assessment-reference-is-baseline",
    ),
    pytest.param(
        "D1",
        {"baseline": S1},
        [("dose_reduced", {"dose_mg_m2": 1.0}), S2],
        [reduce(2, 0.7)],
        id="D1-recorded-dose_reduced-then-rise-above-baseline",
    ),
]


@pytest.mark.parametrize(("rule", "enrol", "steps", "expected"), D1_CASES)
def test_d1_dose_reduction(
    rule: str, enrol: dict[str, Any], steps: list[Step], expected: list[Expected]
) -> None:
    decisions = run(*timeline(steps, **enrol), pack=DEFAULT)
    assert dose_decisions(decisions) == sorted(expected)
    for d in decisions:
        if d.action in {"reduce_dose", "review_required"}:
            assert (d.rule, d.policy, d.severity) == (rule, "default@1", "warning")
    for d in of(decisions, "reduce_dose"):
        assert {"S3", "S5", "S6"} <= set(d.sources)


@pytest.mark.parametrize(
    ("rule", "given", "reason"),
    [
        pytest.param("D1", 0.7, None, id="D1-lowest-level-dose-stays-0.7-given-0.7"),
        pytest.param(
            "D1", 1.0, "dose_above_recommended", id="D1-lowest-level-dose-stays-0.7-given-1.0"
        ),
    ],
)
def test_d1_lowest_level_keeps_dose(rule: str, given: float, reason: str | None) -> None:
    """After `lowest_dose_level` the recommendation is still 0.7 mg/m2 (seen through D6)."""
    decisions = run(*timeline([S1, ("admin", given)], dose_mg_m2=0.7), pack=DEFAULT)
    assert only(decisions, "review_required").rule == rule
    deviations = [d.reason for d in of(decisions, "adherence_deviation")]
    assert deviations == ([reason] if reason else [])


# --- D2 ----------------------------------------------------------------------------------------

# (rule, grades, findings, immune work-up expected?, duloxetine in the rationale?)
D2_DISCONTINUE_CASES = [
    pytest.param("D2", S3, None, False, False, id="D2-sensory-3"),
    pytest.param("D2", S4, None, False, False, id="D2-sensory-4"),
    pytest.param("D2", {"motor": 3}, None, True, False, id="D2-motor-3-motor-predominant"),
    pytest.param("D2", {"motor": 4}, None, True, False, id="D2-motor-4-motor-predominant"),
    pytest.param("D2", {"pain": 3}, None, False, True, id="D2-pain-3"),
    pytest.param("D2", {"autonomic": 3}, None, False, False, id="D2-autonomic-3-with-G0"),
    pytest.param("D2", {"autonomic": 4}, None, False, False, id="D2-autonomic-4"),
    pytest.param(
        "D2", {"sensory": 2, "autonomic": 3}, None, False, False, id="D2-autonomic-3-with-G2"
    ),
    pytest.param("D2", {"sensory": 3, "pain": 1}, None, False, False, id="D2-pain-1-no-duloxetine"),
    pytest.param("D2", {"sensory": 3, "pain": 2}, None, False, True, id="D2-pain-2-duloxetine"),
    pytest.param("D2", {"sensory": 2, "pain": 3}, None, False, True, id="D2-pain-3-duloxetine"),
    pytest.param("D2", {"sensory": 4, "pain": 3}, None, False, True, id="D2-S4-pain-3-duloxetine"),
    # immune-mediated red flags, one at a time
    pytest.param(
        "D2", {"sensory": 3, "motor": 3}, None, True, False, id="D2-workup-motor-equals-sensory"
    ),
    pytest.param(
        "D2", {"sensory": 3, "motor": 2}, None, False, False, id="D2-no-workup-motor-below-sensory"
    ),
    pytest.param(
        "D2",
        {"sensory": 2, "motor": 2, "pain": 3},
        None,
        True,
        True,
        id="D2-workup-motor-2-predominant-pain-3",
    ),
    pytest.param("D2", {"motor": 1, "autonomic": 3}, None, False, False, id="D2-no-workup-motor-1"),
    pytest.param(
        "D2",
        {"sensory": 1, "motor": 2, "autonomic": 3},
        None,
        True,
        False,
        id="D2-workup-motor-2-predominant-autonomic-3",
    ),
    pytest.param(
        "D2", S3, {"asymmetric_weakness": True}, True, False, id="D2-workup-asymmetric-weakness"
    ),
    pytest.param(
        "D2", S3, {"asymmetric_weakness": False}, False, False, id="D2-no-workup-symmetric"
    ),
    pytest.param(
        "D2", S3, {"ncs_pattern": "demyelinating"}, True, False, id="D2-workup-NCS-demyelinating"
    ),
    pytest.param("D2", S3, {"ncs_pattern": "mixed"}, True, False, id="D2-workup-NCS-mixed"),
    pytest.param("D2", S3, {"ncs_pattern": "axonal"}, False, False, id="D2-no-workup-NCS-axonal"),
    pytest.param("D2", S3, {"ncs_pattern": "normal"}, False, False, id="D2-no-workup-NCS-normal"),
    pytest.param(
        "D2",
        S3,
        {"csf_albuminocytologic_dissociation": True},
        True,
        False,
        id="D2-workup-CSF-dissociation",
    ),
    pytest.param(
        "D2",
        S3,
        {"csf_albuminocytologic_dissociation": False},
        False,
        False,
        id="D2-no-workup-CSF-normal",
    ),
    pytest.param(
        "D2",
        S3,
        {"mrc_sum_score": 30, "rankin": 4},
        False,
        False,
        id="D2-no-workup-MRC-and-Rankin-are-not-red-flags",
    ),
    pytest.param(
        "D2",
        {"sensory": 3, "motor": 3, "pain": 2},
        {
            "asymmetric_weakness": True,
            "ncs_pattern": "mixed",
            "csf_albuminocytologic_dissociation": True,
        },
        True,
        True,
        id="D2-workup-every-red-flag-once",
    ),
]


@pytest.mark.parametrize(
    ("rule", "grades", "findings", "workup", "duloxetine"), D2_DISCONTINUE_CASES
)
def test_d2_discontinuation(
    rule: str,
    grades: dict[str, Any],
    findings: dict[str, Any] | None,
    workup: bool,
    duloxetine: bool,
) -> None:
    extra = {"findings": findings} if findings is not None else {}
    decisions = run(
        enrollment(event_id="enr"),
        assessment(at(21), event_id="a", cycle=2, **grades, **extra),
        pack=DEFAULT,
    )
    stop = only(decisions, "discontinue")
    assert (stop.rule, stop.policy, stop.severity, stop.trigger, stop.at) == (
        rule,
        "default@1",
        "urgent",
        "a",
        at(21),
    )
    assert {"S3", "S5"} <= set(stop.sources)
    assert "carfilzomib" in stop.rationale
    assert ("duloxetine" in stop.rationale) is duloxetine
    workups = of(decisions, "immune_workup")
    if workup:
        assert len(workups) == 1
        (w,) = workups
        assert (w.rule, w.severity, w.trigger, w.at) == (rule, "urgent", "a", at(21))
        assert {"S1", "S2", "S3"} <= set(w.sources)
    else:
        assert workups == []
    # D2 wins over D1: no reduction from the discontinuing assessment
    assert of(decisions, "reduce_dose") == []
    # Discontinuation starts the coasting watch (D3): window_end = day 21 + 90 = day 111
    watch = only(decisions, "coasting_watch_started")
    assert (watch.trigger, watch.at, watch.window_end) == ("a", at(21), at(111))


# (rule, grades, findings, expected dose decisions) - assessments that do not discontinue
D2_NOT_DISCONTINUING_CASES = [
    pytest.param("D2", {"autonomic": 2}, None, [], id="D2-autonomic-2-continues"),
    pytest.param(
        "D2", {"sensory": 2, "autonomic": 2}, None, [reduce(1, 1.0)], id="D2-G2-autonomic-2"
    ),
    pytest.param(
        "D2",
        {"motor": 2},
        None,
        [reduce(1, 1.0)],
        id="D2-no-workup-motor-predominant-G2-without-discontinue",
    ),
    pytest.param(
        "D2",
        S2,
        {
            "asymmetric_weakness": True,
            "ncs_pattern": "demyelinating",
            "csf_albuminocytologic_dissociation": True,
        },
        [reduce(1, 1.0)],
        id="D2-no-workup-red-flags-at-G2",
    ),
]


@pytest.mark.parametrize(("rule", "grades", "findings", "expected"), D2_NOT_DISCONTINUING_CASES)
def test_d2_not_discontinuing(
    rule: str, grades: dict[str, Any], findings: dict[str, Any] | None, expected: list[Expected]
) -> None:
    step = {**grades, **({"findings": findings} if findings is not None else {})}
    decisions = run(*timeline([step]), pack=DEFAULT)
    assert dose_decisions(decisions) == sorted(expected)
    assert of(decisions, "coasting_watch_started") == []
    assert rule not in {d.rule for d in decisions}


@pytest.mark.parametrize(
    ("rule", "enrol", "steps", "expected"),
    [
        pytest.param(
            "D2",
            {},
            [S1, S2, S3],
            [reduce(1, 1.0), reduce(2, 0.7), ("s3", "discontinue", None, None, None, None)],
            id="D2-after-reduction-chain",
        ),
        pytest.param(
            "D2",
            {"dose_mg_m2": 0.7},
            [S3],
            [("s1", "discontinue", None, None, None, None)],
            id="D2-at-lowest-level-discontinues-not-review",
        ),
        pytest.param(
            "D2",
            {},
            [S3, S4, {"autonomic": 4}],
            [("s1", "discontinue", None, None, None, None)],
            id="D2-once-then-watch-takes-over",
        ),
    ],
)
def test_d2_in_sequence(
    rule: str, enrol: dict[str, Any], steps: list[Step], expected: list[Expected]
) -> None:
    decisions = run(*timeline(steps, **enrol), pack=DEFAULT)
    assert dose_decisions(decisions) == sorted(expected)
    assert only(decisions, "discontinue").rule == rule
