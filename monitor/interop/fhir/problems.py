"""One problem of a FHIR request: where (a FHIRPath-like location), what kind, and why.

Problems become `OperationOutcome` issues; their `code` is one of FHIR's IssueType codes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from fhir.resources.R4B.operationoutcome import OperationOutcome, OperationOutcomeIssue

IssueCode = Literal[
    "invalid",
    "structure",
    "required",
    "value",
    "code-invalid",
    "not-supported",
    "conflict",
    "too-costly",
    "login",
    "forbidden",
    "not-found",
    "exception",
]
# the IssueType of an HTTP error answered under /fhir/r4 (`http_outcome`)
HTTP_ISSUE_CODES: dict[int, IssueCode] = {
    400: "structure",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    406: "not-supported",
    409: "conflict",
    413: "too-costly",
    415: "not-supported",
    422: "invalid",
}


@dataclass(frozen=True, slots=True)
class Problem:
    """`location` is e.g. `Bundle.entry[2].resource.valueInteger` or `Observation.subject`."""

    location: str
    code: IssueCode
    message: str

    def __str__(self) -> str:
        return f"{self.location}: {self.message}"


class FhirProblems(ValueError):  # noqa: N818  # a bag of problems, raised
    """Raised with every problem found in one resource (or request)."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(str(p) for p in problems))
        self.problems = problems


def operation_outcome(
    problems: list[Problem], severity: Literal["error", "fatal"] = "error"
) -> OperationOutcome:
    """Every problem as an issue: the location as its `expression`, the reason as diagnostics."""
    return OperationOutcome(
        issue=[
            OperationOutcomeIssue(
                severity=severity,
                code=p.code,
                diagnostics=str(p),
                expression=[p.location],
            )
            for p in problems
        ]
    )


def information(message: str) -> OperationOutcome:
    """A success outcome that says what was done (e.g. which event id an entry became)."""
    return OperationOutcome(
        issue=[
            OperationOutcomeIssue(severity="information", code="informational", diagnostics=message)
        ]
    )


def http_outcome(
    status: int, detail: str, fields: Sequence[tuple[str, str]] = ()
) -> OperationOutcome:
    """An HTTP error as FHIR says it (every error under /fhir/r4): the status' IssueType, the
    detail as diagnostics, then one issue per refused field (named in its diagnostics: a query
    parameter or a JSON field is no FHIRPath `expression`)."""
    code = HTTP_ISSUE_CODES.get(status, "exception" if status >= 500 else "invalid")
    issues = [OperationOutcomeIssue(severity="error", code=code, diagnostics=detail)]
    issues += [
        OperationOutcomeIssue(
            severity="error", code=code, diagnostics=f"{field}: {message}" if field else message
        )
        for field, message in fields
    ]
    return OperationOutcome(issue=issues)
