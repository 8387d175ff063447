"""Issue 11, item 5: no patient data in logs, checked on the whole pipeline.

The production topology (api, a worker, a webhook worker, the scheduler; PostgreSQL, Redis)
runs at log level DEBUG, the most talkative. Through it go: valid events of every kind over
JSON and FHIR, a rejected event (422), a conflict (409), an event stored before the bounds that
dead-letters its patient (a sanitised traceback), webhook deliveries, the nurse's reads,
stream and acknowledgement, the scheduler's jobs. Every patient id and every fragment of
clinical text used is then looked for in every line every process wrote: none may appear.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import Any

import httpx
from sqlalchemy import text

from tests.common import factories as f
from tests.common.webhook_receiver import Receiver
from tests.conftest import FIXED_NOW
from tests.integration.conftest import StackFactory, db_engine, wait_until
from tests.monitor.interop.fhir.test_inbound import as_json, grading

PATIENTS = ["PXSECRET-7731", "PXSECRET-FHIR", "PXSECRET-DEAD", "PXSECRET-INVALID"]
FRAGMENTS = [
    "WARD-SECRET-UNIT",
    "Dr Secret Assessor",
    "SECRET-REASON-TEXT",
    "SECRET-NOTE-IN-EXTRA",
    "SECRET-FINDING",
    "SECRET-ACK-NOTE",
    "SECRET-THERAPY-DOSE",
    "SECRET-QUARANTINE-REASON",
]


def days(n: float) -> dt.datetime:
    return FIXED_NOW - dt.timedelta(days=30) + dt.timedelta(days=n)


def test_no_log_line_of_any_process_carries_a_patient_id_or_clinical_text(
    make_stack: StackFactory,
) -> None:
    stack = make_stack("logs", extra_env={"MONITOR_LOG_LEVEL": "DEBUG"})
    stack.start(workers=1, webhook_workers=1, scheduler=True)
    patient, fhir_patient, dead_patient, invalid_patient = PATIENTS
    engine = db_engine(stack.database_url)
    with Receiver() as receiver, stack.client() as client:
        assert (
            client.post(
                "/v1/admin/webhooks", json={"name": "pager", "url": receiver.url("/hook")}
            ).status_code
            == 201
        )
        events: list[dict[str, Any]] = [
            f.enrollment(days(0), patient=patient, event_id="lg-e", unit="WARD-SECRET-UNIT"),
            f.assessment(
                days(21),
                patient=patient,
                event_id="lg-a",
                sensory=3,
                assessor="Dr Secret Assessor",
                findings={"comment": "SECRET-FINDING", "ncs_pattern": "demyelinating"},
                extra={"note": "SECRET-NOTE-IN-EXTRA"},
            ),
            f.treatment_change(
                days(22),
                "discontinued",
                patient=patient,
                event_id="lg-t",
                reason="SECRET-REASON-TEXT",
            ),
            f.immunotherapy(days(25), "ivig", patient=patient, event_id="lg-i")
            | {"dose": "SECRET-THERAPY-DOSE"},
            f.enrollment(days(0), patient=dead_patient, event_id="lg-d-e"),
        ]
        assert client.post("/v1/events", json={"events": events}).status_code == 202
        # rejected: a validation error and a conflict, each naming the patient in its body
        bad = f.assessment(days(3), patient=invalid_patient, event_id="lg-bad", sensory=9)
        assert client.post("/v1/events", json=bad | {"unit": "x"}).status_code == 422
        conflict = events[1] | {"grades": {"sensory": 1}}
        assert client.post("/v1/events", json=conflict).status_code == 409
        # FHIR in
        observation = as_json(
            grading(ident="lg-obs", subject={"reference": f"Patient/{fhir_patient}"})
        )
        response = client.post(
            "/fhir/r4", json=observation, headers={"Content-Type": "application/fhir+json"}
        )
        assert response.status_code == 201, response.text
        # an event stored before the bounds existed: its fold dead-letters the patient
        stored = f.assessment(days(14), patient=dead_patient, event_id="lg-old", sensory=1)
        stored |= {"cycle": 100_000_000, "extra": {"note": "SECRET-NOTE-IN-EXTRA"}}
        with engine.begin() as connection:
            pk = connection.execute(
                text(
                    "INSERT INTO event (event_id, patient_id, type, occurred_at, received_at, "
                    "body, body_hash) VALUES ('lg-old', :p, 'assessment', :at, :at, :b, :h) "
                    "RETURNING id"
                ),
                {"p": dead_patient, "at": days(14), "b": json.dumps(stored), "h": "0" * 64},
            ).scalar_one()
            connection.execute(
                text(
                    "INSERT INTO outbox (event_pk, patient_id, created_at, enqueue_count) "
                    "VALUES (:pk, :p, :at, 0)"
                ),
                {"pk": pk, "p": dead_patient, "at": FIXED_NOW},
            )
        # the scheduler's re-drive picks the stored event up; the fold dead-letters
        wait_until(
            lambda: (
                engine.connect().execute(text("SELECT count(*) FROM dead_letter")).scalar() == 1
            ),
            30,
            "the stored event to be dead-lettered",
            diagnostics=stack.diagnostics,
        )
        wait_until(
            lambda: engine.connect()
            .execute(text("SELECT count(*) FROM outbox WHERE processed_at IS NULL AND "
                          "dead_letter_id IS NULL"))
            .scalar() == 0,
            30,
            "the other events to be folded",
        )  # fmt: skip
        # the nurse reads, streams and acknowledges
        nurse = {
            "Authorization": f"Bearer {stack.monitor('token', 'create', '--role', 'nurse').strip()}"
        }
        for path in ("", "/decisions", "/history"):
            assert client.get(f"/v1/patients/{patient}{path}", headers=nurse).status_code == 200
        alerts = client.get("/v1/alerts", headers=nurse, params={"limit": 50}).json()["alerts"]
        assert alerts
        acked = client.post(
            f"/v1/alerts/{alerts[0]['id']}/ack", json={"note": "SECRET-ACK-NOTE"}, headers=nurse
        )
        assert acked.status_code == 200, acked.text
        with (
            httpx.Client(base_url=stack.api_url, timeout=10) as streaming,
            streaming.stream("GET", "/v1/alerts/stream", params={"after": 0}, headers=nurse) as s,
        ):
            next(s.iter_lines())
        # admin sets the old event aside, with a reason
        quarantined = client.post(
            "/v1/admin/quarantined-events",
            json={"event_id": "lg-old", "reason": "SECRET-QUARANTINE-REASON"},
        )
        assert quarantined.status_code == 200, quarantined.text
        receiver.wait_for(lambda got: len(got) >= 3)
        time.sleep(2)  # a few scheduler ticks (reminders, escalations, checkpoints)
    engine.dispose()
    stack.stop()

    lines = [line for proc in stack.processes for line in proc.output().splitlines()]
    assert len(lines) > 100, "the processes logged almost nothing: the check would be empty"
    assert any('"work dead-lettered"' in line for line in lines)
    assert any('"webhook attempt"' in line for line in lines)
    leaks = [
        (needle, line[:300])
        for line in lines
        for needle in (*PATIENTS, *FRAGMENTS)
        if needle in line
    ]
    assert leaks == []
