"""Secret rotation over the admin API (issue 15, item 4): a new secret is shown once and signs
beside the old one; a receiver holding either verifies (the Standard Webhooks library, and
Svix's verifier); once the old one is retired, requests no longer verify with it. An endpoint
keeps at least one secret; every change is audited; no secret is listed, logged or audited."""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from sqlmodel import Session, SQLModel
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from svix.webhooks import Webhook as SvixWebhook

from monitor.alerts.service import add_alerts
from monitor.services import Services
from monitor.settings import Settings
from monitor.storage.database import make_engine
from monitor.storage.models import AlertRow, WebhookEndpointRow, WebhookSecretRow
from monitor.webhooks import service, signing
from monitor.webhooks.delivery import deliver, fan_out
from monitor.webhooks.service import MAX_ACTIVE_SECRETS
from tests.common.databases import throwaway_postgres
from tests.common.service import Api, rows
from tests.common.webhook_receiver import Received, Receiver
from tests.conftest import FIXED_NOW, PG_URL, require_server

OLD = "whsec_" + base64.b64encode(b"the-old-secret-of-the-pager-endpoint").decode()


@pytest.fixture
def receiver() -> Any:
    with Receiver() as running:
        yield running


def register(api: Api, url: str, secret: str | None = OLD) -> dict[str, Any]:
    body: dict[str, Any] = {"name": "pager", "url": url}
    if secret is not None:
        body["secret"] = secret
    response = api.client.post("/v1/admin/webhooks", json=body, headers=api.headers("admin"))
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def add_secret(api: Api, webhook_id: int) -> Any:
    return api.client.post(f"/v1/admin/webhooks/{webhook_id}/secrets", headers=api.headers("admin"))


def retire(api: Api, webhook_id: int, secret_id: int) -> Any:
    return api.client.delete(
        f"/v1/admin/webhooks/{webhook_id}/secrets/{secret_id}", headers=api.headers("admin")
    )


def send_one(services: Services, receiver: Receiver, index: int) -> Received:
    """A new alert, delivered now to every active endpoint: the request the receiver got."""
    with services.sessions.begin() as session:
        alerts = add_alerts(
            session,
            [
                AlertRow(
                    decision_id=f"rotation-{index}",
                    kind="new",
                    action="discontinue",
                    patient_id="PT-9",
                    unit="ward-3",
                    severity="urgent",
                    audience=json.dumps(["nurse"]),
                    message="test alert",
                    created_at=FIXED_NOW,
                )
            ],
        )
        [delivery_id] = fan_out(session, alerts, dt.datetime.now(dt.UTC))
    assert deliver(services, delivery_id).outcome == "delivered"
    [request] = [r for r in receiver.received if r.delivery == str(delivery_id)]
    return request


def verifies(secret: str, request: Received) -> bool:
    try:
        Webhook(secret).verify(request.body, request.headers)
    except WebhookVerificationError:
        return False
    return True


