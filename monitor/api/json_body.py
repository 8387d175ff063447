"""Reading a request body as strict JSON: every way it can fail is one error (a 400, not a 500).

The size limit is not checked here: `monitor.api.guard` counts every body as it streams in, for
every endpoint, and stops it at `max_body_bytes` (a 413) before it is buffered whole.
"""

import json
import re
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response

# Deeper than any body this service reads (an event batch with `extra` is about 11 levels, a
# FHIR Bundle or a CDS Hooks call about 15): a body nested hundreds of levels is refused here
# rather than reaching a validator or an error message that recurses through it.
MAX_DEPTH = 64


class InvalidJsonError(ValueError):
    """A body that is not strict JSON (RFC 8259) of valid Unicode, in UTF-8."""


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _reject_constant(name: str) -> Any:
    raise InvalidJsonError(f"{name} is not a JSON value")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object whose keys are all different: with a repeated key, which value counts is up to
    the parser (Python takes the last, others the first), so the body is ambiguous."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                shown = key if len(key) <= 40 else key[:37] + "..."
                raise InvalidJsonError(f"the key {shown!r} appears twice in one object")
            seen.add(key)
    return obj


def parse_json(raw: bytes) -> Any:
    """`json.loads`, but every way a body can fail is an `InvalidJsonError` (a 400, never a
    500): not UTF-8 (`json.loads` would guess UTF-16 or UTF-32), bad syntax, NaN/Infinity, a
    key twice in one object, nesting deeper than MAX_DEPTH, integers too long to convert, and
    unpaired UTF-16 surrogates (`"\\ud800"`), which no database or JSON parser downstream
    accepts, so a stored event holding one could never be processed."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidJsonError(
            f"the body is not UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start})"
        ) from None
    try:
        payload = json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_unique_keys)
    except RecursionError:
        raise InvalidJsonError(f"nested too deeply (at most {MAX_DEPTH} levels)") from None
    except ValueError as exc:  # JSONDecodeError, InvalidJsonError, int digit limit
        raise InvalidJsonError(str(exc)) from None
    if raw.count(b"{") + raw.count(b"[") > MAX_DEPTH:  # else it can't be that deep
        _check_depth(payload)
    if _SURROGATE_ESCAPE.search(raw):
        for value in _walk(payload):
            if isinstance(value, str) and _SURROGATE.search(value):
                raise InvalidJsonError("a string holds an unpaired UTF-16 surrogate (\\ud8xx)")
    return payload


def _check_depth(payload: Any) -> None:
    stack: list[tuple[Any, int]] = [(payload, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict | list):
            if depth > MAX_DEPTH:
                raise InvalidJsonError(f"nested too deeply (at most {MAX_DEPTH} levels)")
            children = value.values() if isinstance(value, dict) else value
            stack.extend((child, depth + 1) for child in children)


def _walk(payload: Any) -> Iterator[Any]:
    """Every value and key of the document (iteratively: no recursion limit)."""
    stack = [payload]
    while stack:
        value = stack.pop()
        yield value
        if isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)


class StrictJsonRequest(Request):
    """A request whose `json()` is `parse_json`: the endpoints FastAPI parses for us (a model
    as the body) refuse what the others refuse, with a 400 saying why."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            try:
                self._json = parse_json(await self.body())
            except InvalidJsonError as exc:
                raise HTTPException(400, f"the body is not valid JSON: {exc}") from None
        return self._json


class StrictJsonRoute(APIRoute):
    """The app's route class (FastAPI's documented way to customise the request)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict_handler(request: Request) -> Response:
            return await handler(StrictJsonRequest(request.scope, request.receive))

        return strict_handler


class StrictJsonRouter(APIRouter):
    """Every domain's router: its routes read JSON bodies strictly (`StrictJsonRoute`)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("route_class", StrictJsonRoute)
        super().__init__(**kwargs)
