"""`POST /fhir/r4` with a hospital's Bundle: a Patient entry named by MRN, its vitals and a dose
in mg. Stored under the pseudonym with the body size; the MRN is stored nowhere.
"""

from __future__ import annotations

import json

import pytest
from pydantic import SecretStr

from monitor.services import Services
from monitor.settings import Settings
from tests.common.service import Api, rows
from tests.monitor.interop.fhir.test_inbound_data import (
    HEIGHT,
    KEY,
    MOSTELLER_180_80,
    MRN,
    PSEUDONYM,
    WEIGHT,
    adverse_event,
    as_json,
    dose_in_mg,
    patient,
    raw_bundle,
    vital,
)
from tests.monitor.interop.fhir.test_router import post, statuses


@pytest.fixture
def sqlite_settings(sqlite_settings: Settings) -> Settings:
    return sqlite_settings.model_copy(update={"patient_id_key": SecretStr(KEY)})


def test_a_hospital_bundle_is_stored_under_the_pseudonym(api: Api, services: Services) -> None:
    where = {"reference": "urn:uuid:9d1b1d5e-0000-4000-8000-00000000cafe"}
    payload = raw_bundle(
        as_json(vital(HEIGHT, 180, "cm")) | {"subject": where},
        as_json(vital(WEIGHT, 80, "kg")) | {"subject": where},
        dose_in_mg() | {"subject": where},
        kind="transaction",
    )
    payload["entry"].append(
        {
            "fullUrl": where["reference"],
            "resource": as_json(patient()),
            "request": {"method": "POST", "url": "Patient"},
        }
    )
    response = post(api, payload)
    assert response.status_code == 200, response.text
    assert statuses(response) == ["200 OK", "200 OK", "201 Created", "200 OK"]
    assert MRN not in response.text
    [stored] = rows(services, "SELECT patient_id, body FROM event")
    assert stored["patient_id"] == PSEUDONYM
    assert json.loads(stored["body"])["bsa_m2"] == pytest.approx(MOSTELLER_180_80)
    everything = json.dumps(
        [rows(services, f"SELECT * FROM {table}") for table in ("event", "outbox", "audit_log")],
        default=str,
    )
    assert MRN not in everything
    assert post(api, payload).status_code == 200  # sent again: a no-op
    assert len(rows(services, "SELECT event_id FROM event")) == 1


def test_an_adverse_event_is_stored_as_an_assessment(api: Api, services: Services) -> None:
    response = post(api, as_json(adverse_event()))
    assert response.status_code == 201, response.text
    [stored] = rows(services, "SELECT type, body FROM event")
    assert stored["type"] == "assessment"
    assert json.loads(stored["body"])["grades"] == {"sensory": 2}
