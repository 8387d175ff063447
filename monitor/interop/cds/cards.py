"""The bortezomib order check's cards (CDS Hooks 2.0), from what the monitor knows.

Pure: the course state, its clearance, the current decisions and one draft order in; one card
out (with what the service stores of it). No database, no clock, no randomness but the uuids
the caller hands in.

One card per draft bortezomib order; its indicator is that of its most serious finding:

- critical, `discontinued` / `held`: the course is discontinued or on hold. Suggestion: delete
  the draft order.
- warning, `above`: the order's dose exceeds the recommended dose by more than the pack's
  tolerance, or its schedule (twice weekly vs weekly) or route (IV vs SC) is more intensive.
  Suggestion: update the order to the recommended dose, schedule and route.
- warning, `unreadable`: the order's dosage cannot be read (e.g. a dose in mg, not mg/m2).
  Suggestion: update the order to the recommended regimen.
- warning, `completed`: the course on record was completed; this order starts another.
- warning, `reassessment`: the pending neuropathy reassessment is due or overdue.
- warning, `processing`: recent events are not folded yet: the advice may be out of date.
- info, `in_line`: an active course, and none of the above.
- info, `no_course`: no active course on record (unknown patient, none, or ended).

The card names the rule and rationale of the decision it rests on (the latest current decision
of the course that sets the dose, holds or stops it, or schedules the reassessment); where no
decision does (a recorded hold, a regimen never changed), the policy rule that applies.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from fhir.resources.R4B.medicationrequest import MedicationRequest

from monitor.interop.fhir.medication import Regimen, Route, Schedule, regimen_dosage
from monitor.settings import FHIR_BASE
from policies.clearance import CourseSnapshot
from policies.decisions import from_utc_text, utc_minute

Indicator = Literal["info", "warning", "critical"]
INDICATORS: tuple[Indicator, ...] = ("critical", "warning", "info")  # most serious first
SUMMARY_MAX = 139  # the spec: a summary of fewer than 140 characters
OVERRIDE_SYSTEM = f"{FHIR_BASE}/CodeSystem/cds-override-reason"
OVERRIDE_REASONS: dict[str, str] = {
    "clinical-judgement": "Clinical judgement: the benefit outweighs the neuropathy risk",
    "assessment-not-recorded": "A newer neuropathy assessment is not yet in the monitor",
    "record-out-of-date": "The monitor's treatment record is out of date",
    "patient-preference": "Patient preference after discussing the risk",
}
DOSING_ACTIONS = ("reduce_dose", "resume", "advise_subcutaneous_weekly")
INTENSITY_SCHEDULE = {"weekly": 0, "twice_weekly": 1}
INTENSITY_ROUTE = {"SC": 0, "IV": 1}


@dataclass(frozen=True, slots=True)
class CourseView:
    """What the check reads of one patient: `state` is the stored course state (as
    `GET /v1/patients/{id}` serves it), `clearance` what `monitor.app.clearance` says of it,
    `decisions` the current decisions (bodies as CONTRACT.md), `known` whether any event of
    the patient is on file."""

    patient_id: str
    known: bool
    state: Mapping[str, Any]
    clearance: Mapping[str, Any]
    pending_events: int
    decisions: Sequence[Mapping[str, Any]]
    policy: str  # the pack's label, e.g. default@1
    tolerance_mg_m2: float  # the pack's dose_tolerance_mg_m2 (the adherence check's too)


@dataclass(frozen=True, slots=True)
class DraftOrder:
    """A draft bortezomib MedicationRequest: its `Type/id` (None without an id), the resource,
    and its regimen, or why its dosage could not be read."""

    reference: str | None
    request: MedicationRequest
    regimen: Regimen | None
    problems: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class IssuedCard:
    """The card's JSON and what the service records of it (to match feedback, to report)."""

    body: dict[str, Any]
    uuid: str
    indicator: Indicator
    rule: str
    policy: str
    decision_id: str | None
    order_ref: str | None
    suggestion_ids: tuple[str, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class Basis:
    """The rule a finding rests on: a current decision, or the policy rule that applies."""

    rule: str
    policy: str
    rationale: str
    decision_id: str | None = None

    def line(self) -> str:
        where = f"rule {self.rule} ({self.policy})"
        if self.decision_id:
            where += f", decision `{self.decision_id}`"
        return f"{where}: {self.rationale}"


@dataclass(frozen=True, slots=True)
class Finding:
    indicator: Indicator
    name: str
    summary: str
    text: str
    basis: Basis


def order_card(
    course: CourseView,
    order: DraftOrder,
    now: dt.datetime,
    patient_url: str,
    new_uuid: Callable[[], str],
) -> IssuedCard:
    """The card for one draft bortezomib order of this patient."""
    state = course.state
    status = str(state.get("status") or "none")
    decisions = _course_decisions(course.decisions, state)
    recommended, regimen_basis = _recommended(course, decisions)
    findings = _findings(course, order, status, decisions, recommended, regimen_basis, now)
    findings.sort(key=lambda f: INDICATORS.index(f.indicator))
    lead = findings[0]
    card_uuid = new_uuid()

    suggestions: list[dict[str, Any]] = []
    if lead.indicator == "critical" and order.reference is not None:
        suggestions.append(_delete_suggestion(order.reference, new_uuid()))
    elif (
        any(f.name in ("above", "unreadable") for f in findings)
        and order.reference is not None
        and _complete(recommended)
    ):
        suggestions.append(_update_suggestion(order, recommended, new_uuid()))

    body: dict[str, Any] = {
        "uuid": card_uuid,
        "summary": _short(lead.summary),
        "indicator": lead.indicator,
        "detail": _detail(findings, order, recommended, course),
        "source": {
            "label": f"bipn-monitor {lead.basis.policy}, rule {lead.basis.rule}",
            "topic": {
                "system": f"{FHIR_BASE}/CodeSystem/cds-topic",
                "code": "bortezomib-neuropathy",
                "display": "Bortezomib-induced peripheral neuropathy",
            },
        },
        "links": [
            {
                "label": "Neuropathy course and decisions (bipn-monitor)",
                "url": patient_url,
                "type": "absolute",
            }
        ],
    }
    if suggestions:
        body["suggestions"] = suggestions
        body["selectionBehavior"] = "at-most-one"
    if lead.indicator != "info":
        body["overrideReasons"] = [
            {"system": OVERRIDE_SYSTEM, "code": code, "display": display}
            for code, display in OVERRIDE_REASONS.items()
        ]
    return IssuedCard(
        body=body,
        uuid=card_uuid,
        indicator=lead.indicator,
        rule=lead.basis.rule,
        policy=lead.basis.policy,
        decision_id=lead.basis.decision_id,
        order_ref=order.reference,
        suggestion_ids=tuple(s["uuid"] for s in suggestions),
    )


# --- findings ---------------------------------------------------------------------------------


def _findings(
    course: CourseView,
    order: DraftOrder,
    status: str,
    decisions: Sequence[Mapping[str, Any]],
    recommended: Regimen,
    regimen_basis: Basis,
    now: dt.datetime,
) -> list[Finding]:
    found: list[Finding] = []
    policy = course.policy
    if status == "discontinued":
        basis = _basis(decisions, ("discontinue", "coasting_watch_started"), policy) or Basis(
            "D6", policy, "Bortezomib was discontinued (a recorded treatment change)."
        )
        found.append(
            Finding(
                "critical",
                "discontinued",
                f"Bortezomib was discontinued (rule {basis.rule}): do not sign this order",
                "The course on record is **discontinued**: no further bortezomib is to be given. "
                "Cancel this order, or record why it is restarted.",
                basis,
            )
        )
    elif status == "held":
        basis = _basis(decisions, ("hold",), policy) or Basis(
            "D6",
            policy,
            "A hold is on record for this course (a recorded treatment change): a dose "
            "during a hold is an adherence deviation.",
        )
        found.append(
            Finding(
                "critical",
                "held",
                f"Bortezomib is on hold (rule {basis.rule}): do not sign this order",
                "The course on record is **on hold** until the neuropathy improves. Cancel this "
                "order; the monitor advises when to resume.",
                basis,
            )
        )
    elif status == "completed":
        basis = _basis(decisions, ("coasting_watch_started",), policy) or Basis(
            "D3", policy, "The course was completed: the coasting watch follows it."
        )
        found.append(
            Finding(
                "warning",
                "completed",
                "The last bortezomib course was completed: this order starts another "
                "(grade neuropathy first)",
                "The course on record was **completed**. Neuropathy can keep worsening for "
                "weeks after the drug stops (coasting): grade it before starting again.",
                basis,
            )
        )
    elif status == "active":
        found.extend(_regimen_findings(order, recommended, regimen_basis, course.tolerance_mg_m2))
        due = state_due(course.state)
        if due is not None and due <= now:
            overdue = course.state.get("reassessment_overdue_since") is not None
            basis = (
                _basis(decisions, ("reassessment_overdue",), policy)
                if overdue
                else _basis(decisions, ("schedule_reassessment",), policy)
            ) or Basis("D5", policy, "A neuropathy reassessment is due before each cycle.")
            word = "overdue since" if overdue else "due"
            found.append(
                Finding(
                    "warning",
                    "reassessment",
                    f"Neuropathy reassessment {word} {due:%Y-%m-%d}: grade it before the next "
                    f"dose (rule {basis.rule})",
                    f"The neuropathy reassessment {word} {utc_minute(due)} is not recorded: "
                    "grade neuropathy (CTCAE v5) before the next dose.",
                    basis,
                )
            )
    else:  # none, ended, or a patient the monitor has never heard of
        found.append(
            Finding(
                "info",
                "no_course",
                "No bortezomib course on record: the neuropathy monitor follows it once active",
                (
                    "The monitor has no active bortezomib course for this patient"
                    + (" (its last course ended)" if status == "ended" else "")
                    if course.known
                    else "The monitor has no record of this patient yet"
                )
                + ". Once the order is active it is enrolled, and the monitor checks the "
                "enrolment rules then.",
                Basis(
                    "D7",
                    policy,
                    "Without an active course there is no recommendation to compare with.",
                ),
            )
        )
    if course.pending_events:
        found.append(
            Finding(
                "warning",
                "processing",
                "Recent events are still being processed: check this order again shortly",
                f"{course.pending_events} recent event(s) of this patient are not processed "
                "yet: this advice may change in a moment.",
                found[0].basis if found else regimen_basis,
            )
        )
    if not any(f.indicator != "info" for f in found) and status == "active":
        found.append(
            Finding(
                "info",
                "in_line",
                f"Bortezomib order in line with the neuropathy monitor: "
                f"{regimen_text(recommended)} (rule {regimen_basis.rule})",
                "The order does not exceed the recommended regimen.",
                regimen_basis,
            )
        )
    return found


def _regimen_findings(
    order: DraftOrder, recommended: Regimen, basis: Basis, tolerance: float
) -> list[Finding]:
    if order.regimen is None:
        problems = "; ".join(order.problems) or "no dosage could be read"
        return [
            Finding(
                "warning",
                "unreadable",
                "Bortezomib order not checked: its dosage could not be read "
                f"(recommended {regimen_text(recommended)})",
                f"The order's dosage could not be compared with the recommendation: {problems}. "
                "The monitor works in mg/m2, weekly or twice weekly, IV or SC.",
                basis,
            )
        ]
    above = _above(order.regimen, recommended, tolerance)
    if not above:
        return []
    return [
        Finding(
            "warning",
            "above",
            f"Order above the recommendation: {regimen_text(order.regimen)} ordered, "
            f"{regimen_text(recommended)} recommended (rule {basis.rule})",
            "The order exceeds the recommended regimen: " + "; ".join(above) + ".",
            basis,
        )
    ]


def _above(ordered: Regimen, recommended: Regimen, tolerance: float) -> list[str]:
    """How the order is more intensive than the recommendation (its parts it gives)."""
    reasons = []
    if (
        ordered.dose_mg_m2 is not None
        and recommended.dose_mg_m2 is not None
        and ordered.dose_mg_m2 > recommended.dose_mg_m2 + tolerance
    ):
        reasons.append(
            f"dose {_mg(ordered.dose_mg_m2)} mg/m2 is above {_mg(recommended.dose_mg_m2)} mg/m2 "
            f"(tolerance {tolerance:g})"
        )
    if (
        ordered.schedule is not None
        and recommended.schedule is not None
        and INTENSITY_SCHEDULE[ordered.schedule] > INTENSITY_SCHEDULE[recommended.schedule]
    ):
        reasons.append(
            f"{_schedule(ordered.schedule)} instead of {_schedule(recommended.schedule)}"
        )
    if (
        ordered.route is not None
        and recommended.route is not None
        and INTENSITY_ROUTE[ordered.route] > INTENSITY_ROUTE[recommended.route]
    ):
        reasons.append(f"{ordered.route} instead of {recommended.route}")
    return reasons


# --- the recommendation -----------------------------------------------------------------------


def _recommended(
    course: CourseView, decisions: Sequence[Mapping[str, Any]]
) -> tuple[Regimen, Basis]:
    """The regimen on record, with a current D0 advice (weekly SC) applied, and its basis."""
    state = course.state
    dose = _number(state.get("dose_mg_m2"))
    schedule = _schedule_of(state.get("schedule"))
    route = _route_of(state.get("route"))
    dosing = _latest(decisions, DOSING_ACTIONS)
    if dosing is None:
        return Regimen(dose, route, schedule), Basis(
            "D6",
            course.policy,
            "No dose change has been decided for this course: the regimen on record is what "
            "doses are compared with.",
        )
    if dosing.get("action") == "advise_subcutaneous_weekly":
        schedule = _schedule_of(dosing.get("schedule")) or schedule
        route = _route_of(dosing.get("route")) or route
    return Regimen(dose, route, schedule), _decision_basis(dosing, course.policy)


def _complete(regimen: Regimen) -> bool:
    return None not in (regimen.dose_mg_m2, regimen.route, regimen.schedule)


def _course_decisions(
    decisions: Iterable[Mapping[str, Any]], state: Mapping[str, Any]
) -> list[Mapping[str, Any]]:
    """The current decisions of the current course (from its start), oldest first."""
    started = _instant(state.get("course_started_at"))
    chosen = [
        d for d in decisions if started is None or (_instant(d.get("at")) or started) >= started
    ]
    return sorted(
        chosen, key=lambda d: (_instant(d.get("at")) or dt.datetime.min, str(d.get("decision_id")))
    )


def _latest(
    decisions: Sequence[Mapping[str, Any]], actions: Sequence[str]
) -> Mapping[str, Any] | None:
    found = [d for d in decisions if d.get("action") in actions]
    return found[-1] if found else None


def _basis(
    decisions: Sequence[Mapping[str, Any]], actions: Sequence[str], policy: str
) -> Basis | None:
    """The latest decision of the first of `actions` (in preference order) the course has."""
    for action in actions:
        decision = _latest(decisions, (action,))
        if decision is not None:
            return _decision_basis(decision, policy)
    return None


def _decision_basis(decision: Mapping[str, Any], policy: str) -> Basis:
    return Basis(
        rule=str(decision.get("rule") or "?"),
        policy=str(decision.get("policy") or policy),
        rationale=str(decision.get("rationale") or ""),
        decision_id=decision.get("decision_id"),
    )


def state_due(state: Mapping[str, Any]) -> dt.datetime | None:
    """The reassessment the course waits for: overdue since, else next due (clearance's rule,
    `policies.clearance`)."""
    return CourseSnapshot.of(state).reassessment_due()


# --- suggestions ------------------------------------------------------------------------------


def _delete_suggestion(reference: str, suggestion_uuid: str) -> dict[str, Any]:
    return {
        "label": "Cancel this bortezomib order",
        "uuid": suggestion_uuid,
        "isRecommended": True,
        "actions": [
            {
                "type": "delete",
                "description": f"Remove the draft order {reference}",
                "resourceId": reference,
            }
        ],
    }


def _update_suggestion(
    order: DraftOrder, recommended: Regimen, suggestion_uuid: str
) -> dict[str, Any]:
    text = regimen_text(recommended)
    return {
        "label": f"Order the recommended regimen: {text}",
        "uuid": suggestion_uuid,
        "isRecommended": True,
        "actions": [
            {
                "type": "update",
                "description": f"Change {order.reference} to {text}",
                "resource": updated_order(order.request, recommended),
            }
        ],
    }


def updated_order(request: MedicationRequest, regimen: Regimen) -> dict[str, Any]:
    """The draft order whole, its dosage replaced by the regimen's (the start date kept)."""
    assert regimen.dose_mg_m2 is not None
    assert regimen.route is not None
    assert regimen.schedule is not None
    dosage = regimen_dosage(regimen.dose_mg_m2, regimen.route, regimen.schedule).model_dump(
        mode="json", exclude_none=True
    )
    old = request.dosageInstruction[0] if request.dosageInstruction else None
    repeat = old.timing.repeat if old is not None and old.timing is not None else None
    if repeat is not None and repeat.boundsPeriod is not None:
        dosage["timing"]["repeat"]["boundsPeriod"] = repeat.boundsPeriod.model_dump(
            mode="json", exclude_none=True
        )
    data = request.model_dump(mode="json", exclude_none=True)
    data["dosageInstruction"] = [dosage]
    resource: dict[str, Any] = MedicationRequest.model_validate(data).model_dump(
        mode="json", exclude_none=True
    )
    return resource


# --- text -------------------------------------------------------------------------------------


def regimen_text(regimen: Regimen) -> str:
    """`1.0 mg/m2 weekly SC`; parts the regimen does not give are said so."""
    dose = "dose not given" if regimen.dose_mg_m2 is None else f"{_mg(regimen.dose_mg_m2)} mg/m2"
    schedule = "schedule not given" if regimen.schedule is None else _schedule(regimen.schedule)
    route = "route not given" if regimen.route is None else regimen.route
    return f"{dose} {schedule} {route}"


def _mg(dose: float) -> str:
    """1.0, 1.3, 1.25: as written, with at least one decimal."""
    text = f"{dose:g}"
    return text if "." in text or "e" in text else f"{text}.0"


def _schedule(schedule: str) -> str:
    return schedule.replace("_", " ")


def _detail(
    findings: Sequence[Finding], order: DraftOrder, recommended: Regimen, course: CourseView
) -> str:
    state = course.state
    status = str(state.get("status") or "none")
    lines = []
    for finding in findings:
        lines.append(f"- **{finding.indicator}**: {finding.text}")
        lines.append(f"  - {finding.basis.line()}")
    ordered = "unreadable" if order.regimen is None else regimen_text(order.regimen)
    facts = [
        f"**Order** {order.reference or '(no id)'}: {ordered}",
        f"**Course on record**: {status}"
        + (f", {regimen_text(recommended)} recommended" if status == "active" else ""),
    ]
    due = state_due(state)
    if due is not None and status in ("active", "held"):
        facts.append(f"**Next neuropathy reassessment**: {utc_minute(due)}")
    clearance = course.clearance
    if clearance:
        cleared = "cleared" if clearance.get("cleared") else "not cleared"
        reasons = "; ".join(str(r) for r in clearance.get("reasons") or [])
        facts.append(f"**Infusion clearance now**: {cleared} ({reasons})")
    return "\n".join(lines) + "\n\n" + "  \n".join(facts)


def _short(text: str) -> str:
    return text if len(text) <= SUMMARY_MAX else text[: SUMMARY_MAX - 1].rstrip() + "…"


def _instant(value: Any) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    return from_utc_text(value)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _schedule_of(value: Any) -> Schedule | None:
    if value == "weekly":
        return "weekly"
    if value == "twice_weekly":
        return "twice_weekly"
    return None


def _route_of(value: Any) -> Route | None:
    if value == "IV":
        return "IV"
    if value == "SC":
        return "SC"
    return None
