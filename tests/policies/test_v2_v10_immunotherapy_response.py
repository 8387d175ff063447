"""V10 (version 2): D8, the response to immunotherapy (`response_check_days`: none -> 28,
`mrc_response_points` 2, `incat_response_points` 1).

An episode is a therapy's events within 7 days (inclusive) of its first. The first clinician or
nurse grading at or after the first event + 28 days is compared with the last one before the
first event: a lower G, MRC up by 2, INCAT down by 1 or Rankin down by 1 (each only when both
gradings carry it) is `immunotherapy_response` (info), else `review_required`
`immunotherapy_no_response` (urgent), naming the options not yet recorded; once per episode.
Version 1 (no `response_check_days`) emits no D8 decision: each case's version-1 result is [].

Timeline: enrolment day 0, discontinued day 1 (the watch), a nurse grading on day 10, IVIg on
day 12: the check is due on day 40.
"""

from __future__ import annotations

from typing import Any

import pytest

from policies import DEFAULT, LABEL, Decision, PolicyPack, pack_from_mapping
from policies.packs import DEFAULT_V2, LABEL_V2, PackError
from tests.common.factories import (
    assessment,
    at,
    course_end,
    enrollment,
    immunotherapy,
    run,
    treatment_change,
)

V10_DEFAULT = DEFAULT.model_copy(update={"response_check_days": 28})
V10_LABEL = LABEL.model_copy(update={"response_check_days": 28})
BEFORE_FINDINGS = {"mrc_sum_score": 50, "incat": 3, "rankin": 2}
START = [
    enrollment(event_id="enr"),
    treatment_change(at(1), "discontinued", event_id="stop"),
    assessment(at(10), event_id="n0", source="nurse", sensory=2, findings=BEFORE_FINDINGS),
]
IVIG = immunotherapy(at(12), "ivig", event_id="ivig1")


def graded(day: float, event_id: str = "chk", source: str = "nurse", **fields: Any) -> Any:
    fields.setdefault("sensory", 2)
    return assessment(at(day), event_id=event_id, source=source, **fields)


def d8(decisions: list[Decision]) -> list[tuple[str, str, str | None]]:
    """The D8 decisions as (trigger, action, reason)."""
    return [(d.trigger, d.action, d.reason) for d in decisions if d.rule == "D8"]


