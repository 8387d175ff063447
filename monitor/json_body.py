"""Reading a request body as strict JSON: every way it can fail is one error (a 400, not a 500)."""

import json
import re
from typing import Any


class InvalidJsonError(ValueError):
    """A body that is not strict JSON (RFC 8259) of valid Unicode."""


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _reject_constant(name: str) -> Any:
    raise InvalidJsonError(f"{name} is not a JSON value")


def parse_json(raw: bytes) -> Any:
    """`json.loads`, but every way a body can fail is an `InvalidJsonError` (a 400, never a
    500): bad syntax or encoding, NaN/Infinity, nesting too deep, integers too long to convert,
    and unpaired UTF-16 surrogates (`"\\ud800"`), which no database or JSON parser downstream
    accepts, so a stored event holding one could never be processed."""
    try:
        payload = json.loads(raw, parse_constant=_reject_constant)
    except RecursionError:
        raise InvalidJsonError("nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, int digit limit
        raise InvalidJsonError(str(exc)) from None
    if _SURROGATE_ESCAPE.search(raw):
        stack = [payload]
        while stack:
            value = stack.pop()
            if isinstance(value, dict):
                stack.extend(value.keys())
                stack.extend(value.values())
            elif isinstance(value, list):
                stack.extend(value)
            elif isinstance(value, str) and _SURROGATE.search(value):
                raise InvalidJsonError("a string holds an unpaired UTF-16 surrogate (\\ud8xx)")
    return payload
