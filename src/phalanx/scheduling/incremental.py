"""``schedule()`` with its scratch state kept from one call to the next.

``schedule(snapshot)`` builds the scratch cluster (every node's free capacity, the flavor
indexes), the quota usage and the feasibility memo from the snapshot, then loads every
admitted pod onto it. On a cluster of a thousand nodes that costs more than the cycle itself,
and a control loop pays it on every tick although from one tick to the next only a few
workloads start or stop. An ``IncrementalScheduler`` keeps that state: each ``schedule``
call compares the snapshot with the previous one and applies only the difference — workloads
that stopped are released, new ones loaded, changed reservations swapped — then runs the very
same cycle (``_Cycle.run``: ordering, quota, placement plugins, preemption) and rolls the
cycle's own trial changes back, so that the scratch again mirrors the snapshot. Decisions are
not remembered: what the caller made of them arrives with the next snapshot.

The state is rebuilt from scratch whenever anything it was built from changes: the nodes
(capacity, labels, readiness, quarantine), the flavors, the queues or the scheduler's settings.

Inadmissible workloads are parked, as Kueue parks them: a workload that stayed pending in the
last cycle for want of capacity or quota (any reason but a backoff, a preemption under way or
capacity being freed for it) is not tried again, and keeps its reason, until something that
could admit it happens — a workload stopped or changed, a reservation shrank, or the basis
above changed. New workloads alone cannot help a parked one, except as preemption victims:
while workloads were admitted since the last cycle, parked workloads of queues that may
preempt are tried again. Parked reasons were decided with the cycle's own admissions and
holds in place, so nothing is parked after a cycle that held capacity for a preemptor, or
while one of its admissions is not (or no longer) running. With ``full=True`` every pending
workload is tried (a control loop does so periodically, which also refreshes the numbers in
the parked reasons). A submission then costs a cycle over the new workloads, not over every
one that waits.

The answer is the one ``schedule()`` gives for the snapshot, up to ties between equally good
nodes, which each cycle breaks by the order its indexes hold the nodes in (an order that
depends on the history of the scratch, here longer than one cycle).

Pure: no clock, I/O or randomness.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

from phalanx.model.objects import PreemptionPolicy, Queue
from phalanx.model.reasons import ReasonCode
from phalanx.scheduling.cluster import ClusterState
from phalanx.scheduling.cycle import _Cycle, target_shapes
from phalanx.scheduling.quota import QuotaState
from phalanx.scheduling.snapshot import (
    AdmittedWorkload,
    Decisions,
    PendingReason,
    PendingWorkload,
    Reservation,
    Snapshot,
)

__all__ = ["IncrementalScheduler", "is_time_independent"]


class IncrementalScheduler:
    """A scheduler for a loop that calls it with one snapshot after another; see the module
    docstring."""

    def __init__(self) -> None:
        self._cycle: _Cycle | None = None
        self._basis: tuple[object, ...] = ()
        self._admitted: dict[str, AdmittedWorkload] = {}
        self._reserved: Counter[Reservation] = Counter()
        #: The reservations of the last snapshot, as it listed them (``_reserved`` counts them).
        self._reservations: tuple[Reservation, ...] = ()
        #: Workloads left pending by the last cycle that may be parked, with their reasons.
        self._parked: dict[str, tuple[PendingWorkload, PendingReason]] = {}
        #: The last cycle's admissions, and whether it held capacity for nobody (no
        #: preemption, nobody waiting for capacity being freed): see ``schedule``.
        self._expected: tuple[str, ...] = ()
        self._settled = False
        #: Times the state was built from scratch (the first call, and after each change of
        #: nodes, flavors, queues or settings), and calls that applied a difference instead.
        self.rebuilds = 0
        self.updates = 0
        #: Pending workloads the last call skipped because they were parked.
        self.parked = 0

    def schedule(self, snapshot: Snapshot, *, full: bool = False) -> Decisions:
        """Return the decisions for one cycle over ``snapshot`` (see ``schedule()``); with
        ``full``, try every pending workload, parked or not.

        Raises ValueError if ``snapshot.config`` names an unknown policy or score plugin.
        """
        basis = (snapshot.nodes, snapshot.flavors, snapshot.queues, snapshot.config)
        cycle = self._cycle
        parked: dict[str, tuple[PendingWorkload, PendingReason]] = {}
        if cycle is None or basis != self._basis:
            cycle = self._rebuild(snapshot)
            self._basis = basis
        else:
            change = self._update(cycle, snapshot)
            # Parked reasons were decided on the scratch with the last cycle's admissions
            # and holds on it: they hold only if those admissions now run (a job admitted
            # and already finished freed what the parked ones were refused for).
            settled = self._settled and all(name in self._admitted for name in self._expected)
            if not full and settled and change != "freed":
                parked = self._parked
                if change == "added":  # new workloads may be victims of parked preemptors
                    parked = {
                        name: item
                        for name, item in parked.items()
                        if not _may_preempt(cycle.queues.get(item[0].spec.queue))
                    }
        tried: list[PendingWorkload] = []
        kept: list[PendingReason] = []
        still_parked: dict[str, tuple[PendingWorkload, PendingReason]] = {}
        for workload in snapshot.pending:
            item = parked.get(workload.spec.name)
            if item is not None and item[0] == workload:
                kept.append(item[1])
                still_parked[workload.spec.name] = item
            else:
                tried.append(workload)
        self.parked = len(kept)
        if kept:
            cycle.snapshot = replace(snapshot, pending=tuple(tried))
        journal = cycle.cluster.journal
        mark = journal.mark()
        try:
            decisions = cycle.run()
        finally:
            journal.rollback(mark)
            journal.commit()
        waiting = {w.spec.name: w for w in tried}
        self._expected = tuple(a.job for a in decisions.admissions)
        self._settled = not decisions.preemptions and not any(
            r.code in _NOT_PARKED for r in decisions.pending
        )
        self._parked = still_parked
        self._parked.update(
            (reason.job, (waiting[reason.job], reason))
            for reason in decisions.pending
            if reason.code not in _NOT_PARKED and reason.job in waiting
        )
        if not kept:
            return decisions
        return replace(decisions, pending=(*kept, *decisions.pending))

    def _rebuild(self, snapshot: Snapshot) -> _Cycle:
        self._cycle = None  # a failure below leaves no half-built state to reuse
        cycle = _Cycle(snapshot)
        cycle.cluster.journal.commit()
        self._admitted = {w.name: w for w in snapshot.admitted}
        self._reserved = Counter(snapshot.reservations)
        self._reservations = snapshot.reservations
        self._cycle = cycle
        self.rebuilds += 1
        return cycle

    def _update(self, cycle: _Cycle, snapshot: Snapshot) -> str:
        """Bring the scratch to ``snapshot``; return what changed: "freed" (a workload stopped
        or changed, or a reservation shrank), "added" (workloads were admitted, reservations
        grew, nothing was freed) or "" (neither)."""
        cluster, quota = cycle.cluster, cycle.quota
        freed = added = False
        # 1. workloads: release what stopped or changed, load what is new or changed
        admitted = {w.name: w for w in snapshot.admitted}
        old = self._admitted
        for name, workload in old.items():
            now = admitted.get(name)
            if now is not workload and now != workload:
                _hold(cluster, quota, workload, -1)
                freed = True
        for name, workload in admitted.items():
            before = old.get(name)
            if before is not workload and before != workload:
                _hold(cluster, quota, workload, 1)
                added = True
        self._admitted = admitted
        # The same workloads (equal, if not the very objects): the same sorted list.
        is_same_running = not (freed or added)
        # 2. reservations (capacity held by what the scheduler does not place); counted
        # only when they are not the very ones of the last snapshot (most often none)
        reserved = (
            self._reserved
            if snapshot.reservations == self._reservations
            else Counter(snapshot.reservations)
        )
        self._reservations = snapshot.reservations
        if reserved is not self._reserved and reserved != self._reserved:
            for item, count in (self._reserved - reserved).items():
                for _ in range(count):
                    _reserve(cluster, item, -1)
                freed = True
            for item, count in (reserved - self._reserved).items():
                for _ in range(count):
                    _reserve(cluster, item, 1)
                added = True
            self._reserved = reserved
        cluster.journal.commit()
        # 3. the rest of the cycle's inputs, as _Cycle.__init__ sets them
        cycle.snapshot = snapshot
        if not is_same_running:
            # By name, as _Cycle sorts them; names are the keys of ``admitted`` when they
            # are distinct, and sorting the keys alone is quicker.
            if len(admitted) == len(snapshot.admitted):
                cycle.running = [admitted[name] for name in sorted(admitted)]
            else:
                cycle.running = sorted(snapshot.admitted, key=lambda w: w.name)
        cycle.admissions, cycle.preemptions, cycle.pending = [], [], []
        cycle.victims = set()
        shapes = target_shapes(snapshot.pending)
        if shapes != list(cycle.placer.shapes):
            cycle.placer.set_shapes(shapes)
        self.updates += 1
        return "freed" if freed else "added" if added else ""


#: Reasons of workloads that are tried again at the next cycle whatever happens: a backoff
#: ends with time, a preemption or capacity being freed ends with the victims' stop.
_NOT_PARKED = frozenset(
    {ReasonCode.BACKOFF, ReasonCode.PREEMPTING, ReasonCode.WAITING_FOR_CAPACITY}
)


def is_time_independent(snapshot: Snapshot, decisions: Decisions) -> bool:
    """Whether a cycle over ``snapshot`` at a later time would decide what ``decisions``
    (its cycle's) say. Time enters a cycle only through backoffs (a ``Backoff`` reason's
    wait; when a backoff ends) and through preemption (victims are ordered by the work they
    would lose, which grows with time): so it holds when the cycle preempted nothing, left
    nothing in backoff or waiting on a preemption or on capacity being freed, and no pending
    workload may preempt an admitted one (none is admitted, or no pending workload's queue
    may preempt). A control loop then need not run the cycle again while nothing else
    changed."""
    if decisions.preemptions or any(r.reason.code in _NOT_PARKED for r in decisions.pending):
        return False
    if not snapshot.admitted:
        return True
    queues = {q.name: q for q in snapshot.queues}
    return not any(_may_preempt(queues.get(w.spec.queue)) for w in snapshot.pending)


def _may_preempt(queue: Queue | None) -> bool:
    """Whether workloads of ``queue`` may preempt others (within the queue, or reclaiming
    lent quota in the cohort)."""
    return queue is not None and (
        queue.within_queue_preemption is PreemptionPolicy.LOWER_PRIORITY
        or (bool(queue.cohort) and queue.reclaim_within_cohort)
    )


def _hold(cluster: ClusterState, quota: QuotaState, workload: AdmittedWorkload, sign: int) -> None:
    """Load (``sign`` 1) or unload (-1) an admitted workload's pods and quota, as ``_Cycle``
    loads them (devices a node does not have are ignored)."""
    for pod in workload.pods:
        _reserve(
            cluster, Reservation(pod.placement.node, pod.resources, pod.placement.devices), sign
        )
    if sign > 0:
        quota.add(workload.queue, workload.flavor, workload.total)
    else:
        quota.remove(workload.queue, workload.flavor, workload.total)


def _reserve(cluster: ClusterState, item: Reservation, sign: int) -> None:
    """Take (``sign`` 1) or give back (-1) a reservation's capacity, as ``ClusterState.load``
    takes it (devices the node does not have are ignored)."""
    node = cluster.nodes.get(item.node)
    if node is None:
        return
    devices = tuple(d for d in item.devices if 0 <= d.index < node.gpu_count)
    if sign > 0:
        cluster.assign(node, item.resources, devices)
    else:
        cluster.release(node, item.resources, devices)
