"""IncrementalScheduler: the scratch it keeps across calls is the one a fresh cycle builds from
the same snapshot, and parked workloads are tried again exactly when something could admit
them."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from phalanx.model.objects import DeviceShare
from phalanx.model.reasons import ReasonCode
from phalanx.model.resources import Resources
from phalanx.scheduling import IncrementalScheduler, Snapshot, schedule
from phalanx.scheduling.cycle import _Cycle
from phalanx.scheduling.snapshot import (
    AdmittedWorkload,
    PendingWorkload,
    PlacedPod,
    Reservation,
)
from phalanx.testing import make_admitted, make_job, make_node, make_queue, make_snapshot


def scratch(cycle: _Cycle) -> tuple[object, ...]:
    """Everything of a cycle's scratch that decisions read: free capacity per node and
    device, the flavor indexes' buckets, quota usage and borrowing."""
    nodes = tuple(
        (n.name, n.free_cpu, n.free_mem, tuple(n.gpu_free), n.free_whole)
        for n in sorted(cycle.cluster.nodes.values(), key=lambda n: n.name)
    )
    indexes = tuple(
        (
            name,
            tuple(frozenset(bucket) for bucket in index.by_whole),
            tuple(sorted((k, frozenset(v)) for k, v in index.partial.items() if v)),
            tuple(index.partial_keys),
        )
        for name, index in sorted(cycle.cluster.flavors.items())
    )
    quota = (
        tuple(sorted((k, tuple(v)) for k, v in cycle.quota.usage.items())),
        tuple(sorted((k, tuple(v)) for k, v in cycle.quota.borrowed.items())),
    )
    return nodes, indexes, quota


def admitted_from(snapshot: Snapshot, now: float) -> list[AdmittedWorkload]:
    """What a control plane would hold after applying ``schedule(snapshot)``'s admissions."""
    decisions = schedule(snapshot)
    specs = {w.spec.name: w.spec for w in snapshot.pending}
    out = []
    for admission in decisions.admissions:
        spec = specs[admission.job]
        sizes = {ps.name: ps.resources for ps in spec.pod_sets}
        pods = tuple(PlacedPod(p, sizes[p.pod_set]) for p in admission.placements)
        out.append(
            AdmittedWorkload(spec.name, admission.queue, admission.flavor, spec.priority, pods, now)
        )
    return out


NODES = [
    make_node("n0").gpus(8).cpu(64).memory("512Gi").obj(),
    make_node("n1").gpus(4).cpu(32).memory("256Gi").obj(),
    make_node("n2").gpus(2).cpu(16).memory("128Gi").obj(),
]
QUEUES = [
    make_queue("a").quota(gpu=8, cpu=200).cohort("c").obj(),
    make_queue("b").quota(gpu=6, cpu=200).cohort("c").obj(),
]


@st.composite
def steps(draw: st.DrawFn) -> list[tuple[list[int], list[tuple[str, float, int]], int]]:
    """Per step: which running workloads stop (indexes), new jobs (queue, GPUs, replicas),
    and how many reservations to add (negative: remove)."""
    out = []
    for _ in range(draw(st.integers(1, 6))):
        stops = draw(st.lists(st.integers(0, 20), max_size=3))
        jobs = draw(
            st.lists(
                st.tuples(
                    st.sampled_from(["a", "b"]),
                    st.sampled_from([0.25, 0.5, 1, 2, 4]),
                    st.integers(1, 3),
                ),
                max_size=5,
            )
        )
        out.append((stops, jobs, draw(st.integers(-1, 1))))
    return out


@settings(max_examples=60, deadline=None)
@given(steps())
def test_the_kept_scratch_equals_a_fresh_one(plan: list[tuple[list[int], list, int]]) -> None:
    incremental = IncrementalScheduler()
    running: list[AdmittedWorkload] = []
    reservations: list[Reservation] = []
    seq = 0
    for step, (stops, jobs, reserve) in enumerate(plan):
        now = 1000.0 + step
        for i in sorted({i % len(running) for i in stops} if running else (), reverse=True):
            del running[i]
        if reserve > 0:
            reservations.append(
                Reservation("n0", Resources(cpu_milli=1000), (DeviceShare(7, 500),))
            )
        elif reserve < 0 and reservations:
            reservations.pop()
        pending = []
        for queue, gpus, replicas in jobs:
            spec = make_job(f"j{seq}").queue(queue).gpus(gpus).cpu(1).replicas(replicas).obj()
            pending.append(PendingWorkload(spec, seq))
            seq += 1
        snapshot = replace(
            make_snapshot(nodes=NODES, queues=QUEUES, admitted=running, now=now),
            pending=tuple(pending),
            reservations=tuple(reservations),
        )
        decisions = incremental.schedule(snapshot)
        assert incremental._cycle is not None
        assert scratch(incremental._cycle) == scratch(_Cycle(snapshot))
        # Every pending workload is decided: admitted, or pending with a reason.
        decided = {a.job for a in decisions.admissions} | {r.job for r in decisions.pending}
        assert decided == {w.spec.name for w in pending}
        running += admitted_from(snapshot, now)
    assert incremental.rebuilds == 1


