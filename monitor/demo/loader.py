"""The demo's service: a data directory of its own, wiped at every start, the example timeline
moved to the present and sent through the normal pipeline (store + outbox + worker fold), and a
token per role a newcomer needs."""

from __future__ import annotations

import datetime as dt
import pathlib
import shutil
from dataclasses import dataclass

from monitor.auth.roles import ROLES, Role
from monitor.auth.tokens import create_token
from monitor.demo.shift import move_to_present
from monitor.ingest.service import accept_events, dispatch
from monitor.replay.timeline import read_timeline
from monitor.services import Services
from monitor.settings import Settings

# Written into the demo's directory: only a directory holding it (or an empty one) is wiped.
MARKER = ".bipn-monitor-demo"
# The roles a newcomer logs in with at `/` (admin first), as far as they exist.
DEMO_ROLES: tuple[Role, ...] = tuple(
    r for r in ("admin", "nurse", "physician", "pharmacy", "infusion", "auditor") if r in ROLES
)


class DemoDirError(ValueError):
    """The demo's directory is not one the demo may wipe."""


def demo_settings(settings: Settings, data_dir: pathlib.Path) -> Settings:
    """The service's settings on the demo's own directory: SQLite there, embedded, its own
    audit key and checkpoints. Refuses the normal data directory."""
    if data_dir.resolve() == settings.data_dir.resolve():
        raise DemoDirError(
            f"{data_dir} is the service's data directory (MONITOR_DATA_DIR): the demo wipes "
            "its directory, give it another one (--data-dir)"
        )
    return settings.model_copy(
        update={
            "data_dir": data_dir,
            "database_url": f"sqlite:///{data_dir / 'monitor.db'}",
            "broker_url": None,
            "audit_checkpoint_path": data_dir / "audit-checkpoints.jsonl",
        }
    )


def reset_data_dir(data_dir: pathlib.Path) -> None:
    """Wipe the demo's directory and make it again, empty but for its marker. A directory that
    exists, is not empty and has no marker is refused (it is not the demo's)."""
    if data_dir.exists():
        if not data_dir.is_dir():
            raise DemoDirError(f"{data_dir} is not a directory")
        if any(data_dir.iterdir()) and not (data_dir / MARKER).is_file():
            raise DemoDirError(
                f"{data_dir} is not empty and was not made by the demo ({MARKER} is missing): "
                "not wiped; give the demo an empty or new directory (--data-dir)"
            )
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True)
    (data_dir / MARKER).write_text(
        "made by `python -m monitor demo`: wiped and rebuilt at each start\n", encoding="utf-8"
    )


@dataclass(frozen=True, slots=True)
class DemoLoad:
    """What the demo loaded."""

    path: pathlib.Path
    events: int
    patients: int
    days: int  # how far the timeline was moved
    first: dt.datetime
    latest: dt.datetime

    def describe(self) -> str:
        return (
            f"Demo: {self.events} events of {self.patients} patients from {self.path}, moved "
            f"{self.days} days so the latest is {self.latest.isoformat()} "
            f"(first {self.first.date().isoformat()})"
        )


def load_timeline(services: Services, path: pathlib.Path, now: dt.datetime) -> DemoLoad:
    """Read the events file, move it so its latest event lies just before `now`, and store
    the events as ingest does (the dispatcher folds them). Raises ValueError on a bad file."""
    with path.open("rb") as lines:
        timeline = read_timeline(lines)
    if timeline.problems:
        raise ValueError(f"{path}: " + "; ".join(str(p) for p in timeline.problems[:5]))
    if not timeline.events:
        raise ValueError(f"{path}: no events")
    events, days = move_to_present(services.pack, timeline.events, now)
    size = services.settings.max_batch_events
    for start in range(0, len(events), size):
        dispatch(services, accept_events(services, events[start : start + size], now))
    times = [e.occurred_at for e in events]
    return DemoLoad(
        path=path,
        events=len(events),
        patients=len({e.patient_id for e in events}),
        days=days,
        first=min(times),
        latest=max(times),
    )


def demo_tokens(services: Services, now: dt.datetime) -> dict[Role, str]:
    """A new token per demo role, named `demo-ROLE` (printed once, stored hashed)."""
    return {role: create_token(services.sessions, role, f"demo-{role}", now) for role in DEMO_ROLES}
