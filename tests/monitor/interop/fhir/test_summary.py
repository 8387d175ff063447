"""The `$monitor-summary` builder (issue 6, "FHIR out"), pure: state, decisions, trigger events
and alerts in, a FHIR `Bundle` out. Table-driven over the cases the bundle must tell apart.

URLs and codes are written out here, not imported from `monitor.interop.fhir.summary`, so a wrong
constant in the builder fails these tests instead of agreeing with them. Every bundle is
serialised and parsed back with `fhir.resources` (the whole Bundle, and each resource with its
own model) before anything is checked: what is asserted is what a client would read.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Sequence
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.bundle import Bundle

from monitor.interop.fhir.summary import build_monitor_summary
from monitor.settings import FHIR_BASE

NOW = dt.datetime(2026, 10, 1, 12, 0, tzinfo=dt.UTC)
BASE = "https://monitor.example/api"
SD = f"{FHIR_BASE}/StructureDefinition/"
ACTION_SYSTEM = f"{FHIR_BASE}/CodeSystem/decision-action"
DECISION_IDS = f"{FHIR_BASE}/NamingSystem/decision-id"
EVENT_IDS = f"{FHIR_BASE}/NamingSystem/event-id"
UCUM = "http://unitsofmeasure.org"
FLAG_DETAIL = "http://hl7.org/fhir/StructureDefinition/flag-detail"
Json = dict[str, Any]


def decision(action: str, decision_id: str = "d-1", **fields: Any) -> Json:
    """A decision as the contract serves it; `fields` override or add action fields."""
    return {
        "decision_id": decision_id,
        "patient_id": "P1",
        "at": "2026-09-01T12:00:00Z",
        "trigger": "ev-1",
        "action": action,
        "severity": "info",
        "audience": ["nurse"],
        "rule": "D1",
        "policy": "default@1",
        "rationale": f"why {action}",
        "sources": ["S3", "S5"],
    } | fields


def alert(alert_id: int, decision_id: str = "d-1", **fields: Any) -> Json:
    """An alert as `monitor.alerts.service.alert_view` shows it, unacknowledged."""
    return {
        "id": alert_id,
        "kind": "new",
        "severity": "warning",
        "action": "reduce_dose",
        "audience": ["physician", "pharmacy"],
        "patient_id": "P1",
        "unit": "u7",
        "message": f"alert {alert_id} text",
        "decision_id": decision_id,
        "decision_url": f"/v1/patients/P1/decisions/{decision_id}",
        "escalates_alert_id": None,
        "created_at": "2026-09-01T12:00:05Z",
        "acknowledged": False,
        "ack": None,
    } | fields


def summary(
    *,
    state: Json | None = None,
    decisions: Sequence[Json] = (),
    events: dict[str, Json] | None = None,
    alerts: Sequence[Json] = (),
    patient_id: str = "P1",
) -> Json:
    """Build, serialise, and parse back: the bundle's JSON, each resource validated."""
    bundle = build_monitor_summary(
        patient_id=patient_id,
        state=state or {},
        decisions=list(decisions),
        trigger_events=events or {},
        alerts=list(alerts),
        base_url=BASE,
        now=NOW,
    )
    text = bundle.model_dump_json()
    parsed = Bundle.model_validate_json(text)
    assert parsed.type == "collection"
    payload: Json = json.loads(text)
    for entry in payload.get("entry", []):
        model = get_fhir_model_class(entry["resource"]["resourceType"])
        model.model_validate(entry["resource"])  # each resource with its own model
    return payload


def resources(payload: Json, resource_type: str) -> list[Json]:
    return [
        e["resource"]
        for e in payload.get("entry", [])
        if e["resource"]["resourceType"] == resource_type
    ]


def one(payload: Json, resource_type: str) -> Json:
    [found] = resources(payload, resource_type)
    return found


def full_url_of(payload: Json, resource_type: str, resource_id: str) -> str:
    [url] = [
        e["fullUrl"]
        for e in payload["entry"]
        if e["resource"]["resourceType"] == resource_type and e["resource"]["id"] == resource_id
    ]
    return str(url)


