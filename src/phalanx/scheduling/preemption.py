"""Preemption, simulated on the scratch cluster before anything is stopped.

Candidates are lower-priority workloads of the same queue and, to reclaim lent quota, workloads
of other queues in the cohort that are borrowing. Checkpoint-aware: a victim's cost is the work
it would lose, GPU-seconds since its last checkpoint (or since admission without one), so a job
that just checkpointed is cheap to preempt. Candidates are taken cheapest first (least lost
work, then lowest priority, then most recently admitted) until the preemptor fits; then each
chosen victim that turns out not to be needed is put back, most expensive first, so the set is
minimal. A single candidate that suffices alone and loses less than that set wins instead.
Pure: "now" is the snapshot's time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from phalanx.model.objects import JobSpec, PreemptionPolicy, Queue
from phalanx.model.reasons import Fact
from phalanx.scheduling.cluster import ClusterState
from phalanx.scheduling.quota import QuotaState
from phalanx.scheduling.snapshot import AdmittedWorkload

#: How many candidates are tried alone against the greedy set (bounds the cycle's work).
_MAX_SINGLE_TRIALS = 32


def victim_order(workload: AdmittedWorkload, now: float) -> tuple[float, int, float, str]:
    """Sort key: cheapest victim first (least work lost since its last checkpoint, then lowest
    priority, then most recently admitted)."""
    return (workload.lost_gpu_s(now), workload.priority, -workload.admitted_at, workload.name)


def preemption_cost(workload: AdmittedWorkload, now: float) -> dict[str, Fact]:
    """Return what preempting ``workload`` at ``now`` loses, as facts of its ``Preempted``
    reason: GPU-seconds of work, its GPUs, and the age of its last checkpoint (None without
    one) or, without one, of its admission."""
    checkpoint = workload.last_checkpoint_at
    return {
        "lost_gpu_s": workload.lost_gpu_s(now),
        "victim_gpus": workload.gpus,
        "last_checkpoint_age_s": None if checkpoint is None else max(0.0, now - checkpoint),
        "admitted_age_s": max(0.0, now - workload.admitted_at),
    }


def release(cluster: ClusterState, quota: QuotaState, workload: AdmittedWorkload) -> None:
    """Take ``workload`` off the scratch cluster and its queue's usage (journalled)."""
    for pod in workload.pods:
        node = cluster.nodes.get(pod.placement.node)
        if node is not None:
            cluster.release(node, pod.resources, pod.placement.devices)
    quota.remove(workload.queue, workload.flavor, workload.total)


def restore(cluster: ClusterState, quota: QuotaState, workload: AdmittedWorkload) -> None:
    """Undo ``release`` for ``workload`` (journalled)."""
    for pod in workload.pods:
        node = cluster.nodes.get(pod.placement.node)
        if node is not None:
            cluster.assign(node, pod.resources, pod.placement.devices)
    quota.add(workload.queue, workload.flavor, workload.total)


def candidates_for(
    job: JobSpec,
    queue: Queue,
    flavor: str,
    running: Sequence[AdmittedWorkload],
    queues: dict[str, Queue],
    quota: QuotaState,
    now: float,
) -> list[AdmittedWorkload]:
    """Return the workloads ``job`` may preempt on ``flavor``, cheapest first."""
    may_reclaim = (
        bool(queue.cohort)
        and queue.reclaim_within_cohort
        and quota.within_nominal(queue.name, flavor, job.total_request)
    )
    out: list[AdmittedWorkload] = []
    for w in running:
        if w.is_terminating or w.flavor != flavor:
            continue
        if w.queue == queue.name:
            if (
                queue.within_queue_preemption is PreemptionPolicy.LOWER_PRIORITY
                and w.priority < job.priority
            ):
                out.append(w)
        elif may_reclaim:
            other = queues.get(w.queue)
            if other is not None and other.cohort == queue.cohort:
                out.append(w)
    out.sort(key=lambda w: victim_order(w, now))
    return out


def select_victims(
    job: JobSpec,
    queue: Queue,
    flavor: str,
    candidates: Sequence[AdmittedWorkload],
    cluster: ClusterState,
    quota: QuotaState,
    fits: Callable[[], bool],
    now: float,
) -> list[AdmittedWorkload] | None:
    """Return a minimal set of victims after whose removal ``fits()`` holds, leaving them
    removed on the scratch; or None (and the scratch unchanged) if no set suffices.
    ``candidates`` come cheapest first (``victim_order``)."""
    mark = cluster.journal.mark()
    removed: list[AdmittedWorkload] = []
    for w in candidates:
        # Reclaim only from queues still above their nominal quota.
        if w.queue != queue.name and not quota.is_borrowing(w.queue, flavor):
            continue
        release(cluster, quota, w)
        removed.append(w)
        if fits():
            break
    else:
        cluster.journal.rollback(mark)
        return None
    victims = [removed[-1]]
    for w in reversed(removed[:-1]):
        restore(cluster, quota, w)
        if not fits():
            release(cluster, quota, w)
            victims.append(w)
    if len(victims) > 1:
        cost = sum(w.lost_gpu_s(now) for w in victims)
        cluster.journal.rollback(mark)
        single = _cheapest_single(queue, flavor, candidates, cluster, quota, fits, now, cost)
        if single is not None:
            victims = [single]
        else:
            for w in victims:
                release(cluster, quota, w)
    victims.sort(key=lambda w: victim_order(w, now))
    return victims


def _cheapest_single(
    queue: Queue,
    flavor: str,
    candidates: Sequence[AdmittedWorkload],
    cluster: ClusterState,
    quota: QuotaState,
    fits: Callable[[], bool],
    now: float,
    below: float,
) -> AdmittedWorkload | None:
    """Return the cheapest candidate whose removal alone makes ``fits()`` hold and that loses
    less than ``below`` GPU-seconds, leaving it removed on the scratch; or None, leaving the
    scratch unchanged."""
    for trials, w in enumerate(candidates):
        if trials >= _MAX_SINGLE_TRIALS or w.lost_gpu_s(now) >= below:
            return None
        if w.queue != queue.name and not quota.is_borrowing(w.queue, flavor):
            continue
        mark = cluster.journal.mark()
        release(cluster, quota, w)
        if fits():
            return w
        cluster.journal.rollback(mark)
    return None
