"""Small statistics for simulation reports: summaries with percentiles, Jain's index."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Summary:
    """Mean, median and 99th percentile of a sample (all 0 for an empty one)."""

    count: int
    mean: float
    p50: float
    p99: float


def percentile(values: Sequence[float], pct: float) -> float:
    """The ``pct`` percentile by the nearest-rank method (0 for an empty sample)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return float(ordered[rank - 1])


def summarize(values: Sequence[float]) -> Summary:
    """Return count, mean, p50 and p99 of ``values``."""
    if not values:
        return Summary(0, 0.0, 0.0, 0.0)
    return Summary(
        len(values), sum(values) / len(values), percentile(values, 50), percentile(values, 99)
    )


def jain_index(values: Sequence[float]) -> float:
    """Jain's fairness index (sum x)^2 / (n * sum x^2): 1 when all equal, 1/n when one takes
    everything; 1 for an empty or all-zero sample."""
    squares = sum(v * v for v in values)
    if not values or squares == 0:
        return 1.0
    return sum(values) ** 2 / (len(values) * squares)
