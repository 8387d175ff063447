"""The order check's card logic (pure): course state, clearance and decisions + one draft order
-> one card with the right indicator, rule, suggestion and text."""

from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import dataclass, field
from typing import Any

import pytest
from fhir.resources.R4B.medicationrequest import MedicationRequest

from monitor.interop.cds.cards import CourseView, DraftOrder, order_card
from monitor.interop.fhir.medication import Regimen, read_regimen
from monitor.settings import Settings
from policies.clearance import clearance
from tests.common.cds import draft_order, no_empty_values
from tests.conftest import FIXED_NOW

NOW = FIXED_NOW
STARTED = "2026-09-21T12:00:00Z"
URL = "https://bipn.example/patients/P-1"
ACTIVE = {
    "status": "active",
    "course_started_at": STARTED,
    "unit": "U-A",
    "dose_mg_m2": 1.0,
    "schedule": "weekly",
    "route": "SC",
    "next_reassessment_due": "2026-10-19T12:00:00Z",
    "reassessment_overdue_since": None,
}


def decision(action: str, rule: str, at: str = "2026-09-28T12:00:00Z", **fields: Any) -> Any:
    return {
        "decision_id": f"d-{action[:6]}-{rule}",
        "patient_id": "P-1",
        "at": at,
        "action": action,
        "rule": rule,
        "policy": "default@1",
        "rationale": f"the {action} rationale",
        **fields,
    }


REDUCED = decision("reduce_dose", "D1", dose_mg_m2=1.0, schedule="weekly", route="SC")


@dataclass
class Case:
    state: dict[str, Any]
    decisions: list[Any]
    order: dict[str, Any]
    indicator: str
    rule: str
    suggestion: str | None  # the action type of the one suggestion, if any
    says: str  # in the summary
    pending: int = 0
    known: bool = True
    problems: tuple[str, ...] = ()
    decision_id: str | None = field(default=None)


