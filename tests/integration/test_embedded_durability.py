"""The embedded default (`python -m monitor serve`, SQLite under ./var/, no servers): accepted
events survive a kill -9 of the process right after the 202 and are processed after restart."""

from __future__ import annotations

import pathlib
import re
import sys
import time

import httpx

from tests.integration.conftest import (
    FIXED_NOW_TEXT,
    ManagedProcess,
    child_env,
    db_engine,
    evaluate_stored,
    free_port,
    outbox_counts,
    synthetic_events,
    wait_processed,
    wait_until,
)

TOKEN = re.compile(r"admin token \(shown once, keep it safe\): (\S+)")


def start_serve(workdir: pathlib.Path, port: int) -> ManagedProcess:
    serve = ManagedProcess(
        "serve",
        [sys.executable, "-m", "monitor", "serve", "--port", str(port)],
        child_env(MONITOR_FIXED_NOW=FIXED_NOW_TEXT),  # no other setting: the embedded default
        workdir,
        workdir,
    )

    def healthy() -> bool:
        if not serve.alive():
            raise AssertionError(f"serve exited {serve.popen.returncode}\n{serve.tail(60)}")
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200

    wait_until(healthy, 30, "serve to answer /healthz", ignore=(httpx.HTTPError,))
    return serve


def test_serve_killed_right_after_202_processes_everything_after_restart(
    tmp_path: pathlib.Path,
) -> None:
    port = free_port()
    first = start_serve(tmp_path, port)
    second: ManagedProcess | None = None
    try:
        found = TOKEN.search(first.output())
        assert found, first.tail()
        headers = {"Authorization": f"Bearer {found.group(1)}"}
        events = synthetic_events(patients=100, events_per_patient=10, seed=21)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers) as client:
            response = client.post("/v1/events", json={"events": events}, timeout=60)
            first.kill()  # at once: the in-process worker has barely begun
        assert response.status_code == 202, response.text
        assert response.json()["accepted"] == 1_000

        engine = db_engine(f"sqlite:///{tmp_path / 'var' / 'monitor.db'}")
        at_kill = outbox_counts(engine)
        assert at_kill.total == 1_000  # every accepted event is on disk
        assert at_kill.open > 0, "everything was processed before the kill: nothing tested"

        second = start_serve(tmp_path, port)
        assert "admin token" not in second.output()  # the schema and token are kept
        wait_processed(engine, 1_000, 60, second.tail)
        expected = evaluate_stored(engine)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers) as client:
            for patient in sorted({e["patient_id"] for e in events}):
                state = client.get(f"/v1/patients/{patient}")
                assert state.status_code == 200, state.text
                assert state.json()["pending_events"] == 0
                decisions = client.get(f"/v1/patients/{patient}/decisions")
                assert decisions.status_code == 200, decisions.text
                assert decisions.json()["decisions"] == expected.get(patient, [])
        assert sum(len(d) for d in expected.values()) > 100
        engine.dispose()
    finally:
        first.stop()
        if second is not None:
            second.stop()


def test_serve_stops_on_sigterm_even_with_an_alert_stream_open(tmp_path: pathlib.Path) -> None:
    """An SSE stream never ends by itself; shutdown must not wait for it forever."""
    port = free_port()
    serve = start_serve(tmp_path, port)
    try:
        found = TOKEN.search(serve.output())
        assert found, serve.tail()
        headers = {"Authorization": f"Bearer {found.group(1)}"}
        url = f"http://127.0.0.1:{port}/v1/alerts/stream?after=0"
        with httpx.stream("GET", url, headers=headers, timeout=30) as stream:
            assert stream.status_code == 200
            serve.terminate()  # SIGTERM, with the stream open
            started = time.monotonic()
            wait_until(lambda: not serve.alive(), 20, "serve to exit after SIGTERM")
        assert time.monotonic() - started < 15
        assert serve.popen.returncode == 0, serve.tail()
    finally:
        serve.kill()
