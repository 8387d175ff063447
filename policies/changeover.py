"""What a change of policy pack tells the care team (pure).

A decision's id includes its pack, so when a patient's pack changes every stored decision is
superseded and the new pack's decisions are new rows. Alerting each of them, and correcting
each old one, would fill the feed with history nobody can act on. Only what is still
actionable is told: the pending reassessment (and an overdue one not made up), the course's
current dose recommendation, and an escalation not yet answered. When the new pack gives the
same advice for one of those (same trigger, action and reason; same dose, schedule, route,
due time, severity and audience), nothing is said at all.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from policies.decisions import Decision
from policies.state import PatientState

# what makes two decisions "the same recommendation" under two packs
MatchKey = tuple[str, str, str | None]
# what may differ between them (the rest: ids, the `policy` field, rationale wording)
COMPARED = ("rule", "severity", "audience", "dose_mg_m2", "schedule", "route", "due_at",
            "window_end", "triggers")  # fmt: skip
TIMER = "timer:"  # the trigger of a timer's decision: `timer:<kind>`
DOSE_ACTIONS = frozenset({"reduce_dose", "hold", "resume", "discontinue"})


def match_key(decision: Decision) -> MatchKey:
    """The event (or timer) that triggered it, the action and its reason."""
    return (decision.trigger, decision.action, decision.reason)


def differing_fields(before: Decision, after: Decision) -> list[str]:
    """The COMPARED fields in which two matched decisions differ (empty: the same advice)."""
    return [name for name in COMPARED if getattr(before, name) != getattr(after, name)]


def match_decisions(
    before: Iterable[Decision], after: Iterable[Decision]
) -> tuple[list[tuple[Decision, Decision | None]], list[Decision]]:
    """Each of `after` with its partner in `before` (by `match_key`, first come first
    matched), and the decisions of `before` left without a partner."""
    pool: dict[MatchKey, list[Decision]] = {}
    for decision in before:
        pool.setdefault(match_key(decision), []).append(decision)
    pairs: list[tuple[Decision, Decision | None]] = []
    for decision in after:
        candidates = pool.get(match_key(decision))
        pairs.append((decision, candidates.pop(0) if candidates else None))
    return pairs, [d for rest in pool.values() for d in rest]


@dataclass(frozen=True, slots=True)
class CourseView:
    """What decides which decisions of a course are still actionable."""

    started_at: dt.datetime
    pending_due: dt.datetime | None = None  # the pending reassessment's due time
    overdue_due: dt.datetime | None = None  # an overdue reassessment not yet made up
    escalation_open: bool = False  # escalated to immunotherapy, not yet answered

    @classmethod
    def of(cls, state: PatientState) -> CourseView | None:
        course = state.course
        if course is None:
            return None
        return cls(
            started_at=course.started_at,
            pending_due=course.pending.due_at if course.pending else None,
            overdue_due=course.overdue.due_at if course.overdue else None,
            escalation_open=course.escalated_at is not None and not course.escalation_answered,
        )


def _latest(decisions: Iterable[Decision]) -> Decision | None:
    return max(decisions, key=lambda d: (d.at, d.decision_id), default=None)


def still_actionable(decisions: Sequence[Decision], course: CourseView | None) -> set[str]:
    """The ids of the decisions someone can still act on: of the current course, what its
    latest event brought (an immune work-up asked for at the latest grading, say), its pending
    reassessment, its overdue (and missed) reassessment, its current dose recommendation and
    an unanswered escalation. Everything else is history."""
    if course is None:
        return set()
    ours = [d for d in decisions if d.at >= course.started_at]
    found: list[Decision | None] = [
        _latest(d for d in ours if d.action in DOSE_ACTIONS),
    ]
    latest_event = _latest(d for d in ours if not d.trigger.startswith(TIMER))
    if latest_event is not None:  # the current picture: what the latest event brought
        found += [d for d in ours if d.trigger == latest_event.trigger]
    if course.pending_due is not None:
        found.append(
            _latest(
                d
                for d in ours
                if d.action == "schedule_reassessment" and d.due_at == course.pending_due
            )
        )
    if course.overdue_due is not None:
        due = course.overdue_due
        found.append(
            _latest(d for d in ours if d.action == "reassessment_overdue" and d.due_at == due)
        )
        found.append(
            _latest(
                d
                for d in ours
                if d.action == "review_required"
                and d.reason == "reassessment_missed"
                and d.at > due
            )
        )
    if course.escalation_open:
        found.append(_latest(d for d in ours if d.action == "escalate_immunotherapy"))
    return {d.decision_id for d in found if d is not None}


@dataclass(frozen=True, slots=True)
class Changeover:
    """What to tell when a patient's decisions move to another pack."""

    alert: frozenset[str]  # new decisions that get a `new` alert
    correct: frozenset[str]  # superseded decisions that get a `correction` alert
    replaced_by: dict[str, str]  # superseded id -> the new pack's matching decision


def plan_changeover(
    before: Sequence[Decision],
    before_course: CourseView | None,
    after: Sequence[Decision],
    after_course: CourseView | None,
    fresh: frozenset[str] = frozenset(),
) -> Changeover:
    """`before`: the current decisions under the old pack; `after`: the new pack's. `fresh`:
    ids of new decisions that come from what the last fold had not seen (a new event, a timer
    come since), which are alerted as in any fold.

    A new decision is alerted when it is fresh, or actionable without a partner giving the
    same advice. An old decision is corrected when it was actionable and no partner gives the
    same advice (one that merely became history, say a reassessment a new grading satisfied,
    is not corrected: what it said still holds)."""
    old_actionable = still_actionable(before, before_course)
    new_actionable = still_actionable(after, after_course)
    pairs, _ = match_decisions(before, after)
    alert: set[str] = set()
    kept: set[str] = set()  # old decisions the new pack repeats with the same advice
    replaced_by: dict[str, str] = {}
    for decision, partner in pairs:
        same = partner is not None and not differing_fields(partner, decision)
        if partner is not None:
            replaced_by[partner.decision_id] = decision.decision_id
            if same:
                kept.add(partner.decision_id)
        if decision.decision_id in fresh or (decision.decision_id in new_actionable and not same):
            alert.add(decision.decision_id)
    return Changeover(
        alert=frozenset(alert),
        correct=frozenset(old_actionable - kept),
        replaced_by=replaced_by,
    )
