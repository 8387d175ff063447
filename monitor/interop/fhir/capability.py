"""What the FHIR endpoint says about itself: the `CapabilityStatement` served at
`/fhir/r4/metadata` (the first thing FHIR clients read) and the `OperationDefinition` of
`$monitor-summary`.

Only what the server really does is listed: `create` for each resource type the inbound mapper
reads (`MAPPED_TYPES`, so a type added there is announced here), `transaction` and `batch`
on the base, the summary operation on Patient, the read of its definition, and the read of the
patient-report Questionnaire.
"""

from __future__ import annotations

import datetime as dt
from importlib.metadata import PackageNotFoundError, version

from fhir.resources.R4B.capabilitystatement import (
    CapabilityStatement,
    CapabilityStatementImplementation,
    CapabilityStatementRest,
    CapabilityStatementRestInteraction,
    CapabilityStatementRestResource,
    CapabilityStatementRestResourceInteraction,
    CapabilityStatementRestResourceOperation,
    CapabilityStatementRestSecurity,
    CapabilityStatementSoftware,
)
from fhir.resources.R4B.operationdefinition import (
    OperationDefinition,
    OperationDefinitionParameter,
)

from monitor.interop.fhir.inbound import MAPPED_TYPES
from monitor.interop.fhir.questionnaire import QUESTIONNAIRE_ID, QUESTIONNAIRE_URL
from monitor.settings import FHIR_BASE

FHIR_VERSION = "4.0.1"
FHIR_PATH = "/fhir/r4"
SUMMARY_OPERATION = "monitor-summary"
# the canonical URL of the operation's definition (stable, whichever server serves it)
SUMMARY_DEFINITION = f"{FHIR_BASE}/OperationDefinition/{SUMMARY_OPERATION}"
SECURITY = (
    "Every interaction but this statement, the OperationDefinition and the Questionnaire "
    "needs a bearer token "
    "(Authorization: Bearer <token>) issued by the service's operator; the token's role says "
    "what it may do: 'ingest' creates resources and posts transaction or batch Bundles, 'nurse', "
    "'physician', 'pharmacy' and 'infusion' read $monitor-summary ('admin' may do all). Without "
    "a valid token the answer is 401, with a role not allowed 403 (OperationOutcome)."
)


def _software_version() -> str:
    """The installed package's version (run from a source tree without installing: none)."""
    try:
        return version("bipn-monitor")
    except PackageNotFoundError:
        return "unknown"


def capability_statement(base_url: str, now: dt.datetime) -> CapabilityStatement:
    """The server's statement as of `now`, for clients that reach it at `base_url`."""
    resources = [
        CapabilityStatementRestResource(
            type=name,
            interaction=[CapabilityStatementRestResourceInteraction(code="create")],
            documentation=(
                f"POST {FHIR_PATH}/{name}: mapped to an event and stored (idempotent by the "
                "resource's identifier: sent again, 200 with the same Location)"
            ),
        )
        for name in MAPPED_TYPES
    ]
    summary = CapabilityStatementRestResourceOperation(
        name=SUMMARY_OPERATION,
        definition=SUMMARY_DEFINITION,
        documentation="the patient's current decisions, reassessments, watches and alerts",
    )
    patient = next((r for r in resources if r.type == "Patient"), None)
    if patient is None:
        patient = CapabilityStatementRestResource(type="Patient")
        resources.append(patient)
    patient.operation = [summary]
    resources.append(
        CapabilityStatementRestResource(
            type="OperationDefinition",
            interaction=[CapabilityStatementRestResourceInteraction(code="read")],
            documentation=f"only {FHIR_PATH}/OperationDefinition/{SUMMARY_OPERATION}",
        )
    )
    resources.append(
        CapabilityStatementRestResource(
            type="Questionnaire",
            interaction=[CapabilityStatementRestResourceInteraction(code="read")],
            documentation=(
                f"only {FHIR_PATH}/Questionnaire/{QUESTIONNAIRE_ID} ({QUESTIONNAIRE_URL}, no "
                "token): the patient report; its QuestionnaireResponse is created above"
            ),
        )
    )
    return CapabilityStatement(
        id="bipn-monitor",
        url=f"{base_url}{FHIR_PATH}/metadata",
        name="BipnMonitor",
        title="bipn-monitor FHIR R4 endpoint",
        status="active",
        date=now,
        publisher="bipn-monitor",
        kind="instance",
        software=CapabilityStatementSoftware(name="bipn-monitor", version=_software_version()),
        implementation=CapabilityStatementImplementation(
            description="bipn-monitor: bortezomib-induced peripheral neuropathy monitor",
            url=f"{base_url}{FHIR_PATH}",
        ),
        fhirVersion=FHIR_VERSION,
        format=["json"],
        rest=[
            CapabilityStatementRest(
                mode="server",
                documentation=(
                    "FHIR R4 in (create, transaction, batch) and the $monitor-summary out; "
                    "JSON only (XML is answered 406)"
                ),
                security=CapabilityStatementRestSecurity(cors=False, description=SECURITY),
                resource=resources,
                interaction=[
                    CapabilityStatementRestInteraction(
                        code="transaction",
                        documentation=f"POST {FHIR_PATH}: all entries stored, or none",
                    ),
                    CapabilityStatementRestInteraction(
                        code="batch",
                        documentation=f"POST {FHIR_PATH}: each entry stored or refused alone",
                    ),
                ],
            )
        ],
    )


def monitor_summary_definition(now: dt.datetime) -> OperationDefinition:
    """`Patient/{id}/$monitor-summary`: an instance operation that changes nothing."""
    return OperationDefinition(
        id=SUMMARY_OPERATION,
        url=SUMMARY_DEFINITION,
        name="MonitorSummary",
        title="bipn-monitor patient summary",
        status="active",
        kind="operation",
        date=now,
        publisher="bipn-monitor",
        description=(
            "The patient's current decisions (DetectedIssue), pending reassessment (Task), "
            "watch and escalation (Flag) and alerts (Communication), as a collection Bundle. "
            "By GET, or by POST with an empty body or a Parameters resource without parameters."
        ),
        affectsState=False,
        code=SUMMARY_OPERATION,
        resource=["Patient"],
        system=False,
        type=False,
        instance=True,
        parameter=[
            OperationDefinitionParameter(
                name="return",
                use="out",
                min=1,
                max="1",
                type="Bundle",
                documentation="a Bundle of type collection",
            )
        ],
    )
