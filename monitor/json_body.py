"""Reading a request body as strict JSON: every way it can fail is one error (a 400, not a 500)."""

import json
import re
from typing import Any

from starlette.requests import Request


class BodyTooLargeError(ValueError):
    """A body over the configured limit (a 413), told before reading it when declared."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"body over {limit} bytes")


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refused early by its declared length and again by its real one."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BodyTooLargeError(limit)
    raw = await request.body()
    if len(raw) > limit:
        raise BodyTooLargeError(limit)
    return raw


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
