"""Full mode: a trace replayed through the production control plane in virtual time.

Jobs arrive at their submit time; the control plane (``driver.py``: store, reconcilers,
lifecycle, failure policies, quarantine, scheduler) admits, starts, preempts, restarts and
completes them on the ``sim`` backend, where a job's pods run for its runtime. Nothing here
runs a lifecycle: the figures are read back from what the controllers recorded in the store —
jobs' submit, first start and finish times, their pods' placements and times, their events
(``Preempted``, ``Restarting`` with its cause) — and from the driver's count of node failures
and scheduler cycles.

With ``faults`` (``faults.py``) nodes fail at given times: the sim backend reports their pods
lost (node-side), the node is not ready until repaired, and the controllers' failure policies
restart the jobs (after their backoff), with node-side failures as evidence for quarantine.
Workloads checkpoint every ``checkpoint_s`` seconds of progress and resume from the last
checkpoint (``restart="checkpoint"``), and report it to the control plane
(``checkpoint_aware``) so preemption picks the victims that lose the least work. Work lost to
kills (GPUs x progress since the last checkpoint) is counted apart for failures and
preemptions, with or without ``faults`` (without: every kill restarts from zero).

Deterministic: virtual time only. The one wall-clock figure, scheduler decision latency per
cycle, is reported apart (``latency``) and never feeds a decision. The older engine that
replays decisions through a ``SchedulingSession`` without the controllers lives in
``session_replay.py`` (``engine="session"``): much faster, an approximation of the lifecycle.
"""

from __future__ import annotations

import hashlib
import marshal
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from phalanx.backends.sim import SimWorkload
from phalanx.model.objects import JobPhase
from phalanx.model.reasons import ReasonCode
from phalanx.model.specs import job_to_manifest
from phalanx.scheduling import SchedulerConfig
from phalanx.simulation.driver import (
    MEMORY_STORE_URL,
    Arrival,
    Driver,
    config_manifests,
    no_full_collections,
)
from phalanx.simulation.faults import Faults
from phalanx.simulation.metrics import Summary, jain_index, summarize
from phalanx.simulation.trace import TraceError, TraceJob
from phalanx.simulation.world import World, job_labels, job_spec, queue_for
from phalanx.store import JobRecord, PodRecord, Store

#: Score every feasible node (the simulator is for quality, not for the production budget).
ALL_NODES = 1 << 30
#: The program a simulated pod "runs" (the sim backend runs none; a Job needs a command).
SIM_COMMAND = ("sim-workload",)
_MAX_CURVE_POINTS = 400
_HOUR = 3600.0
#: Pod phases of a pod that did not finish its work.
_KILLED = ("Stopped", "Lost", "Failed")


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
    #: GPU-hours of work lost by jobs killed by failures / by preemption.
    lost_failure_gpu_h: float = 0.0
    lost_preemption_gpu_h: float = 0.0
    #: Node failures that happened while work was left, and the job attempts they killed.
    node_failures: int = 0
    failure_kills: int = 0
    #: Times a node was quarantined (node-side failures over the quarantine policy's bar).
    quarantines: int = 0
    #: ``controllers`` (the production control plane) or ``session`` (session_replay.py).
    engine: str = "controllers"
    #: ``outcome_digest`` of the run when asked for (``run_full(digest=True)``), else "".
    digest: str = ""

    @property
    def lost_gpu_h(self) -> float:
        """GPU-hours lost to failures and preemptions together."""
        return self.lost_failure_gpu_h + self.lost_preemption_gpu_h


def workload_of(job: TraceJob, faults: Faults) -> SimWorkload:
    """What the pods of ``job`` do under ``faults``: run for its runtime; checkpoint and
    resume (``restart="checkpoint"``), reporting checkpoints if ``checkpoint_aware``."""
    resumes = faults.restart == "checkpoint" and bool(faults.checkpoint_s)
    return SimWorkload(
        job.runtime_s,
        faults.checkpoint_s if resumes else None,
        reports_checkpoints=resumes and faults.checkpoint_aware,
    )


def job_manifest(job: TraceJob) -> dict[str, object]:
    """The Job manifest submitted for a trace job."""
    spec = job_spec(job)
    pod_sets = tuple(replace(ps, command=SIM_COMMAND) for ps in spec.pod_sets)
    return job_to_manifest(replace(spec, pod_sets=pod_sets))


def job_manifests(jobs: Sequence[TraceJob]) -> list[dict[str, object]]:
    """``job_manifest`` of each of ``jobs``: a trace repeats a few pod shapes thousands of
    times, so the manifest of a job alike in everything but its name and user (queue,
    priority, pod sets) is a copy of the first one's with those set, not built again."""
    templates: dict[tuple[str, int, str, bool], bytes] = {}
    out: list[dict[str, object]] = []
    for job in jobs:
        # Pod sets hold mappings (env, labels): their text names them.
        key = (queue_for(job), job.priority, repr(job.pod_sets), bool(job.user))
        template = templates.get(key)
        if template is None:
            manifest = job_manifest(job)
            templates[key] = marshal.dumps(manifest)
        else:
            manifest = marshal.loads(template)
            metadata = manifest["metadata"]
            assert isinstance(metadata, dict)  # as job_manifest builds it
            metadata["name"] = job.name
            if job.user:
                metadata["labels"] = job_labels(job)
        out.append(manifest)
    return out


