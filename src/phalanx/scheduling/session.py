"""An incremental scheduling session: the cycle of ``schedule()`` kept alive across cycles.

``schedule(snapshot)`` builds its scratch cluster from the snapshot every time, which is right
for a control plane that re-reads the store, but too slow for a simulator that asks for one
decision per arriving pod on a thousand nodes. A ``SchedulingSession`` is created from a
Snapshot once, then told what changed — new pending workloads with each ``schedule`` call, and
workloads that finished or stopped with ``release`` — and answers with the same ``Decisions``
the one-shot cycle gives for the equivalent snapshot. It runs the very same cycle code
(ordering, quota, placement plugins, preemption), so there is still one placement
implementation.

Typical pod shapes (the fragmentation score's view of the workload) come from the pending
queue, as in ``schedule()``, or with ``shapes_from="history"`` from every workload the session
has seen: in a cluster where pods arrive one by one the pending queue holds a single pod, while
the history is the best estimate of what will arrive next.

Pure: no clock, I/O or randomness; time arrives as an argument.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterable
from dataclasses import replace
from typing import Literal

from phalanx.model.objects import JobSpec, PreemptionPolicy, Queue
from phalanx.scheduling.cluster import NodeState
from phalanx.scheduling.cycle import _Cycle, target_shapes
from phalanx.scheduling.placement import Placer
from phalanx.scheduling.plugins import Shape, policy_weights, typical_shapes
from phalanx.scheduling.preemption import release, restore
from phalanx.scheduling.snapshot import (
    AdmittedWorkload,
    Decisions,
    PendingWorkload,
    PlacedPod,
    Snapshot,
)

#: With history shapes: re-derive the shapes once the pods seen grew by this factor since the
#: last time (every re-derivation drops the memoised scores, so it is amortised geometrically;
#: the estimate settles as it grows, so later refreshes matter less).
_SHAPE_REFRESH_GROWTH = 1.05


class _SessionCycle(_Cycle):
    """The cycle, with a shortcut that gives the same answer: a workload whose queue may not
    preempt anything, while nothing is stopping, cannot be helped by preemption, so the scan
    over every running workload (thousands, in a long simulation) is skipped."""

    terminating: set[str]

    def try_preempt(self, job: JobSpec, queue: Queue, flavor: str) -> bool:
        may_preempt = queue.within_queue_preemption is PreemptionPolicy.LOWER_PRIORITY or (
            bool(queue.cohort) and queue.reclaim_within_cohort
        )
        if not may_preempt and not self.victims and not self.terminating:
            return False
        return super().try_preempt(job, queue, flavor)


class SchedulingSession:
    """A scheduling cycle that lives across decisions. See the module docstring."""

    def __init__(
        self,
        snapshot: Snapshot,
        *,
        seed: int = 0,
        shapes_from: Literal["pending", "history"] = "pending",
    ) -> None:
        """Start from ``snapshot`` (its pending workloads are not scheduled; pass them to
        ``schedule``). ``seed`` feeds seeded score plugins (``random``).

        Raises ValueError if the snapshot's config names an unknown policy or plugin.
        """
        cycle = _SessionCycle(snapshot)
        config = snapshot.config
        cycle.placer = Placer(
            cycle.cluster,
            policy_weights(config.policy, config.score_weights, seed),
            target_shapes(snapshot.pending),
            config.max_candidates,
        )
        cycle.terminating = {w.name for w in snapshot.admitted if w.is_terminating}
        cycle.cluster.journal.commit()
        self._cycle = cycle
        self._base = snapshot
        self._shapes_from = shapes_from
        self._running = {w.name: w for w in snapshot.admitted}
        self._seen: set[str] = set()
        self._shape_counts: Counter[tuple[int, int, int]] = Counter()
        self._pods_seen = 0
        self._pods_at_refresh = 0

    @property
    def running(self) -> dict[str, AdmittedWorkload]:
        """Admitted workloads still holding capacity, by name (do not modify)."""
        return self._running

    def nodes(self) -> list[NodeState]:
        """The session's scratch nodes, with their free capacity (read only)."""
        return list(self._cycle.cluster.nodes.values())

    @property
    def shapes(self) -> tuple[Shape, ...]:
        """The typical pod shapes the fragmentation score currently uses."""
        return tuple(self._cycle.placer.shapes)

    def schedule(self, pending: Iterable[PendingWorkload], now: float) -> Decisions:
        """Run one cycle over ``pending`` at time ``now`` and return its decisions.

        Admitted workloads start holding their capacity and quota in the session (until
        ``release``); preemption victims keep theirs until released, and are not chosen again.
        """
        # 1. The snapshot of this cycle: the session's cluster, the given pending workloads.
        cycle = self._cycle
        pending = tuple(pending)
        cycle.snapshot = replace(self._base, now=now, pending=pending, admitted=())
        cycle.admissions, cycle.preemptions, cycle.pending = [], [], []
        self._update_shapes(pending)
        journal = cycle.cluster.journal
        mark = journal.mark()
        # 2. The cycle itself, exactly as schedule() runs it.
        decisions = cycle.run()
        # 3. Keep what was admitted; drop holds for preemptors (they come back as pending).
        journal.rollback(mark)
        specs = {w.spec.name: w.spec for w in pending}
        for admission in decisions.admissions:
            spec = specs[admission.job]
            sizes = {ps.name: ps.resources for ps in spec.pod_sets}
            workload = AdmittedWorkload(
                admission.job,
                admission.queue,
                admission.flavor,
                spec.priority,
                tuple(PlacedPod(p, sizes[p.pod_set]) for p in admission.placements),
                now,
            )
            restore(cycle.cluster, cycle.quota, workload)
            self._running[workload.name] = workload
            bisect.insort(cycle.running, workload, key=_by_name)
        journal.commit()
        return decisions

    def release(self, name: str) -> AdmittedWorkload | None:
        """Give back what the admitted workload ``name`` holds (it finished, or stopped after
        preemption); return it, or None if the session does not hold it."""
        workload = self._running.pop(name, None)
        if workload is None:
            return None
        cycle = self._cycle
        release(cycle.cluster, cycle.quota, workload)
        cycle.cluster.journal.commit()
        cycle.running = [w for w in cycle.running if w.name != name]
        cycle.victims.discard(name)
        cycle.terminating.discard(name)
        return workload

    def set_last_checkpoint(self, name: str, at: float | None) -> None:
        """Record when the admitted workload ``name`` last checkpointed (victim choice is
        checkpoint-aware, as with ``AdmittedWorkload.last_checkpoint_at`` in a snapshot);
        nothing happens if the session does not hold it."""
        workload = self._running.get(name)
        if workload is None or workload.last_checkpoint_at == at:
            return
        updated = replace(workload, last_checkpoint_at=at)
        self._running[name] = updated
        running = self._cycle.running
        i = bisect.bisect_left(running, name, key=_by_name)
        if i < len(running) and running[i].name == name:
            running[i] = updated

    def _update_shapes(self, pending: tuple[PendingWorkload, ...]) -> None:
        placer = self._cycle.placer
        if self._shapes_from == "pending":
            shapes = target_shapes(pending)
            if shapes != list(placer.shapes):
                placer.set_shapes(shapes)
            return
        for w in pending:
            if w.spec.name in self._seen:
                continue
            self._seen.add(w.spec.name)
            for ps in w.spec.pod_sets:
                self._pods_seen += ps.replicas
                r = ps.resources
                if r.gpu_milli:
                    self._shape_counts[(r.gpu_milli, r.cpu_milli, r.memory_bytes)] += ps.replicas
        if self._pods_seen >= self._pods_at_refresh * _SHAPE_REFRESH_GROWTH + 1:
            self._pods_at_refresh = self._pods_seen
            placer.set_shapes(shapes_of(self._shape_counts))


def shapes_of(counts: Counter[tuple[int, int, int]], coverage: float = 0.95) -> list[Shape]:
    """The most common (gpu milli, cpu milli, memory bytes) pod shapes, enough of them to
    cover ``coverage`` of all pods (``plugins.typical_shapes``, for shapes any GPU model
    may run)."""
    return typical_shapes({(g, c, m, frozenset()): n for (g, c, m), n in counts.items()}, coverage)


def _by_name(workload: AdmittedWorkload) -> str:
    return workload.name
