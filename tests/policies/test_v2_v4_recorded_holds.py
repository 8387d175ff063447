"""V4 (POLICY.md, "Version 2"): recorded holds are not label holds (`recorded_hold_resumes`).

Version 2 switches `recorded_hold_resumes` from true to false. Timelines: an enrolment `enr` at
T0 (1.3 mg/m2 SC weekly, 21-day cycles), then step k (id `s{k}`) at day 7*k: an assessment
(grades), a recorded treatment change, or an administration. Each case gives the decisions of
interest under the setting switched (version 2) and under version 1 (`LABEL`/`DEFAULT`), so the
table shows what V4 changes and that version 1 stays as it was.
"""

from __future__ import annotations

import tomllib
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policies import DEFAULT, LABEL, Decision, PackError, PolicyPack, pack_from_mapping
from policies.engine import evaluate_patient
from policies.state import Course
from tests.common.factories import (
    administration,
    assessment,
    at,
    enrollment,
    events,
    run,
    treatment_change,
)

V2_LABEL = LABEL.model_copy(update={"recorded_hold_resumes": False})
V2_DEFAULT = DEFAULT.model_copy(update={"recorded_hold_resumes": False})
V2_PACKS = [
    pytest.param(V2_DEFAULT, DEFAULT, id="default"),
    pytest.param(V2_LABEL, LABEL, id="label"),
]
NOTABLE = {"reduce_dose", "review_required", "hold", "resume", "discontinue", "adherence_deviation"}
SEVERITY = {
    "reduce_dose": "warning",
    "hold": "urgent",
    "resume": "warning",
    "discontinue": "urgent",
}

Step = dict[str, Any] | tuple[str, Any]
# (trigger, action, rule, detail): detail is the dose of reduce_dose / resume, the reason of
# adherence_deviation / review_required, None otherwise
Expected = tuple[str, str, str, float | str | None]

N0: dict[str, Any] = {"sensory": 0}
N1: dict[str, Any] = {"sensory": 1}
N1P: dict[str, Any] = {"sensory": 1, "pain": 1}
N2: dict[str, Any] = {"sensory": 2}
N2P: dict[str, Any] = {"sensory": 2, "pain": 1}
N3: dict[str, Any] = {"sensory": 3}
N4: dict[str, Any] = {"sensory": 4}


def held(reason: str | None = None) -> Step:
    return ("held", {"reason": reason} if reason else {})


def recorded(action: str, **fields: Any) -> Step:
    return (action, fields)


def dose(mg_m2: float) -> Step:
    return ("dose", mg_m2)


def timeline(steps: list[Step], patient: str = "P1") -> list[dict[str, Any]]:
    """Enrolment `enr` at day 0, then step k (id `s{k}`) at day 7*k."""
    bodies = [enrollment(patient=patient, event_id="enr")]
    for k, step in enumerate(steps, start=1):
        when, sid = at(7 * k), f"s{k}"
        if isinstance(step, dict):
            bodies.append(assessment(when, patient=patient, event_id=sid, **step))
        elif step[0] == "dose":
            bodies.append(administration(when, step[1], patient=patient, event_id=sid))
        else:
            kind, fields = step
            bodies.append(treatment_change(when, kind, patient=patient, event_id=sid, **fields))
    return bodies


def notable(decisions: list[Decision]) -> list[Expected]:
    found: list[Expected] = []
    for d in decisions:
        if d.action in NOTABLE:
            detail = d.dose_mg_m2 if d.action in ("reduce_dose", "resume") else d.reason
            found.append((d.trigger, d.action, d.rule, detail))
    return sorted(found)


def check_fields(decisions: list[Decision], pack: PolicyPack) -> None:
    for d in decisions:
        assert d.policy == pack.label
        if d.action in SEVERITY:
            assert d.severity == SEVERITY[d.action]
        if d.action == "resume":  # L2: 0.7 mg/m2 weekly, the course's route
            assert (d.dose_mg_m2, d.schedule, d.route) == (0.7, "weekly", "SC")
        if d.reason == "dose_during_hold":
            assert d.severity == "urgent"


def hold(k: int) -> Expected:
    return (f"s{k}", "hold", "L2", None)


def resume(k: int) -> Expected:
    return (f"s{k}", "resume", "L2", 0.7)


def reduce(k: int, mg_m2: float) -> Expected:
    return (f"s{k}", "reduce_dose", "L1", mg_m2)


