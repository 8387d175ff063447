"""Bearer tokens and roles (CONTRACT.md: every endpoint but health needs a token whose role
allows it; issue 3, item 5): 401 without a token or with a bad one, 403 with the wrong role,
for every endpoint and role, table-driven from the app's own routes."""

from __future__ import annotations

import datetime as dt
import itertools
import pathlib
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.routing import APIRoute
from sqlalchemy import text

from monitor.api.guard import leaf_routes
from monitor.auth.roles import ROLES, Role
from monitor.auth.tokens import Principal, authenticate, create_token, hash_token
from monitor.intake.invites import create_invite
from monitor.processing.jobs import dead_letter
from monitor.storage.models import WebhookSecretRow
from monitor.webhooks.signing import new_secret
from tests.common import factories as f
from tests.common.cds import draft_order, hook_request
from tests.common.service import RunningService, rows, running_service
from tests.conftest import FIXED_NOW
from tests.monitor.interop.fhir.test_inbound import as_json, grading

CARE: set[Role] = {"nurse", "physician", "pharmacy", "infusion"}
# Who may call what, besides `admin` (who may do everything). Health needs no token.
ALLOWED: dict[tuple[str, str], set[Role]] = {
    ("POST", "/v1/events"): {"ingest"},
    ("GET", "/v1/patients/{patient_id}"): CARE,
    ("GET", "/v1/patients/{patient_id}/decisions"): CARE,
    ("GET", "/v1/patients/{patient_id}/clearance"): {"infusion"},
    ("GET", "/v1/patients/{patient_id}/history"): CARE,
    ("GET", "/v1/patients/{patient_id}/decisions/{decision_id}"): CARE,
    ("GET", "/v1/reassessments"): CARE,
    ("POST", "/v1/patients/{patient_id}/invites"): {"nurse", "infusion"},
    ("GET", "/v1/patients/{patient_id}/invites"): {"nurse", "infusion"},
    ("DELETE", "/v1/patients/{patient_id}/invites/{invite_id}"): {"nurse", "infusion"},
    # a patient's invite link only (tests/monitor/intake): every token, admin's too, is refused
    ("POST", "/v1/patient-reports"): set(),
    ("GET", "/v1/units/{unit}/chair"): {"infusion", "nurse"},
    ("GET", "/v1/units/{unit}/reports"): CARE,
    ("POST", "/v1/units/{unit}/chair/{patient_id}/administrations"): {"infusion"},
    ("POST", "/v1/units/{unit}/chair/{patient_id}/assessments"): {"infusion", "nurse"},
    ("GET", "/v1/alerts"): CARE,
    ("GET", "/v1/alerts/stream"): CARE,
    ("POST", "/v1/alerts/{alert_id}/ack"): CARE,
    ("GET", "/v1/reports/adherence"): {"auditor"},
    ("GET", "/v1/sources"): set(ROLES) - {"admin"},
    ("GET", "/v1/me"): set(ROLES) - {"admin"},
    ("GET", "/v1/admin/dead-letters"): set(),
    ("POST", "/v1/admin/dead-letters/{dead_letter_id}/retry"): set(),
    ("POST", "/v1/admin/webhooks"): set(),
    ("GET", "/v1/admin/webhooks"): set(),
    ("DELETE", "/v1/admin/webhooks/{webhook_id}"): set(),
    ("POST", "/v1/admin/webhooks/{webhook_id}/secrets"): set(),
    ("DELETE", "/v1/admin/webhooks/{webhook_id}/secrets/{secret_id}"): set(),
    ("GET", "/v1/admin/webhook-deliveries"): set(),
    ("POST", "/v1/admin/webhook-deliveries/{delivery_id}/retry"): set(),
    ("POST", "/v1/admin/quarantined-events"): set(),
    ("GET", "/v1/admin/quarantined-events"): set(),
    ("DELETE", "/v1/admin/quarantined-events"): set(),
    ("GET", "/v1/admin/tokens"): set(),
    ("POST", "/v1/admin/tokens/{token_id}/revoke"): set(),
    ("POST", "/fhir/r4"): {"ingest"},
    ("POST", "/fhir/r4/{resource_type}"): {"ingest"},
    ("GET", "/fhir/r4/Patient/{patient_id}/$monitor-summary"): CARE,
    ("POST", "/fhir/r4/Patient/{patient_id}/$monitor-summary"): CARE,
    ("POST", "/cds-services/{service_id}"): {"cds"},
    ("POST", "/cds-services/{service_id}/feedback"): {"cds"},
}
# The web page: static HTML and script (its data comes from the API with a token); not in the
# OpenAPI schema.
PAGES = {("GET", "/"), ("GET", "/patients/{patient_id}"), ("GET", "/chair"), ("GET", "/report")}
# ... and how they log in: a pasted token, or a sign-in at the OpenID Connect provider, whose
# flow routes exist only when it is configured (tests/monitor/web/signin/test_signin_browser.py)
PAGES |= {("GET", "/auth/options")}
# CDS Hooks discovery: what the service offers, no patient data (the spec's clients call it to
# configure themselves).
PUBLIC = {("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics"), ("GET", "/cds-services")}
# FHIR's description of the server: what FHIR clients read before anything else
PUBLIC |= {("GET", "/fhir/r4/metadata"), ("GET", "/fhir/r4/OperationDefinition/monitor-summary")}
# ... and the patient report's Questionnaire (a form: no patient data)
PUBLIC |= {("GET", "/fhir/r4/Questionnaire/bipn-patient-report")}
PUBLIC |= PAGES
# What a permitted call answers (the fixture makes each one succeed).
SUCCESS = {
    ("POST", "/v1/events"): 202,
    ("GET", "/v1/patients/{patient_id}"): 200,
    ("GET", "/v1/patients/{patient_id}/decisions"): 200,
    ("GET", "/v1/patients/{patient_id}/clearance"): 200,
    ("GET", "/v1/patients/{patient_id}/history"): 200,
    ("GET", "/v1/patients/{patient_id}/decisions/{decision_id}"): 200,
    ("GET", "/v1/reassessments"): 200,
    ("POST", "/v1/patients/{patient_id}/invites"): 201,
    ("GET", "/v1/patients/{patient_id}/invites"): 200,
    ("DELETE", "/v1/patients/{patient_id}/invites/{invite_id}"): 200,
    ("POST", "/v1/patient-reports"): 201,
    ("GET", "/v1/units/{unit}/chair"): 200,
    ("GET", "/v1/units/{unit}/reports"): 200,
    ("POST", "/v1/units/{unit}/chair/{patient_id}/administrations"): 201,
    ("POST", "/v1/units/{unit}/chair/{patient_id}/assessments"): 201,
    ("GET", "/v1/alerts"): 200,
    ("GET", "/v1/alerts/stream"): 200,
    ("POST", "/v1/alerts/{alert_id}/ack"): 200,
    ("GET", "/v1/reports/adherence"): 200,
    ("GET", "/v1/sources"): 200,
    ("GET", "/v1/me"): 200,
    ("GET", "/v1/admin/dead-letters"): 200,
    ("POST", "/v1/admin/dead-letters/{dead_letter_id}/retry"): 202,
    ("POST", "/v1/admin/webhooks"): 201,
    ("GET", "/v1/admin/webhooks"): 200,
    ("DELETE", "/v1/admin/webhooks/{webhook_id}"): 200,
    ("POST", "/v1/admin/webhooks/{webhook_id}/secrets"): 201,
    ("DELETE", "/v1/admin/webhooks/{webhook_id}/secrets/{secret_id}"): 200,
    ("GET", "/v1/admin/webhook-deliveries"): 200,
    ("POST", "/v1/admin/webhook-deliveries/{delivery_id}/retry"): 202,
    ("POST", "/v1/admin/quarantined-events"): 200,
    ("GET", "/v1/admin/quarantined-events"): 200,
    ("DELETE", "/v1/admin/quarantined-events"): 200,
    ("GET", "/v1/admin/tokens"): 200,
    ("POST", "/v1/admin/tokens/{token_id}/revoke"): 200,
    ("POST", "/fhir/r4"): 201,
    ("POST", "/fhir/r4/{resource_type}"): 201,
    ("GET", "/fhir/r4/Patient/{patient_id}/$monitor-summary"): 200,
    ("POST", "/fhir/r4/Patient/{patient_id}/$monitor-summary"): 200,
    ("POST", "/cds-services/{service_id}"): 200,
    ("POST", "/cds-services/{service_id}/feedback"): 200,
}
# Allowed on the route, refused by what the call is about: alert 1 is addressed to the nurse,
# and only a role of an alert's audience acknowledges it (that would stop its escalation).
NOT_THEIRS = {("POST", "/v1/alerts/{alert_id}/ack"): CARE - {"nurse"}}
# Opened by a patient's invite link, never by a token (tests/monitor/intake/test_router.py).
INVITE_ONLY = {("POST", "/v1/patient-reports")}
PROTECTED = sorted(ALLOWED)
_event_ids = itertools.count()
_chair_patients = itertools.count()
CHAIR_PATIENTS = 60


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    # default@2: patient reports (and so invites) are taken only where they advise (V9)
    with running_service(tmp_path_factory.mktemp("auth"), policy="default@2") as service:
        body = f.enrollment(f.at(0), patient="P1", event_id="auth-e0")
        assert service.api.post_events(body).status_code == 202
        assert service.worker.wait_idle()
        # patients in a unit, cleared for a dose: one per call to the chair's forms
        chair = [
            f.enrollment(FIXED_NOW - dt.timedelta(days=3), patient=f"PC{n}", unit="u-auth")
            for n in range(CHAIR_PATIENTS)
        ]
        assert service.api.post_events({"events": chair}).status_code == 202
        assert service.worker.wait_idle()
        assert dead_letter(service.services, "P1", RuntimeError("x"), 1) == 1
        # webhook 1 with a failed delivery of alert 1 (to retry); webhook 2 (to disable)
        admin = service.api.headers("admin")
        for name in ("one", "two"):
            hook = {"name": name, "url": "http://127.0.0.1:9/hook"}
            assert service.api.client.post(
                "/v1/admin/webhooks", json=hook, headers=admin
            ).is_success
        with service.services.engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO webhook_delivery (alert_id, endpoint_id, status, attempts, "
                    "next_attempt_at, created_at, failed_at) VALUES (1, 1, 'failed', 8, "
                    "'2026-10-01 12:00:00.000000', '2026-10-01 12:00:00.000000', "
                    "'2026-10-01 12:00:00.000000')"
                )
            )
        # one order check, so that feedback has a card to be about
        checked = service.api.client.post(
            "/cds-services/bortezomib-order-check",
            json=hook_request("P1", draft_order(patient="P1")),
            headers=admin,
        )
        assert checked.status_code == 200, checked.text
        ISSUED_CARD[:] = [checked.json()["cards"][0]["uuid"]]
        yield service


