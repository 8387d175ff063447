"""Errors described without patient data, for logs and dead letters.

Exception messages are written for developers and often quote the data that failed: pydantic
puts the input value in every error, PostgreSQL quotes the key that conflicted (`Key
(event_id)=(...)`) or the text it could not read, a `KeyError` is its key. So what reaches a log
line is the exception's type, and its message only for types whose messages hold no data; a
validation error is told by field and reason, a database error by its SQLSTATE class.
Tracebacks keep their frames (file, line, function): code, never data.
"""

from __future__ import annotations

import contextvars
import logging
import sys
import traceback
from types import TracebackType

from pydantic import ValidationError
from pythonjsonlogger.json import JsonFormatter
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, StatementError

from monitor.settings import Settings
from policies.engine import FoldError
from policies.events import EventValidationError


class SafeMessageError(Exception):
    """An error whose message this service wrote to be logged (counts, ids of work, reasons)."""


# Messages of these types are written by the runtime or by this service and carry no data.
_SAFE_MESSAGES: tuple[type[BaseException], ...] = (
    ArithmeticError,  # OverflowError "date value out of range", ZeroDivisionError
    RecursionError,
    MemoryError,
    FoldError,
    SafeMessageError,
)


def describe(exc: BaseException) -> str:
    """`Type: what can be said` of one exception (not its causes)."""
    name = type(exc).__name__
    if isinstance(exc, EventValidationError):
        fields = ", ".join(dict.fromkeys(p.field for p in exc.problems))
        return f"{name}: invalid field(s) {fields}"
    if isinstance(exc, ValidationError):
        problems = ", ".join(
            dict.fromkeys(
                f"{'.'.join(str(p) for p in err['loc']) or 'value'} ({err['type']})"
                for err in exc.errors(include_input=False, include_url=False)
            )
        )
        return f"{name}: {exc.error_count()} problem(s): {problems}"
    if isinstance(exc, DBAPIError):
        original = exc.orig
        kind = type(original).__name__
        if isinstance(exc, OperationalError | InterfaceError):
            # the connection (refused, closed, timed out): the driver's own words, which quote
            # no row; the statement and its parameters are left out
            first = str(original).strip().splitlines()[0] if str(original).strip() else ""
            return f"{name}: {kind}: {first}"[:500] if first else f"{name}: {kind}"
        sqlstate = getattr(original, "sqlstate", None) or getattr(original, "pgcode", None)
        state = f", SQLSTATE {sqlstate}" if sqlstate else ""
        return f"{name}: {kind}{state}"
    if isinstance(exc, StatementError):
        return f"{name}: {type(exc.orig).__name__ if exc.orig else 'statement failed'}"
    if isinstance(exc, _SAFE_MESSAGES):
        return f"{name}: {exc}"[:500]
    return name


def describe_chain(exc: BaseException) -> str:
    """The exception and what caused it, innermost last: `A: ... <- B: ...`."""
    parts = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        parts.append(describe(current))
        current = current.__cause__ or (
            None if current.__suppress_context__ else current.__context__
        )
    return " <- ".join(parts)


ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]


def format_exception(exc_info: ExcInfo | tuple[None, None, None]) -> str:
    """A traceback as Python prints it, each exception's line replaced by `describe`."""
    _, exc, _ = exc_info
    if exc is None:
        return ""
    chain: list[tuple[BaseException, str]] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    link = ""
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        chain.append((current, link))
        if current.__cause__ is not None:
            current, link = current.__cause__, "The above exception was the direct cause of:"
        elif current.__context__ is not None and not current.__suppress_context__:
            current, link = current.__context__, "During handling of the above exception:"
        else:
            current = None
    lines: list[str] = []
    for error, caused in reversed(chain):  # the innermost first, as Python prints them
        lines.append("Traceback (most recent call last):")
        lines.extend(
            line.rstrip("\n")
            for line in traceback.format_list(traceback.extract_tb(error.__traceback__))
        )
        lines.append(describe(error))
        if caused:
            lines.append(caused)
    return "\n".join(lines)


class SafeJsonFormatter(JsonFormatter):
    """The service's log lines: JSON, tracebacks through `format_exception`."""

    def formatException(self, ei: ExcInfo | tuple[None, None, None]) -> str:  # noqa: N802
        return format_exception(ei)


# The request being served, for every log line written while serving it (threads included:
# Starlette's thread pool copies the context). Set by `monitor.api.guard.RequestLog`.
current_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "request_id", default=None
)


class RequestIdFilter(logging.Filter):
    """Adds `request_id` to every record written while a request is being served."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = current_request_id.get()
        if request_id is not None and not hasattr(record, "request_id"):
            record.request_id = request_id
        return True


def configure_logging(settings: Settings) -> None:
    """Structured JSON logs on stderr. Messages carry counts and ids of work, never patients;
    tracebacks are sanitised (`monitor.operations.logsafe`); lines written while serving a
    request carry its `request_id`."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        SafeJsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s", rename_fields={"levelname": "level"}
        )
    )
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    for noisy in ("uvicorn.access", "apscheduler.executors.default"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