CASES: dict[str, Case] = {
    "in line": Case(ACTIVE, [REDUCED], {}, "info", "D1", None, "in line"),
    "within the dose tolerance": Case(
        ACTIVE, [REDUCED], {"dose": 1.05}, "info", "D1", None, "in line"
    ),
    "dose above the tolerance": Case(
        ACTIVE, [REDUCED], {"dose": 1.06}, "warning", "D1", "update", "1.06 mg/m2 weekly SC"
    ),
    "twice weekly for weekly": Case(
        ACTIVE, [REDUCED], {"schedule": "twice_weekly"}, "warning", "D1", "update", "above"
    ),
    "IV for SC": Case(ACTIVE, [REDUCED], {"route": "IV"}, "warning", "D1", "update", "above"),
    "a lower dose": Case(ACTIVE, [REDUCED], {"dose": 0.7}, "info", "D1", None, "in line"),
    "dose and schedule not given yet": Case(
        ACTIVE, [REDUCED], {"dose": None, "schedule": None}, "info", "D1", None, "1.0 mg/m2"
    ),
    "no dose decision: the regimen on record": Case(
        ACTIVE, [], {"dose": 1.3}, "warning", "D6", "update", "above"
    ),
    "a recorded hold": Case(
        {**ACTIVE, "status": "held"}, [], {}, "critical", "D6", "delete", "on hold"
    ),
    "a hold decision": Case(
        {**ACTIVE, "status": "held"},
        [decision("hold", "L2")],
        {},
        "critical",
        "L2",
        "delete",
        "on hold",
        decision_id="d-hold-L2",
    ),
    "discontinued by D2": Case(
        {**ACTIVE, "status": "discontinued"},
        # the same instant, and the watch's id sorts after: the discontinuation still leads
        [
            decision("discontinue", "D2"),
            decision("coasting_watch_started", "D3", decision_id="d-zz-watch"),
        ],
        {},
        "critical",
        "D2",
        "delete",
        "discontinued",
        decision_id="d-discon-D2",
    ),
    "a recorded discontinuation": Case(
        {**ACTIVE, "status": "discontinued"},
        [decision("coasting_watch_started", "D3")],
        {},
        "critical",
        "D3",
        "delete",
        "discontinued",
    ),
    "held, and above the dose: cancel only": Case(
        {**ACTIVE, "status": "held"}, [REDUCED], {"dose": 1.3}, "critical", "D6", "delete", "hold"
    ),
    "completed": Case(
        {**ACTIVE, "status": "completed"},
        [decision("coasting_watch_started", "D3")],
        {},
        "warning",
        "D3",
        None,
        "completed",
    ),
    "reassessment overdue": Case(
        {
            **ACTIVE,
            "next_reassessment_due": None,
            "reassessment_overdue_since": "2026-09-20T12:00:00Z",
        },
        [REDUCED, decision("reassessment_overdue", "D5", at="2026-09-22T12:00:00Z")],
        {},
        "warning",
        "D5",
        None,
        "overdue since 2026-09-20",
        decision_id="d-reasse-D5",
    ),
    "reassessment due now": Case(
        {**ACTIVE, "next_reassessment_due": "2026-10-01T08:00:00Z"},
        [REDUCED, decision("schedule_reassessment", "D0", due_at="2026-10-01T08:00:00Z")],
        {},
        "warning",
        "D0",
        None,
        "reassessment due 2026-10-01",
    ),
    "events still processing": Case(
        ACTIVE, [REDUCED], {}, "warning", "D1", None, "still being processed", pending=2
    ),
    "an unknown patient": Case(
        {"status": "none"}, [], {}, "info", "D7", None, "No bortezomib course", known=False
    ),
    "an ended course": Case(
        {"status": "ended", "courses_ended": 1}, [], {}, "info", "D7", None, "No bortezomib"
    ),
    "an unknown patient's events processing": Case(
        {"status": "none"}, [], {}, "warning", "D7", None, "still being processed", pending=1
    ),
    "an unreadable dosage": Case(
        ACTIVE,
        [REDUCED],
        {},
        "warning",
        "D1",
        "update",
        "not checked",
        problems=("MedicationRequest.dosageInstruction[0]...code: unit 'mg' is not mg/m2",),
    ),
    "D0 advice: IV twice weekly with a risk factor": Case(
        {**ACTIVE, "dose_mg_m2": 1.3, "schedule": "twice_weekly", "route": "IV"},
        [decision("advise_subcutaneous_weekly", "D0", schedule="weekly", route="SC")],
        {"dose": 1.3, "schedule": "twice_weekly", "route": "IV"},
        "warning",
        "D0",
        "update",
        "1.3 mg/m2 weekly SC recommended",
    ),
    "a previous course's decisions do not count": Case(
        {**ACTIVE, "dose_mg_m2": 1.3},
        [decision("reduce_dose", "D1", at="2026-01-05T12:00:00Z", dose_mg_m2=0.7)],
        {"dose": 1.3},
        "info",
        "D6",
        None,
        "in line",
    ),
}


def course(case: Case) -> CourseView:
    return CourseView(
        patient_id="P-1",
        known=case.known,
        state=case.state,
        clearance=clearance(case.state, case.pending, NOW),
        pending_events=case.pending,
        decisions=case.decisions,
        policy="default@1",
        tolerance_mg_m2=0.05,
    )


def order_of(case: Case) -> DraftOrder:
    request = draft_order(patient="P-1", **case.order)
    if case.problems:
        return DraftOrder("MedicationRequest/mr-1", request, None, case.problems)
    return DraftOrder("MedicationRequest/mr-1", request, read_regimen(request, Settings(), "MR"))


def uuids() -> Any:
    counter = itertools.count(1)
    return lambda: f"00000000-0000-4000-8000-{next(counter):012d}"


@pytest.mark.parametrize("name", list(CASES))
def test_card_for_each_situation(name: str) -> None:
    case = CASES[name]
    card = order_card(course(case), order_of(case), NOW, URL, uuids())
    body = card.body
    assert (card.indicator, card.rule) == (case.indicator, case.rule)
    assert body["indicator"] == case.indicator
    assert case.says in body["summary"]
    assert len(body["summary"]) < 140
    assert body["source"]["label"] == f"bipn-monitor default@1, rule {case.rule}"
    assert f"rule {case.rule}" in body["detail"]
    assert body["links"] == [
        {"label": "Neuropathy course and decisions (bipn-monitor)", "url": URL, "type": "absolute"}
    ]
    assert no_empty_values(body) == []
    assert card.uuid == body["uuid"] == "00000000-0000-4000-8000-000000000001"
    if case.decision_id is not None:
        assert card.decision_id == case.decision_id
        assert case.decision_id in body["detail"]
    suggestions = body.get("suggestions", [])
    assert [a["type"] for s in suggestions for a in s["actions"]] == (
        [case.suggestion] if case.suggestion else []
    )
    assert card.suggestion_ids == tuple(s["uuid"] for s in suggestions)
    assert ("selectionBehavior" in body) == bool(suggestions)
    assert ("overrideReasons" in body) == (case.indicator != "info")
    for reason in body.get("overrideReasons", []):
        assert reason["display"]