def extension_values(resource: Json, name: str) -> list[Any]:
    """The values of the service's extension `name`, whatever their value[x]."""
    found = []
    for ext in resource.get("extension", []):
        if ext["url"] == SD + name:
            [value] = [v for k, v in ext.items() if k.startswith("value")]
            found.append(value)
    return found


# --- the bundle -----------------------------------------------------------------------------


def test_no_decisions_no_alerts_is_an_empty_collection() -> None:
    payload = summary(state={"status": "none"})
    assert payload == {
        "resourceType": "Bundle",
        "type": "collection",
        "timestamp": "2026-10-01T12:00:00Z",
        "link": [{"relation": "self", "url": f"{BASE}/fhir/r4/Patient/P1/$monitor-summary"}],
    }


def test_full_urls_are_stable_uuid5_urns_and_unique() -> None:
    args: Json = {
        "state": {"next_reassessment_due": "2026-10-05T12:00:00Z"},
        "decisions": [
            decision("schedule_reassessment", "d-1", due_at="2026-10-05T12:00:00Z"),
            decision("reduce_dose", "d-2", dose_mg_m2=1.0, schedule="weekly", route="SC"),
        ],
        "alerts": [alert(1, "d-2"), alert(2, "d-1")],
    }
    first, again = summary(**args), summary(**args)
    urls = [e["fullUrl"] for e in first["entry"]]
    assert urls == [e["fullUrl"] for e in again["entry"]]
    assert len(set(urls)) == len(urls) == 5
    for url in urls:
        assert url.startswith("urn:uuid:")
        assert uuid.UUID(url.removeprefix("urn:uuid:")).version == 5
    # the DetectedIssue's fullUrl names its type and id: another decision id, another urn
    assert full_url_of(first, "DetectedIssue", "d-1") != full_url_of(first, "DetectedIssue", "d-2")


# --- DetectedIssue --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("severity", "expected"), [("urgent", "high"), ("warning", "moderate"), ("info", "low")]
)
def test_each_current_decision_is_a_detected_issue(severity: str, expected: str) -> None:
    body = decision("immune_workup", "d-abc", severity=severity, rule="D2", sources=["S1", "S2"])
    issue = one(summary(decisions=[body]), "DetectedIssue")
    assert issue["id"] == "d-abc"
    assert issue["identifier"] == [{"system": DECISION_IDS, "value": "d-abc"}]
    assert issue["status"] == "final"
    assert issue["severity"] == expected
    assert issue["patient"] == {"reference": "Patient/P1"}
    assert issue["identifiedDateTime"] == "2026-09-01T12:00:00Z"
    assert issue["detail"] == "why immune_workup"
    [coding] = issue["code"]["coding"]
    assert (coding["system"], coding["code"]) == (ACTION_SYSTEM, "immune_workup")
    assert coding["display"] == issue["code"]["text"] == "Immune-mediated neuropathy work-up"
    # the decision's provenance: rule, policy version, every source, the trigger, the audience
    assert extension_values(issue, "rule") == ["D2"]
    assert extension_values(issue, "policy") == ["default@1"]
    assert extension_values(issue, "source") == ["S1", "S2"]
    assert extension_values(issue, "trigger") == ["ev-1"]
    assert extension_values(issue, "audience") == ["nurse"]


def test_detected_issues_follow_the_decisions_order_and_carry_action_fields() -> None:
    later = decision(
        "escalate_immunotherapy",
        "d-b",
        at="2026-09-21T12:00:00Z",
        triggers=["motor_worsening", "two_grade_rise"],
    )
    watch = decision("coasting_watch_started", "d-a", window_end="2026-12-10T12:00:00Z")
    review = decision("review_required", "d-c", at="2026-09-01T11:00:00Z", reason="lowest")
    payload = summary(decisions=[later, watch, review])
    issues = resources(payload, "DetectedIssue")
    assert [i["id"] for i in issues] == ["d-c", "d-a", "d-b"]  # by `at`, then id
    by_id = {i["id"]: i for i in issues}
    assert extension_values(by_id["d-b"], "escalation-trigger") == [
        "motor_worsening",
        "two_grade_rise",
    ]
    assert extension_values(by_id["d-a"], "window-end") == ["2026-12-10T12:00:00Z"]
    assert extension_values(by_id["d-c"], "reason") == ["lowest"]
    assert extension_values(by_id["d-c"], "window-end") == []


