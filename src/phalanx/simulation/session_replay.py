"""The session engine of full mode (``engine="session"``): fast, and an approximation.

It replays a trace without the control plane: after every event it runs one scheduling cycle
of a ``SchedulingSession`` (the production cycle, kept alive across decisions: quotas, gangs,
priorities, fair share and preemption are the scheduler's) and applies the decisions itself on
the ``sim`` backend — launch every pod of an admission, stop every pod of a victim (it goes back
to its queue, keeping its place) — with its own model of node failures (every pod on the node
killed, the node out of placement for the repair time) and restarts (immediate, from zero or
the last checkpoint). None of the controllers' lifecycle runs: no store, no failure policies or
backoff, no quarantine, no pending reasons. ``full.run_full`` (the default engine) drives the
production control plane instead; this engine stays because it replays the openb trace in
seconds, where the control plane, which rebuilds its snapshot and scheduler state on every
tick, takes minutes (docs/simulation.md).

Deterministic: virtual time only. The one wall-clock figure, scheduler decision latency per
cycle, is reported apart (``latency``) and never feeds a decision.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

from phalanx.backends.base import PodEventKind, PodLaunch
from phalanx.backends.sim import SimBackend, VirtualClock
from phalanx.scheduling import PendingWorkload, SchedulerConfig, Snapshot
from phalanx.scheduling.session import SchedulingSession
from phalanx.simulation.faults import Faults
from phalanx.simulation.full import ALL_NODES, FullResult, downsample
from phalanx.simulation.metrics import jain_index, summarize
from phalanx.simulation.trace import TraceJob
from phalanx.simulation.world import World, job_spec

_HOUR = 3600.0


def run_session_replay(
    world: World,
    jobs: Sequence[TraceJob],
    policy: str,
    seed: int,
    *,
    score_weights: Mapping[str, float] | None = None,
    progress: Callable[[int, int], None] | None = None,
    faults: Faults | None = None,
) -> FullResult:
    """Replay ``jobs`` in virtual time with the session engine (module docstring) and return
    the figures."""
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
        downsample(curve),
        jcts,
        tuple((bucket, len(v), sum(v) / len(v), max(v)) for bucket, v in sorted(latency.items())),
        lost_gpu_s["failure"] / _HOUR,
        lost_gpu_s["preemption"] / _HOUR,
        node_failures,
        failure_kills,
        engine="session",
    )
