"""The README's FHIR example works as the README says: the transaction is stored, and the
summary shows the dose reduction with its evidence and the next reassessment."""

from __future__ import annotations

import json
import pathlib
import re
from typing import Any

from fhir.resources.R4B.bundle import Bundle

from monitor.processing.inprocess import InProcessWorker
from tests.common.service import Api

README = pathlib.Path(__file__).resolve().parents[4] / "README.md"


def readme_json(section: str) -> dict[str, Any]:
    text = README.read_text()
    marker = text.index(section)
    block = re.search(r"<<'JSON'\n(.*?)\nJSON\n", text[marker:], re.DOTALL)
    assert block is not None, f"the README lost its example under {section!r}"
    payload: dict[str, Any] = json.loads(block.group(1))
    return payload


def test_the_readme_fhir_example(api: Api, worker: InProcessWorker) -> None:
    response = api.client.post(
        "/fhir/r4",
        content=json.dumps(readme_json("### FHIR ingest")).encode(),
        headers=api.headers("ingest") | {"Content-Type": "application/fhir+json"},
    )
    assert response.status_code == 200, response.text
    answer = Bundle.model_validate(response.json())
    assert answer.type == "transaction-response"
    assert [e.response.status for e in answer.entry or []] == ["201 Created", "201 Created"]
    assert worker.wait_idle()
    summary = api.get("/fhir/r4/Patient/P-0042/$monitor-summary", role="nurse")
    assert summary.status_code == 200, summary.text
    resources = [e.resource for e in Bundle.model_validate(summary.json()).entry or []]
    reductions = [
        r
        for r in resources
        if r.get_resource_type() == "DetectedIssue" and r.code.coding[0].code == "reduce_dose"
    ]
    assert len(reductions) == 1
    [reduction] = reductions
    assert reduction.severity == "moderate"
    assert reduction.mitigation[0].action.text == "bortezomib 1.0 mg/m2 weekly SC"
    assert reduction.evidence[0].detail[0].reference == "Observation/obs-1"
    tasks = [r for r in resources if r.get_resource_type() == "Task"]
    assert len(tasks) == 1
    assert tasks[0].restriction.period.end is not None


def test_the_readme_cds_hooks_example(api: Api, worker: InProcessWorker) -> None:
    """After the FHIR example's grading, the draft for the old dose gets the README's card."""
    api.client.post(
        "/fhir/r4",
        content=json.dumps(readme_json("### FHIR ingest")).encode(),
        headers=api.headers("ingest") | {"Content-Type": "application/fhir+json"},
    )
    assert worker.wait_idle()
    response = api.client.post(
        "/cds-services/bortezomib-order-check",
        json=readme_json("### CDS Hooks"),
        headers=api.headers("cds"),
    )
    assert response.status_code == 200, response.text
    [card] = response.json()["cards"]
    assert card["indicator"] == "warning"
    assert card["summary"].startswith("Order above the recommendation")
    assert card["summary"].endswith("(rule D1)")
    assert card["source"]["label"] == "bipn-monitor default@1, rule D1"
    [suggestion] = card["suggestions"]
    assert suggestion["label"] == "Order the recommended regimen: 1.0 mg/m2 weekly SC"
    [action] = suggestion["actions"]
    assert action["type"] == "update"
    assert action["resource"]["id"] == "draft-1"
    assert card["links"][0]["url"].endswith("/patients/P-0042")
