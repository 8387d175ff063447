"""What a process builds once at start-up: settings, database, policy pack, dispatcher."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from sqlalchemy import Engine
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session

from monitor.auth.audit import AuditLog
from monitor.operations.tracing import trace_engine
from monitor.policy_file import load_pack
from monitor.settings import Settings
from monitor.storage.database import make_engine, make_session_factory
from policies.packs import PolicyPack


class Dispatcher(Protocol):
    """Sends `process_patient` work; called only after the events' transaction committed."""

    def enqueue(self, patient_ids: list[str]) -> int:
        """Queue one task per patient; returns how many were handed over (failures: logged,
        the outbox re-drive sends them later)."""
        ...

    def enqueue_deliveries(self, delivery_ids: list[int]) -> int:
        """Queue one webhook delivery task each (failures: the scheduler re-drives them)."""
        ...

    def ping(self) -> bool:
        """Is the queue reachable (readiness)?"""
        ...


@dataclass
class Services:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    pack: PolicyPack
    audit: AuditLog
    dispatcher: Dispatcher | None = field(default=None)

    def close(self) -> None:
        self.engine.dispose()


def build_services(settings: Settings) -> Services:
    engine = make_engine(settings)
    trace_engine(engine)  # SQL spans, when this process traces (monitor.operations.tracing)
    pack = load_pack(
        settings.policy if settings.policy_file is None else None, settings.policy_file
    )
    sessions = make_session_factory(engine)
    return Services(
        settings=settings,
        engine=engine,
        sessions=sessions,
        pack=pack,
        audit=AuditLog(sessions, settings),
    )
