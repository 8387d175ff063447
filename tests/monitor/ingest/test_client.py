"""`python -m monitor ingest FILE`: local validation, batches, duplicates, conflicts, exit status.

`ingest_file` runs against the real app through Starlette's TestClient (the embedded services on
a temporary SQLite file); the command line itself runs against a real `serve` process.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pathlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlmodel import col, select

from monitor.app import create_app
from monitor.auth.roles import Role
from monitor.cli import main
from monitor.ingest.client import IngestReport, ingest_file
from monitor.ingest.service import body_hash
from monitor.services import Services, build_services
from monitor.settings import Settings
from monitor.storage.migrate import upgrade
from monitor.storage.models import EventRow, OutboxRow
from policies.events import canonical_body, parse_event
from tests.common.factories import administration, assessment, at, enrollment

ROOT = pathlib.Path(__file__).resolve().parents[3]
GRADE_7 = (
    "grades.sensory: 7 is out of range: must be at most 4 "
    "(CTCAE v5 sensory neuropathy is graded 0-4)"
)


class RecordingClient(TestClient):
    """The app in-process; remembers the event ids of every POST, in order."""

    def __init__(self, services: Services) -> None:
        super().__init__(create_app(services))
        self.sent: list[list[str]] = []
        self.statuses: list[int] = []

    def post(self, url: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        self.sent.append([e["event_id"] for e in kwargs["json"]["events"]])
        response = super().post(url, **kwargs)
        self.statuses.append(response.status_code)
        return response


def _write(path: pathlib.Path, lines: list[dict[str, Any] | str]) -> pathlib.Path:
    path.write_text(
        "".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines),
        encoding="utf-8",
    )
    return path


def _ingest(client: RecordingClient, path: pathlib.Path, token: str) -> IngestReport:
    return ingest_file(path, "http://unused", token, io.StringIO(), progress=False, client=client)


def _stored(services: Services) -> dict[str, str]:
    with services.sessions() as session:
        rows = session.execute(select(col(EventRow.event_id), col(EventRow.body_hash))).all()
    return dict(rows)


def _open_outbox(services: Services) -> int:
    with services.sessions() as session:
        return len(list(session.execute(select(col(OutboxRow.id))).scalars()))


def _hash(event: dict[str, Any]) -> str:
    return body_hash(canonical_body(parse_event(event)))


@pytest.fixture
def client(services: Services) -> Iterator[RecordingClient]:
    with RecordingClient(services) as recording:
        yield recording


def test_accepted_then_all_duplicates(
    client: RecordingClient, services: Services, tokens: dict[Role, str], tmp_path: pathlib.Path
) -> None:
    events = [
        enrollment(patient="P1", event_id="p1-enrol"),
        assessment(at(0, 1), patient="P1", event_id="p1-a0", sensory=1),
        administration(at(0, 2), 1.3, patient="P1", event_id="p1-d1"),
        enrollment(patient="P2", event_id="p2-enrol"),
        assessment(at(7), patient="P2", event_id="p2-a1", sensory=2, pain=1),
    ]
    path = _write(tmp_path / "events.jsonl", [*events, events[1]])  # a repeated line, same body

    first = _ingest(client, path, tokens["ingest"])
    assert (first.accepted, first.duplicates, first.rejected) == (5, 1, [])
    assert client.sent == [[e["event_id"] for e in [*events, events[1]]]]
    assert _stored(services) == {e["event_id"]: _hash(e) for e in events}
    assert _open_outbox(services) == 5

    again = _ingest(client, path, tokens["admin"])  # admin may ingest too
    assert (again.accepted, again.duplicates, again.rejected) == (0, 6, [])
    assert len(_stored(services)) == 5
    assert _open_outbox(services) == 5


def test_invalid_lines_are_reported_with_line_numbers_and_never_sent(
    client: RecordingClient, services: Services, tokens: dict[Role, str], tmp_path: pathlib.Path
) -> None:
    good_1 = enrollment(patient="P1", event_id="ok-1")
    bad = assessment(at(1), patient="P1", event_id="bad-1", sensory=7)
    good_2 = assessment(at(2), patient="P1", event_id="ok-2", sensory=1)
    path = _write(tmp_path / "events.jsonl", [good_1, bad, "", "{not json", "   ", good_2])

    report = _ingest(client, path, tokens["ingest"])

    assert report.rejected == [
        f"line 2: {GRADE_7}",
        "line 4: event: not valid JSON (key must be a string at line 1 column 2)",
    ]
    assert (report.accepted, report.duplicates) == (2, 0)
    assert client.sent == [["ok-1", "ok-2"]]
    assert set(_stored(services)) == {"ok-1", "ok-2"}


def test_a_conflicting_id_is_reported_and_the_rest_of_its_batch_stored(
    client: RecordingClient, services: Services, tokens: dict[Role, str], tmp_path: pathlib.Path
) -> None:
    original = assessment(at(3), patient="P1", event_id="dup-1", sensory=1)
    _write(tmp_path / "first.jsonl", [enrollment(patient="P1", event_id="enrol"), original])
    assert _ingest(client, tmp_path / "first.jsonl", tokens["ingest"]).accepted == 2
    client.sent.clear()
    client.statuses.clear()

    changed = assessment(at(3), patient="P1", event_id="dup-1", sensory=2)
    before = assessment(at(4), patient="P1", event_id="new-1", sensory=1)
    after = assessment(at(5), patient="P1", event_id="new-2", sensory=0)
    path = _write(tmp_path / "second.jsonl", [before, changed, after])

    report = _ingest(client, path, tokens["ingest"])

    assert report.rejected == ["line 2: event_id: 'dup-1' is already stored with a different body"]
    assert (report.accepted, report.duplicates) == (2, 0)
    assert client.sent == [["new-1", "dup-1", "new-2"], ["new-1", "new-2"]]
    assert client.statuses == [409, 202]
    stored = _stored(services)
    assert set(stored) == {"enrol", "dup-1", "new-1", "new-2"}
    assert stored["dup-1"] == _hash(original)  # the stored body is untouched


def test_an_id_repeated_in_the_file_with_another_body_is_rejected_locally(
    client: RecordingClient, services: Services, tokens: dict[Role, str], tmp_path: pathlib.Path
) -> None:
    first = assessment(at(1), patient="P1", event_id="twice", sensory=1)
    second = assessment(at(1), patient="P1", event_id="twice", sensory=3)
    path = _write(tmp_path / "events.jsonl", [enrollment(event_id="e0"), first, second])

    report = _ingest(client, path, tokens["ingest"])

    assert report.rejected == ["line 3: event_id: 'twice' repeats line 2 with another body"]
    assert (report.accepted, report.duplicates) == (2, 0)
    assert client.sent == [["e0", "twice"]]
    assert _stored(services)["twice"] == _hash(first)


def test_large_files_go_in_batches_of_500(
    client: RecordingClient, services: Services, tokens: dict[Role, str], tmp_path: pathlib.Path
) -> None:
    events = [
        assessment(at(i), patient=f"P{i % 7}", event_id=f"ev-{i:04d}", sensory=i % 3)
        for i in range(1_100)
    ]
    report = _ingest(client, _write(tmp_path / "events.jsonl", list(events)), tokens["ingest"])
    assert (report.accepted, report.duplicates, report.rejected) == (1_100, 0, [])
    assert [len(batch) for batch in client.sent] == [500, 500, 100]
    assert len(_stored(services)) == 1_100


def test_a_service_with_a_smaller_batch_limit_gets_halves(
    sqlite_settings: Settings, tokens: dict[Role, str], tmp_path: pathlib.Path
) -> None:
    settings = sqlite_settings.model_copy(update={"max_batch_events": 200})
    small = build_services(settings)
    upgrade(small.engine)
    events = [
        assessment(at(i), patient="P1", event_id=f"ev-{i:03d}", sensory=i % 2) for i in range(450)
    ]
    try:
        with RecordingClient(small) as client:
            report = _ingest(client, _write(tmp_path / "e.jsonl", list(events)), tokens["ingest"])
        assert (report.accepted, report.duplicates, report.rejected) == (450, 0, [])
        # 450 refused (422), then 225 refused, then 112 + 113 accepted, twice.
        assert [len(b) for b in client.sent] == [450, 225, 112, 113, 225, 112, 113]
        assert client.statuses == [422, 422, 202, 202, 422, 202, 202]
        assert len(_stored(small)) == 450
    finally:
        small.close()


def test_the_progress_bar_goes_to_the_error_stream(
    client: RecordingClient, tokens: dict[Role, str], tmp_path: pathlib.Path
) -> None:
    path = _write(tmp_path / "events.jsonl", [enrollment(event_id="e1")])
    err = io.StringIO()
    report = ingest_file(path, "http://unused", tokens["ingest"], err, client=client)
    assert report.accepted == 1
    assert err.getvalue().startswith("ingest ")
    assert " 1/1 " in err.getvalue()


# --- the command line against a real `serve` process ----------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """`python -m monitor serve` on a free port in a temporary directory: (url, admin token)."""
    home = tmp_path_factory.mktemp("serve")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MONITOR_")}
    env["PYTHONPATH"] = str(ROOT)
    log = (home / "serve.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "monitor", "serve", "--port", str(port)],
        cwd=home,
        env=env,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()  # printed before the server starts
        assert first.startswith("First start: admin token"), first
        token = first.rsplit(" ", 1)[1].strip()
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, (home / "serve.log").read_text()
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            assert time.monotonic() < deadline, "serve did not answer within 30 s"
            time.sleep(0.1)
        yield url, token
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def test_the_command_exits_1_when_lines_were_rejected(
    served: tuple[str, str], tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, token = served
    path = _write(
        tmp_path / "events.jsonl",
        [
            enrollment(patient="CLI1", event_id="cli-enrol"),
            assessment(at(1), patient="CLI1", event_id="cli-bad", sensory=7),
            assessment(at(2), patient="CLI1", event_id="cli-ok", sensory=1),
        ],
    )
    code = main(["ingest", str(path), "--url", url, "--token", token, "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 1
    assert out == "2 accepted, 0 duplicates, 1 rejected\n"
    assert err == f"line 2: {GRADE_7}\n"

    clean = _write(tmp_path / "clean.jsonl", [enrollment(patient="CLI1", event_id="cli-enrol")])
    code = main(["ingest", str(clean), "--url", url, "--token", token, "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 0
    assert (out, err) == ("0 accepted, 1 duplicates, 0 rejected\n", "")


def test_the_command_needs_a_token(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MONITOR_TOKEN", raising=False)
    path = _write(tmp_path / "events.jsonl", [enrollment(event_id="e1")])
    assert main(["ingest", str(path), "--url", "http://127.0.0.1:9", "--no-progress"]) == 2
    assert capsys.readouterr().err == "ingest: a token is required (--token or MONITOR_TOKEN)\n"


def test_a_wrong_token_or_url_is_a_message_not_a_traceback(
    served: tuple[str, str], tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, _token = served
    path = _write(tmp_path / "events.jsonl", [enrollment(patient="CLI2", event_id="cli2-e")])
    assert main(["ingest", str(path), "--url", url, "--token", "bm_wrong", "--no-progress"]) == 1
    assert capsys.readouterr().err == (
        "ingest: the service answered 401 (check the token and its role: ingest or admin); "
        "events sent before this batch are stored\n"
    )
    port = _free_port()  # nothing listens there
    code = main(
        [
            "ingest",
            str(path),
            "--url",
            f"http://127.0.0.1:{port}",
            "--token",
            "bm_x",
            "--no-progress",
        ]
    )
    assert code == 1
    assert capsys.readouterr().err.startswith(f"ingest: cannot reach http://127.0.0.1:{port}: ")
