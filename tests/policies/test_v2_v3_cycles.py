"""V3 of policy version 2, cycles follow the doses (`cycle_anchor`: `course_start` -> `day1_dose`,
`pre_cycle_window_days` 3): the D5 reassessment schedule on treatment.

Enrolment `enr` at T0 (day 0, 09:00 UTC), 1.3 mg/m2 SC weekly, 21-day cycles, grade 0 unless
a case says otherwise. Day-1 doses (`day: 1`) anchor the calendar; planned starts are
anchor + k x 21 days (k >= 1); an on-treatment assessment's next reassessment is the first
planned start more than 3 days after it. Every case also gives what version 1 (the setting at
`course_start`) decides, so the switch is shown to change nothing else.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies import DEFAULT, LABEL, Decision, PackError, PolicyPack, pack_from_mapping
from tests.common.factories import (
    administration,
    assessment,
    at,
    enrollment,
    run,
    treatment_change,
)

V3_DEFAULT = pack_from_mapping({"base": "default@1", "name": "v3", "cycle_anchor": "day1_dose"})
V3_LABEL = pack_from_mapping({"base": "label@1", "name": "v3label", "cycle_anchor": "day1_dose"})
V3_PACKS = [
    pytest.param(V3_DEFAULT, DEFAULT, id="default"),
    pytest.param(V3_LABEL, LABEL, id="label"),
]
MINUTE = dt.timedelta(minutes=1)


def grade(on: float, eid: str, hours: float = 0, **fields: Any) -> dict[str, Any]:
    return assessment(at(on, hours), event_id=eid, **({"sensory": 0} | fields))


def dose(
    on: float, eid: str, hours: float = 0, cycle_day: int | None = 1, mg_m2: float = 1.3
) -> dict[str, Any]:
    """A dose (by default a day-1 dose at the recommended 1.3 mg/m2) on day `on` of the course."""
    fields = {} if cycle_day is None else {"day": cycle_day}
    return administration(at(on, hours), mg_m2, event_id=eid, **fields)


def tc(on: float, action: str, eid: str) -> dict[str, Any]:
    return treatment_change(at(on), action, event_id=eid)


def schedules(decisions: list[Decision]) -> list[tuple[str, dt.datetime | None]]:
    return [(d.trigger, d.due_at) for d in decisions if d.action == "schedule_reassessment"]


def overdue(decisions: list[Decision]) -> list[dt.datetime]:
    return [d.at for d in decisions if d.action == "reassessment_overdue"]


ENR = ("enr", at(21))  # D0: the first reassessment, before cycle 2 (both versions)
Schedules = list[tuple[str, dt.datetime]]

# (events after the enrolment, until, version 2: (schedule_reassessment as (trigger, due_at),
# overdue times), version 1: the same)
CASES = [
    # "An administration with day: 1 starts a cycle; the latest such dose (else the course
    # start) is the calendar's anchor, and planned cycle starts are anchor + k x cycle length"
    pytest.param(
        [grade(5, "a")],
        None,
        ([ENR, ("a", at(21))], []),
        ([ENR, ("a", at(26))], []),
        id="V3-D5-anchor-is-the-course-start-without-a-day1-dose",
    ),
    pytest.param(
        [grade(30, "a")],
        None,
        ([ENR, ("a", at(42))], [at(23)]),
        ([ENR, ("a", at(51))], [at(23)]),
        id="V3-D5-planned-starts-are-anchor-plus-k-cycles",
    ),
    pytest.param(
        [dose(2, "x1"), dose(26, "x2"), grade(30, "a")],
        None,
        ([ENR, ("x1", at(23)), ("a", at(47))], [at(25)]),
        ([ENR, ("a", at(51))], [at(23)]),
        id="V3-D5-the-latest-day1-dose-anchors",
    ),
    pytest.param(
        [dose(8, "x", cycle_day=8), dose(15, "y", cycle_day=None), grade(30, "a")],
        None,
        ([ENR, ("a", at(42))], [at(23)]),
        ([ENR, ("a", at(51))], [at(23)]),
        id="V3-D5-doses-of-other-days-start-no-cycle",
    ),
    pytest.param(
        [grade(19, "a"), dose(23, "x")],
        None,
        ([ENR, ("a", at(42)), ("x", at(44))], []),
        ([ENR, ("a", at(40))], []),
        id="V3-D5-k-from-1-the-anchor-itself-is-no-planned-start",
    ),
    # "On treatment, an assessment schedules the next reassessment at the first planned start
    # more than 3 days after it (pre_cycle_window_days 3: a grading up to 3 days before a start
    # is that cycle's pre-cycle grading; a cycle number on it no longer moves due times)"
    pytest.param(
        [grade(18, "a")],
        None,
        ([ENR, ("a", at(42))], []),
        ([ENR, ("a", at(39))], []),
        id="V3-D5-grading-exactly-3-days-before-a-start-is-its-pre-cycle-grading",
    ),
    pytest.param(
        [assessment(at(18) - MINUTE, event_id="a", sensory=0)],
        None,
        ([ENR, ("a", at(21))], []),
        ([ENR, ("a", at(39) - MINUTE)], []),
        id="V3-D5-grading-more-than-3-days-before-a-start-is-due-at-it",
    ),
    pytest.param(
        [grade(21, "a", hours=1)],
        None,
        ([ENR, ("a", at(42))], []),
        ([ENR, ("a", at(42, hours=1))], []),
        id="V3-D5-grading-after-a-start-is-due-at-the-next-at-the-anchors-hour",
    ),
    pytest.param(
        [grade(21, "a", cycle=5)],
        None,
        ([ENR, ("a", at(42))], []),
        ([ENR, ("a", at(105))], []),
        id="V3-D5-a-cycle-number-no-longer-moves-the-due-time",
    ),
    pytest.param(
        [grade(45, "a", cycle=2)],
        None,
        ([ENR, ("a", at(63))], [at(23)]),
        ([ENR, ("a", at(66))], [at(23)]),
        id="V3-D5-a-late-cycle-number-no-longer-moves-the-due-time",
    ),
    # "A day-1 dose given while the course is on treatment (not held, not stopped) moves the
    # anchor; a reassessment that is pending (not yet overdue) then moves to the first planned
    # start more than 3 days after its own scheduling assessment, if that moves its due time by
    # more than one day, and a schedule_reassessment (D5, at the dose's time, with the new
    # due_at) is emitted. A delayed cycle therefore gives no false overdue"
    pytest.param(
        [grade(21, "a", cycle=2), grade(31, "b", cycle=2), dose(31, "x", hours=1)],
        at(53),
        ([ENR, ("a", at(42)), ("b", at(42)), ("x", at(52, hours=1))], []),
        ([ENR, ("a", at(42)), ("b", at(42))], [at(44)]),
        id="V3-D5-example-delayed-cycle-day1-dose-day-31-due-day-52-no-false-overdue",
    ),
    pytest.param(
        [grade(45, "a", cycle=2, sensory=1), dose(45, "x", hours=1, mg_m2=1.0)],
        at(67),
        ([ENR, ("a", at(63)), ("x", at(66, hours=1))], [at(23)]),
        ([ENR, ("a", at(66))], [at(23)]),
        id="V3-D5-cycle-2-delayed-24-days-late-grading-then-its-day1-dose",
    ),
    pytest.param(
        [grade(19, "a"), dose(19, "x", hours=12)],
        None,
        ([ENR, ("a", at(42)), ("x", at(40, hours=12))], []),
        ([ENR, ("a", at(40))], []),
        id="V3-D5-an-early-cycle-moves-the-due-time-earlier",
    ),
    pytest.param(
        [grade(5, "a"), grade(21, "b"), dose(21, "x", hours=6), grade(30, "c")],
        None,
        ([ENR, ("a", at(21)), ("b", at(42)), ("c", at(42, hours=6))], []),
        ([ENR, ("a", at(26)), ("b", at(42)), ("c", at(51))], []),
        id="V3-D5-a-dose-at-another-hour-of-the-planned-day-changes-nothing-but-the-anchor",
    ),
    pytest.param(
        [dose(1, "x"), grade(5, "a")],
        None,
        ([ENR, ("a", at(22))], []),
        ([ENR, ("a", at(26))], []),
        id="V3-D5-a-move-of-exactly-one-day-changes-nothing",
    ),
    pytest.param(
        [dose(1, "x", hours=1), grade(5, "a")],
        None,
        ([ENR, ("x", at(22, hours=1)), ("a", at(22, hours=1))], []),
        ([ENR, ("a", at(26))], []),
        id="V3-D5-a-move-of-more-than-one-day-is-announced",
    ),
    pytest.param(
        [grade(31, "b"), dose(31, "x2", hours=1), dose(33, "x3")],
        None,
        ([ENR, ("b", at(42)), ("x2", at(52, hours=1)), ("x3", at(54))], [at(23)]),
        ([ENR, ("b", at(52))], [at(23)]),
        id="V3-D5-a-later-day1-dose-moves-the-pending-reassessment-again",
    ),
    # The lead's reading (safety first): a day-1 dose given when the pending pre-cycle grading
    # is due (on the planned day, inside the grace period, or within the window before it) and
    # not done does not push that grading a cycle on: it stays, and goes overdue if not done.
    pytest.param(
        [grade(5, "a"), dose(21, "x", hours=6)],
        at(30),
        ([ENR, ("a", at(21))], [at(23)]),
        ([ENR, ("a", at(26))], [at(28)]),
        id="V3-D5-a-dose-without-the-pending-grading-on-the-planned-day-leaves-it-to-go-overdue",
    ),
    pytest.param(
        [grade(5, "a"), dose(19, "x")],
        at(30),
        ([ENR, ("a", at(21))], [at(23)]),
        ([ENR, ("a", at(26))], [at(28)]),
        id="V3-D5-a-dose-within-the-pre-cycle-window-before-the-due-grading-leaves-it",
    ),
    pytest.param(
        [grade(5, "a"), dose(22, "x")],
        at(30),
        ([ENR, ("a", at(21))], [at(23)]),
        ([ENR, ("a", at(26))], [at(28)]),
        id="V3-D5-due-passed-inside-the-grace-period-stays-and-goes-overdue",
    ),
    pytest.param(
        [dose(24, "x"), grade(30, "a")],
        None,
        ([ENR, ("a", at(45))], [at(23)]),
        ([ENR, ("a", at(51))], [at(23)]),
        id="V3-D5-an-overdue-reassessment-does-not-move-the-anchor-does",
    ),
    pytest.param(
        [dose(23, "x")],
        at(30),
        ([ENR], [at(23)]),
        ([ENR], [at(23)]),
        id="V3-D5-a-dose-at-the-overdue-instant-does-not-save-the-missed-grading",
    ),
    pytest.param(
        [dose(4, "x", mg_m2=1.5)],
        at(26),
        ([ENR, ("x", at(25))], []),
        ([ENR], [at(23)]),
        id="V3-D5-a-dose-with-a-deviation-starts-a-cycle-too",
    ),
    # "the enrolment's first reassessment counts the enrolment as its scheduling assessment"
    pytest.param(
        [dose(4, "x")],
        at(26),
        ([ENR, ("x", at(25))], []),
        ([ENR], [at(23)]),
        id="V3-D5-a-delayed-first-cycle-moves-the-enrolments-reassessment",
    ),
    pytest.param(
        [dose(0, "x", hours=2)],
        at(30),
        ([ENR], [at(23)]),
        ([ENR], [at(23)]),
        id="V3-D5-cycle-1-day-1-on-the-enrolment-day-changes-nothing",
    ),
    pytest.param(
        [tc(10, "discontinued", "stop"), dose(12, "x"), grade(24, "a")],
        None,
        ([ENR, ("stop", at(24)), ("a", at(38))], []),
        ([ENR, ("stop", at(24)), ("a", at(38))], []),
        id="V3-D5-a-day1-dose-after-discontinuation-starts-no-cycle",
    ),
    pytest.param(
        [tc(10, "completed", "stop"), dose(12, "x")],
        None,
        ([ENR, ("stop", at(24))], []),
        ([ENR, ("stop", at(24))], []),
        id="V3-D5-a-day1-dose-after-completion-starts-no-cycle",
    ),
]

# Recorded holds, pack `default` (in `label` version 1 a recorded hold ends with the pack's own
# `resume` at the next low grading, V4): "not held"; "While held, an assessment schedules as in
# version 1"
HELD_CASES = [
    pytest.param(
        [
            tc(10, "held", "h"),
            dose(14, "x"),
            grade(16, "a"),
            tc(17, "resumed", "r"),
            grade(30, "b"),
        ],
        None,
        ([ENR, ("a", at(37)), ("b", at(42))], []),
        ([ENR, ("a", at(37)), ("b", at(51))], []),
        id="V3-D5-a-day1-dose-while-held-starts-no-cycle",
    ),
    pytest.param(
        [tc(10, "held", "h"), grade(25, "a", cycle=2)],
        None,
        ([ENR, ("a", at(42))], [at(23)]),
        ([ENR, ("a", at(42))], [at(23)]),
        id="V3-D5-while-held-the-cycle-number-counts-as-in-version-1",
    ),
    pytest.param(
        [tc(10, "held", "h"), grade(25, "a")],
        None,
        ([ENR, ("a", at(46))], [at(23)]),
        ([ENR, ("a", at(46))], [at(23)]),
        id="V3-D5-while-held-the-assessment-time-plus-a-cycle-as-in-version-1",
    ),
    pytest.param(
        [tc(8, "held", "h"), grade(10, "a"), tc(12, "resumed", "r"), dose(14, "x")],
        None,
        ([ENR, ("a", at(31)), ("x", at(35))], []),
        ([ENR, ("a", at(31))], []),
        id="V3-D5-a-reassessment-scheduled-while-held-moves-with-a-dose-after-resuming",
    ),
]


@pytest.mark.parametrize(("v3", "v1"), V3_PACKS)
@pytest.mark.parametrize(("bodies", "until", "version_2", "version_1"), CASES)
def test_v3_schedule(
    v3: PolicyPack,
    v1: PolicyPack,
    bodies: list[dict[str, Any]],
    until: dt.datetime | None,
    version_2: tuple[Schedules, list[dt.datetime]],
    version_1: tuple[Schedules, list[dt.datetime]],
) -> None:
    check_schedule(v3, v1, bodies, until, version_2, version_1)


@pytest.mark.parametrize(("bodies", "until", "version_2", "version_1"), HELD_CASES)
def test_v3_schedule_while_held(
    bodies: list[dict[str, Any]],
    until: dt.datetime | None,
    version_2: tuple[Schedules, list[dt.datetime]],
    version_1: tuple[Schedules, list[dt.datetime]],
) -> None:
    check_schedule(V3_DEFAULT, DEFAULT, bodies, until, version_2, version_1)


def check_schedule(
    v3: PolicyPack,
    v1: PolicyPack,
    bodies: list[dict[str, Any]],
    until: dt.datetime | None,
    version_2: tuple[Schedules, list[dt.datetime]],
    version_1: tuple[Schedules, list[dt.datetime]],
) -> None:
    timeline = [enrollment(event_id="enr"), *bodies]
    decisions = run(*timeline, pack=v3, until=until)
    assert (schedules(decisions), overdue(decisions)) == version_2
    # Version 1 (the setting at `course_start`): as before; a dose schedules nothing.
    before = run(*timeline, pack=v1, until=until)
    assert (schedules(before), overdue(before)) == version_1
    doses = {b["event_id"] for b in bodies if b["type"] == "administration"}
    assert {d.action for d in before if d.trigger in doses} <= {"adherence_deviation"}
    # The switch changes the reassessment schedule only.
    kept = {"schedule_reassessment", "reassessment_overdue"}
    assert [d.action for d in decisions if d.action not in kept] == [
        d.action for d in before if d.action not in kept
    ]


@pytest.mark.parametrize("pack", [V3_DEFAULT, V3_LABEL], ids=["default", "label"])
def test_v3_example_decision(pack: PolicyPack) -> None:
    """POLICY.md's example: start day 0, grading day 31 (delayed), day-1 dose day 31: due day 52,
    announced by a D5 schedule_reassessment at the dose."""
    decisions = run(
        enrollment(event_id="enr"),
        grade(31, "b", cycle=2),
        dose(31, "x"),
        pack=pack,
        until=at(53),
    )
    [moved] = [d for d in decisions if d.trigger == "x"]
    assert (moved.action, moved.rule, moved.policy, moved.severity, moved.audience) == (
        "schedule_reassessment",
        "D5",
        pack.label,
        "info",
        ["nurse"],
    )
    assert (moved.at, moved.due_at) == (at(31), at(52))
    assert moved.rationale == (
        "Next neuropathy reassessment due 2026-02-26 09:00 UTC: the day-1 dose of "
        "2026-02-05 09:00 UTC started a cycle, so before the next one."
    )


@pytest.mark.parametrize(
    ("window", "day", "due"),
    [
        pytest.param(3, 18, at(42), id="V3-D5-window-3-grading-3-days-before"),
        pytest.param(0, 20, at(21), id="V3-D5-window-0-grading-1-day-before-is-due-at-it"),
        pytest.param(0, 21, at(42), id="V3-D5-window-0-grading-at-the-start"),
        pytest.param(6, 15, at(42), id="V3-D5-window-6-grading-6-days-before"),
        pytest.param(6, 14, at(21), id="V3-D5-window-6-grading-7-days-before"),
    ],
)
def test_v3_pre_cycle_window(window: int, day: int, due: dt.datetime) -> None:
    pack = pack_from_mapping(
        {
            "base": "default@1",
            "name": "site",
            "cycle_anchor": "day1_dose",
            "pre_cycle_window_days": window,
        }
    )
    decisions = run(enrollment(event_id="enr"), grade(day, "a"), pack=pack)
    assert schedules(decisions) == [ENR, ("a", due)]


def test_v3_label_hold_schedules_as_in_version_1() -> None:
    """The assessment that holds (L2) schedules as in version 1; the one that resumes, on the
    dose calendar; a day-1 dose during the hold starts no cycle."""
    bodies = [
        enrollment(event_id="enr"),
        grade(25, "a", sensory=3),
        dose(27, "x"),
        grade(30, "b", sensory=1),
    ]
    decisions = run(*bodies, pack=V3_LABEL)
    assert sorted((d.trigger, d.action) for d in decisions if d.trigger in {"a", "x", "b"}) == [
        ("a", "hold"),
        ("a", "schedule_reassessment"),
        ("b", "resume"),
        ("b", "schedule_reassessment"),
        ("x", "adherence_deviation"),
    ]
    assert schedules(decisions) == [ENR, ("a", at(46)), ("b", at(42))]
    assert schedules(run(*bodies, pack=LABEL)) == [ENR, ("a", at(46)), ("b", at(51))]


# --- the settings ----------------------------------------------------------------------------


def test_v3_settings_default_to_version_1() -> None:
    for pack in (DEFAULT, LABEL):
        assert (pack.cycle_anchor, pack.pre_cycle_window_days) == ("course_start", 3)


@pytest.mark.parametrize(
    ("settings_", "key", "words"),
    [
        pytest.param({"cycle_anchor": "first_dose"}, "cycle_anchor", ["first_dose"], id="anchor"),
        pytest.param({"pre_cycle_window_days": -1}, "pre_cycle_window_days", ["0"], id="neg"),
        pytest.param({"pre_cycle_window_days": 7}, "pre_cycle_window_days", ["6"], id="7"),
        pytest.param({"pre_cycle_window_days": "3"}, "pre_cycle_window_days", ["'3'"], id="str"),
    ],
)
def test_v3_settings_are_validated(settings_: dict[str, Any], key: str, words: list[str]) -> None:
    with pytest.raises(PackError) as raised:
        pack_from_mapping({"base": "default", "name": "site"} | settings_)
    [problem] = raised.value.problems
    assert problem.startswith(f"{key}: ")
    for word in words:
        assert word in problem


def test_v3_a_site_switching_only_v3_needs_its_own_name() -> None:
    with pytest.raises(PackError):
        pack_from_mapping({"base": "default@1", "cycle_anchor": "day1_dose"})
    pack = pack_from_mapping({"base": "label@1", "name": "north", "cycle_anchor": "day1_dose"})
    assert (pack.label, pack.rules, pack.cycle_anchor) == ("north@1", "label", "day1_dose")


# --- properties ------------------------------------------------------------------------------

STEPS = ("grade", "grade", "dose", "dose", "other_dose", "held", "resumed", "discontinued")


@st.composite
def cycle_timelines(draw: st.DrawFn) -> list[dict[str, Any]]:
    """An enrolment, then gradings, day-1 and other doses, holds and resumptions, a stop."""
    bodies = [enrollment(event_id="enr", cycle_length_days=draw(st.sampled_from((7, 14, 21))))]
    when = 0.0
    for n in range(draw(st.integers(1, 12))):
        when += draw(st.integers(0, 30 * 24)) / 24
        step, eid = draw(st.sampled_from(STEPS)), f"e{n:02d}"
        if step == "grade":
            bodies.append(grade(when, eid, cycle=draw(st.integers(1, 8))))
        elif step in ("dose", "other_dose"):
            bodies.append(dose(when, eid, cycle_day=1 if step == "dose" else 8))
        else:
            bodies.append(tc(when, step, eid))
    return bodies


@settings(max_examples=60, deadline=None)
@given(bodies=cycle_timelines(), data=st.data())
def test_v3_schedule_is_order_independent_and_never_in_the_past(
    bodies: list[dict[str, Any]], data: st.DataObject
) -> None:
    decisions = run(*bodies, pack=V3_DEFAULT, until=at(400))
    shuffled = data.draw(st.permutations(bodies))
    assert [d.model_dump() for d in run(*shuffled, pack=V3_DEFAULT, until=at(400))] == [
        d.model_dump() for d in decisions
    ]
    ids = [d.decision_id for d in decisions]
    assert len(ids) == len(set(ids))
    for d in decisions:
        if d.action == "schedule_reassessment":
            assert d.due_at is not None
            assert d.due_at > d.at, d.model_dump()
