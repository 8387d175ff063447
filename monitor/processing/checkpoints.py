"""The fold checkpoint (policies/checkpoint.py) as stored on the patient row, and the events a
resumed fold needs."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence

from pydantic import ValidationError
from sqlalchemy import or_, select
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


def events_after(
    session: Session, patient_id: str, checkpoint: Checkpoint, new_pks: Sequence[int]
) -> list[Event] | None:
    """What a resumed fold reads: the events of the open outbox rows (`new_pks`: not folded
    yet, or folded by a fold that could not close their rows) and those after the checkpoint's
    last event (dated after the clock then), validated: only these, the folded ones are in the
    checkpoint. None: one of them does not validate (the full fold names it)."""
    table = EventRow.__table__  # type: ignore[attr-defined]  # core: read on every fold
    where = [table.c.patient_id == patient_id, table.c.quarantined_at.is_(None)]
    last = checkpoint.last_key
    if last is not None:
        where.append(or_(table.c.id.in_(list(new_pks)), table.c.occurred_at >= last[0]))
    rows = session.connection().execute(select(table.c.id, table.c.body).where(*where)).all()
    wanted = set(new_pks)
    events = []
    for pk, body in rows:
        try:
            event = EVENT_ADAPTER.validate_json(body)
        except ValidationError:
            return None
        if pk in wanted or last is None or timeline_order(event) > last:
            events.append(event)
    return events