RESPONSE = ("chk", "immunotherapy_response", None)
NO_RESPONSE = ("chk", "review_required", "immunotherapy_no_response")
# (pack v2, timeline, version 2's D8 decisions; version 1's are none)
CASES: list[Any] = [
    pytest.param(
        V10_DEFAULT, [*START, IVIG, graded(40, sensory=1)], [RESPONSE], id="V10-D8-G-lower"
    ),
    pytest.param(
        V10_DEFAULT, [*START, IVIG, graded(40, sensory=2)], [NO_RESPONSE], id="V10-D8-G-same"
    ),
    pytest.param(
        V10_DEFAULT,
        [*START, IVIG, graded(40, findings={"mrc_sum_score": 52})],
        [RESPONSE],
        id="V10-D8-MRC-up-2",
    ),
    pytest.param(
        V10_DEFAULT,
        [*START, IVIG, graded(40, findings={"mrc_sum_score": 51})],
        [NO_RESPONSE],
        id="V10-D8-MRC-up-1-is-not-a-response",
    ),
    pytest.param(
        V10_DEFAULT,
        [*START, IVIG, graded(40, findings={"incat": 2})],
        [RESPONSE],
        id="V10-D8-INCAT-down-1",
    ),
    pytest.param(
        V10_DEFAULT,
        [*START, IVIG, graded(40, findings={"rankin": 1})],
        [RESPONSE],
        id="V10-D8-Rankin-down-1",
    ),
    pytest.param(
        V10_DEFAULT,
        [*START, IVIG, graded(40, sensory=3, findings={"incat": 2})],
        [RESPONSE],
        id="V10-D8-one-measure-is-enough",
    ),
    pytest.param(
        V10_DEFAULT,
        [
            *START[:2],
            graded(10, "n0"),  # no MRC before
            IVIG,
            graded(40, findings={"mrc_sum_score": 60}),
        ],
        [NO_RESPONSE],
        id="V10-D8-a-measure-only-when-both-carry-it",
    ),
    pytest.param(
        V10_DEFAULT,
        [*START[:2], IVIG, graded(40, sensory=0)],
        [],
        id="V10-D8-no-grading-before-no-check",
    ),
    pytest.param(
        V10_DEFAULT,
        [*START, IVIG, graded(39.9, "early", sensory=0)],
        [],
        id="V10-D8-not-before-28-days",
    ),
    pytest.param(
        V10_DEFAULT,
        [*START, IVIG, graded(39.9, "early", sensory=0), graded(45, sensory=1)],
        [RESPONSE],
        id="V10-D8-the-first-grading-at-or-after-28-days",
    ),
    pytest.param(
        V10_DEFAULT,
        [*START, IVIG, graded(40, sensory=1), graded(50, "again", sensory=2)],
        [RESPONSE],
        id="V10-D8-once-per-episode",
    ),
    pytest.param(
        V10_DEFAULT,
        [*START, IVIG, graded(40, "pr", source="patient", sensory=0), graded(41, sensory=2)],
        [NO_RESPONSE],
        id="V10-D8-a-patient-report-is-not-the-check",
    ),
    pytest.param(
        V10_DEFAULT,
        [*START, graded(11, "pr", source="patient", sensory=3), IVIG, graded(40, sensory=2)],
        [NO_RESPONSE],  # compared with the nurse's 2, not the report's 3
        id="V10-D8-a-patient-report-is-not-the-grading-before",
    ),
    pytest.param(
        V10_DEFAULT,
        [
            *START,
            assessment(at(12), event_id="a-same", source="nurse", sensory=3),
            immunotherapy(at(12), "ivig", event_id="b-ivig"),
            graded(40, sensory=2),
        ],
        [NO_RESPONSE],  # compared with n0 (2), not the grading at the therapy's instant (3)
        id="V10-D8-a-grading-at-the-first-event-is-not-before-it",
    ),
    pytest.param(
        V10_DEFAULT,
        [
            *START,
            IVIG,
            *(immunotherapy(at(d), "ivig", event_id=f"ivig-d{d}") for d in (13, 16, 19)),
            graded(40, sensory=1),
        ],
        [RESPONSE],
        id="V10-D8-events-within-7-days-inclusive-are-one-episode",
    ),
    pytest.param(
        V10_DEFAULT,
        [
            *START,
            IVIG,
            immunotherapy(at(20), "ivig", event_id="ivig2"),  # 8 days on: a new episode
            graded(40, sensory=1),
            graded(48, "chk2", sensory=2, findings={"mrc_sum_score": 50}),
        ],
        [RESPONSE, ("chk2", "review_required", "immunotherapy_no_response")],
        id="V10-D8-a-later-event-starts-a-new-episode",
    ),
    pytest.param(
        V10_DEFAULT,
        [*START, IVIG, immunotherapy(at(14), "rituximab", event_id="rtx"), graded(42, sensory=1)],
        [RESPONSE],  # both due by day 42: one decision for the two
        id="V10-D8-episodes-checked-at-one-grading-share-a-decision",
    ),
    pytest.param(
        V10_DEFAULT,
        [*START, IVIG, course_end(at(20), event_id="end"), graded(40, sensory=1)],
        [],
        id="V10-D8-course-end-drops-the-check",
    ),
    pytest.param(
        V10_LABEL,
        [*START, IVIG, graded(40, sensory=1)],
        [RESPONSE],
        id="V10-D8-label-pack",
    ),
    pytest.param(
        DEFAULT_V2,
        [*START, IVIG, graded(40, sensory=2)],
        [NO_RESPONSE],
        id="V10-D8-default-at-2",
    ),
    pytest.param(
        LABEL_V2,
        [*START, IVIG, graded(40, sensory=1)],
        [RESPONSE],
        id="V10-D8-label-at-2",
    ),
]


@pytest.mark.parametrize(("pack", "timeline", "expected"), CASES)
def test_v10_response_check(
    pack: PolicyPack, timeline: list[dict[str, Any]], expected: list[Any]
) -> None:
    assert d8(run(*timeline, pack=pack)) == expected
    v1 = pack.model_copy(update={"response_check_days": None})
    assert d8(run(*timeline, pack=v1)) == []