def run_full(
    world: World,
    jobs: Sequence[TraceJob],
    policy: str,
    seed: int,
    *,
    score_weights: Mapping[str, float] | None = None,
    progress: Callable[[int, int], None] | None = None,
    faults: Faults | None = None,
    defer_completions: bool = True,
    store_url: str = MEMORY_STORE_URL,
    digest: bool = False,
) -> FullResult:
    """Replay ``jobs`` through the control plane in virtual time (module docstring) and
    return the figures; ``store_url`` picks the store (driver.MEMORY_STORE_URL); ``digest``
    adds the ``outcome_digest`` of what was recorded. Raises
    TraceError for a job name used twice, SpecError naming a job whose name or labels the
    control plane rejects."""
    seen: set[str] = set()
    for j in jobs:
        if j.name in seen:
            raise TraceError(f"job {j.name!r} appears twice in the trace; job names must be unique")
        seen.add(j.name)
    faults = faults or Faults()
    scheduler = SchedulerConfig(
        policy=policy, max_candidates=ALL_NODES, score_weights=dict(score_weights or {}), seed=seed
    )
    manifests = job_manifests(jobs)
    arrivals = [
        Arrival(j.submit_s, manifest, workload_of(j, faults))
        for j, manifest in zip(jobs, manifests, strict=True)
    ]
    with (
        Driver(
            world.nodes,
            config_manifests(world.queues, world.flavors),
            arrivals,
            scheduler=scheduler,
            quarantine=faults.quarantine,
            failures=faults.failures,
            repair_s=faults.repair_s,
            defer_completions=defer_completions,
            store_url=store_url,
        ) as driver,
        no_full_collections(),
    ):
        driver.run(progress)
        result = _figures(driver, world, jobs, policy, seed, faults)
        return replace(result, digest=outcome_digest(driver.store)) if digest else result


def outcome_digest(store: Store) -> str:
    """A SHA-256 (hex) of everything the controllers recorded: every job's phase, times and
    attempt with its events (time, type, reason, message, facts), and every pod's job, pod
    set, index, attempt, node, devices, times and phase. Two replays that decided the same
    things at the same virtual times have equal digests (pod ids, which end in a random
    suffix, are left out: the job, pod set, index and attempt name a pod)."""
    h = hashlib.sha256()
    records = sorted(store.list_jobs(manifests=False), key=_name)
    names = {j.id: j.name for j in records}
    for j in records:
        h.update(repr((j.name, j.phase, j.created_at, j.started_at, j.finished_at)).encode())
        h.update(repr(j.attempt).encode())
        for e in store.events(j.id):
            facts = sorted(e.facts.items(), key=str)
            h.update(repr((e.at, e.type, e.reason, e.message, facts)).encode())
    pods = sorted(
        store.pods(), key=lambda p: (names.get(p.job_id, ""), p.attempt, p.pod_set, p.index)
    )
    for p in pods:
        h.update(repr((names.get(p.job_id, ""), p.pod_set, p.index, p.attempt, p.node)).encode())
        h.update(repr((p.devices, p.created_at, p.started_at, p.finished_at, p.phase)).encode())
    return h.hexdigest()


def _figures(
    driver: Driver,
    world: World,
    jobs: Sequence[TraceJob],
    policy: str,
    seed: int,
    faults: Faults,
) -> FullResult:
    """The run's figures, from what the controllers recorded in the store."""
    store = driver.store
    records = store.list_jobs(manifests=False)
    pods = store.pods()
    start, end = driver.start_s, driver.clock.now
    trace_queue = {j.name: j.queue for j in jobs}
    done = {j.name: j for j in records if j.phase == JobPhase.SUCCEEDED.value}
    jcts = tuple((done[n].finished_at or start) - done[n].created_at for n in sorted(done))
    delays = tuple(
        j.started_at - j.created_at for j in sorted(records, key=_name) if j.started_at is not None
    )
    makespan = max((j.finished_at or start for j in done.values()), default=start) - start
    # GPU allocation: every pod holds its devices from admission until it ended.
    capacity = sum(len(n.gpus) * 1000 for n in world.nodes) or 1
    queue_of = {j.id: trace_queue.get(j.name, j.queue) for j in records}
    steps: dict[float, int] = {}
    queue_gpu_s: dict[str, float] = {}
    for pod in pods:
        milli = sum(int(m) for _, m in pod.devices)
        if not milli:
            continue
        until = end if pod.finished_at is None else pod.finished_at
        steps[pod.created_at] = steps.get(pod.created_at, 0) + milli
        steps[until] = steps.get(until, 0) - milli
        queue = queue_of[pod.job_id]
        queue_gpu_s[queue] = queue_gpu_s.get(queue, 0.0) + milli / 1000 * (until - pod.created_at)
    curve, integral = _allocation_curve(steps, start, capacity)
    total_gpu_s = sum(queue_gpu_s.values()) or 1.0
    share = {q: v / total_gpu_s for q, v in sorted(queue_gpu_s.items())}
    lost, preemptions, failure_kills = _lost_work(store, records, pods, jobs, faults)
    latency: dict[int, list[float]] = {}
    for considered, seconds in driver.cycles:
        latency.setdefault(1 << max(0, considered - 1).bit_length(), []).append(1000 * seconds)
    return FullResult(
        policy,
        seed,
        len(jobs),
        len(done),
        len(jobs) - len(done),
        summarize(jcts),
        summarize(delays),
        makespan,
        100.0 * integral / (capacity * (end - start)) if end > start else 0.0,
        share,
        jain_index(list(share.values())),
        preemptions,
        downsample(curve),
        jcts,
        tuple((bucket, len(v), sum(v) / len(v), max(v)) for bucket, v in sorted(latency.items())),
        lost["failure"] / _HOUR,
        lost["preemption"] / _HOUR,
        driver.node_failures,
        failure_kills,
        _quarantines(store, driver.failed_nodes),
    )


