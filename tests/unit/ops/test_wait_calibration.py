"""Corrections to estimated waits: later work of higher priority, and past errors."""

from __future__ import annotations

import random

import pytest

from phalanx.ops.calibration import (
    MAX_FACTOR,
    MAX_STRETCH,
    Calibration,
    EstimateLog,
    job_class,
    priority_load,
    ratio,
    stretch,
)
from phalanx.ops.estimates import Estimate, RuntimeModel, scaled
from phalanx.scheduling import Snapshot
from phalanx.testing import make_job, make_node, make_queue, make_snapshot

NOW = 10_000.0


def two_nodes_and_waiters() -> Snapshot:
    """Two 8-GPU, 32-CPU nodes; ``low`` (priority 0, 4 GPUs), ``mid`` (priority 2, 4 GPUs)
    and ``cpu`` (priority 0, no GPU) wait, at NOW."""
    return make_snapshot(
        nodes=[make_node(n).gpus(8).cpu(32).obj() for n in ("n1", "n2")],
        queues=[make_queue("q").quota("default", gpu=16, cpu=64, memory="1Ti").obj()],
        pending=[
            make_job("low").queue("q").gpus(4).obj(),
            make_job("mid").queue("q").gpus(4).priority(2).obj(),
            make_job("cpu").queue("q").cpu(4).obj(),
        ],
        now=NOW,
    )


def test_priority_load_counts_only_recent_work_of_higher_priority() -> None:
    snap = two_nodes_and_waiters()
    model = RuntimeModel.from_history([("q", 8000, 100.0), ("q", 0, 100.0)])
    submitted = [
        # 8 of 16 GPUs for 100 s, 100 s before now, priority 1: half the cluster for 100 s
        (NOW - 100, make_job("h1").queue("q").gpus(8).priority(1).max_runtime(100).obj()),
        # priority 3, 16 GPUs for 50 s: all of the cluster for 50 s
        (NOW - 50, make_job("h3").queue("q").gpus(16).priority(3).max_runtime(50).obj()),
        # too old for the window
        (NOW - 900, make_job("old").queue("q").gpus(16).priority(3).max_runtime(50).obj()),
        # 16 of 64 CPUs for 200 s at priority 1 (no GPU)
        (NOW - 10, make_job("c1").queue("q").cpu(16).priority(1).max_runtime(200).obj()),
    ]
    rho = priority_load(submitted, snap, model, window_s=200.0)
    # low (0) sees h1 and h3: (0.5 * 100 + 1.0 * 50) / 200; mid (2) sees h3 only
    assert rho["low"] == pytest.approx(0.5)
    assert rho["mid"] == pytest.approx(0.25)
    # the CPU job counts CPUs of 64: h1 and h3 ask 1 each (the default), c1 16
    assert rho["cpu"] == pytest.approx((1 * 100 + 1 * 50 + 16 * 200) / 64 / 200)
    assert priority_load(submitted, snap, model, window_s=0.0) == {
        "low": 0.0,
        "mid": 0.0,
        "cpu": 0.0,
    }


@pytest.mark.parametrize("seed", range(5))
def test_priority_load_sums_the_work_of_every_higher_priority(seed: int) -> None:
    """Against the sum written out, job by job, for waiters at every priority level (below,
    between, at and above those submitted)."""
    rng = random.Random(seed)
    waiters = [
        make_job(f"w{p}").queue("q").gpus(rng.choice([0, 1, 4])).cpu(2).priority(p).obj()
        for p in range(-1, 8)
    ]
    snap = make_snapshot(
        nodes=[make_node(n).gpus(8).cpu(32).obj() for n in ("n1", "n2")],
        queues=[make_queue("q").quota("default", gpu=16, cpu=64, memory="1Ti").obj()],
        pending=waiters,
        now=NOW,
    )
    submitted = [
        (
            NOW - rng.uniform(0, 400),
            make_job(f"s{i}")
            .queue("q")
            .gpus(rng.choice([0, 1, 2, 8]))
            .cpu(rng.choice([1, 4]))
            .priority(rng.choice([0, 2, 3, 6]))
            .max_runtime(rng.uniform(10, 300))
            .obj(),
        )
        for i in range(40)
    ]
    model = RuntimeModel()
    rho = priority_load(submitted, snap, model, window_s=300.0)
    for w in waiters:
        uses_gpus = w.total_request.gpu_milli > 0
        total = 0.0
        for at, s in submitted:
            if at >= NOW - 300 and s.priority > w.priority:
                share = (
                    s.total_request.gpu_milli / 16_000
                    if uses_gpus
                    else s.total_request.cpu_milli / 64_000
                )
                total += share * model.runtime_s(s)
        assert rho[w.name] == pytest.approx(total / 300.0), w.name


