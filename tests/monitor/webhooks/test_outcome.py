"""`monitor.webhooks.outcome`: what a webhook attempt came to (no database, no network).

Delivered on a 2xx; retried on no answer, 408, 425, 429 or a 5xx while the round has
attempts left, after the backoff or a longer Retry-After (up to the ceiling); failed for good
on a refused destination, another 4xx or a redirect, or when the round is exhausted.
"""

from __future__ import annotations

import httpcore
import pytest

from monitor.webhooks import egress
from monitor.webhooks.outcome import (
    ENDPOINT_DISABLED,
    SEND_ERRORS,
    Decision,
    Sent,
    answered,
    classify,
    not_answered,
)

BACKOFF_S = 3.0
BACKOFF_MAX_S = 10.0


def decide(sent: Sent, attempts: int = 1, max_attempts: int = 3) -> Decision:
    return classify(
        sent,
        attempts=attempts,
        max_attempts=max_attempts,
        backoff_s=BACKOFF_S,
        backoff_max_s=BACKOFF_MAX_S,
    )


@pytest.mark.parametrize(
    ("sent", "attempts", "expected"),
    [
        (Sent(200, None), 1, Decision("delivered", None)),
        (Sent(204, None), 3, Decision("delivered", None)),
        (Sent(500, "HTTP 500"), 1, Decision("retry", "HTTP 500", BACKOFF_S)),
        (Sent(503, "HTTP 503"), 2, Decision("retry", "HTTP 503", BACKOFF_S)),
        (Sent(408, "HTTP 408"), 1, Decision("retry", "HTTP 408", BACKOFF_S)),
        (Sent(425, "HTTP 425"), 1, Decision("retry", "HTTP 425", BACKOFF_S)),
        (Sent(429, "HTTP 429"), 1, Decision("retry", "HTTP 429", BACKOFF_S)),
        (Sent(None, "timeout: ReadTimeout"), 1, Decision("retry", "timeout: ReadTimeout", 3.0)),
        (
            Sent(500, "HTTP 500"),
            3,
            Decision("failed", "retries exhausted after 3 attempts; last: HTTP 500"),
        ),
        (
            Sent(None, "ConnectError: refused"),
            4,
            Decision("failed", "retries exhausted after 4 attempts; last: ConnectError: refused"),
        ),
        (Sent(400, "HTTP 400"), 1, Decision("failed", "HTTP 400")),
        (Sent(404, "HTTP 404"), 3, Decision("failed", "HTTP 404")),
        (Sent(302, "HTTP 302"), 1, Decision("failed", "HTTP 302")),
        (ENDPOINT_DISABLED, 1, Decision("failed", "the endpoint was disabled")),
        (
            Sent(None, "refused by the egress policy: loopback", refused=True),
            3,
            Decision("failed", "refused by the egress policy: loopback"),
        ),
        (Sent(500, None), 1, Decision("retry", "HTTP 500", BACKOFF_S)),  # no error text
    ],
)
def test_classify(sent: Sent, attempts: int, expected: Decision) -> None:
    assert decide(sent, attempts) == expected


@pytest.mark.parametrize(
    ("retry_after_s", "wait_s"),
    [(None, BACKOFF_S), (1.0, BACKOFF_S), (5.0, 5.0), (120.0, BACKOFF_MAX_S), (0.0, BACKOFF_S)],
)
def test_retry_after_is_honoured_between_the_backoff_and_the_ceiling(
    retry_after_s: float | None, wait_s: float
) -> None:
    assert decide(Sent(429, "HTTP 429", retry_after_s)).retry_in_s == wait_s


@pytest.mark.parametrize(
    ("status", "headers", "expected"),
    [
        (200, {}, Sent(200, None)),
        (201, {"retry-after": "7"}, Sent(201, None, 7.0)),
        (503, {"retry-after": "30"}, Sent(503, "HTTP 503", 30.0)),
        (503, {"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, Sent(503, "HTTP 503")),
        (429, {"retry-after": "-1"}, Sent(429, "HTTP 429")),
        (404, {}, Sent(404, "HTTP 404")),
    ],
)
def test_answered(status: int, headers: dict[str, str], expected: Sent) -> None:
    assert answered(status, headers) == expected


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (
            egress.EgressRefusedError("127.0.0.1 is loopback"),
            Sent(None, "refused by the egress policy: 127.0.0.1 is loopback", refused=True),
        ),
        (
            egress.DeadlineExceededError("the attempt's deadline passed"),
            Sent(None, "no complete answer within 2.5 s"),
        ),
        (httpcore.ReadTimeout("slow"), Sent(None, "timeout: ReadTimeout")),
        (httpcore.ConnectError("no route"), Sent(None, "ConnectError: no route")),
        (httpcore.RemoteProtocolError("bad"), Sent(None, "RemoteProtocolError: bad")),
        (httpcore.UnsupportedProtocol("ftp"), Sent(None, "UnsupportedProtocol: ftp")),
    ],
)
def test_not_answered(exc: Exception, expected: Sent) -> None:
    assert isinstance(exc, SEND_ERRORS)
    assert not_answered(exc, 2.5) == expected


def test_error_texts_are_cut_at_500_characters() -> None:
    sent = not_answered(httpcore.ConnectError("x" * 1000), 5.0)
    assert sent.error is not None
    assert len(sent.error) == 500
    refused = not_answered(egress.EgressRefusedError("y" * 1000), 5.0)
    assert refused.error is not None
    assert len(refused.error) == 500
    assert refused.refused


def test_other_errors_are_not_outcomes_of_a_send() -> None:
    assert not isinstance(ValueError("a defect"), SEND_ERRORS)
