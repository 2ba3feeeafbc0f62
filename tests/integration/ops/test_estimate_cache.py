"""Start-time estimates on a live (simulated) control plane: answers kept while nothing
changed, and the model of later submissions read from the store."""

from __future__ import annotations

import pytest
from opsharness import FLAVOR, SimPlane, job, queue

from phalanx.ops.arrivals import MIN_SPAN_S, NEXT, arrival_model_of
from phalanx.ops.estimates import (
    CACHE_MAX_AGE_S,
    RuntimeModel,
    WhatIf,
    estimate_cache,
    estimate_log,
    estimate_plane,
)


def quota_used_up(sim: SimPlane) -> None:
    sim.apply([FLAVOR, queue("q", gpus=8)])
    sim.apply([job("holder", 8, maxRuntime="10m")])
    sim.run(60)
    sim.apply([job("waiter", 4, maxRuntime="5m")])
    sim.run(2)


def test_an_unchanged_world_is_not_estimated_again_and_a_changed_one_is(sim: SimPlane) -> None:
    quota_used_up(sim)
    cache = estimate_cache(sim.plane)
    first = estimate_plane(sim.plane)
    assert set(first) == {"waiter"}
    computed = cache.computed
    # Nothing changed: the same answer, not computed again (a copy: callers may keep it).
    again = estimate_plane(sim.plane)
    assert again == first and again is not first
    assert cache.computed == computed
    # A what-if is another question, computed once; the plain answer is still kept.
    estimate_plane(sim.plane, what_if=WhatIf({"q": 12}))
    assert estimate_plane(sim.plane, what_if=WhatIf({"q": 12})) is not None
    assert cache.computed == computed + 1
    assert estimate_plane(sim.plane) == first
    assert cache.computed == computed + 1
    # A new job changes the world: computed again, and the new job is in the answer.
    sim.plane.apply([job("second", 4, maxRuntime="5m")])
    changed = estimate_plane(sim.plane)
    assert set(changed) == {"waiter", "second"}
    assert cache.computed == computed + 2
    # The clock alone moves running jobs' ends on: an old answer is not handed out.
    sim.clock.advance_to(sim.clock.now + CACHE_MAX_AGE_S + 1)
    estimate_plane(sim.plane)
    assert cache.computed == computed + 3
    # A caller's own runtime model is not the plane's: its answers are not kept.
    estimate_plane(sim.plane, runtimes=RuntimeModel(default_runtime_s=5.0))
    estimate_plane(sim.plane, runtimes=RuntimeModel(default_runtime_s=5.0))
    assert cache.computed == computed + 3


def test_later_submissions_are_expected_at_the_rate_of_the_recent_ones(sim: SimPlane) -> None:
    sim.apply([FLAVOR, queue("q", gpus=16)])
    start = sim.clock.now
    sim.apply([job("a", 8, priority=5, maxRuntime="10m")])
    sim.run(30)
    assert arrival_model_of(sim.plane, sim.clock.now, 3600.0) is None  # 30 s: too little seen
    sim.apply([job("b", 4, maxRuntime="10m")])
    sim.run(90)
    sim.apply([job("c", 2, maxRuntime="10m")])
    now = sim.clock.now
    # The plane has seen 120 s (< the window): three submissions in 120 s.
    model = arrival_model_of(sim.plane, now, 3600.0)
    assert model is not None and MIN_SPAN_S <= model.span_s == now - start
    assert [s.name for s in model.recent] == ["a", "b", "c"]
    assert model.recent[0].priority == 5
    assert model.rate_per_s == 3 / (now - start)
    # A window of 100 s holds b (submitted 90 s ago) and c, not a (120 s ago).
    short = arrival_model_of(sim.plane, now, 100.0)
    assert short is not None and [s.name for s in short.recent] == ["b", "c"]
    # Estimates with the model: the expected arrivals get no estimate of their own.
    sim.apply([job("wide", 8, replicas=3, maxRuntime="10m")])
    estimates = estimate_plane(sim.plane, arrival_window_s=3600.0)
    assert set(estimates) == {"wide"} and not any(NEXT in n for n in estimates)


def test_calibration_learns_from_the_first_estimates_of_jobs_that_started(sim: SimPlane) -> None:
    # One queue of 8 GPUs; every job asks 8 and says it runs 10 minutes (maxRuntime), but runs
    # 5: each waiter starts after half the wait it was told.
    sim.apply([FLAVOR, queue("q", gpus=8)])
    sim.apply([job("holder", 8, maxRuntime="10m")], runtime_s=300.0)
    sim.run(2)
    sim.apply([job(f"w{i}", 8, maxRuntime="10m") for i in range(1, 6)], runtime_s=300.0)
    sim.run(2)
    told = estimate_plane(sim.plane, calibrate=5)  # the first estimates, noted
    assert [told[f"w{i}"].wait_s(sim.clock.now) for i in range(1, 6)] == [
        600.0 * i - 4 for i in range(1, 6)
    ]
    sim.run(5 * 300 + 10, tick_s=10.0)  # w1..w5 have started (w5 runs until +1800)
    log = estimate_log(sim.plane, 5)
    sim.apply([job("x", 8, maxRuntime="10m")], runtime_s=300.0)
    sim.run(1)
    plain = estimate_plane(sim.plane)["x"].wait_s(sim.clock.now)
    calibrated = estimate_plane(sim.plane, calibrate=5)["x"].wait_s(sim.clock.now)
    ratios = log.calibration().ratios
    assert len(ratios) == 5 and all(0.45 < r < 0.55 for r in ratios)
    assert plain is not None and calibrated is not None and plain > 60
    assert calibrated == pytest.approx(plain * log.calibration().factor)
    assert calibrated < 0.6 * plain


def test_a_wait_behind_more_higher_priority_work_than_the_cluster_serves_says_so(
    sim: SimPlane,
) -> None:
    # Two 8-GPU nodes. Within 30 minutes four jobs of priority 5 ask all 16 GPUs for 10
    # minutes each, and one half of them: 4.5 × 600 s of the cluster in 1,800 s, 1.5 times
    # what it serves.
    sim.apply([FLAVOR, queue("q", gpus=16)])
    sim.apply([job("high-0", 8, replicas=2, priority=5, maxRuntime="10m")])
    sim.run(2)
    sim.apply([job("low", 8, maxRuntime="10m"), job("peer", 8, priority=5, maxRuntime="10m")])
    sim.run(2)
    calm = estimate_plane(sim.plane)
    # So far high-0 and peer: (600 s × 1 + 600 s × 0.5) / 1,800 s of the cluster.
    assert calm["low"].higher_priority_load == pytest.approx(0.5)
    assert not calm["low"].is_overloaded
    assert calm["peer"].higher_priority_load == 0.0  # nothing above priority 5
    sim.apply([job(f"high-{i}", 8, replicas=2, priority=5, maxRuntime="10m") for i in range(1, 4)])
    sim.run(2)
    busy = estimate_plane(sim.plane)
    assert busy["low"].higher_priority_load == pytest.approx(1.5)
    assert busy["low"].is_overloaded and not busy["peer"].is_overloaded
    # The start told is the forward run's all the same: the load only says it may be later.
    assert busy["low"].start_at is not None
    assert estimate_plane(sim.plane, load_window_s=0.0)["low"].higher_priority_load == 0.0
