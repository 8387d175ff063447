"""The adherence audit (issue 5): were the recommendations followed, and on time?

Pure: standard library (and the policy core's time format) only. Callers hand over one
patient at a time (their events and current decisions, reduced to the few fields the audit
reads) and the alerts one by one; the report keeps counters, the durations behind its medians
and the drill-down items of what was not followed, never the whole history (so a database of
any size streams through it).

The definitions, applied per decision current in the period (`from <= at <= to`, both ends
included as with `replay --until`), are in the README ("Adherence reports").
"""

from __future__ import annotations

import bisect
import dataclasses
import datetime as dt
import json
import tempfile
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, Literal

from monitor.reports.patient_reports import PatientReportSection, PatientReportTally
from monitor.reports.stats import median as _median
from monitor.reports.stats import p90 as _p90
from monitor.reports.stats import rate as _rate
from policies.decisions import utc_text, utc_text_or_none

RECOMMENDATIONS = ("reduce_dose", "hold", "discontinue")
AUDITED_ACTIONS = (
    *RECOMMENDATIONS,
    "resume",
    "schedule_reassessment",
    "escalate_immunotherapy",
    "adherence_deviation",
)
DOSE_TOLERANCE_MG_M2 = 0.05
ANSWER_DAYS = 7.0
SEVERITIES = ("urgent", "warning", "info")
CDS_INDICATORS = ("critical", "warning", "info")
NO_REASON = "(no reason given)"
NO_UNIT = "(none)"

Outcome = Literal[
    "followed",
    "deviated",
    "pending",
    "on_time",
    "late",
    "missed",
    "answered_within_7d",
    "answered_late",
    "unanswered",
]


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """What the audit reads of an event; `at` is aware UTC."""

    event_id: str
    type: str
    at: dt.datetime
    dose_mg_m2: float | None = None  # administration, treatment_change
    action: str | None = None  # treatment_change
    unit: str | None = None  # enrollment
    dose_mg: float | None = None  # administration: a dose given in mg
    bsa_m2: float | None = None  # administration's own; enrollment's (given, or Mosteller's)
    source: str | None = None  # assessment: `patient` for a patient report (V9)
    therapy: str | None = None  # immunotherapy (V10's episodes)

    @property
    def dose_not_comparable(self) -> bool:
        """A dose given in mg with no body surface area to convert it (`_Timeline` converts
        the others): the audit cannot say whether it was at or below a recommended dose."""
        return (
            self.type == "administration" and self.dose_mg_m2 is None and self.dose_mg is not None
        )

    @property
    def key(self) -> tuple[dt.datetime, str]:
        """The timeline order (CONTRACT.md): time, then event id."""
        return (self.at, self.event_id)


@dataclass(frozen=True, slots=True)
class AuditDecision:
    """What the audit reads of a current decision; `at` and `due_at` are aware UTC."""

    decision_id: str
    action: str
    at: dt.datetime
    trigger: str
    due_at: dt.datetime | None = None
    dose_mg_m2: float | None = None
    reason: str | None = None
    policy: str | None = None  # the pack that made it
    in_force_from: dt.datetime | None = None  # it came with a policy change, at this time
    superseded_at: dt.datetime | None = None  # superseded by a policy change, at this time

    @property
    def anchor(self) -> dt.datetime:
        """The time it is audited at: a reassessment's due time, else its own."""
        if self.action == "schedule_reassessment" and self.due_at is not None:
            return self.due_at
        return self.at

    @property
    def was_in_force(self) -> bool:
        """A policy change ends the old pack's decisions and starts the new one's: each is
        audited only for what falls in its own time (what was advised when it was due)."""
        anchor = self.anchor
        if self.in_force_from is not None and anchor < self.in_force_from:
            return False
        return self.superseded_at is None or anchor < self.superseded_at


PackRules = Callable[[str | None], tuple[dt.timedelta, float]]  # label -> (grace, tolerance)


@dataclass(frozen=True, slots=True)
class Period:
    start: dt.datetime
    end: dt.datetime
    unit: str | None = None

    def holds(self, moment: dt.datetime) -> bool:
        return self.start <= moment <= self.end


