"""V6, V7, V8 (version 2) at enrolment, rule D0: a new course after severe neuropathy
(`prior_course_risk`), an enrolment without baseline grades (`baseline_prompt`), and the
neurotoxic co-medications (`neurotoxic_drugs`, matched exactly: `neurotoxic_match`).

Each case is checked with the item's version-2 value and with version 1's (unchanged)."""

from __future__ import annotations

from typing import Any

import pytest

from policies import DEFAULT, LABEL, Decision, PolicyPack, pack_from_mapping
from policies.rules import sources
from tests.common.factories import (
    administration,
    assessment,
    at,
    course_end,
    enrollment,
    run,
    treatment_change,
)

V2_DRUGS = (
    "thalidomide", "vincristine", "vinblastine", "vinorelbine", "cisplatin", "oxaliplatin",
    "paclitaxel", "nab-paclitaxel", "docetaxel", "brentuximab vedotin", "polatuzumab vedotin",
    "eribulin", "ixabepilone", "metronidazole", "linezolid", "nitrofurantoin",
)  # fmt: skip
V6 = DEFAULT.model_copy(update={"prior_course_risk": True})
V7 = DEFAULT.model_copy(update={"baseline_prompt": True})
V8 = DEFAULT.model_copy(update={"neurotoxic_drugs": V2_DRUGS, "neurotoxic_match": "exact"})


def reviews(decisions: list[Decision], trigger: str) -> list[tuple[str | None, str, list[str]]]:
    return [
        (d.reason, d.severity, d.audience)
        for d in decisions
        if d.action == "review_required" and d.trigger == trigger and d.rule == "D0"
    ]


def advised(decisions: list[Decision], trigger: str) -> list[str]:
    return [
        d.rationale
        for d in decisions
        if d.action == "advise_subcutaneous_weekly" and d.trigger == trigger
    ]


# --- V6 ------------------------------------------------------------------------------------

PRIOR = ("prior_severe_neuropathy", "warning", ["physician"])
FIRST = enrollment(event_id="enr1")
SECOND_IV = enrollment(at(300), event_id="enr2", route="IV")

V6_CASES: list[Any] = [
    pytest.param(
        [FIRST, assessment(at(21), event_id="a1", sensory=3), SECOND_IV],
        True,
        id="V6-D0-an-earlier-course-reached-grade-3-on-treatment",
    ),
    pytest.param(
        [
            FIRST,
            treatment_change(at(10), "completed", event_id="c"),
            assessment(at(40), event_id="a1", motor=3),
            SECOND_IV,
        ],
        True,
        id="V6-D0-grade-3-after-the-stop",
    ),
    pytest.param(
        [FIRST, assessment(at(21), event_id="a1", sensory=3, source="nurse"), SECOND_IV],
        True,
        id="V6-D0-grade-3-by-a-nurse-or-clinician",
    ),
    pytest.param(
        [FIRST, assessment(at(21), event_id="a1", sensory=3, source="patient"), SECOND_IV],
        False,
        id="V6-D0-a-patient-report-does-not-count",
    ),
    pytest.param(
        [FIRST, assessment(at(21), event_id="a1", motor=2, sensory=1), SECOND_IV],
        False,
        id="V6-D0-grade-2-does-not-count",
    ),
    pytest.param(
        [
            FIRST,
            assessment(at(21), event_id="a1", sensory=3),
            course_end(at(60), event_id="end"),
            SECOND_IV,
        ],
        True,
        id="V6-D0-after-a-course-end-too",
    ),
    pytest.param(
        [enrollment(event_id="enr2", route="IV", baseline={"sensory": 3})],
        True,
        id="V6-D0-baseline-grade-3",
    ),
    pytest.param(
        [enrollment(event_id="enr2", route="IV", baseline={"sensory": 2})],
        False,
        id="V6-D0-baseline-grade-2",
    ),
    pytest.param([FIRST, SECOND_IV], False, id="V6-D0-an-uneventful-earlier-course"),
]


def _with_workup_and_escalation() -> list[dict[str, Any]]:
    return [
        FIRST,
        assessment(at(21), event_id="a1", sensory=1),
        treatment_change(at(30), "discontinued", event_id="d"),
        assessment(at(44), event_id="a2", sensory=1),
        assessment(at(58), event_id="a3", sensory=1, motor=2),  # motor worsening: D4
        SECOND_IV,
    ]


V6_CASES.append(pytest.param(_with_workup_and_escalation(), True, id="V6-D0-an-earlier-escalation"))


@pytest.mark.parametrize(("timeline", "prior"), V6_CASES)
def test_v6_a_course_after_severe_neuropathy(timeline: list[dict[str, Any]], prior: bool) -> None:
    decisions = run(*timeline, pack=V6)
    assert reviews(decisions, "enr2") == ([PRIOR] if prior else [])
    advice = advised(decisions, "enr2")
    if prior:  # IV: the risk factor counts for D0's advice (age 55, no other risk factor)
        assert len(advice) == 1
        assert "prior severe neuropathy" in advice[0]
    assert reviews(run(*timeline, pack=DEFAULT), "enr2") == []


def test_v6_the_review_cites_the_label() -> None:
    decisions = run(enrollment(event_id="enr2", baseline={"sensory": 3}), pack=V6)
    [review] = [d for d in decisions if d.action == "review_required"]
    assert review.sources == list(sources.D0_PRIOR_COURSE)


