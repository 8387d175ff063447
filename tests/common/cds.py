"""Helpers of the CDS Hooks tests: signing keys and JWTs, draft orders built with fhir.resources,
hook requests, and the embedded service with the CDS routes and seeded courses.

No `from __future__ import annotations`: the test `require` below is a FastAPI dependency,
whose annotations FastAPI reads at run time.
"""

import contextlib
import datetime as dt
import http.server
import json
import pathlib
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi import FastAPI
from fhir.resources.R4B.bundle import Bundle, BundleEntry
from fhir.resources.R4B.codeableconcept import CodeableConcept
from fhir.resources.R4B.coding import Coding
from fhir.resources.R4B.dosage import Dosage, DosageDoseAndRate
from fhir.resources.R4B.medicationrequest import MedicationRequest
from fhir.resources.R4B.period import Period
from fhir.resources.R4B.quantity import Quantity
from fhir.resources.R4B.reference import Reference
from fhir.resources.R4B.timing import Timing, TimingRepeat
from starlette.testclient import TestClient

from monitor.app import create_app
from monitor.auth.roles import ROLES, Role
from monitor.auth.tokens import create_token
from monitor.processing.inprocess import InProcessWorker
from monitor.services import Services, build_services
from monitor.settings import RXNORM, CdsClient, Settings
from monitor.storage.migrate import upgrade
from tests.common import factories as f
from tests.conftest import FIXED_NOW

UCUM = "http://unitsofmeasure.org"
SNOMED = "http://snomed.info/sct"
ROUTES = {"IV": "47625008", "SC": "34206005"}
PER_WEEK = {"weekly": 1, "twice_weekly": 2}
CHECK = "bortezomib-order-check"
SELECT = "bortezomib-order-select"
ES_ISSUER = "https://ehr.example/es384"  # public key as PEM
RS_ISSUER = "https://ehr.example/rs384"  # an inline JWK Set (its RSA key names no `alg`)
URL_ISSUER = "https://ehr.example/jwks-url"  # a JWK Set fetched from a URL


def days(n: float) -> dt.datetime:
    """The service clock (FIXED_NOW) plus `n` days."""
    return FIXED_NOW + dt.timedelta(days=n)


# Courses as the monitor will know them at FIXED_NOW (decisions checked in test_api.py):
SEEDS: dict[str, list[dict[str, Any]]] = {
    # D1: sensory 1 reduced 1.3 -> 1.0 weekly SC; the next reassessment is 18 days away
    "P-ACT": [
        f.enrollment(days(-10), "P-ACT", event_id="act-1", unit="U-A"),
        f.assessment(days(-3), "P-ACT", event_id="act-2", sensory=1),
    ],
    # a recorded hold (default pack: no hold decision)
    "P-HELD": [
        f.enrollment(days(-10), "P-HELD", event_id="held-1", unit="U-A"),
        f.treatment_change(days(-2), "held", "P-HELD", event_id="held-2", reason="neuropathy"),
    ],
    # D2: sensory 3 discontinues
    "P-DISC": [
        f.enrollment(days(-10), "P-DISC", event_id="disc-1", unit="U-B"),
        f.assessment(days(-3), "P-DISC", event_id="disc-2", sensory=3),
    ],
    # D5: the reassessment before cycle 2 never came
    "P-LATE": [f.enrollment(days(-40), "P-LATE", event_id="late-1", unit="U-B")],
    # D3: the course was completed; the coasting watch runs
    "P-DONE": [
        f.enrollment(days(-60), "P-DONE", event_id="done-1", unit="U-A"),
        f.assessment(days(-20), "P-DONE", event_id="done-2", sensory=0),
        f.treatment_change(days(-5), "completed", "P-DONE", event_id="done-3"),
    ],
    # D0: IV twice weekly with diabetes: weekly SC advised
    "P-D0": [
        f.enrollment(
            days(-5),
            "P-D0",
            event_id="d0-1",
            route="IV",
            schedule="twice_weekly",
            risk_factors=["diabetes"],
            unit="U-A",
        )
    ],
}


# --- keys and tokens --------------------------------------------------------------------------