@dataclass(frozen=True, slots=True)
class AuditItem:
    """One audited decision and its outcome, with the event that decided it."""

    kind: Literal["recommendation", "reassessment", "escalation"]
    decision_id: str
    patient_id: str
    unit: str | None
    action: str
    at: dt.datetime
    outcome: Outcome
    due_at: dt.datetime | None = None
    recommended_dose_mg_m2: float | None = None
    evidence: AuditEvent | None = None
    hours_to_action: float | None = None
    days_to_therapy: float | None = None
    policy: str | None = None  # the pack of the decision

    @property
    def month(self) -> str:
        """The month it counts in: the due month of a reassessment, else the decision's."""
        return (self.due_at if self.kind == "reassessment" and self.due_at else self.at).strftime(
            "%Y-%m"
        )

    @property
    def needs_review(self) -> bool:
        """Shown in the drill-down: not followed, missed, or unanswered."""
        return self.outcome in ("deviated", "pending", "missed", "unanswered")


class _Timeline:
    """One patient's events in timeline order, with the position of each event."""

    def __init__(self, events: Sequence[AuditEvent], end: dt.datetime) -> None:
        self.events = _per_m2(sorted((e for e in events if e.at <= end), key=lambda e: e.key))
        self.keys = [e.key for e in self.events]
        self.index = {e.event_id: i for i, e in enumerate(self.events)}
        self.enrollments = [i for i, e in enumerate(self.events) if e.type == "enrollment"]

    def after(self, decision: AuditDecision) -> int:
        """Index of the first event after the decision: after its triggering event, or, for a
        timer (which fires after the events of its instant), after every event of that time."""
        position = self.index.get(decision.trigger)
        if position is not None:
            return position + 1
        return bisect.bisect_right(self.keys, (decision.at, "\U0010ffff"))

    def course_end(self, start: int) -> int:
        """Index of the next enrolment from `start` (a new course): audits stop there."""
        for i in range(start, len(self.events)):
            if self.events[i].type == "enrollment":
                return i
        return len(self.events)

    def unit_at(self, decision: AuditDecision) -> str | None:
        """The unit of the course the decision belongs to: the last enrolment up to its trigger
        in timeline order (one at the same instant but after the trigger starts the next)."""
        before = bisect.bisect_left(self.enrollments, self.after(decision))
        return self.events[self.enrollments[before - 1]].unit if before else None


def _per_m2(events: list[AuditEvent]) -> list[AuditEvent]:
    """Doses given in mg, per m² as D6 reads them: over the administration's own body surface
    area, else its course's (the latest enrolment before it); without one, left as given."""
    course_bsa: float | None = None
    out = []
    for event in events:
        if event.type == "enrollment":
            course_bsa = event.bsa_m2
        elif event.dose_not_comparable:
            bsa = event.bsa_m2 if event.bsa_m2 is not None else course_bsa
            if bsa is not None and event.dose_mg is not None:
                event = dataclasses.replace(event, dose_mg_m2=event.dose_mg / bsa)
        out.append(event)
    return out


def audit_patient(
    patient_id: str,
    events: Sequence[AuditEvent],
    decisions: Sequence[AuditDecision],
    period: Period,
    grace: dt.timedelta,
    tolerance: float = DOSE_TOLERANCE_MG_M2,
    rules: PackRules | None = None,
) -> tuple[list[AuditItem], list[tuple[AuditDecision, str | None]]]:
    """Every audited item of one patient in the period, and its `adherence_deviation`
    decisions (with their unit). Only events up to the period's end count. `grace` and
    `tolerance` come from the policy pack (`overdue_grace_days`, `dose_tolerance_mg_m2`), so
    the audit and the engine's own deviations agree; with `rules`, each decision's own pack
    gives them (after a policy change, old decisions keep their pack's). Decisions a policy
    change ended, or brought for a time before it, are left out (`was_in_force`)."""
    timeline = _Timeline(events, period.end)
    ordered = sorted((d for d in decisions if d.was_in_force), key=lambda d: (d.at, d.decision_id))
    recommendations = [d for d in ordered if d.action in RECOMMENDATIONS]
    resumes = [d for d in ordered if d.action == "resume"]
    items: list[AuditItem] = []
    deviations: list[tuple[AuditDecision, str | None]] = []
    for decision in ordered:
        anchor = decision.due_at if decision.action == "schedule_reassessment" else decision.at
        if anchor is None or not period.holds(anchor) or decision.at > period.end:
            continue
        if rules is not None:
            grace, tolerance = rules(decision.policy)
        unit = timeline.unit_at(decision)
        if period.unit is not None and unit != period.unit:
            continue
        if decision.action in RECOMMENDATIONS:
            items.append(
                _recommendation(
                    patient_id,
                    unit,
                    decision,
                    timeline,
                    recommendations,
                    resumes,
                    period.end,
                    tolerance,
                )
            )
        elif decision.action == "schedule_reassessment":
            items.append(_reassessment(patient_id, unit, decision, timeline, grace))
        elif decision.action == "escalate_immunotherapy":
            items.append(_escalation(patient_id, unit, decision, timeline))
        elif decision.action == "adherence_deviation":
            deviations.append((decision, unit))
    return items, deviations


