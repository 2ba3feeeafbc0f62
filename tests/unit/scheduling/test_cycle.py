"""Table-driven tests of one scheduling cycle: whole Decisions compared for each scenario.

Reasons are compared by code and facts (``phalanx.model.reasons``), never by prose."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from phalanx.model.objects import NODE_TOPOLOGY, DeviceShare, PodPlacement
from phalanx.model.reasons import Fact
from phalanx.scheduling import (
    Admission,
    Decisions,
    PendingReason,
    Preemption,
    Reason,
    ReasonCode,
    Snapshot,
    schedule,
)
from phalanx.scheduling.snapshot import PendingWorkload
from phalanx.testing import (
    make_admitted,
    make_flavor,
    make_job,
    make_node,
    make_queue,
    make_snapshot,
)


def whole(*indexes: int) -> tuple[DeviceShare, ...]:
    return tuple(DeviceShare(i, 1000) for i in indexes)


def place(
    node: str, devices: tuple[DeviceShare, ...] = (), pod_set: str = "main", index: int = 0
) -> PodPlacement:
    return PodPlacement(pod_set, index, node, devices)


def nodes8(count: int, prefix: str = "n") -> list:
    return [make_node(f"{prefix}{i}").gpus(8).obj() for i in range(count)]


def pending(job: str, code: ReasonCode, **facts: Fact) -> PendingReason:
    return PendingReason(job, Reason(code, facts))


def need(gpu: float, cpu: int = 1, memory: int = 0) -> dict[str, Fact]:
    return {
        "needed_gpu_milli": int(gpu * 1000),
        "needed_cpu_milli": cpu * 1000,
        "needed_memory_bytes": memory,
    }


QA = make_queue("a").quota(gpu=64).obj()
ALL8 = whole(*range(8))
GI256 = 256 * 2**30


@dataclass
class Case:
    id: str
    snapshot: Snapshot
    want: Decisions


CASES = [
    Case(
        "gang-of-4x8-lands-on-four-nodes-at-once",
        make_snapshot(
            nodes=nodes8(4),
            queues=[QA],
            pending=[make_job("g").queue("a").gpus(8).replicas(4).obj()],
        ),
        Decisions(
            admissions=(
                Admission(
                    "g", "a", "default", tuple(place(f"n{i}", ALL8, index=i) for i in (0, 1, 2, 3))
                ),
            )
        ),
    ),
    Case(
        "gang-of-4x8-waits-whole-with-the-largest-free-block",
        make_snapshot(
            nodes=nodes8(4),
            queues=[QA],
            admitted=[make_admitted(make_job("half").queue("a").gpus(4).obj(), [("n3", range(4))])],
            pending=[make_job("g").queue("a").gpus(8).replicas(4).obj()],
        ),
        Decisions(
            pending=(
                pending(
                    "g",
                    ReasonCode.UNSCHEDULABLE,
                    flavor="default",
                    **need(8),
                    nodes_total=4,
                    nodes_fit=0,
                    rejections={"insufficient nvidia.com/gpu": 4},
                    largest_free_gpus=4,
                    largest_free_node="n3",
                    gang_pods=4,
                    gang_minimum=4,
                    pods_placed=3,
                    pod="main-3",
                ),
            )
        ),
    ),
    Case(
        "gang-of-4x8-never-fits-three-nodes",
        make_snapshot(
            nodes=nodes8(3),
            queues=[QA],
            pending=[make_job("g").queue("a").gpus(8).replicas(4).obj()],
        ),
        Decisions(
            pending=(
                pending(
                    "g",
                    ReasonCode.NEVER_FITS,
                    flavor="default",
                    check="Gang",
                    pod_set="main",
                    **need(8),
                    nodes_total=3,
                    gang_minimum=4,
                    slots=3,
                ),
            )
        ),
    ),
    Case(
        "min-available-admits-the-pods-that-fit",
        make_snapshot(
            nodes=nodes8(3),
            queues=[QA],
            pending=[make_job("g").queue("a").gpus(8).replicas(4).min_available(3).obj()],
        ),
        Decisions(
            admissions=(
                Admission(
                    "g", "a", "default", tuple(place(f"n{i}", ALL8, index=i) for i in (0, 1, 2))
                ),
            )
        ),
    ),
    Case(
        "quota-without-cohort-says-the-numbers",
        make_snapshot(
            nodes=nodes8(4),
            queues=[make_queue("a").quota(gpu=8).obj()],
            admitted=[make_admitted(make_job("run").queue("a").gpus(8).obj(), [("n0", range(8))])],
            pending=[make_job("j").queue("a").gpus(8).obj()],
        ),
        Decisions(
            pending=(
                pending(
                    "j",
                    ReasonCode.QUOTA_EXCEEDED,
                    queue="a",
                    flavor="default",
                    resource="nvidia.com/gpu",
                    used=8000,
                    nominal=8000,
                    needed=8000,
                    cohort="",
                    blocked_by="NoCohort",
                ),
            )
        ),
    ),
    Case(
        "more-than-the-nominal-quota-without-a-cohort-exceeds-the-queue-limit",
        make_snapshot(
            nodes=nodes8(4),
            queues=[make_queue("a").quota(gpu=8).obj()],
            pending=[make_job("j").queue("a").gpus(8).replicas(2).obj()],
        ),
        Decisions(
            pending=(
                pending(
                    "j",
                    ReasonCode.EXCEEDS_QUEUE_LIMIT,
                    queue="a",
                    flavor="default",
                    resource="nvidia.com/gpu",
                    needed=16000,
                    limit=8000,
                    limited_by="Nominal",
                    nominal=8000,
                    cohort="",
                ),
            )
        ),
    ),
    Case(
        "borrows-idle-quota-from-cohort",
        make_snapshot(
            nodes=nodes8(2),
            queues=[
                make_queue("a").cohort("c").quota(gpu=8).obj(),
                make_queue("b").cohort("c").quota(gpu=8).obj(),
            ],
            pending=[make_job("j").queue("a").gpus(8).replicas(2).obj()],
        ),
        Decisions(
            admissions=(
                Admission("j", "a", "default", (place("n0", ALL8), place("n1", ALL8, index=1))),
            )
        ),
    ),
    Case(
        "borrowing-limit-caps-a-job-for-ever",
        make_snapshot(
            nodes=nodes8(2),
            queues=[
                make_queue("a").cohort("c").quota(gpu=8, gpu_borrowing_limit=4).obj(),
                make_queue("b").cohort("c").quota(gpu=8).obj(),
            ],
            pending=[make_job("j").queue("a").gpus(8).replicas(2).obj()],
        ),
        Decisions(
            pending=(
                pending(
                    "j",
                    ReasonCode.EXCEEDS_QUEUE_LIMIT,
                    queue="a",
                    flavor="default",
                    resource="nvidia.com/gpu",
                    needed=16000,
                    limit=12000,
                    limited_by="BorrowingLimit",
                    nominal=8000,
                    cohort="c",
                    borrowing_limit=4000,
                ),
            )
        ),
    ),
    Case(
        "borrowing-limit-caps-borrowing-now",
        make_snapshot(
            nodes=nodes8(4),
            queues=[
                make_queue("a").cohort("c").quota(gpu=8, gpu_borrowing_limit=4).obj(),
                make_queue("b").cohort("c").quota(gpu=8).obj(),
            ],
            admitted=[make_admitted(make_job("run").queue("a").gpus(8).obj(), [("n0", range(8))])],
            pending=[make_job("j").queue("a").gpus(8).obj()],
        ),
        Decisions(
            pending=(
                pending(
                    "j",
                    ReasonCode.QUOTA_EXCEEDED,
                    queue="a",
                    flavor="default",
                    resource="nvidia.com/gpu",
                    used=8000,
                    nominal=8000,
                    needed=8000,
                    cohort="c",
                    blocked_by="BorrowingLimit",
                    borrowing_limit=4000,
                ),
            )
        ),
    ),
    Case(
        "lending-limit-caps-what-the-cohort-lends-for-ever",
        make_snapshot(
            nodes=nodes8(2),
            queues=[
                make_queue("a").cohort("c").quota(gpu=8).obj(),
                make_queue("b").cohort("c").quota(gpu=8, gpu_lending_limit=4).obj(),
            ],
            pending=[make_job("j").queue("a").gpus(8).replicas(2).obj()],
        ),
        Decisions(
            pending=(
                pending(
                    "j",
                    ReasonCode.EXCEEDS_QUEUE_LIMIT,
                    queue="a",
                    flavor="default",
                    resource="nvidia.com/gpu",
                    needed=16000,
                    limit=12000,
                    limited_by="CohortQuota",
                    nominal=8000,
                    cohort="c",
                    guaranteed=0,
                    cohort_shared=12000,
                ),
            )
        ),
    ),
    Case(
        "the-cohort-has-too-little-left-to-lend-now",
        make_snapshot(
            nodes=nodes8(4),
            queues=[
                make_queue("a").cohort("c").quota(gpu=8).obj(),
                make_queue("b").cohort("c").quota(gpu=8, gpu_lending_limit=4).obj(),
            ],
            admitted=[make_admitted(make_job("run").queue("a").gpus(8).obj(), [("n0", range(8))])],
            pending=[make_job("j").queue("a").gpus(8).obj()],
        ),
        Decisions(
            pending=(
                pending(
                    "j",
                    ReasonCode.QUOTA_EXCEEDED,
                    queue="a",
                    flavor="default",
                    resource="nvidia.com/gpu",
                    used=8000,
                    nominal=8000,
                    needed=8000,
                    cohort="c",
                    blocked_by="Cohort",
                    cohort_free=4000,
                    cohort_shared=12000,
                ),
            )
        ),
    ),
    Case(
        "fractional-pair-shares-one-device",
        make_snapshot(
            nodes=nodes8(1),
            queues=[QA],
            pending=[make_job("f").queue("a").gpus(0.5).replicas(2).obj()],
        ),
        Decisions(
            admissions=(
                Admission(
                    "f",
                    "a",
                    "default",
                    (
                        place("n0", (DeviceShare(0, 500),)),
                        place("n0", (DeviceShare(0, 500),), index=1),
                    ),
                ),
            )
        ),
    ),
    Case(
        "fraction-goes-to-the-partly-used-device-not-a-fresh-one",
        make_snapshot(
            nodes=nodes8(2),
            queues=[QA],
            admitted=[make_admitted(make_job("old").queue("a").gpus(0.5).obj(), [("n1", [3])])],
            pending=[make_job("f").queue("a").gpus(0.25).obj()],
        ),
        Decisions(
            admissions=(Admission("f", "a", "default", (place("n1", (DeviceShare(3, 250),)),)),)
        ),
    ),
    Case(
        "whole-gpu-never-gets-a-shared-device",
        make_snapshot(
            nodes=[make_node("n0").gpus(2).obj()],
            queues=[QA],
            admitted=[make_admitted(make_job("old").queue("a").gpus(0.5).obj(), [("n0", [0])])],
            pending=[make_job("w").queue("a").gpus(1).obj()],
        ),
        Decisions(admissions=(Admission("w", "a", "default", (place("n0", whole(1)),)),)),
    ),
    Case(
        "priority-before-fifo",
        make_snapshot(
            nodes=nodes8(1),
            queues=[QA],
            pending=[
                make_job("first").queue("a").gpus(8).obj(),
                make_job("urgent").queue("a").gpus(8).priority(10).obj(),
            ],
        ),
        Decisions(
            admissions=(Admission("urgent", "a", "default", (place("n0", ALL8),)),),
            pending=(
                pending(
                    "first",
                    ReasonCode.UNSCHEDULABLE,
                    flavor="default",
                    **need(8),
                    nodes_total=1,
                    nodes_fit=0,
                    rejections={"insufficient nvidia.com/gpu": 1},
                    largest_free_gpus=0,
                    largest_free_node="n0",
                ),
            ),
        ),
    ),
    Case(
        "fair-share-serves-the-queue-using-less",
        make_snapshot(
            nodes=nodes8(2),
            queues=[make_queue("a").quota(gpu=8).obj(), make_queue("b").quota(gpu=8).obj()],
            admitted=[
                make_admitted(
                    make_job("a-running").queue("a").gpus(4).obj(), [("n0", [0, 1, 2, 3])]
                )
            ],
            pending=[
                make_job("a-next").queue("a").gpus(4).obj(),
                make_job("b-next").queue("b").gpus(8).obj(),
            ],
        ),
        Decisions(
            admissions=(
                Admission("b-next", "b", "default", (place("n1", ALL8),)),
                Admission("a-next", "a", "default", (place("n0", whole(4, 5, 6, 7)),)),
            )
        ),
    ),
    Case(
        "preempts-lower-priority-most-recent-first-and-only-what-is-needed",
        make_snapshot(
            nodes=nodes8(2),
            queues=[QA],
            admitted=[
                make_admitted(
                    make_job("old").queue("a").gpus(8).obj(), [("n0", range(8))], admitted_at=10
                ),
                make_admitted(
                    make_job("new").queue("a").gpus(8).obj(), [("n1", range(8))], admitted_at=20
                ),
            ],
            pending=[make_job("hi").queue("a").gpus(8).priority(5).obj()],
        ),
        Decisions(
            preemptions=(
                Preemption(
                    "new",
                    "hi",
                    Reason(
                        ReasonCode.PREEMPTED,
                        {
                            "victim": "new",
                            "victim_queue": "a",
                            "victim_priority": 0,
                            "preemptor": "hi",
                            "preemptor_queue": "a",
                            "preemptor_priority": 5,
                            "cohort": "",
                            "flavor": "default",
                            "needed_gpu_milli": 8000,
                            "lost_gpu_s": 7840.0,
                            "victim_gpus": 8.0,
                            "last_checkpoint_age_s": None,
                            "admitted_age_s": 980.0,
                        },
                    ),
                ),
            ),
            pending=(pending("hi", ReasonCode.PREEMPTING, flavor="default", victims=("new",)),),
        ),
    ),
    Case(
        "never-preempts-equal-priority",
        make_snapshot(
            nodes=nodes8(1),
            queues=[QA],
            admitted=[make_admitted(make_job("run").queue("a").gpus(8).obj(), [("n0", range(8))])],
            pending=[make_job("same").queue("a").gpus(8).obj()],
        ),
        Decisions(
            pending=(
                pending(
                    "same",
                    ReasonCode.UNSCHEDULABLE,
                    flavor="default",
                    **need(8),
                    nodes_total=1,
                    nodes_fit=0,
                    rejections={"insufficient nvidia.com/gpu": 1},
                    largest_free_gpus=0,
                    largest_free_node="n0",
                ),
            )
        ),
    ),
    Case(
        "reclaims-lent-quota-from-a-borrowing-queue",
        make_snapshot(
            nodes=nodes8(2),
            queues=[
                make_queue("a").cohort("c").quota(gpu=8).obj(),
                make_queue("b").cohort("c").quota(gpu=8).obj(),
            ],
            admitted=[
                make_admitted(
                    make_job("b1").queue("b").gpus(8).obj(), [("n0", range(8))], admitted_at=1
                ),
                # Same unsaved work (admitted together, no checkpoint): lower priority goes.
                make_admitted(
                    make_job("b2").queue("b").gpus(8).priority(100).obj(),
                    [("n1", range(8))],
                    admitted_at=1,
                ),
            ],
            pending=[make_job("a1").queue("a").gpus(8).obj()],
        ),
        Decisions(
            preemptions=(
                Preemption(
                    "b1",
                    "a1",
                    Reason(
                        ReasonCode.PREEMPTED,
                        {
                            "victim": "b1",
                            "victim_queue": "b",
                            "victim_priority": 0,
                            "preemptor": "a1",
                            "preemptor_queue": "a",
                            "preemptor_priority": 0,
                            "cohort": "c",
                            "flavor": "default",
                            "needed_gpu_milli": 8000,
                            "lost_gpu_s": 7992.0,
                            "victim_gpus": 8.0,
                            "last_checkpoint_age_s": None,
                            "admitted_age_s": 999.0,
                        },
                    ),
                ),
            ),
            pending=(pending("a1", ReasonCode.PREEMPTING, flavor="default", victims=("b1",)),),
        ),
    ),
    Case(
        "waits-for-workloads-already-stopping",
        make_snapshot(
            nodes=nodes8(1),
            queues=[QA],
            admitted=[
                make_admitted(
                    make_job("going").queue("a").gpus(8).obj(), [("n0", range(8))], terminating=True
                )
            ],
            pending=[make_job("next").queue("a").gpus(8).obj()],
        ),
        Decisions(
            pending=(
                pending(
                    "next",
                    ReasonCode.WAITING_FOR_CAPACITY,
                    flavor="default",
                    stopping=("going",),
                ),
            )
        ),
    ),
    Case(
        "required-same-node-keeps-the-gang-together",
        make_snapshot(
            nodes=[make_node("n0").gpus(8).obj(), make_node("n1").gpus(4).obj()],
            queues=[QA],
            pending=[make_job("t").queue("a").gpus(4).replicas(2).topology().obj()],
        ),
        Decisions(
            admissions=(
                Admission(
                    "t",
                    "a",
                    "default",
                    (place("n0", whole(0, 1, 2, 3)), place("n0", whole(4, 5, 6, 7), index=1)),
                ),
            )
        ),
    ),
    Case(
        "required-rack-picks-the-rack-that-fits",
        make_snapshot(
            nodes=[
                make_node("r1a").gpus(8).label("rack", "r1").obj(),
                make_node("r2a").gpus(8).label("rack", "r2").obj(),
                make_node("r2b").gpus(8).label("rack", "r2").obj(),
            ],
            queues=[QA],
            pending=[make_job("t").queue("a").gpus(8).replicas(2).topology("rack").obj()],
        ),
        Decisions(
            admissions=(
                Admission("t", "a", "default", (place("r2a", ALL8), place("r2b", ALL8, index=1))),
            )
        ),
    ),
    Case(
        "required-same-node-that-no-node-can-hold",
        make_snapshot(
            nodes=[make_node("n0").gpus(4).obj(), make_node("n1").gpus(4).obj()],
            queues=[QA],
            pending=[make_job("t").queue("a").gpus(4).replicas(2).topology().obj()],
        ),
        Decisions(
            pending=(
                pending(
                    "t",
                    ReasonCode.NEVER_FITS,
                    flavor="default",
                    check="Topology",
                    topology_key=NODE_TOPOLOGY,
                    domains_total=2,
                    nodes_total=2,
                    **need(8, cpu=2),
                ),
            )
        ),
    ),
    Case(
        "not-ready-and-quarantined-nodes-take-nothing",
        make_snapshot(
            nodes=[
                make_node("bad").gpus(8).not_ready().obj(),
                make_node("q").gpus(8).quarantined().obj(),
                make_node("ok").gpus(8).obj(),
            ],
            queues=[QA],
            pending=[make_job("j").queue("a").gpus(8).obj()],
        ),
        Decisions(admissions=(Admission("j", "a", "default", (place("ok", ALL8),)),)),
    ),
    Case(
        "taints-keep-untolerating-pods-off",
        make_snapshot(
            nodes=[make_node("t").gpus(8).taint("dedicated", "x").obj()],
            queues=[QA],
            pending=[make_job("j").queue("a").gpus(1).obj()],
        ),
        Decisions(
            pending=(
                pending(
                    "j",
                    ReasonCode.UNSCHEDULABLE,
                    flavor="default",
                    **need(1),
                    nodes_total=1,
                    nodes_fit=0,
                    rejections={"untolerated taint dedicated": 1},
                    largest_free_gpus=8,
                    largest_free_node="t",
                ),
            )
        ),
    ),
    Case(
        "missing-queue-is-explained",
        make_snapshot(
            nodes=nodes8(1), queues=[QA], pending=[make_job("j").queue("nope").gpus(1).obj()]
        ),
        Decisions(pending=(pending("j", ReasonCode.QUEUE_NOT_FOUND, queue="nope", queues=("a",)),)),
    ),
    Case(
        "second-flavor-when-the-first-is-out-of-quota",
        make_snapshot(
            nodes=[make_node("h").gpus(8, "H100").obj(), make_node("l").gpus(8, "L4").obj()],
            flavors=[
                make_flavor("h100").label("nvidia.com/gpu.product", "H100").obj(),
                make_flavor("l4").label("nvidia.com/gpu.product", "L4").obj(),
            ],
            queues=[make_queue("a").quota("h100", gpu=0).quota("l4", gpu=8).obj()],
            pending=[make_job("j").queue("a").gpus(2).obj()],
        ),
        Decisions(admissions=(Admission("j", "a", "l4", (place("l", whole(0, 1)),)),)),
    ),
    Case(
        "node-too-small-can-never-fit",
        make_snapshot(
            nodes=nodes8(2), queues=[QA], pending=[make_job("big").queue("a").gpus(16).obj()]
        ),
        Decisions(
            pending=(
                pending(
                    "big",
                    ReasonCode.NEVER_FITS,
                    flavor="default",
                    check="Node",
                    pod_set="main",
                    **need(16),
                    nodes_total=2,
                    max_node_gpus=8,
                    max_node_cpu_milli=32000,
                    max_node_memory_bytes=GI256,
                    largest_node="n0",
                ),
            )
        ),
    ),
    Case(
        # The papercut: 1,000 GPUs per pod on 2-GPU nodes is not a quota problem.
        "a-thousand-gpus-per-pod-never-fits-before-any-quota-reason",
        make_snapshot(
            nodes=[make_node(f"n{i}").gpus(2).obj() for i in range(2)],
            queues=[make_queue("a").quota(gpu=8).obj()],
            pending=[make_job("huge").queue("a").gpus(1000).obj()],
        ),
        Decisions(
            pending=(
                pending(
                    "huge",
                    ReasonCode.NEVER_FITS,
                    flavor="default",
                    check="Node",
                    pod_set="main",
                    **need(1000),
                    nodes_total=2,
                    max_node_gpus=2,
                    max_node_cpu_milli=32000,
                    max_node_memory_bytes=GI256,
                    largest_node="n0",
                ),
            )
        ),
    ),
    Case(
        "a-larger-node-that-is-not-ready-makes-it-unschedulable-not-never",
        make_snapshot(
            nodes=[make_node("big").gpus(16).not_ready().obj(), make_node("small").gpus(8).obj()],
            queues=[QA],
            pending=[make_job("j").queue("a").gpus(16).obj()],
        ),
        Decisions(
            pending=(
                pending(
                    "j",
                    ReasonCode.UNSCHEDULABLE,
                    flavor="default",
                    **need(16),
                    nodes_total=1,
                    largest_node="small",
                    largest_node_gpus=8,
                ),
            )
        ),
    ),
    Case(
        "a-flavor-without-nodes-never-fits",
        make_snapshot(
            nodes=nodes8(1),
            flavors=[make_flavor("a100").label("nvidia.com/gpu.product", "A100").obj()],
            queues=[make_queue("a").quota("a100", gpu=8).obj()],
            pending=[make_job("j").queue("a").gpus(1).obj()],
        ),
        Decisions(
            pending=(
                pending(
                    "j",
                    ReasonCode.NEVER_FITS,
                    flavor="a100",
                    check="NoNodes",
                    pod_set="main",
                    **need(1),
                    nodes_total=0,
                ),
            )
        ),
    ),
    Case(
        "one-reason-per-flavor-coded-by-the-first-that-waiting-may-cure",
        make_snapshot(
            nodes=[
                make_node("h").gpus(8, "H100").obj(),
                make_node("l").gpus(8, "L4").obj(),
                make_node("l2").gpus(8, "L4").obj(),
            ],
            flavors=[
                make_flavor("h100").label("nvidia.com/gpu.product", "H100").obj(),
                make_flavor("l4").label("nvidia.com/gpu.product", "L4").obj(),
            ],
            queues=[make_queue("a").quota("h100", gpu=16).quota("l4", gpu=16).obj()],
            admitted=[
                make_admitted(
                    make_job("run").queue("a").gpus(8).obj(), [("l", range(8))], flavor="l4"
                )
            ],
            pending=[make_job("j").queue("a").gpus(4).replicas(3).obj()],
        ),
        Decisions(
            pending=(
                pending(
                    "j",
                    ReasonCode.QUOTA_EXCEEDED,
                    flavors=(
                        {
                            "code": "NeverFits",
                            "facts": {
                                "flavor": "h100",
                                "check": "Gang",
                                "pod_set": "main",
                                **need(4),
                                "nodes_total": 1,
                                "gang_minimum": 3,
                                "slots": 2,
                            },
                        },
                        {
                            "code": "QuotaExceeded",
                            "facts": {
                                "queue": "a",
                                "flavor": "l4",
                                "resource": "nvidia.com/gpu",
                                "used": 8000,
                                "nominal": 16000,
                                "needed": 12000,
                                "cohort": "",
                                "blocked_by": "NoCohort",
                            },
                        },
                    ),
                ),
            )
        ),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_cycle(case: Case) -> None:
    assert schedule(case.snapshot) == case.want


def test_backoff_holds_a_job_until_its_time() -> None:
    job = make_job("j").queue("a").gpus(1).obj()
    snap = make_snapshot(nodes=nodes8(1), queues=[QA], now=100.0)
    snap = Snapshot(
        snap.now,
        snap.nodes,
        snap.flavors,
        snap.queues,
        (PendingWorkload(job, 0, not_before=102.5),),
    )
    assert schedule(snap) == Decisions(
        pending=(pending("j", ReasonCode.BACKOFF, wait_s=2.5, not_before=102.5),)
    )
    later = Snapshot(103.0, snap.nodes, snap.flavors, snap.queues, snap.pending)
    assert [a.job for a in schedule(later).admissions] == ["j"]


def test_unknown_policy_is_a_clear_error() -> None:
    from phalanx.scheduling import SchedulerConfig

    with pytest.raises(
        ValueError,
        match="unknown placement policy 'nope'; valid: best-fit, dot-product, fgd, fragmentation-aware, gpu-packing, random",
    ):
        schedule(make_snapshot(nodes=nodes8(1), queues=[QA], config=SchedulerConfig(policy="nope")))


def test_a_head_within_its_nominal_quota_goes_before_an_earlier_borrower() -> None:
    """Queue b (no quota of its own) borrows all of a's: when both wait at equal priority and
    equal (zero) share, a's job goes first although b's came first. In the other order b's
    job would be admitted on borrowed quota after every reclaim, and reclaimed again."""
    snapshot = make_snapshot(
        nodes=nodes8(1),
        queues=[
            make_queue("a").cohort("c").quota(gpu=8).obj(),
            make_queue("b").cohort("c").quota(gpu=0).obj(),
        ],
        pending=[
            make_job("borrower").queue("b").gpus(8).obj(),
            make_job("owner").queue("a").gpus(8).obj(),
        ],
    )
    decisions = schedule(snapshot)
    assert [a.job for a in decisions.admissions] == ["owner"]
    assert decisions.reason_for("borrower") is not None


def test_jobs_alike_beyond_their_queues_limit_share_one_reason() -> None:
    """The control plane keeps every waiting job's reason: jobs that ask the same of a queue
    that can never give it get the very same Reason (one facts dict, one message), and a job
    of another size gets its own, with its numbers."""
    snapshot = make_snapshot(
        nodes=nodes8(4),
        queues=[make_queue("a").quota(gpu=8).obj()],
        pending=[
            make_job("j1").queue("a").gpus(8).replicas(2).obj(),
            make_job("j2").queue("a").gpus(8).replicas(2).obj(),
            make_job("j3").queue("a").gpus(8).replicas(3).obj(),
        ],
    )
    decisions = schedule(snapshot)
    found = [decisions.reason_for(name) for name in ("j1", "j2", "j3")]
    assert None not in found
    j1, j2, j3 = (p.reason for p in found if p is not None)
    assert j1.code == ReasonCode.EXCEEDS_QUEUE_LIMIT
    assert j1 is j2
    assert j3 is not j1
    assert (j1.facts["needed"], j3.facts["needed"]) == (16000, 24000)
