"""`$monitor-summary`: a patient's current decisions, pending reassessment, watches and alerts as
one FHIR R4 `Bundle` (type `collection`), for EHRs that read FHIR rather than the contract JSON.

A pure builder: it gets what the database holds (the course state, the current decisions, the
trigger events' bodies, the alert views) and returns `fhir.resources` R4B models; the route in
`monitor.interop.fhir.router` loads the rows, audits and serialises (`model_dump_json()`).

What goes where (the README table says the same):

- `DetectedIssue` per current decision (sorted by `at`, then id). `id` = the decision id, also
  the identifier (`NamingSystem/decision-id`); `status` final; `severity` urgent -> high,
  warning -> moderate, info -> low; `code` = the action in `CodeSystem/decision-action`;
  `identifiedDateTime` = `at`; `detail` = the rationale. Extensions (`StructureDefinition/...`)
  carry the rest of the decision: `rule`, `policy`, `source` (one per source id), `trigger`,
  `audience` (one each), and the action fields when set: `dose` (Quantity, UCUM mg/m2),
  `schedule`, `route`, `due-at`, `window-end`, `reason`, `escalation-trigger` (one each).
  Dose actions (reduce_dose, hold, resume, discontinue, advise_subcutaneous_weekly) get a
  `mitigation`: the action coding with the regimen as text ("bortezomib 1.0 mg/m2 weekly SC",
  "bortezomib on hold", "bortezomib discontinued"), dated `at`.
  `evidence.detail` points to what triggered the decision: the source resources the event
  was mapped from (`extra.fhir_source`, e.g. `Observation/obs-1`) when it came in as FHIR,
  otherwise a logical reference by the event id (`NamingSystem/event-id`) typed by the event
  type (assessment -> Observation, enrollment and treatment_change -> MedicationRequest,
  administration -> MedicationAdministration, immunotherapy -> Procedure, course_end and
  unknown -> untyped). Timer decisions (`timer:...`) have no evidence.
- `Task` for the outstanding neuropathy reassessment (`CodeSystem/task`
  `neuropathy-reassessment`): requested / order, `for` the patient, `restriction.period.end` =
  the due time. An overdue reassessment (`reassessment_overdue_since`) comes first: it is what
  is owed now, and the next assessment satisfies any pending one too. `businessStatus`
  (`CodeSystem/task-business-status`): `overdue` (the state says so), `due` (due time reached,
  grace period running) or `scheduled`. `focus` = the `schedule_reassessment` DetectedIssue of
  that due time, `reasonReference` = the `reassessment_overdue` one when overdue.
- `Flag` (`CodeSystem/flag`, category `clinical`) for an active coasting watch
  (`coasting-watch`, period = stop .. window end; the watch itself stays open until an
  assessment after the window closes it) and for an open immunotherapy escalation
  (`immunotherapy-escalation`: a current escalate_immunotherapy / escalation_unanswered
  decision and no therapy recorded since; period start = the escalation). The HL7 `flag-detail`
  extension points to the DetectedIssue behind the flag.
- `Communication` per alert of the patient (every kind, oldest first): completed; `sent` =
  created_at; `category` = the alert kind (`CodeSystem/alert-kind`); `priority` info ->
  routine, warning -> urgent, urgent -> asap (`stat` is left to emergencies); `topic` = the
  action; `payload` = the alert text; `recipient` = one display-only reference per audience;
  `about` = the DetectedIssue (its fullUrl when the decision is current, else a logical
  reference by decision id: a correction alert's decision is superseded). An acknowledgement
  sets `received` (when acknowledged) and the complex extension `acknowledgement` (`by`,
  `token`, `at`, `note`, `recorded-at`); an escalation alert names the alert it escalates
  (extension `escalates-alert`, a reference to that Communication).
- Every entry's `fullUrl` is `urn:uuid:` + uuid5(`<FHIR_BASE>`, `<type>/<id>`): stable across
  calls, since the service does not serve these resources one by one. Resource ids are the
  decision id, `alert-<id>`, and a hash of the patient and due time / start for Task and Flags.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from fhir.resources.R4B.bundle import Bundle, BundleEntry, BundleLink
from fhir.resources.R4B.codeableconcept import CodeableConcept
from fhir.resources.R4B.coding import Coding
from fhir.resources.R4B.communication import Communication, CommunicationPayload
from fhir.resources.R4B.detectedissue import (
    DetectedIssue,
    DetectedIssueEvidence,
    DetectedIssueMitigation,
)
from fhir.resources.R4B.domainresource import DomainResource
from fhir.resources.R4B.extension import Extension
from fhir.resources.R4B.flag import Flag
from fhir.resources.R4B.identifier import Identifier
from fhir.resources.R4B.period import Period
from fhir.resources.R4B.quantity import Quantity
from fhir.resources.R4B.reference import Reference
from fhir.resources.R4B.task import Task, TaskRestriction

from monitor.interop.fhir.codes import UCUM
from monitor.settings import FHIR_BASE
from policies.decisions import from_utc_text, utc_minute

NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, FHIR_BASE)
EXT = f"{FHIR_BASE}/StructureDefinition/"
ACTION_SYSTEM = f"{FHIR_BASE}/CodeSystem/decision-action"
TASK_SYSTEM = f"{FHIR_BASE}/CodeSystem/task"
TASK_STATUS_SYSTEM = f"{FHIR_BASE}/CodeSystem/task-business-status"
FLAG_SYSTEM = f"{FHIR_BASE}/CodeSystem/flag"
ALERT_KIND_SYSTEM = f"{FHIR_BASE}/CodeSystem/alert-kind"
DECISION_ID_SYSTEM = f"{FHIR_BASE}/NamingSystem/decision-id"
EVENT_ID_SYSTEM = f"{FHIR_BASE}/NamingSystem/event-id"
ALERT_ID_SYSTEM = f"{FHIR_BASE}/NamingSystem/alert-id"
PATIENT_ID_SYSTEM = f"{FHIR_BASE}/NamingSystem/patient-id"
FLAG_CATEGORY = "http://terminology.hl7.org/CodeSystem/flag-category"
FLAG_DETAIL = "http://hl7.org/fhir/StructureDefinition/flag-detail"
FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")

SEVERITY = {"urgent": "high", "warning": "moderate", "info": "low"}
PRIORITY = {"urgent": "asap", "warning": "urgent", "info": "routine"}
ACTION_DISPLAY = {
    "advise_subcutaneous_weekly": "Advise weekly subcutaneous bortezomib",
    "reduce_dose": "Reduce the bortezomib dose",
    "hold": "Hold bortezomib",
    "resume": "Resume bortezomib",
    "discontinue": "Discontinue bortezomib",
    "immune_workup": "Immune-mediated neuropathy work-up",
    "coasting_watch_started": "Coasting watch started",
    "coasting_worsening": "Worsening within the coasting window",
    "escalate_immunotherapy": "Escalate to immunotherapy",
    "escalation_unanswered": "Immunotherapy escalation unanswered",
    "schedule_reassessment": "Neuropathy reassessment scheduled",
    "reassessment_overdue": "Neuropathy reassessment overdue",
    "watch_closed": "Coasting watch closed",
    "adherence_deviation": "Deviation from the recommendation",
    "review_required": "Clinician review required",
    "immunotherapy_response": "Response to immunotherapy",
}
DOSE_ACTIONS = frozenset(
    {"reduce_dose", "hold", "resume", "discontinue", "advise_subcutaneous_weekly"}
)
# The FHIR resource an event of each type stands for (inbound mapping), for logical references.
EVIDENCE_TYPE = {
    "assessment": "Observation",
    "enrollment": "MedicationRequest",
    "treatment_change": "MedicationRequest",
    "administration": "MedicationAdministration",
    "immunotherapy": "Procedure",
}
ESCALATION_ACTIONS = ("escalate_immunotherapy", "escalation_unanswered")

Json = Mapping[str, Any]


def build_monitor_summary(
    *,
    patient_id: str,
    state: Json,
    decisions: Sequence[Json],
    trigger_events: Mapping[str, Json],
    alerts: Sequence[Json],
    base_url: str,
    now: dt.datetime,
) -> Bundle:
    """The summary bundle. `decisions` are the current decisions' contract bodies,
    `trigger_events` the stored bodies of their trigger events by event id, `alerts` the
    patient's alerts as `monitor.alerts.service.alert_view` shows them (with their ack)."""
    ordered = sorted(decisions, key=lambda d: (from_utc_text(d["at"]), d["decision_id"]))
    current = {d["decision_id"]: d for d in ordered}
    resources: list[DomainResource] = [
        _detected_issue(patient_id, d, trigger_events.get(d["trigger"])) for d in ordered
    ]
    task = _reassessment_task(patient_id, state, ordered, now)
    if task is not None:
        resources.append(task)
    resources += _flags(patient_id, state, ordered)
    resources += [
        _communication(patient_id, a, current) for a in sorted(alerts, key=lambda a: a["id"])
    ]
    return Bundle(
        type="collection",
        timestamp=now.astimezone(dt.UTC),
        link=[
            BundleLink(
                relation="self", url=f"{base_url}/fhir/r4/Patient/{patient_id}/$monitor-summary"
            )
        ],
        entry=[
            BundleEntry(fullUrl=full_url(r.get_resource_type(), str(r.id)), resource=r)
            for r in resources
        ],
    )


