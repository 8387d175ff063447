"""One resource's JSON validated by its fhir.resources model: pydantic's errors become
problems at FHIR paths (`Bundle.entry[2].resource.subject`), worded for the sender. Also the one
check the models do not make: a quoted integer (a grade of "2") is refused, as the contract does.
"""

from __future__ import annotations

import re
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from monitor.interop.fhir.inbound.common import EntryProblem, _Source
from monitor.interop.fhir.problems import IssueCode


def _parse(
    entry: int | None, raw: dict[str, Any], full_url: str | None
) -> tuple[_Source | None, list[EntryProblem]]:
    """Validate one resource with its fhir.resources model; problems name FHIR paths."""
    resource_type = raw.get("resourceType")
    base = f"Bundle.entry[{entry}].resource" if entry is not None else str(resource_type)
    try:
        model = get_fhir_model_class(str(resource_type))
    except (ValueError, KeyError):
        return None, [
            EntryProblem(
                entry,
                f"{base}.resourceType",
                "not-supported",
                f"{resource_type!r} is not a FHIR R4 resource type",
            )
        ]
    try:
        resource = model.model_validate(raw)
    except ValidationError as exc:
        return None, [
            EntryProblem(
                entry,
                _path(base, err["loc"]),
                _issue_code(err),
                _fhir_message(err, shows_value=not _identifying(str(resource_type), err["loc"])),
            )
            for err in exc.errors()
        ]
    return _Source(entry, resource, raw, full_url), _raw_type_problems(entry, base, raw)


def _path(base: str, loc: tuple[Any, ...]) -> str:
    text = base
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text


def _issue_code(err: Any) -> IssueCode:
    kind = str(err["type"])
    if "missing" in kind:
        return "required"
    if kind == "extra_forbidden":
        return "structure"
    return "value"


def _identifying(resource_type: str, loc: tuple[Any, ...]) -> bool:
    """A Patient's elements and a subject's identifier may name the patient: never echoed."""
    return resource_type == "Patient" or "subject" in loc


def _fhir_message(err: Any, shows_value: bool = True) -> str:
    kind, value = str(err["type"]), err.get("input")
    if not shows_value and "missing" not in kind and kind != "extra_forbidden":
        return f"{err['msg']} (the value is not repeated: it may identify the patient)"
    if "missing" in kind:
        return "is required"
    if kind == "extra_forbidden":
        return "unknown element: check its name against FHIR R4"
    if isinstance(value, str) and re.match(
        r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?$", value
    ):
        return (
            f"{value!r} has no UTC offset: clinical times must carry one "
            "(e.g. 2026-03-02T08:40:00+01:00 or ...Z)"
        )
    shown_value = repr(value) if not isinstance(value, dict | list) else type(value).__name__
    return f"{shown_value[:60]}: {err['msg']}"


def _raw_type_problems(entry: int | None, base: str, raw: dict[str, Any]) -> list[EntryProblem]:
    """FHIR JSON integers are numbers: a quoted grade ("2") is refused, as the contract does."""
    problems = []
    candidates = [("valueInteger", raw.get("valueInteger"))]
    for index, component in enumerate(raw.get("component") or []):
        if isinstance(component, dict):
            candidates.append((f"component[{index}].valueInteger", component.get("valueInteger")))
    for name, value in candidates:
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            problems.append(
                EntryProblem(
                    entry,
                    f"{base}.{name}",
                    "value",
                    f"{value!r} is not a whole number (write it without quotes)",
                )
            )
    return problems
