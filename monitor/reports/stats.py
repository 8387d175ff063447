"""The report's summary figures: a rate, a median and a 90th percentile, rounded."""

from __future__ import annotations

import statistics
from collections.abc import Sequence


def rate(good: int, total: int) -> float | None:
    return round(good / total, 4) if total else None


def median(values: Sequence[float]) -> float | None:
    return round(statistics.median(values), 2) if values else None


def p90(values: Sequence[float]) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return round(values[0], 2)
    return round(statistics.quantiles(values, n=10, method="inclusive")[8], 2)
