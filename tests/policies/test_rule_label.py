"""Pack `label` (POLICY.md, "Pack `label`"): the L1-L3 table replacing D1-D2.

N = max(sensory, motor); "pain" = pain >= 1. Timelines: an enrolment at T0 (1.3 mg/m2 SC weekly,
21-day cycles, baseline 0 unless given), then one step every 21 days (step k at day 21*k,
assessments labelled cycle k+1).
"""

from __future__ import annotations

from typing import Any

import pytest

from policies import LABEL, Decision
from tests.common.factories import assessment, at, enrollment, run, treatment_change

DOSE_ACTIONS = {"reduce_dose", "review_required", "discontinue", "immune_workup", "hold", "resume"}
SEVERITY = {
    "reduce_dose": "warning",
    "review_required": "warning",
    "hold": "urgent",
    "resume": "warning",
    "discontinue": "urgent",
    "immune_workup": "urgent",
}
# Rule ids: L1 (reduce, and the lowest-level review "as in D1"), L2 (hold, resume),
# L3 (discontinue). Reading tested: the immune work-up that accompanies an L3 discontinuation
# carries L3 (POLICY.md writes "`immune_workup` (D2) is emitted on `discontinue`").
RULE = {
    "reduce_dose": "L1",
    "review_required": "L1",
    "hold": "L2",
    "resume": "L2",
    "discontinue": "L3",
    "immune_workup": "L3",
}

Step = dict[str, Any] | tuple[str, dict[str, Any]]
Expected = tuple[str, str, float | None, str | None, str | None, str | None]


def of(decisions: list[Decision], action: str) -> list[Decision]:
    return [d for d in decisions if d.action == action]


def timeline(steps: list[Step], **enrol: Any) -> list[dict[str, Any]]:
    """Enrolment `enr`, then step k (id `s{k}`) at day 21*k: grades, or (tc action, fields)."""
    bodies = [enrollment(event_id="enr", **enrol)]
    for k, step in enumerate(steps, start=1):
        when, sid = at(21 * k), f"s{k}"
        if isinstance(step, tuple):
            kind, fields = step
            bodies.append(treatment_change(when, kind, event_id=sid, **fields))
        else:
            bodies.append(assessment(when, event_id=sid, cycle=k + 1, **step))
    return bodies


def dose_decisions(decisions: list[Decision]) -> list[Expected]:
    return sorted(
        (d.trigger, d.action, d.dose_mg_m2, d.schedule, d.route, d.reason)
        for d in decisions
        if d.action in DOSE_ACTIONS
    )


def check_fields(decisions: list[Decision]) -> None:
    for d in decisions:
        if d.action in DOSE_ACTIONS:
            assert (d.rule, d.policy, d.severity) == (RULE[d.action], "label@1", SEVERITY[d.action])
            assert {"S5", "S6"} & set(d.sources) or d.action == "immune_workup"


def reduce(k: int, dose: float, schedule: str = "weekly", route: str = "SC") -> Expected:
    return (f"s{k}", "reduce_dose", dose, schedule, route, None)


def resume(k: int, route: str = "SC") -> Expected:
    return (f"s{k}", "resume", 0.7, "weekly", route, None)


def plain(k: int, action: str) -> Expected:
    return (f"s{k}", action, None, None, None, None)


def lowest(k: int) -> Expected:
    return (f"s{k}", "review_required", None, None, None, "lowest_dose_level")


N0: dict[str, Any] = {"sensory": 0}
N1: dict[str, Any] = {"sensory": 1}
N1P: dict[str, Any] = {"sensory": 1, "pain": 1}
N2: dict[str, Any] = {"sensory": 2}
N2P: dict[str, Any] = {"sensory": 2, "pain": 1}
N3: dict[str, Any] = {"sensory": 3}
N4: dict[str, Any] = {"sensory": 4}

# --- the table, one assessment from a fresh course ---------------------------------------------