def test_rotation_signs_with_both_secrets_then_only_the_new_one(
    api: Api, services: Services, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    hook = register(api, receiver.url("/hook"))
    [old] = hook["secrets"]
    before = send_one(services, receiver, 1)
    assert verifies(OLD, before)
    assert len(before.headers["webhook-signature"].split(" ")) == 1

    added = add_secret(api, hook["id"])
    assert added.status_code == 201, added.text
    new = added.json()
    assert set(new) == {"id", "webhook_id", "created_at", "secret"}
    assert new["webhook_id"] == hook["id"]
    assert new["secret"].startswith("whsec_")
    assert new["secret"] != OLD
    listed = api.get("/v1/admin/webhooks", role="admin")
    assert [s["id"] for s in listed.json()["webhooks"][0]["secrets"]] == [old["id"], new["id"]]
    assert OLD not in listed.text
    assert new["secret"] not in listed.text

    during = send_one(services, receiver, 2)
    assert len(during.headers["webhook-signature"].split(" ")) == 2
    assert verifies(OLD, during)  # a receiver not yet moved
    assert verifies(new["secret"], during)  # a receiver already moved
    SvixWebhook(new["secret"]).verify(during.body, during.headers)  # Svix's verifier too
    assert not verifies(signing.new_secret(), during)  # a secret of no endpoint

    retired = retire(api, hook["id"], old["id"])
    assert retired.status_code == 200, retired.text
    assert [s["id"] for s in retired.json()["secrets"]] == [new["id"]]
    assert "secret" not in retired.json()
    after = send_one(services, receiver, 3)
    assert len(after.headers["webhook-signature"].split(" ")) == 1
    assert verifies(new["secret"], after)
    assert not verifies(OLD, after)  # the retired secret signs nothing any more
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        Webhook(OLD).verify(after.body, after.headers)

    again = retire(api, hook["id"], old["id"])
    assert again.status_code == 200  # harmless twice
    assert [s["id"] for s in again.json()["secrets"]] == [new["id"]]

    audit = rows(
        services,
        "SELECT action, resource, status_code FROM audit_log WHERE action LIKE '%secrets%' "
        "ORDER BY id",
    )
    assert audit == [
        {
            "action": "POST /v1/admin/webhooks/{webhook_id}/secrets",
            "resource": f"webhook:{hook['id']}/secret:{new['id']}",
            "status_code": 201,
        },
        {
            "action": "DELETE /v1/admin/webhooks/{webhook_id}/secrets/{secret_id}",
            "resource": f"webhook:{hook['id']}/secret:{old['id']}",
            "status_code": 200,
        },
        {
            "action": "DELETE /v1/admin/webhooks/{webhook_id}/secrets/{secret_id}",
            "resource": f"webhook:{hook['id']}/secret:{old['id']}",
            "status_code": 200,
        },
    ]
    logged = caplog.text + "".join(str(r.__dict__) for r in caplog.records)
    stored_audit = json.dumps(rows(services, "SELECT * FROM audit_log"), default=str)
    for secret in (OLD, new["secret"]):
        assert secret not in logged
        assert secret not in stored_audit
        assert secret.removeprefix("whsec_") not in logged


def test_the_last_active_secret_cannot_be_retired(api: Api, services: Services) -> None:
    hook = register(api, "https://hooks.example.org/x", secret=None)
    [only] = hook["secrets"]
    refused = retire(api, hook["id"], only["id"])
    assert refused.status_code == 409
    detail = refused.json()["detail"]
    assert detail == (
        f"secret {only['id']} is the last active secret of webhook {hook['id']}: add its "
        "successor first (POST /v1/admin/webhooks/{id}/secrets)"
    )
    assert hook["secret"] not in refused.text
    assert rows(services, "SELECT id, retired_at FROM webhook_secret") == [
        {"id": only["id"], "retired_at": None}
    ]
    [audited] = rows(
        services, "SELECT resource, status_code FROM audit_log WHERE action LIKE 'DELETE%'"
    )
    assert audited == {"resource": f"webhook:{hook['id']}/secret:{only['id']}", "status_code": 409}

    # with a successor the old one goes; then the successor is the last
    new = add_secret(api, hook["id"]).json()
    assert retire(api, hook["id"], only["id"]).status_code == 200
    assert retire(api, hook["id"], new["id"]).status_code == 409
    active = rows(services, "SELECT id FROM webhook_secret WHERE retired_at IS NULL")
    assert active == [{"id": new["id"]}]


def test_unknown_webhooks_and_secrets_are_404(api: Api, services: Services) -> None:
    one = register(api, "https://hooks.example.org/one", secret=None)
    two = register(api, "https://hooks.example.org/two", secret=None)
    add_secret(api, one["id"])
    theirs = two["secrets"][0]["id"]
    other = retire(api, one["id"], theirs)  # a secret, but of another webhook
    assert other.status_code == 404
    assert other.json()["detail"] == f"webhook {one['id']} has no secret {theirs}"
    assert retire(api, one["id"], 999).status_code == 404
    assert retire(api, 999, theirs).json()["detail"] == "no webhook 999"
    missing = add_secret(api, 999)
    assert missing.status_code == 404
    assert missing.json()["detail"] == "no webhook 999"
    assert add_secret(api, 0).status_code == 422
    assert rows(services, "SELECT count(*) AS n FROM webhook_secret WHERE retired_at IS NULL") == [
        {"n": 3}
    ]


def test_an_endpoint_has_a_bounded_number_of_active_secrets(api: Api, services: Services) -> None:
    hook = register(api, "https://hooks.example.org/x", secret=None)
    made = [add_secret(api, hook["id"]) for _ in range(MAX_ACTIVE_SECRETS - 1)]
    assert [m.status_code for m in made] == [201] * (MAX_ACTIVE_SECRETS - 1)
    refused = add_secret(api, hook["id"])
    assert refused.status_code == 409
    assert f"already has {MAX_ACTIVE_SECRETS} active secrets" in refused.json()["detail"]
    count = "SELECT count(*) AS n FROM webhook_secret"
    assert rows(services, count) == [{"n": MAX_ACTIVE_SECRETS}]
    assert retire(api, hook["id"], hook["secrets"][0]["id"]).status_code == 200
    assert add_secret(api, hook["id"]).status_code == 201  # room again


def test_a_secret_given_at_registration_must_be_whsec(api: Api, services: Services) -> None:
    short = "whsec_" + base64.b64encode(b"k" * 23).decode()
    body = {"name": "pager", "url": "https://hooks.example.org/x", "secret": short}
    response = api.client.post("/v1/admin/webhooks", json=body, headers=api.headers("admin"))
    assert response.status_code == 422
    assert response.json()["errors"] == [
        {
            "field": "body.secret",
            "message": "Value error, must encode 24 to 64 random bytes; this one encodes 23",
        }
    ]
    assert rows(services, "SELECT count(*) AS n FROM webhook_secret") == [{"n": 0}]


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: object) -> Iterator[Engine]:
    """The service's own engine (SQLite: BEGIN IMMEDIATE), or one on a throwaway PostgreSQL
    database, with the tables."""
    if request.param == "sqlite":
        built = make_engine(Settings(database_url=f"sqlite:///{tmp_path}/race.db"))
        SQLModel.metadata.create_all(built)
        yield built
        built.dispose()
        return
    url = make_url(PG_URL)
    require_server("PostgreSQL", url.host or "127.0.0.1", url.port or 5432)
    with throwaway_postgres(PG_URL, "bipn_secrets") as database:
        built = make_engine(Settings(database_url=database.render_as_string(False)))
        try:
            SQLModel.metadata.create_all(built)
            yield built
        finally:
            built.dispose()


