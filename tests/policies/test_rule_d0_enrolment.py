"""D0 (POLICY.md, "At enrolment"): advice for weekly SC dosing, and the first reassessment.

Both packs share D0. Expected times are worked out by hand from the enrolment time and the
cycle length (day 1 of cycle 2 = start + cycle_length_days).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from policies import DEFAULT, LABEL, Decision, PolicyPack
from tests.common.factories import T0, enrollment, run

PACKS = [
    pytest.param(DEFAULT, "default@1", id="default"),
    pytest.param(LABEL, "label@1", id="label"),
]


def of(decisions: list[Decision], action: str) -> list[Decision]:
    return [d for d in decisions if d.action == action]


# (rule, enrolment fields over the factory's SC weekly 1.3 mg/m2 course at age 55, advised?)
RISK_FACTOR_CASES = [
    pytest.param("D0", {"route": "IV"}, False, id="D0-IV-no-risk-factor"),
    pytest.param("D0", {"route": "IV", "age": 65}, True, id="D0-IV-age-65"),
    pytest.param("D0", {"route": "IV", "age": 64}, False, id="D0-IV-age-64"),
    pytest.param("D0", {"route": "IV", "age": 88}, True, id="D0-IV-age-88"),
    pytest.param("D0", {"route": "IV", "age": None}, False, id="D0-IV-age-unknown"),
    pytest.param("D0", {"route": "IV", "baseline": {"sensory": 1}}, True, id="D0-IV-baseline-S1"),
    pytest.param("D0", {"route": "IV", "baseline": {"sensory": 2}}, True, id="D0-IV-baseline-S2"),
    pytest.param("D0", {"route": "IV", "baseline": {"motor": 1}}, True, id="D0-IV-baseline-M1"),
    pytest.param("D0", {"route": "IV", "baseline": {"pain": 1}}, True, id="D0-IV-baseline-P1"),
    pytest.param(
        "D0",
        {"route": "IV", "baseline": {"sensory": 0, "motor": 0, "pain": 0}},
        False,
        id="D0-IV-baseline-G0",
    ),
    # G = max(sensory, motor, pain): autonomic alone is not "baseline G >= 1".
    pytest.param(
        "D0", {"route": "IV", "baseline": {"autonomic": 2}}, False, id="D0-IV-baseline-autonomic"
    ),
    pytest.param(
        "D0",
        {"route": "IV", "risk_factors": ["baseline_neuropathy"]},
        True,
        id="D0-IV-baseline_neuropathy-listed",
    ),
    pytest.param("D0", {"route": "IV", "risk_factors": ["diabetes"]}, True, id="D0-IV-diabetes"),
    pytest.param(
        "D0",
        {"route": "IV", "risk_factors": ["prior_thalidomide"]},
        True,
        id="D0-IV-prior_thalidomide",
    ),
    pytest.param(
        "D0",
        {"route": "IV", "concomitant": ["thalidomide"]},
        True,
        id="D0-IV-concomitant-thalidomide",
    ),
    pytest.param(
        "D0",
        {"route": "IV", "concomitant": ["vincristine"]},
        True,
        id="D0-IV-concomitant-vincristine",
    ),
    pytest.param(
        "D0",
        {"route": "IV", "concomitant": ["dexamethasone", "Vincristine"]},
        True,
        id="D0-IV-concomitant-vincristine-among-others",
    ),
    pytest.param(
        "D0",
        {"route": "IV", "concomitant": ["lenalidomide", "dexamethasone"]},
        False,
        id="D0-IV-concomitant-not-neurotoxic",
    ),
    pytest.param(
        "D0",
        {"route": "IV", "risk_factors": ["renal_insufficiency"]},
        False,
        id="D0-IV-renal_insufficiency-not-a-trigger",
    ),
    pytest.param(
        "D0",
        {"route": "IV", "risk_factors": ["hypothyroidism"]},
        False,
        id="D0-IV-hypothyroidism-not-a-trigger",
    ),
    pytest.param(
        "D0",
        {"route": "IV", "risk_factors": ["vitamin_b12_deficiency"]},
        False,
        id="D0-IV-vitamin_b12_deficiency-not-a-trigger",
    ),
    pytest.param(
        "D0",
        {"route": "IV", "risk_factors": ["alcohol"]},
        False,
        id="D0-IV-alcohol-not-a-trigger",
    ),
    pytest.param(
        "D0",
        {
            "route": "IV",
            "risk_factors": [
                "renal_insufficiency",
                "hypothyroidism",
                "vitamin_b12_deficiency",
                "alcohol",
            ],
        },
        False,
        id="D0-IV-all-non-triggering-factors",
    ),
]

# Route and schedule: only an IV or a twice-weekly course gets the advice (risk: age 70).
ROUTE_SCHEDULE_CASES = [
    pytest.param("D0", {"route": "SC", "schedule": "weekly"}, False, id="D0-SC-weekly-at-risk"),
    pytest.param(
        "D0", {"route": "SC", "schedule": "twice_weekly"}, True, id="D0-SC-twice-weekly-at-risk"
    ),
    pytest.param("D0", {"route": "IV", "schedule": "weekly"}, True, id="D0-IV-weekly-at-risk"),
    pytest.param(
        "D0", {"route": "IV", "schedule": "twice_weekly"}, True, id="D0-IV-twice-weekly-at-risk"
    ),
    pytest.param(
        "D0",
        {
            "route": "SC",
            "schedule": "weekly",
            "risk_factors": ["diabetes", "prior_thalidomide", "baseline_neuropathy"],
            "concomitant": ["thalidomide", "vincristine"],
            "baseline": {"sensory": 2},
        },
        False,
        id="D0-SC-weekly-every-risk-factor",
    ),
]


@pytest.mark.parametrize(("pack", "policy"), PACKS)
@pytest.mark.parametrize(("rule", "fields", "advised"), RISK_FACTOR_CASES)
def test_d0_risk_factors(
    pack: PolicyPack, policy: str, rule: str, fields: dict[str, Any], advised: bool
) -> None:
    _check_advice(pack, policy, rule, fields, advised)


@pytest.mark.parametrize(("pack", "policy"), PACKS)
@pytest.mark.parametrize(("rule", "fields", "advised"), ROUTE_SCHEDULE_CASES)
def test_d0_route_and_schedule(
    pack: PolicyPack, policy: str, rule: str, fields: dict[str, Any], advised: bool
) -> None:
    _check_advice(pack, policy, rule, {"age": 70, **fields}, advised)


def _check_advice(
    pack: PolicyPack, policy: str, rule: str, fields: dict[str, Any], advised: bool
) -> None:
    decisions = run(enrollment(event_id="enr", **fields), pack=pack)
    advice = of(decisions, "advise_subcutaneous_weekly")
    if not advised:
        assert advice == []
        assert [d.action for d in decisions] == ["schedule_reassessment"]
        return
    assert len(advice) == 1
    (d,) = advice
    assert (d.rule, d.policy, d.severity, d.trigger, d.at) == (rule, policy, "info", "enr", T0)
    assert {"S3", "S5"} <= set(d.sources)
    assert d.rationale.strip()
    assert sorted(d.action for d in decisions) == [
        "advise_subcutaneous_weekly",
        "schedule_reassessment",
    ]


PLUS_1 = dt.timezone(dt.timedelta(hours=1))
MINUS_5 = dt.timezone(dt.timedelta(hours=-5))
PLUS_530 = dt.timezone(dt.timedelta(hours=5, minutes=30))

# (rule, enrolment time, cycle length, extra fields, expected `at`, expected `due_at`) in wire form
FIRST_REASSESSMENT_CASES = [
    pytest.param(
        "D0", T0, 21, {}, "2026-01-05T09:00:00Z", "2026-01-26T09:00:00Z", id="D0-first-due-21d"
    ),
    pytest.param(
        "D0", T0, 28, {}, "2026-01-05T09:00:00Z", "2026-02-02T09:00:00Z", id="D0-first-due-28d"
    ),
    pytest.param(
        "D0", T0, 7, {}, "2026-01-05T09:00:00Z", "2026-01-12T09:00:00Z", id="D0-first-due-7d"
    ),
    pytest.param(
        "D0", T0, 56, {}, "2026-01-05T09:00:00Z", "2026-03-02T09:00:00Z", id="D0-first-due-56d"
    ),
    pytest.param(
        "D0",
        T0,
        21,
        {"route": "IV", "schedule": "twice_weekly", "age": 70},
        "2026-01-05T09:00:00Z",
        "2026-01-26T09:00:00Z",
        id="D0-first-due-IV-twice-weekly-advised",
    ),
    pytest.param(
        "D0",
        dt.datetime(2026, 3, 1, 0, 30, tzinfo=PLUS_1),
        21,
        {},
        "2026-02-28T23:30:00Z",
        "2026-03-21T23:30:00Z",
        id="D0-first-due-offset-plus-0100-crosses-midnight",
    ),
    pytest.param(
        "D0",
        dt.datetime(2026, 1, 31, 22, 0, tzinfo=MINUS_5),
        14,
        {},
        "2026-02-01T03:00:00Z",
        "2026-02-15T03:00:00Z",
        id="D0-first-due-offset-minus-0500",
    ),
    pytest.param(
        "D0",
        dt.datetime(2026, 6, 30, 20, 0, tzinfo=PLUS_530),
        21,
        {},
        "2026-06-30T14:30:00Z",
        "2026-07-21T14:30:00Z",
        id="D0-first-due-offset-plus-0530",
    ),
]


@pytest.mark.parametrize(("pack", "policy"), PACKS)
@pytest.mark.parametrize(
    ("rule", "when", "cycle_length", "fields", "at_z", "due_z"), FIRST_REASSESSMENT_CASES
)
def test_d0_first_reassessment_before_cycle_2(
    pack: PolicyPack,
    policy: str,
    rule: str,
    when: dt.datetime,
    cycle_length: int,
    fields: dict[str, Any],
    at_z: str,
    due_z: str,
) -> None:
    decisions = run(
        enrollment(when, event_id="enr", cycle_length_days=cycle_length, **fields), pack=pack
    )
    scheduled = of(decisions, "schedule_reassessment")
    assert len(scheduled) == 1
    (d,) = scheduled
    wire = d.model_dump(mode="json")
    assert (wire["rule"], wire["policy"], wire["severity"], wire["trigger"]) == (
        rule,
        policy,
        "info",
        "enr",
    )
    assert wire["at"] == at_z
    assert wire["due_at"] == due_z
    assert d.due_at is not None
    assert d.due_at - d.at == dt.timedelta(days=cycle_length)


@pytest.mark.parametrize(("pack", "policy"), PACKS)
def test_d0_advice_carries_rule_sources_and_nothing_on_treatment(
    pack: PolicyPack, policy: str
) -> None:
    """D0 at enrolment emits no dose decision: only the advice and the first reassessment."""
    decisions = run(
        enrollment(event_id="enr", route="IV", schedule="twice_weekly", age=70), pack=pack
    )
    assert {d.trigger for d in decisions} == {"enr"}
    assert {d.rule for d in decisions} == {"D0"}
    assert {d.policy for d in decisions} == {policy}
