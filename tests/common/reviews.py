"""Issue 16's decisions stored as the service would store them, for the screens' and the
report's tests written before the policy core makes them: the D9 review of a patient report
(`review_required`, `patient_reported_change`) and the D8 response check
(`immunotherapy_response`, or `review_required`, `immunotherapy_no_response`), each with its
`new` alert. Once the core folds them, these tests are to be checked against real folds."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from sqlmodel import col, select

from monitor.alerts.service import add_alerts
from monitor.services import Services
from monitor.storage.models import AlertRow, DecisionRow
from policies.decisions import decision_id, utc_text
from policies.pro_ctcae import composite_grade

D9 = {
    "action": "review_required",
    "reason": "patient_reported_change",
    "rule": "D9",
    "audience": ["nurse"],
}
D8_RESPONSE = {
    "action": "immunotherapy_response",
    "reason": None,
    "rule": "D8",
    "severity": "info",
    "audience": ["neurology", "physician"],
}
D8_NO_RESPONSE = {
    "action": "review_required",
    "reason": "immunotherapy_no_response",
    "rule": "D8",
    "severity": "urgent",
    "audience": ["neurology", "physician"],
}


def store_decision(
    services: Services,
    patient_id: str,
    trigger: str,
    at: dt.datetime,
    kind: dict[str, Any],
    *,
    severity: str | None = None,
    unit: str | None = None,
    message: str = "A clinician should review this.",
    raised_at: dt.datetime | None = None,
) -> str:
    """A current decision of `kind` (D9, D8_RESPONSE, D8_NO_RESPONSE) triggered by `trigger`
    at `at`, and its `new` alert raised at `raised_at` (default: `at`); its id. When the fold
    has already made that decision (the same id: after the core implements D8/D9), it is left
    as the fold made it."""
    policy = services.pack.label
    reason = kind["reason"]
    found = decision_id(
        policy=policy,
        patient_id=patient_id,
        rule=kind["rule"],
        action=kind["action"],
        trigger=trigger,
        at=at,
        due_at=None,
        reason=reason,
    )
    level = severity or kind.get("severity") or "warning"
    body = {
        "decision_id": found,
        "patient_id": patient_id,
        "at": utc_text(at),
        "trigger": trigger,
        "action": kind["action"],
        "severity": level,
        "audience": kind["audience"],
        "rule": kind["rule"],
        "policy": policy,
        "rationale": message,
        "sources": ["S11"],
        **({"reason": reason} if reason else {}),
    }
    with services.sessions.begin() as session:
        if session.execute(
            select(col(DecisionRow.id)).where(col(DecisionRow.decision_id) == found)
        ).first():
            return found
        session.add(
            DecisionRow(
                decision_id=found,
                patient_id=patient_id,
                at=at,
                action=kind["action"],
                severity=level,
                rule=kind["rule"],
                policy=policy,
                body=json.dumps(body),
                created_at=raised_at or at,
            )
        )
        add_alerts(
            session,
            [
                AlertRow(
                    decision_id=found,
                    kind="new",
                    action=kind["action"],
                    patient_id=patient_id,
                    unit=unit,
                    severity=level,
                    audience=json.dumps(kind["audience"]),
                    message=message,
                    created_at=raised_at or at,
                    clinical_at=at,
                )
            ],
        )
    return found


def patient_report(
    when: dt.datetime,
    patient: str,
    event_id: str,
    *,
    severity: int,
    interference: int,
    new_weakness: bool = False,
    comment: str | None = None,
) -> dict[str, Any]:
    """A patient report as the intake builds it (h16-common.md): the composite sensory grade,
    the answers, new weakness, the optional comment."""
    findings: dict[str, Any] = {
        "pro_ctcae": {
            "numbness_tingling_severity": severity,
            "numbness_tingling_interference": interference,
        },
        "new_weakness": new_weakness,
    }
    if comment is not None:
        findings["patient_comment"] = comment
    return {
        "event_id": event_id,
        "type": "assessment",
        "patient_id": patient,
        "occurred_at": when.isoformat(),
        "source": "patient",
        "grades": {"sensory": composite_grade(severity, interference)},
        "findings": findings,
    }
