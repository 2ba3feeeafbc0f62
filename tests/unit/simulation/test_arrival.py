"""Arrival-only mode on hand-built traces whose answers can be worked out by hand."""

from simjobs import GI, job

from phalanx.simulation.arrival import inflate, run_arrival, trace_shapes
from phalanx.simulation.trace import make_node
from phalanx.simulation.world import build_world

NODES = (make_node("a", 8000, 64 * GI, 2, "T4"), make_node("b", 8000, 64 * GI, 2, "T4"))
CAPACITY = 4000


def test_inflation_is_seeded_and_stops_before_the_limit() -> None:
    jobs = [job("x", 1000), job("y", 500)]
    one = inflate(jobs, CAPACITY, 1.3, seed=7)
    assert [j.name for j in one] == [j.name for j in inflate(jobs, CAPACITY, 1.3, seed=7)]
    total = sum(j.gpu_milli for j in one)
    assert total <= 1.3 * CAPACITY
    # The next copy of either job would exceed 5200 milli: only 200 or less is left.
    assert 1.3 * CAPACITY - total < 1000
    assert one[:2] == jobs


def test_allocation_curve_failures_and_fragmentation() -> None:
    # Three whole-GPU pods, then a 2-GPU pod that cannot fit (one GPU left on one node).
    jobs = [job("p1", 1000), job("p2", 1000), job("p3", 1000), job("p4", 2000)]
    world = build_world(NODES, jobs, may_preempt=False)
    result = run_arrival(world, jobs, "best-fit", seed=1, inflation=1.0)
    assert (result.placed, result.failed) == (3, 1)
    assert result.final_arrived_pct == 125.0
    assert result.final_allocated_pct == 75.0
    assert result.curve == ((0, 0.0), (25, 25.0), (50, 50.0), (75, 75.0), (125, 75.0))
    assert result.allocation_at(100) == 75.0
    # Shapes: 3 pods of 1 GPU, 1 of 2 GPUs (weights 3/4, 1/4). The last free GPU is usable by
    # the 1-GPU shape but not by the 2-GPU shape: 1000 milli x 1/4 = 250 fragmented, 6.25 %.
    assert result.fragmentation_pct == 6.25
    assert result.fragmentation_of_idle_pct == 25.0


def test_best_fit_packs_where_random_may_not() -> None:
    # Two half-GPU pods, then a 2-GPU pod: packing both halves on one device of one node
    # leaves a whole node free for the big pod.
    jobs = [job("h1", 500), job("h2", 500), job("big", 2000)]
    world = build_world(NODES, jobs, may_preempt=False)
    for policy in ("best-fit", "fragmentation-aware", "fgd", "gpu-packing"):
        result = run_arrival(world, jobs, policy, seed=3, inflation=0.0)  # no copies
        assert result.failed == 0, policy
        assert result.final_allocated_pct == 75.0


def test_runs_are_deterministic_per_seed() -> None:
    jobs = [job(f"p{i}", (i % 4 + 1) * 250) for i in range(12)]
    world = build_world(NODES, jobs, may_preempt=False)
    first = run_arrival(world, jobs, "random", seed=5, shuffle=True)
    assert first == run_arrival(world, jobs, "random", seed=5, shuffle=True)


def test_trace_shapes_are_fgds_and_fixed_for_the_run() -> None:
    # FGD's typical shapes: CPU-only pods included, memory left out (two memories, one shape).
    jobs = [job("a", 500, memory=GI), job("b", 500, memory=2 * GI), job("c", 0), job("d", 0)]
    shapes = trace_shapes(jobs)
    assert sorted((s.gpu_milli, s.memory_bytes, s.weight) for s in shapes) == [
        (0, 0, 0.5),
        (500, 0, 0.5),
    ]
    # Learnt from history or fixed from the trace, a run is deterministic either way.
    world = build_world(NODES, jobs, may_preempt=False)
    for shapes_from in ("trace", "history"):
        one = run_arrival(world, jobs, "fgd", seed=3, shapes_from=shapes_from)
        assert one == run_arrival(world, jobs, "fgd", seed=3, shapes_from=shapes_from)
        assert one.final_allocated_pct == 100.0  # halves pair up on every GPU
