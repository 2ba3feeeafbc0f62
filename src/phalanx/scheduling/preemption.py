"""Preemption, simulated on the scratch cluster before anything is stopped.

Candidates are lower-priority workloads of the same queue and, to reclaim lent quota, workloads
of other queues in the cohort that are borrowing. They are taken cheapest first (lowest
priority, then most recently admitted) until the preemptor fits; then each chosen victim that
turns out not to be needed is put back, so the set is minimal. Pure.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from phalanx.model.objects import JobSpec, PreemptionPolicy, Queue
from phalanx.scheduling.cluster import ClusterState
from phalanx.scheduling.quota import QuotaState
from phalanx.scheduling.snapshot import AdmittedWorkload


def victim_order(workload: AdmittedWorkload) -> tuple[int, float, str]:
    """Sort key: cheapest victim first (lowest priority, then most recently admitted)."""
    return (workload.priority, -workload.admitted_at, workload.name)


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
    out.sort(key=victim_order)
    return out


def select_victims(
    job: JobSpec,
    queue: Queue,
    flavor: str,
    candidates: Sequence[AdmittedWorkload],
    cluster: ClusterState,
    quota: QuotaState,
    fits: Callable[[], bool],
) -> list[AdmittedWorkload] | None:
    """Return a minimal set of victims after whose removal ``fits()`` holds, leaving them
    removed on the scratch; or None (and the scratch unchanged) if no set suffices."""
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
    victims.sort(key=victim_order)
    return victims
