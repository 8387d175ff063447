"""The demo (monitor/demo/loader.py, `python -m monitor demo`): its own data directory, wiped at
each start; the example timeline moved to the present and folded by the normal pipeline."""

from __future__ import annotations

import datetime as dt
import os
import pathlib
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import typing
from collections.abc import Iterator

import httpx
import pytest

from monitor.auth.tokens import authenticate
from monitor.cli import build_parser
from monitor.demo import DEFAULT_DATA_DIR, EXAMPLE_TIMELINE
from monitor.demo.loader import (
    DEMO_ROLES,
    MARKER,
    DemoDirError,
    demo_settings,
    demo_tokens,
    load_timeline,
    reset_data_dir,
)
from monitor.processing.inprocess import InProcessWorker
from monitor.replay.timeline import read_timeline
from monitor.services import Services, build_services
from monitor.settings import Settings
from monitor.storage.migrate import upgrade
from policies import evaluate
from tests.common.service import rows
from tests.conftest import FIXED_NOW

ROOT = pathlib.Path(__file__).resolve().parents[3]


@pytest.fixture
def normal(tmp_path: pathlib.Path) -> Settings:
    """The service's own settings (its data directory holds something of value)."""
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "monitor.db").write_text("precious")
    return Settings(policy="default@1", data_dir=tmp_path / "var", fixed_now=FIXED_NOW)


@pytest.fixture
def demo(normal: Settings, tmp_path: pathlib.Path) -> Iterator[tuple[Services, InProcessWorker]]:
    directory = tmp_path / "demo"
    settings = demo_settings(normal, directory)
    reset_data_dir(directory)
    services = build_services(settings)
    upgrade(services.engine)
    worker = InProcessWorker(services)
    services.dispatcher = worker
    worker.start()
    try:
        yield services, worker
    finally:
        worker.stop()
        services.close()


def test_the_demo_settings_use_their_own_directory(
    normal: Settings, tmp_path: pathlib.Path
) -> None:
    settings = demo_settings(normal, tmp_path / "demo")
    assert settings.database_url == f"sqlite:///{tmp_path / 'demo' / 'monitor.db'}"
    assert settings.data_dir == tmp_path / "demo"
    assert settings.audit_checkpoint_path == tmp_path / "demo" / "audit-checkpoints.jsonl"
    assert settings.embedded
    with pytest.raises(DemoDirError, match="the service's data directory"):
        demo_settings(normal, normal.data_dir)


def test_the_directory_is_wiped_only_when_it_is_the_demos(tmp_path: pathlib.Path) -> None:
    directory = tmp_path / "demo"
    reset_data_dir(directory)  # new
    assert [p.name for p in directory.iterdir()] == [MARKER]
    (directory / "monitor.db").write_text("last run")
    reset_data_dir(directory)  # the demo's: wiped
    assert [p.name for p in directory.iterdir()] == [MARKER]
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("keep")
    with pytest.raises(DemoDirError, match="not empty and was not made by the demo"):
        reset_data_dir(other)
    assert (other / "notes.txt").read_text() == "keep"
    empty = tmp_path / "empty"
    empty.mkdir()
    reset_data_dir(empty)
    assert (empty / MARKER).is_file()


def test_the_example_is_loaded_through_the_pipeline_and_is_current(
    demo: tuple[Services, InProcessWorker], normal: Settings
) -> None:
    services, worker = demo
    now = services.settings.now()
    loaded = load_timeline(services, EXAMPLE_TIMELINE, now)
    assert worker.wait_idle(60), "the worker did not fold the example"
    assert (loaded.events, loaded.patients) == (112, 6)
    # the latest event lies within the last day (an hour's margin), at its own offset
    assert now - dt.timedelta(days=1, hours=1) < loaded.latest <= now - dt.timedelta(hours=1)
    assert loaded.latest.utcoffset() == dt.timedelta(hours=2)
    stored = rows(services, "SELECT count(*) AS n, max(occurred_at) AS latest FROM event")[0]
    assert stored["n"] == 112
    assert (
        rows(services, "SELECT count(*) AS n FROM outbox WHERE processed_at IS NULL")[0]["n"] == 0
    )

    with EXAMPLE_TIMELINE.open("rb") as lines:
        original = read_timeline(lines).events
    expected = evaluate(services.pack, original)  # replay's clock: the latest event
    current = rows(
        services, "SELECT patient_id, action, due_at FROM decision WHERE superseded_at IS NULL"
    )
    assert len(current) == len(expected)
    assert {(d["patient_id"], d["action"]) for d in current} == {
        (d.patient_id, d.action) for d in expected
    }
    # no one is overdue but the example's own missed reassessment (BZ-A01, weeks ago)
    overdue = [d for d in current if d["action"] == "reassessment_overdue"]
    assert [d["patient_id"] for d in overdue] == ["BZ-A01"]
    # every patient still followed has a reassessment due after now (BZ-B03's watch closed;
    # BZ-B40 is the mistyped id, with no course)
    future = {
        d["patient_id"]
        for d in current
        if d["action"] == "schedule_reassessment"
        and dt.datetime.fromisoformat(str(d["due_at"])).replace(tzinfo=dt.UTC) > now
    }
    assert future == {"BZ-A01", "BZ-A02", "BZ-A05", "BZ-B04"}
    assert rows(services, "SELECT count(*) AS n FROM alert")[0]["n"] > 0
    assert (normal.data_dir / "monitor.db").read_text() == "precious"


