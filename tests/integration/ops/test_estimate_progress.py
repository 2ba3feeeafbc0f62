"""Start estimates on a live (simulated) control plane take a running job's end from the
pace its workload reports (phalanx.train's status file, with a total), before maxRuntime
when that comes sooner, and from maxRuntime or history otherwise."""

from __future__ import annotations

import pytest
from opsharness import FLAVOR, SimPlane, job, queue

from phalanx import train
from phalanx.backends.sim import SimWorkload
from phalanx.controllers.progress import checkpoint_dir
from phalanx.ops.estimates import estimate_plane


def holding_all_gpus(sim: SimPlane) -> train.Run:
    """A holder of all 8 GPUs of the queue (maxRuntime 10 min, ends on its own much later),
    whose pod reports progress through the SDK in virtual time, and an 8-GPU waiter."""
    sim.apply([FLAVOR, queue("q", gpus=8)])
    # a workload that reports checkpoints (never, here) is one whose status file is read
    sim.backend.set_workload("holder", SimWorkload(1e7, checkpoint_s=1e9, reports_checkpoints=True))
    sim.plane.apply([job("holder", 8, maxRuntime="10m")])
    sim.plane.tick()
    sim.run(2)
    record = next(r for r in sim.store.list_jobs() if r.name == "holder")
    assert record.phase == "Running"
    env = {
        "PHALANX_CHECKPOINT_DIR": str(checkpoint_dir(sim.plane.config.data_dir, record)),
        "PHALANX_POD_SET": "worker",
        "PHALANX_INDEX": "0",
        "PHALANX_ATTEMPT": str(record.attempt),
    }
    sim.apply([job("waiter", 8, maxRuntime="5m")])
    return train.Run(env, clock=lambda: sim.clock.now)


def waits(sim: SimPlane) -> float | None:
    return estimate_plane(sim.plane, samples=1)["waiter"].wait_s(sim.clock.now)


def test_a_reported_pace_and_total_set_when_the_holder_ends(sim: SimPlane) -> None:
    run = holding_all_gpus(sim)
    by_max_runtime = waits(sim)
    assert by_max_runtime == pytest.approx(600.0 - 3.0, abs=2.0)
    run.report_progress(0, total_steps=100)
    sim.run(20)
    run.report_progress(10, total_steps=100)  # 0.5 step/s: 90 steps, 180 s to go
    sim.run(11)  # past the estimate cache's age; the reconciler has read the file
    assert waits(sim) == pytest.approx(180.0 - 11.0, abs=1.0)


def test_maxruntime_still_bounds_a_slow_pace_and_no_total_tells_nothing(sim: SimPlane) -> None:
    run = holding_all_gpus(sim)
    run.report_progress(0)
    sim.run(20)
    run.report_progress(10)  # no total: the pace says nothing of the end
    sim.run(11)
    assert waits(sim) == pytest.approx(600.0 - 34.0, abs=2.0)
    run.report_progress(12, total_steps=10_000)  # ~ 8,000 s to go at this pace
    sim.run(11)
    assert waits(sim) == pytest.approx(600.0 - 45.0, abs=2.0)  # the maxRuntime comes first