def _qualifies(
    action: str,
    event: AuditEvent,
    recommended: float | None,
    tolerance: float = DOSE_TOLERANCE_MG_M2,
) -> bool:
    """A recorded treatment change that carries out the recommendation."""
    if event.type == "course_end":
        return action == "discontinue"
    if event.type != "treatment_change":
        return False
    if action == "reduce_dose":
        if event.action == "dose_reduced":
            return (
                event.dose_mg_m2 is None
                or recommended is None
                or event.dose_mg_m2 <= recommended + tolerance
            )
        return event.action in ("held", "discontinued")
    if action == "hold":
        return event.action in ("held", "discontinued")
    return event.action in ("discontinued", "completed")


@dataclass(frozen=True, slots=True)
class _Course:
    """What a recommendation is judged on: the events after it up to the next enrolment
    (`events`, which start at `start` in the timeline; a new course ends the audit), and what
    the hold rule needs besides (the resume decisions, the report's end)."""

    decision: AuditDecision
    timeline: _Timeline
    start: int
    events: Sequence[AuditEvent]
    resumes: Sequence[AuditDecision]
    period_end: dt.datetime
    tolerance: float

    def carries_out(self, event: AuditEvent) -> bool:
        """A recorded treatment change that carries the recommendation out (`_qualifies`)."""
        return _qualifies(self.decision.action, event, self.decision.dose_mg_m2, self.tolerance)


Judged = tuple[Outcome, AuditEvent | None]  # a recommendation's outcome and its evidence


def _reduce_dose_outcome(course: _Course) -> Judged:
    """The first dose given after it decides: above the recommended dose (+ the tolerance) is
    a deviation, at or below it followed. A recorded reduction, hold or discontinuation before
    any dose is followed too, since the prescriber acted on it. Neither yet: pending.

    A first dose given in mg with no body surface area to convert it is neither: pending, with
    that dose as the evidence (the drill-down shows it; D6 asked for `dose_not_comparable`)."""
    dose = course.decision.dose_mg_m2
    for event in course.events:
        if event.type == "administration" and event.dose_not_comparable:
            return "pending", event
        if event.type == "administration":
            deviated = (
                dose is not None
                and event.dose_mg_m2 is not None
                and event.dose_mg_m2 > dose + course.tolerance
            )
            return ("deviated" if deviated else "followed"), event
        if course.carries_out(event):
            return "followed", event
    return "pending", None


def _hold_outcome(course: _Course) -> Judged:
    """Held until the next resume (a `resume` decision or a recorded `resumed`) with nothing
    given: followed. A dose before it: deviated. No resume yet: followed once the hold was
    recorded (`held`/`discontinued`), else pending.

    The resume holds from its trigger on, in timeline order (a dose at the same instant but
    before the trigger was given during the hold, as the engine's D6 says)."""
    resume = next((r for r in course.resumes if r.at > course.decision.at), None)
    resumed_from = None if resume is None else course.timeline.after(resume)
    recorded: AuditEvent | None = None
    for position, event in enumerate(course.events, course.start):
        if resumed_from is not None and position >= resumed_from:
            return "followed", recorded
        if event.type == "administration":
            return "deviated", event
        if event.type == "treatment_change" and event.action == "resumed":
            return "followed", event
        if recorded is None and course.carries_out(event):
            recorded = event
    if recorded is not None or (resume is not None and resume.at <= course.period_end):
        return "followed", recorded
    return "pending", None


