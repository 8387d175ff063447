"""V9 (version 2): patient-reported grades advise, clinicians decide (`patient_reports_advise_only`:
false -> true), rule D9.

A `source: patient` assessment changes no state (reference, previous assessment, stop grades,
pending reassessment, V1, V6, V10); it is folded as a clinician's grading of the same on a copy,
and when that would reduce, hold, discontinue, note coasting worsening or escalate, or the
patient reports new weakness, one `review_required` (`patient_reported_change`, nurse) names
what it would trigger. Each case gives version 2's D9 review beside what version 1 decided on
the same report (version 1 folds it as a clinician's grading).
"""

from __future__ import annotations

from typing import Any

import pytest

from policies import DEFAULT, LABEL, Decision, PolicyPack, pack_from_mapping
from policies.packs import DEFAULT_V2, LABEL_V2, PackError
from policies.pro_ctcae import composite_grade
from tests.common.factories import (
    administration,
    assessment,
    at,
    course_end,
    enrollment,
    run,
    treatment_change,
)

V9_DEFAULT = DEFAULT.model_copy(update={"patient_reports_advise_only": True})
V9_LABEL = LABEL.model_copy(update={"patient_reports_advise_only": True})
E = enrollment(event_id="enr")
E_G1 = enrollment(event_id="enr", baseline={"sensory": 1})  # reference 1, stop grades 1


def report(day: float, event_id: str = "pr", **fields: Any) -> dict[str, Any]:
    """A patient report: source patient, a sensory grade (the composite), as the intake sends."""
    fields.setdefault("sensory", 0)
    return assessment(at(day), event_id=event_id, source="patient", **fields)


def nurse(day: float, event_id: str, **grades: Any) -> dict[str, Any]:
    return assessment(at(day), event_id=event_id, source="nurse", **grades)


def d9(decisions: list[Decision]) -> list[tuple[str, str]]:
    """The D9 reviews as (trigger, severity)."""
    return [
        (d.trigger, d.severity)
        for d in decisions
        if d.rule == "D9" and d.reason == "patient_reported_change"
    ]


def of(decisions: list[Decision], trigger: str) -> list[str]:
    return sorted(d.action for d in decisions if d.trigger == trigger)


STOPPED = [E_G1, treatment_change(at(1), "discontinued", event_id="stop")]  # watch to day 91
# (pack v2, timeline, version 2's D9 reviews, version 1's actions on the report)
CASES: list[Any] = [
    pytest.param(
        V9_DEFAULT,
        [E, report(10, sensory=1)],
        [("pr", "warning")],
        ["reduce_dose", "schedule_reassessment"],
        id="V9-D9-would-reduce-warning",
    ),
    pytest.param(
        V9_DEFAULT,
        [E, report(10, sensory=0)],
        [],
        ["schedule_reassessment"],
        id="V9-D9-nothing-a-clinician-would-act-on-no-review",
    ),
    pytest.param(
        V9_DEFAULT,
        [E, report(10, sensory=3)],
        [("pr", "urgent")],
        ["coasting_watch_started", "discontinue", "schedule_reassessment"],
        id="V9-D9-would-discontinue-grade-3-urgent",
    ),
    pytest.param(
        V9_DEFAULT,
        [E, nurse(5, "n1", sensory=0), report(10, sensory=2)],
        [("pr", "urgent")],
        ["reduce_dose", "schedule_reassessment"],
        id="V9-D9-two-above-the-latest-nurse-grading-urgent",
    ),
    pytest.param(
        V9_DEFAULT,
        [E, nurse(5, "n1", sensory=1), report(10, sensory=2)],
        [("pr", "warning")],  # n1 reduced (reference 1); 2 is one above it
        ["reduce_dose", "schedule_reassessment"],
        id="V9-D9-one-above-the-latest-nurse-grading-warning",
    ),
    pytest.param(
        V9_DEFAULT,
        [E, report(10, sensory=1, motor=1)],
        [("pr", "urgent")],
        ["reduce_dose", "schedule_reassessment"],
        id="V9-D9-motor-above-the-latest-grading-urgent",
    ),
    pytest.param(
        V9_DEFAULT,
        [
            enrollment(event_id="enr", baseline={"sensory": 1, "motor": 1}),
            report(10, sensory=2, motor=1),
        ],
        [("pr", "warning")],  # motor equal to the baseline's; sensory one above it
        ["reduce_dose", "schedule_reassessment"],
        id="V9-D9-no-grading-yet-compares-with-the-baseline",
    ),
    pytest.param(
        V9_DEFAULT,
        [E, report(10, sensory=0, findings={"new_weakness": True})],
        [("pr", "urgent")],
        ["schedule_reassessment"],
        id="V9-D9-new-weakness-alone-urgent",
    ),
    pytest.param(
        V9_DEFAULT,
        [E, report(10, sensory=0, findings={"new_weakness": False})],
        [],
        ["schedule_reassessment"],
        id="V9-D9-no-new-weakness-no-review",
    ),
    pytest.param(
        V9_DEFAULT,
        [enrollment(event_id="enr", dose_mg_m2=0.7), report(10, sensory=1)],
        [],  # a clinician's grading would ask for a lowest-dose review: not one of the five
        ["review_required", "schedule_reassessment"],
        id="V9-D9-lowest-dose-review-is-not-one-of-the-five",
    ),
    pytest.param(
        V9_LABEL,
        [E, report(10, sensory=3)],
        [("pr", "urgent")],
        ["hold", "schedule_reassessment"],
        id="V9-L2-would-hold-urgent",
    ),
    pytest.param(
        V9_LABEL,
        [E, report(10, sensory=2)],
        [("pr", "urgent")],  # 2 above the baseline (0)
        ["reduce_dose", "schedule_reassessment"],
        id="V9-L1-would-reduce",
    ),
    pytest.param(
        V9_LABEL,
        [E_G1, report(10, sensory=2)],
        [("pr", "warning")],
        ["reduce_dose", "schedule_reassessment"],
        id="V9-L1-would-reduce-one-above-baseline-warning",
    ),
    pytest.param(
        V9_DEFAULT,
        [*STOPPED, report(10, sensory=2)],
        [("pr", "warning")],
        ["coasting_worsening", "schedule_reassessment"],
        id="V9-D3-would-note-coasting-worsening",
    ),
    pytest.param(
        V9_DEFAULT,
        [*STOPPED, report(10, sensory=3)],
        [("pr", "urgent")],
        ["escalate_immunotherapy", "schedule_reassessment"],
        id="V9-D4-would-escalate-two-grade-rise",
    ),
    pytest.param(
        V9_DEFAULT,
        [*STOPPED, report(10, sensory=1)],
        [],
        ["schedule_reassessment"],
        id="V9-D3-no-worse-than-the-stop-no-review",
    ),
    pytest.param(
        V9_DEFAULT,
        [report(10, sensory=2)],
        [],
        ["review_required"],  # D7, no_active_course
        id="V9-no-course-no-review-and-no-D7",
    ),
    pytest.param(
        V9_DEFAULT,
        [report(10, sensory=0, findings={"new_weakness": True})],
        [("pr", "urgent")],
        ["review_required"],
        id="V9-no-course-new-weakness-urgent",
    ),
    pytest.param(
        V9_DEFAULT,
        [E, course_end(at(5), event_id="end"), report(10, sensory=1)],
        [],
        ["review_required"],
        id="V9-after-course-end-no-review",
    ),
]