def test_two_retirements_at_once_leave_one_secret(engine: Engine) -> None:
    """The second waits for the first (the endpoint's row lock; SQLite's write lock), then
    finds its secret the last one: a 409, not an endpoint without secrets."""
    with Session(engine) as session, session.begin():
        endpoint = WebhookEndpointRow(name="x", url="https://x.example/", created_at=FIXED_NOW)
        session.add(endpoint)
        session.flush()
        assert endpoint.id is not None
        keys = [
            WebhookSecretRow(
                endpoint_id=endpoint.id, secret=signing.new_secret(), created_at=FIXED_NOW
            )
            for _ in range(2)
        ]
        session.add_all(keys)
        session.flush()
        webhook_id, (first, second) = endpoint.id, [k.id for k in keys]
    outcome: list[object] = []

    def retire_second() -> None:
        with Session(engine) as other, other.begin():
            try:
                service.retire_secret(
                    other, webhook_id=webhook_id, secret_id=second or 0, now=FIXED_NOW
                )
                outcome.append("retired")
            except service.SecretRefusedError as refused:
                outcome.append(refused.status)

    with Session(engine) as session, session.begin():
        service.retire_secret(session, webhook_id=webhook_id, secret_id=first or 0, now=FIXED_NOW)
        racer = threading.Thread(target=retire_second)
        racer.start()
        time.sleep(0.5)
        assert outcome == []  # waiting for this transaction
    racer.join(10)
    assert outcome == [409]
    with engine.connect() as connection:
        active = connection.execute(
            text("SELECT id FROM webhook_secret WHERE retired_at IS NULL")
        ).scalars()
        assert list(active) == [second]