# --- V7 ------------------------------------------------------------------------------------

NO_BASELINE = ("no_baseline_grading", "info", ["nurse"])
V7_CASES: list[Any] = [
    pytest.param({}, True, id="V7-D0-baseline-absent"),
    pytest.param({"baseline": {}}, True, id="V7-D0-baseline-an-empty-object"),
    pytest.param({"baseline": {"sensory": 0}}, False, id="V7-D0-baseline-graded-0"),
    pytest.param({"baseline": {"autonomic": 1}}, False, id="V7-D0-one-domain-graded"),
]


@pytest.mark.parametrize(("fields", "prompted"), V7_CASES)
def test_v7_an_enrolment_without_baseline(fields: dict[str, Any], prompted: bool) -> None:
    timeline = [enrollment(event_id="enr", **fields)]
    assert reviews(run(*timeline, pack=V7), "enr") == ([NO_BASELINE] if prompted else [])
    assert reviews(run(*timeline, pack=DEFAULT), "enr") == []


def test_v7_the_reference_stays_and_an_early_grading_is_not_the_baseline() -> None:
    """Without a baseline the reference is 0 (version 1's reading); a grading before the first
    dose is an ordinary assessment: grade 1 then reduces the dose (1 > 0)."""
    timeline = [
        enrollment(event_id="enr"),
        assessment(at(1), event_id="a0", sensory=1),
        administration(at(2), 1.3, event_id="dose1"),
    ]
    decisions = run(*timeline, pack=V7)
    assert "reduce_dose" in [d.action for d in decisions if d.trigger == "a0"]
    assert "reduce_dose" in [d.action for d in run(*timeline, pack=DEFAULT) if d.trigger == "a0"]


# --- V8 ------------------------------------------------------------------------------------

V8_CASES: list[Any] = [
    *(pytest.param([drug], True, id=f"V8-D0-{drug.replace(' ', '-')}") for drug in V2_DRUGS),
    pytest.param(["  Brentuximab   VEDOTIN "], True, id="V8-D0-case-and-spaces-ignored"),
    pytest.param(["vincristine sulfate"], False, id="V8-D0-exact-names-only"),
    pytest.param(["bortezomib", "dexamethasone"], False, id="V8-D0-not-neurotoxic"),
]


@pytest.mark.parametrize(("concomitant", "counted"), V8_CASES)
def test_v8_neurotoxic_co_medication(concomitant: list[str], counted: bool) -> None:
    timeline = [enrollment(event_id="enr", route="IV", concomitant=concomitant)]
    advice = advised(run(*timeline, pack=V8), "enr")
    assert len(advice) == (1 if counted else 0)
    if counted:
        [decision] = [d for d in run(*timeline, pack=V8) if d.trigger == "enr" and d.rule == "D0"
                      and d.action == "advise_subcutaneous_weekly"]  # fmt: skip
        assert "S9" in decision.sources


@pytest.mark.parametrize(
    ("concomitant", "counted"),
    [
        pytest.param(["vincristine sulfate"], True, id="V8-v1-contains"),
        pytest.param(["Thalidomide"], True, id="V8-v1-case"),
        pytest.param(["cisplatin"], False, id="V8-v1-short-list"),
    ],
)
def test_v8_version_1_keeps_its_list_and_matching(concomitant: list[str], counted: bool) -> None:
    timeline = [enrollment(event_id="enr", route="IV", concomitant=concomitant)]
    advice = advised(run(*timeline, pack=DEFAULT), "enr")
    assert len(advice) == (1 if counted else 0)
    if counted:
        assert all("S9" not in d.sources for d in run(*timeline, pack=DEFAULT))


# --- site files ----------------------------------------------------------------------------


@pytest.mark.parametrize("base", ["default@1", "label@1"])
def test_a_site_file_switches_each_setting(base: str) -> None:
    site: PolicyPack = pack_from_mapping(
        {
            "base": base,
            "name": "stmarys",
            "prior_course_risk": True,
            "baseline_prompt": True,
            "neurotoxic_drugs": ["Cisplatin", "  OXALIPLATIN "],
            "neurotoxic_match": "exact",
        }
    )
    assert site.neurotoxic_drugs == ("cisplatin", "oxaliplatin")
    decisions = run(enrollment(event_id="enr", route="IV", concomitant=["oxaliplatin"]), pack=site)
    assert reviews(decisions, "enr") == [NO_BASELINE]
    assert len(advised(decisions, "enr")) == 1
    assert site.rules == (LABEL if base.startswith("label") else DEFAULT).rules


@pytest.mark.parametrize(
    ("setting", "value", "problem"),
    [
        ("neurotoxic_drugs", [], "at least 1"),
        ("neurotoxic_drugs", [""], "1 to 64 characters"),
        ("neurotoxic_match", "fuzzy", "'contains' or 'exact'"),
        ("baseline_prompt", "yes", "valid boolean"),
    ],
)
def test_the_settings_are_validated(setting: str, value: object, problem: str) -> None:
    from policies import PackError

    with pytest.raises(PackError, match=problem):
        pack_from_mapping({"base": "default@1", "name": "stmarys", setting: value})
