"""One scheduling cycle: ``schedule(snapshot) -> Decisions``.

The cycle follows a numbered pipeline:
  1. Build the scratch cluster and quota usage from the snapshot.
  2. Take the heads of the queues: eligible pending workloads, per queue by priority then FIFO.
  3. Repeatedly pick the best head across queues: priority, then heads within their queue's
     nominal quota before those that would borrow, then lowest dominant-resource share (fair
     share), then FIFO.
  4. For each flavor the queue lists, in order: check that the job could ever fit the flavor
     (feasibility.py), check quota (with borrowing), then try to place the whole gang on the
     scratch cluster (commit or revert).
  5. If it does not fit: simulate preemption; if victims suffice, preempt them and hold the
     capacity for the workload on the scratch cluster until they stop.
  6. Admit, or requeue with a Reason that carries the numbers (phalanx.model.reasons).
Pure: time comes from ``snapshot.now``.
"""

from __future__ import annotations

from collections import Counter, deque

from phalanx.model.objects import JobSpec, PodPlacement, Queue
from phalanx.model.reasons import Fact, Reason, ReasonCode, per_flavor
from phalanx.model.resources import Resources
from phalanx.scheduling.cluster import ClusterState
from phalanx.scheduling.feasibility import Feasibility
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
        self.feasibility = Feasibility(snapshot.nodes, snapshot.flavors)
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
                facts: dict[str, Fact] = {"queue": spec.queue, "queues": tuple(sorted(self.queues))}
                self.pending.append(
                    PendingReason(spec.name, Reason(ReasonCode.QUEUE_NOT_FOUND, facts))
                )
            elif w.not_before > self.snapshot.now:
                wait = w.not_before - self.snapshot.now
                facts = {"wait_s": wait, "not_before": w.not_before}
                self.pending.append(PendingReason(spec.name, Reason(ReasonCode.BACKOFF, facts)))
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
            # One queue with heads left is the best without comparing (``min`` would still
            # work out its key).
            best_name = (
                next(iter(queues))
                if len(queues) == 1
                else min(
                    queues,
                    key=lambda name: (
                        -queues[name][0].spec.priority,
                        self.borrows(queues[name][0].spec, self.queues[name]),
                        self.quota.dominant_share(name),
                        queues[name][0].seq,
                        name,
                    ),
                )
            )
            line = queues[best_name]
            workload = line.popleft()
            if not line:
                del queues[best_name]
            self.try_admit(workload.spec, self.queues[best_name])
        return Decisions(tuple(self.admissions), tuple(self.preemptions), tuple(self.pending))

    def borrows(self, job: JobSpec, queue: Queue) -> bool:
        """Whether ``job`` would exceed its queue's nominal quota on every flavor it may use.
        Of heads of equal priority, those within their queue's own quota go first: else a
        borrower that arrived earlier is admitted again after each reclaim, ahead of the
        owner whose quota it borrows, and is reclaimed again (a livelock)."""
        total = job.total_request
        return not any(
            self.quota.has_flavor(queue.name, fq.flavor)
            and self.quota.within_nominal(queue.name, fq.flavor, total)
            for fq in queue.flavors
        )

    # 4.–6.
    def try_admit(self, job: JobSpec, queue: Queue) -> None:
        reasons: list[Reason] = []
        # Flavors where only a change of the cluster or the quota can help, not preemption.
        hopeless: set[str] = set()
        flavors = [fq.flavor for fq in queue.flavors]
        for flavor in flavors:
            reason = self._try_flavor(job, queue, flavor)
            if reason is None:
                return
            reasons.append(reason)
            if reason.code.needs_change:
                hopeless.add(flavor)
        for flavor in flavors:
            if flavor not in hopeless and self.try_preempt(job, queue, flavor):
                return
        self.pending.append(PendingReason(job.name, per_flavor(reasons)))

    def _try_flavor(self, job: JobSpec, queue: Queue, flavor: str) -> Reason | None:
        """Admit ``job`` on ``flavor`` if it fits now (None), else return why not."""
        if flavor not in self.flavor_names:
            return Reason(ReasonCode.FLAVOR_NOT_FOUND, {"flavor": flavor, "queue": queue.name})
        never = self.feasibility.never_fits(job, flavor)
        if never is not None:
            return never
        check = self.quota.check(queue.name, flavor, job.total_request)
        if check.reason is not None:
            return check.reason
        result = self.placer.place_gang(job, flavor)
        if not result.placements:
            assert result.reason is not None  # a gang that is not placed says why
            return result.reason
        self.quota.add(queue.name, flavor, _placed_total(job, result.placements))
        self.admissions.append(Admission(job.name, queue.name, flavor, result.placements))
        return None

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
            facts: dict[str, Fact] = {
                "flavor": flavor,
                "stopping": tuple(w.name for w in stopping),
            }
            self.pending.append(
                PendingReason(job.name, Reason(ReasonCode.WAITING_FOR_CAPACITY, facts))
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
        for w in victims:
            self.victims.add(w.name)
            self.preemptions.append(
                Preemption(w.name, job.name, self._preempted(job, queue, flavor, w))
            )
        self._hold(job, queue, flavor, [*stopping, *victims])
        facts = {"flavor": flavor, "victims": tuple(w.name for w in victims)}
        self.pending.append(PendingReason(job.name, Reason(ReasonCode.PREEMPTING, facts)))
        return True

    def _preempted(
        self, job: JobSpec, queue: Queue, flavor: str, victim: AdmittedWorkload
    ) -> Reason:
        """The ``Preempted`` reason of ``victim``: who preempts it and why, what that job
        needs, what the victim loses."""
        return Reason(
            ReasonCode.PREEMPTED,
            {
                "victim": victim.name,
                "victim_queue": victim.queue,
                "victim_priority": victim.priority,
                "preemptor": job.name,
                "preemptor_queue": queue.name,
                "preemptor_priority": job.priority,
                "cohort": queue.cohort,
                "flavor": flavor,
                "needed_gpu_milli": job.total_request.gpu_milli,
                **preemption_cost(victim, self.snapshot.now),
            },
        )

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
