"""Table-driven tests of one scheduling cycle: whole Decisions compared for each scenario."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from phalanx.model.objects import DeviceShare, PodPlacement
from phalanx.scheduling import (
    Admission,
    Decisions,
    PendingReason,
    Preemption,
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


QA = make_queue("a").quota(gpu=64).obj()
ALL8 = whole(*range(8))


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
        "gang-of-4x8-waits-whole-when-only-three-nodes-fit",
        make_snapshot(
            nodes=nodes8(3),
            queues=[QA],
            pending=[make_job("g").queue("a").gpus(8).replicas(4).obj()],
        ),
        Decisions(
            pending=(
                PendingReason(
                    "g",
                    ReasonCode.UNSCHEDULABLE,
                    "only 3 of 4 pods fit at once (gang minimum 4, all or nothing); with the others placed, "
                    "pod main-3 needs 8 nvidia.com/gpu, 1 cpu on one node; 0/3 nodes of flavor default fit: "
                    "3 insufficient nvidia.com/gpu; the largest free GPU block on any node of flavor default is 0 (n0)",
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
            pending=[make_job("j").queue("a").gpus(8).replicas(2).obj()],
        ),
        Decisions(
            pending=(
                PendingReason(
                    "j",
                    ReasonCode.QUOTA_EXCEEDED,
                    "queue a uses 0/8 nvidia.com/gpu of flavor default, the job needs 16 more, and the queue has no cohort to borrow from",
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
        "borrowing-limit-caps-borrowing",
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
                PendingReason(
                    "j",
                    ReasonCode.QUOTA_EXCEEDED,
                    "queue a uses 0/8 nvidia.com/gpu of flavor default; the job needs 16 more, above its borrowing limit of 4",
                ),
            )
        ),
    ),
    Case(
        "lending-limit-caps-what-the-cohort-lends",
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
                PendingReason(
                    "j",
                    ReasonCode.QUOTA_EXCEEDED,
                    "queue a uses 0/8 nvidia.com/gpu of flavor default; the job needs 16 more and cohort c has 12 of 12 shared nvidia.com/gpu free",
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
                PendingReason(
                    "first",
                    ReasonCode.UNSCHEDULABLE,
                    "needs 8 nvidia.com/gpu, 1 cpu on one node; 0/1 nodes of flavor default fit: 1 insufficient nvidia.com/gpu; "
                    "the largest free GPU block on any node of flavor default is 0 (n0)",
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
                    "preempted by hi (priority 5 > 0 in queue a); it needs 8 nvidia.com/gpu on flavor default; loses 7840 GPU-s of work (8 GPUs, no checkpoint yet, admitted 980s ago)",
                ),
            ),
            pending=(
                PendingReason(
                    "hi",
                    ReasonCode.PREEMPTING,
                    "preempting new on flavor default; admitted once they stop",
                ),
            ),
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
                PendingReason(
                    "same",
                    ReasonCode.UNSCHEDULABLE,
                    "needs 8 nvidia.com/gpu, 1 cpu on one node; 0/1 nodes of flavor default fit: 1 insufficient nvidia.com/gpu; "
                    "the largest free GPU block on any node of flavor default is 0 (n0)",
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
                    "preempted by a1 (queue a reclaims quota it lent to queue b in cohort c); it needs 8 nvidia.com/gpu on flavor default; loses 7992 GPU-s of work (8 GPUs, no checkpoint yet, admitted 999s ago)",
                ),
            ),
            pending=(
                PendingReason(
                    "a1",
                    ReasonCode.PREEMPTING,
                    "preempting b1 on flavor default; admitted once they stop",
                ),
            ),
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
                PendingReason(
                    "next",
                    ReasonCode.WAITING_FOR_CAPACITY,
                    "fits on flavor default once stopping workloads release their capacity: going",
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
                PendingReason(
                    "t",
                    ReasonCode.UNSCHEDULABLE,
                    "needs 8 nvidia.com/gpu, 2 cpu in total within one node (topology Required), and no such domain of flavor default has that much free",
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
                PendingReason(
                    "j",
                    ReasonCode.UNSCHEDULABLE,
                    "needs 1 nvidia.com/gpu, 1 cpu on one node; 0/1 nodes of flavor default fit: 1 untolerated taint dedicated; "
                    "the largest free GPU block on any node of flavor default is 8 (t)",
                ),
            )
        ),
    ),
    Case(
        "missing-queue-is-explained",
        make_snapshot(
            nodes=nodes8(1), queues=[QA], pending=[make_job("j").queue("nope").gpus(1).obj()]
        ),
        Decisions(
            pending=(
                PendingReason(
                    "j",
                    ReasonCode.QUEUE_NOT_FOUND,
                    "queue 'nope' does not exist; create it or submit to one of: a",
                ),
            )
        ),
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
                PendingReason(
                    "big",
                    ReasonCode.UNSCHEDULABLE,
                    "needs 16 nvidia.com/gpu, 1 cpu on one node, but the largest node of flavor default has 8 GPUs (n0); it can never fit",
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
        pending=(PendingReason("j", ReasonCode.BACKOFF, "restarting after backoff in 2.5s"),)
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
