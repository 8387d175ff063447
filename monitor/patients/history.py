"""A patient's chart history (pure over the stored rows): grades per domain over time, doses
given, and the dose decisions, for the patient page's charts; the patient reports among the
grades, the immunotherapy episodes with their D8 response check, and the response measures.

A dose given in mg shows `dose_mg` as given and, when the body surface area is known (the
administration's `bsa_m2`, else the latest enrolment's, given or Mosteller's), `dose_mg_m2`
converted as D6 converts it; without one `dose_mg_m2` is null."""

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from monitor.reports.patient_reports import immunotherapy_episodes
from policies.decisions import from_utc_text, utc_text
from policies.events import (
    EVENT_ADAPTER,
    Administration,
    Assessment,
    Enrollment,
    Immunotherapy,
)

DOSE_ACTIONS = ("reduce_dose", "hold", "resume", "discontinue")
RESPONSE_MEASURES = ("mrc_sum_score", "incat", "rankin")


def history(
    patient_id: str,
    bodies: Sequence[tuple[str, str]],
    decisions: list[str],
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    grades: list[dict[str, Any]] = []
    doses: list[dict[str, Any]] = []
    measures: list[dict[str, Any]] = []
    unreadable: list[str] = []
    therapies: list[Immunotherapy] = []
    gradings: list[dt.datetime] = []  # clinician and nurse assessments (a D8 baseline)
    course_bsa: float | None = None  # the latest enrolment's body surface area
    for event_id, body in bodies:
        try:
            event = EVENT_ADAPTER.validate_json(body)
        except ValidationError:  # stored before a bound existed: its dead letter names it
            unreadable.append(event_id)
            continue
        at = utc_text(event.occurred_at)
        if isinstance(event, Assessment):
            grades.append(_grade_point(event, at))
            if event.source != "patient":
                gradings.append(event.occurred_at)
                measure = _measures(event)
                if measure:
                    measures.append({"at": at, **measure})
        elif isinstance(event, Enrollment):
            course_bsa = event.body_surface_area()
            doses.append({"at": at, "dose_mg_m2": event.dose_mg_m2, "source": "enrollment"})
        elif isinstance(event, Administration):
            point: dict[str, Any] = {
                "at": at,
                "dose_mg_m2": event.dose_per_m2(course_bsa),
                "source": "given",
            }
            if event.dose_mg is not None:
                point["dose_mg"] = event.dose_mg
            doses.append(point)
        elif isinstance(event, Immunotherapy):
            therapies.append(event)
    parsed = [json.loads(body) for body in decisions]
    dose_decisions = [
        {
            "at": decision["at"],
            "action": decision["action"],
            "dose_mg_m2": decision.get("dose_mg_m2"),
            "rule": decision["rule"],
        }
        for decision in parsed
        if decision["action"] in DOSE_ACTIONS
    ]
    return {
        "patient_id": patient_id,
        "grades": grades,
        "doses": doses,
        "dose_decisions": dose_decisions,
        "immunotherapy": _episodes(therapies, gradings, parsed, now),
        "response_measures": measures,
        "unreadable_events": unreadable,
    }


def _grade_point(event: Assessment, at: str) -> dict[str, Any]:
    """A grading; a patient report says so (`source: patient`) with what the patient answered
    (the PRO-CTCAE items, new weakness) beside the composite grade it gave."""
    point = {"at": at, "cycle": event.cycle, **event.grades.model_dump(exclude_none=True)}
    if event.source == "patient":
        findings = event.findings
        answers = findings.pro_ctcae if findings is not None else None
        point["source"] = "patient"
        point["new_weakness"] = bool(findings is not None and findings.new_weakness)
        point["pro_ctcae"] = answers.model_dump(exclude_none=True) if answers else None
    return point


def _measures(event: Assessment) -> dict[str, int]:
    """The immunotherapy response measures (V10) an assessment's findings carry."""
    if event.findings is None:
        return {}
    values = {name: getattr(event.findings, name) for name in RESPONSE_MEASURES}
    return {name: value for name, value in values.items() if value is not None}


def is_response_check(decision: dict[str, Any]) -> bool:
    """A D8 outcome: `immunotherapy_response`, or the review of no response."""
    return decision["action"] == "immunotherapy_response" or (
        decision["action"] == "review_required"
        and decision.get("reason") == "immunotherapy_no_response"
    )


def _episodes(
    therapies: Sequence[Immunotherapy],
    gradings: Sequence[dt.datetime],
    decisions: Sequence[dict[str, Any]],
    now: dt.datetime | None,
) -> list[dict[str, Any]]:
    """The immunotherapy episodes (V10) and the outcome of each one's response check: the D8
    decision made at or after its check date (`response`, `no_response`), else `pending` until
    the check date, `not_done` after it; `no_baseline` when no clinician or nurse grading came
    before the therapy (D8 has nothing to compare with)."""
    checks = sorted(
        (d for d in decisions if is_response_check(d)), key=lambda d: from_utc_text(d["at"])
    )
    used: set[str] = set()
    episodes: list[dict[str, Any]] = []
    for found in immunotherapy_episodes((t.occurred_at, t.therapy) for t in therapies):
        episode: dict[str, Any] = {
            "therapy": found.therapy,
            "started_at": utc_text(found.start),
            "last_at": utc_text(found.last),
            "events": found.events,
            "check_due_at": utc_text(found.check_due),
            "decision_id": None,
            "checked_at": None,
        }
        check = next(
            (
                d
                for d in checks
                if d["decision_id"] not in used and from_utc_text(d["at"]) >= found.check_due
            ),
            None,
        )
        if check is not None:
            used.add(check["decision_id"])
            episode["outcome"] = (
                "response" if check["action"] == "immunotherapy_response" else "no_response"
            )
            episode["decision_id"] = check["decision_id"]
            episode["checked_at"] = utc_text(from_utc_text(check["at"]))
        elif not any(at < found.start for at in gradings):
            episode["outcome"] = "no_baseline"
        elif now is not None and now >= found.check_due:
            episode["outcome"] = "not_done"
        else:
            episode["outcome"] = "pending"
        episodes.append(episode)
    return episodes
