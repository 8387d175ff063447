"""QuestionnaireResponse -> assessment: a patient's report on the service's questionnaire
(`monitor.interop.fhir.questionnaire`), read by linkId.

The report is a patient-reported assessment (`source: patient`): its only grade is `sensory`,
PRO-CTCAE's composite grade of the severity and interference answered (`policies.pro_ctcae`);
`findings` keep the answers (`pro_ctcae`), `new_weakness` and the comment (`patient_comment`).
`authored` is when the patient answered. A response that does not answer the questionnaire as
it asks (severity missing, interference missing after a severity above "None" or answered after
"None", a choice not among its options, an unknown item) is refused, naming the element.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fhir.resources.R4B.questionnaireresponse import (
    QuestionnaireResponse,
    QuestionnaireResponseItem,
)

from monitor.interop.fhir.inbound.common import (
    _common,
    _Draft,
    _key,
    _Source,
    _SubjectResolver,
    _time,
)
from monitor.interop.fhir.problems import FhirProblems, Problem
from monitor.interop.fhir.questionnaire import (
    ANSWER_SYSTEMS,
    COMMENT,
    COMMENT_MAX_LENGTH,
    INTERFERENCE,
    ITEM_TYPES,
    NEW_WEAKNESS,
    QUESTIONNAIRE_URL,
    QUESTIONNAIRE_VERSION,
    SEVERITY,
)
from policies.pro_ctcae import composite_grade

RESPONSE_STATUSES = ("completed", "amended")
ACCEPTED_CANONICALS = (QUESTIONNAIRE_URL, f"{QUESTIONNAIRE_URL}|{QUESTIONNAIRE_VERSION}")
SCORES = tuple(str(score) for score in range(5))
# the contract's findings.pro_ctcae, by the item that answers it
PRO_CTCAE_FIELDS = {
    SEVERITY: "numbness_tingling_severity",
    INTERFERENCE: "numbness_tingling_interference",
}


@dataclass(slots=True)
class _Answer:
    value: Any
    location: str  # the answer's element, e.g. ....item[0].answer[0].valueCoding


def _questionnaire_response(
    source: _Source, response: QuestionnaireResponse, subjects: _SubjectResolver
) -> _Draft:
    patient_id, problems = _common(source, response, subjects)
    if response.questionnaire not in ACCEPTED_CANONICALS:
        given = "none" if response.questionnaire is None else repr(response.questionnaire)[:120]
        problems.append(
            Problem(
                f"{source.path}.questionnaire",
                "required" if response.questionnaire is None else "not-supported",
                f"{given}: the service reads responses to {QUESTIONNAIRE_URL} (optionally "
                f"|{QUESTIONNAIRE_VERSION}) only",
            )
        )
    if response.status not in RESPONSE_STATUSES:
        problems.append(
            Problem(
                f"{source.path}.status",
                "value",
                f"{response.status!r} is not mapped: only a completed (or amended) response is "
                "a patient report",
            )
        )
    at, time_problems = _time(
        response.authored, f"{source.path}.authored", "when the patient answered (authored)"
    )
    problems += time_problems
    answers, refused = _answers(source, response.item or [], problems)
    severity, interference = answers.get(SEVERITY), answers.get(INTERFERENCE)
    items = f"{source.path}.item"
    if refused & {SEVERITY, INTERFERENCE}:
        pass  # its answer is refused already: no grade to judge the pair by
    elif severity is None:
        problems.append(
            Problem(items, "required", f"{SEVERITY!r} is not answered: severity is required")
        )
    elif severity.value != 0 and interference is None:
        problems.append(
            Problem(
                items,
                "required",
                f"{INTERFERENCE!r} is not answered: it is required when severity is above 0 "
                f"(severity {severity.value})",
            )
        )
    elif severity.value == 0 and interference is not None:
        problems.append(
            Problem(
                interference.location,
                "value",
                f"{INTERFERENCE!r} is answered, but the questionnaire disables it when severity "
                "is 0 (None): a response does not answer a disabled item",
            )
        )
    if NEW_WEAKNESS not in answers and NEW_WEAKNESS not in refused:
        problems.append(
            Problem(
                items,
                "required",
                f"{NEW_WEAKNESS!r} is not answered: new weakness, falls or trouble walking is "
                "required (true or false)",
            )
        )
    key, key_problems = _key(source, "assessment")
    problems += key_problems
    if problems:
        raise FhirProblems(problems)
    assert at is not None
    assert severity is not None
    pro_ctcae = {f: answers[i].value for i, f in PRO_CTCAE_FIELDS.items() if i in answers}
    findings: dict[str, Any] = {
        "pro_ctcae": pro_ctcae,
        "new_weakness": answers[NEW_WEAKNESS].value,
    }
    if COMMENT in answers:
        findings["patient_comment"] = answers[COMMENT].value
    body: dict[str, Any] = {
        "type": "assessment",
        "patient_id": patient_id,
        "occurred_at": at.isoformat(),
        "source": "patient",
        "grades": {
            "sensory": composite_grade(
                severity.value, interference.value if interference is not None else None
            )
        },
        "findings": findings,
    }
    locations = {
        "patient_id": (source.entry, f"{source.path}.subject"),
        "occurred_at": (source.entry, f"{source.path}.authored"),
        "grades": (source.entry, severity.location),
        "findings": (source.entry, items),
    }
    for link_id, field in PRO_CTCAE_FIELDS.items():
        if link_id in answers:
            locations[f"findings.pro_ctcae.{field}"] = (source.entry, answers[link_id].location)
    if COMMENT in answers:
        locations["findings.patient_comment"] = (source.entry, answers[COMMENT].location)
    return _Draft([source], [key], body, locations)


def _answers(
    source: _Source, items: list[QuestionnaireResponseItem], problems: list[Problem]
) -> tuple[dict[str, _Answer], set[str]]:
    """Each answered item by linkId, its answer read as its type, and the items whose answer
    is refused (each with its problem)."""
    found: dict[str, _Answer] = {}
    seen: set[str] = set()
    unanswered: set[str] = set()
    for index, item in enumerate(items):
        where = f"{source.path}.item[{index}]"
        link_id = str(item.linkId)
        if link_id not in ITEM_TYPES:
            problems.append(
                Problem(
                    f"{where}.linkId",
                    "not-supported",
                    f"{link_id[:60]!r} is not an item of {QUESTIONNAIRE_URL}; its items are "
                    + ", ".join(ITEM_TYPES),
                )
            )
            continue
        if link_id in seen:
            problems.append(Problem(f"{where}.linkId", "value", f"{link_id!r} is given twice"))
            continue
        seen.add(link_id)
        if item.modifierExtension or any(a.modifierExtension for a in item.answer or []):
            problems.append(
                Problem(
                    where,
                    "not-supported",
                    "a modifier extension changes the answer's meaning, and the service does "
                    "not know this one: the answer cannot be read safely",
                )
            )
            continue
        if item.item or any(a.item for a in item.answer or []):
            problems.append(
                Problem(where, "structure", f"{link_id!r} has no nested items in the questionnaire")
            )
            continue
        answers = item.answer or []
        if not answers:
            unanswered.add(link_id)  # shown and left empty: not answered
            continue
        if len(answers) > 1:
            problems.append(
                Problem(
                    f"{where}.answer",
                    "value",
                    f"{len(answers)} answers: {link_id!r} takes one (it does not repeat)",
                )
            )
            continue
        answer = _read(link_id, answers[0], f"{where}.answer[0]", problems)
        if answer is not None:
            found[link_id] = answer
    return found, seen - set(found) - unanswered


def _read(link_id: str, answer: Any, where: str, problems: list[Problem]) -> _Answer | None:
    kind = ITEM_TYPES[link_id]
    if kind == "choice":
        return _choice(link_id, answer.valueCoding, where, problems)
    if kind == "boolean":
        if answer.valueBoolean is None:
            problems.append(Problem(where, "value", f"{link_id!r} takes a valueBoolean"))
            return None
        return _Answer(answer.valueBoolean, f"{where}.valueBoolean")
    text = answer.valueString
    if text is None:
        problems.append(Problem(where, "value", f"{link_id!r} takes a valueString"))
        return None
    if len(text) > COMMENT_MAX_LENGTH:
        problems.append(
            Problem(
                f"{where}.valueString",
                "value",
                f"{len(text)} characters: at most {COMMENT_MAX_LENGTH} (the item's maxLength)",
            )
        )
        return None
    return _Answer(text, f"{where}.valueString")


def _choice(link_id: str, coding: Any, where: str, problems: list[Problem]) -> _Answer | None:
    system = ANSWER_SYSTEMS[link_id]
    if coding is None:
        problems.append(
            Problem(
                where,
                "value",
                f"{link_id!r} takes a valueCoding: one of its answer options ({system}, codes 0-4)",
            )
        )
        return None
    location = f"{where}.valueCoding"
    if coding.system != system or coding.code not in SCORES:
        problems.append(
            Problem(
                location,
                "code-invalid",
                f"{coding.system or '(no system)'}|{str(coding.code)[:20]} is not an answer "
                f"option of {link_id!r}: its options are {system} codes 0-4",
            )
        )
        return None
    return _Answer(int(coding.code), location)
