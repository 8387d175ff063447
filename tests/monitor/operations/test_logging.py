"""Application logs carry counts and routes, never patient ids or clinical content."""

from __future__ import annotations

import json
import logging

import pytest
from fastapi.testclient import TestClient

from monitor.app import create_app
from monitor.auth.roles import Role
from monitor.operations.logsafe import configure_logging
from monitor.processing.inprocess import InProcessWorker
from monitor.services import Services
from tests.common.factories import assessment, at, enrollment

PATIENT = "PX-SECRET-4242"


def test_request_and_processing_logs_name_no_patient(
    services: Services, tokens: dict[Role, str], caplog: pytest.LogCaptureFixture
) -> None:
    worker = InProcessWorker(services)
    services.dispatcher = worker
    worker.start()
    caplog.set_level(logging.DEBUG)
    try:
        client = TestClient(create_app(services))
        body = {
            "events": [
                enrollment(at(0), patient=PATIENT),
                assessment(at(21), patient=PATIENT, sensory=2),
            ]
        }
        headers = {"Authorization": f"Bearer {tokens['ingest']}"}
        assert client.post("/v1/events", json=body, headers=headers).status_code == 202
        assert worker.wait_idle(10)
        nurse = {"Authorization": f"Bearer {tokens['nurse']}"}
        assert client.get(f"/v1/patients/{PATIENT}/decisions", headers=nurse).status_code == 200
    finally:
        worker.stop()
    ours = ("monitor", "workers", "uvicorn", "celery", "apscheduler")  # not the test's HTTP client
    messages = [
        (r.name, r.getMessage(), json.dumps(r.__dict__, default=str))
        for r in caplog.records
        if r.name.split(".")[0] in ours
    ]
    assert any(name == "monitor.processing" for name, _, _ in messages)
    assert any(name == "monitor.api" for name, _, _ in messages)
    for _, _, record in messages:
        assert PATIENT not in record
        assert "sensory" not in record


def test_logs_are_json_lines(services: Services, capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(services.settings)
    try:
        logging.getLogger("monitor.test").info("hello", extra={"count": 3})
        line = capsys.readouterr().err.strip().splitlines()[-1]
        assert json.loads(line) | {"asctime": None} == {
            "asctime": None,
            "level": "INFO",
            "name": "monitor.test",
            "message": "hello",
            "count": 3,
        }
    finally:
        logging.getLogger().handlers.clear()