ISSUED_CARD: list[str] = []


def call(running: RunningService, method: str, path: str, headers: dict[str, str]) -> Any:
    """One request to the route, with a body and path that succeed when allowed."""
    concrete = (
        path.replace("{patient_id}", "P1")
        .replace("{dead_letter_id}", "1")
        .replace("{alert_id}", "1")
        .replace("{webhook_id}", "2")
        .replace("{delivery_id}", "1")
        .replace("{service_id}", "bortezomib-order-check")
        .replace("{resource_type}", "Observation")
    )
    if "{token_id}" in path:  # a token of its own to revoke, not one the matrix uses
        create_token(running.services.sessions, "nurse", "to-revoke", FIXED_NOW)
        [newest] = rows(running.services, "SELECT max(id) AS id FROM api_token")
        concrete = concrete.replace("{token_id}", str(newest["id"]))
    if "{secret_id}" in path:  # a second secret of webhook 1 to retire (its first one stays)
        with running.services.sessions.begin() as session:
            added = WebhookSecretRow(endpoint_id=1, secret=new_secret(), created_at=FIXED_NOW)
            session.add(added)
            session.flush()
        concrete = path.replace("{webhook_id}", "1").replace("{secret_id}", str(added.id))
    if "{invite_id}" in path:  # an invite of its own to revoke
        new = create_invite(running.services.sessions, "P1", None, "matrix", FIXED_NOW, 14)
        concrete = concrete.replace("{invite_id}", str(new.row.id))
    if "{decision_id}" in path:
        [first] = rows(
            running.services, "SELECT min(decision_id) AS d FROM decision WHERE patient_id = 'P1'"
        )
        concrete = concrete.replace("{decision_id}", first["d"])
    if "/chair/" in path:  # a patient of its own in a unit, cleared for a dose
        patient = f"PC{next(_chair_patients) % CHAIR_PATIENTS}"
        concrete = path.replace("{unit}", "u-auth").replace("{patient_id}", patient)
        form: dict[str, Any] = (
            {"route": "SC", "dose_mg_m2": 1.3}
            if path.endswith("administrations")
            else {"grades": {"sensory": 0}}
        )
        return running.api.client.post(concrete, json=form, headers=headers)
    concrete = concrete.replace("{unit}", "u-auth")
    if path == "/v1/patient-reports":
        report = {"numbness_tingling_severity": 0, "new_weakness": False}
        return running.api.client.post(concrete, json=report, headers=headers)
    if method == "POST" and path == "/v1/events":
        body = f.assessment(f.at(1), patient="P1", event_id=f"auth-{next(_event_ids)}")
        return running.api.client.post(concrete, json=body, headers=headers)
    if method == "POST" and path in ("/fhir/r4", "/fhir/r4/{resource_type}"):
        resource = as_json(
            grading(ident=f"auth-{next(_event_ids)}", subject={"reference": "Patient/P1"})
        )
        return running.api.client.post(concrete, json=resource, headers=headers)
    if method == "POST" and path == "/cds-services/{service_id}":
        return running.api.client.post(concrete, json=hook_request("P1"), headers=headers)
    if method == "POST" and path == "/cds-services/{service_id}/feedback":
        feedback = {
            "feedback": [
                {
                    "card": ISSUED_CARD[0],
                    "outcome": "overridden",
                    "outcomeTimestamp": "2026-10-01T12:00:00Z",
                }
            ]
        }
        return running.api.client.post(concrete, json=feedback, headers=headers)
    if path == "/v1/admin/quarantined-events" and method == "POST":
        body = {"event_id": "auth-e0", "reason": "auth matrix"}
        return running.api.client.post(concrete, json=body, headers=headers)
    if path == "/v1/admin/quarantined-events" and method == "DELETE":
        return running.api.client.delete(concrete, params={"event_id": "auth-e0"}, headers=headers)
    if method == "POST" and path == "/v1/admin/webhooks":
        hook = {"name": f"hook-{next(_event_ids)}", "url": "http://127.0.0.1:9/hook"}
        return running.api.client.post(concrete, json=hook, headers=headers)
    return running.api.client.request(method, concrete, headers=headers)