# (rule, grades, findings, expected dose decisions of that assessment)
TABLE_CASES = [
    pytest.param("-", N0, None, [], id="L-N0-without-pain-nothing"),
    pytest.param("-", {"pain": 1}, None, [], id="L-N0-with-pain-1-no-row"),
    pytest.param("-", {"pain": 2}, None, [], id="L-N0-with-pain-2-no-row"),
    pytest.param("-", {"pain": 3}, None, [], id="L-N0-with-pain-3-no-row"),
    pytest.param("-", {"autonomic": 2}, None, [], id="L-autonomic-2-no-row"),
    pytest.param("L1", N1, None, [], id="L1-N1-sensory-without-pain-continue"),
    pytest.param("L1", {"motor": 1}, None, [], id="L1-N1-motor-without-pain-continue"),
    pytest.param("L1", N1P, None, [reduce(1, 1.0)], id="L1-N1-with-pain-reduce"),
    pytest.param(
        "L1", {"motor": 1, "pain": 3}, None, [reduce(1, 1.0)], id="L1-N1-motor-with-pain-3-reduce"
    ),
    pytest.param("L1", N2, None, [reduce(1, 1.0)], id="L1-N2-sensory-reduce"),
    pytest.param("L1", {"motor": 2}, None, [reduce(1, 1.0)], id="L1-N2-motor-reduce"),
    pytest.param("L2", N2P, None, [plain(1, "hold")], id="L2-N2-with-pain-hold-overlap"),
    pytest.param("L2", N3, None, [plain(1, "hold")], id="L2-N3-sensory-hold"),
    pytest.param("L2", {"motor": 3}, None, [plain(1, "hold")], id="L2-N3-motor-hold"),
    pytest.param("L2", {"sensory": 3, "pain": 2}, None, [plain(1, "hold")], id="L2-N3-pain-hold"),
    pytest.param("L3", N4, None, [plain(1, "discontinue")], id="L3-N4-sensory-discontinue"),
    pytest.param(
        "L3", {"sensory": 4, "pain": 3}, None, [plain(1, "discontinue")], id="L3-N4-with-pain"
    ),
    pytest.param(
        "L3", {"autonomic": 3}, None, [plain(1, "discontinue")], id="L3-autonomic-3-discontinue"
    ),
    pytest.param(
        "L3", {"autonomic": 4}, None, [plain(1, "discontinue")], id="L3-autonomic-4-discontinue"
    ),
    pytest.param(
        "L3",
        {"sensory": 1, "pain": 1, "autonomic": 3},
        None,
        [plain(1, "discontinue")],
        id="L3-overlap-N1-pain-and-autonomic-3",
    ),
    pytest.param(
        "L3",
        {"sensory": 2, "autonomic": 3},
        None,
        [plain(1, "discontinue")],
        id="L3-overlap-N2-and-autonomic-3",
    ),
    pytest.param(
        "L3",
        {"sensory": 3, "pain": 1, "autonomic": 3},
        None,
        [plain(1, "discontinue")],
        id="L3-overlap-N3-pain-and-autonomic-3",
    ),
    # L3 immune work-up (D2's red flags)
    pytest.param(
        "L3",
        {"motor": 4},
        None,
        [plain(1, "discontinue"), plain(1, "immune_workup")],
        id="L3-workup-motor-predominant",
    ),
    pytest.param(
        "L3",
        N4,
        {"csf_albuminocytologic_dissociation": True},
        [plain(1, "discontinue"), plain(1, "immune_workup")],
        id="L3-workup-CSF-dissociation",
    ),
    pytest.param(
        "L3",
        N4,
        {"ncs_pattern": "demyelinating"},
        [plain(1, "discontinue"), plain(1, "immune_workup")],
        id="L3-workup-NCS-demyelinating",
    ),
    pytest.param(
        "L3",
        {"autonomic": 3},
        {"ncs_pattern": "mixed"},
        [plain(1, "discontinue"), plain(1, "immune_workup")],
        id="L3-workup-NCS-mixed-autonomic-3",
    ),
    pytest.param(
        "L3",
        {"autonomic": 3},
        {"asymmetric_weakness": True},
        [plain(1, "discontinue"), plain(1, "immune_workup")],
        id="L3-workup-asymmetric-weakness",
    ),
    pytest.param(
        "L3",
        N4,
        {"ncs_pattern": "axonal", "asymmetric_weakness": False},
        [plain(1, "discontinue")],
        id="L3-no-workup-without-red-flags",
    ),
    pytest.param(
        "L2",
        {"motor": 3},
        {"csf_albuminocytologic_dissociation": True},
        [plain(1, "hold")],
        id="L2-no-workup-on-hold",
    ),
    pytest.param(
        "L1",
        {"motor": 2},
        {"asymmetric_weakness": True},
        [reduce(1, 1.0)],
        id="L1-no-workup-on-reduce",
    ),
]


