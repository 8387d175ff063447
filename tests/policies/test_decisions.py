"""Every decision (CONTRACT.md, "Decisions"; POLICY.md preamble and "Severities").

A multi-patient timeline that makes both packs emit every action is evaluated once per pack; each
decision is then checked for its rule, policy, rationale, sources, severity, audience, time format
and id.
"""

from __future__ import annotations

import datetime as dt
import random
import re
from functools import cache
from typing import Any

import pytest

from policies import DEFAULT, LABEL, Decision, PolicyPack, evaluate
from tests.common.factories import (
    administration,
    assessment,
    at,
    enrollment,
    events,
    run,
    treatment_change,
)

ALL_ACTIONS = {
    "advise_subcutaneous_weekly",
    "reduce_dose",
    "hold",
    "resume",
    "discontinue",
    "immune_workup",
    "coasting_watch_started",
    "coasting_worsening",
    "escalate_immunotherapy",
    "escalation_unanswered",
    "schedule_reassessment",
    "reassessment_overdue",
    "watch_closed",
    "adherence_deviation",
    "review_required",
}
AUDIENCES = {"nurse", "physician", "neurology", "pharmacy", "infusion_unit"}
SOURCE_ID = re.compile(r"^S[1-8]$")
UTC_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")
PLUS_1 = dt.timezone(dt.timedelta(hours=1))
MINUS_5 = dt.timezone(dt.timedelta(hours=-5))
PLUS_530 = dt.timezone(dt.timedelta(hours=5, minutes=30))
UNTIL = at(400)


def timeline() -> list[dict[str, Any]]:
    """Six patients; together they make each pack emit every action it has."""
    return [
        # PA: D0 advice, D1/L1 reductions, D6 above recommended, D2/L2 on grade 3
        enrollment(event_id="pa-enr", patient="PA", route="IV", age=70),
        assessment(at(21), patient="PA", event_id="pa-a1", cycle=2, sensory=1),
        administration(at(22), 1.3, patient="PA", event_id="pa-d1"),
        assessment(at(42), patient="PA", event_id="pa-a2", cycle=3, sensory=2),
        assessment(at(63), patient="PA", event_id="pa-a3", cycle=4, sensory=3, motor=3, pain=2),
        administration(at(64), 0.7, patient="PA", event_id="pa-d2"),
        # PB: lowest dose level review (D1/L1)
        enrollment(event_id="pb-enr", patient="PB", dose_mg_m2=0.7),
        assessment(at(21), patient="PB", event_id="pb-a1", cycle=2, sensory=2),
        # PC: no course (D7)
        assessment(at(5), patient="PC", event_id="pc-a1", sensory=1),
        # PD: label hold, dose during hold, resume (default: discontinue, watch)
        enrollment(event_id="pd-enr", patient="PD"),
        assessment(at(21), patient="PD", event_id="pd-a1", cycle=2, sensory=3),
        administration(at(22), 1.3, patient="PD", event_id="pd-d1"),
        assessment(at(42), patient="PD", event_id="pd-a2", cycle=3, sensory=1),
        # PE: recorded hold, dose during hold (D6)
        enrollment(event_id="pe-enr", patient="PE"),
        treatment_change(at(3), "held", patient="PE", event_id="pe-t1"),
        administration(at(5), 1.3, patient="PE", event_id="pe-d1"),
        # PF: discontinue with red flag, coasting worsening, escalation (unanswered), closing
        enrollment(event_id="pf-enr", patient="PF"),
        assessment(at(21), patient="PF", event_id="pf-a1", cycle=2, motor=4),
        assessment(at(35), patient="PF", event_id="pf-a2", motor=4, pain=1),
        assessment(at(42), patient="PF", event_id="pf-a3", sensory=2, motor=4, pain=1),
        assessment(at(112), patient="PF", event_id="pf-a4", motor=1),
    ]


@cache
def decisions_of(name: str) -> tuple[Decision, ...]:
    pack = {"default": DEFAULT, "label": LABEL}[name]
    return tuple(run(*timeline(), pack=pack, until=UNTIL))


PACKS = [
    pytest.param("default", "default@1", id="default"),
    pytest.param("label", "label@1", id="label"),
]
RULES = {
    "default": {"D0", "D1", "D2", "D3", "D4", "D5", "D6", "D7"},
    "label": {"D0", "D3", "D4", "D5", "D6", "D7", "L1", "L2", "L3"},
}


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        pytest.param("default", ALL_ACTIONS - {"hold", "resume"}, id="default-covers-all-but-L2"),
        pytest.param("label", ALL_ACTIONS, id="label-covers-every-action"),
    ],
)
def test_timeline_covers_the_actions(name: str, expected: set[str]) -> None:
    assert {d.action for d in decisions_of(name)} == expected