@dataclass(frozen=True)
class Keys:
    es: ec.EllipticCurvePrivateKey  # ES384, ES_ISSUER (PEM)
    rs: rsa.RSAPrivateKey  # RS384, RS_ISSUER (inline JWKS, kid rs-1)
    url: ec.EllipticCurvePrivateKey  # ES384, URL_ISSUER (JWKS at a URL, kid url-1)
    stranger: ec.EllipticCurvePrivateKey  # nobody's: its signatures must not verify


def make_keys() -> Keys:
    return Keys(
        es=ec.generate_private_key(ec.SECP384R1()),
        rs=rsa.generate_private_key(public_exponent=65537, key_size=2048),
        url=ec.generate_private_key(ec.SECP384R1()),
        stranger=ec.generate_private_key(ec.SECP384R1()),
    )


def public_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def jwk(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, kid: str, **extra: str) -> Any:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        data = jwt.algorithms.ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    else:
        data = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return {**data, "kid": kid, "use": "sig", **extra}


def cds_clients(keys: Keys, jwks_url: str) -> list[CdsClient]:
    return [
        CdsClient(iss=ES_ISSUER, public_key=public_pem(keys.es)),
        CdsClient(iss=RS_ISSUER, jwks={"keys": [jwk(keys.rs, "rs-1")]}),
        CdsClient(iss=URL_ISSUER, jwks_url=jwks_url),
    ]


def mint(
    key: Any,
    alg: str,
    issuer: str,
    audience: str | list[str],
    *,
    kid: str | None = None,
    expires_in: float = 300,
    issued_offset: float = 0,
    jti: str | None = None,
    omit: tuple[str, ...] = (),
    headers: dict[str, Any] | None = None,
) -> str:
    """A CDS Hooks JWT as a client signs it (the wall clock: token time is transport time)."""
    now = time.time()
    claims: dict[str, Any] = {
        "iss": issuer,
        "aud": audience,
        "exp": int(now + expires_in),
        "iat": int(now + issued_offset),
        "jti": jti or str(uuid.uuid4()),
    }
    for name in omit:
        claims.pop(name)
    header = {"typ": "JWT", **({"kid": kid} if kid else {}), **(headers or {})}
    return jwt.encode(claims, key, algorithm=alg, headers=header)


@contextlib.contextmanager
def serving_jwks(document: dict[str, Any]) -> Iterator[str]:
    """A JWK Set at http://127.0.0.1:<port>/jwks.json, as a CDS client would publish it."""
    body = json.dumps(document).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/jwks.json" else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: Any) -> None:
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/jwks.json"
    finally:
        server.shutdown()
        server.server_close()


# --- draft orders -----------------------------------------------------------------------------


def draft_order(
    order_id: str | None = "mr-1",
    patient: str = "P-ACT",
    *,
    dose: float | None = 1.0,
    unit: str = "mg/m2",
    route: str | None = "SC",
    schedule: str | None = "weekly",
    start: str = "2026-10-02T08:00:00+00:00",
    drug: tuple[str, str, str] = (RXNORM, "358258", "bortezomib"),
) -> MedicationRequest:
    """A draft MedicationRequest (fhir.resources) as an EHR sends it in draftOrders."""
    repeat = TimingRepeat(boundsPeriod=Period(start=start))
    if schedule is not None:
        repeat = TimingRepeat(
            boundsPeriod=Period(start=start),
            frequency=PER_WEEK[schedule],
            period=1,
            periodUnit="wk",
        )
    dosage = Dosage(
        text="as ordered",
        timing=Timing(repeat=repeat),
        route=None
        if route is None
        else CodeableConcept(coding=[Coding(system=SNOMED, code=ROUTES[route])]),
        doseAndRate=None
        if dose is None
        else [
            DosageDoseAndRate(doseQuantity=Quantity(value=dose, unit=unit, system=UCUM, code=unit))
        ],
    )
    return MedicationRequest(
        id=order_id,
        status="draft",
        intent="order",
        subject=Reference(reference=f"Patient/{patient}"),
        requester=Reference(reference="Practitioner/dr-1"),
        medicationCodeableConcept=CodeableConcept(
            coding=[Coding(system=drug[0], code=drug[1], display=drug[2])], text=drug[2]
        ),
        dosageInstruction=[dosage],
    )


