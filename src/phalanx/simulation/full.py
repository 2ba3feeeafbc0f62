"""Full mode: arrivals and completions in virtual time, through the production scheduler.

Jobs arrive at their submit time and wait in their queue; every time something happens
(arrivals, pods ending) the driver runs one scheduling cycle of a ``SchedulingSession`` over
everything pending — quotas, gangs, priorities, fair share and preemption are the scheduler's —
and applies the decisions to the ``sim`` backend the way the controllers apply them to a real
one: launch every pod of an admission on its node and devices, stop every pod of a preemption
victim (it goes back to the queue, keeping its place, and restarts from zero when admitted
again). A job completes when all its pods have run for its runtime.

With ``faults`` (``faults.py``) nodes also fail at given times, killing every pod on them and
leaving placement for a repair time, and killed jobs restart from zero or from their last
checkpoint. Work lost to kills (GPUs x progress since the last checkpoint) is counted apart for
failures and preemptions, with or without ``faults`` (without: every kill restarts from zero).

Deterministic: virtual time only. The one wall-clock figure, scheduler decision latency per
cycle, is reported apart (``latency``) and never feeds a decision.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from phalanx.backends.base import PodEventKind, PodLaunch
from phalanx.backends.sim import SimBackend, VirtualClock
from phalanx.scheduling import PendingWorkload, SchedulerConfig, Snapshot
from phalanx.scheduling.session import SchedulingSession
from phalanx.simulation.faults import Faults
from phalanx.simulation.metrics import Summary, jain_index, summarize
from phalanx.simulation.trace import TraceJob
from phalanx.simulation.world import World, job_spec

#: Score every feasible node (the simulator is for quality, not for the production budget).
ALL_NODES = 1 << 30
_MAX_CURVE_POINTS = 400
_HOUR = 3600.0


@dataclass(frozen=True, slots=True)
class FullResult:
    """One full-mode run. Times in virtual seconds; ``latency`` in wall-clock milliseconds."""

    policy: str
    seed: int
    jobs: int
    completed: int
    unfinished: int
    jct_s: Summary
    queue_delay_s: Summary
    makespan_s: float
    gpu_allocation_pct: float
    queue_share: Mapping[str, float]
    jain_fairness: float
    preemptions: int
    #: (virtual time, allocated GPU % of capacity), sampled.
    allocation_over_time: tuple[tuple[float, float], ...]
    jcts_s: tuple[float, ...]
    #: (pending jobs at most, cycles, mean ms, max ms) per power-of-two bucket.
    latency: tuple[tuple[int, int, float, float], ...] = field(default=())
    #: GPU-hours of work lost by jobs killed by node failures / by preemption.
    lost_failure_gpu_h: float = 0.0
    lost_preemption_gpu_h: float = 0.0
    #: Node failures that happened while work was left, and the jobs they killed.
    node_failures: int = 0
    failure_kills: int = 0

    @property
    def lost_gpu_h(self) -> float:
        """GPU-hours lost to failures and preemptions together."""
        return self.lost_failure_gpu_h + self.lost_preemption_gpu_h


def run_full(
    world: World,
    jobs: Sequence[TraceJob],
    policy: str,
    seed: int,
    *,
    score_weights: Mapping[str, float] | None = None,
    progress: Callable[[int, int], None] | None = None,
    faults: Faults | None = None,
) -> FullResult:
    """Replay ``jobs`` in virtual time (module docstring) and return the figures."""
    faults = faults or Faults()
    failures = sorted(faults.failures)
    ordered = sorted(jobs, key=lambda j: j.submit_s)
    by_name = {j.name: j for j in ordered}
    start = ordered[0].submit_s if ordered else 0.0
    clock = VirtualClock(start)
    backend = SimBackend(world.nodes, clock)
    config = SchedulerConfig(
        policy=policy, max_candidates=ALL_NODES, score_weights=dict(score_weights or {})
    )
    session = SchedulingSession(
        Snapshot(start, world.nodes, world.flavors, world.queues, (), config=config),
        seed=seed,
        shapes_from="history",
    )
    # Fault state: when each running job's attempt started and the progress it resumed from
    # (also the progress a pending job will resume from), jobs being stopped, nodes down.
    started_at: dict[str, float] = {}
    resumed: dict[str, float] = {}
    stopping: set[str] = set()
    down_until: dict[str, float] = {}
    next_failure = 0
    lost_gpu_s = {"failure": 0.0, "preemption": 0.0}
    node_failures = failure_kills = 0
    capacity = sum(len(n.gpus) * 1000 for n in world.nodes) or 1
    pending: dict[str, PendingWorkload] = {}
    pod_job: dict[str, str] = {}
    live_pods: dict[str, set[str]] = {}
    attempts: dict[str, int] = {}
    first_start: dict[str, float] = {}
    done: dict[str, float] = {}
    queue_gpu_s: dict[str, float] = {}
    allocated = 0
    alloc_integral = 0.0
    last_t = start
    curve: list[tuple[float, float]] = [(start, 0.0)]
    latency: dict[int, list[float]] = {}
    preemptions = 0
    next_arrival = 0
    running_gpu: dict[str, tuple[str, int]] = {}
    seq_of: dict[str, int] = {}

    def kill(name: str, t: float, cause: str) -> None:
        """Stop every pod of running job ``name``; count the work it loses."""
        done_s = resumed.get(name, 0.0) + (t - started_at[name])
        saved = faults.saved(done_s)
        lost_gpu_s[cause] += by_name[name].gpu_milli / 1000 * (done_s - saved)
        resumed[name] = saved
        stopping.add(name)
        for pod_id in sorted(live_pods.get(name, ())):
            backend.stop(pod_id, 0.0)

    def rebuild_session() -> SchedulingSession:
        """A session over the nodes now up, holding what the old one held (stopping jobs as
        terminating, so they are not chosen as victims again)."""
        nodes = tuple(
            replace(n, is_ready=False) if n.name in down_until else n for n in world.nodes
        )
        admitted = tuple(
            replace(w, is_terminating=True) if w.name in stopping else w
            for w in session.running.values()
        )
        return SchedulingSession(
            Snapshot(t, nodes, world.flavors, world.queues, (), admitted, config=config),
            seed=seed,
            shapes_from="history",
        )

    def account(t: float) -> None:
        nonlocal alloc_integral, last_t
        span = t - last_t
        if span > 0:
            alloc_integral += allocated * span
            for queue, gpu in running_gpu.values():
                queue_gpu_s[queue] = queue_gpu_s.get(queue, 0.0) + gpu * span / 1000
        last_t = t

    while True:
        # 1. The next moment something happens: an arrival or a pod ending.
        candidates = []
        if next_arrival < len(ordered):
            candidates.append(ordered[next_arrival].submit_s)
        ending = backend.next_event_at()
        if ending is not None:
            candidates.append(ending)
        if len(done) < len(ordered):  # failures and repairs matter while work is left
            if next_failure < len(failures):
                candidates.append(failures[next_failure][0])
            if down_until:
                candidates.append(min(down_until.values()))
        if not candidates:
            break
        t = min(candidates)
        account(t)
        clock.advance_to(t)
        # 2. Arrivals join their queue.
        while next_arrival < len(ordered) and ordered[next_arrival].submit_s <= t:
            job = ordered[next_arrival]
            pending[job.name] = PendingWorkload(job_spec(job), next_arrival)
            seq_of[job.name] = next_arrival
            backend.set_runtime(job.name, job.runtime_s)
            next_arrival += 1
        # 3. Pods that ended: a job whose pods all ended completed, or stopped (preempted).
        for event in backend.poll_events():
            if event.kind is PodEventKind.RUNNING:
                continue
            name = pod_job.pop(event.pod_id)
            pods = live_pods[name]
            pods.discard(event.pod_id)
            if pods:
                continue
            del live_pods[name]
            stopping.discard(name)
            started_at.pop(name, None)
            workload = session.release(name)
            if workload is not None:
                allocated -= workload.total.gpu_milli
                running_gpu.pop(name, None)
            if event.kind is PodEventKind.SUCCEEDED:
                done[name] = event.at
            else:
                # Back to its queue, keeping its place (its arrival index).
                pending[name] = PendingWorkload(job_spec(by_name[name]), seq_of[name])
        # 3b. Node repairs and failures: a failed node's jobs are killed, the node leaves
        # placement until repaired (a new session over the nodes that are up).
        nodes_changed = False
        for node, until in list(down_until.items()):
            if until <= t:
                del down_until[node]
                nodes_changed = True
        while next_failure < len(failures) and failures[next_failure][0] <= t:
            _, node = failures[next_failure]
            next_failure += 1
            if node in down_until or len(done) == len(ordered):
                continue
            node_failures += 1
            down_until[node] = t + faults.repair_s
            nodes_changed = True
            for name, workload in sorted(session.running.items()):
                if name not in stopping and any(p.placement.node == node for p in workload.pods):
                    failure_kills += 1
                    kill(name, t, "failure")
        if nodes_changed:
            session = rebuild_session()
        if faults.checkpoint_aware:
            for name in list(session.running):
                if name in started_at and name not in stopping:
                    session.set_last_checkpoint(
                        name, faults.last_checkpoint_at(started_at[name], resumed.get(name, 0.0), t)
                    )
        # 4. One scheduling cycle over everything pending.
        started = time.perf_counter()
        decisions = session.schedule(tuple(pending.values()), t)
        elapsed_ms = 1000 * (time.perf_counter() - started)
        bucket = 1 << max(0, len(pending) - 1).bit_length()
        latency.setdefault(bucket, []).append(elapsed_ms)
        # 5. Apply: launch admitted pods, stop victims.
        for admission in decisions.admissions:
            name = admission.job
            del pending[name]
            attempts[name] = attempts.get(name, 0) + 1
            first_start.setdefault(name, t)
            started_at[name] = t
            job = by_name[name]
            backend.set_runtime(name, job.runtime_s - resumed.get(name, 0.0))
            sizes = {ps.name: ps.resources for ps in job.pod_sets}
            ids = set()
            for placement in admission.placements:
                pod_id = f"{name}/{placement.pod_set}-{placement.index}/{attempts[name]}"
                ids.add(pod_id)
                pod_job[pod_id] = name
                backend.launch(
                    PodLaunch(
                        pod_id,
                        name,
                        "default",
                        placement.pod_set,
                        placement.index,
                        attempts[name],
                        placement.node,
                        placement.devices,
                        sizes[placement.pod_set],
                        (),
                    )
                )
            live_pods[name] = ids
            allocated += job.gpu_milli
            running_gpu[name] = (job.queue, job.gpu_milli)
        for preemption in decisions.preemptions:
            preemptions += 1
            if preemption.victim in started_at and preemption.victim not in stopping:
                kill(preemption.victim, t, "preemption")
        if not curve or curve[-1][1] != 100.0 * allocated / capacity:
            curve.append((t, 100.0 * allocated / capacity))
        if progress is not None:
            progress(len(done), len(ordered))

    makespan = (max(done.values()) - start) if done else 0.0
    jcts = tuple(done[n] - by_name[n].submit_s for n in sorted(done))
    delays = tuple(first_start[n] - by_name[n].submit_s for n in sorted(first_start))
    total_gpu_s = sum(queue_gpu_s.values()) or 1.0
    share = {q: v / total_gpu_s for q, v in sorted(queue_gpu_s.items())}
    return FullResult(
        policy,
        seed,
        len(ordered),
        len(done),
        len(ordered) - len(done),
        summarize(jcts),
        summarize(delays),
        makespan,
        100.0 * alloc_integral / (capacity * (last_t - start)) if last_t > start else 0.0,
        share,
        jain_index(list(share.values())),
        preemptions,
        _downsample(curve),
        jcts,
        tuple((bucket, len(v), sum(v) / len(v), max(v)) for bucket, v in sorted(latency.items())),
        lost_gpu_s["failure"] / _HOUR,
        lost_gpu_s["preemption"] / _HOUR,
        node_failures,
        failure_kills,
    )


def _downsample(points: list[tuple[float, float]]) -> tuple[tuple[float, float], ...]:
    if len(points) <= _MAX_CURVE_POINTS:
        return tuple(points)
    step = len(points) / _MAX_CURVE_POINTS
    return (*(points[int(i * step)] for i in range(_MAX_CURVE_POINTS)), points[-1])