def stop(k: int) -> Expected:
    return (f"s{k}", "discontinue", "L3", None)


def d6(k: int, reason: str) -> Expected:
    return (f"s{k}", "adherence_deviation", "D6", reason)


DURING = "dose_during_hold"
AFTER = "dose_after_discontinuation"
ABOVE = "dose_above_recommended"

# --- both packs: a recorded hold is a hold for D6 until its recorded end -----------------------

# (rule, steps, expected under version 2, expected under version 1)
BOTH_PACKS_CASES = [
    pytest.param(
        "D6",
        [held("herpes zoster"), dose(1.3)],
        [d6(2, DURING)],
        [d6(2, DURING)],
        id="V4-D6-recorded-held-infection-is-a-hold",
    ),
    pytest.param(
        "D6",
        [held("thrombocytopenia"), dose(0.7)],
        [d6(2, DURING)],
        [d6(2, DURING)],
        id="V4-D6-recorded-held-counts-any-dose-is-during-hold",
    ),
    pytest.param(
        "D6",
        [held("surgery"), dose(1.5)],
        [d6(2, DURING)],
        [d6(2, DURING)],
        id="V4-D6-recorded-held-surgery-during-hold-before-above",
    ),
    pytest.param(
        "D6",
        [held(), N0, dose(1.3)],
        [d6(3, DURING)],
        {"default@1": [d6(3, DURING)], "label@1": [resume(2), d6(3, ABOVE)]},
        id="V4-D6-recorded-held-no-reason-survives-an-assessment",
    ),
    pytest.param(
        "D6",
        [held("infection"), recorded("resumed"), dose(1.3)],
        [],
        [],
        id="V4-D6-recorded-resumed-ends-the-recorded-hold",
    ),
    pytest.param(
        "D6",
        [held("infection"), recorded("resumed", dose_mg_m2=1.0), dose(1.3)],
        [d6(3, ABOVE)],
        [d6(3, ABOVE)],
        id="V4-D6-recorded-resumed-sets-its-dose",
    ),
    pytest.param(
        "D6",
        [held("platelets"), recorded("dose_reduced", dose_mg_m2=1.0), dose(1.0)],
        [],
        [d6(3, DURING)],
        id="V4-D6-recorded-dose_reduced-ends-the-recorded-hold",
    ),
    pytest.param(
        "D6",
        [held("platelets"), recorded("dose_reduced", dose_mg_m2=1.0), dose(1.3)],
        [d6(3, ABOVE)],
        [d6(3, DURING)],
        id="V4-D6-recorded-dose_reduced-then-above-not-during-hold",
    ),
    pytest.param(
        "D6",
        [held("platelets"), recorded("dose_reduced"), dose(1.3)],
        [],
        [d6(3, DURING)],
        id="V4-D6-recorded-dose_reduced-without-dose-ends-the-hold",
    ),
    pytest.param(
        "D6",
        [held("pneumonia"), recorded("discontinued"), dose(1.3)],
        [d6(3, AFTER)],
        [d6(3, AFTER)],
        id="V4-D6-recorded-discontinued-ends-the-hold-after-discontinuation",
    ),
    pytest.param(
        "D6",
        [held("pneumonia"), recorded("completed"), dose(1.3)],
        [],
        [],
        id="V4-D6-recorded-completed-ends-the-hold",
    ),
    pytest.param(
        "D6",
        [held("pneumonia"), recorded("completed"), dose(1.5)],
        [d6(3, ABOVE)],
        [d6(3, ABOVE)],
        id="V4-D6-recorded-completed-then-dose-compared-only",
    ),
    pytest.param(
        "D6",
        [recorded("completed"), held("infection"), dose(1.3)],
        [],
        [],
        id="V4-D6-held-after-the-stop-is-no-hold",
    ),
    pytest.param(
        "D6",
        [held("infection"), held("counts"), recorded("resumed"), dose(1.3)],
        [],
        [],
        id="V4-D6-held-twice-one-resumed-ends-it",
    ),
]


@pytest.mark.parametrize(("v2", "v1"), V2_PACKS)
@pytest.mark.parametrize(("rule", "steps", "expected", "expected_v1"), BOTH_PACKS_CASES)
def test_v4_recorded_hold_both_packs(
    v2: PolicyPack,
    v1: PolicyPack,
    rule: str,
    steps: list[Step],
    expected: list[Expected],
    expected_v1: list[Expected] | dict[str, list[Expected]],
) -> None:
    decisions = run(*timeline(steps), pack=v2)
    assert notable(decisions) == sorted(expected)
    assert {e[2] for e in expected} <= {rule}
    check_fields(decisions, v2)
    if isinstance(expected_v1, dict):  # version 1 differs by pack
        expected_v1 = expected_v1[v1.label]
    assert notable(run(*timeline(steps), pack=v1)) == sorted(expected_v1)