def _discontinue_outcome(course: _Course) -> Judged:
    """Any dose given after it is a deviation, even after a recorded stop (the treatment went
    on); else a recorded `discontinued`/`completed` or a `course_end` is followed; else
    pending."""
    given = next((e for e in course.events if e.type == "administration"), None)
    if given is not None:
        return "deviated", given
    stopped = next((e for e in course.events if course.carries_out(e)), None)
    if stopped is not None:
        return "followed", stopped
    return "pending", None


# How each recommended action is judged (the README's "Adherence reports" gives the rules).
RECOMMENDATION_OUTCOMES: dict[str, Callable[[_Course], Judged]] = {
    "reduce_dose": _reduce_dose_outcome,
    "hold": _hold_outcome,
    "discontinue": _discontinue_outcome,
}


def _hours_to_action(course: _Course, recommendations: Sequence[AuditDecision]) -> float | None:
    """Hours from the recommendation to the first recorded change that carries it out, if that
    came before the patient's next recommendation (of any kind): after it, the change answers
    the later one, and counting it here would stretch this one's time to action."""
    decision = course.decision
    next_recommendation = next(
        (
            r.at
            for r in recommendations
            if (r.at, r.decision_id) > (decision.at, decision.decision_id)
        ),
        None,
    )
    action_event = next(
        (
            e
            for e in course.events
            if course.carries_out(e) and (next_recommendation is None or e.at < next_recommendation)
        ),
        None,
    )
    if action_event is None:
        return None
    return (action_event.at - decision.at).total_seconds() / 3600


def monitored_seconds(events: Sequence[AuditEvent], period: Period) -> float:
    """How long in the period the patient was monitored: from each enrolment to its course's
    end (a `course_end`, the next enrolment) or the period's end (a stopped drug's watch is
    monitoring too); with the period's unit, that unit's courses only. What alert burden is
    counted against (alerts per patient-week)."""
    total = 0.0
    start: dt.datetime | None = None
    unit: str | None = None

    def close(end: dt.datetime) -> None:
        nonlocal total
        if start is None or (period.unit is not None and unit != period.unit):
            return
        low, high = max(start, period.start), min(end, period.end)
        if high > low:
            total += (high - low).total_seconds()

    for event in sorted(events, key=lambda e: e.key):
        if event.at > period.end:
            break
        if event.type == "enrollment":
            close(event.at)
            start, unit = event.at, event.unit
        elif event.type == "course_end" and start is not None:
            close(event.at)
            start = None
    close(period.end)
    return total


def _recommendation(
    patient_id: str,
    unit: str | None,
    decision: AuditDecision,
    timeline: _Timeline,
    recommendations: Sequence[AuditDecision],
    resumes: Sequence[AuditDecision],
    period_end: dt.datetime,
    tolerance: float = DOSE_TOLERANCE_MG_M2,
) -> AuditItem:
    """A `reduce_dose`, `hold` or `discontinue` decision, judged by its action's rule
    (RECOMMENDATION_OUTCOMES) on the events of its course after it."""
    start = timeline.after(decision)
    course = _Course(
        decision=decision,
        timeline=timeline,
        start=start,
        events=timeline.events[start : timeline.course_end(start)],
        resumes=resumes,
        period_end=period_end,
        tolerance=tolerance,
    )
    outcome, evidence = RECOMMENDATION_OUTCOMES[decision.action](course)
    return AuditItem(
        kind="recommendation",
        decision_id=decision.decision_id,
        patient_id=patient_id,
        unit=unit,
        action=decision.action,
        at=decision.at,
        outcome=outcome,
        recommended_dose_mg_m2=decision.dose_mg_m2,
        evidence=evidence,
        hours_to_action=_hours_to_action(course, recommendations),
        policy=decision.policy,
    )


def _reassessment(
    patient_id: str,
    unit: str | None,
    decision: AuditDecision,
    timeline: _Timeline,
    grace: dt.timedelta,
) -> AuditItem:
    assert decision.due_at is not None
    start = timeline.after(decision)
    done = next((e for e in timeline.events[start:] if e.type == "assessment"), None)
    outcome: Outcome = "missed"
    if done is not None:
        outcome = "on_time" if done.at <= decision.due_at + grace else "late"
    return AuditItem(
        kind="reassessment",
        decision_id=decision.decision_id,
        patient_id=patient_id,
        unit=unit,
        action=decision.action,
        at=decision.at,
        outcome=outcome,
        due_at=decision.due_at,
        evidence=done,
        policy=decision.policy,
    )


