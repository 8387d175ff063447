"""The patient report in FHIR (issue 16, item 6): the Questionnaire served at
`/fhir/r4/Questionnaire/bipn-patient-report`, and a QuestionnaireResponse to it mapped to a
patient-reported assessment (sensory: PRO-CTCAE's composite grade), by create and in Bundles.
Bad responses get an exact problem at their FHIR path and store nothing.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from fhir.resources.R4B.identifier import Identifier
from fhir.resources.R4B.patient import Patient
from fhir.resources.R4B.questionnaire import Questionnaire
from pydantic import SecretStr

from monitor.interop.fhir.inbound import pseudonym
from monitor.interop.fhir.questionnaire import (
    INTERFERENCE_SYSTEM,
    QUESTION_TEXTS,
    QUESTIONNAIRE_URL,
    SEVERITY_SYSTEM,
)
from monitor.policy_file import load_pack
from monitor.services import Services
from monitor.settings import Settings
from tests.common.service import Api, row_counts, rows
from tests.monitor.interop.fhir.test_inbound import as_json, grading, mapped, only_event

FHIR = "application/fhir+json"
FORM = "/fhir/r4/Questionnaire/bipn-patient-report"
WHEN = "2026-03-09T19:05:00+01:00"
KEY = "k" * 40
KEYED = Settings(patient_id_key=SecretStr(KEY))


def report(
    severity: int | None = 2,
    interference: int | None = 1,
    new_weakness: bool | None = False,
    comment: str | None = None,
    ident: str = "qr-1",
) -> dict[str, Any]:
    """A QuestionnaireResponse as a patient app sends it (only the items answered)."""
    items: list[dict[str, Any]] = []
    if severity is not None:
        coding = {"system": SEVERITY_SYSTEM, "code": str(severity)}
        items.append({"linkId": "numbness-tingling-severity", "answer": [{"valueCoding": coding}]})
    if interference is not None:
        coding = {"system": INTERFERENCE_SYSTEM, "code": str(interference)}
        items.append(
            {"linkId": "numbness-tingling-interference", "answer": [{"valueCoding": coding}]}
        )
    if new_weakness is not None:
        items.append({"linkId": "new-weakness", "answer": [{"valueBoolean": new_weakness}]})
    if comment is not None:
        items.append({"linkId": "comment", "answer": [{"valueString": comment}]})
    return {
        "resourceType": "QuestionnaireResponse",
        "id": ident,
        "identifier": {"system": "urn:example:patient-app", "value": ident},
        "questionnaire": QUESTIONNAIRE_URL,
        "status": "completed",
        "subject": {"reference": "Patient/P-1"},
        "authored": WHEN,
        "item": items,
    }


# --- the Questionnaire --------------------------------------------------------------------------


def test_the_questionnaire_is_public_and_asks_what_a_report_needs(api: Api) -> None:
    response = api.client.get(FORM)  # no token: a form, no patient data
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == FHIR
    form = Questionnaire.model_validate(response.json())
    assert (form.url, form.status, form.version) == (QUESTIONNAIRE_URL, "active", "1")
    assert form.url == "https://bipn-monitor.example/fhir/Questionnaire/bipn-patient-report"
    items = {i.linkId: i for i in form.item or []}
    assert list(items) == [
        "numbness-tingling-severity",
        "numbness-tingling-interference",
        "new-weakness",
        "comment",
    ]
    severity, interference = (
        items["numbness-tingling-severity"],
        items["numbness-tingling-interference"],
    )
    assert [(o.valueCoding.code, o.valueCoding.display) for o in severity.answerOption or []] == [
        ("0", "None"),
        ("1", "Mild"),
        ("2", "Moderate"),
        ("3", "Severe"),
        ("4", "Very severe"),
    ]
    assert [o.valueCoding.display for o in interference.answerOption or []] == [
        "Not at all",
        "A little bit",
        "Somewhat",
        "Quite a bit",
        "Very much",
    ]
    assert "NUMBNESS OR TINGLING IN YOUR HANDS OR FEET" in str(severity.text)
    [when] = interference.enableWhen or []
    assert (when.question, when.operator, when.answerCoding.code) == (
        "numbness-tingling-severity",
        "!=",
        "0",
    )
    assert (severity.type, severity.required) == ("choice", True)
    assert (items["new-weakness"].type, items["new-weakness"].required) == ("boolean", True)
    assert (items["comment"].type, items["comment"].maxLength) == ("string", 500)
    # PRO-CTCAE's LOINC codes could not be verified: the items carry none rather than a guess
    assert all(item.code is None for item in items.values())


def test_the_questionnaire_is_public_for_reading_only(api: Api) -> None:
    assert api.client.get(FORM, headers={"Authorization": "Bearer bm_nope"}).status_code == 200
    assert api.client.post(FORM).status_code == 401
    assert api.client.get("/fhir/r4/Questionnaire/other").status_code == 401  # not public


def test_the_capability_statement_lists_its_read(api: Api) -> None:
    statement = api.client.get("/fhir/r4/metadata").json()
    resources = {r["type"]: r for r in statement["rest"][0]["resource"]}
    assert [i["code"] for i in resources["Questionnaire"]["interaction"]] == ["read"]
    assert FORM in resources["Questionnaire"]["documentation"]
    assert [i["code"] for i in resources["QuestionnaireResponse"]["interaction"]] == ["create"]


# --- the mapping --------------------------------------------------------------------------------

# (severity, interference) -> the composite grade, POLICY V9's table (Basch et al. 2021)
COMPOSITE = [
    ((0, None), 0),
    ((1, 0), 1),
    ((1, 3), 2),
    ((2, 1), 1),
    ((2, 2), 2),
    ((2, 4), 3),
    ((3, 0), 1),
    ((3, 1), 2),
    ((3, 3), 3),
    ((4, 0), 2),
    ((4, 2), 2),
    ((4, 4), 3),
]


@pytest.mark.parametrize(("answers", "grade"), COMPOSITE, ids=[str(a) for a, _ in COMPOSITE])
def test_a_report_maps_to_a_patient_assessment_graded_by_the_composite(
    answers: tuple[int, int | None], grade: int
) -> None:
    severity, interference = answers
    event = only_event(report(severity, interference, new_weakness=True))
    answered = {"numbness_tingling_severity": severity}
    if interference is not None:
        answered["numbness_tingling_interference"] = interference
    assert {k: v for k, v in event.items() if k != "event_id"} == {
        "type": "assessment",
        "patient_id": "P-1",
        "occurred_at": WHEN,  # authored, its offset kept
        "source": "patient",
        "grades": {"sensory": grade},
        "findings": {"pro_ctcae": answered, "new_weakness": True},
        "extra": {"fhir_source": ["QuestionnaireResponse/qr-1"]},
    }
    assert event["event_id"].startswith("fhir-")


@pytest.mark.parametrize(
    "change",
    [
        lambda r: r,
        lambda r: r | {"questionnaire": f"{QUESTIONNAIRE_URL}|1"},
        lambda r: r | {"status": "amended"},
    ],
    ids=["canonical", "canonical|version", "amended"],
)
def test_the_accepted_variants(change: Any) -> None:
    event = only_event(change(report(comment="worse at night, dropped a cup")))
    assert event["findings"]["patient_comment"] == "worse at night, dropped a cup"
    assert event["grades"] == {"sensory": 1}


# What NLM's LHC-Forms 40.1.3 (npm `lforms`) wrote after rendering the served Questionnaire in
# headless chromium and answering Moderate, Quite a bit, yes and a comment (2026-12-02); a
# patient app adds the subject and an identifier. Its canonical carries the version.
LHC_FORMS_RESPONSE: dict[str, Any] = {
    "resourceType": "QuestionnaireResponse",
    "meta": {
        "profile": ["http://hl7.org/fhir/4.0/StructureDefinition/QuestionnaireResponse"],
        "tag": [{"code": "lformsVersion: 40.1.3"}],
    },
    "status": "completed",
    "authored": "2026-12-02T14:41:43.772Z",
    "questionnaire": "https://bipn-monitor.example/fhir/Questionnaire/bipn-patient-report|1",
    "item": [
        {
            "answer": [
                {
                    "valueCoding": {
                        "system": "https://bipn-monitor.example/fhir/CodeSystem/pro-ctcae-severity",
                        "code": "2",
                        "display": "Moderate",
                    }
                }
            ],
            "linkId": "numbness-tingling-severity",
            "text": QUESTION_TEXTS["numbness-tingling-severity"],  # the item's text, echoed
        },
        {
            "answer": [
                {
                    "valueCoding": {
                        "system": "https://bipn-monitor.example/fhir/CodeSystem/pro-ctcae-interference",
                        "code": "3",
                        "display": "Quite a bit",
                    }
                }
            ],
            "linkId": "numbness-tingling-interference",
            "text": QUESTION_TEXTS["numbness-tingling-interference"],  # the item's text, echoed
        },
        {
            "answer": [{"valueBoolean": True}],
            "linkId": "new-weakness",
            "text": QUESTION_TEXTS["new-weakness"],  # the item's text, echoed
        },
        {
            "answer": [{"valueString": "dropped a cup"}],
            "linkId": "comment",
            "text": QUESTION_TEXTS["comment"],  # the item's text, echoed
        },
    ],
}


def test_a_response_as_lhc_forms_writes_it() -> None:
    sent = LHC_FORMS_RESPONSE | {
        "subject": {"reference": "Patient/P-1"},
        "identifier": {"system": "urn:example:patient-app", "value": "lforms-1"},
    }
    event = only_event(sent)
    assert event["occurred_at"] == "2026-12-02T14:41:43.772000Z"
    assert (event["source"], event["grades"]) == ("patient", {"sensory": 2})
    assert event["findings"] == {
        "pro_ctcae": {"numbness_tingling_severity": 2, "numbness_tingling_interference": 3},
        "new_weakness": True,
        "patient_comment": "dropped a cup",
    }


def test_an_item_without_an_answer_is_unanswered() -> None:
    data = report(severity=0, interference=None)
    data["item"].append({"linkId": "comment"})  # shown, left empty
    event = only_event(data)
    assert "patient_comment" not in event["findings"]


def test_the_event_id_follows_the_identifier() -> None:
    first = only_event(report())["event_id"]
    assert only_event(report())["event_id"] == first  # sent again: the same event
    assert only_event(report(ident="qr-2"))["event_id"] != first
    without = report()
    del without["identifier"]
    assert only_event(without)["event_id"] not in (
        first,
        only_event(report(ident="qr-2"))["event_id"],
    )


def test_a_subject_by_identifier_gets_its_pseudonym() -> None:
    data = report()
    data["subject"] = {"identifier": {"system": "urn:hospital:mrn", "value": "0042"}}
    event = only_event(data, KEYED)
    assert event["patient_id"] == pseudonym("urn:hospital:mrn", "0042", KEY.encode())
    assert "0042" not in json.dumps(event)


def test_a_patient_entry_of_the_bundle_is_the_subject() -> None:
    patient = as_json(
        Patient(id="ehr-7", identifier=[Identifier(system="urn:hospital:mrn", value="0042")])
    )
    data = report()
    data["subject"] = {"reference": "urn:uuid:00000000-0000-4000-8000-000000000001"}
    payload = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"fullUrl": "urn:uuid:00000000-0000-4000-8000-000000000001", "resource": patient},
            {"fullUrl": "urn:uuid:00000000-0000-4000-8000-000000000002", "resource": data},
        ],
    }
    mapping = mapped(payload, KEYED)
    assert mapping.problems == []
    [event] = mapping.events
    assert event.event.patient_id == pseudonym("urn:hospital:mrn", "0042", KEY.encode())
    assert event.entries == (1,)


def _answer(index: int, answer: dict[str, Any]) -> Any:
    def change(r: dict[str, Any]) -> dict[str, Any]:
        r["item"][index]["answer"] = [answer]
        return r

    return change


def _items(change: Any) -> Any:
    def apply(r: dict[str, Any]) -> dict[str, Any]:
        r["item"] = change(r["item"])
        return r

    return apply


Q = "QuestionnaireResponse"
BAD = [
    pytest.param(
        report(severity=None, interference=None),
        f"{Q}.item",
        "required",
        "'numbness-tingling-severity' is not answered",
        id="no severity",
    ),
    pytest.param(
        report(severity=3, interference=None),
        f"{Q}.item",
        "required",
        "'numbness-tingling-interference' is not answered: it is required when severity is "
        "above 0 (severity 3)",
        id="severity without interference",
    ),
    pytest.param(
        report(severity=0, interference=2),
        f"{Q}.item[1].answer[0].valueCoding",
        "value",
        "the questionnaire disables it when severity is 0",
        id="interference after None",
    ),
    pytest.param(
        report(new_weakness=None),
        f"{Q}.item",
        "required",
        "'new-weakness' is not answered",
        id="no new weakness",
    ),
    pytest.param(
        report(severity=5),
        f"{Q}.item[0].answer[0].valueCoding",
        "code-invalid",
        f"{SEVERITY_SYSTEM}|5 is not an answer option of 'numbness-tingling-severity'",
        id="severity out of range",
    ),
    pytest.param(
        report(interference=-1),
        f"{Q}.item[1].answer[0].valueCoding",
        "code-invalid",
        f"{INTERFERENCE_SYSTEM}|-1 is not an answer option",
        id="interference out of range",
    ),
    pytest.param(
        _answer(0, {"valueCoding": {"system": INTERFERENCE_SYSTEM, "code": "2"}})(report()),
        f"{Q}.item[0].answer[0].valueCoding",
        "code-invalid",
        f"its options are {SEVERITY_SYSTEM} codes 0-4",
        id="severity in the interference system",
    ),
    pytest.param(
        _answer(0, {"valueInteger": 2})(report()),
        f"{Q}.item[0].answer[0]",
        "value",
        "'numbness-tingling-severity' takes a valueCoding",
        id="severity as integer",
    ),
    pytest.param(
        _answer(2, {"valueString": "yes"})(report()),
        f"{Q}.item[2].answer[0]",
        "value",
        "'new-weakness' takes a valueBoolean",
        id="new weakness as text",
    ),
    pytest.param(
        report(comment="x" * 501),
        f"{Q}.item[3].answer[0].valueString",
        "value",
        "501 characters: at most 500",
        id="comment too long",
    ),
    pytest.param(
        _items(lambda i: [*i, {"linkId": "mood", "answer": [{"valueString": "ok"}]}])(report()),
        f"{Q}.item[3].linkId",
        "not-supported",
        f"'mood' is not an item of {QUESTIONNAIRE_URL}",
        id="unknown item",
    ),
    pytest.param(
        _items(lambda i: [*i, copy.deepcopy(i[2])])(report()),
        f"{Q}.item[3].linkId",
        "value",
        "'new-weakness' is given twice",
        id="item twice",
    ),
    pytest.param(
        _items(lambda i: [i[0] | {"answer": i[0]["answer"] * 2}, *i[1:]])(report()),
        f"{Q}.item[0].answer",
        "value",
        "2 answers: 'numbness-tingling-severity' takes one",
        id="two answers",
    ),
    pytest.param(
        _items(lambda i: [i[0] | {"item": [{"linkId": "x"}]}, *i[1:]])(report()),
        f"{Q}.item[0]",
        "structure",
        "has no nested items",
        id="nested item",
    ),
    pytest.param(
        report() | {"questionnaire": "http://example.org/Questionnaire/phq-9"},
        f"{Q}.questionnaire",
        "not-supported",
        f"the service reads responses to {QUESTIONNAIRE_URL} (optionally |1) only",
        id="another questionnaire",
    ),
    pytest.param(
        report() | {"questionnaire": f"{QUESTIONNAIRE_URL}|2"},
        f"{Q}.questionnaire",
        "not-supported",
        "(optionally |1) only",
        id="another version",
    ),
    pytest.param(
        {k: v for k, v in report().items() if k != "questionnaire"},
        f"{Q}.questionnaire",
        "required",
        "none: the service reads responses to",
        id="no questionnaire",
    ),
    pytest.param(
        report() | {"status": "in-progress"},
        f"{Q}.status",
        "value",
        "'in-progress' is not mapped: only a completed (or amended) response",
        id="in progress",
    ),
    pytest.param(
        {k: v for k, v in report().items() if k != "authored"},
        f"{Q}.authored",
        "required",
        "is required: when the patient answered",
        id="no authored",
    ),
    pytest.param(
        report() | {"authored": "2026-03-09"},
        f"{Q}.authored",
        "value",
        "is a date without a time",
        id="authored a date",
    ),
    pytest.param(
        report() | {"authored": "2026-03-09T19:05:00"},
        f"{Q}.authored",
        "value",
        "has no UTC offset",
        id="authored without offset",
    ),
    pytest.param(
        {k: v for k, v in report().items() if k != "subject"},
        f"{Q}.subject",
        "required",
        "is required: the Patient/{id} the resource is about",
        id="no subject",
    ),
    pytest.param(
        report() | {"subject": {"identifier": {"system": "urn:hospital:mrn", "value": "0042"}}},
        f"{Q}.subject.identifier",
        "not-supported",
        "needs MONITOR_PATIENT_ID_KEY",
        id="identifier without the key",
    ),
    pytest.param(
        {k: v for k, v in report().items() if k not in ("identifier", "id")},
        f"{Q}.identifier",
        "required",
        "an event id cannot be derived",
        id="nothing to derive an id from",
    ),
]


@pytest.mark.parametrize(("payload", "location", "code", "message"), BAD)
def test_a_bad_report_gets_the_exact_problem(
    payload: dict[str, Any], location: str, code: str, message: str
) -> None:
    mapping = mapped(payload)
    assert mapping.events == []
    found = [(p.location, p.code) for p in mapping.problems]
    assert (location, code) in found, [str(p) for p in mapping.problems]
    problem = mapping.problems[found.index((location, code))]
    assert message in problem.message, problem.message
    assert "0042" not in json.dumps([str(p) for p in mapping.problems])  # the MRN never shown


def test_a_refused_answer_is_not_also_called_missing() -> None:
    problems = mapped(report(severity=7, new_weakness=None)).problems
    assert [(p.location, p.code) for p in problems] == [
        ("QuestionnaireResponse.item[0].answer[0].valueCoding", "code-invalid"),
        ("QuestionnaireResponse.item", "required"),  # new-weakness: not given at all
    ]
    data = report()
    data["item"][0] = {"linkId": "numbness-tingling-severity"}  # shown, left empty
    data["item"][2]["answer"] = [{"valueInteger": 1}]
    problems = mapped(data).problems
    assert [(p.location, p.code) for p in problems] == [
        ("QuestionnaireResponse.item[2].answer[0]", "value"),
        ("QuestionnaireResponse.item", "required"),
    ]
    assert "'numbness-tingling-severity' is not answered" in problems[1].message


# --- over HTTP ----------------------------------------------------------------------------------


@pytest.fixture
def sqlite_settings(sqlite_settings: Settings) -> Settings:
    """Patient reports are taken under a pack where they advise only (POLICY V9)."""
    return sqlite_settings.model_copy(update={"policy": "default@2"})


def stored(services: Services) -> list[dict[str, Any]]:
    found = rows(services, "SELECT event_id, type, body FROM event ORDER BY event_id")
    return [{**r, "body": json.loads(r["body"])} for r in found]


def test_a_report_is_created_once(api: Api, services: Services) -> None:
    headers = api.headers("ingest") | {"Content-Type": FHIR}
    payload = report(severity=3, interference=3, new_weakness=True, comment="fell on the stairs")
    first = api.client.post("/fhir/r4/QuestionnaireResponse", json=payload, headers=headers)
    assert first.status_code == 201, first.text
    [event] = stored(services)
    assert event["type"] == "assessment"
    assert event["body"]["source"] == "patient"
    assert event["body"]["grades"] == {"sensory": 3}
    assert event["body"]["findings"]["patient_comment"] == "fell on the stairs"
    location = f"http://testserver/fhir/r4/QuestionnaireResponse/{event['event_id']}"
    assert first.headers["location"] == location
    assert first.json() == payload | {"id": event["event_id"]}

    before = row_counts(services, ["event", "outbox"])
    again = api.client.post("/fhir/r4/QuestionnaireResponse", json=payload, headers=headers)
    assert again.status_code == 200, again.text
    assert again.headers["location"] == location
    assert row_counts(services, ["event", "outbox"]) == before


@pytest.mark.parametrize("policy", ["default@1", "label@1"])
def test_a_report_is_refused_where_the_pack_would_take_it_as_a_clinicians_grading(
    api: Api, services: Services, policy: str
) -> None:
    """Under version 1 a patient report would stop a drug by itself: refused, nothing stored."""
    services.pack = load_pack(policy, None)
    headers = api.headers("ingest") | {"Content-Type": FHIR}
    response = api.client.post("/fhir/r4/QuestionnaireResponse", json=report(), headers=headers)
    assert response.status_code == 422, response.text
    issue, nothing = response.json()["issue"]
    assert issue["code"] == "not-supported"
    assert f"this service decides with {policy}" in issue["diagnostics"]
    assert nothing["diagnostics"] == "nothing was stored"
    assert stored(services) == []


def test_a_bad_report_is_a_422_naming_the_element(api: Api, services: Services) -> None:
    headers = api.headers("ingest") | {"Content-Type": FHIR}
    response = api.client.post(
        "/fhir/r4/QuestionnaireResponse", json=report(severity=9), headers=headers
    )
    assert response.status_code == 422
    [problem, *_] = response.json()["issue"]
    assert problem["expression"] == ["QuestionnaireResponse.item[0].answer[0].valueCoding"]
    assert stored(services) == []


def test_a_report_in_a_transaction_with_a_clinician_grading(api: Api, services: Services) -> None:
    headers = api.headers("ingest") | {"Content-Type": FHIR}
    same_time = report() | {"authored": grading().effectiveDateTime.isoformat()}
    entries = [
        {"resource": same_time, "request": {"method": "POST", "url": "QuestionnaireResponse"}},
        {"resource": as_json(grading()), "request": {"method": "POST", "url": "Observation"}},
    ]
    transaction = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    response = api.client.post("/fhir/r4", json=transaction, headers=headers)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["type"] == "transaction-response"
    assert [e["response"]["status"] for e in answer["entry"]] == ["201 Created"] * 2
    sources = sorted(e["body"].get("source", "clinician") for e in stored(services))
    # two assessments at one time: a report is never joined to a clinician's grading
    assert sources == ["clinician", "patient"]

    bad = copy.deepcopy(transaction)
    bad["entry"][0]["resource"] = report(severity=None, ident="qr-9")
    bad["entry"][1]["resource"] = as_json(grading(ident="o9"))
    refused = api.client.post("/fhir/r4", json=bad, headers=headers)
    assert refused.status_code == 422
    assert len(stored(services)) == 2  # all or nothing