def full_url(resource_type: str, resource_id: str) -> str:
    """`urn:uuid:` of the type and id: the same resource gets the same fullUrl every time."""
    return f"urn:uuid:{uuid.uuid5(NAMESPACE, f'{resource_type}/{resource_id}')}"


def patient_reference(patient_id: str) -> Reference:
    """`Patient/{id}`; an id FHIR does not allow (the contract allows `_`) by identifier."""
    if FHIR_ID.match(patient_id):
        return Reference(reference=f"Patient/{patient_id}")
    return Reference(
        type="Patient", identifier=Identifier(system=PATIENT_ID_SYSTEM, value=patient_id)
    )


# --- DetectedIssue --------------------------------------------------------------------------


def _detected_issue(patient_id: str, decision: Json, trigger: Json | None) -> DetectedIssue:
    action = str(decision["action"])
    evidence = _evidence(str(decision["trigger"]), trigger)
    return DetectedIssue(
        id=decision["decision_id"],
        identifier=[Identifier(system=DECISION_ID_SYSTEM, value=decision["decision_id"])],
        extension=_decision_extensions(decision),
        status="final",
        code=_action_concept(action),
        severity=SEVERITY[decision["severity"]],
        patient=patient_reference(patient_id),
        identifiedDateTime=decision["at"],
        detail=decision["rationale"],
        evidence=[DetectedIssueEvidence(detail=evidence)] if evidence else None,
        mitigation=[
            DetectedIssueMitigation(
                action=CodeableConcept(
                    coding=_action_concept(action).coding, text=_regimen(decision)
                ),
                date=decision["at"],
            )
        ]
        if action in DOSE_ACTIONS
        else None,
    )