def _escalation(
    patient_id: str, unit: str | None, decision: AuditDecision, timeline: _Timeline
) -> AuditItem:
    therapy = next(
        (e for e in timeline.events if e.type == "immunotherapy" and e.at >= decision.at), None
    )
    outcome: Outcome = "unanswered"
    days = None
    if therapy is not None:
        days = (therapy.at - decision.at).total_seconds() / 86400
        outcome = "answered_within_7d" if days <= ANSWER_DAYS else "answered_late"
    return AuditItem(
        kind="escalation",
        decision_id=decision.decision_id,
        patient_id=patient_id,
        unit=unit,
        action=decision.action,
        at=decision.at,
        outcome=outcome,
        evidence=therapy,
        days_to_therapy=days,
        policy=decision.policy,
    )


# --- the report -------------------------------------------------------------------------------


@dataclass
class _Section:
    """Outcome counts of one group (a unit, a month, a patient, or the whole report)."""

    counts: Counter[str] = field(default_factory=Counter)

    def add(self, item: AuditItem) -> None:
        self.counts[f"{item.kind}:{item.outcome}"] += 1
        self.counts[f"{item.kind}:total"] += 1

    def recommendations(self) -> dict[str, Any]:
        c = self.counts
        followed, deviated = c["recommendation:followed"], c["recommendation:deviated"]
        return {
            "total": c["recommendation:total"],
            "followed": followed,
            "deviated": deviated,
            "pending": c["recommendation:pending"],
            "rate": _rate(followed, followed + deviated),
        }

    def reassessments(self) -> dict[str, Any]:
        c = self.counts
        return {
            "due": c["reassessment:total"],
            "on_time": c["reassessment:on_time"],
            "late": c["reassessment:late"],
            "missed": c["reassessment:missed"],
            "rate": _rate(c["reassessment:on_time"], c["reassessment:total"]),
        }

    def escalations(self) -> dict[str, Any]:
        c = self.counts
        return {
            "total": c["escalation:total"],
            "answered_within_7d": c["escalation:answered_within_7d"],
            "answered_late": c["escalation:answered_late"],
            "unanswered": c["escalation:unanswered"],
        }

    def summary(self) -> dict[str, Any]:
        return {
            "recommendations": self.recommendations(),
            "reassessments": self.reassessments(),
            "escalations": self.escalations(),
        }


