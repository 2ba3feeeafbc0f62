"""FGD as published (Weng et al., ATC '23) and the default policy's choice of measure."""

import math
from collections import Counter

import pytest

from phalanx.model.objects import DeviceShare
from phalanx.model.resources import Resources
from phalanx.scheduling import SchedulerConfig
from phalanx.scheduling.plugins import (
    MULTI_GPU_SWITCH,
    PodRequest,
    Shape,
    ShapeKey,
    best_fit,
    count_shapes,
    expected_stranding,
    fgd,
    fgd_gradient,
    gpu_packing,
    multi_gpu_share,
    policy_weights,
    published_fragmentation,
    stranding,
    typical_shapes,
)
from phalanx.scheduling.session import SchedulingSession
from phalanx.testing import make_admitted, make_job, make_node, make_queue, make_snapshot

Q = make_queue("q").quota("default", gpu=64, cpu=512, memory="4Ti").obj()
NONE: frozenset[str] = frozenset()


@pytest.mark.parametrize(
    ("gpu_free", "free_cpu", "model", "expected"),
    [
        # Idle 2-GPU node: the half-GPU shape fits (no slivers); the CPU-only shape counts all
        # 2000 idle (weight 0.25); the T4-only shape cannot use a P100 node: all 2000 (0.25).
        ((1000, 1000), 8000, "P100", 0.25 * 2000 + 0.25 * 2000),
        # On a T4 node the T4 shape (whole GPU) fits: no slivers for it.
        ((1000, 1000), 8000, "T4", 0.25 * 2000),
        # 300 + 1000 free on T4: the 500 shape strands the 300 sliver; the whole-GPU T4 shape
        # strands it too.
        ((300, 1000), 8000, "T4", 0.5 * 300 + 0.25 * 1300 + 0.25 * 300),
        # Not enough CPU for the 500 shape (4000): all idle is fragment for it.
        ((1000, 1000), 3000, "T4", 0.5 * 2000 + 0.25 * 2000),
        # Nothing idle: nothing fragmented.
        ((0, 0), 8000, "T4", 0.0),
    ],
    ids=["foreign-model", "own-model", "sliver", "cpu-bound", "full"],
)
def test_published_fragmentation(
    gpu_free: tuple[int, int], free_cpu: int, model: str, expected: float
) -> None:
    shapes = [
        Shape(500, 4000, 0, 0.5),
        Shape(0, 2000, 0, 0.25),
        Shape(1000, 1000, 0, 0.25, frozenset({"T4"})),
    ]
    assert published_fragmentation(gpu_free, free_cpu, model, shapes) == pytest.approx(expected)


def test_a_foreign_model_shape_strands_nothing_in_the_default_measure() -> None:
    shapes = [Shape(1000, 0, 0, 1.0, frozenset({"T4"}))]
    assert expected_stranding((1000, 300), 8000, 1 << 40, shapes, "P100") == 0.0
    assert expected_stranding((1000, 300), 8000, 1 << 40, shapes, "T4") == 300.0
    assert published_fragmentation((1000, 300), 8000, "P100", shapes) == 1300.0
    assert published_fragmentation((1000, 300), 8000, "P100", shapes, foreign_strands=False) == 0


def test_typical_shapes_cover_95_percent_one_at_a_time() -> None:
    counts: Counter[ShapeKey] = Counter(
        {(1000, 1, 0, NONE): 50, (500, 1, 0, NONE): 30, (0, 1, 0, NONE): 16, (250, 1, 0, NONE): 4}
    )
    shapes = typical_shapes(counts)
    # 50 + 30 + 16 = 96 >= 95: the rarest shape is left out, weights renormalised over 96.
    assert [(s.gpu_milli, round(s.weight * 96)) for s in shapes] == [(1000, 50), (500, 30), (0, 16)]
    assert math.isclose(sum(s.weight for s in shapes), 1.0)
    assert typical_shapes(Counter()) == [Shape(1000, 0, 0, 1.0)]


def test_count_shapes_keys() -> None:
    pods = [
        (Resources(4000, 1 << 30, 500), 2, NONE),
        (Resources(4000, 2 << 30, 500), 1, NONE),
        (Resources(1000, 0, 0), 1, frozenset({"T4"})),
    ]
    assert count_shapes(pods, memory=False, cpu_only=True) == {
        (500, 4000, 0, NONE): 3,
        (0, 1000, 0, NONE): 1,  # a CPU-only pod's models do not matter
    }
    assert count_shapes(pods, memory=True, cpu_only=False) == {
        (500, 4000, 1 << 30, NONE): 2,
        (500, 4000, 2 << 30, NONE): 1,
    }


