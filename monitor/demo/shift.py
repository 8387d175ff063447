"""Moving a timeline in time by whole days: pure functions, no clock, no database.

The example timeline (examples/timeline.jsonl) is dated January to June 2026; shown on any later
day, every patient would look overdue. The demo moves it so that its latest event lies just
before now. The move is a whole number of days, so weekdays and times of day stay as written,
and every event keeps its own UTC offset (`+01:00` stays `+01:00`). Event ids, order and every
other field are unchanged, except the decision ids that treatment changes cite: a decision's id
includes its time, so those are renamed to the ids the moved timeline's decisions get.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence

from policies import Event, PolicyPack, evaluate
from policies.decisions import decision_id
from policies.events import TreatmentChange

DAY = dt.timedelta(days=1)
# The latest event lands at least this long before now (so it is never in the future).
DEFAULT_MARGIN = dt.timedelta(hours=1)


def days_to_present(
    latest: dt.datetime, now: dt.datetime, margin: dt.timedelta = DEFAULT_MARGIN
) -> int:
    """The whole number of days that moves `latest` to the last moment at or before
    `now - margin` with the same time of day: today if that time has passed by `margin`,
    else yesterday. Negative if `latest` is later than that."""
    if latest.tzinfo is None or now.tzinfo is None:
        raise ValueError("latest and now must be aware datetimes")
    return (now - margin - latest) // DAY


def shift_event(event: Event, days: int) -> Event:
    """The event `days` days later (earlier if negative): every date-time field moves, with its
    offset kept; nothing else changes."""
    delta = dt.timedelta(days=days)
    moved = {
        name: value + delta
        for name in type(event).model_fields
        if isinstance(value := getattr(event, name), dt.datetime)
    }
    return event.model_copy(update=moved)


def shift_events(events: Iterable[Event], days: int) -> list[Event]:
    """Every event moved by `days` days, in the order given."""
    return [shift_event(event, days) for event in events]


def renamed_decisions(pack: PolicyPack, events: Sequence[Event], days: int) -> dict[str, str]:
    """Old id -> new id of every decision the pack makes on `events` (clock: the latest event),
    once the timeline is moved by `days` days: the ids are computed, not folded again."""
    delta = dt.timedelta(days=days)
    return {
        d.decision_id: decision_id(
            policy=d.policy,
            patient_id=d.patient_id,
            rule=d.rule,
            action=d.action,
            trigger=d.trigger,
            at=d.at + delta,
            due_at=d.due_at + delta if d.due_at is not None else None,
            reason=d.reason,
        )
        for d in evaluate(pack, events)
    }


def recite(events: Iterable[Event], renamed: Mapping[str, str]) -> list[Event]:
    """Treatment changes citing a renamed decision cite its new id; others are unchanged."""
    return [
        event.model_copy(update={"decision_id": renamed[event.decision_id]})
        if isinstance(event, TreatmentChange)
        and event.decision_id is not None
        and event.decision_id in renamed
        else event
        for event in events
    ]


def move_to_present(
    pack: PolicyPack,
    events: Sequence[Event],
    now: dt.datetime,
    margin: dt.timedelta = DEFAULT_MARGIN,
) -> tuple[list[Event], int]:
    """The timeline moved so its latest event lies less than a day before `now - margin`, at
    its own time of day, with the decisions it cites renamed; and the days it moved."""
    if not events:
        return [], 0
    days = days_to_present(max(e.occurred_at for e in events), now, margin)
    moved = shift_events(events, days)
    return recite(moved, renamed_decisions(pack, events, days)), days
