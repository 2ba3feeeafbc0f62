"""One scheduling cycle: ``schedule(snapshot) -> Decisions``.

The cycle follows a numbered pipeline:
  1. Build the scratch cluster and quota usage from the snapshot.
  2. Take the heads of the queues: eligible pending workloads, per queue by priority then FIFO.
  3. Repeatedly pick the best head across queues: priority, then lowest dominant-resource share
     (fair share), then FIFO.
  4. For each flavor the queue lists, in order: check quota (with borrowing), then try to place
     the whole gang on the scratch cluster (commit or revert).
  5. If it does not fit: simulate preemption; if victims suffice, preempt them and hold the
     capacity for the workload on the scratch cluster until they stop.
  6. Admit, or requeue with a reason that carries the numbers.
Pure: time comes from ``snapshot.now``.
"""

from __future__ import annotations

from collections import Counter, deque

from phalanx.model.objects import JobSpec, PodPlacement, Queue
from phalanx.model.resources import Resources, format_gpu
from phalanx.scheduling.cluster import ClusterState
from phalanx.scheduling.placement import Placer
from phalanx.scheduling.plugins import Shape, policy_weights
from phalanx.scheduling.preemption import (
    candidates_for,
    preemption_cost,
    release,
    restore,
    select_victims,
)
from phalanx.scheduling.quota import QuotaState
from phalanx.scheduling.snapshot import (
    Admission,
    AdmittedWorkload,
    Decisions,
    PendingReason,
    PendingWorkload,
    Preemption,
    ReasonCode,
    Snapshot,
)

_MAX_SHAPES = 16


def target_shapes(pending: tuple[PendingWorkload, ...]) -> list[Shape]:
    """The GPU pod shapes still to place, weighted by how many pods have them; used by the
    fragmentation score (a whole GPU if nothing GPU-shaped waits)."""
    counts: Counter[tuple[int, int, int]] = Counter()
    for w in pending:
        for ps in w.spec.pod_sets:
            r = ps.resources
            if r.gpu_milli:
                counts[(r.gpu_milli, r.cpu_milli, r.memory_bytes)] += ps.replicas
    if not counts:
        return [Shape(1000, 0, 0, 1.0)]
    top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:_MAX_SHAPES]
    total = sum(n for _, n in top)
    return [Shape(g, c, m, n / total) for (g, c, m), n in top]