def _session(policy: str, nodes, admitted=()) -> SchedulingSession:
    snap = make_snapshot(
        nodes=nodes,
        queues=[Q],
        admitted=admitted,
        config=SchedulerConfig(policy=policy, max_candidates=1 << 20),
    )
    return SchedulingSession(snap)


def _place(session: SchedulingSession, job) -> tuple[str, tuple[DeviceShare, ...]]:
    decisions = session.schedule([*make_snapshot(pending=[job]).pending], 0.0)
    placement = decisions.admissions[0].placements[0]
    return placement.node, placement.devices


def test_fgd_ties_go_to_the_first_node_by_name_and_the_lowest_device() -> None:
    # Four identical idle nodes, listed out of order: FGD scores them equally.
    nodes = [make_node(n).gpus(4).cpu(32).obj() for n in ("d", "b", "c", "a")]
    session = _session("fgd", nodes)
    half = make_job("h").queue("q").gpus(0.5).cpu(1).obj()
    assert _place(session, half) == ("a", (DeviceShare(0, 500),))


def test_fgd_score_is_rounded_to_101_levels() -> None:
    # Two nodes whose fragmentation differs by far less than one level: a tie, so by name,
    # although the continuous gradient prefers "b".
    nodes = [make_node("a").gpus(2).cpu(64).obj(), make_node("b").gpus(2).cpu(64).obj()]
    busy = make_admitted(make_job("busy").queue("q").cpu(1).obj(), [("b", [])])
    session = _session("fgd", nodes, [busy])
    job = make_job("j").queue("q").gpus(1).cpu(1).obj()
    assert _place(session, job)[0] == "a"


def test_multi_gpu_share() -> None:
    shapes = [Shape(8000, 0, 0, 0.1), Shape(1000, 0, 0, 0.4), Shape(0, 0, 0, 0.5)]
    assert multi_gpu_share(shapes) == pytest.approx(800 / 1200)
    assert multi_gpu_share([Shape(500, 0, 0, 1.0)]) == 0.0
    assert multi_gpu_share([]) == 0.0


def test_default_policy_scores_as_fgd_only_when_multi_gpu_pods_dominate() -> None:
    nodes = [make_node(n).gpus(4).cpu(64).obj() for n in ("a", "b")]
    on_b = make_admitted(make_job("x").queue("q").gpus(0.5).cpu(1).obj(), [("b", [0])])
    session = _session("fragmentation-aware", nodes, [on_b])
    states = session.nodes()
    few = [Shape(4000, 1000, 0, 0.5), Shape(250, 1000, 0, 0.5)]
    many = [Shape(250, 1000, 0, 0.98), Shape(4000, 1000, 0, 0.02)]
    assert multi_gpu_share(few) >= MULTI_GPU_SWITCH > multi_gpu_share(many)
    pod = PodRequest("p", 0, Resources(1000, 0, 250))
    default = policy_weights("fragmentation-aware", {})
    assert len(default) == 1
    score = default[0][0]
    differs = False
    for node in states:
        for index in range(4):
            devices = (DeviceShare(index, 250),)

            def fresh(fn, shapes, node=node, devices=devices):  # type: ignore[no-untyped-def]
                node.frag_memo = node.strand_memo = None
                return fn(pod, node, devices, shapes)

            assert fresh(score, few) == fresh(fgd, few)
            blend = (
                fresh(stranding, many)
                + fresh(fgd_gradient, many)
                + 0.05 * fresh(best_fit, many)
                + 0.05 * fresh(gpu_packing, many)
            )
            assert fresh(score, many) == pytest.approx(blend)
            differs |= fresh(score, many) != fresh(fgd, many)
    assert differs  # with mostly fractional shapes the default is not FGD


def test_scores_sharing_the_fragmentation_memo_cannot_be_combined() -> None:
    with pytest.raises(ValueError, match="fgd and fragmentation cannot be combined"):
        policy_weights("fgd", {"fragmentation": 1.0})
    assert len(policy_weights("fgd", {"fragmentation": 0.0})) == 1
