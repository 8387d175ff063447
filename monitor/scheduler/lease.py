"""The scheduler lease: with several scheduler replicas, one acts at a time.

A row (`scheduler_lease`) names the holder and when its lease expires. Every tick the holder
renews it; another replica takes it only once it has expired (the holder died or hangs). A
hand-over can overlap one tick at most, and every job is safe to run twice anyway (row locks
with SKIP LOCKED, unique alerts), so the lease saves work rather than guarding correctness
alone. Times are the wall clock (UTC) of the replicas, kept in step by NTP; the lease lasts
several ticks, far longer than any skew.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import uuid

from sqlalchemy import delete, or_, update
from sqlalchemy.exc import DisconnectionError, OperationalError
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session, col

from monitor.operations.clock import wall_now
from monitor.storage.database import insert_for
from monitor.storage.models import SchedulerLeaseRow

log = logging.getLogger("monitor.lease")


class SchedulerLease:
    def __init__(
        self, sessions: sessionmaker[Session], ttl_s: float, name: str = "scheduler"
    ) -> None:
        self._sessions = sessions
        self._ttl = dt.timedelta(seconds=ttl_s)
        self.name = name
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._held = False

    def hold(self) -> bool:
        """Take or renew the lease; True while this replica holds it."""
        wall = wall_now()
        expires = wall + self._ttl
        with self._sessions.begin() as session:
            session.execute(
                insert_for(session)(SchedulerLeaseRow)
                .values(name=self.name, holder=self.holder, acquired_at=wall, expires_at=expires)
                .on_conflict_do_nothing()
            )
            mine = col(SchedulerLeaseRow.holder) == self.holder
            renewed = session.execute(
                update(SchedulerLeaseRow)
                .where(col(SchedulerLeaseRow.name) == self.name, mine)
                .values(expires_at=expires)
            ).rowcount  # type: ignore[attr-defined]  # a CursorResult
            taken = 0
            if not renewed:
                taken = session.execute(
                    update(SchedulerLeaseRow)
                    .where(
                        col(SchedulerLeaseRow.name) == self.name,
                        or_(mine, col(SchedulerLeaseRow.expires_at) < wall),
                    )
                    .values(holder=self.holder, acquired_at=wall, expires_at=expires)
                ).rowcount  # type: ignore[attr-defined]  # a CursorResult
        held = bool(renewed or taken)
        if held != self._held:
            log.info(
                "scheduler lease " + ("taken" if held else "lost"), extra={"holder": self.holder}
            )
        self._held = held
        return held

    def release(self) -> None:
        """On a clean shutdown: let another replica take over at once (if the database is
        unreachable, the lease simply expires)."""
        try:
            with self._sessions.begin() as session:
                session.execute(
                    delete(SchedulerLeaseRow).where(
                        col(SchedulerLeaseRow.name) == self.name,
                        col(SchedulerLeaseRow.holder) == self.holder,
                    )
                )
        except (OperationalError, DisconnectionError) as exc:
            log.warning("lease not released; it expires", extra={"error_type": type(exc).__name__})
        self._held = False