@pytest.mark.parametrize(
    ("action", "fields", "text"),
    [
        ("reduce_dose", {"dose_mg_m2": 1.0, "schedule": "weekly", "route": "SC"},
         "bortezomib 1.0 mg/m2 weekly SC"),
        ("resume", {"dose_mg_m2": 0.7, "schedule": "twice_weekly", "route": "IV"},
         "bortezomib 0.7 mg/m2 twice-weekly IV"),
        ("advise_subcutaneous_weekly", {"schedule": "weekly", "route": "SC"},
         "bortezomib weekly SC"),
        ("hold", {}, "bortezomib on hold"),
        ("discontinue", {}, "bortezomib discontinued"),
        ("immune_workup", {}, None),
        ("schedule_reassessment", {"due_at": "2026-10-05T12:00:00Z"}, None),
        ("coasting_worsening", {}, None),
    ],
)  # fmt: skip
def test_dose_actions_have_a_mitigation(action: str, fields: Json, text: str | None) -> None:
    issue = one(summary(decisions=[decision(action, **fields)]), "DetectedIssue")
    if text is None:
        assert "mitigation" not in issue
        return
    [mitigation] = issue["mitigation"]
    assert mitigation["action"]["text"] == text
    assert mitigation["action"]["coding"] == issue["code"]["coding"]
    assert mitigation["date"] == "2026-09-01T12:00:00Z"
    if "dose_mg_m2" in fields:
        [dose] = extension_values(issue, "dose")
        assert dose == {
            "value": fields["dose_mg_m2"],
            "unit": "mg/m2",
            "system": UCUM,
            "code": "mg/m2",
        }
    else:
        assert extension_values(issue, "dose") == []
    assert extension_values(issue, "route") == ([fields["route"]] if "route" in fields else [])


def logical(resource_type: str | None, event_id: str) -> Json:
    ref: Json = {"identifier": {"system": EVENT_IDS, "value": event_id}}
    return ref | ({"type": resource_type} if resource_type else {})


@pytest.mark.parametrize(
    ("trigger", "event", "detail"),
    [
        # came in as FHIR: the source resources themselves, relative or absolute
        ("ev-1", {"type": "assessment", "extra": {"fhir_source": ["Observation/obs-1"]}},
         [{"reference": "Observation/obs-1"}]),
        ("ev-1", {"type": "assessment",
                  "extra": {"fhir_source": ["Observation/o1", "https://ehr.example/Observation/o2"]}},
         [{"reference": "Observation/o1"}, {"reference": "https://ehr.example/Observation/o2"}]),
        ("ev-1", {"type": "enrollment", "extra": {"fhir_source": ["MedicationRequest/mr-9"]}},
         [{"reference": "MedicationRequest/mr-9"}]),
        # came in as contract JSON: the event by its id, typed as the resource it stands for
        ("ev-1", {"type": "assessment"}, [logical("Observation", "ev-1")]),
        ("ev-1", {"type": "assessment", "extra": {"site": "x"}}, [logical("Observation", "ev-1")]),
        ("ev-1", {"type": "assessment", "extra": {"fhir_source": []}},
         [logical("Observation", "ev-1")]),
        ("ev-1", {"type": "enrollment"}, [logical("MedicationRequest", "ev-1")]),
        ("ev-1", {"type": "treatment_change"}, [logical("MedicationRequest", "ev-1")]),
        ("ev-1", {"type": "administration"}, [logical("MedicationAdministration", "ev-1")]),
        ("ev-1", {"type": "immunotherapy"}, [logical("Procedure", "ev-1")]),
        ("ev-1", {"type": "course_end"}, [logical(None, "ev-1")]),
        ("ev-1", None, [logical(None, "ev-1")]),  # the event's body was not found
        # a timer: nothing to point to
        ("timer:reassessment_overdue", None, None),
    ],
)  # fmt: skip
def test_evidence_points_to_the_trigger(trigger: str, event: Json | None, detail: Any) -> None:
    body = decision("reduce_dose", trigger=trigger, dose_mg_m2=1.0)
    events = {trigger: {"event_id": trigger, "patient_id": "P1"} | event} if event else {}
    issue = one(summary(decisions=[body], events=events), "DetectedIssue")
    if detail is None:
        assert "evidence" not in issue
    else:
        assert issue["evidence"] == [{"detail": detail}]