def test_v10_response_decision_fields() -> None:
    [decision] = [
        d for d in run(*START, IVIG, graded(40, sensory=1), pack=V10_DEFAULT) if d.rule == "D8"
    ]
    assert (decision.severity, decision.audience, decision.sources) == (
        "info",
        ["physician", "neurology"],
        ["S4", "S8", "S10"],
    )
    assert decision.at == at(40)
    assert "IVIg from 2026-01-17 09:00 UTC" in decision.rationale
    assert "overall grade 2 -> 1" in decision.rationale


def test_v10_no_response_names_the_therapy_and_the_options_not_yet_recorded() -> None:
    timeline = [
        *START,
        immunotherapy(at(5), "corticosteroids", event_id="steroids"),
        IVIG,
        graded(40, findings={"mrc_sum_score": 51, "rankin": 2}),
    ]
    # the steroids' own check (due day 33, no grading before day 5): none
    [decision] = [d for d in run(*timeline, pack=V10_DEFAULT) if d.rule == "D8"]
    assert (decision.severity, decision.audience) == ("urgent", ["physician", "neurology"])
    assert "No response to immunotherapy" in decision.rationale
    assert "IVIg from 2026-01-17 09:00 UTC" in decision.rationale
    assert "MRC sum score 50 -> 51" in decision.rationale
    assert "Rankin 2 -> 2" in decision.rationale
    assert "INCAT 3" not in decision.rationale  # not measured at the check: not compared
    assert decision.rationale.endswith(
        "review the treatment; options not yet recorded: plasma exchange, rituximab."
    )


def test_v10_every_option_recorded() -> None:
    therapies = [
        immunotherapy(at(12), t, event_id=f"t-{t}")
        for t in ("ivig", "plasma_exchange", "rituximab", "corticosteroids")
    ]
    [decision] = [
        d for d in run(*START, *therapies, graded(40), pack=V10_DEFAULT) if d.rule == "D8"
    ]
    assert "every listed option (IVIg, plasma exchange, rituximab, corticosteroids)" in (
        decision.rationale
    )


def test_v10_a_site_sets_the_thresholds() -> None:
    site = pack_from_mapping(
        {
            "base": "default@1",
            "name": "neuro",
            "response_check_days": 14,
            "mrc_response_points": 4,
            "incat_response_points": 2,
        }
    )
    timeline = [*START, IVIG, graded(26, findings={"mrc_sum_score": 53, "incat": 2})]
    assert d8(run(*timeline, pack=site)) == [NO_RESPONSE]  # +3 MRC, -1 INCAT: not enough
    timeline = [*START, IVIG, graded(26, findings={"mrc_sum_score": 54})]
    assert d8(run(*timeline, pack=site)) == [RESPONSE]


def test_v10_settings_versions_and_validation() -> None:
    assert (DEFAULT.response_check_days, LABEL.response_check_days) == (None, None)
    assert (DEFAULT_V2.response_check_days, LABEL_V2.response_check_days) == (28, 28)
    assert (DEFAULT_V2.mrc_response_points, DEFAULT_V2.incat_response_points) == (2, 1)
    for key, value, problem in (
        ("response_check_days", 6, "Input should be greater than or equal to 7"),
        ("response_check_days", 181, "Input should be less than or equal to 180"),
        ("mrc_response_points", 0, "Input should be greater than or equal to 1"),
        ("incat_response_points", 11, "Input should be less than or equal to 10"),
    ):
        with pytest.raises(PackError) as caught:
            pack_from_mapping({"base": "default@1", "name": "neuro", key: value})
        assert caught.value.problems == [f"{key}: {value}: {problem}"]


def test_v10_no_timer_reminds_of_the_check() -> None:
    """POLICY V10 fires on the grading; with no grading after the episode nothing is emitted
    by D8 however late the clock (the D5 reassessments ask for the grading)."""
    decisions = run(*START, IVIG, pack=V10_DEFAULT, until=at(200))
    assert d8(decisions) == []
    assert {d.trigger for d in decisions if d.trigger.startswith("timer:")} <= {
        "timer:reassessment_overdue",
        "timer:escalation_unanswered",
        "timer:reassessment_missed",
    }