@pytest.mark.parametrize(("rule", "grades", "findings", "expected"), TABLE_CASES)
def test_label_table(
    rule: str,
    grades: dict[str, Any],
    findings: dict[str, Any] | None,
    expected: list[Expected],
) -> None:
    step = {**grades, **({"findings": findings} if findings is not None else {})}
    decisions = run(*timeline([step]), pack=LABEL)
    assert dose_decisions(decisions) == sorted(expected)
    check_fields(decisions)
    emitted = {d.rule for d in decisions if d.action in DOSE_ACTIONS}
    assert emitted <= {rule}
    # the label pack never uses the default pack's D1/D2 ids
    assert not {"D1", "D2"} & {d.rule for d in decisions}
    if any(e[1] == "discontinue" for e in expected):  # L3 starts D3: window_end day 21 + 90
        (watch,) = of(decisions, "coasting_watch_started")
        assert (watch.rule, watch.trigger, watch.window_end) == ("D3", "s1", at(111))


# --- sequences -----------------------------------------------------------------------------------

# (rule, enrolment fields, steps, expected dose decisions)
SEQUENCE_CASES = [
    pytest.param(
        "L1",
        {"route": "IV", "schedule": "twice_weekly"},
        [N2],
        [reduce(1, 1.0, "twice_weekly", "IV")],
        id="L1-reduction-keeps-schedule-and-route-IV-twice-weekly",
    ),
    pytest.param(
        "L1",
        {"route": "IV"},
        [N1P],
        [reduce(1, 1.0, "weekly", "IV")],
        id="L1-reduction-keeps-route-IV",
    ),
    pytest.param(
        "L1",
        {"dose_mg_m2": 1.0, "schedule": "twice_weekly"},
        [N2],
        [reduce(1, 0.7, "twice_weekly", "SC")],
        id="L1-reduce-1.0-to-0.7-keeps-schedule",
    ),
    pytest.param("L1", {}, [N2, N2], [reduce(1, 1.0)], id="L1-stable-N2-does-not-reduce-again"),
    pytest.param("L1", {}, [N1P, N2], [reduce(1, 1.0)], id="L1-same-tier-N1-pain-then-N2"),
    pytest.param("L1", {}, [N2, N1, N2], [reduce(1, 1.0)], id="L1-N2-N1-N2-same-tier"),
    pytest.param("L1", {}, [N2, N0, N1P], [reduce(1, 1.0)], id="L1-N2-N0-N1-pain-same-tier"),
    pytest.param(
        "L1", {"dose_mg_m2": 0.7}, [N2], [lowest(1)], id="L1-lowest-level-review_required"
    ),
    pytest.param(
        "L1",
        {"dose_mg_m2": 0.7},
        [N2, N2, N1P],
        [lowest(1)],
        id="L1-lowest-level-review-not-repeated-on-stable-tier",
    ),
    pytest.param(
        "L1",
        {},
        [N2, N0, ("dose_reduced", {}), N2],
        [reduce(1, 1.0), reduce(4, 0.7)],
        id="L1-recorded-dose_reduced-resets-reference-tier",
    ),
    pytest.param(
        "L1",
        {"baseline": N2},
        [N2],
        [],
        id="L1-reference-is-baseline-tier-without-dose-change",
    ),
    pytest.param(
        "L2",
        {"route": "IV", "schedule": "twice_weekly"},
        [N3, N1],
        [plain(1, "hold"), resume(2, "IV")],
        id="L2-hold-then-resume-0.7-weekly-route-kept",
    ),
    pytest.param(
        "L2", {}, [N2P, N0], [plain(1, "hold"), resume(2)], id="L2-hold-then-resume-at-N0"
    ),
    pytest.param(
        "L2",
        {},
        [N3, N1P],
        [plain(1, "hold"), resume(2)],
        id="L2-resume-at-N1-with-pain",
    ),
    pytest.param(
        "L2",
        {},
        [N2, N3, N1],
        [reduce(1, 1.0), plain(2, "hold"), resume(3)],
        id="L2-reduce-hold-resume",
    ),
    pytest.param("L2", {}, [N1, N0, N1], [], id="L2-resume-only-after-hold"),
    pytest.param(
        "L2",
        {},
        [N3, N2P, N3, N2, N1P],
        [plain(1, "hold"), resume(5)],
        id="L2-while-held-nothing-but-resume",
    ),
    pytest.param(
        "L2",
        {},
        [N3, N3, {"sensory": 4}],
        [plain(1, "hold"), plain(3, "discontinue")],
        id="L2-while-held-discontinue-N4",
    ),
    pytest.param(
        "L2",
        {},
        [N2P, {"sensory": 2, "autonomic": 3}],
        [plain(1, "hold"), plain(2, "discontinue")],
        id="L2-while-held-discontinue-autonomic",
    ),
    pytest.param(
        "L2",
        {},
        [N3, N0, N2P],
        [plain(1, "hold"), resume(2), plain(3, "hold")],
        id="L2-hold-again-after-resume",
    ),
    pytest.param(
        "L2",
        {},
        [N3, N0, N2],
        [plain(1, "hold"), resume(2), lowest(3)],
        id="L2-resume-is-a-dose-change-then-lowest-level-review",
    ),
    pytest.param(
        "L2",
        {},
        [N3, N1P, N2],
        [plain(1, "hold"), resume(2)],
        id="L2-resume-at-tier-1-then-stable-tier",
    ),
    pytest.param(
        "L3", {}, [N2, N4], [reduce(1, 1.0), plain(2, "discontinue")], id="L3-after-reduction"
    ),
    pytest.param("L3", {}, [N4, N4], [plain(1, "discontinue")], id="L3-once"),
]