def test_a_patient_id_fhir_does_not_allow_is_referenced_by_identifier() -> None:
    payload = summary(patient_id="P_1", decisions=[decision("hold")])
    assert one(payload, "DetectedIssue")["patient"] == {
        "type": "Patient",
        "identifier": {"system": f"{FHIR_BASE}/NamingSystem/patient-id", "value": "P_1"},
    }


# --- Task -----------------------------------------------------------------------------------

SCHEDULED = decision("schedule_reassessment", "d-s", due_at="2026-10-05T12:00:00Z")
EARLIER = decision(
    "schedule_reassessment", "d-s0", at="2026-08-01T12:00:00Z", due_at="2026-09-28T12:00:00Z"
)
MISSED = decision(
    "reassessment_overdue",
    "d-o",
    at="2026-09-30T12:00:00Z",
    trigger="timer:reassessment_overdue",
    severity="warning",
    due_at="2026-09-28T12:00:00Z",
)


@pytest.mark.parametrize(
    ("state", "decisions", "due", "status", "focus", "reason"),
    [
        # pending, not yet due
        ({"next_reassessment_due": "2026-10-05T12:00:00Z"}, [EARLIER, SCHEDULED],
         "2026-10-05T12:00:00Z", "scheduled", "d-s", None),
        # due time passed, grace period running: due, not overdue
        ({"next_reassessment_due": "2026-09-28T12:00:00Z"}, [EARLIER],
         "2026-09-28T12:00:00Z", "due", "d-s0", None),
        # overdue: owed now, the overdue decision is the reason
        ({"next_reassessment_due": None, "reassessment_overdue_since": "2026-09-28T12:00:00Z"},
         [EARLIER, MISSED], "2026-09-28T12:00:00Z", "overdue", "d-s0", "d-o"),
        # overdue and a later one pending (a stop scheduled the watch's first): the overdue one
        ({"next_reassessment_due": "2026-10-05T12:00:00Z",
          "reassessment_overdue_since": "2026-09-28T12:00:00Z"},
         [EARLIER, MISSED, SCHEDULED], "2026-09-28T12:00:00Z", "overdue", "d-s0", "d-o"),
        # a due time without its decision (not expected): the Task still says when
        ({"next_reassessment_due": "2026-10-05T12:00:00Z"}, [],
         "2026-10-05T12:00:00Z", "scheduled", None, None),
    ],
)  # fmt: skip
def test_the_outstanding_reassessment_is_a_task(
    state: Json,
    decisions: list[Json],
    due: str,
    status: str,
    focus: str | None,
    reason: str | None,
) -> None:
    payload = summary(state=state, decisions=decisions)
    task = one(payload, "Task")
    assert (task["status"], task["intent"]) == ("requested", "order")
    assert task["code"]["coding"][0]["system"] == f"{FHIR_BASE}/CodeSystem/task"
    assert task["code"]["coding"][0]["code"] == "neuropathy-reassessment"
    assert task["for"] == {"reference": "Patient/P1"}
    assert task["restriction"] == {"period": {"end": due}}
    [business] = task["businessStatus"]["coding"]
    assert business["system"] == f"{FHIR_BASE}/CodeSystem/task-business-status"
    assert business["code"] == status
    if focus is None:
        assert "focus" not in task
        assert "authoredOn" not in task
    else:
        assert task["focus"] == {
            "reference": full_url_of(payload, "DetectedIssue", focus),
            "type": "DetectedIssue",
        }
        authored = next(d["at"] for d in decisions if d["decision_id"] == focus)
        assert task["authoredOn"] == authored
    if reason is None:
        assert "reasonReference" not in task
    else:
        assert task["reasonReference"]["reference"] == full_url_of(payload, "DetectedIssue", reason)