class _Cycle:
    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        self.queues = {q.name: q for q in snapshot.queues}
        self.flavor_names = {f.name for f in snapshot.flavors}
        self.cluster = ClusterState(snapshot.nodes, snapshot.flavors)
        self.quota = QuotaState(snapshot.queues, self.cluster.journal)
        for reservation in snapshot.reservations:
            self.cluster.load(reservation.node, reservation.resources, reservation.devices)
        self.running = sorted(snapshot.admitted, key=lambda w: w.name)
        for w in self.running:
            for pod in w.pods:
                self.cluster.load(pod.placement.node, pod.resources, pod.placement.devices)
            self.quota.load(w.queue, w.flavor, w.total)
        config = snapshot.config
        self.placer = Placer(
            self.cluster,
            policy_weights(config.policy, config.score_weights, config.seed),
            target_shapes(snapshot.pending),
            config.max_candidates,
        )
        self.admissions: list[Admission] = []
        self.preemptions: list[Preemption] = []
        self.pending: list[PendingReason] = []
        self.victims: set[str] = set()

    # 2. queue heads
    def heads(self) -> dict[str, deque[PendingWorkload]]:
        per_queue: dict[str, list[PendingWorkload]] = {}
        for w in sorted(self.snapshot.pending, key=lambda w: (w.seq, w.spec.name)):
            spec = w.spec
            if spec.queue not in self.queues:
                self.pending.append(
                    PendingReason(
                        spec.name,
                        ReasonCode.QUEUE_NOT_FOUND,
                        f"queue {spec.queue!r} does not exist; create it or submit to one of: {', '.join(sorted(self.queues)) or '(no queues yet)'}",
                    )
                )
            elif w.not_before > self.snapshot.now:
                wait = w.not_before - self.snapshot.now
                self.pending.append(
                    PendingReason(
                        spec.name, ReasonCode.BACKOFF, f"restarting after backoff in {wait:.1f}s"
                    )
                )
            else:
                per_queue.setdefault(spec.queue, []).append(w)
        return {
            name: deque(sorted(items, key=lambda w: (-w.spec.priority, w.seq, w.spec.name)))
            for name, items in sorted(per_queue.items())
        }

    def run(self) -> Decisions:
        queues = self.heads()
        # 3. best head across queues
        while queues:
            best_name = min(
                queues,
                key=lambda name: (
                    -queues[name][0].spec.priority,
                    self.quota.dominant_share(name),
                    queues[name][0].seq,
                    name,
                ),
            )
            line = queues[best_name]
            workload = line.popleft()
            if not line:
                del queues[best_name]
            self.try_admit(workload.spec, self.queues[best_name])
        return Decisions(tuple(self.admissions), tuple(self.preemptions), tuple(self.pending))

    # 4.–6.
    def try_admit(self, job: JobSpec, queue: Queue) -> None:
        reasons: list[tuple[ReasonCode, str]] = []
        flavors = [fq.flavor for fq in queue.flavors]
        for flavor in flavors:
            if flavor not in self.flavor_names:
                reasons.append(
                    (
                        ReasonCode.UNSCHEDULABLE,
                        f"flavor {flavor} does not exist; create the ResourceFlavor",
                    )
                )
                continue
            check = self.quota.check(queue.name, flavor, job.total_request)
            if not check.ok:
                reasons.append((ReasonCode.QUOTA_EXCEEDED, check.message))
                continue
            result = self.placer.place_gang(job, flavor)
            if result.placements:
                placed_total = _placed_total(job, result.placements)
                self.quota.add(queue.name, flavor, placed_total)
                self.admissions.append(Admission(job.name, queue.name, flavor, result.placements))
                return
            reasons.append((ReasonCode.UNSCHEDULABLE, result.reason))
        for flavor in flavors:
            if flavor in self.flavor_names and self.try_preempt(job, queue, flavor):
                return
        code = reasons[0][0] if reasons else ReasonCode.UNSCHEDULABLE
        if len(reasons) == 1:
            message = reasons[0][1]
        else:
            message = "; ".join(
                f"flavor {f}: {m}" for f, (_, m) in zip(flavors, reasons, strict=False)
            )
        self.pending.append(PendingReason(job.name, code, message))

    def fits(self, job: JobSpec, queue: Queue, flavor: str) -> bool:
        if not self.quota.check(queue.name, flavor, job.total_request).ok:
            return False
        mark = self.cluster.journal.mark()
        ok = bool(self.placer.place_gang(job, flavor).placements)
        self.cluster.journal.rollback(mark)
        return ok

    def try_preempt(self, job: JobSpec, queue: Queue, flavor: str) -> bool:
        """Return True if ``job`` will fit once workloads stop (then it has a reason)."""
        mark = self.cluster.journal.mark()
        # Workloads already stopping free their capacity soon: count on them first.
        stopping = [
            w
            for w in self.running
            if w.flavor == flavor and (w.is_terminating or w.name in self.victims)
        ]
        for w in stopping:
            release(self.cluster, self.quota, w)
        if stopping and self.fits(job, queue, flavor):
            self._hold(job, queue, flavor, stopping)
            self.pending.append(
                PendingReason(
                    job.name,
                    ReasonCode.WAITING_FOR_CAPACITY,
                    f"fits on flavor {flavor} once stopping workloads release their capacity: {', '.join(w.name for w in stopping)}",
                )
            )
            return True
        candidates = [
            w
            for w in candidates_for(
                job, queue, flavor, self.running, self.queues, self.quota, self.snapshot.now
            )
            if w.name not in self.victims
        ]
        victims = (
            select_victims(
                job,
                queue,
                flavor,
                candidates,
                self.cluster,
                self.quota,
                lambda: self.fits(job, queue, flavor),
                self.snapshot.now,
            )
            if candidates
            else None
        )
        if victims is None:
            self.cluster.journal.rollback(mark)
            return False
        need = job.total_request
        for w in victims:
            self.victims.add(w.name)
            if w.queue == queue.name:
                why = f"priority {job.priority} > {w.priority} in queue {queue.name}"
            else:
                why = f"queue {queue.name} reclaims quota it lent to queue {w.queue} in cohort {queue.cohort}"
            self.preemptions.append(
                Preemption(
                    w.name,
                    job.name,
                    f"preempted by {job.name} ({why}); it needs {format_gpu(need.gpu_milli)} nvidia.com/gpu on flavor {flavor}; {preemption_cost(w, self.snapshot.now)}",
                )
            )
        self._hold(job, queue, flavor, [*stopping, *victims])
        self.pending.append(
            PendingReason(
                job.name,
                ReasonCode.PREEMPTING,
                f"preempting {', '.join(w.name for w in victims)} on flavor {flavor}; admitted once they stop",
            )
        )
        return True

    def _hold(
        self, job: JobSpec, queue: Queue, flavor: str, leaving: list[AdmittedWorkload]
    ) -> None:
        """Keep the capacity the job will take on the scratch, so later heads cannot use it.

        The workloads ``leaving`` still run until they stop, so they are put back too: what
        they hold is then counted twice, which only makes the rest of the cycle cautious.
        """
        result = self.placer.place_gang(job, flavor)
        self.quota.add(queue.name, flavor, _placed_total(job, result.placements))
        for w in leaving:
            restore(self.cluster, self.quota, w)


def _placed_total(job: JobSpec, placements: tuple[PodPlacement, ...]) -> Resources:
    sizes = {ps.name: ps.resources for ps in job.pod_sets}
    total = Resources()
    for p in placements:
        total = total + sizes[p.pod_set]
    return total


def schedule(snapshot: Snapshot) -> Decisions:
    """Return the decisions for one cycle over ``snapshot``: admissions with a node and devices
    for every pod, preemptions with reasons, and a reason for every workload left pending.

    Raises ValueError if ``snapshot.config`` names an unknown policy or score plugin.
    """
    return _Cycle(snapshot).run()