@pytest.mark.parametrize(("name", "policy"), PACKS)
def test_every_decision_is_complete(name: str, policy: str) -> None:
    decisions = decisions_of(name)
    assert decisions
    for d in decisions:
        wire = d.to_json_dict()
        assert d.action in ALL_ACTIONS, wire
        assert d.rule in RULES[name], wire
        assert d.policy == policy, wire
        assert isinstance(d.rationale, str), wire
        assert d.rationale.strip(), wire
        assert "\n" not in d.rationale, wire  # one human sentence
        assert d.sources, wire
        assert all(SOURCE_ID.match(s) for s in d.sources), wire
        assert len(set(d.sources)) == len(d.sources), wire
        assert d.severity in {"info", "warning", "urgent"}, wire
        assert d.audience, wire
        assert set(d.audience) <= AUDIENCES, wire
        assert len(set(d.audience)) == len(d.audience), wire
        assert d.patient_id in {"PA", "PB", "PC", "PD", "PE", "PF"}, wire
        assert d.trigger.startswith(("timer:", d.patient_id.lower() + "-")), wire


# POLICY.md severities: the rules' own, then "Severities" (schedule_reassessment,
# coasting_watch_started, watch_closed info; hold urgent; resume warning); adherence by reason.
SEVERITY_CASES = [
    pytest.param("advise_subcutaneous_weekly", None, "info", id="D0-advice-info"),
    pytest.param("reduce_dose", None, "warning", id="D1-L1-reduce-warning"),
    pytest.param("review_required", "lowest_dose_level", "warning", id="D1-L1-review-warning"),
    pytest.param("discontinue", None, "urgent", id="D2-L3-discontinue-urgent"),
    pytest.param("immune_workup", None, "urgent", id="D2-L3-workup-urgent"),
    pytest.param("coasting_watch_started", None, "info", id="D3-watch-started-info"),
    pytest.param("coasting_worsening", None, "warning", id="D3-coasting-worsening-warning"),
    pytest.param("watch_closed", None, "info", id="D3-watch-closed-info"),
    pytest.param("escalate_immunotherapy", None, "urgent", id="D4-escalate-urgent"),
    pytest.param("escalation_unanswered", None, "urgent", id="D4-unanswered-urgent"),
    pytest.param("schedule_reassessment", None, "info", id="D5-schedule-info"),
    pytest.param("reassessment_overdue", None, "warning", id="D5-overdue-warning"),
    pytest.param(
        "adherence_deviation",
        "dose_after_discontinuation",
        "urgent",
        id="D6-after-discontinuation-urgent",
    ),
    pytest.param("adherence_deviation", "dose_during_hold", "urgent", id="D6-during-hold-urgent"),
    pytest.param("adherence_deviation", "dose_above_recommended", "warning", id="D6-above-warning"),
    pytest.param("review_required", "no_active_course", "warning", id="D7-review-warning"),
    pytest.param("hold", None, "urgent", id="L2-hold-urgent"),
    pytest.param("resume", None, "warning", id="L2-resume-warning"),
]


@pytest.mark.parametrize(("action", "reason", "severity"), SEVERITY_CASES)
def test_severity(action: str, reason: str | None, severity: str) -> None:
    found = [
        d
        for name in ("default", "label")
        for d in decisions_of(name)
        if d.action == action and (reason is None or d.reason == reason)
    ]
    assert found, f"the timeline gives no {action} {reason or ''}"
    assert {d.severity for d in found} == {severity}