@pytest.mark.parametrize(
    "state",
    [
        {},
        {"status": "ended", "courses_ended": 1},
        {"status": "active", "next_reassessment_due": None, "reassessment_overdue_since": None},
    ],
)
def test_no_outstanding_reassessment_no_task(state: Json) -> None:
    assert resources(summary(state=state, decisions=[EARLIER]), "Task") == []


# --- Flags ----------------------------------------------------------------------------------

WATCH_ACTIVE = {
    "state": "active",
    "stopped_at": "2026-09-11T12:00:00Z",
    "window_end": "2026-12-10T12:00:00Z",
}
WATCH_STARTED = decision(
    "coasting_watch_started", "d-w", at="2026-09-11T12:00:00Z", window_end="2026-12-10T12:00:00Z"
)
ESCALATED = decision("escalate_immunotherapy", "d-e", at="2026-09-21T12:00:00Z", severity="urgent")
UNANSWERED = decision(
    "escalation_unanswered",
    "d-u",
    at="2026-09-28T12:00:00Z",
    trigger="timer:escalation_unanswered",
    severity="urgent",
)
OPEN = {"escalated_at": "2026-09-21T12:00:00Z", "answered": False}


@pytest.mark.parametrize(
    ("state", "decisions", "expected"),
    [
        ({"watch": WATCH_ACTIVE}, [WATCH_STARTED],
         [("coasting-watch", "2026-09-11T12:00:00Z", "2026-12-10T12:00:00Z", "d-w")]),
        ({"watch": WATCH_ACTIVE | {"state": "closed"}}, [WATCH_STARTED], []),
        ({"watch": {"state": "none", "stopped_at": None, "window_end": None}}, [], []),
        ({"escalation": OPEN}, [ESCALATED],
         [("immunotherapy-escalation", "2026-09-21T12:00:00Z", None, "d-e")]),
        # unanswered past the deadline: the flag points to the later decision
        ({"escalation": OPEN}, [ESCALATED, UNANSWERED],
         [("immunotherapy-escalation", "2026-09-21T12:00:00Z", None, "d-u")]),
        # therapy recorded: the escalation is answered, its decisions stay, no flag
        ({"escalation": OPEN | {"answered": True}}, [ESCALATED], []),
        ({"escalation": {"escalated_at": None, "answered": False}}, [], []),
        ({"watch": WATCH_ACTIVE, "escalation": OPEN}, [WATCH_STARTED, ESCALATED, UNANSWERED],
         [("coasting-watch", "2026-09-11T12:00:00Z", "2026-12-10T12:00:00Z", "d-w"),
          ("immunotherapy-escalation", "2026-09-21T12:00:00Z", None, "d-u")]),
    ],
)  # fmt: skip
def test_flags_for_an_active_watch_and_an_open_escalation(
    state: Json, decisions: list[Json], expected: list[tuple[str, str, str | None, str]]
) -> None:
    payload = summary(state=state, decisions=decisions)
    flags = resources(payload, "Flag")
    found = []
    for flag in flags:
        assert flag["status"] == "active"
        assert flag["subject"] == {"reference": "Patient/P1"}
        assert flag["code"]["text"]
        [coding] = flag["code"]["coding"]
        assert coding["system"] == f"{FHIR_BASE}/CodeSystem/flag"
        [detail] = [e for e in flag["extension"] if e["url"] == FLAG_DETAIL]
        issue = next(
            d["decision_id"]
            for d in decisions
            if full_url_of(payload, "DetectedIssue", d["decision_id"])
            == detail["valueReference"]["reference"]
        )
        found.append((coding["code"], flag["period"]["start"], flag["period"].get("end"), issue))
    assert found == expected


# --- Communication --------------------------------------------------------------------------

ACK = {
    "by": "nurse-7",
    "token": "ward-tablet",
    "at": "2026-09-01T12:30:00Z",
    "note": "called the physician",
    "recorded_at": "2026-09-01T12:31:00Z",
}