def draft_orders(*orders: MedicationRequest) -> dict[str, Any]:
    """The `draftOrders` Bundle (JSON)."""
    bundle = Bundle(type="collection", entry=[BundleEntry(resource=o) for o in orders])
    data: dict[str, Any] = bundle.model_dump(mode="json", exclude_none=True)
    return data


def hook_request(
    patient: str, *orders: MedicationRequest, hook: str = "order-sign", **context: Any
) -> dict[str, Any]:
    """A CDS Hooks call body (JSON, as the spec defines it)."""
    return {
        "hook": hook,
        "hookInstance": str(uuid.uuid4()),
        "context": {
            "userId": "Practitioner/dr-1",
            "patientId": patient,
            "draftOrders": draft_orders(*orders),
            **context,
        },
    }


def no_empty_values(value: Any, where: str = "card") -> list[str]:
    """Where a JSON value is null or empty (the spec forbids both in cards)."""
    if value is None or value in ("", [], {}):
        return [where]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in no_empty_values(v, f"{where}.{k}")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in no_empty_values(v, f"{where}[{i}]")]
    return []


# --- the service ------------------------------------------------------------------------------


def cds_app(services: Services) -> FastAPI:
    """The service's app (create_app registers the CDS routes)."""
    return create_app(services)


@dataclass
class CdsService:
    services: Services
    worker: InProcessWorker
    client: TestClient
    tokens: dict[Role, str]
    keys: Keys

    def headers(self, role: Role | None = "cds", token: str | None = None) -> dict[str, str]:
        if token is not None:
            return {"Authorization": f"Bearer {token}"}
        return {} if role is None else {"Authorization": f"Bearer {self.tokens[role]}"}

    def call(
        self,
        body: Any,
        service: str = CHECK,
        role: Role | None = "cds",
        token: str | None = None,
    ) -> Any:
        return self.client.post(
            f"/cds-services/{service}", json=body, headers=self.headers(role, token)
        )

    def cards(self, patient: str, *orders: MedicationRequest, **context: Any) -> list[Any]:
        response = self.call(hook_request(patient, *orders, **context))
        assert response.status_code == 200, response.text
        cards: list[Any] = response.json()["cards"]
        return cards

    def feedback(
        self, items: list[dict[str, Any]], service: str = CHECK, role: Role | None = "cds"
    ) -> Any:
        return self.client.post(
            f"/cds-services/{service}/feedback",
            json={"feedback": items},
            headers=self.headers(role),
        )


@contextlib.contextmanager
def cds_service(
    directory: pathlib.Path,
    keys: Keys,
    jwks_url: str,
    *,
    extra_clients: tuple[CdsClient, ...] = (),
    **overrides: Any,
) -> Iterator[CdsService]:
    """The embedded service (SQLite, in-process worker) with the CDS clients configured (and
    `extra_clients`) and the SEEDS courses folded at FIXED_NOW."""
    settings = Settings(
        **({"policy": "default@1"} | overrides),  # the cards these tests expect are version 1's
        database_url=f"sqlite:///{directory / 'monitor.db'}",
        data_dir=directory,
        fixed_now=FIXED_NOW,
        cds_clients=[*cds_clients(keys, jwks_url), *extra_clients],
    )
    services = build_services(settings)
    upgrade(services.engine)
    tokens = {role: create_token(services.sessions, role, f"t-{role}", FIXED_NOW) for role in ROLES}
    worker = InProcessWorker(services)
    services.dispatcher = worker
    worker.start()
    try:
        with TestClient(cds_app(services)) as client:
            events = [event for seed in SEEDS.values() for event in seed]
            response = client.post(
                "/v1/events",
                json={"events": events},
                headers={"Authorization": f"Bearer {tokens['ingest']}"},
            )
            assert response.status_code == 202, response.text
            assert worker.wait_idle(60)
            yield CdsService(services, worker, client, tokens, keys)
    finally:
        worker.stop()
        services.close()
