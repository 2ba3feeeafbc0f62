"""The placer's kept rankings (``Placer._ranked_best``) give exactly the answer of scoring
every candidate node, through assignments, releases, rollbacks and changes of the typical
shapes (the simulator's replays rely on it: same placements, only faster)."""

from __future__ import annotations

import random

import pytest

from phalanx.model.objects import DeviceShare
from phalanx.model.resources import Resources
from phalanx.scheduling.cluster import ClusterState
from phalanx.scheduling.placement import Placer
from phalanx.scheduling.plugins import PodRequest, Shape, policy_weights
from phalanx.testing import make_flavor, make_node

_PODS = [
    Resources(cpu_milli=c, memory_bytes=m << 30, gpu_milli=g)
    for g in (0, 250, 460, 500, 1000, 2000, 4000)
    for c, m in ((1000, 4), (8000, 32))
]
_SHAPE_LISTS = [
    [Shape(1000, 8000, 32 << 30, 1.0)],
    [Shape(460, 1000, 4 << 30, 0.7), Shape(2000, 8000, 32 << 30, 0.3)],
    [Shape(250, 1000, 4 << 30, 0.5), Shape(4000, 8000, 32 << 30, 0.5)],
    [Shape(8000, 8000, 32 << 30, 1.0)],
]


def _cluster(rng: random.Random) -> ClusterState:
    nodes = [
        make_node(f"n{i:02d}")
        .gpus(rng.choice([0, 2, 4, 8, 8]))
        .cpu(rng.choice([16, 64]))
        .memory(rng.choice(["64Gi", "256Gi"]))
        .obj()
        for i in range(40)
    ]
    return ClusterState(tuple(nodes), (make_flavor().obj(),))


def _placer(cluster: ClusterState, policy: str, *, ranked: bool) -> Placer:
    return Placer(cluster, policy_weights(policy, {}), _SHAPE_LISTS[0], 1 << 30, ranked=ranked)


@pytest.mark.parametrize("policy", ["fragmentation-aware", "fgd"])
@pytest.mark.parametrize("seed", range(4))
def test_ranked_placement_equals_scoring_every_node(policy: str, seed: int) -> None:
    clusters = (_cluster(random.Random(seed)), _cluster(random.Random(seed)))  # equal twins
    rng = random.Random(seed + 1000)
    ranked, scan = (
        _placer(clusters[0], policy, ranked=True),
        _placer(clusters[1], policy, ranked=False),
    )
    assert ranked.ties_by_order  # the rankings are used for these policies
    held: list[tuple[str, Resources, tuple[DeviceShare, ...]]] = []
    placed = 0
    for step in range(600):
        if rng.random() < 0.1:
            shapes = rng.choice(_SHAPE_LISTS)
            ranked.set_shapes(shapes)
            scan.set_shapes(list(shapes))
        pod = PodRequest("main", 0, rng.choice(_PODS), job=f"j{step}")
        mark = (clusters[0].journal.mark(), clusters[1].journal.mark())
        got = ranked.place_pod(pod, "default")
        want = scan.place_pod(pod, "default")
        assert (got and (got[0].name, got[1])) == (want and (want[0].name, want[1])), step
        if got is not None and want is not None:
            placed += 1
            for cluster, (node, devices) in zip(clusters, (got, want), strict=True):
                cluster.assign(cluster.nodes[node.name], pod.resources, devices)
            if rng.random() < 0.2:  # a trial rolled back, as a failed gang is
                for cluster, at in zip(clusters, mark, strict=True):
                    cluster.journal.rollback(at)
            else:
                held.append((got[0].name, pod.resources, got[1]))
        if held and rng.random() < 0.35:
            name, resources, devices = held.pop(rng.randrange(len(held)))
            for cluster in clusters:
                cluster.release(cluster.nodes[name], resources, devices)
    assert placed > 100  # the clusters filled and emptied: many rankings were caught up