@pytest.mark.parametrize(("rule", "enrol", "steps", "expected"), SEQUENCE_CASES)
def test_label_sequences(
    rule: str, enrol: dict[str, Any], steps: list[Step], expected: list[Expected]
) -> None:
    decisions = run(*timeline(steps, **enrol), pack=LABEL)
    assert dose_decisions(decisions) == sorted(expected)
    check_fields(decisions)
    assert rule in {RULE[e[1]] for e in expected} or expected == []


def test_label_while_held_reassessments_are_still_scheduled() -> None:
    """L2: while held only resume/discontinue are emitted, but D5 keeps scheduling."""
    steps: list[Step] = [N3, N2P, N3, N2, N0]
    decisions = run(*timeline(steps), pack=LABEL)
    by_step = {
        f"s{k}": sorted(d.action for d in decisions if d.trigger == f"s{k}")
        for k in range(1, len(steps) + 1)
    }
    assert by_step == {
        "s1": ["hold", "schedule_reassessment"],
        "s2": ["schedule_reassessment"],
        "s3": ["schedule_reassessment"],
        "s4": ["schedule_reassessment"],
        "s5": ["resume", "schedule_reassessment"],
    }
    # held assessments are on treatment: day 1 of the next cycle (day 21*(k+1))
    assert [(d.trigger, d.due_at) for d in of(decisions, "schedule_reassessment")][1:] == [
        (f"s{k}", at(21 * (k + 1))) for k in range(1, len(steps) + 1)
    ]
