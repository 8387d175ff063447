"""New alerts pushed to the SSE streams: one PostgreSQL LISTEN per API process (issue 17).

`add_alerts` issues `pg_notify(CHANNEL, largest id)` in the inserting transaction, so the
notice arrives at commit. A daemon thread holds one autocommit connection with LISTEN and, on
each notice, wakes every waiting stream. Streams still poll every `stream_poll_s`: a lost
listener (it reconnects with bounded backoff) only means the poll's latency again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading

import psycopg
from sqlalchemy.engine import make_url

CHANNEL = "monitor_alerts"
BACKOFF_MAX_S = 5.0
log = logging.getLogger(__name__)


class Wakeup:
    """Wakes every stream waiting in any event loop; `wake` may be called from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self._generation = 0  # wake-ups so far: a stream reads it before it looks for alerts

    @property
    def generation(self) -> int:
        """Read before looking for new alerts and passed to `wait`: a wake-up that comes while
        the stream looks (no waiter registered yet) is not lost."""
        with self._lock:
            return self._generation

    def wake(self) -> None:
        """Set each waiting stream's event, in its own loop (thread-safe)."""
        with self._lock:
            self._generation += 1
            waiters = list(self._waiters)
        for loop, event in waiters:
            # a loop closed since (its stream gone) raises RuntimeError: nothing to wake there
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(event.set)

    async def wait(self, timeout: float, since: int | None = None) -> bool:
        """Wait for a wake-up or `timeout` seconds; True when woken. With `since` (a
        `generation` read earlier), at once if a wake-up came after that reading."""
        entry = (asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            if since is not None and self._generation != since:
                return True
            self._waiters.add(entry)
        try:
            await asyncio.wait_for(entry[1].wait(), timeout)
            return True
        except TimeoutError:
            return False
        finally:
            with self._lock:
                self._waiters.discard(entry)


def conninfo(database_url: str) -> str:
    """The SQLAlchemy URL as a libpq connection string (no driver suffix)."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


class Listener:
    """One LISTEN connection in a daemon thread, reconnecting with bounded backoff."""

    def __init__(self, database_url: str, wakeup: Wakeup) -> None:
        self._conninfo = conninfo(database_url)
        self._wakeup = wakeup
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.connections = 0  # how many times it connected (tests see reconnects)
        self.backend_pid: int | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="alert-listener", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        backoff = 0.1
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._conninfo, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.connections += 1
                    self.backend_pid = conn.info.backend_pid
                    backoff = 0.1
                    # a stream that missed alerts while the listener was down catches up now
                    self._wakeup.wake()
                    while not self._stop.is_set():
                        for _ in conn.notifies(timeout=0.5):
                            self._wakeup.wake()
            except psycopg.Error as error:
                log.warning("alert listener: connection lost (%s); retrying", type(error).__name__)
                self.backend_pid = None
                self._stop.wait(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)


WAKEUP = Wakeup()  # the process's streams wait on it (one listener per API process)