# (pack, action, reason, rule) - the rule each decision names
RULE_CASES = [
    pytest.param("default", "advise_subcutaneous_weekly", None, "D0", id="D0-default"),
    pytest.param("default", "reduce_dose", None, "D1", id="D1-reduce"),
    pytest.param("default", "review_required", "lowest_dose_level", "D1", id="D1-lowest"),
    pytest.param("default", "discontinue", None, "D2", id="D2-discontinue"),
    pytest.param("default", "immune_workup", None, "D2", id="D2-workup"),
    pytest.param("default", "coasting_watch_started", None, "D3", id="D3-default-start"),
    pytest.param("default", "coasting_worsening", None, "D3", id="D3-default-worsening"),
    pytest.param("default", "watch_closed", None, "D3", id="D3-default-closed"),
    pytest.param("default", "escalate_immunotherapy", None, "D4", id="D4-default-escalate"),
    pytest.param("default", "escalation_unanswered", None, "D4", id="D4-default-unanswered"),
    pytest.param("default", "reassessment_overdue", None, "D5", id="D5-default-overdue"),
    pytest.param("default", "adherence_deviation", None, "D6", id="D6-default"),
    pytest.param("default", "review_required", "no_active_course", "D7", id="D7-default"),
    pytest.param("label", "advise_subcutaneous_weekly", None, "D0", id="D0-label"),
    pytest.param("label", "reduce_dose", None, "L1", id="L1-reduce"),
    pytest.param("label", "review_required", "lowest_dose_level", "L1", id="L1-lowest"),
    pytest.param("label", "hold", None, "L2", id="L2-hold"),
    pytest.param("label", "resume", None, "L2", id="L2-resume"),
    pytest.param("label", "discontinue", None, "L3", id="L3-discontinue"),
    pytest.param("label", "immune_workup", None, "L3", id="L3-workup"),
    pytest.param("label", "coasting_watch_started", None, "D3", id="D3-label-start"),
    pytest.param("label", "coasting_worsening", None, "D3", id="D3-label-worsening"),
    pytest.param("label", "watch_closed", None, "D3", id="D3-label-closed"),
    pytest.param("label", "escalate_immunotherapy", None, "D4", id="D4-label-escalate"),
    pytest.param("label", "escalation_unanswered", None, "D4", id="D4-label-unanswered"),
    pytest.param("label", "reassessment_overdue", None, "D5", id="D5-label-overdue"),
    pytest.param("label", "adherence_deviation", None, "D6", id="D6-label"),
    pytest.param("label", "review_required", "no_active_course", "D7", id="D7-label"),
]


@pytest.mark.parametrize(("name", "action", "reason", "rule"), RULE_CASES)
def test_rule_ids(name: str, action: str, reason: str | None, rule: str) -> None:
    found = [
        d
        for d in decisions_of(name)
        if d.action == action and (reason is None or d.reason == reason)
    ]
    assert found
    assert {d.rule for d in found} == {rule}


@pytest.mark.parametrize(("name", "policy"), PACKS)
def test_schedule_reassessment_rule(name: str, policy: str) -> None:
    """The first reassessment belongs to D0; the others to D5 (D3 gives the watch cadence)."""
    for d in decisions_of(name):
        if d.action == "schedule_reassessment":
            expected = {"D0"} if d.trigger.endswith("-enr") else {"D3", "D5"}
            assert d.rule in expected, d.to_json_dict()


# (pack, action, sources POLICY.md cites for it)
SOURCE_CASES = [
    pytest.param("default", "advise_subcutaneous_weekly", {"S3", "S5"}, id="D0-S3-S5"),
    pytest.param("default", "reduce_dose", {"S3", "S5", "S6"}, id="D1-S3-S5-S6"),
    pytest.param("default", "discontinue", {"S3", "S5"}, id="D2-S3-S5"),
    pytest.param("default", "immune_workup", {"S1", "S2", "S3"}, id="D2-workup-S1-S2-S3"),
    pytest.param("default", "coasting_watch_started", {"S3", "S7"}, id="D3-S3-S7"),
    pytest.param("default", "escalate_immunotherapy", {"S1", "S4", "S8"}, id="D4-options"),
    pytest.param("label", "reduce_dose", {"S5", "S6"}, id="L1-S5-S6"),
    pytest.param("label", "hold", {"S5", "S6"}, id="L2-hold-S5-S6"),
    pytest.param("label", "resume", {"S5", "S6"}, id="L2-resume-S5-S6"),
    pytest.param("label", "discontinue", {"S5", "S6"}, id="L3-S5-S6"),
    pytest.param("label", "immune_workup", {"S1", "S2", "S3"}, id="L3-workup-S1-S2-S3"),
]


@pytest.mark.parametrize(("name", "action", "cited"), SOURCE_CASES)
def test_sources_cited_by_policy(name: str, action: str, cited: set[str]) -> None:
    found = [d for d in decisions_of(name) if d.action == action]
    assert found
    for d in found:
        assert cited <= set(d.sources), d.to_json_dict()


# audiences POLICY.md names (the others: any non-empty subset of the contract's list)
AUDIENCE_CASES = [
    pytest.param("coasting_worsening", {"nurse"}, id="D3-coasting-worsening-nurse"),
    pytest.param("escalate_immunotherapy", {"physician", "neurology"}, id="D4-physician-neurology"),
    pytest.param("reassessment_overdue", {"nurse"}, id="D5-overdue-nurse"),
]