def _name(job: JobRecord) -> str:
    return job.name


def _allocation_curve(
    steps: Mapping[float, int], start: float, capacity: int
) -> tuple[list[tuple[float, float]], float]:
    """(time, allocated %) at every change, and the integral of allocated milli-GPU x s."""
    curve = [(start, 0.0)]
    allocated = 0
    integral = 0.0
    last = start
    for t in sorted(steps):
        integral += allocated * (t - last)
        allocated += steps[t]
        last = t
        pct = 100.0 * allocated / capacity
        if curve[-1][1] != pct:
            curve.append((t, pct))
    return curve, integral


def _lost_work(
    store: Store,
    records: Sequence[JobRecord],
    pods: Sequence[PodRecord],
    jobs: Sequence[TraceJob],
    faults: Faults,
) -> tuple[dict[str, float], int, int]:
    """GPU-seconds of work lost by killed attempts, by cause (``failure`` or ``preemption``),
    the number of preemptions and of attempts killed by node failures.

    An attempt ended before its work was done when its job's events say so — ``Preempted``,
    or ``Restarting``/``Failed`` (``cause`` in the facts) — while it was the current attempt
    (the last ``Admitted`` event names it). Its progress at the kill is what it resumed from
    plus the time it ran (its pods' start to the first pod's end); what it loses is the
    progress since its workload's last checkpoint.
    """
    lost = {"failure": 0.0, "preemption": 0.0}
    preemptions = failure_kills = 0
    by_job: dict[int, dict[int, list[PodRecord]]] = {}
    for pod in pods:
        by_job.setdefault(pod.job_id, {}).setdefault(pod.attempt, []).append(pod)
    workloads = {j.name: workload_of(j, faults) for j in jobs}
    for record in records:
        if record.attempt <= 1 and record.phase == JobPhase.SUCCEEDED.value:
            continue  # one attempt that did all the work: nothing was killed
        workload = workloads.get(record.name, SimWorkload(0.0))
        attempts = by_job.get(record.id, {})
        resumed = 0.0
        current = 0
        for event in store.events(record.id):
            if event.reason == ReasonCode.ADMITTED.value:
                current = int(event.facts.get("attempt", current + 1))
                continue
            if event.reason == ReasonCode.PREEMPTED.value:
                cause = "preemption"
                preemptions += 1
            elif event.reason in (ReasonCode.RESTARTING.value, ReasonCode.FAILED.value):
                cause = "failure"
                failure_kills += event.facts.get("cause") == "Node"
            else:
                continue
            attempt = attempts.get(current, [])
            started = [p.started_at for p in attempt if p.started_at is not None]
            ended = [p.finished_at for p in attempt if p.finished_at is not None]
            if not started or not ended or not any(p.phase in _KILLED for p in attempt):
                continue
            gpus = sum(int(m) for p in attempt for _, m in p.devices) / 1000
            progress = resumed + (min(ended) - min(started))
            saved = max(resumed, workload.saved(progress))
            lost[cause] += gpus * (progress - saved)
            resumed = saved
    return lost, preemptions, failure_kills


def _quarantines(store: Store, nodes: Sequence[str]) -> int:
    """How many times ``nodes`` were quarantined (their ``Quarantined`` events)."""
    return sum(
        1
        for node in nodes
        for event in store.object_events("Node", node)
        if event.reason == ReasonCode.QUARANTINED.value
    )


def downsample(points: list[tuple[float, float]]) -> tuple[tuple[float, float], ...]:
    """At most about ``_MAX_CURVE_POINTS`` of ``points``, evenly spaced, and the last."""
    if len(points) <= _MAX_CURVE_POINTS:
        return tuple(points)
    step = len(points) / _MAX_CURVE_POINTS
    return (*(points[int(i * step)] for i in range(_MAX_CURVE_POINTS)), points[-1])