def test_a_wait_stretches_by_one_over_one_minus_rho_within_a_bound() -> None:
    assert stretch(0.0) == 1.0
    assert stretch(0.5) == pytest.approx(2.0)
    assert stretch(0.75) == pytest.approx(4.0)
    assert stretch(0.99) == MAX_STRETCH
    assert stretch(3.0) == MAX_STRETCH


def test_scaled_stretches_waits_from_now_and_leaves_now_and_unknown_alone() -> None:
    estimates = {
        "a": Estimate("a", NOW + 100, "Unschedulable"),
        "b": Estimate("b", NOW, "Admitted"),
        "c": Estimate("c", None, "NeverFits"),
        "d": Estimate("d", NOW + 10, "Unschedulable"),
    }
    out = scaled(estimates, NOW, {"a": 2.5, "b": 3.0, "c": 3.0})
    assert out["a"] == Estimate("a", NOW + 250, "Unschedulable")
    assert out["b"] == estimates["b"] and out["c"] == estimates["c"]
    assert out["d"] == estimates["d"]  # no factor given: as it was


def test_calibration_scales_by_the_median_ratio_once_it_has_enough() -> None:
    assert Calibration((2.0, 2.0, 2.0, 2.0)).factor == 1.0  # under MIN_RATIOS: no say
    assert Calibration((1.0, 1.5, 2.0, 3.0, 9.0)).factor == 2.0
    assert Calibration((100.0,) * 5).factor == MAX_FACTOR
    assert Calibration((0.001,) * 5).factor == 1 / MAX_FACTOR


def test_ratios_count_short_waits_as_a_minute() -> None:
    assert ratio(300.0, 600.0) == 2.0
    assert ratio(0.0, 120.0) == 2.0  # told "now", started two minutes later
    assert ratio(600.0, 5.0) == 0.1


def test_the_log_turns_first_estimates_of_started_jobs_into_ratios() -> None:
    log = EstimateLog(keep=3)
    log.note({"a": Estimate("a", NOW + 100, "")}, NOW)
    # a later estimate of the same job does not replace the first; no start: not kept
    log.note({"a": Estimate("a", NOW + 900, ""), "n": Estimate("n", None, "")}, NOW + 50)
    log.note({f"j{i}": Estimate(f"j{i}", NOW + 600, "") for i in range(4)}, NOW)
    log.started({"a": NOW + 400, "n": NOW + 5})  # a: asked at NOW, waited 400 s, told 100
    assert log.calibration().ratios == (4.0,)
    log.started({"a": NOW + 400})  # counted once
    assert log.calibration().ratios == (4.0,)
    log.forget_all_but({"j0", "j1", "j2"})  # j3 deleted
    # j0..j2 started: 1200 / 600 each, oldest start first; only the latest 3 kept
    log.started({"j0": NOW + 1200, "j1": NOW + 1200, "j2": NOW + 1200, "j3": NOW + 60})
    assert log.calibration().ratios == (2.0, 2.0, 2.0)


def test_the_log_ignores_a_start_before_the_estimate() -> None:
    # a start recorded before the job was asked about is a previous attempt's
    log = EstimateLog()
    log.note({"a": Estimate("a", NOW + 100, "")}, NOW)
    log.started({"a": NOW - 10})
    assert log.calibration().ratios == ()


def test_a_class_speaks_for_its_jobs_once_it_holds_enough_ratios() -> None:
    whole = make_job("w").queue("q").gpus(2).obj()
    part = make_job("p").queue("q").gpus(0.5).obj()
    assert job_class(whole) == ("q", 2)
    assert job_class(part) == ("q", "<1")
    assert job_class(make_job("c").queue("r").obj()) == ("r", 0)
    log = EstimateLog(keep=10, min_wait_s=60.0)
    names = [f"w{i}" for i in range(5)] + [f"p{i}" for i in range(3)] + ["short"]
    log.note(
        {n: Estimate(n, NOW + 600, "") for n in names},
        NOW,
        {n: job_class(part if n.startswith("p") else whole) for n in names},
    )
    # whole-GPU jobs waited 3 times as long as told, the fractional ones as told; "short"
    # started after 30 s, under min_wait_s: no ratio
    log.started(
        {
            **{f"w{i}": NOW + 1800 for i in range(5)},
            **{f"p{i}": NOW + 600 for i in range(3)},
            "short": NOW + 30,
        }
    )
    assert log.calibration(job_class(whole)).factor == 3.0
    # the fractional class holds 3 (< MIN_RATIOS): all eight speak, median 3
    assert log.calibration(job_class(part)).factor == 3.0
    assert log.calibration().ratios == (1.0,) * 3 + (3.0,) * 5  # oldest start first
