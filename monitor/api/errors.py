"""The API's error shape, `{"detail", "errors": [{"field", "message"}]}`, in one place."""

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse


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


async def invalid_request(_request: Request, exc: Exception) -> JSONResponse:
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
    return problem(422, "invalid request", errors=problems)


def add_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, invalid_request)