# --- pack label: L1-L3 with a recorded hold, and the service's own hold ------------------------

# (rule, steps, expected under version 2, expected under version 1)
LABEL_CASES = [
    # `resume` follows only the service's own `hold` (L2)
    pytest.param(
        "L2", [held("herpes zoster"), N0], [], [resume(2)], id="V4-L2-recorded-held-N0-no-resume"
    ),
    pytest.param(
        "L2", [held("counts"), N1], [], [resume(2)], id="V4-L2-recorded-held-N1-no-resume"
    ),
    pytest.param("L2", [N3, N0], [hold(1), resume(2)], [hold(1), resume(2)], id="V4-L2-own-hold"),
    pytest.param(
        "L2",
        [held("infection"), recorded("resumed"), N0],
        [],
        [],
        id="V4-L2-recorded-held-and-resumed-no-resume",
    ),
    # a recorded hold never makes the pack emit resume or change the dose level
    pytest.param(
        "D6",
        [held("infection"), N0, dose(1.3)],
        [d6(3, DURING)],
        [resume(2), d6(3, ABOVE)],
        id="V4-D6-recorded-held-N0-dose-still-during-hold",
    ),
    pytest.param(
        "D6",
        [held("herpes zoster"), N0, recorded("resumed"), dose(1.3)],
        [],
        [resume(2), d6(4, ABOVE)],
        id="V4-D6-recorded-held-keeps-the-dose-level",
    ),
    pytest.param(
        "D6",
        [held("infection"), N0, N1, N0, recorded("resumed"), dose(1.3)],
        [],
        [resume(2), d6(6, ABOVE)],
        id="V4-D6-recorded-held-never-resumes-at-0.7",
    ),
    # during a recorded hold the label rows still apply to assessments
    pytest.param(
        "L1",
        [held("infection"), N2],
        [reduce(2, 1.0)],
        [],
        id="V4-L1-rows-apply-during-recorded-hold",
    ),
    pytest.param(
        "L1",
        [held("infection"), N1P, N2],
        [reduce(2, 1.0)],
        [resume(2)],
        id="V4-L1-N1-pain-reduces-during-recorded-hold-once",
    ),
    pytest.param(
        "L1",
        [held("infection"), N2, dose(1.0)],
        [reduce(2, 1.0), d6(3, DURING)],
        [d6(3, DURING)],
        id="V4-L1-reduction-does-not-end-the-recorded-hold",
    ),
    pytest.param(
        "L2", [held("infection"), N3], [hold(2)], [], id="V4-L2-service-hold-during-recorded-hold"
    ),
    pytest.param(
        "L2",
        [held("infection"), N3, N2P, N2, N1],
        [hold(2), resume(5)],
        [resume(5)],
        id="V4-L2-service-hold-nothing-but-resume",
    ),
    pytest.param(
        "L3",
        [held("infection"), N4, dose(0.7)],
        [stop(2), d6(3, AFTER)],
        [stop(2), d6(3, AFTER)],
        id="V4-L3-discontinue-during-recorded-hold",
    ),
    pytest.param(
        "L3",
        [held("infection"), N3, N4],
        [hold(2), stop(3)],
        [stop(3)],
        id="V4-L3-discontinue-during-both-holds",
    ),
    # ... a service `hold` may follow, which only a service `resume` ends
    pytest.param(
        "L2",
        [held("infection"), N3, recorded("resumed"), dose(0.7)],
        [hold(2), d6(4, DURING)],
        [],
        id="V4-L2-recorded-resumed-does-not-end-the-service-hold",
    ),
    pytest.param(
        "L2",
        [held("infection"), N3, recorded("resumed"), N0, dose(0.7)],
        [hold(2), resume(4)],
        [],
        id="V4-L2-service-resume-ends-the-service-hold",
    ),
    pytest.param(
        "L2",
        [N3, recorded("resumed"), dose(0.7)],
        [hold(1), d6(3, DURING)],
        [hold(1)],
        id="V4-L2-own-hold-not-ended-by-recorded-resumed",
    ),
    pytest.param(
        "L2",
        [N3, recorded("resumed", dose_mg_m2=1.0), N0, dose(1.0)],
        [hold(1), resume(3), d6(4, ABOVE)],
        [hold(1)],
        id="V4-L2-own-hold-recorded-resumed-ignored-then-resume",
    ),
    pytest.param(
        "L2",
        [N3, recorded("dose_reduced", dose_mg_m2=1.0), dose(1.0)],
        [hold(1), d6(3, DURING)],
        [hold(1), d6(3, DURING)],
        id="V4-L2-own-hold-not-ended-by-recorded-dose_reduced",
    ),
    # a service `resume` does not end a recorded hold
    pytest.param(
        "L2",
        [held("infection"), N3, N0, dose(0.7)],
        [hold(2), resume(3), d6(4, DURING)],
        [resume(3)],
        id="V4-L2-service-resume-keeps-the-recorded-hold",
    ),
    pytest.param(
        "L2",
        [N3, held("infection"), N0, dose(0.7)],
        [hold(1), resume(3), d6(4, DURING)],
        [hold(1), resume(3)],
        id="V4-L2-service-resume-keeps-a-later-recorded-hold",
    ),
    pytest.param(
        "L2",
        [held("infection"), N3, N0, recorded("resumed"), dose(0.7)],
        [hold(2), resume(3)],
        [resume(3)],
        id="V4-L2-service-resume-then-recorded-resumed-ends-both",
    ),
    pytest.param(
        "L2",
        [held("infection"), N3, N0, recorded("dose_reduced"), dose(0.7)],
        [hold(2), resume(3)],
        [resume(3)],
        id="V4-L2-service-resume-then-recorded-dose_reduced-ends-both",
    ),
]


