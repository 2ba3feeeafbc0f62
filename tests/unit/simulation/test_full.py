"""Full mode on hand-built traces with known completion times, with both engines: the
production control plane (the default) and the session replay give the same answers here."""

from collections.abc import Callable

import pytest
from simjobs import GI, job

from phalanx.simulation.full import FullResult, run_full
from phalanx.simulation.session_replay import run_session_replay
from phalanx.simulation.trace import make_node
from phalanx.simulation.world import build_world, unlimited_queue

NODE = (make_node("n0", 8000, 64 * GI, 2, "T4"),)
Run = Callable[..., FullResult]


@pytest.fixture(params=["controllers", "session"])
def run(request: pytest.FixtureRequest) -> Run:
    engine = run_full if request.param == "controllers" else run_session_replay

    def run_checked(*args: object, **kwargs: object) -> FullResult:
        result = engine(*args, **kwargs)
        assert result.engine == request.param
        return result

    return run_checked


def test_queueing_completion_and_allocation(run: Run) -> None:
    # a takes both GPUs for 10 s; b (1 GPU) arrives at 1 and waits until 10, ends at 15.
    jobs = [job("a", 2000, runtime_s=10), job("b", 1000, submit_s=1, runtime_s=5)]
    result = run(build_world(NODE, jobs), jobs, "fragmentation-aware", seed=1)
    assert (result.completed, result.unfinished, result.preemptions) == (2, 0, 0)
    assert result.jcts_s == (10.0, 14.0)
    assert (result.jct_s.mean, result.jct_s.p50, result.jct_s.p99) == (12.0, 10.0, 14.0)
    assert (result.queue_delay_s.mean, result.queue_delay_s.p99) == (4.5, 9.0)
    assert result.makespan_s == 15.0
    # 2 GPUs for 10 s, then 1 GPU for 5 s, out of 2 GPUs for 15 s.
    assert result.gpu_allocation_pct == pytest.approx(100 * 25 / 30)
    assert result.allocation_over_time == ((0.0, 0.0), (0.0, 100.0), (10.0, 50.0), (15.0, 0.0))


def test_queue_shares_and_fairness(run: Run) -> None:
    # Two queues, one job each, each on one GPU for 10 s: equal shares, Jain index 1.
    jobs = [job("a", 1000, queue="x"), job("b", 1000, queue="y")]
    result = run(build_world(NODE, jobs), jobs, "best-fit", seed=1)
    assert result.queue_share == {"x": 0.5, "y": 0.5}
    assert result.jain_fairness == 1.0


def test_preemption_restarts_the_victim_from_zero(run: Run) -> None:
    # low holds both GPUs; high (same queue, higher priority) arrives at 4 and preempts it.
    # high runs 4..9; low restarts at 9 and runs its full 10 s again: ends at 19.
    jobs = [
        job("low", 2000, runtime_s=10),
        job("high", 2000, submit_s=4, runtime_s=5, priority=5),
    ]
    world = build_world(NODE, jobs, [unlimited_queue("q")])
    result = run(world, jobs, "fragmentation-aware", seed=1)
    assert result.preemptions == 1
    assert result.jcts_s == (5.0, 19.0)  # high, low (sorted by name)
    assert result.makespan_s == 19.0


def test_a_gang_is_placed_whole_or_waits(run: Run) -> None:
    # A 2-pod gang of 1 GPU each needs both GPUs: it waits for "a" (1 GPU) to end.
    jobs = [job("a", 1000, runtime_s=3), job("g", 1000, submit_s=1, runtime_s=2, replicas=2)]
    result = run(build_world(NODE, jobs), jobs, "fragmentation-aware", seed=1)
    assert result.jcts_s == (3.0, 4.0)


def test_outcome_digest_names_the_decisions() -> None:
    # Equal runs record equal histories; a job arriving a second later changes its times.
    def digest(b_at: float) -> str:
        jobs = [job("a", 2000, runtime_s=10), job("b", 1000, submit_s=b_at, runtime_s=5)]
        return run_full(build_world(NODE, jobs), jobs, "best-fit", 1, digest=True).digest

    first = digest(1.0)
    assert len(first) == 64
    assert digest(1.0) == first
    assert digest(2.0) != first
    jobs = [job("a", 1000)]
    assert run_full(build_world(NODE, jobs), jobs, "best-fit", 1).digest == ""
