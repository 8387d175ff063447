"""The CDS Hooks sandbox (https://sandbox.cds-hooks.org) as a browser-based CDS client: the
requests it sends, rebuilt here from reading its source (github.com/cds-hooks/sandbox, commit
3b7e2554, 2026-03-31); none of its code is used.

- The JWT: `src/retrieve-data-helpers/jwt-generator.js` signs, for every call, a header
  `{alg: ES384, typ: JWT, kid: 44823f3d-..., jku: https://sandbox.cds-hooks.org/.well-known/
  jwks.json}` and claims `{iss: https://sandbox.cds-hooks.org, aud: <the URL called>, exp: now
  + 300, iat: now, jti: uuid}`; its JWK Set is `build/.well-known/jwks.json` (one P-384 key).
  Its private key is published in that repository (`keys/ecprivkey.pem`): anyone can sign as
  the sandbox, so the tests sign with a key of their own configured as the sandbox's client.
- Discovery: `discovery-services-retrieval.js` GETs the discovery URL with `Accept:
  application/json` and `Authorization: Bearer <jwt>` (aud = the discovery URL).
- A hook call: `service-exchange.js` POSTs (axios, JSON body, so `Content-Type:
  application/json`) `{hookInstance, hook, fhirServer, context: {patientId, userId, ...},
  fhirAuthorization?, prefetch?}` to `<discovery URL>/<service id>`; `fhirAuthorization`
  (`access_token`, `token_type`, `expires_in`, `scope`, `subject`) only after a SMART launch,
  `prefetch` only for a service that asks for it (these ask for none).
- order-sign (`src/components/RxSign/rx-sign.jsx`) sends `draftOrders: {resourceType: Bundle,
  entry: [{resource}]}` (no `type`), order-select (`RxView/rx-view.jsx`) the same plus
  `selections: ["MedicationRequest/request-123"]`; the resource is built by
  `createFhirResource` in `src/reducers/medication-reducers.js` (for an R4 FHIR server; its
  default server is DSTU2, for which it sends a `MedicationOrder`): id `request-123`, status
  draft, `authoredOn` today, a dose of `{pill}` units `daily`/`bid`/... (periodUnit `d`), a
  supply of 30 days, intent order and `category` as ONE CodeableConcept object (R4 has a list).
- Feedback: `src/components/CardList/card-list.jsx` POSTs `{feedback: [one item]}` to
  `<service URL>/feedback` (aud = that URL, `Content-Type: application/json`): taking a
  suggestion sends `{card, outcome: accepted, acceptedSuggestions: [{id: <suggestion
  uuid>}], outcomeTimestamp}`, dismissing a card `{card, outcome: overridden,
  outcomeTimestamp, overrideReason?: {reason: {code, system?}}}`; the time is
  `new Date().toISOString()` (milliseconds, `Z`).
- The browser adds `Origin: https://sandbox.cds-hooks.org` and, as `Authorization` and the JSON
  `Content-Type` are not CORS-safelisted, sends a preflight first: `OPTIONS` with
  `Access-Control-Request-Method` and `Access-Control-Request-Headers: authorization,content-
  type` (lower case, sorted, as the Fetch standard builds it).
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

from monitor.settings import RXNORM, CdsClient
from tests.common.cds import jwk

SANDBOX_ORIGIN = "https://sandbox.cds-hooks.org"
SANDBOX_ISSUER = "https://sandbox.cds-hooks.org"
SANDBOX_JWKS_URL = "https://sandbox.cds-hooks.org/.well-known/jwks.json"
SANDBOX_KID = "44823f3d-0b01-4a6c-a80e-b9d3e8a7226f"
SANDBOX_USER = "Practitioner/COREPRACTITIONER1"  # its default user
SANDBOX_FHIR_SERVER = "https://launch.smarthealthit.org/v/r4/fhir"
SANDBOX_ORDER_ID = "request-123"
PER_DAY = {"daily": 1, "bid": 2, "tid": 3, "qid": 4}


def sandbox_client(key: ec.EllipticCurvePrivateKey) -> tuple[CdsClient, dict[str, Any]]:
    """The sandbox as an operator configures it (its issuer, its JWK Set URL), and the JWK Set
    that URL answers in the tests: `key`'s public key under the sandbox's kid."""
    document = {"keys": [jwk(key, SANDBOX_KID, alg="ES384")]}
    return CdsClient(iss=SANDBOX_ISSUER, jwks_url=SANDBOX_JWKS_URL), document


def sandbox_jwt(key: ec.EllipticCurvePrivateKey, audience: str, **header: Any) -> str:
    """The sandbox's JWT for a call to `audience` (header fields may be changed)."""
    now = time.time()
    claims = {
        "iss": SANDBOX_ISSUER,
        "aud": audience,
        "exp": round(now + 300),
        "iat": round(now),
        "jti": str(uuid.uuid4()),
    }
    fields = {"alg": "ES384", "typ": "JWT", "kid": SANDBOX_KID, "jku": SANDBOX_JWKS_URL}
    return jwt.encode(claims, key, algorithm="ES384", headers={**fields, **header})