def _action_concept(action: str) -> CodeableConcept:
    display = ACTION_DISPLAY.get(action, action.replace("_", " ").capitalize())
    return CodeableConcept(
        coding=[Coding(system=ACTION_SYSTEM, code=action, display=display)], text=display
    )


def _regimen(decision: Json) -> str:
    """What a dose action asks for, as the mitigation's text."""
    action = decision["action"]
    if action == "hold":
        return "bortezomib on hold"
    if action == "discontinue":
        return "bortezomib discontinued"
    parts = ["bortezomib"]
    if decision.get("dose_mg_m2") is not None:
        parts.append(f"{_dose(float(decision['dose_mg_m2']))} mg/m2")
    if decision.get("schedule"):
        parts.append(str(decision["schedule"]).replace("_", "-"))
    if decision.get("route"):
        parts.append(str(decision["route"]))
    return " ".join(parts)


def _dose(value: float) -> str:
    """1.0, 1.3, 0.75: at least one decimal, no trailing zeros beyond it."""
    text = f"{value:.3f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def _decision_extensions(decision: Json) -> list[Extension]:
    """Rule, policy, sources, trigger, audience and the action fields of the decision."""
    found = [
        Extension(url=EXT + "rule", valueString=decision["rule"]),
        Extension(url=EXT + "policy", valueString=decision["policy"]),
        *(Extension(url=EXT + "source", valueString=s) for s in decision.get("sources", [])),
        Extension(url=EXT + "trigger", valueString=decision["trigger"]),
        *(Extension(url=EXT + "audience", valueCode=a) for a in decision.get("audience", [])),
    ]
    if decision.get("dose_mg_m2") is not None:
        found.append(
            Extension(
                url=EXT + "dose",
                valueQuantity=Quantity(
                    value=decision["dose_mg_m2"], unit="mg/m2", system=UCUM, code="mg/m2"
                ),
            )
        )
    for name, url in (("schedule", "schedule"), ("route", "route"), ("reason", "reason")):
        if decision.get(name):
            found.append(Extension(url=EXT + url, valueCode=decision[name]))
    for name, url in (("due_at", "due-at"), ("window_end", "window-end")):
        if decision.get(name):
            found.append(Extension(url=EXT + url, valueDateTime=decision[name]))
    found += [
        Extension(url=EXT + "escalation-trigger", valueCode=t)
        for t in decision.get("triggers") or []
    ]
    return found