@pytest.mark.parametrize(("pack", "timeline", "reviews", "v1_actions"), CASES)
def test_v9_patient_report(
    pack: PolicyPack, timeline: list[dict[str, Any]], reviews: list[Any], v1_actions: list[str]
) -> None:
    decisions = run(*timeline, pack=pack)
    assert d9(decisions) == reviews
    # the report's own decisions are the D9 review only
    assert of(decisions, "pr") == ["review_required"] * len(reviews)
    v1 = pack.model_copy(update={"patient_reports_advise_only": False})
    assert of(run(*timeline, pack=v1), "pr") == v1_actions


def test_v9_setting_is_off_in_version_1_and_on_in_version_2() -> None:
    assert (DEFAULT.patient_reports_advise_only, LABEL.patient_reports_advise_only) == (
        False,
        False,
    )
    assert DEFAULT_V2.patient_reports_advise_only
    assert LABEL_V2.patient_reports_advise_only
    site = pack_from_mapping(
        {"base": "default@1", "name": "pro", "patient_reports_advise_only": True}
    )
    assert site.patient_reports_advise_only
    with pytest.raises(PackError) as caught:
        pack_from_mapping({"base": "default@1", "name": "pro", "patient_reports_advise_only": 1})
    assert caught.value.problems == [
        "patient_reports_advise_only: 1: Input should be a valid boolean"
    ]


def test_v9_review_says_what_a_clinician_grading_would_trigger() -> None:
    pro = {"numbness_tingling_severity": 3, "numbness_tingling_interference": 2}
    grade = composite_grade(3, 2)
    assert grade == 2
    timeline = [
        E,
        report(
            10,
            sensory=grade,
            findings={"pro_ctcae": pro, "new_weakness": True, "patient_comment": "Ann Smith"},
        ),
    ]
    [review] = [d for d in run(*timeline, pack=V9_DEFAULT) if d.rule == "D9"]
    assert (review.action, review.reason, review.severity) == (
        "review_required",
        "patient_reported_change",
        "urgent",
    )
    assert (review.audience, review.sources, review.policy) == (
        ["nurse"],
        ["S11", "S12"],
        "default@1",
    )
    assert review.dose_mg_m2 is None  # advice to grade, not a dose
    assert "sensory 2 (PRO-CTCAE numbness or tingling: severity 3, interference 2)" in (
        review.rationale
    )
    assert "would trigger a dose reduction" in review.rationale
    assert "new weakness, falls or trouble walking" in review.rationale
    assert "Ann Smith" not in review.rationale  # the free text is not repeated