@pytest.mark.parametrize(("rule", "steps", "expected", "expected_v1"), LABEL_CASES)
def test_v4_label(
    rule: str, steps: list[Step], expected: list[Expected], expected_v1: list[Expected]
) -> None:
    decisions = run(*timeline(steps), pack=V2_LABEL)
    assert notable(decisions) == sorted(expected)
    assert rule in {e[2] for e in expected} or expected == []
    check_fields(decisions, V2_LABEL)
    assert notable(run(*timeline(steps), pack=LABEL)) == sorted(expected_v1)


ALL_STEPS = [p.values[1] for p in BOTH_PACKS_CASES] + [p.values[1] for p in LABEL_CASES]


@pytest.mark.parametrize("pack", [DEFAULT, LABEL], ids=["default", "label"])
@pytest.mark.parametrize("steps", ALL_STEPS)
def test_v4_setting_at_its_version_1_value_changes_nothing(
    pack: PolicyPack, steps: list[Step]
) -> None:
    """The version-1 value is the built-in pack's; switched on explicitly, every decision (ids,
    rationale and all) is the same, and so is the course state."""
    assert pack.recorded_hold_resumes is True
    explicit = pack.model_copy(update={"recorded_hold_resumes": True})
    assert explicit == pack
    bodies = timeline(steps)
    assert run(*bodies, pack=explicit) == run(*bodies, pack=pack)
    assert final_course(explicit, steps) == final_course(pack, steps)


# --- the course state: status "held" while either hold is on (shown by the API) --------------


def final_course(pack: PolicyPack, steps: list[Step]) -> Course:
    outcome = evaluate_patient(pack, "P1", events(*timeline(steps)), at(7 * len(steps)))
    assert outcome.state.course is not None
    return outcome.state.course


# (pack, steps, status, recorded hold, label hold)
STATE_CASES = [
    pytest.param(V2_LABEL, [held("infection")], "held", True, False, id="V4-recorded-hold"),
    pytest.param(V2_LABEL, [N3], "held", False, True, id="V4-L2-service-hold"),
    pytest.param(V2_LABEL, [held("infection"), N3], "held", True, True, id="V4-L2-both-holds"),
    pytest.param(
        V2_LABEL, [held("infection"), N3, N0], "held", True, False, id="V4-L2-resume-recorded-on"
    ),
    pytest.param(
        V2_LABEL,
        [held("infection"), N3, recorded("resumed")],
        "held",
        False,
        True,
        id="V4-L2-recorded-resumed-service-hold-on",
    ),
    pytest.param(
        V2_LABEL,
        [held("infection"), N3, recorded("resumed"), N0],
        "active",
        False,
        False,
        id="V4-L2-both-ended",
    ),
    pytest.param(V2_LABEL, [held("infection"), N0], "held", True, False, id="V4-L2-no-resume"),
    pytest.param(
        V2_DEFAULT,
        [held("counts"), recorded("dose_reduced", dose_mg_m2=1.0)],
        "active",
        False,
        False,
        id="V4-D6-default-dose_reduced-ends-the-hold",
    ),
    pytest.param(
        V2_LABEL,
        [held("counts"), recorded("discontinued")],
        "discontinued",
        None,
        None,
        id="V4-D6-stop-status",
    ),
    pytest.param(LABEL, [held("infection"), N0], "active", False, False, id="v1-L2-one-hold"),
    pytest.param(
        DEFAULT,
        [held("counts"), recorded("dose_reduced")],
        "held",
        True,
        False,
        id="v1-D6-dose_reduced-keeps-the-hold",
    ),
]


