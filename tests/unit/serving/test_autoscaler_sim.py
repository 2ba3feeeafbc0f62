"""The serving simulator: replicas, a request stream and the autoscaler in virtual time."""

from __future__ import annotations

import random

import pytest

from phalanx.serving.autoscaler import AutoscalerSpec
from phalanx.simulation.serving import (
    FixedPolicy,
    KpaPolicy,
    Request,
    bursty_trace,
    compare_policies,
    peak_concurrency,
    simulate_serving,
)


def steady(rps: float, seconds: float, service_s: float = 0.2) -> list[Request]:
    return [Request(i / rps, service_s) for i in range(int(rps * seconds))]


def test_enough_fixed_replicas_serve_without_waiting() -> None:
    trace = steady(20, 100)
    result = simulate_serving(trace, FixedPolicy(2), replica_concurrency=8)
    assert result.latencies_s == pytest.approx([0.2] * len(trace))
    assert result.slo_share(0.2 + 1e-9) == 1.0
    assert result.replica_seconds == pytest.approx(2 * result.duration_s)


def test_too_few_fixed_replicas_make_requests_wait() -> None:
    # 20 req/s of 0.2 s is 4 busy slots on average: one slot cannot keep up.
    result = simulate_serving(steady(20, 60), FixedPolicy(1), replica_concurrency=1)
    assert result.slo_share(0.5) < 0.1
    assert result.percentile_s(99) > 10


def test_a_lone_request_at_zero_waits_for_the_start_up_then_scales_back_to_zero() -> None:
    spec = AutoscalerSpec(target=1, scale_to_zero_after_s=30)
    trace = [Request(100.0, 0.2), Request(400.0, 0.2)]
    result = simulate_serving(trace, KpaPolicy(spec), startup_s=3.0)
    assert result.latencies_s == pytest.approx([3.2, 3.2])
    # One replica each time: asked at 100 and 400, stopped after ~60 s of stable window.
    assert 2 * 30 < result.replica_seconds < 2 * 90
    assert result.max_replicas == 1


def test_the_autoscaler_follows_a_step_in_load() -> None:
    trace = steady(5, 200) + [Request(200 + i / 50, 0.2) for i in range(50 * 100)]
    spec = AutoscalerSpec(target=2, min_replicas=1, max_replicas=20)
    result = simulate_serving(trace, KpaPolicy(spec), startup_s=2.0, replica_concurrency=4)
    # 50 req/s of 0.2 s = 10 in flight at a target of 2: 5 replicas.
    assert result.max_replicas >= 5
    assert result.slo_share(0.5) > 0.9


def test_bursty_trace_policies_compare_as_expected() -> None:
    trace = bursty_trace(random.Random(3), duration_s=600)
    assert trace == bursty_trace(random.Random(3), duration_s=600)
    assert peak_concurrency(trace) > 10
    fixed = simulate_serving(trace, FixedPolicy(4))
    scaled = simulate_serving(trace, KpaPolicy(AutoscalerSpec(target=6, max_replicas=8)))
    assert fixed.slo_share(0.5) > scaled.slo_share(0.5) > 0.6
    assert scaled.replica_seconds < 0.8 * fixed.replica_seconds
    lines = compare_policies(trace)
    assert lines[1].split()[:3] == ["policy", "in", "SLO"]
    assert len(lines) == 8