def test_v9_review_names_each_action_of_a_discontinuing_grading() -> None:
    stop = [E_G1, treatment_change(at(1), "discontinued", event_id="stop")]
    [review] = [d for d in run(*stop, report(10, sensory=3), pack=V9_DEFAULT) if d.rule == "D9"]
    assert "would trigger an escalation to immunotherapy" in review.rationale
    [review] = [d for d in run(E, report(10, sensory=3), pack=V9_DEFAULT) if d.rule == "D9"]
    assert "would trigger discontinuation" in review.rationale


# --- it changes nothing ----------------------------------------------------------------------


def test_v9_report_is_not_the_reference_a_later_nurse_grading_still_reduces() -> None:
    timeline = [E, report(10, sensory=1), nurse(15, "n1", sensory=1)]
    assert of(run(*timeline, pack=V9_DEFAULT), "n1") == ["reduce_dose", "schedule_reassessment"]
    assert of(run(*timeline, pack=DEFAULT), "n1") == ["schedule_reassessment"]  # v1: reduced


def test_v9_report_is_not_the_previous_assessment_after_the_stop() -> None:
    # v1: the report (2) becomes the previous assessment, so a nurse's 2 is no worsening
    timeline = [*STOPPED, report(10, sensory=2), nurse(12, "n1", sensory=2)]
    assert "coasting_worsening" in of(run(*timeline, pack=V9_DEFAULT), "n1")
    assert "coasting_worsening" not in of(run(*timeline, pack=DEFAULT), "n1")


def test_v9_report_at_the_stop_instant_is_not_the_stop_grades() -> None:
    timeline = [
        E_G1,
        treatment_change(at(1), "discontinued", event_id="a-stop"),
        report(1, event_id="b-pr", sensory=3),  # the same instant, after the stop by id
        nurse(10, "n1", sensory=3),
    ]
    # v2: the stop grades stay the baseline's (1): 3 is a two-grade rise
    assert "escalate_immunotherapy" in of(run(*timeline, pack=V9_DEFAULT), "n1")
    assert "escalate_immunotherapy" not in of(run(*timeline, pack=DEFAULT), "n1")


def test_v9_report_does_not_satisfy_the_pending_reassessment() -> None:
    # due day 21, overdue day 23: the report on day 20 does not make it up
    timeline = [E, report(20, sensory=0)]
    decisions = run(*timeline, pack=V9_DEFAULT, until=at(30))
    assert [d.at for d in decisions if d.action == "reassessment_overdue"] == [at(23)]
    v1 = [d.action for d in run(*timeline, pack=DEFAULT, until=at(30))]
    assert "reassessment_overdue" not in v1


def test_v9_report_does_not_change_the_dose_administrations_are_checked_against() -> None:
    timeline = [E, report(10, sensory=1), administration(at(14), 1.3, event_id="dose")]
    assert of(run(*timeline, pack=V9_DEFAULT), "dose") == []
    assert of(run(*timeline, pack=DEFAULT), "dose") == ["adherence_deviation"]  # v1: reduced


def test_v9_report_neither_asks_for_the_workup_nor_uses_it_up() -> None:
    red = {"ncs_pattern": "demyelinating"}
    timeline = [E, report(10, sensory=0, findings=red), nurse(15, "n1", sensory=0, findings=red)]
    decisions = run(*timeline, pack=DEFAULT_V2)
    assert [d.trigger for d in decisions if d.action == "immune_workup"] == ["n1"]


def test_v9_report_of_grade_3_is_not_a_prior_severe_neuropathy() -> None:
    timeline = [E, report(10, sensory=3), enrollment(at(60), event_id="enr2")]
    reasons = [d.reason for d in run(*timeline, pack=DEFAULT_V2)]
    assert "prior_severe_neuropathy" not in reasons
    v6_only = DEFAULT_V2.model_copy(update={"patient_reports_advise_only": False})
    # V6 already read only clinicians' and nurses' gradings
    assert "prior_severe_neuropathy" not in [d.reason for d in run(*timeline, pack=v6_only)]


def test_v9_reports_leave_every_other_decision_as_it_was() -> None:
    clinical = [
        E,
        nurse(21, "n1", sensory=1),
        administration(at(22), 1.0, event_id="dose"),
        nurse(42, "n2", sensory=3),
        nurse(56, "n3", sensory=3, motor=2),
    ]
    reports = [report(d, event_id=f"pr{d}", sensory=s) for d, s in ((7, 2), (30, 3), (50, 0))]
    for pack in (V9_DEFAULT, V9_LABEL, DEFAULT_V2, LABEL_V2):
        with_reports = [d for d in run(*clinical, *reports, pack=pack) if d.rule != "D9"]
        assert with_reports == run(*clinical, pack=pack), pack.label