@pytest.mark.parametrize(("pack", "steps", "status", "recorded_on", "label_on"), STATE_CASES)
def test_v4_course_status_says_held_while_either_hold_is_on(
    pack: PolicyPack,
    steps: list[Step],
    status: str,
    recorded_on: bool | None,
    label_on: bool | None,
) -> None:
    course = final_course(pack, steps)
    assert course.status == status
    assert course.on_hold is (status == "held")
    if recorded_on is not None:
        assert (course.recorded_hold, course.label_hold) == (recorded_on, label_on)


# --- the worked example (three patients, label, the setting switched) -------------------------


def test_v4_example_recorded_holds_for_infection_counts_and_pneumonia() -> None:
    """RH: held for herpes zoster, a dose in it, an N = 0 grading (no resume), the clinicians'
    `resumed`, then a full dose. RH2: held for platelets, N = 1 without pain in it (nothing),
    a recorded `dose_reduced` to 1.0 ends it, 1.0 is fine, 1.3 is above. RH3: held for
    pneumonia, a recorded discontinuation ends it: a dose after it is after discontinuation."""
    bodies = [
        enrollment(patient="RH", event_id="rh-e", age=61),
        assessment(at(0, hours=1), patient="RH", event_id="rh-a1", cycle=1, source="nurse"),
        treatment_change(at(10), "held", patient="RH", event_id="rh-h", reason="herpes zoster"),
        administration(at(11), 1.3, patient="RH", event_id="rh-d0", cycle=1, day=11),
        assessment(at(21, hours=1), patient="RH", event_id="rh-a2", cycle=2, source="nurse"),
        treatment_change(at(21, hours=2), "resumed", patient="RH", event_id="rh-r"),
        administration(at(21, hours=3), 1.3, patient="RH", event_id="rh-d1", cycle=2, day=1),
        enrollment(patient="RH2", event_id="rh2-e", age=61, baseline={"sensory": 0}),
        assessment(at(0, hours=1), patient="RH2", event_id="rh2-a1", cycle=1),
        treatment_change(at(7), "held", patient="RH2", event_id="rh2-h", reason="platelets"),
        assessment(at(14, hours=1), patient="RH2", event_id="rh2-a2", sensory=1),
        treatment_change(at(21), "dose_reduced", patient="RH2", event_id="rh2-dr", dose_mg_m2=1.0),
        administration(at(21, hours=2), 1.0, patient="RH2", event_id="rh2-x1", cycle=2),
        administration(at(28, hours=2), 1.3, patient="RH2", event_id="rh2-x2", cycle=2),
        enrollment(patient="RH3", event_id="rh3-e", age=61, baseline={"sensory": 0}),
        assessment(at(0, hours=1), patient="RH3", event_id="rh3-a1", cycle=1),
        treatment_change(at(7), "held", patient="RH3", event_id="rh3-h", reason="pneumonia"),
        assessment(at(14, hours=1), patient="RH3", event_id="rh3-a2", sensory=0),
        treatment_change(at(15), "discontinued", patient="RH3", event_id="rh3-dc"),
        administration(at(17), 1.3, patient="RH3", event_id="rh3-x1", cycle=1),
    ]
    decisions = run(*bodies, pack=V2_LABEL)
    assert notable(decisions) == [
        ("rh-d0", "adherence_deviation", "D6", DURING),
        ("rh2-x2", "adherence_deviation", "D6", ABOVE),
        ("rh3-x1", "adherence_deviation", "D6", AFTER),
    ]
    (watch,) = [d for d in decisions if d.action == "coasting_watch_started"]
    assert (watch.trigger, watch.window_end) == ("rh3-dc", at(15 + 90))
    check_fields(decisions, V2_LABEL)
    # version 1 reads the recorded holds as label holds: RH and RH2 resume at 0.7 on their
    # first grading in the hold, so their later full doses are above the recommendation
    assert notable(run(*bodies, pack=LABEL)) == [
        ("rh-a2", "resume", "L2", 0.7),
        ("rh-d0", "adherence_deviation", "D6", DURING),
        ("rh-d1", "adherence_deviation", "D6", ABOVE),
        ("rh2-a2", "resume", "L2", 0.7),
        ("rh2-x2", "adherence_deviation", "D6", ABOVE),
        ("rh3-a2", "resume", "L2", 0.7),
        ("rh3-x1", "adherence_deviation", "D6", AFTER),
    ]


