"""`refused_format`: JSON asked for (or nothing asked) passes; anything else says why."""

from __future__ import annotations

import pytest

from monitor.interop.fhir.formats import refused_format


@pytest.mark.parametrize(
    ("accept", "format_param"),
    [
        (None, None),
        ("", None),
        ("application/fhir+json", None),
        ("application/json+fhir", None),  # the DSTU2 name some clients still send
        ("application/fhir+json; charset=utf-8", None),
        ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", None),  # a browser
        ("application/*", None),
        ("APPLICATION/FHIR+JSON", None),
        ("application/fhir+xml", "json"),
        (None, "application/fhir+json"),
        (None, "application/fhir json"),
        (None, "application/json;charset=utf-8"),
    ],
)
def test_json_passes(accept: str | None, format_param: str | None) -> None:
    assert refused_format(accept, format_param) is None


@pytest.mark.parametrize(
    ("accept", "format_param", "why"),
    [
        ("application/fhir+xml", None, "Accept 'application/fhir+xml': "),
        ("application/xml, text/xml", None, "Accept 'application/xml, text/xml': "),
        ("application/fhir+json;q=0, application/xml", None, "Accept "),
        ("application/fhir+json;q=oops", None, "Accept "),
        ("text/turtle", None, "Accept 'text/turtle': "),
        (None, "xml", "_format 'xml': "),
        ("application/fhir+json", "ttl", "_format 'ttl': "),
        (None, "x" * 200, "_format 'xxxx"),
    ],
)
def test_anything_else_is_refused_saying_what_was_asked(
    accept: str | None, format_param: str | None, why: str
) -> None:
    refusal = refused_format(accept, format_param)
    assert refusal is not None
    assert refusal.startswith(why)
    assert "this server answers application/fhir+json only" in refusal
    assert len(refusal) < 200  # what was asked is cut short, never echoed whole
