"""Full mode with faults: node failures, checkpoints, restart modes and lost work."""

import pytest
from simjobs import GI, job

from phalanx.controllers.health import QuarantinePolicy
from phalanx.simulation.faults import Faults, RestartMode, random_failures
from phalanx.simulation.full import run_full
from phalanx.simulation.trace import make_node
from phalanx.simulation.world import build_world, unlimited_queue

NODE = (make_node("n0", 8000, 64 * GI, 2, "T4"),)
HOUR = 3600.0


def _run_failure(restart: RestartMode) -> tuple[float, float]:
    # One 2-GPU job of 100 s, checkpoints every 30 s; n0 fails at 70 and is back at 80.
    jobs = [job("a", 2000, runtime_s=100)]
    faults = Faults(((70.0, "n0"),), repair_s=10, checkpoint_s=30, restart=restart)
    result = run_full(build_world(NODE, jobs), jobs, "fragmentation-aware", 1, faults=faults)
    assert (result.completed, result.node_failures, result.failure_kills) == (1, 1, 1)
    assert result.lost_preemption_gpu_h == 0.0
    assert result.lost_gpu_h == result.lost_failure_gpu_h
    return result.lost_failure_gpu_h * HOUR, result.makespan_s


def test_node_failure_restart_from_zero_loses_the_whole_attempt() -> None:
    lost, makespan = _run_failure("zero")
    assert lost == pytest.approx(2 * 70)
    assert makespan == 180.0  # out of placement until 80, then the full 100 s again


def test_node_failure_checkpoint_restart_loses_work_since_the_last_checkpoint() -> None:
    lost, makespan = _run_failure("checkpoint")
    assert lost == pytest.approx(2 * (70 - 60))
    assert makespan == 120.0  # resumes at 80 from 60 s of progress: 40 s left


def _run_preemption(aware: bool) -> float:
    # a (t=0) and b (t=5) hold one GPU each; high arrives at 12 and preempts one of them.
    # At 12, a checkpointed at 10 (2 s unsaved), b has no checkpoint yet (7 s unsaved).
    jobs = [
        job("a", 1000, runtime_s=100),
        job("b", 1000, submit_s=5, runtime_s=100),
        job("high", 1000, submit_s=12, runtime_s=10, priority=5),
    ]
    world = build_world(NODE, jobs, [unlimited_queue("q")])
    faults = Faults(checkpoint_s=10, restart="checkpoint", checkpoint_aware=aware)
    result = run_full(world, jobs, "fragmentation-aware", 1, faults=faults)
    assert (result.preemptions, result.completed, result.lost_failure_gpu_h) == (1, 3, 0.0)
    return result.lost_preemption_gpu_h * HOUR


def test_checkpoint_aware_preemption_picks_the_victim_with_less_unsaved_work() -> None:
    assert _run_preemption(aware=True) == pytest.approx(2.0)  # a: 1 GPU x (12 - 10)


def test_blind_preemption_picks_the_most_recently_admitted() -> None:
    assert _run_preemption(aware=False) == pytest.approx(7.0)  # b: 1 GPU x (12 - 5)


def test_preemption_loss_is_counted_without_faults() -> None:
    # The plain full mode restarts victims from zero: low loses 2 GPUs x 4 s.
    jobs = [job("low", 2000, runtime_s=10), job("high", 2000, submit_s=4, runtime_s=5, priority=5)]
    world = build_world(NODE, jobs, [unlimited_queue("q")])
    result = run_full(world, jobs, "fragmentation-aware", seed=1)
    assert result.lost_preemption_gpu_h * HOUR == pytest.approx(8.0)
    assert (result.lost_failure_gpu_h, result.node_failures) == (0.0, 0)


def test_random_failures_are_seeded_and_within_the_horizon() -> None:
    names = [f"n{i}" for i in range(4)]
    first = random_failures(names, mtbf_s=100.0, horizon_s=1000.0, seed=3)
    assert first == random_failures(names, mtbf_s=100.0, horizon_s=1000.0, seed=3)
    assert first and all(0 < t <= 1000 and n in names for t, n in first)
    assert list(first) == sorted(first)


def test_bad_restart_mode_is_rejected() -> None:
    with pytest.raises(ValueError, match="restart"):
        Faults(restart="sometimes")  # type: ignore[arg-type]


def test_a_node_failure_over_the_quarantine_bar_quarantines_the_node() -> None:
    # Two 2-GPU nodes, two 2-GPU jobs of 100 s; n0 fails at 10 and is back at 20. With a bar
    # of one failure n0 is quarantined (for an hour); with the default bar (three failures
    # from two jobs) it is not.
    nodes = (*NODE, make_node("n1", 8000, 64 * GI, 2, "T4"))
    jobs = [job("a", 2000, runtime_s=100), job("b", 2000, runtime_s=100)]
    strict = QuarantinePolicy(threshold=1, min_jobs=1)
    for policy, quarantines in ((strict, 1), (QuarantinePolicy(), 0)):
        faults = Faults(((10.0, "n0"),), repair_s=10, quarantine=policy)
        result = run_full(build_world(nodes, jobs), jobs, "fragmentation-aware", 1, faults=faults)
        assert (result.node_failures, result.failure_kills, result.quarantines) == (
            1,
            1,
            quarantines,
        )
        # The killed job restarts on n0 once it is back (20 s) unless quarantined, when it
        # waits for n1 (free at 100).
        assert result.makespan_s == (200.0 if quarantines else 120.0)