@pytest.mark.parametrize(("action", "audience"), AUDIENCE_CASES)
def test_named_audiences(action: str, audience: set[str]) -> None:
    found = [d for name in ("default", "label") for d in decisions_of(name) if d.action == action]
    assert found
    for d in found:
        assert set(d.audience) == audience


# --- UTC `Z` form ------------------------------------------------------------------------------


def test_times_serialised_in_utc_z() -> None:
    """Inputs at +01:00, -05:00 and +05:30; every time comes out in UTC with a `Z`."""
    bodies = [
        enrollment(dt.datetime(2026, 3, 1, 10, 0, tzinfo=PLUS_1), event_id="enr"),
        assessment(
            dt.datetime(2026, 3, 22, 4, 0, tzinfo=MINUS_5), event_id="a", cycle=2, autonomic=3
        ),
        administration(dt.datetime(2026, 3, 23, 15, 30, tzinfo=PLUS_530), 0.7, event_id="d"),
    ]
    decisions = run(*bodies, until=dt.datetime(2026, 4, 7, 9, 0, tzinfo=dt.UTC))
    wire = {(d.trigger, d.action): d.model_dump(mode="json") for d in decisions}
    picked = {
        key: {k: v for k, v in w.items() if k in {"at", "due_at", "window_end"}}
        for key, w in wire.items()
    }
    assert picked == {
        ("enr", "schedule_reassessment"): {
            "at": "2026-03-01T09:00:00Z",
            "due_at": "2026-03-22T09:00:00Z",
            "window_end": None,
        },
        ("a", "discontinue"): {"at": "2026-03-22T09:00:00Z", "due_at": None, "window_end": None},
        ("a", "coasting_watch_started"): {
            "at": "2026-03-22T09:00:00Z",
            "due_at": None,
            "window_end": "2026-06-20T09:00:00Z",
        },
        ("a", "schedule_reassessment"): {
            "at": "2026-03-22T09:00:00Z",
            "due_at": "2026-04-05T09:00:00Z",
            "window_end": None,
        },
        ("d", "adherence_deviation"): {
            "at": "2026-03-23T10:00:00Z",
            "due_at": None,
            "window_end": None,
        },
        ("timer:reassessment_overdue", "reassessment_overdue"): {
            "at": "2026-04-07T09:00:00Z",
            "due_at": "2026-04-05T09:00:00Z",
            "window_end": None,
        },
    }


@pytest.mark.parametrize(("name", "policy"), PACKS)
def test_every_time_field_is_utc_z(name: str, policy: str) -> None:
    for d in decisions_of(name):
        wire = d.model_dump(mode="json")
        for key in ("at", "due_at", "window_end"):
            if wire[key] is not None:
                assert UTC_Z.match(wire[key]), (key, wire)
        assert set(d.to_json_dict()) >= {
            "decision_id",
            "patient_id",
            "at",
            "trigger",
            "action",
            "severity",
            "audience",
            "rule",
            "policy",
            "rationale",
            "sources",
        }


# --- decision ids --------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "policy"), PACKS)
def test_decision_ids_unique_within_a_timeline(name: str, policy: str) -> None:
    ids = [d.decision_id for d in decisions_of(name)]
    assert len(ids) == len(set(ids))
    assert all(ids)


def test_decision_ids_do_not_collide_across_packs() -> None:
    ids = [d.decision_id for name in ("default", "label") for d in decisions_of(name)]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize(("name", "policy"), PACKS)
def test_decision_ids_identical_across_two_evaluations(name: str, policy: str) -> None:
    pack: PolicyPack = {"default": DEFAULT, "label": LABEL}[name]
    first = evaluate(pack, events(*timeline()), UNTIL)
    second = evaluate(pack, events(*timeline()), UNTIL)
    assert [d.decision_id for d in first] == [d.decision_id for d in second]
    assert [d.to_json_dict() for d in first] == [d.to_json_dict() for d in second]


@pytest.mark.parametrize(("name", "policy"), PACKS)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_same_decisions_in_any_order_with_duplicates(name: str, policy: str, seed: int) -> None:
    """Replay equivalence: shuffled input with exact duplicates gives the same decisions."""
    pack: PolicyPack = {"default": DEFAULT, "label": LABEL}[name]
    bodies = timeline()
    shuffled = bodies + bodies[::3]
    random.Random(seed).shuffle(shuffled)
    got = evaluate(pack, events(*shuffled), UNTIL)
    assert [d.to_json_dict() for d in got] == [d.to_json_dict() for d in decisions_of(name)]