# --- the setting: a site file can switch it -----------------------------------------------------


def test_v4_site_file_switches_the_setting() -> None:
    text = 'base = "label@1"\nname = "v2test"\nrecorded_hold_resumes = false\n'
    pack = pack_from_mapping(tomllib.loads(text))
    assert (pack.label, pack.rules, pack.recorded_hold_resumes) == ("v2test@1", "label", False)
    assert pack.model_copy(update={"name": "label"}) == V2_LABEL
    steps = [held("herpes zoster"), N0, dose(1.3)]
    site = run(*timeline(steps), pack=pack)
    assert notable(site) == [d6(3, DURING)]
    assert {d.policy for d in site} == {"v2test@1"}


def test_v4_setting_is_validated() -> None:
    with pytest.raises(PackError) as caught:
        pack_from_mapping({"base": "label@1", "name": "v2test", "recorded_hold_resumes": "no"})
    [problem] = caught.value.problems
    assert problem.startswith("recorded_hold_resumes: 'no'"), problem
    with pytest.raises(PackError) as caught:  # switched, it is no longer the built-in pack
        pack_from_mapping({"base": "label@1", "recorded_hold_resumes": False})
    assert caught.value.problems[0].startswith("name: 'label' is a built-in pack's name")
    description = PolicyPack.model_fields["recorded_hold_resumes"].description or ""
    assert "V4" in description


# --- a property: under version 2, over generated label timelines -------------------------------

GRADES = st.sampled_from([N0, N1, N1P, N2, N2P, N3, N3, N2P, {"autonomic": 3}, N4])
STEPS = st.one_of(
    GRADES,
    st.sampled_from(
        [
            held("infection"),
            recorded("resumed"),
            recorded("resumed", dose_mg_m2=1.0),
            recorded("dose_reduced", dose_mg_m2=1.0),
            recorded("dose_reduced"),
            recorded("discontinued"),
            recorded("completed"),
        ]
    ),
    st.sampled_from([dose(1.3), dose(1.0), dose(0.7)]),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(STEPS, min_size=1, max_size=14))
def test_v4_property_resume_only_after_own_hold_and_d6_hold_until_recorded_end(
    steps: list[Step],
) -> None:
    """A model of the two holds, kept from the events and the service's own decisions: every
    `resume` ends an L2 `hold`, and a dose is `dose_during_hold` exactly while either is on."""
    decisions = run(*timeline(steps), pack=V2_LABEL)
    by_trigger: dict[str, set[str]] = {}
    for d in decisions:
        by_trigger.setdefault(d.trigger, set()).add(d.action)
        if d.action == "adherence_deviation":
            by_trigger[d.trigger].add(str(d.reason))
    recorded_on = label_on = stopped = False
    for k, step in enumerate(steps, start=1):
        emitted = by_trigger.get(f"s{k}", set())
        if isinstance(step, dict):
            assert "resume" not in emitted or label_on  # resume follows only the own hold
            if "resume" in emitted:
                label_on = False
            if "hold" in emitted:
                assert not label_on
                assert not stopped
                label_on = True
            stopped = stopped or "discontinue" in emitted
        elif step[0] == "dose":
            assert (DURING in emitted) is (not stopped and (recorded_on or label_on))
        elif step[0] == "held":
            recorded_on = recorded_on or not stopped
        else:  # a recorded resumed, dose_reduced, discontinued or completed ends it
            recorded_on = False
            stopped = stopped or step[0] in ("discontinued", "completed")
    course = final_course(V2_LABEL, steps)
    assert (course.status == "held") is (not stopped and (recorded_on or label_on))