def _evidence(trigger: str, event: Json | None) -> list[Reference]:
    """The resources the trigger event came from, else the event by its id; none for timers."""
    if trigger.startswith("timer:"):
        return []
    extra = (event or {}).get("extra") or {}
    sources = extra.get("fhir_source") if isinstance(extra, Mapping) else None
    if isinstance(sources, list) and sources and all(isinstance(s, str) for s in sources):
        return [Reference(reference=s) for s in sources]
    kind = EVIDENCE_TYPE.get(str((event or {}).get("type")))
    return [Reference(type=kind, identifier=Identifier(system=EVENT_ID_SYSTEM, value=trigger))]


# --- Task -----------------------------------------------------------------------------------


def _reassessment_task(
    patient_id: str, state: Json, decisions: Sequence[Json], now: dt.datetime
) -> Task | None:
    overdue_since = state.get("reassessment_overdue_since")
    due_text = overdue_since or state.get("next_reassessment_due")
    if not due_text:
        return None
    due = from_utc_text(due_text)
    scheduled = _latest(decisions, ("schedule_reassessment",), due_at=due)
    missed = _latest(decisions, ("reassessment_overdue",), due_at=due) if overdue_since else None
    status = "overdue" if overdue_since else ("due" if due <= now else "scheduled")
    return Task(
        id="reassessment-" + _digest(patient_id, due_text),
        status="requested",
        intent="order",
        businessStatus=CodeableConcept(
            coding=[Coding(system=TASK_STATUS_SYSTEM, code=status, display=status.capitalize())],
            text=status,
        ),
        code=CodeableConcept(
            coding=[
                Coding(
                    system=TASK_SYSTEM,
                    code="neuropathy-reassessment",
                    display="Neuropathy reassessment (CTCAE grading)",
                )
            ],
            text="Neuropathy reassessment",
        ),
        description=(
            "Grade sensory, motor, pain and autonomic neuropathy (CTCAE) before the next dose."
        ),
        for_fhir=patient_reference(patient_id),
        authoredOn=scheduled["at"] if scheduled else None,
        restriction=TaskRestriction(period=Period(end=due_text)),
        focus=_issue_reference(scheduled) if scheduled else None,
        reasonReference=_issue_reference(missed) if missed else None,
    )


# --- Flags ----------------------------------------------------------------------------------


def _flags(patient_id: str, state: Json, decisions: Sequence[Json]) -> list[Flag]:
    flags = []
    watch = state.get("watch") or {}
    if watch.get("state") == "active" and watch.get("stopped_at"):
        window_end = watch.get("window_end")
        text = "Coasting watch after the bortezomib stop: neuropathy may still worsen"
        if window_end:
            text += f"; the coasting window ends {utc_minute(from_utc_text(window_end))}"
        flags.append(
            _flag(
                f"coasting-watch-{_digest(patient_id, watch['stopped_at'])}",
                patient_id,
                code="coasting-watch",
                display="Coasting watch after a bortezomib stop",
                text=text + ".",
                period=Period(start=watch["stopped_at"], end=window_end),
                detail=_latest(decisions, ("coasting_watch_started",)),
            )
        )
    escalation = state.get("escalation") or {}
    decision = _latest(decisions, ESCALATION_ACTIONS)
    if decision and escalation.get("escalated_at") and not escalation.get("answered"):
        unanswered = decision["action"] == "escalation_unanswered"
        flags.append(
            _flag(
                f"immunotherapy-escalation-{_digest(patient_id, escalation['escalated_at'])}",
                patient_id,
                code="immunotherapy-escalation",
                display="Immunotherapy escalation open",
                text="Escalation to immunotherapy "
                + ("still unanswered: no therapy recorded." if unanswered else "open."),
                period=Period(start=escalation["escalated_at"]),
                detail=decision,
            )
        )
    return flags


