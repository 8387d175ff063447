"""CONTRACT's additions for policy version 2 in the event models (issue 13, item 3): body
surface area at enrolment (given, or Mosteller's from height and weight) and the new findings
(INCAT, new weakness, the PRO-CTCAE numbness item). Bounds refuse with the field named."""

from __future__ import annotations

import math
from typing import Any

import pytest

from policies import EventValidationError, parse_event
from policies.events import Assessment, Enrollment
from tests.common.factories import assessment, at, enrollment


@pytest.mark.parametrize(
    ("fields", "bsa"),
    [
        pytest.param({"bsa_m2": 1.8}, 1.8, id="given"),
        pytest.param(
            {"height_cm": 170, "weight_kg": 70}, math.sqrt(170 * 70 / 3600), id="mosteller"
        ),
        pytest.param({"bsa_m2": 1.6, "height_cm": 180, "weight_kg": 90}, 1.6, id="given-wins"),
        pytest.param({"height_cm": 170}, None, id="height-only"),
        pytest.param({}, None, id="none"),
    ],
)
def test_the_body_surface_area(fields: dict[str, Any], bsa: float | None) -> None:
    event = parse_event(enrollment(**fields))
    assert isinstance(event, Enrollment)
    assert event.body_surface_area() == bsa


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"bsa_m2": 0.4}, "bsa_m2"),
        ({"bsa_m2": 3.1}, "bsa_m2"),
        ({"height_cm": 49}, "height_cm"),
        ({"height_cm": 251}, "height_cm"),
        ({"weight_kg": 19.5}, "weight_kg"),
        ({"weight_kg": 301}, "weight_kg"),
        ({"bsa_m2": "1.8"}, "bsa_m2"),
    ],
)
def test_the_enrolment_bounds(fields: dict[str, Any], field: str) -> None:
    with pytest.raises(EventValidationError) as caught:
        parse_event(enrollment(**fields))
    assert [p.field for p in caught.value.problems] == [field]


def test_the_new_findings() -> None:
    findings = {
        "incat": 3,
        "new_weakness": True,
        "pro_ctcae": {"numbness_tingling_severity": 2, "numbness_tingling_interference": 4},
    }
    event = parse_event(assessment(at(1), sensory=1, findings=findings))
    assert isinstance(event, Assessment)
    assert event.findings is not None
    assert (event.findings.incat, event.findings.new_weakness) == (3, True)
    assert event.findings.pro_ctcae is not None
    assert event.findings.pro_ctcae.numbness_tingling_interference == 4


@pytest.mark.parametrize(
    ("findings", "field"),
    [
        ({"incat": 11}, "findings.incat"),
        ({"incat": -1}, "findings.incat"),
        ({"new_weakness": "yes"}, "findings.new_weakness"),
        (
            {"pro_ctcae": {"numbness_tingling_severity": 5}},
            "findings.pro_ctcae.numbness_tingling_severity",
        ),
        ({"pro_ctcae": {"numbness": 1}}, "findings.pro_ctcae.numbness"),
    ],
)
def test_the_new_findings_bounds(findings: dict[str, Any], field: str) -> None:
    with pytest.raises(EventValidationError) as caught:
        parse_event(assessment(at(1), sensory=1, findings=findings))
    assert [p.field for p in caught.value.problems] == [field]