def test_the_demo_tokens_log_in_with_their_roles(demo: tuple[Services, InProcessWorker]) -> None:
    services, _ = demo
    tokens = demo_tokens(services, FIXED_NOW)
    assert (
        tuple(tokens)
        == DEMO_ROLES
        == ("admin", "nurse", "physician", "pharmacy", "infusion", "auditor")
    )
    for role, token in tokens.items():
        principal = authenticate(services.sessions, token, FIXED_NOW)
        assert principal is not None
        assert (principal.role, principal.name) == (role, f"demo-{role}")


@pytest.mark.parametrize("argv", [["demo"], ["serve", "--demo"]])
def test_demo_and_serve_demo_take_the_same_options(argv: list[str]) -> None:
    args = build_parser().parse_args([*argv, "--host", "0.0.0.0", "--port", "8123"])
    assert (args.host, args.port) == ("0.0.0.0", 8123)
    assert args.demo_dir == DEFAULT_DATA_DIR == pathlib.Path("var/demo")
    assert args.demo_events == EXAMPLE_TIMELINE
    assert not build_parser().parse_args(["serve"]).demo


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def printed_until_tokens(proc: subprocess.Popen[str], timeout: float = 60) -> list[str]:
    """The demo's standard output up to its last token line (read on a thread: no hang)."""
    lines: queue.Queue[str] = queue.Queue()

    def read(stream: typing.IO[str]) -> None:
        for line in stream:
            lines.put(line.rstrip("\n"))

    assert proc.stdout is not None
    threading.Thread(target=read, args=(proc.stdout,), daemon=True).start()
    printed: list[str] = []
    while not printed or not printed[-1].lstrip().startswith("auditor"):
        printed.append(lines.get(timeout=timeout))
    return printed


def wait_listening(client: httpx.Client) -> None:
    for _ in range(200):
        try:
            client.get("/healthz")
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise AssertionError("the demo does not listen")


def test_the_demo_command_serves_the_moved_example(tmp_path: pathlib.Path) -> None:
    """`python -m monitor demo` end to end: it prints what it loaded and the tokens once, the
    nurse token reads the feed, and a second start begins afresh (the first tokens are gone)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MONITOR_")}
    env |= {"PYTHONPATH": str(ROOT), "MONITOR_DATA_DIR": str(tmp_path / "var")}
    command = [sys.executable, "-m", "monitor", "demo", "--port", str(port)]
    command += ["--demo-dir", str(tmp_path / "demo")]
    earlier: dict[str, str] = {}
    for _ in range(2):
        proc = subprocess.Popen(
            command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True,
        )  # fmt: skip
        try:
            printed = printed_until_tokens(proc)
            assert printed[0].startswith("Demo: 112 events of 6 patients"), printed
            assert "wiped and rebuilt at every start" in printed[1]
            tokens = dict(line.split() for line in printed if line.startswith("  "))
            assert set(tokens) == {"admin", "nurse", "physician", "pharmacy", "infusion", "auditor"}
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
                wait_listening(client)
                auth = {"Authorization": f"Bearer {tokens['nurse']}"}
                feed = client.get("/v1/alerts", headers=auth)
                assert feed.status_code == 200, feed.text
                assert feed.json()["alerts"]
                assert client.get("/").status_code == 200
                if earlier:
                    old = {"Authorization": f"Bearer {earlier['nurse']}"}
                    assert client.get("/v1/alerts", headers=old).status_code == 401
            earlier = tokens
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    assert not (tmp_path / "var").exists()  # the service's data directory: untouched
    assert (tmp_path / "demo" / MARKER).is_file()