class AdherenceReport:
    """Accumulates patients and alerts; `result()` is the JSON report of issue 5."""

    def __init__(
        self,
        period: Period,
        policy: str,
        *,
        with_alerts: bool = True,
        with_cds: bool = False,
        ack_target_minutes: float = 60.0,
        on_item: Callable[[AuditItem], None] | None = None,
        drill_down: bool = True,
    ) -> None:
        self.on_item = on_item  # every audited item, as it is added (the CSV streams them)
        self.drill_down = drill_down  # keep the per-patient entries (not needed for the CSV)
        self.period = period
        self.policy = policy
        self.with_alerts = with_alerts
        self.with_cds = with_cds  # the database report: CDS Hooks cards live there only
        self.ack_target_minutes = ack_target_minutes
        self._all = _Section()
        self._by_action: dict[str, _Section] = defaultdict(_Section)
        self._by_unit: dict[str, _Section] = defaultdict(_Section)
        self._by_month: dict[str, _Section] = defaultdict(_Section)
        self._hours: list[float] = []
        self._days: list[float] = []
        self._deviations: Counter[str] = Counter()
        self._policies: Counter[str] = Counter()  # audited items by the pack that decided
        self._monitored_s = 0.0  # patient-time monitored in the period (alert burden)
        self._patient_reports = PatientReportSection()
        # Per-patient entries, written out as JSON lines as they come (spooled to disk past
        # 8 MB): the report's memory does not grow with the number of patients.
        self._patients = tempfile.SpooledTemporaryFile(  # noqa: SIM115  (closed by close())
            max_size=8 * 1024 * 1024, mode="w+", encoding="utf-8"
        )
        self._patient_count = 0
        self._last_patient: str | None = None
        self._in_order = True
        self._alerts: dict[str, dict[str, Any]] = {
            s: {"total": 0, "acknowledged": 0, "minutes": []} for s in SEVERITIES
        }
        self._cds_indicators: Counter[str] = Counter({i: 0 for i in CDS_INDICATORS})
        self._cds_outcomes: Counter[str] = Counter()
        self._cds_reasons: Counter[str] = Counter()

    def add_patient(
        self,
        patient_id: str,
        items: Iterable[AuditItem],
        deviations: Iterable[tuple[AuditDecision, str | None]] = (),
        monitored_s: float = 0.0,
        patient_reports: PatientReportTally | None = None,
    ) -> None:
        self._monitored_s += monitored_s
        if patient_reports is not None:
            self._patient_reports.add(patient_reports)
        patient = _Section()
        review: list[AuditItem] = []
        units: set[str] = set()
        for item in items:
            for section in (
                self._all,
                self._by_unit[item.unit or NO_UNIT],
                self._by_month[item.month],
                patient,
            ):
                section.add(item)
            units.add(item.unit or NO_UNIT)
            self._policies[item.policy or self.policy] += 1
            if self.on_item is not None:
                self.on_item(item)
            if item.kind == "recommendation":
                self._by_action[item.action].add(item)
                if item.hours_to_action is not None:
                    self._hours.append(item.hours_to_action)
            if item.days_to_therapy is not None:
                self._days.append(item.days_to_therapy)
            if item.needs_review:
                review.append(item)
        for decision, unit in deviations:
            self._deviations[decision.reason or "unspecified"] += 1
            units.add(unit or NO_UNIT)
        if self.drill_down and (patient.counts or units):
            entry = {
                "patient_id": patient_id,
                "units": sorted(units),
                **patient.summary(),
                "items": [item_view(i) for i in review],
            }
            self._patients.write(json.dumps(entry) + "\n")
            self._patient_count += 1
            if self._last_patient is not None and patient_id < self._last_patient:
                self._in_order = False
            self._last_patient = patient_id

    def add_alert(
        self, severity: str, created_at: dt.datetime, acknowledged_at: dt.datetime | None
    ) -> None:
        bucket = self._alerts.setdefault(severity, {"total": 0, "acknowledged": 0, "minutes": []})
        bucket["total"] += 1
        if acknowledged_at is not None:
            bucket["acknowledged"] += 1
            bucket["minutes"].append(max((acknowledged_at - created_at).total_seconds(), 0) / 60)

    def add_review_ack(self, decision_id: str, acknowledged_at: dt.datetime) -> None:
        """A review's alert acknowledged: counted when the review is a patient report's."""
        self._patient_reports.acknowledge(decision_id, acknowledged_at)

    def add_cds_card(self, indicator: str, outcome: str | None, reason: str | None) -> None:
        """A CDS Hooks card issued in the period, with its latest feedback (`accepted`,
        `overridden` and the override reason's code, or None without feedback)."""
        self._cds_indicators[indicator] += 1
        self._cds_outcomes[outcome or "no_feedback"] += 1
        if outcome == "overridden":
            self._cds_reasons[reason or NO_REASON] += 1

    def patients(self) -> Iterator[dict[str, Any]]:
        """The per-patient entries, by patient id."""
        self._patients.seek(0)
        entries = (json.loads(line) for line in self._patients)
        if self._in_order:
            yield from entries
        else:
            yield from sorted(entries, key=lambda p: p["patient_id"])
        self._patients.seek(0, 2)

    def write_json(self, out: IO[str]) -> None:
        """The JSON report written piece by piece: the patients stream from the spool."""
        head = self.summary()
        text = json.dumps({**head, "patients": []}, indent=2)
        before, after = text.rsplit('"patients": []', 1)
        out.write(before + '"patients": [')
        for number, entry in enumerate(self.patients()):
            out.write(("," if number else "") + "\n    " + json.dumps(entry))
        out.write(("\n  ]" if self._patient_count else "]") + after + "\n")

    def close(self) -> None:
        self._patients.close()

    def result(self) -> dict[str, Any]:
        return {**self.summary(), "patients": list(self.patients())}

    def summary(self) -> dict[str, Any]:
        """Everything but the per-patient entries."""
        recommendations = self._all.recommendations()
        recommendations["median_hours_to_action"] = _median(self._hours)
        recommendations["by_action"] = {
            action: self._by_action[action].recommendations() for action in RECOMMENDATIONS
        }
        escalations = self._all.escalations()
        escalations["median_days_to_therapy"] = _median(self._days)
        return {
            "period": {
                "from": utc_text(self.period.start),
                "to": utc_text(self.period.end),
            },
            "unit": self.period.unit,
            "policy": self.policy,
            "policies": dict(sorted(self._policies.items())),
            "recommendations": recommendations,
            "reassessments": self._all.reassessments(),
            "escalations": escalations,
            "alerts": self._alert_section() if self.with_alerts else None,
            **({"cds": self._cds_section()} if self.with_cds else {}),
            "patient_reports": self._patient_reports.result(self._monitored_s, self.with_alerts),
            "deviations": {
                "total": sum(self._deviations.values()),
                "by_reason": dict(sorted(self._deviations.items())),
            },
            "by_unit": {unit: s.summary() for unit, s in sorted(self._by_unit.items())},
            "by_month": {month: s.summary() for month, s in sorted(self._by_month.items())},
        }

    def distributions(self) -> dict[str, Any]:
        """The values behind the medians, for the HTML report's charts (not in the JSON)."""
        return {
            "hours_to_action": list(self._hours),
            "days_to_therapy": list(self._days),
            "hours_to_review_ack": self._patient_reports.hours_to_ack(),
            "minutes_to_ack": {s: list(b["minutes"]) for s, b in self._alerts.items()},
        }

    def _cds_section(self) -> dict[str, Any]:
        """CDS Hooks cards issued in the period and what became of them (the latest feedback
        of each card counts)."""
        return {
            "cards": sum(self._cds_indicators.values()),
            "by_indicator": dict(self._cds_indicators),
            "accepted": self._cds_outcomes["accepted"],
            "overridden": self._cds_outcomes["overridden"],
            "no_feedback": self._cds_outcomes["no_feedback"],
            "override_reasons": dict(sorted(self._cds_reasons.items())),
        }

    def _alert_section(self) -> dict[str, Any]:
        by_severity = {}
        for severity, bucket in self._alerts.items():
            minutes = bucket["minutes"]
            by_severity[severity] = {
                "total": bucket["total"],
                "acknowledged": bucket["acknowledged"],
                "median_minutes_to_ack": _median(minutes),
                "p90_minutes_to_ack": _p90(minutes),
            }
        urgent = self._alerts["urgent"]
        within = sum(1 for m in urgent["minutes"] if m <= self.ack_target_minutes)
        weeks = self._monitored_s / (7 * 86400)
        total = sum(b["total"] for b in self._alerts.values())
        return {
            "total": total,
            # alerts per patient-week monitored in the period (PRO-TECT's alert burden)
            "burden": {
                "patient_weeks": round(weeks, 2),
                "per_patient_week": round(total / weeks, 3) if weeks else None,
                "by_severity": {
                    s: (round(b["total"] / weeks, 3) if weeks else None)
                    for s, b in self._alerts.items()
                },
            },
            "acknowledged": sum(b["acknowledged"] for b in self._alerts.values()),
            "by_severity": by_severity,
            "urgent_acknowledged_within_target": {
                "target_minutes": self.ack_target_minutes,
                "count": within,
                "share": _rate(within, urgent["total"]),
            },
        }


def item_view(item: AuditItem) -> dict[str, Any]:
    """An audited item as JSON (the drill-down rows, and the CSV's source)."""
    evidence = item.evidence
    return {
        "kind": item.kind,
        "decision_id": item.decision_id,
        "patient_id": item.patient_id,
        "unit": item.unit,
        "action": item.action,
        "at": utc_text_or_none(item.at),
        "due_at": utc_text_or_none(item.due_at),
        "outcome": item.outcome,
        "policy": item.policy,
        "recommended_dose_mg_m2": item.recommended_dose_mg_m2,
        "evidence": None
        if evidence is None
        else {
            "event_id": evidence.event_id,
            "type": evidence.type,
            "at": utc_text_or_none(evidence.at),
            "dose_mg_m2": evidence.dose_mg_m2,
            "dose_mg": evidence.dose_mg,
            "action": evidence.action,
        },
        "hours_to_action": None if item.hours_to_action is None else round(item.hours_to_action, 2),
        "days_to_therapy": None if item.days_to_therapy is None else round(item.days_to_therapy, 2),
    }
