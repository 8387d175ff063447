"""Moving a timeline to the present by whole days (monitor/demo/shift.py): pure functions."""

from __future__ import annotations

import datetime as dt
import typing
from typing import get_args

import pytest

from monitor.demo import EXAMPLE_TIMELINE
from monitor.demo.shift import (
    days_to_present,
    move_to_present,
    recite,
    renamed_decisions,
    shift_event,
    shift_events,
)
from monitor.replay.timeline import read_timeline
from policies import DEFAULT, Event, evaluate, parse_event
from policies.events import TreatmentChange
from tests.common import factories as f

PLUS_ONE = dt.timezone(dt.timedelta(hours=1))
PLUS_TWO = dt.timezone(dt.timedelta(hours=2))
MINUS_FIVE = dt.timezone(dt.timedelta(hours=-5))
EVENT_TYPES = get_args(get_args(Event)[0])


def example() -> list[Event]:
    with EXAMPLE_TIMELINE.open("rb") as lines:
        timeline = read_timeline(lines)
    assert timeline.problems == []
    return timeline.events


def one_of_each_type() -> list[Event]:
    when = dt.datetime(2026, 3, 2, 8, 40, tzinfo=PLUS_ONE)
    later = dt.datetime(2026, 5, 4, 23, 30, tzinfo=MINUS_FIVE)
    return f.events(
        f.enrollment(when, event_id="e"),
        f.assessment(when + dt.timedelta(days=7), event_id="a", sensory=1),
        f.administration(when + dt.timedelta(days=8), 1.3, event_id="d"),
        f.treatment_change(later, "dose_reduced", event_id="t", dose_mg_m2=1.0),
        f.immunotherapy(later + dt.timedelta(days=1), event_id="i"),
        f.course_end(later + dt.timedelta(days=2), event_id="c"),
    )


def datetime_fields(model: type[Event]) -> list[str]:
    hints = typing.get_type_hints(model, include_extras=True)
    return [
        name
        for name in model.model_fields
        if "datetime" in repr(hints[name])  # AwareDatetime, dt.datetime, Optional[...] alike
    ]


def test_the_sample_covers_every_event_type() -> None:
    assert {type(e) for e in one_of_each_type()} == set(EVENT_TYPES)


def test_every_date_time_field_of_every_event_type_moves_by_whole_days_with_its_offset() -> None:
    fields = {model.__name__: datetime_fields(model) for model in EVENT_TYPES}
    assert all("occurred_at" in names for names in fields.values()), fields
    for event in one_of_each_type():
        moved = shift_event(event, 40)
        for name in fields[type(event).__name__]:
            before, after = getattr(event, name), getattr(moved, name)
            if before is None:
                continue
            assert after - before == dt.timedelta(days=40), (event.event_id, name)
            assert after.utcoffset() == before.utcoffset(), (event.event_id, name)
            assert after.time() == before.time()  # the time of day as written
            assert after.weekday() == (before.weekday() + 40) % 7


def test_nothing_but_the_times_changes() -> None:
    for event in one_of_each_type():
        moved = shift_event(event, -3)
        assert type(moved) is type(event)
        assert moved.event_id == event.event_id
        assert moved.model_dump(exclude={"occurred_at"}) == event.model_dump(
            exclude={"occurred_at"}
        )
        # still a valid event, equal to itself read back from its wire form
        assert parse_event(moved.model_dump(mode="json", exclude_none=True)) == moved


def test_order_and_ids_are_kept() -> None:
    events = example()
    moved = shift_events(events, 200)
    assert [e.event_id for e in moved] == [e.event_id for e in events]
    by_time = sorted(events, key=lambda e: (e.occurred_at, e.event_id))
    moved_by_time = sorted(moved, key=lambda e: (e.occurred_at, e.event_id))
    assert [e.event_id for e in moved_by_time] == [e.event_id for e in by_time]


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        # the latest event of the example: 23 June 2026 10:30+02:00 = 08:30Z
        (dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.UTC), dt.date(2026, 12, 2)),  # today
        (dt.datetime(2026, 12, 2, 9, 30, tzinfo=dt.UTC), dt.date(2026, 12, 2)),  # an hour after
        (dt.datetime(2026, 12, 2, 9, 29, tzinfo=dt.UTC), dt.date(2026, 12, 1)),  # not yet: eve
        (dt.datetime(2026, 12, 2, 7, 0, tzinfo=dt.UTC), dt.date(2026, 12, 1)),
        (dt.datetime(2026, 6, 23, 9, 30, tzinfo=dt.UTC), dt.date(2026, 6, 23)),  # no move
        (dt.datetime(2026, 2, 1, 12, 0, tzinfo=dt.UTC), dt.date(2026, 2, 1)),  # backwards
    ],
)
def test_the_latest_event_lands_on_the_target_day_just_before_now(
    now: dt.datetime, expected: dt.date
) -> None:
    events = example()
    latest = max(e.occurred_at for e in events)
    assert latest == dt.datetime(2026, 6, 23, 10, 30, tzinfo=PLUS_TWO)
    moved, days = move_to_present(DEFAULT, events, now)
    assert days == days_to_present(latest, now)
    landed = max(e.occurred_at for e in moved)
    assert landed == latest + dt.timedelta(days=days)
    assert landed.astimezone(dt.UTC).date() == expected
    assert now - dt.timedelta(days=1, hours=1) < landed <= now - dt.timedelta(hours=1)
    assert landed.utcoffset() == dt.timedelta(hours=2)  # as written, though it may be winter


def test_days_to_present_needs_aware_times() -> None:
    with pytest.raises(ValueError, match="aware"):
        days_to_present(dt.datetime(2026, 1, 1), dt.datetime(2026, 2, 1, tzinfo=dt.UTC))


def test_the_moved_example_gives_the_same_decisions_moved() -> None:
    """The decisions of the moved timeline are the example's, each moved, and the treatment
    changes cite the moved decisions' ids (an id includes its decision's time)."""
    events = example()
    now = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.UTC)
    moved, days = move_to_present(DEFAULT, events, now)
    delta = dt.timedelta(days=days)
    before = evaluate(DEFAULT, events)
    after = evaluate(DEFAULT, moved)
    assert len(after) == len(before)

    def shape(decisions: list[typing.Any], shift: dt.timedelta) -> list[tuple[object, ...]]:
        return sorted(
            (d.patient_id, d.rule, d.action, d.trigger, d.at + shift, d.reason) for d in decisions
        )

    assert shape(after, dt.timedelta(0)) == shape(before, delta)
    ids = {d.decision_id for d in after}
    cited = [e for e in moved if isinstance(e, TreatmentChange) and e.decision_id]
    assert cited, "the example cites decisions"
    assert all(e.decision_id in ids for e in cited)
    renamed = renamed_decisions(DEFAULT, events, days)
    assert set(renamed) == {d.decision_id for d in before}
    assert set(renamed.values()) == ids


def test_recite_leaves_unknown_citations_and_other_events_alone() -> None:
    events = f.events(
        f.treatment_change(f.at(1), "dose_reduced", event_id="t1", decision_id="d-old"),
        f.treatment_change(f.at(2), "held", event_id="t2", decision_id="d-other"),
        f.assessment(f.at(3), event_id="a1"),
    )
    cited = recite(events, {"d-old": "d-new"})
    assert [getattr(e, "decision_id", None) for e in cited] == ["d-new", "d-other", None]
    assert cited[2] is events[2]
