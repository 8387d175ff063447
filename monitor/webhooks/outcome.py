"""What one webhook attempt came to, and what follows from it: pure functions, no I/O.

`answered` and `not_answered` turn the receiver's answer, or the error that stood for one,
into a `Sent`; `classify` turns a `Sent` into a `Decision`: delivered, retry in N s, or
failed for good, with the text the delivery keeps as its `last_error`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import httpcore

from monitor.webhooks import egress

# Answers worth trying again: timeouts, "too early", rate limits and server errors.
RETRY_STATUSES = frozenset({408, 425, 429})

# The errors of a send that are outcomes of the attempt (a refused destination, the network);
# anything else is a defect and propagates.
SEND_ERRORS: tuple[type[Exception], ...] = (
    egress.EgressRefusedError,
    httpcore.TimeoutException,  # egress.DeadlineExceededError among them
    httpcore.NetworkError,
    httpcore.ProtocolError,
    httpcore.UnsupportedProtocol,
)


@dataclass(frozen=True, slots=True)
class Sent:
    """The outcome of one send. `status_code` is None when no HTTP answer came; `error` is
    what the attempt row records; `refused`: the destination is refused (the endpoint was
    disabled, or the egress policy), which no retry can change."""

    status_code: int | None
    error: str | None
    retry_after_s: float | None = None
    refused: bool = False


ENDPOINT_DISABLED = Sent(None, "the endpoint was disabled", refused=True)
# not reachable through the API (an endpoint keeps one secret): a request nobody could verify
NO_SECRET = Sent(None, "the endpoint has no active secret", refused=True)


@dataclass(frozen=True, slots=True)
class Decision:
    """What follows from an attempt: `last_error` for the delivery row (None once
    delivered), and for a retry the seconds until the next attempt."""

    outcome: Literal["delivered", "retry", "failed"]
    last_error: str | None
    retry_in_s: float | None = None


def answered(status: int, headers: Mapping[str, str]) -> Sent:
    """A receiver's answer (headers with lower-case names); Retry-After in whole seconds
    is kept (an HTTP date is not)."""
    retry_after = headers.get("retry-after", "")
    wait = float(retry_after) if retry_after.isdigit() else None
    error = None if 200 <= status < 300 else f"HTTP {status}"
    return Sent(status, error, wait)


def not_answered(exc: Exception, timeout_s: float) -> Sent:
    """One of `SEND_ERRORS` instead of an answer. Network failures are outcomes too (the
    decision about retrying is `classify`'s); a refused destination is never retried."""
    if isinstance(exc, egress.EgressRefusedError):
        return Sent(None, f"refused by the egress policy: {exc}"[:500], refused=True)
    if isinstance(exc, egress.DeadlineExceededError):
        return Sent(None, f"no complete answer within {timeout_s:g} s")
    if isinstance(exc, httpcore.TimeoutException):
        return Sent(None, f"timeout: {type(exc).__name__}")
    return Sent(None, f"{type(exc).__name__}: {exc}"[:500])


def worth_retrying(status_code: int | None) -> bool:
    """No answer, a timeout, "too early", a rate limit or a server error. Another 4xx or a
    redirect means the receiver refuses: only a person can fix that."""
    return status_code is None or status_code in RETRY_STATUSES or status_code >= 500


def retry_wait(backoff_s: float, retry_after_s: float | None, max_s: float) -> float:
    """The backoff, or the receiver's Retry-After when it asks for longer, up to `max_s`
    (never below the backoff)."""
    if retry_after_s is None:
        return backoff_s
    return min(max(backoff_s, retry_after_s), max_s)


def classify(
    sent: Sent, *, attempts: int, max_attempts: int, backoff_s: float, backoff_max_s: float
) -> Decision:
    """Delivered on a 2xx; retried after `retry_wait` when worth retrying and fewer than
    `max_attempts` attempts were made this round (`attempts` counts the one just made);
    otherwise failed for good. `backoff_s` is the backoff drawn for this attempt."""
    if sent.status_code is not None and 200 <= sent.status_code < 300:
        return Decision("delivered", None)
    reason = sent.error or f"HTTP {sent.status_code}"
    if sent.refused or not worth_retrying(sent.status_code):
        return Decision("failed", reason)
    if attempts >= max_attempts:
        return Decision("failed", f"retries exhausted after {attempts} attempts; last: {reason}")
    return Decision("retry", reason, retry_wait(backoff_s, sent.retry_after_s, backoff_max_s))
