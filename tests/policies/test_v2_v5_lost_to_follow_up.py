"""V5, lost to follow-up (POLICY.md "Version 2"): `missed_escalate_days` none -> 7, rule D5.

A reassessment still not done `missed_escalate_days` after its `reassessment_overdue` emits
`review_required`, reason `reassessment_missed` (urgent; physician, nurse), from the third timer
kind (`timer:reassessment_missed`) at due + grace + 7 days; once per due reassessment; on
treatment, on hold, in the watch and in follow-up; dropped by an assessment or a `course_end`.

The pack is built as a site would switch the one setting (`default@2` is not registered yet).
Enrolment at T0 (day 0, 09:00 UTC), 21-day cycles: the first reassessment is due at day 21,
overdue at day 23, missed at day 30.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from policies import DEFAULT, LABEL, Decision, PolicyPack, evaluate, pack_from_mapping
from policies.engine import evaluate_patient, next_timer
from policies.packs import PackError
from tests.common.factories import (
    administration,
    assessment,
    at,
    course_end,
    enrollment,
    events,
    run,
    treatment_change,
)

V5_DEFAULT = pack_from_mapping({"base": "default@1", "name": "v5test", "missed_escalate_days": 7})
V5_LABEL = pack_from_mapping({"base": "label@1", "name": "v5label", "missed_escalate_days": 7})
# another site: no grace, 3 days: due 21, overdue 21, missed 24
V5_QUICK = pack_from_mapping(
    {"base": "default@1", "name": "quick", "overdue_grace_days": 0, "missed_escalate_days": 3}
)
SECOND = dt.timedelta(seconds=1)
ENR = enrollment(event_id="enr")
ENR_G2 = enrollment(event_id="enr", baseline={"sensory": 2})  # stop grades: sensory 2
PLUS_2 = dt.timezone(dt.timedelta(hours=2))


def missed(decisions: list[Decision]) -> list[Decision]:
    return [d for d in decisions if d.reason == "reassessment_missed"]


def without_missed(decisions: list[Decision]) -> list[Decision]:
    return [d for d in decisions if d.reason != "reassessment_missed"]


def v1_of(pack: PolicyPack) -> PolicyPack:
    """The same pack (name, version, thresholds) with the setting at its version-1 value."""
    return pack.model_copy(update={"missed_escalate_days": None})


# --- the setting ---------------------------------------------------------------------------------


def test_v5_setting_defaults_to_version_1_and_a_site_file_switches_it() -> None:
    assert DEFAULT.missed_escalate_days is None
    assert LABEL.missed_escalate_days is None
    assert V5_DEFAULT.missed_escalate_days == 7
    assert (V5_DEFAULT.label, V5_DEFAULT.rules) == ("v5test@1", "default")
    assert v1_of(V5_DEFAULT) == pack_from_mapping({"base": "default@1", "name": "v5test"})


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        pytest.param(
            0,
            "missed_escalate_days: 0: Input should be greater than or equal to 1",
            id="V5-setting-below-1",
        ),
        pytest.param(
            91,
            "missed_escalate_days: 91: Input should be less than or equal to 90",
            id="V5-setting-above-90",
        ),
        pytest.param(
            "7", "missed_escalate_days: '7': Input should be a valid integer", id="V5-setting-text"
        ),
        pytest.param(
            True,
            "missed_escalate_days: True: Input should be a valid integer",
            id="V5-setting-bool",
        ),
    ],
)
def test_v5_setting_is_validated(value: object, problem: str) -> None:
    with pytest.raises(PackError) as caught:
        pack_from_mapping({"base": "default@1", "name": "v5test", "missed_escalate_days": value})
    assert caught.value.problems == [problem]


def test_v5_tuned_pack_needs_its_own_name() -> None:
    with pytest.raises(PackError):
        pack_from_mapping({"base": "default@1", "name": "default", "missed_escalate_days": 7})


# --- the timer: when it fires, what it says -------------------------------------------------------

# (pack, the timeline, until, expected reassessment_missed times)
CASES = [
    pytest.param(V5_DEFAULT, [ENR], at(200), [at(30)], id="V5-D5-on-treatment-never-graded-once"),
    pytest.param(V5_DEFAULT, [ENR], at(30) - SECOND, [], id="V5-D5-not-before-due-grace-7d"),
    pytest.param(V5_DEFAULT, [ENR], at(30), [at(30)], id="V5-D5-at-due-grace-7d-until-inclusive"),
    pytest.param(
        V5_DEFAULT,
        [ENR, assessment(at(30).astimezone(PLUS_2), event_id="a", sensory=0)],
        at(40),
        [],
        id="V5-D5-assessment-same-instant-applied-first",
    ),
    pytest.param(
        V5_DEFAULT,
        [ENR, assessment(at(30) + SECOND, event_id="a", sensory=0)],
        at(40),
        [at(30)],
        id="V5-D5-assessment-1s-late-timer-first",
    ),
    pytest.param(
        V5_DEFAULT,
        [ENR, assessment(at(27), event_id="a", sensory=0)],
        at(56),
        [],
        id="V5-D5-dropped-by-an-assessment",
    ),
    pytest.param(
        V5_DEFAULT,
        [ENR, assessment(at(35), event_id="a", sensory=0)],
        at(200),
        [at(30), at(65)],
        id="V5-D5-once-per-due-reassessment",
    ),
    pytest.param(
        V5_DEFAULT,
        [ENR, course_end(at(27), "transferred", event_id="end")],
        at(200),
        [],
        id="V5-D5-dropped-by-course-end",
    ),
    pytest.param(
        V5_DEFAULT,
        [ENR, course_end(at(30), "transferred", event_id="end")],
        at(200),
        [],
        id="V5-D5-course-end-same-instant-applied-first",
    ),
    pytest.param(
        V5_DEFAULT,
        [ENR, enrollment(at(27), event_id="enr2")],  # its own: due 48, overdue 50, missed 57
        at(60),
        [at(57)],
        id="V5-D5-dropped-by-a-new-course",
    ),
    pytest.param(
        V5_DEFAULT,
        [ENR, administration(at(28), 1.3, event_id="dose")],
        at(40),
        [at(30)],
        id="V5-D5-a-dose-is-not-a-reassessment",
    ),
    pytest.param(
        V5_DEFAULT,
        [ENR, treatment_change(at(10), "held", event_id="held")],
        at(40),
        [at(30)],
        id="V5-D5-on-recorded-hold",
    ),
    pytest.param(
        V5_LABEL,
        [ENR, assessment(at(5), event_id="a", sensory=3)],  # L2 hold; due 26, overdue 28
        at(60),
        [at(35)],
        id="V5-D5-on-label-hold",
    ),
    pytest.param(
        V5_DEFAULT,
        [ENR, treatment_change(at(1), "discontinued", event_id="stop")],  # due 15, overdue 17
        at(30),
        [at(24)],
        id="V5-D5-in-the-watch",
    ),
    pytest.param(
        V5_LABEL,
        [ENR, treatment_change(at(1), "completed", event_id="stop")],
        at(30),
        [at(24)],
        id="V5-D5-in-the-watch-label",
    ),
    pytest.param(
        V5_DEFAULT,
        [
            ENR_G2,
            treatment_change(at(1), "discontinued", event_id="stop"),
            *(assessment(at(d), event_id=f"w{d}", sensory=2) for d in (14, 28, 42, 56, 70, 84)),
            assessment(at(92), event_id="a", sensory=2),  # after the window: due 120
        ],
        at(200),
        [at(129)],
        id="V5-D5-in-follow-up",
    ),
    pytest.param(
        V5_DEFAULT,
        [
            ENR_G2,
            treatment_change(at(1), "discontinued", event_id="stop"),
            *(assessment(at(d), event_id=f"w{d}", sensory=2) for d in (14, 28, 42, 56, 70, 84)),
            assessment(at(92), event_id="a", sensory=1),  # watch closed: nothing pending
        ],
        at(400),
        [],
        id="V5-D5-watch-closed-nothing-pending",
    ),
    pytest.param(
        V5_DEFAULT,
        [ENR, treatment_change(at(25), "discontinued", event_id="stop")],  # after the overdue
        at(60),
        [at(30), at(48)],
        id="V5-D5-a-stop-does-not-make-up-the-missed-one",
    ),
    pytest.param(V5_QUICK, [ENR], at(100), [at(24)], id="V5-D5-site-grace-0-missed-3"),
]


@pytest.mark.parametrize(("pack", "bodies", "until", "expected"), CASES)
def test_v5_reassessment_missed(
    pack: PolicyPack, bodies: list[dict[str, Any]], until: dt.datetime, expected: list[dt.datetime]
) -> None:
    decisions = run(*bodies, pack=pack, until=until)
    found = missed(decisions)
    assert [d.at for d in found] == expected
    for d in found:
        assert (d.action, d.rule, d.policy, d.severity, d.audience, d.trigger, d.due_at) == (
            "review_required",
            "D5",
            pack.label,
            "urgent",
            ["physician", "nurse"],
            "timer:reassessment_missed",
            None,
        )
        assert d.sources == ["S3", "S6"]
        # it follows its reassessment's overdue by exactly the setting's days
        overdue = [o for o in decisions if o.action == "reassessment_overdue" and o.at < d.at]
        assert overdue[-1].at + dt.timedelta(days=pack.missed_escalate_days or 0) == d.at
        assert overdue[-1].due_at is not None
        assert f"due {overdue[-1].due_at:%Y-%m-%d %H:%M} UTC" in d.rationale
    # version 1 (the same pack, setting None): exactly the same decisions, less the missed ones
    assert run(*bodies, pack=v1_of(pack), until=until) == without_missed(decisions)


@pytest.mark.parametrize("pack", [DEFAULT, LABEL], ids=["default@1", "label@1"])
@pytest.mark.parametrize("bodies", [case.values[1] for case in CASES], ids=[c.id for c in CASES])
def test_v5_builtin_version_1_packs_never_miss(
    pack: PolicyPack, bodies: list[dict[str, Any]]
) -> None:
    decisions = run(*bodies, pack=pack, until=at(400))
    assert missed(decisions) == []
    assert "timer:reassessment_missed" not in {d.trigger for d in decisions}


# --- the service's next timer --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pack", "until", "expected"),
    [
        pytest.param(V5_DEFAULT, at(22), (at(23), "reassessment_overdue"), id="V5-D5-overdue-next"),
        pytest.param(V5_DEFAULT, at(23), (at(30), "reassessment_missed"), id="V5-D5-missed-next"),
        pytest.param(V5_DEFAULT, at(30), None, id="V5-D5-nothing-after-the-missed"),
        pytest.param(DEFAULT, at(23), None, id="V5-D5-version-1-nothing-after-the-overdue"),
    ],
)
def test_v5_next_timer_kind(
    pack: PolicyPack, until: dt.datetime, expected: tuple[dt.datetime, str] | None
) -> None:
    """What the service stores as `next_timer_at`: the missed timer after the overdue one."""
    outcome = evaluate_patient(pack, "P1", events(enrollment(event_id="enr")), until)
    assert next_timer(pack, outcome.state) == expected


# --- the worked example (on treatment, day 0 = 2026-03-02) --------------------------------------

DAY0 = dt.datetime(2026, 3, 2, 8, 0, tzinfo=dt.UTC)


def day(days: float, hours: float = 0, seconds: float = 0) -> dt.datetime:
    return DAY0 + dt.timedelta(days=days, hours=hours, seconds=seconds)


def example_patient(patient: str, *later: dict[str, Any]) -> list[dict[str, Any]]:
    """Enrolled day 0 08:00, graded (cycle 1) at 09:00: due day 21 08:00, overdue day 23."""
    return [
        enrollment(day(0), patient=patient, event_id=f"{patient}-e", baseline={"sensory": 0}),
        assessment(day(0, hours=1), patient=patient, event_id=f"{patient}-a1", cycle=1, sensory=0),
        *later,
    ]


def test_v5_worked_example_on_treatment_edges() -> None:
    """MA never seen; MB graded exactly at day 30 08:00 (written +02:00); MC one second later;
    MD graded day 27; ME course_end day 27. (The example's patient report, MF, needs V9.)"""
    bodies = [
        *example_patient("MA"),
        *example_patient(
            "MB",
            assessment(day(30).astimezone(PLUS_2), patient="MB", event_id="MB-a2", cycle=2),
        ),
        *example_patient(
            "MC", assessment(day(30, seconds=1), patient="MC", event_id="MC-a2", cycle=2)
        ),
        *example_patient(
            "MD", assessment(day(27, hours=1), patient="MD", event_id="MD-a2", cycle=2)
        ),
        *example_patient(
            "ME", course_end(day(27, hours=1), "transferred", patient="ME", event_id="ME-end")
        ),
    ]
    decisions = evaluate(V5_DEFAULT, events(*bodies), dt.datetime(2026, 4, 10, tzinfo=dt.UTC))
    overdue = {(d.patient_id, d.at) for d in decisions if d.action == "reassessment_overdue"}
    assert overdue == {(p, day(23)) for p in ("MA", "MB", "MC", "MD", "ME")}
    assert sorted((d.patient_id, d.at, d.trigger) for d in missed(decisions)) == [
        ("MA", day(30), "timer:reassessment_missed"),
        ("MC", day(30), "timer:reassessment_missed"),
    ]
    assert {d.severity for d in missed(decisions)} == {"urgent"}
    assert all(d.audience == ["physician", "nurse"] for d in missed(decisions))
