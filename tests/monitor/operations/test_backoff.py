"""`monitor.operations.backoff.exponential_backoff`: the ceiling doubles from `first_s` up to
`max_s`, and the jitter scales it by a factor within `(low, high)`, bounds included. Task
retries and webhook redelivery both use it, each with its own parameters."""

from __future__ import annotations

import random
from types import SimpleNamespace
from typing import cast

import pytest

from monitor.operations.backoff import exponential_backoff
from monitor.processing.jobs import backoff_seconds
from monitor.services import Services
from monitor.settings import Settings
from monitor.webhooks.delivery import backoff_s

# (first_s, max_s, attempt, jitter, ceiling before the jitter)
CASES = [
    (1.0, 60.0, 0, (0.5, 1.0), 1.0),
    (1.0, 60.0, 1, (0.5, 1.0), 2.0),
    (1.0, 60.0, 5, (0.5, 1.0), 32.0),
    (1.0, 60.0, 6, (0.5, 1.0), 60.0),  # 64 capped
    (1.0, 60.0, 40, (0.5, 1.0), 60.0),
    (2.0, 600.0, 0, (0.75, 1.0), 2.0),
    (2.0, 600.0, 3, (0.75, 1.0), 16.0),
    (2.0, 600.0, 9, (0.75, 1.0), 600.0),  # 1024 capped
    (0.05, 0.2, 1, (0.75, 1.0), 0.1),
    (3.0, 3.0, 0, (1.0, 1.0), 3.0),  # no jitter, already at the ceiling
    (5.0, 2.0, 0, (0.5, 1.0), 2.0),  # a first delay above the cap is capped too
]


@pytest.mark.parametrize(("first_s", "max_s", "attempt", "jitter", "ceiling"), CASES)
def test_the_jitter_bounds_are_the_ceiling_times_low_and_high(
    monkeypatch: pytest.MonkeyPatch,
    first_s: float,
    max_s: float,
    attempt: int,
    jitter: tuple[float, float],
    ceiling: float,
) -> None:
    low, high = jitter
    monkeypatch.setattr(random, "uniform", lambda a, b: a)
    assert exponential_backoff(first_s, max_s, attempt, jitter) == pytest.approx(ceiling * low)
    monkeypatch.setattr(random, "uniform", lambda a, b: b)
    assert exponential_backoff(first_s, max_s, attempt, jitter) == pytest.approx(ceiling * high)


@pytest.mark.parametrize(("first_s", "max_s", "attempt", "jitter", "ceiling"), CASES)
def test_drawn_delays_stay_within_the_jitter_bounds(
    first_s: float, max_s: float, attempt: int, jitter: tuple[float, float], ceiling: float
) -> None:
    low, high = jitter
    delays = [exponential_backoff(first_s, max_s, attempt, jitter) for _ in range(200)]
    assert all(isinstance(d, float) for d in delays)
    assert all(ceiling * low <= d <= ceiling * high for d in delays)


def test_the_default_jitter_is_half_to_whole() -> None:
    delays = [exponential_backoff(4.0, 100.0, 2) for _ in range(200)]
    assert all(8.0 <= d <= 16.0 for d in delays)


SETTINGS = Settings(
    task_retry_backoff_s=1.0,
    task_retry_backoff_max_s=60.0,
    webhook_backoff_s=2.0,
    webhook_backoff_max_s=600.0,
)


@pytest.mark.parametrize(
    ("attempt", "low", "high"),
    [(0, 0.5, 1.0), (1, 1.0, 2.0), (3, 4.0, 8.0), (6, 30.0, 60.0), (20, 30.0, 60.0)],
)
def test_task_retries_wait_half_to_whole_of_a_doubling_from_attempt_0(
    attempt: int, low: float, high: float
) -> None:
    services = cast(Services, SimpleNamespace(settings=SETTINGS))
    delays = [backoff_seconds(services, attempt) for _ in range(200)]
    assert all(low <= d <= high for d in delays)


@pytest.mark.parametrize(
    ("attempts", "low", "high"),
    [(1, 1.5, 2.0), (2, 3.0, 4.0), (4, 12.0, 16.0), (9, 384.0, 512.0), (10, 450.0, 600.0)],
)
def test_webhook_redelivery_waits_three_quarters_to_whole_after_the_nth_failure(
    attempts: int, low: float, high: float
) -> None:
    delays = [backoff_s(SETTINGS, attempts) for _ in range(200)]
    assert all(low <= d <= high for d in delays)
