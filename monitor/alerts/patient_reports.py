"""What the feed adds to a review raised by a patient report (D9, `patient_reported_change`):
what the patient answered, so the nurse reads it beside the alert.

Only the feed's own answers carry it (the list, the stream, an acknowledgement): webhooks and
FHIR keep the alert as `alert_view` gives it, so the patient's free text stays in the service.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlmodel import Session, col, select

from monitor.storage.models import DecisionRow, EventRow
from policies.decisions import utc_text

PATIENT_REPORTED = "patient_reported_change"


def with_patient_reports(
    session: Session, alerts: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The alerts, each with `patient_report`: the report behind a `patient_reported_change`
    review (when it was reported, the composite sensory grade, the PRO-CTCAE answers, new
    weakness, the patient's comment), else null. Two lookups for the whole page."""
    reviews = {a["decision_id"] for a in alerts if a["action"] == "review_required"}
    triggers: dict[str, str] = {}
    if reviews:
        for decision_id, body in session.execute(
            select(col(DecisionRow.decision_id), col(DecisionRow.body)).where(
                col(DecisionRow.decision_id).in_(reviews)
            )
        ):
            decision = json.loads(body)
            if decision.get("reason") == PATIENT_REPORTED:
                triggers[decision_id] = decision["trigger"]
    reports: dict[str, dict[str, Any]] = {}
    if triggers:
        for event_id, occurred_at, body in session.execute(
            select(col(EventRow.event_id), col(EventRow.occurred_at), col(EventRow.body)).where(
                col(EventRow.event_id).in_(set(triggers.values()))
            )
        ):
            reports[event_id] = _report(json.loads(body), utc_text(occurred_at))
    return [
        {**a, "patient_report": reports.get(triggers.get(a["decision_id"], ""))} for a in alerts
    ]


def _report(event: dict[str, Any], reported_at: str) -> dict[str, Any]:
    findings = event.get("findings") or {}
    answers = findings.get("pro_ctcae") or {}
    comment = findings.get("patient_comment")
    return {
        "event_id": event["event_id"],
        "reported_at": reported_at,
        "sensory_grade": (event.get("grades") or {}).get("sensory"),
        "numbness_tingling_severity": answers.get("numbness_tingling_severity"),
        "numbness_tingling_interference": answers.get("numbness_tingling_interference"),
        "new_weakness": bool(findings.get("new_weakness")),
        "comment": comment if isinstance(comment, str) else None,
    }
