"""Invites and patient reports (issue 16): who may invite whom (role, unit), the link's one
route, expiry and revocation, the audit rows (never the secret), and the report stored as a
`source: patient` assessment with the PRO-CTCAE composite grade."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import pytest

from monitor.app import create_app
from monitor.auth.tokens import create_token
from monitor.intake.invites import hash_secret
from monitor.policy_file import load_pack
from monitor.settings import Settings
from tests.common import factories as f
from tests.common.service import RunningService, rows, running_service
from tests.conftest import FIXED_NOW
from tests.monitor.api.test_guard import call_asgi, endless

DAY = dt.timedelta(days=1)
REPORT = {"numbness_tingling_severity": 3, "numbness_tingling_interference": 2,
          "new_weakness": False}  # fmt: skip


@pytest.fixture
def running(tmp_path: Any) -> Iterator[RunningService]:
    with running_service(
        tmp_path, care_team_phone="+44 20 7946 0000", policy="default@2"
    ) as service:
        bodies = [
            f.enrollment(FIXED_NOW - 20 * DAY, "R1", "r1-e", unit="u7"),
            f.enrollment(FIXED_NOW - 20 * DAY, "R9", "r9-e", unit="u9"),
        ]
        assert service.api.post_events({"events": bodies}).status_code == 202
        assert service.worker.wait_idle()
        yield service


def _invite(running: RunningService, patient: str = "R1", headers: Any = None) -> Any:
    return running.api.client.post(
        f"/v1/patients/{patient}/invites", headers=headers or running.api.headers("nurse")
    )


def _secret(created: Any) -> str:
    assert created.status_code == 201, created.text
    url: str = created.json()["url"]
    return url.split("#", 1)[1]


def _report(running: RunningService, secret: str, body: Any = None) -> Any:
    return running.api.client.post(
        "/v1/patient-reports",
        json=REPORT if body is None else body,
        headers={"Authorization": f"Bearer {secret}"},
    )


def _bound(running: RunningService, role: Any, *units: str) -> dict[str, str]:
    token = create_token(running.services.sessions, role, f"{role}-bound", FIXED_NOW, units=units)
    return {"Authorization": f"Bearer {token}"}


def test_a_nurse_invites_and_gets_the_link_once_with_its_qr_code(running: RunningService) -> None:
    created = _invite(running)
    secret = _secret(created)
    body = created.json()
    assert body["url"] == f"http://testserver/report#{secret}"
    assert secret.startswith("bmr_")
    assert len(secret) > 40
    assert body["expires_at"] == "2026-10-15T12:00:00Z"  # 14 days, the default
    assert body["qr_svg"].startswith("<svg")
    assert "</svg>" in body["qr_svg"]
    [stored] = rows(running.services, "SELECT * FROM patient_invite")
    assert stored["secret_hash"] == hash_secret(secret)
    assert secret not in str(stored)
    assert (stored["patient_id"], stored["unit"], stored["created_by"]) == (
        "R1",
        "u7",
        "test-nurse",
    )
    listed = running.api.get("/v1/patients/R1/invites")
    assert listed.status_code == 200
    [view] = listed.json()["invites"]
    assert view["state"] == "active"
    assert view["id"] == body["id"]
    assert secret not in listed.text
    assert stored["secret_hash"] not in listed.text


@pytest.mark.parametrize("role", ["infusion", "admin"])
def test_infusion_and_admin_invite_too(running: RunningService, role: Any) -> None:
    assert _invite(running, headers=running.api.headers(role)).status_code == 201


@pytest.mark.parametrize("role", ["physician", "pharmacy", "auditor", "ingest", "cds"])
def test_other_roles_may_not_invite(running: RunningService, role: Any) -> None:
    refused = _invite(running, headers=running.api.headers(role))
    assert refused.status_code == 403
    assert "allowed: nurse, infusion, admin" in refused.json()["detail"]
    assert rows(running.services, "SELECT * FROM patient_invite") == []


def test_a_token_bound_to_units_invites_only_their_patients(running: RunningService) -> None:
    nurse_u7 = _bound(running, "nurse", "u7")
    assert _invite(running, "R1", nurse_u7).status_code == 201
    outside = _invite(running, "R9", nurse_u7)
    assert outside.status_code == 404
    assert outside.json() == {"detail": "no events for patient 'R9'"}
    assert _invite(running, "NOBODY", nurse_u7).status_code == 404
    assert running.api.client.get("/v1/patients/R9/invites", headers=nurse_u7).status_code == 404
    [only] = rows(running.services, "SELECT patient_id FROM patient_invite")
    assert only == {"patient_id": "R1"}


def test_the_report_is_stored_as_a_patient_assessment_with_the_composite_grade(
    running: RunningService,
) -> None:
    secret = _secret(_invite(running))
    body = REPORT | {"new_weakness": True, "comment": "  worse at night\nin both feet "}
    sent = _report(running, secret, body)
    assert sent.status_code == 201, sent.text
    answer = sent.json()
    assert answer["care_team_phone"] == "+44 20 7946 0000"
    assert answer["received_at"] == "2026-10-01T12:00:00Z"
    assert answer["event_id"].startswith("pr-")
    [event] = rows(
        running.services, "SELECT * FROM event WHERE event_id = :e", e=answer["event_id"]
    )
    assert event["patient_id"] == "R1"
    assert event["type"] == "assessment"
    stored = json.loads(event["body"])
    assert stored["source"] == "patient"
    assert stored["grades"] == {"sensory": 2}  # severe (3) x somewhat (2): composite 2
    assert stored["occurred_at"] == "2026-10-01T12:00:00Z"
    assert stored["findings"] == {
        "pro_ctcae": {"numbness_tingling_severity": 3, "numbness_tingling_interference": 2},
        "new_weakness": True,
        "patient_comment": "worse at night\nin both feet",
    }
    # its outbox row was written with it; the worker folds it
    assert running.worker.wait_idle()
    [outbox] = rows(
        running.services, "SELECT processed_at FROM outbox WHERE event_pk = :pk", pk=event["id"]
    )
    assert outbox["processed_at"] is not None
    [invite] = rows(running.services, "SELECT last_used_at FROM patient_invite")
    assert invite["last_used_at"] is not None


def test_no_numbness_is_grade_0_and_interference_is_not_asked(running: RunningService) -> None:
    secret = _secret(_invite(running))
    none = {"numbness_tingling_severity": 0, "new_weakness": False}
    sent = _report(running, secret, none)
    assert sent.status_code == 201, sent.text
    [event] = rows(running.services, "SELECT body FROM event WHERE event_id LIKE 'pr-%'")
    stored = json.loads(event["body"])
    assert stored["grades"] == {"sensory": 0}
    assert stored["findings"] == {
        "pro_ctcae": {"numbness_tingling_severity": 0},
        "new_weakness": False,
    }


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"numbness_tingling_severity": 2, "new_weakness": False}, "required when"),
        (
            {
                "numbness_tingling_severity": 0,
                "numbness_tingling_interference": 1,
                "new_weakness": False,
            },
            "not asked when",
        ),
        (REPORT | {"numbness_tingling_severity": 5}, "less than or equal to 4"),
        (REPORT | {"new_weakness": "yes"}, "valid boolean"),
        (REPORT | {"comment": "x" * 501}, "at most 500 characters"),
        (REPORT | {"grade": 3}, "Extra inputs are not permitted"),
    ],
)
def test_an_invalid_report_is_refused_and_nothing_stored(
    running: RunningService, body: dict[str, Any], says: str
) -> None:
    secret = _secret(_invite(running))
    before = rows(running.services, "SELECT count(*) AS n FROM event")
    refused = _report(running, secret, body)
    assert refused.status_code == 422
    assert says in str(refused.json()["errors"])
    assert rows(running.services, "SELECT count(*) AS n FROM event") == before


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/patients/R1"),
        ("GET", "/v1/me"),
        ("POST", "/v1/events"),
        ("GET", "/v1/patients/R1/invites"),
        ("GET", "/v1/alerts"),
        ("GET", "/v1/patient-reports"),
    ],
)
def test_the_invite_opens_no_other_route(running: RunningService, method: str, path: str) -> None:
    secret = _secret(_invite(running))
    refused = running.api.client.request(
        method, path, headers={"Authorization": f"Bearer {secret}"}
    )
    assert refused.status_code == 401
    assert refused.json()["detail"] == "the token is unknown or revoked"


@pytest.mark.parametrize("role", ["nurse", "admin", "ingest"])
def test_a_staff_token_cannot_send_a_patient_report(running: RunningService, role: Any) -> None:
    refused = running.api.client.post(
        "/v1/patient-reports", json=REPORT, headers=running.api.headers(role)
    )
    assert refused.status_code == 403
    assert "it takes a patient's invite" in refused.json()["detail"]
    assert rows(running.services, "SELECT count(*) AS n FROM event WHERE event_id LIKE 'pr-%'") == [
        {"n": 0}
    ]


def test_an_unknown_link_is_401(running: RunningService) -> None:
    refused = _report(running, "bmr_not-a-real-invite")
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"] == "Bearer"
    assert refused.json()["detail"] == "This link is not valid; ask your care team for a new one."


def test_an_expired_link_is_401_with_a_kind_message(running: RunningService) -> None:
    secret = _secret(_invite(running))
    settings = running.services.settings
    running.services.settings = settings.model_copy(update={"fixed_now": FIXED_NOW + 14 * DAY})
    refused = _report(running, secret)
    assert refused.status_code == 401
    assert refused.json()["detail"] == "This link has expired; ask your care team for a new one."
    [view] = running.api.get("/v1/patients/R1/invites").json()["invites"]
    assert view["state"] == "expired"
    running.services.settings = settings.model_copy(
        update={"fixed_now": FIXED_NOW + 14 * DAY - dt.timedelta(seconds=1)}
    )
    assert _report(running, secret).status_code == 201  # valid to its last second


def test_the_link_days_come_from_the_settings(tmp_path: Any) -> None:
    with running_service(tmp_path, intake_link_days=3, policy="default@2") as service:
        enrol = f.enrollment(FIXED_NOW - DAY, "R3", "r3-e", unit="u7")
        assert service.api.post_events(enrol).status_code == 202
        created = _invite(service, "R3")
        assert created.json()["expires_at"] == "2026-10-04T12:00:00Z"


def test_a_revoked_link_stops_working_at_once(running: RunningService) -> None:
    created = _invite(running)
    secret, invite_id = _secret(created), created.json()["id"]
    assert _report(running, secret).status_code == 201
    other = _secret(_invite(running, "R9", running.api.headers("admin")))
    # an invite is revoked through its own patient only
    nurse = running.api.headers("nurse")
    wrong = running.api.client.delete(f"/v1/patients/R9/invites/{invite_id}", headers=nurse)
    assert wrong.status_code == 404
    revoked = running.api.client.delete(f"/v1/patients/R1/invites/{invite_id}", headers=nurse)
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["state"] == "revoked"
    assert revoked.json()["revoked_at"] == "2026-10-01T12:00:00Z"
    refused = _report(running, secret)
    assert refused.status_code == 401
    assert (
        refused.json()["detail"]
        == "This link is no longer valid; ask your care team for a new one."
    )
    assert _report(running, other).status_code == 201  # the other patient's link still works
    again = running.api.client.delete(f"/v1/patients/R1/invites/{invite_id}", headers=nurse)
    assert again.json()["revoked_at"] == "2026-10-01T12:00:00Z"  # the first revocation kept


def test_each_report_goes_to_the_invites_own_patient(running: RunningService) -> None:
    r9 = _secret(_invite(running, "R9", running.api.headers("admin")))
    assert _report(running, r9, REPORT | {"patient_id": "R1"}).status_code == 422
    assert _report(running, r9).status_code == 201
    [event] = rows(running.services, "SELECT patient_id FROM event WHERE event_id LIKE 'pr-%'")
    assert event == {"patient_id": "R9"}


def test_create_use_refusal_and_revoke_are_audited_without_the_secret(
    running: RunningService,
) -> None:
    created = _invite(running)
    secret, invite_id = _secret(created), created.json()["id"]
    assert _report(running, secret).status_code == 201
    nurse = running.api.headers("nurse")
    running.api.client.delete(f"/v1/patients/R1/invites/{invite_id}", headers=nurse)
    assert _report(running, secret).status_code == 401
    audit = rows(
        running.services,
        "SELECT actor, role, action, resource, status_code FROM audit_log "
        "WHERE action LIKE '%invites%' OR action LIKE '%patient-reports%' ORDER BY id",
    )
    seen = [(a["actor"], a["role"], a["action"], a["resource"], a["status_code"]) for a in audit]
    assert seen == [
        ("test-nurse", "nurse", "POST /v1/patients/{patient_id}/invites",
         f"patient:R1 invite:{invite_id}", 201),
        (f"invite:{invite_id}", "patient", "POST /v1/patient-reports", "patient:R1", 201),
        ("test-nurse", "nurse", "DELETE /v1/patients/{patient_id}/invites/{invite_id}",
         f"patient:R1 invite:{invite_id}", 200),
        (f"invite:{invite_id}", "patient", "POST /v1/patient-reports", "patient:R1", 401),
    ]  # fmt: skip
    everything = str(rows(running.services, "SELECT * FROM audit_log"))
    assert secret not in everything
    assert hash_secret(secret) not in everything
    assert running.services.audit.verify(checkpoints=False).broken_at is None


@pytest.mark.parametrize("number", ["call me", "12", "+44 20 7946 0000 ext. 12345678901234567890"])
def test_the_care_team_phone_must_look_like_a_number(number: str) -> None:
    with pytest.raises(ValueError, match="care_team_phone"):
        Settings(care_team_phone=number)
    assert Settings(care_team_phone="+1 (555) 010-0199").care_team_phone == "+1 (555) 010-0199"


def test_no_invite_under_a_pack_that_would_take_a_report_as_a_clinicians_grading(
    running: RunningService,
) -> None:
    """Version 1 packs fold a patient report like any grading (POLICY V9 off): a report could
    stop the drug by itself, so the intake is closed there, and says why."""
    secret = _secret(_invite(running))  # invited while the pack is default@2
    running.services.pack = load_pack("default@1", None)
    refused = _invite(running)
    assert refused.status_code == 409
    assert "this service decides with default@1" in refused.json()["detail"]
    closed = _report(running, secret)
    assert closed.status_code == 409
    assert closed.json()["detail"].startswith("Your care team cannot take reports")
    assert rows(running.services, "SELECT event_id FROM event WHERE event_id LIKE 'pr-%'") == []
    audited = rows(running.services, "SELECT action, status_code FROM audit_log ORDER BY id")
    assert audited[-2:] == [
        {"action": "POST /v1/patients/{patient_id}/invites", "status_code": 409},
        {"action": "POST /v1/patient-reports", "status_code": 409},
    ]


def test_an_unknown_link_is_refused_before_any_byte_of_the_body_is_read(
    running: RunningService,
) -> None:
    """The guard looks the invite up before the app reads the body, as it does API tokens."""
    app = create_app(running.services)
    headers = {
        "Content-Type": "application/json",
        "Content-Length": str(300 * 1024 * 1024),
        "Authorization": "Bearer bmr_" + "x" * 43,
    }
    status, _, body, received = call_asgi(
        app, "POST", "/v1/patient-reports", headers=headers, body_chunks=endless()
    )
    assert status == 401
    assert json.loads(body) == {
        "detail": "This link is not valid; ask your care team for a new one."
    }
    assert (received.calls, received.bytes) == (0, 0)
    # a real link goes through to the route (which reads the body and stores the report)
    headers["Authorization"] = f"Bearer {_secret(_invite(running))}"
    content = json.dumps(REPORT).encode()
    headers["Content-Length"] = str(len(content))
    status, _, body, _ = call_asgi(
        app, "POST", "/v1/patient-reports", headers=headers, body_chunks=iter([content])
    )
    assert status == 201, body