def detail_of(response: Any) -> str:
    """What an error says: its `detail`, or under /fhir/r4 its OperationOutcome's first issue."""
    body = response.json()
    if body.get("resourceType") == "OperationOutcome":
        assert response.headers["content-type"] == "application/fhir+json"
        return str(body["issue"][0]["diagnostics"])
    return str(body["detail"])


def test_the_tables_cover_exactly_the_apps_routes(running: RunningService) -> None:
    routes = {
        (method, route.path)
        for route in leaf_routes(running.api.client.app.routes)  # included routers' too
        if isinstance(route, APIRoute)
        for method in route.methods
    }
    assert routes == set(ALLOWED) | PUBLIC
    assert set(SUCCESS) == set(ALLOWED)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("method", "path"), PROTECTED, ids=[f"{m} {p}" for m, p in PROTECTED])
def test_every_route_and_role(running: RunningService, method: str, path: str, role: Role) -> None:
    response = call(running, method, path, running.api.headers(role))
    allowed = ALLOWED[(method, path)] | {"admin"}
    if (method, path) in INVITE_ONLY:
        assert response.status_code == 403
        assert response.json() == {
            "detail": f"role {role!r} may not {method} {path}: it takes a patient's invite"
        }
        return
    if role in NOT_THEIRS.get((method, path), set()):
        assert response.status_code == 403
        assert "is addressed to nurse" in response.json()["detail"]
        return
    if role in allowed:
        assert response.status_code == SUCCESS[(method, path)], response.text
        return
    assert response.status_code == 403
    shown = ", ".join([*sorted(ALLOWED[(method, path)], key=ROLES.index), "admin"])
    refusal = f"role {role!r} may not {method} {path}; allowed: {shown}"
    if path.startswith("/fhir/"):  # an OperationOutcome
        assert detail_of(response) == refusal
    else:
        assert response.json() == {"detail": refusal}