@pytest.mark.parametrize(
    ("severity", "priority"), [("urgent", "asap"), ("warning", "urgent"), ("info", "routine")]
)
def test_each_alert_is_a_communication(severity: str, priority: str) -> None:
    body = decision("reduce_dose", "d-1", dose_mg_m2=1.0)
    payload = summary(decisions=[body], alerts=[alert(7, "d-1", severity=severity)])
    message = one(payload, "Communication")
    assert message["id"] == "alert-7"
    assert message["identifier"] == [{"system": f"{FHIR_BASE}/NamingSystem/alert-id", "value": "7"}]
    assert message["status"] == "completed"
    assert message["priority"] == priority
    assert message["subject"] == {"reference": "Patient/P1"}
    assert message["sent"] == "2026-09-01T12:00:05Z"
    assert message["payload"] == [{"contentString": "alert 7 text"}]
    assert message["about"] == [
        {"reference": full_url_of(payload, "DetectedIssue", "d-1"), "type": "DetectedIssue"}
    ]
    [kind] = message["category"][0]["coding"]
    assert (kind["system"], kind["code"]) == (f"{FHIR_BASE}/CodeSystem/alert-kind", "new")
    assert message["topic"]["coding"][0]["code"] == "reduce_dose"
    assert message["recipient"] == [{"display": "physician"}, {"display": "pharmacy"}]
    assert "received" not in message
    assert "extension" not in message


def test_an_acknowledged_alert_records_who_when_and_the_note() -> None:
    payload = summary(
        decisions=[decision("hold")],
        alerts=[alert(1, ack=ACK, acknowledged=True), alert(2, ack=ACK | {"note": None})],
    )
    first, second = resources(payload, "Communication")
    assert first["received"] == "2026-09-01T12:30:00Z"
    [ack] = first["extension"]
    assert ack["url"] == SD + "acknowledgement"
    assert ack["extension"] == [
        {"url": "by", "valueString": "nurse-7"},
        {"url": "token", "valueString": "ward-tablet"},
        {"url": "at", "valueDateTime": "2026-09-01T12:30:00Z"},
        {"url": "note", "valueString": "called the physician"},
        {"url": "recorded-at", "valueDateTime": "2026-09-01T12:31:00Z"},
    ]
    assert [e["url"] for e in second["extension"][0]["extension"]] == [
        "by",
        "token",
        "at",
        "recorded-at",
    ]


def test_alerts_of_superseded_decisions_and_escalations() -> None:
    """Every alert of the patient is there, oldest first: a correction's decision is no longer
    current (a logical reference by its id); an escalation names the alert it escalates."""
    payload = summary(
        decisions=[decision("discontinue", "d-cur", severity="urgent")],
        alerts=[
            alert(9, "d-cur", kind="escalation", severity="urgent", escalates_alert_id=3),
            alert(3, "d-cur", severity="urgent"),
            alert(4, "d-old", kind="correction"),
        ],
    )
    messages = resources(payload, "Communication")
    assert [m["id"] for m in messages] == ["alert-3", "alert-4", "alert-9"]
    original, correction, escalation = messages
    assert correction["about"] == [
        {"type": "DetectedIssue", "identifier": {"system": DECISION_IDS, "value": "d-old"}}
    ]
    assert correction["category"][0]["coding"][0]["code"] == "correction"
    assert escalation["category"][0]["coding"][0]["code"] == "escalation"
    [escalates] = escalation["extension"]
    assert escalates["url"] == SD + "escalates-alert"
    assert escalates["valueReference"] == {
        "reference": full_url_of(payload, "Communication", original["id"]),
        "type": "Communication",
    }
    assert "extension" not in original


def test_entries_come_in_a_fixed_order() -> None:
    """DetectedIssues, then the Task, then Flags, then Communications."""
    payload = summary(
        state={
            "next_reassessment_due": "2026-10-05T12:00:00Z",
            "watch": WATCH_ACTIVE,
            "escalation": OPEN,
        },
        decisions=[SCHEDULED, WATCH_STARTED, ESCALATED],
        alerts=[alert(1, "d-e"), alert(2, "d-w")],
    )
    assert [e["resource"]["resourceType"] for e in payload["entry"]] == [
        "DetectedIssue",
        "DetectedIssue",
        "DetectedIssue",
        "Task",
        "Flag",
        "Flag",
        "Communication",
        "Communication",
    ]
