"""Helpers of the metrics collector (the collector itself: tests/integration/ops)."""

from __future__ import annotations

from phalanx.ops.metrics import admission_histogram, base_units


def test_base_units() -> None:
    assert base_units("nvidia.com/gpu", 2500) == 2.5
    assert base_units("cpu", 1500) == 1.5
    assert base_units("memory", 1 << 30) == float(1 << 30)


def test_admission_histogram_is_cumulative_with_inf() -> None:
    buckets = admission_histogram([0.5, 3, 3, 100], bounds=(1, 5, 60))
    assert buckets == [("1.0", 1.0), ("5.0", 3.0), ("60.0", 3.0), ("+Inf", 4.0)]
