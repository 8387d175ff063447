"""Exponential backoff with jitter: how long to wait before trying something again.

One function for every retry loop of the service (task retries, webhook redelivery); each
caller passes its own first delay, ceiling and jitter.
"""

from __future__ import annotations

import random


def exponential_backoff(
    first_s: float, max_s: float, attempt: int, jitter: tuple[float, float] = (0.5, 1.0)
) -> float:
    """`first_s * 2**attempt`, capped at `max_s`, times a factor drawn uniformly from
    `jitter` (`(low, high)`; a high of 1.0 jitters downwards only, never past the ceiling).

    `attempt` counts from 0: the wait before the first retry is about `first_s`.
    """
    low, high = jitter
    ceiling = min(max_s, first_s * 2**attempt)
    return float(ceiling * random.uniform(low, high))