def test_a_parked_job_keeps_its_reason_until_capacity_is_freed() -> None:
    node = make_node("n0").gpus(2).obj()
    queue = make_queue("a").quota(gpu=2).obj()
    holder = make_job("holder").queue("a").gpus(2).obj()
    big = make_job("big").queue("a").gpus(2).obj()
    running = [make_admitted(holder, [("n0", [0, 1])])]
    incremental = IncrementalScheduler()

    first = incremental.schedule(
        make_snapshot(nodes=[node], queues=[queue], pending=[big], admitted=running)
    )
    assert not first.admissions and incremental.parked == 0
    reason = first.pending[0]
    # A new job arrives, nothing was freed: "big" is not tried again and keeps its reason.
    small = make_job("small").queue("a").cpu(1).obj()
    second = incremental.schedule(
        make_snapshot(nodes=[node], queues=[queue], pending=[big, small], admitted=running)
    )
    assert incremental.parked == 1
    assert second.reason_for("big") is reason
    assert [a.job for a in second.admissions] == ["small"]
    # The holder stops: capacity was freed, so "big" is tried again and admitted.
    third = incremental.schedule(make_snapshot(nodes=[node], queues=[queue], pending=[big]))
    assert incremental.parked == 0
    assert [a.job for a in third.admissions] == ["big"]


def test_a_full_cycle_tries_parked_jobs_again() -> None:
    node = make_node("n0").gpus(1).obj()
    queue = make_queue("a").quota(gpu=0).obj()
    job = make_job("j").queue("a").gpus(1).obj()
    snapshot = make_snapshot(nodes=[node], queues=[queue], pending=[job])
    incremental = IncrementalScheduler()
    incremental.schedule(snapshot)
    incremental.schedule(snapshot)
    assert incremental.parked == 1
    decisions = incremental.schedule(snapshot, full=True)
    assert incremental.parked == 0
    assert decisions.reason_for("j") is not None


def test_new_workloads_unpark_jobs_that_may_preempt_them() -> None:
    """A job of a queue that preempts lower priorities is tried again once a new workload
    is admitted: it may be the victim that lets it in."""
    node = make_node("n0").gpus(2).obj()
    queue = make_queue("a").quota(gpu=2).obj()  # preempts lower priorities by default
    holder = make_job("holder").queue("a").priority(5).gpus(2).obj()
    waiting = make_job("waiting").queue("a").priority(3).gpus(2).obj()
    running = [make_admitted(holder, [("n0", [0, 1])])]
    incremental = IncrementalScheduler()
    incremental.schedule(
        make_snapshot(nodes=[node], queues=[queue], pending=[waiting], admitted=running)
    )
    low = make_job("low").queue("a").priority(0).gpus(1).obj()
    running_more = [*running, make_admitted(low, [("n0", [0])])]
    decisions = incremental.schedule(
        make_snapshot(nodes=[node], queues=[queue], pending=[waiting], admitted=running_more)
    )
    assert incremental.parked == 0
    assert decisions.reason_for("waiting") is not None


def test_a_changed_basis_rebuilds() -> None:
    node = make_node("n0").gpus(2).obj()
    queue = make_queue("a").quota(gpu=2).obj()
    job = make_job("j").queue("a").gpus(4).obj()
    incremental = IncrementalScheduler()
    first = incremental.schedule(make_snapshot(nodes=[node], queues=[queue], pending=[job]))
    assert first.reason_for("j") is not None
    assert first.pending[0].code is ReasonCode.NEVER_FITS
    bigger = make_node("n1").gpus(4).obj()
    bigger_queue = make_queue("a").quota(gpu=4).obj()
    second = incremental.schedule(
        make_snapshot(nodes=[node, bigger], queues=[bigger_queue], pending=[job])
    )
    assert incremental.rebuilds == 2
    assert [a.job for a in second.admissions] == ["j"]


def test_nothing_is_parked_while_the_last_admissions_are_not_running() -> None:
    """A job admitted by the last cycle that finished before the next one freed what the
    jobs after it in that cycle were refused for."""
    node = make_node("n0").gpus(2).obj()
    queue = make_queue("a").quota(gpu=2).no_preemption().obj()
    quick = make_job("quick").queue("a").gpus(2).obj()
    later = make_job("later").queue("a").gpus(2).obj()
    incremental = IncrementalScheduler()
    first = incremental.schedule(
        make_snapshot(nodes=[node], queues=[queue], pending=[quick, later])
    )
    assert [a.job for a in first.admissions] == ["quick"]
    assert first.reason_for("later") is not None
    # "quick" ran and finished before the next cycle: it never shows as admitted.
    second = incremental.schedule(
        replace(
            make_snapshot(nodes=[node], queues=[queue], now=1001.0),
            pending=(PendingWorkload(later, 1),),  # as in the first snapshot: parkable
        )
    )
    assert incremental.parked == 0
    assert [a.job for a in second.admissions] == ["later"]