BAD_CREDENTIALS = {
    "none": ({}, "a bearer token is required"),
    "basic-scheme": ({"Authorization": "Basic dXNlcjpwYXNz"}, "a bearer token is required"),
    "bearer-empty": ({"Authorization": "Bearer "}, "a bearer token is required"),
    "token-without-scheme": ({"Authorization": "bm_abc"}, "a bearer token is required"),
    "unknown-token": ({"Authorization": "Bearer bm_not-a-real-token"}, "the token is unknown"),
    "hash-as-token": ({"Authorization": "Bearer " + "0" * 64}, "the token is unknown"),
}


@pytest.mark.parametrize("credentials", sorted(BAD_CREDENTIALS))
@pytest.mark.parametrize(("method", "path"), PROTECTED, ids=[f"{m} {p}" for m, p in PROTECTED])
def test_no_or_bad_token_is_401_with_www_authenticate(
    running: RunningService, method: str, path: str, credentials: str
) -> None:
    headers, detail = BAD_CREDENTIALS[credentials]
    before = rows(running.services, "SELECT count(*) AS n FROM event")
    response = call(running, method, path, headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert detail_of(response).startswith(detail)
    assert rows(running.services, "SELECT count(*) AS n FROM event") == before


def test_a_revoked_token_is_401(running: RunningService) -> None:
    sessions = running.services.sessions
    token = create_token(sessions, "nurse", "revoked-nurse", FIXED_NOW)
    assert authenticate(sessions, token) == Principal("revoked-nurse", "nurse")
    with running.services.engine.begin() as connection:
        connection.execute(
            text("UPDATE api_token SET revoked_at = :at WHERE token_hash = :h"),
            {"at": "2026-10-01 12:00:00.000000", "h": hash_token(token)},
        )
    response = running.api.client.get(
        "/v1/patients/P1", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 401
    assert response.json() == {"detail": "the token is unknown or revoked"}


def test_authentication_comes_before_validation(running: RunningService) -> None:
    """Without a token nothing about the request is looked at: no 422/415 leaks the rules."""
    client = running.api.client
    assert client.post("/v1/events", content=b"{broken").status_code == 401
    assert (
        client.post("/v1/events", content=b"x", headers={"Content-Type": "text/plain"}).status_code
        == 401
    )
    assert client.get("/v1/patients/not%20valid").status_code == 401
    assert client.get("/v1/patients/P1/decisions?include=all").status_code == 401
    assert client.post("/v1/admin/dead-letters/abc/retry").status_code == 401


def test_wrong_role_is_403_before_validation(running: RunningService) -> None:
    nurse = running.api.headers("nurse")
    response = running.api.client.post("/v1/events", content=b"{broken", headers=nurse)
    assert response.status_code == 403


@pytest.mark.parametrize(("method", "path"), sorted(PUBLIC), ids=[p for _, p in sorted(PUBLIC)])
@pytest.mark.parametrize("credentials", ["none", "unknown-token", "nurse"])
def test_health_metrics_and_the_page_need_no_token(
    running: RunningService, method: str, path: str, credentials: str
) -> None:
    headers = (
        running.api.headers("nurse") if credentials == "nurse" else BAD_CREDENTIALS[credentials][0]
    )
    response = running.api.client.request(
        method, path.replace("{patient_id}", "P1"), headers=headers
    )
    assert response.status_code == 200


def test_token_roles_are_checked_when_created(running: RunningService) -> None:
    with pytest.raises(ValueError, match="role 'root' is not one of ingest, nurse"):
        create_token(running.services.sessions, "root", "x", FIXED_NOW)  # type: ignore[arg-type]


def test_a_token_is_stored_only_as_its_hash(running: RunningService) -> None:
    token = create_token(running.services.sessions, "auditor", "hash-check", FIXED_NOW)
    [stored] = rows(running.services, "SELECT * FROM api_token WHERE name = 'hash-check'")
    assert stored["token_hash"] == hash_token(token)
    assert token not in str(stored)
    assert token.startswith("bm_")


def test_an_unknown_role_in_the_database_is_refused(running: RunningService) -> None:
    """A row edited to a role that does not exist authenticates nobody."""
    token = create_token(running.services.sessions, "nurse", "edited", FIXED_NOW)
    with running.services.engine.begin() as connection:
        connection.execute(
            text("UPDATE api_token SET role = 'superuser' WHERE token_hash = :h"),
            {"h": hash_token(token)},
        )
    response = running.api.client.get(
        "/v1/patients/P1", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 401


def test_tokens_do_not_expire(tmp_path: pathlib.Path) -> None:
    """Tokens do not expire in v1: one created long ago still authenticates."""
    with running_service(tmp_path, fixed_now=FIXED_NOW + dt.timedelta(days=3650)) as service:
        old = create_token(service.services.sessions, "nurse", "old", FIXED_NOW)
        assert authenticate(service.services.sessions, old) == Principal("old", "nurse")
