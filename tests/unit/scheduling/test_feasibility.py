"""What ``apply`` warns about: jobs that can never be admitted with the current nodes, flavors
and queues (NeverFits, ExceedsQueueLimit, FlavorNotFound), compared by code and facts; and
never a warning for a job that could run."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from phalanx.model.objects import JobSpec, Node, Queue, ResourceFlavor
from phalanx.model.reasons import Fact, Reason, ReasonCode
from phalanx.scheduling import admission_warning
from phalanx.testing import make_flavor, make_job, make_node, make_queue

DEFAULT = [make_flavor("default").obj()]
TWO_GPU_NODES = [make_node(f"n{i}").gpus(2).obj() for i in range(2)]
GI256 = 256 * 2**30


@dataclass
class Case:
    id: str
    job: JobSpec
    queues: list[Queue]
    want: Reason | None
    nodes: list[Node] | None = None
    flavors: list[ResourceFlavor] | None = None


def never(**facts: Fact) -> Reason:
    return Reason(ReasonCode.NEVER_FITS, {"flavor": "default", **facts})


def need(gpu: float, cpu: int = 1) -> dict[str, Fact]:
    return {
        "needed_gpu_milli": int(gpu * 1000),
        "needed_cpu_milli": cpu * 1000,
        "needed_memory_bytes": 0,
    }


CASES = [
    Case(
        "fits", make_job("j").queue("a").gpus(2).obj(), [make_queue("a").quota(gpu=4).obj()], None
    ),
    Case(
        "a-busy-cluster-is-no-warning",
        make_job("j").queue("a").gpus(2).replicas(2).obj(),
        [make_queue("a").quota(gpu=4).obj()],
        None,
    ),
    Case(
        "a-pod-larger-than-any-node",
        make_job("j").queue("a").gpus(1000).obj(),
        [make_queue("a").quota(gpu=4).obj()],
        never(
            check="Node",
            pod_set="main",
            **need(1000),
            nodes_total=2,
            max_node_gpus=2,
            max_node_cpu_milli=32000,
            max_node_memory_bytes=GI256,
            largest_node="n0",
        ),
    ),
    Case(
        "more-pods-than-the-nodes-hold-even-empty",
        make_job("j").queue("a").gpus(2).replicas(3).obj(),
        [make_queue("a").quota(gpu=64).obj()],
        never(check="Gang", pod_set="main", **need(2), nodes_total=2, gang_minimum=3, slots=2),
    ),
    Case(
        "min-available-counts-not-replicas",
        make_job("j").queue("a").gpus(2).replicas(3).min_available(2).obj(),
        [make_queue("a").quota(gpu=64).obj()],
        None,
    ),
    Case(
        "a-same-node-gang-larger-than-any-node",
        make_job("j").queue("a").gpus(1).replicas(3).topology().obj(),
        [make_queue("a").quota(gpu=64).obj()],
        never(
            check="Topology",
            topology_key="kubernetes.io/hostname",
            domains_total=2,
            nodes_total=2,
            **need(3, cpu=3),
        ),
    ),
    Case(
        "beyond-nominal-without-a-cohort",
        make_job("j").queue("a").gpus(2).replicas(2).obj(),
        [make_queue("a").quota(gpu=2).obj()],
        Reason(
            ReasonCode.EXCEEDS_QUEUE_LIMIT,
            {
                "queue": "a",
                "flavor": "default",
                "resource": "nvidia.com/gpu",
                "needed": 4000,
                "limit": 2000,
                "limited_by": "Nominal",
                "nominal": 2000,
                "cohort": "",
            },
        ),
    ),
    Case(
        "within-what-the-cohort-could-lend",
        make_job("j").queue("a").gpus(2).replicas(2).obj(),
        [
            make_queue("a").cohort("c").quota(gpu=2).obj(),
            make_queue("b").cohort("c").quota(gpu=2).obj(),
        ],
        None,
    ),
    Case(
        "a-flavor-no-node-matches",
        make_job("j").queue("a").gpus(1).obj(),
        [make_queue("a").quota("a100", gpu=8).obj()],
        Reason(
            ReasonCode.NEVER_FITS,
            {"flavor": "a100", "check": "NoNodes", "pod_set": "main", **need(1), "nodes_total": 0},
        ),
        flavors=[make_flavor("a100").label("nvidia.com/gpu.product", "A100").obj()],
    ),
    Case(
        "a-flavor-that-does-not-exist",
        make_job("j").queue("a").gpus(1).obj(),
        [make_queue("a").quota("a100", gpu=8).obj()],
        Reason(ReasonCode.FLAVOR_NOT_FOUND, {"flavor": "a100", "queue": "a"}),
    ),
    Case(
        "one-flavor-that-fits-is-enough",
        make_job("j").queue("a").gpus(2).obj(),
        [make_queue("a").quota("a100", gpu=8).quota("default", gpu=8).obj()],
        None,
    ),
    Case(
        "no-warning-before-the-queue-exists",
        make_job("j").queue("later").gpus(1000).obj(),
        [make_queue("a").quota(gpu=4).obj()],
        None,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_admission_warning(case: Case) -> None:
    nodes = TWO_GPU_NODES if case.nodes is None else case.nodes
    flavors = DEFAULT if case.flavors is None else case.flavors
    assert admission_warning(case.job, case.queues, flavors, nodes) == case.want


def test_every_flavor_hopeless_gives_one_reason_per_flavor() -> None:
    job = make_job("j").queue("a").gpus(1000).obj()
    queue = make_queue("a").quota("a100", gpu=8).quota("default", gpu=8).obj()
    warning = admission_warning(job, [queue], DEFAULT, TWO_GPU_NODES)
    assert warning is not None
    assert warning.code is ReasonCode.FLAVOR_NOT_FOUND
    flavors = warning.facts["flavors"]
    assert isinstance(flavors, tuple)
    assert [(f["code"], f["facts"]["flavor"]) for f in flavors] == [  # type: ignore[index]
        ("FlavorNotFound", "a100"),
        ("NeverFits", "default"),
    ]


def test_a_not_ready_node_still_counts_for_never() -> None:
    nodes = [make_node("big").gpus(8).not_ready().obj(), *TWO_GPU_NODES]
    job = make_job("j").queue("a").gpus(8).obj()
    assert admission_warning(job, [make_queue("a").quota(gpu=8).obj()], DEFAULT, nodes) is None
