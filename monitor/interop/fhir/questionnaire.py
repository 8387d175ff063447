"""The patient report as a FHIR `Questionnaire` (issue 16): what a patient app renders, and what
a `QuestionnaireResponse` sent back must answer (`inbound.questionnaire_response` reads it).

Two PRO-CTCAE items of "numbness or tingling in your hands or feet" (NCI's item texts and answer
choices, recall period the last 7 days), interference asked only when severity is not "None"
(PRO-CTCAE's branching, as `enableWhen`), then new weakness / falls / trouble walking and an
optional comment. The answer choices are codings of two code systems of this service (codes
`0`-`4`, as the patient-reported scores). The items carry no LOINC code: PRO-CTCAE's LOINC codes
could not be verified, and a guessed code would mislabel the data.

The linkIds are the contract of a response: they never change within a version.
"""

from __future__ import annotations

import datetime as dt

from fhir.resources.R4B.coding import Coding
from fhir.resources.R4B.questionnaire import (
    Questionnaire,
    QuestionnaireItem,
    QuestionnaireItemAnswerOption,
    QuestionnaireItemEnableWhen,
)

from monitor.settings import FHIR_BASE

QUESTIONNAIRE_ID = "bipn-patient-report"
QUESTIONNAIRE_URL = f"{FHIR_BASE}/Questionnaire/{QUESTIONNAIRE_ID}"
QUESTIONNAIRE_VERSION = "1"
QUESTIONNAIRE_DATE = dt.date(2026, 12, 2)  # when this version was published

SEVERITY = "numbness-tingling-severity"
INTERFERENCE = "numbness-tingling-interference"
NEW_WEAKNESS = "new-weakness"
COMMENT = "comment"
COMMENT_MAX_LENGTH = 500  # as the contract's findings.patient_comment

SEVERITY_SYSTEM = f"{FHIR_BASE}/CodeSystem/pro-ctcae-severity"
INTERFERENCE_SYSTEM = f"{FHIR_BASE}/CodeSystem/pro-ctcae-interference"
# PRO-CTCAE's answer choices, score 0-4 in order
SEVERITY_ANSWERS = ("None", "Mild", "Moderate", "Severe", "Very severe")
INTERFERENCE_ANSWERS = ("Not at all", "A little bit", "Somewhat", "Quite a bit", "Very much")
ANSWER_SYSTEMS = {SEVERITY: SEVERITY_SYSTEM, INTERFERENCE: INTERFERENCE_SYSTEM}

QUESTION_TEXTS = {
    SEVERITY: "In the last 7 days, what was the SEVERITY of your NUMBNESS OR TINGLING IN YOUR "
    "HANDS OR FEET at its WORST?",
    INTERFERENCE: "In the last 7 days, how much did NUMBNESS OR TINGLING IN YOUR HANDS OR FEET "
    "INTERFERE with your usual or daily activities?",
    NEW_WEAKNESS: "Since your last report, have you had new weakness in your arms or legs, a "
    "fall, or new trouble walking?",
    COMMENT: f"Anything else your care team should know? (at most {COMMENT_MAX_LENGTH} characters)",
}
ITEM_TYPES = {
    SEVERITY: "choice",
    INTERFERENCE: "choice",
    NEW_WEAKNESS: "boolean",
    COMMENT: "string",
}


def _options(system: str, texts: tuple[str, ...]) -> list[QuestionnaireItemAnswerOption]:
    return [
        QuestionnaireItemAnswerOption(
            valueCoding=Coding(system=system, code=str(score), display=text)
        )
        for score, text in enumerate(texts)
    ]


def patient_report_questionnaire() -> Questionnaire:
    """The questionnaire, the same for every caller (it holds no patient data)."""
    return Questionnaire(
        id=QUESTIONNAIRE_ID,
        url=QUESTIONNAIRE_URL,
        version=QUESTIONNAIRE_VERSION,
        name="BipnPatientReport",
        title="Weekly symptom report: numbness and tingling",
        status="active",
        subjectType=["Patient"],
        date=QUESTIONNAIRE_DATE,
        publisher="bipn-monitor",
        description=(
            "A patient on bortezomib reports numbness or tingling (PRO-CTCAE severity and "
            "interference, last 7 days), new weakness, falls or trouble walking, and a comment. "
            "Send the QuestionnaireResponse to POST /fhir/r4/QuestionnaireResponse: it becomes "
            "a patient-reported assessment (sensory grade: the PRO-CTCAE composite grade), "
            "which advises the nurse; clinicians decide."
        ),
        purpose="Weekly patient-reported symptoms between visits (POLICY V9)",
        copyright=(
            "The two PRO-CTCAE items are the NCI's (PRO-CTCAE, National Cancer Institute), used "
            "under its terms of use: https://healthcaredelivery.cancer.gov/pro-ctcae/"
        ),
        item=[
            QuestionnaireItem(
                linkId=SEVERITY,
                text=QUESTION_TEXTS[SEVERITY],
                type="choice",
                required=True,
                answerOption=_options(SEVERITY_SYSTEM, SEVERITY_ANSWERS),
            ),
            QuestionnaireItem(
                linkId=INTERFERENCE,
                text=QUESTION_TEXTS[INTERFERENCE],
                type="choice",
                required=True,  # when enabled: only asked when there was numbness or tingling
                enableWhen=[
                    QuestionnaireItemEnableWhen(
                        question=SEVERITY,
                        operator="!=",
                        answerCoding=Coding(system=SEVERITY_SYSTEM, code="0"),
                    )
                ],
                answerOption=_options(INTERFERENCE_SYSTEM, INTERFERENCE_ANSWERS),
            ),
            QuestionnaireItem(
                linkId=NEW_WEAKNESS,
                text=QUESTION_TEXTS[NEW_WEAKNESS],
                type="boolean",
                required=True,
            ),
            QuestionnaireItem(
                linkId=COMMENT,
                text=QUESTION_TEXTS[COMMENT],
                type="string",
                required=False,
                maxLength=COMMENT_MAX_LENGTH,
            ),
        ],
    )