def _flag(
    flag_id: str,
    patient_id: str,
    *,
    code: str,
    display: str,
    text: str,
    period: Period,
    detail: Json | None,
) -> Flag:
    return Flag(
        id=flag_id,
        extension=[Extension(url=FLAG_DETAIL, valueReference=_issue_reference(detail))]
        if detail
        else None,
        status="active",
        category=[
            CodeableConcept(
                coding=[Coding(system=FLAG_CATEGORY, code="clinical", display="Clinical")]
            )
        ],
        code=CodeableConcept(
            coding=[Coding(system=FLAG_SYSTEM, code=code, display=display)], text=text
        ),
        subject=patient_reference(patient_id),
        period=period,
    )


# --- Communication --------------------------------------------------------------------------


def _communication(patient_id: str, alert: Json, current: Mapping[str, Json]) -> Communication:
    decision_id = str(alert["decision_id"])
    about = (
        _issue_reference(current[decision_id])
        if decision_id in current
        else Reference(
            type="DetectedIssue",
            identifier=Identifier(system=DECISION_ID_SYSTEM, value=decision_id),
        )
    )
    ack = alert.get("ack")
    extensions = []
    if ack:
        extensions.append(_acknowledgement(ack))
    if alert.get("escalates_alert_id") is not None:
        escalated = f"alert-{alert['escalates_alert_id']}"
        extensions.append(
            Extension(
                url=EXT + "escalates-alert",
                valueReference=Reference(
                    reference=full_url("Communication", escalated), type="Communication"
                ),
            )
        )
    return Communication(
        id=f"alert-{alert['id']}",
        identifier=[Identifier(system=ALERT_ID_SYSTEM, value=str(alert["id"]))],
        extension=extensions or None,
        status="completed",
        category=[
            CodeableConcept(
                coding=[
                    Coding(
                        system=ALERT_KIND_SYSTEM,
                        code=alert["kind"],
                        display=str(alert["kind"]).capitalize(),
                    )
                ]
            )
        ],
        priority=PRIORITY[alert["severity"]],
        subject=patient_reference(patient_id),
        topic=_action_concept(str(alert["action"])),
        about=[about],
        sent=alert["created_at"],
        received=ack["at"] if ack else None,
        recipient=[Reference(display=a) for a in alert.get("audience", [])] or None,
        payload=[CommunicationPayload(contentString=alert["message"])],
    )


def _acknowledgement(ack: Json) -> Extension:
    parts = [
        Extension(url="by", valueString=ack["by"]),
        Extension(url="token", valueString=ack.get("token")) if ack.get("token") else None,
        Extension(url="at", valueDateTime=ack["at"]),
        Extension(url="note", valueString=ack["note"]) if ack.get("note") else None,
        Extension(url="recorded-at", valueDateTime=ack["recorded_at"])
        if ack.get("recorded_at")
        else None,
    ]
    return Extension(url=EXT + "acknowledgement", extension=[p for p in parts if p is not None])


# --- helpers --------------------------------------------------------------------------------


def _issue_reference(decision: Json) -> Reference:
    return Reference(
        reference=full_url("DetectedIssue", decision["decision_id"]), type="DetectedIssue"
    )


def _latest(
    decisions: Iterable[Json], actions: tuple[str, ...], *, due_at: dt.datetime | None = None
) -> Json | None:
    """The latest (by `at`, then id) current decision of these actions (and this due time)."""
    found = [
        d
        for d in decisions
        if d["action"] in actions
        and (due_at is None or (d.get("due_at") and from_utc_text(d["due_at"]) == due_at))
    ]
    return max(found, key=lambda d: (from_utc_text(d["at"]), d["decision_id"]), default=None)


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:24]


__all__ = ["build_monitor_summary", "full_url", "patient_reference"]
