"""The API's error shape, `{"detail", "errors": [{"field", "message"}]}`, in one place; under
`/fhir/r4` every error is a FHIR `OperationOutcome` instead (`error_content` chooses, for the
exception handlers here and for what the guard answers itself)."""

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from monitor.interop.fhir.problems import http_outcome

FHIR_PREFIX = "/fhir/r4"
FHIR_JSON = "application/fhir+json"


def is_fhir_path(path: str) -> bool:
    return path == FHIR_PREFIX or path.startswith(f"{FHIR_PREFIX}/")


def error_content(
    path: str, status: int, detail: str, errors: list[dict[str, str]] | None = None, **extra: Any
) -> tuple[dict[str, Any], str]:
    """An error's body and media type: an `OperationOutcome` under /fhir/r4 (FHIR clients read
    nothing else), elsewhere the API's shape."""
    if not is_fhir_path(path):
        body = {"detail": detail, **extra}
        if errors is not None:
            body["errors"] = errors
        return body, "application/json"
    said = ", ".join(f"{name} {value}" for name, value in extra.items())
    fields = [(e["field"], e["message"]) for e in errors or []]
    outcome = http_outcome(status, f"{detail} ({said})" if said else detail, fields)
    return outcome.model_dump(mode="json", by_alias=True, exclude_none=True), FHIR_JSON


def problem(status: int, detail: str, **extra: Any) -> JSONResponse:
    return JSONResponse(status_code=status, content={"detail": detail, **extra})


def field_problems(status: int, errors: list[tuple[str, str]], detail: str = "") -> JSONResponse:
    """A 4xx naming each field it refuses, and why."""
    return problem(
        status,
        detail or "invalid request",
        errors=[{"field": f, "message": m} for f, m in errors],
    )


def shown(value: Any) -> str:
    """A rejected value in an error message: its repr, cut short (never a whole body)."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


async def invalid_request(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's validation errors, in the API's shape: the field, the value, why."""
    assert isinstance(exc, RequestValidationError)
    problems = [
        {
            "field": ".".join(str(p) for p in err["loc"] if p not in ("path", "query")),
            # a secret (or a URL holding credentials) is not echoed back
            "message": err["msg"]
            if {"secret", "url"} & {str(p) for p in err["loc"]}
            else f"{shown(err.get('input'))}: {err['msg']}",
        }
        for err in exc.errors()
    ]
    content, media_type = error_content(request.url.path, 422, "invalid request", problems)
    return JSONResponse(status_code=422, content=content, media_type=media_type)


async def http_error(request: Request, exc: Exception) -> Response:
    """An HTTP error raised anywhere (401, 403, 404 unknown route, 405, 413...): FastAPI's own
    answer, but an `OperationOutcome` under /fhir/r4 (with the same headers)."""
    assert isinstance(exc, StarletteHTTPException)
    if not is_fhir_path(request.url.path):
        return await http_exception_handler(request, exc)
    content, media_type = error_content(request.url.path, exc.status_code, str(exc.detail))
    return JSONResponse(
        status_code=exc.status_code, content=content, media_type=media_type, headers=exc.headers
    )


def add_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(StarletteHTTPException, http_error)
