"""Placement policies as score plugins: each picks the node its definition says."""

import pytest

from phalanx.model.objects import DeviceShare
from phalanx.scheduling import SchedulerConfig, schedule
from phalanx.scheduling.plugins import POLICIES, Shape, expected_fragmentation, expected_stranding
from phalanx.scheduling.session import SchedulingSession
from phalanx.testing import make_admitted, make_job, make_node, make_queue, make_snapshot

Q = make_queue("q").quota("default", gpu=64, cpu=512, memory="4Ti").obj()


def _placement(policy: str, nodes, admitted=(), job=None, seed: int = 0) -> tuple[str, tuple]:
    job = job or make_job("j").queue("q").gpus(1).cpu(1).memory("1Gi").obj()
    snap = make_snapshot(
        nodes=nodes,
        queues=[Q],
        admitted=admitted,
        config=SchedulerConfig(policy=policy, max_candidates=1 << 20),
    )
    session = SchedulingSession(snap, seed=seed)
    decisions = session.schedule([*make_snapshot(pending=[job]).pending], 1000.0)
    placement = decisions.admissions[0].placements[0]
    return placement.node, placement.devices


def test_every_policy_is_selectable_and_places() -> None:
    nodes = [make_node(f"n{i}").gpus(2).obj() for i in range(3)]
    for policy in POLICIES:
        node, devices = _placement(policy, nodes)
        assert node.startswith("n") and len(devices) == 1, policy


def test_random_is_a_pure_function_of_the_seed() -> None:
    nodes = [make_node(f"n{i}").gpus(2).obj() for i in range(16)]
    picks = {seed: _placement("random", nodes, seed=seed)[0] for seed in range(8)}
    assert picks == {seed: _placement("random", nodes, seed=seed)[0] for seed in range(8)}
    assert len(set(picks.values())) > 1  # different seeds spread over nodes


def test_best_fit_prefers_least_absolute_room_left() -> None:
    # n-small (2 GPUs, 8 cpu) has less room left than n-big (8 GPUs, 64 cpu) after a 1-GPU pod.
    nodes = [make_node("n-big").gpus(8).cpu(64).obj(), make_node("n-small").gpus(2).cpu(8).obj()]
    assert _placement("best-fit", nodes)[0] == "n-small"


def test_gpu_packing_shares_a_used_device() -> None:
    nodes = [make_node("a").gpus(2).obj(), make_node("b").gpus(2).obj()]
    busy = make_admitted(make_job("busy").queue("q").gpus(0.5).obj(), [("b", [1])])
    half = make_job("j").queue("q").gpus(0.5).obj()
    assert _placement("gpu-packing", nodes, [busy], half) == ("b", (DeviceShare(1, 500),))


def test_dot_product_prefers_the_node_least_aligned_with_the_request() -> None:
    # A CPU-heavy pod: the node whose free CPU is smallest relative to capacity wins.
    nodes = [make_node("idle").gpus(2).cpu(32).obj(), make_node("cpu-busy").gpus(2).cpu(32).obj()]
    busy = make_admitted(make_job("busy").queue("q").cpu(24).obj(), [("cpu-busy", [])])
    job = make_job("j").queue("q").gpus(1).cpu(4).obj()
    assert _placement("dot-product", nodes, [busy], job)[0] == "cpu-busy"


@pytest.mark.parametrize(
    ("gpu_free", "free_cpu", "expected_frag", "expected_stranded"),
    [
        # Idle node: a 1-GPU/4-cpu shape fits everywhere: nothing fragmented or stranded.
        ((1000, 1000), 8000, 0.0, 0.0),
        # One device 300 free: the whole-GPU shape cannot use it (frag 300), and it strands.
        ((1000, 300), 8000, 300.0, 300.0),
        # CPU for only one more pod: FGD sees no fragmentation (it fits once), but one GPU
        # is stranded behind the CPU bottleneck.
        ((1000, 1000), 4000, 0.0, 1000.0),
        # No CPU at all: everything is fragmented and stranded.
        ((1000, 1000), 0, 2000.0, 2000.0),
    ],
    ids=["idle", "sliver", "cpu-bound", "no-cpu"],
)
def test_fragmentation_and_stranding_measures(
    gpu_free: tuple[int, int], free_cpu: int, expected_frag: float, expected_stranded: float
) -> None:
    shapes = [Shape(1000, 4000, 0, 1.0)]
    assert expected_fragmentation(gpu_free, free_cpu, 1 << 40, shapes) == expected_frag
    assert expected_stranding(gpu_free, free_cpu, 1 << 40, shapes) == expected_stranded


def test_session_decides_like_schedule() -> None:
    """The session (what the simulator drives) and schedule() (what the controllers call)
    make the same decisions on the same snapshot, cycle after cycle."""
    nodes = [make_node(f"n{i}").gpus(4).cpu(32).obj() for i in range(3)]
    jobs = [
        make_job("a").queue("q").gpus(2).obj(),
        make_job("b").queue("q").gpus(0.5).obj(),
        make_job("c").queue("q").gpus(1).replicas(3).obj(),
        make_job("d").queue("q").gpus(4).obj(),
        make_job("e").queue("q").gpus(0.25).obj(),
        make_job("f").queue("q").gpus(4).replicas(2).obj(),
    ]
    snap = make_snapshot(nodes=nodes, queues=[Q], pending=jobs)
    expected = schedule(snap)
    session = SchedulingSession(make_snapshot(nodes=nodes, queues=[Q]))
    assert session.schedule(snap.pending, snap.now) == expected
    assert sorted(session.running) == sorted(a.job for a in expected.admissions)