def test_the_delete_suggestion_names_the_draft_order() -> None:
    case = CASES["a recorded hold"]
    body = order_card(course(case), order_of(case), NOW, URL, uuids()).body
    [suggestion] = body["suggestions"]
    assert suggestion["isRecommended"] is True
    assert suggestion["actions"] == [
        {
            "type": "delete",
            "description": "Remove the draft order MedicationRequest/mr-1",
            "resourceId": "MedicationRequest/mr-1",
        }
    ]
    assert body["selectionBehavior"] == "at-most-one"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("dose above the tolerance", Regimen(1.0, "SC", "weekly")),
        ("D0 advice: IV twice weekly with a risk factor", Regimen(1.3, "SC", "weekly")),
        ("an unreadable dosage", Regimen(1.0, "SC", "weekly")),
    ],
)
def test_the_update_suggestion_is_the_draft_with_the_recommended_regimen(
    name: str, expected: Regimen
) -> None:
    case = CASES[name]
    order = order_of(case)
    body = order_card(course(case), order, NOW, URL, uuids()).body
    [suggestion] = body["suggestions"]
    [action] = suggestion["actions"]
    assert action["type"] == "update"
    updated = MedicationRequest.model_validate(action["resource"])  # valid FHIR R4
    assert read_regimen(updated, Settings(), "MR") == expected
    # the same order otherwise: id, patient, drug, start date
    before = order.request.model_dump(mode="json", exclude_none=True)
    after = updated.model_dump(mode="json", exclude_none=True)
    for key in ("id", "status", "intent", "subject", "medicationCodeableConcept", "requester"):
        assert after[key] == before[key]
    bounds = [
        r["dosageInstruction"][0]["timing"]["repeat"]["boundsPeriod"] for r in (after, before)
    ]
    assert bounds[0] == bounds[1] == {"start": "2026-10-02T08:00:00Z"}
    assert len(after["dosageInstruction"]) == 1


def test_a_draft_without_an_id_gets_no_suggestion() -> None:
    case = CASES["a recorded hold"]
    request = draft_order(order_id=None, patient="P-1")
    order = DraftOrder(None, request, read_regimen(request, Settings(), "MR"))
    card = order_card(course(case), order, NOW, URL, uuids())
    assert card.indicator == "critical"
    assert "suggestions" not in card.body
    assert card.suggestion_ids == ()


def test_the_unreadable_reason_is_in_the_detail() -> None:
    case = CASES["an unreadable dosage"]
    body = order_card(course(case), order_of(case), NOW, URL, uuids()).body
    assert "unit 'mg' is not mg/m2" in body["detail"]


def test_the_detail_shows_order_recommendation_and_clearance() -> None:
    case = CASES["dose above the tolerance"]
    detail = order_card(course(case), order_of(case), NOW, URL, uuids()).body["detail"]
    assert "**Order** MedicationRequest/mr-1: 1.06 mg/m2 weekly SC" in detail
    assert "1.0 mg/m2 weekly SC recommended" in detail
    assert "dose 1.06 mg/m2 is above 1.0 mg/m2 (tolerance 0.05)" in detail
    assert "**Infusion clearance now**: cleared" in detail
    assert "**Next neuropathy reassessment**: 2026-10-19 12:00 UTC" in detail


def test_a_long_summary_is_cut_below_140() -> None:
    case = CASES["dose above the tolerance"]
    long_rule = {**REDUCED, "rule": "D1" + "x" * 150}
    card = order_card(
        course(Case(**{**case.__dict__, "decisions": [long_rule]})),
        order_of(case),
        NOW,
        URL,
        uuids(),
    )
    assert len(card.body["summary"]) == 139
    assert card.body["summary"].endswith("…")


def test_now_decides_whether_a_reassessment_is_due() -> None:
    case = CASES["reassessment due now"]
    before = order_card(course(case), order_of(case), NOW - dt.timedelta(hours=5), URL, uuids())
    assert before.indicator == "info"
