"""Arrival-only mode: the methodology of Weng et al. (ATC '23) for the openb trace.

1. Inflate the job list to ``inflation`` x cluster GPU capacity: append copies of jobs drawn
   uniformly at random (``random.Random(seed)``) until the next copy would exceed it.
2. Take jobs in creation order, never delete any; each goes through the production scheduler
   (a ``SchedulingSession``) alone; one that fits nowhere is skipped (counted as failed).
3. After each job record the GPU allocation ratio (allocated GPU milli / capacity) against the
   arrived load (GPU milli requested so far / capacity); at the end, the fragmentation rate.

Deterministic for a given seed: the only randomness is the seeded resampling and the seeded
``random`` policy.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from phalanx.scheduling import PendingWorkload, SchedulerConfig, Snapshot
from phalanx.scheduling.plugins import (
    Shape,
    count_shapes,
    expected_fragmentation,
    typical_shapes,
)
from phalanx.scheduling.session import SchedulingSession, shapes_of
from phalanx.simulation.trace import TraceJob
from phalanx.simulation.world import World, job_spec

#: Score every feasible node, as the published simulator does.
ALL_NODES = 1 << 30


@dataclass(frozen=True, slots=True)
class ArrivalResult:
    """One arrival-only run. ``curve``: (arrived %, allocated %) at each whole arrived percent
    (the allocation after the last job whose arrival kept the load at or below it)."""

    policy: str
    seed: int
    placed: int
    failed: int
    curve: tuple[tuple[int, float], ...]
    final_arrived_pct: float
    final_allocated_pct: float
    #: Fragmentation at the end: GPU milli no typical pod could use, % of capacity and of idle.
    fragmentation_pct: float
    fragmentation_of_idle_pct: float
    extra: Mapping[str, float] = field(default_factory=dict)

    def allocation_at(self, pct: int) -> float:
        """Allocated % of capacity when the arrived load was ``pct`` % (the last point at or
        below it)."""
        best = 0.0
        for arrived, allocated in self.curve:
            if arrived <= pct:
                best = allocated
        return best


def inflate(
    jobs: Sequence[TraceJob], capacity_milli: int, factor: float, seed: int
) -> list[TraceJob]:
    """Return ``jobs`` followed by copies drawn uniformly at random until the next copy would
    push the requested GPU milli above ``factor`` x ``capacity_milli``."""
    rng = random.Random(seed)
    out = list(jobs)
    total = sum(j.gpu_milli for j in out)
    limit = factor * capacity_milli
    if not jobs:
        return out
    copy = 0
    while True:
        job = jobs[rng.randrange(len(jobs))]
        if total + job.gpu_milli > limit:
            return out
        total += job.gpu_milli
        copy += 1
        out.append(replace(job, name=f"{job.name}-copy{copy}"))


class _TraceShapesSession(SchedulingSession):
    """A session whose typical shapes are fixed from the start (the whole trace's, as the
    published simulator computes them before placing anything) instead of learnt from the
    arrivals. (A ``shapes=`` option on ``SchedulingSession`` would make this subclass go.)"""

    def __init__(self, snapshot: Snapshot, shapes: Sequence[Shape], *, seed: int) -> None:
        super().__init__(snapshot, seed=seed, shapes_from="pending")
        self._cycle.placer.set_shapes(list(shapes))

    def _update_shapes(self, pending: tuple[PendingWorkload, ...]) -> None:
        return


def trace_shapes(jobs: Sequence[TraceJob]) -> list[Shape]:
    """The trace's typical pod shapes as the published FGD simulator builds them, for every
    policy: by (GPU, CPU, allowed GPU models), CPU-only pods included, memory left out, the most
    popular first until 95 % of the pods are covered."""
    pods = ((ps.resources, ps.replicas, job.gpu_models) for job in jobs for ps in job.pod_sets)
    return typical_shapes(count_shapes(pods, memory=False, cpu_only=True))


def run_arrival(
    world: World,
    jobs: Sequence[TraceJob],
    policy: str,
    seed: int,
    *,
    inflation: float = 1.3,
    shuffle: bool = False,
    score_weights: Mapping[str, float] | None = None,
    progress: Callable[[int, int], None] | None = None,
    shapes_from: Literal["trace", "history"] = "trace",
) -> ArrivalResult:
    """Run the arrival-only methodology (module docstring) and return its figures.

    ``shuffle``: after inflation, put the jobs in a seeded random order instead of creation
    order. The published openb figures were produced this way (the artifact's run scripts pass
    ``--shuffle-pod=true``), although the paper's text and the data README say creation order.

    ``shapes_from``: the fragmentation scores' typical shapes: ``trace`` (the whole trace before
    inflation, known from the start, as the published simulator does; see ``trace_shapes``) or
    ``history`` (learnt from the jobs that arrived so far).
    """
    capacity = sum(len(n.gpus) * 1000 for n in world.nodes) or 1
    arrivals = inflate(jobs, capacity, inflation, seed)
    if shuffle:
        random.Random(seed).shuffle(arrivals)
    config = SchedulerConfig(
        policy=policy, max_candidates=ALL_NODES, score_weights=dict(score_weights or {})
    )
    snapshot = Snapshot(0.0, world.nodes, world.flavors, world.queues, (), config=config)
    session: SchedulingSession
    if shapes_from == "trace":
        session = _TraceShapesSession(snapshot, trace_shapes(jobs), seed=seed)
    else:
        session = SchedulingSession(snapshot, seed=seed, shapes_from="history")
    arrived = allocated = placed = failed = 0
    points: dict[int, float] = {0: 0.0}
    for seq, job in enumerate(arrivals):
        arrived += job.gpu_milli
        decisions = session.schedule((PendingWorkload(job_spec(job), seq),), float(seq))
        if decisions.admissions:
            placed += 1
            allocated += job.gpu_milli
        else:
            failed += 1
        arrived_pct = 100.0 * arrived / capacity
        points[int(arrived_pct)] = 100.0 * allocated / capacity
        if progress is not None:
            progress(seq + 1, len(arrivals))
    counts: Counter[tuple[int, int, int]] = Counter()
    for job in jobs:
        for ps in job.pod_sets:
            r = ps.resources
            if r.gpu_milli:
                counts[(r.gpu_milli, r.cpu_milli, r.memory_bytes)] += ps.replicas
    frag = cluster_fragmentation(session, shapes_of(counts))
    idle = capacity - allocated
    return ArrivalResult(
        policy,
        seed,
        placed,
        failed,
        tuple(sorted(points.items())),
        100.0 * arrived / capacity,
        100.0 * allocated / capacity,
        100.0 * frag / capacity,
        100.0 * frag / idle if idle else 0.0,
    )


def cluster_fragmentation(session: SchedulingSession, shapes: Sequence[Shape]) -> float:
    """GPU milli on all nodes that no typical pod shape could use, weighted by popularity."""
    total = 0.0
    for node in session.nodes():
        total += expected_fragmentation(node.gpu_free, node.free_cpu, node.free_mem, shapes)
    return total
