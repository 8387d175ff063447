"""Which answer formats a FHIR request may ask for: JSON only (the server writes no XML or
Turtle), asked by the `Accept` header or FHIR's `_format` parameter; anything else is a 406."""

from __future__ import annotations

# what a client may name to get FHIR JSON (`application/json+fhir`: the DSTU2 name, still sent)
JSON_TYPES = frozenset({"application/fhir+json", "application/json", "application/json+fhir"})
JSON_RANGES = JSON_TYPES | {"*/*", "application/*"}
FORMAT_NAMES = JSON_TYPES | {"json"}
SERVED = "this server answers application/fhir+json only"


def _media_type(value: str) -> str:
    return value.split(";", 1)[0].strip().lower()


def _quality(value: str) -> float:
    for parameter in value.split(";")[1:]:
        name, _, given = parameter.partition("=")
        if name.strip().lower() == "q":
            try:
                return float(given.strip())
            except ValueError:
                return 0.0  # an unreadable weight is no acceptance
    return 1.0


def _said(value: str) -> str:
    return repr(value) if len(value) <= 80 else repr(value[:77] + "...")


def refused_format(accept: str | None, format_param: str | None) -> str | None:
    """Why JSON can't be the answer (a 406), or None when it can: `_format` wins over `Accept`
    (FHIR's rule for clients that can't set headers); no `Accept` accepts anything."""
    if format_param is not None:
        # an unescaped `+` in a query string arrives as a space (application/fhir json)
        if _media_type(format_param.replace(" ", "+")) in FORMAT_NAMES:
            return None
        return f"_format {_said(format_param)}: {SERVED} (_format=json)"
    if accept is None or not accept.strip():
        return None
    for item in accept.split(","):
        if _media_type(item) in JSON_RANGES and _quality(item) > 0:
            return None
    return f"Accept {_said(accept)}: {SERVED}"