def sandbox_order(
    patient: str,
    *,
    code: str = "358258",
    name: str = "bortezomib",
    pills: int = 1,
    frequency: str = "daily",
    authored_on: str = "2026-10-01",
    category_as_list: bool = False,
) -> dict[str, Any]:
    """The R4 MedicationRequest the sandbox drafts once a drug is picked (its medication list
    has no bortezomib: `code` puts one in, as a list that had it would). `category_as_list`
    corrects the one thing in it that R4 does not allow."""
    category = {
        "coding": [
            {
                "system": "http://terminology.hl7.org/CodeSystem/medicationrequest-category",
                "code": "community",
            }
        ]
    }
    return {
        "resourceType": "MedicationRequest",
        "id": SANDBOX_ORDER_ID,
        "status": "draft",
        "subject": {"reference": f"Patient/{patient}"},
        "authoredOn": authored_on,
        "dosageInstruction": [
            {
                "timing": {
                    "repeat": {"frequency": PER_DAY[frequency], "period": 1, "periodUnit": "d"}
                },
                "doseAndRate": [
                    {
                        "doseQuantity": {
                            "value": pills,
                            "system": "http://unitsofmeasure.org",
                            "code": "{pill}",
                        }
                    }
                ],
            }
        ],
        "dispenseRequest": {
            "expectedSupplyDuration": {
                "value": 30,
                "unit": "days",
                "system": "http://unitsofmeasure.org",
                "code": "d",
            }
        },
        "intent": "order",
        "category": [category] if category_as_list else category,
        "medicationCodeableConcept": {
            "text": name,
            "coding": [{"display": name, "system": RXNORM, "code": code}],
        },
    }


def sandbox_request(
    hook: str, patient: str, order: dict[str, Any], *, smart_launch: bool = False
) -> dict[str, Any]:
    """The body of an order-sign or order-select call as the sandbox sends it."""
    context: dict[str, Any] = {"patientId": patient, "userId": SANDBOX_USER}
    if hook == "order-select":
        context["selections"] = [f"MedicationRequest/{order['id']}"]
    context["draftOrders"] = {"resourceType": "Bundle", "entry": [{"resource": order}]}
    body: dict[str, Any] = {
        "hookInstance": str(uuid.uuid4()),
        "hook": hook,
        "fhirServer": SANDBOX_FHIR_SERVER,
        "context": context,
    }
    if smart_launch:
        body["fhirAuthorization"] = {
            "access_token": "sandbox-access-token",
            "token_type": "Bearer",
            "expires_in": 3600,
            "scope": "patient/*.* user/*.* launch openid profile online_access",
            "subject": "48163c5e-88b5-4cb3-92d3-23b800caa927",
        }
    return body


def sandbox_feedback(card: dict[str, Any], *, accept: bool) -> dict[str, Any]:
    """The feedback body the sandbox sends when its user takes the card's first suggestion
    (`accept`) or dismisses the card with its first override reason."""
    now = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    item: dict[str, Any] = {"card": card["uuid"], "outcomeTimestamp": now}
    if accept:
        item["outcome"] = "accepted"
        item["acceptedSuggestions"] = [{"id": card["suggestions"][0]["uuid"]}]
    else:
        item["outcome"] = "overridden"
        reason = card["overrideReasons"][0]
        item["overrideReason"] = {"reason": {"code": reason["code"], "system": reason["system"]}}
    return {"feedback": [item]}


def preflight_headers(method: str, *request_headers: str) -> dict[str, str]:
    """What a browser sends in the preflight of a call from the sandbox's page."""
    headers = {"Origin": SANDBOX_ORIGIN, "Access-Control-Request-Method": method}
    if request_headers:
        headers["Access-Control-Request-Headers"] = ",".join(sorted(request_headers))
    return headers


def call_headers(token: str, *, json_body: bool = True) -> dict[str, str]:
    """The headers of the actual call (the browser adds Origin)."""
    headers = {
        "Origin": SANDBOX_ORIGIN,
        "Accept": "application/json",
        "Authorization": f"Bearer {token}",
    }
    if json_body:
        headers["Content-Type"] = "application/json"
    return headers
