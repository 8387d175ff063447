"""The fold checkpoint (policies/checkpoint.py) as stored on the patient row, and the events a
resumed fold needs."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence

from pydantic import ValidationError
from sqlalchemy import bindparam, or_, select
from sqlmodel import Session

from monitor.storage.models import EventRow
from policies.checkpoint import Checkpoint
from policies.engine import timeline_order
from policies.events import EVENT_ADAPTER, Event


def checkpoint_text(checkpoint: Checkpoint) -> str:
    key = checkpoint.last_key
    return json.dumps(
        {
            "pack": checkpoint.pack,
            "engine": checkpoint.engine,
            "last_key": [key[0].isoformat(), key[1]] if key else None,
            "state": checkpoint.state,
            "tail": list(checkpoint.tail),
        }
    )


def stored_checkpoint(text: str | None) -> Checkpoint | None:
    """The stored checkpoint, or None (none stored, or unreadable: the fold starts over)."""
    if not text:
        return None
    try:
        value = json.loads(text)
        key = value["last_key"]
        return Checkpoint(
            pack=str(value["pack"]),
            engine=str(value["engine"]),
            last_key=(dt.datetime.fromisoformat(key[0]), str(key[1])) if key else None,
            state=str(value["state"]),
            tail=tuple(str(d) for d in value["tail"]),
        )
    except (ValueError, KeyError, TypeError, IndexError):
        return None


_EVENTS = EventRow.__table__  # type: ignore[attr-defined]  # core: read on every fold
# a patient's events (row id, event id, body), but those an admin quarantined: the full fold's
# read (monitor.processing.service) and, narrowed, the resumed fold's
PATIENT_EVENTS = select(_EVENTS.c.id, _EVENTS.c.event_id, _EVENTS.c.body).where(
    _EVENTS.c.patient_id == bindparam("patient_id"), _EVENTS.c.quarantined_at.is_(None)
)
_EVENTS_AFTER = PATIENT_EVENTS.where(
    or_(
        _EVENTS.c.id.in_(bindparam("new_pks", expanding=True)),
        _EVENTS.c.occurred_at >= bindparam("since"),
    )
)


def events_after(
    session: Session, patient_id: str, checkpoint: Checkpoint, new_pks: Sequence[int]
) -> list[Event] | None:
    """What a resumed fold reads: the events of the open outbox rows (`new_pks`: not folded
    yet, or folded by a fold that could not close their rows) and those after the checkpoint's
    last event (dated after the clock then), validated: only these, the folded ones are in the
    checkpoint. None: one of them does not validate (the full fold names it)."""
    last = checkpoint.last_key
    params: dict[str, object] = {"patient_id": patient_id}
    if last is None:
        query = PATIENT_EVENTS
    else:
        query = _EVENTS_AFTER
        params.update(new_pks=list(new_pks), since=last[0])
    rows = session.connection().execute(query, params).all()
    wanted = set(new_pks)
    events = []
    for pk, _event_id, body in rows:
        try:
            event = EVENT_ADAPTER.validate_json(body)
        except ValidationError:
            return None
        if pk in wanted or last is None or timeline_order(event) > last:
            events.append(event)
    return events
