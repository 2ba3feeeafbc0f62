"""The ControlPlane: the control loop (observe → snapshot → schedule → apply → requeue) and the
facade the API calls (apply, get, cancel, delete, logs).

The loop runs in one thread; API calls that write take the same lock, so every transition is
serialised. On start, ``reconcile`` repairs whatever a crash left between a store transaction
and the backend call that should have followed it.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from phalanx.backends.base import Backend, PodEvent, PodEventKind
from phalanx.controllers.errors import ConflictError, NotFoundError
from phalanx.controllers.health import HealthTracker, QuarantinePolicy, apply_quarantine
from phalanx.controllers.lifecycle import Lifecycle, pod_name
from phalanx.controllers.progress import JobProgress, hung_jobs, read_progress
from phalanx.controllers.state import HOLDING, SpecCache, World, devices_of, pod_resources
from phalanx.controllers.views import (
    ApplyResult,
    EventView,
    FlavorUsage,
    JobView,
    NodeFailureView,
    NodeView,
    PodView,
    ProgressView,
    QuarantineView,
    QueueView,
)
from phalanx.model.objects import JobPhase, JobSpec, Node, PodPhase, Queue, ResourceFlavor
from phalanx.model.resources import RESOURCE_NAMES, Resources
from phalanx.model.specs import FieldError, SpecError, job_to_manifest, parse_manifest
from phalanx.scheduling import (
    Decisions,
    Reason,
    ReasonCode,
    SchedulerConfig,
    admission_warning,
    schedule,
)
from phalanx.store import JobRecord, PodRecord, Store

log = logging.getLogger(__name__)


@dataclass(slots=True)
class ControlPlaneConfig:
    """Settings of one control plane."""

    data_dir: Path
    tick_s: float = 0.2
    grace_period_s: float = 10.0
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    quarantine: QuarantinePolicy = field(default_factory=QuarantinePolicy)


class ControlPlane:
    """Owns the loop and answers the API. Thread-safe."""

    def __init__(
        self,
        store: Store,
        backend: Backend,
        config: ControlPlaneConfig,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.backend = backend
        self.config = config
        self.clock = clock
        self.specs = SpecCache()
        self.node_health = HealthTracker(store, clock, config.quarantine)
        self.lifecycle = Lifecycle(
            store,
            backend,
            clock,
            self.specs.job,
            config.data_dir,
            config.grace_period_s,
            self.node_health,
        )
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_cycle_s = 0.0
        self.cycles = 0

    # ---- loop ----

    def start(self) -> None:
        """Reconcile with the backend, then run the loop in a background thread."""
        self.reconcile()
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="phalanx-loop", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the loop; pods keep running and are adopted by the next start."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def wake(self) -> None:
        """Run the next tick now rather than at the next interval."""
        self._wake.set()

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self.tick()
            except Exception:  # the loop must survive any one bad tick; the error is logged
                log.exception("control loop tick failed")
            self._wake.wait(self.config.tick_s)
            self._wake.clear()

    def tick(self) -> Decisions:
        """One pass of the loop. Returns the scheduler's decisions (for tests and metrics)."""
        with self._lock:
            # 1. observe
            for event in self.backend.poll_events():
                self.lifecycle.on_pod_event(event)
            world = World.read(self.store, self.specs)
            now = self.clock()
            progress = self._progress(world)
            self._enforce_deadlines(world, now)
            self._detect_hangs(world, progress, now)
            self._finish_deletes()
            for node in self.node_health.release_expired(now):
                log.info("node %s released from quarantine after its cool-down", node)
            # 2. snapshot (quarantined nodes marked; checkpoints bound each victim's lost work)
            world = World.read(self.store, self.specs)
            checkpoints = {
                job_id: p.checkpoint.at
                for job_id, p in progress.items()
                if p.checkpoint is not None
            }
            snapshot, held_back = world.snapshot(
                now,
                self.nodes(),
                self.specs.queues(self.store),
                self.specs.flavors(self.store),
                self.config.scheduler,
                checkpoints,
                self.backend.held_capacity(),
            )
            # 3. schedule
            started = time.perf_counter()
            decisions = schedule(snapshot)
            self.last_cycle_s = time.perf_counter() - started
            self.cycles += 1
            # 4. apply, 5. requeue with reasons
            self._apply(world, decisions, held_back)
            return decisions

    def _apply(self, world: World, decisions: Decisions, held_back: Mapping[str, str]) -> None:
        by_name = {j.name: j for j in world.jobs.values()}
        for admission in decisions.admissions:
            self.lifecycle.admit(by_name[admission.job], admission)
        for preemption in decisions.preemptions:
            victim = by_name.get(preemption.victim)
            if victim is not None:
                self.lifecycle.preempt(victim, preemption.reason)
        reasons = [(r.job, r.reason) for r in decisions.pending]
        for name in held_back:  # the pods of its previous attempt are still stopping
            held = by_name[name]
            facts = {
                "pods_stopping": len(world.live_pods.get(held.id, ())),
                "attempt": held.attempt,
            }
            reasons.append((name, Reason(ReasonCode.WAITING_FOR_CAPACITY, facts)))
        for name, reason in reasons:
            job = by_name.get(name)
            stored = None if job is None else (job.reason_code, job.message, job.reason_facts)
            if job is not None and stored != (
                reason.code.value,
                reason.message,
                reason.plain_facts(),
            ):
                self.lifecycle.set_pending_reason(job, reason)

    def _enforce_deadlines(self, world: World, now: float) -> None:
        for job_id, job in world.jobs.items():
            limit = world.specs[job_id].max_runtime_s
            if (
                limit is not None
                and job.phase == JobPhase.RUNNING.value
                and job.started_at is not None
                and now - job.started_at > limit
            ):
                self.lifecycle.expire(job, limit)

    def nodes(self) -> list[Node]:
        """The backend's nodes, with the quarantine the controllers keep applied; a node the
        backend reports unhealthy (a critical GPU error) is quarantined at once."""
        observed = self.backend.nodes()
        health = self.node_health.all()
        for n in observed:
            if n.unhealthy_reason and not (n.name in health and health[n.name].is_quarantined):
                log.warning("node %s quarantined: %s", n.name, n.unhealthy_reason)
                health[n.name] = self.node_health.quarantine_now(n.name, n.unhealthy_reason)
        return apply_quarantine(observed, health)

    def _progress(self, world: World) -> dict[int, JobProgress]:
        """What the workloads of jobs holding capacity reported (status files)."""
        return {
            job_id: read_progress(self.config.data_dir, job)
            for job_id, job in world.jobs.items()
            if job.phase in HOLDING
        }

    def _detect_hangs(self, world: World, progress: Mapping[int, JobProgress], now: float) -> None:
        """Restart running jobs whose pods reported no progress within their hangTimeout."""
        for hang in hung_jobs(world.jobs, world.specs, world.live_pods, progress, now):
            self.lifecycle.fail_hung(world.jobs[hang.job_id], hang)

    def release_node(self, name: str) -> NodeView:
        """Release a node from quarantine and forget the evidence against it. Raises
        NotFoundError for an unknown node."""
        with self._lock:
            view = self.get_node(name)
            self.node_health.release(name)
        self.wake()
        return self.get_node(view.node.name)

    def _finish_deletes(self) -> None:
        for job in self.store.list_jobs(deleting_only=True):
            if not self.store.pods([job.id], live_only=True):
                self.store.delete_job(job.id)

    def reconcile(self) -> None:
        """Repair what a crash left behind, before the loop starts:
        1. relaunch pods that were admitted but maybe never launched (launch is idempotent);
        2. adopt every live pod the store knows and apply the exits that happened meanwhile;
        3. mark pods that still run as Running;
        4. re-send stops for pods of jobs that should not run any more.
        """
        with self._lock:
            live = self.store.pods(live_only=True)
            jobs = {j.id: j for j in self.store.list_jobs()}
            for pod in live:
                job = jobs.get(pod.job_id)
                if (
                    job is not None
                    and job.phase in (JobPhase.ADMITTED.value, JobPhase.RUNNING.value)
                    and pod.attempt == job.attempt
                ):
                    self.lifecycle.launch(job, pod)
            ended = self.backend.adopt([p.pod_id for p in live])
            for event in ended:
                self.lifecycle.on_pod_event(event)
            finished = {e.pod_id for e in ended}
            now = self.clock()
            for pod in live:
                if pod.pod_id not in finished and pod.phase == PodPhase.PENDING.value:
                    self.lifecycle.on_pod_event(PodEvent(pod.pod_id, PodEventKind.RUNNING, now))
            for job in self.store.list_jobs():
                should_run = job.phase in (JobPhase.ADMITTED.value, JobPhase.RUNNING.value)
                for pod in self.store.pods([job.id], live_only=True):
                    if not should_run or pod.attempt != job.attempt:
                        self.backend.stop(pod.pod_id, self.lifecycle.grace_for(job))

    # ---- facade: writes ----

    def apply(
        self, manifests: Sequence[Mapping[str, object]], source: str = ""
    ) -> list[ApplyResult]:
        """Validate every manifest, then create or update them all in one transaction.

        Raises SpecError (nothing written) listing every problem, with ``documents[i]`` paths
        when there are several; ConflictError when a job exists with another spec.
        """
        parsed: list[JobSpec | Queue | ResourceFlavor] = []
        errors: list[FieldError] = []
        for i, manifest in enumerate(manifests):
            try:
                parsed.append(parse_manifest(manifest))
            except SpecError as exc:
                prefix = f"documents[{i}]." if len(manifests) > 1 else ""
                errors.extend(FieldError(prefix + e.path, e.value, e.message) for e in exc.errors)
        if errors:
            raise SpecError(errors, source)
        if not parsed:
            raise SpecError(
                [FieldError("", None, "no manifests found; expected at least one YAML document")],
                source,
            )
        configs: list[tuple[str, str, dict[str, object]]] = []
        jobs: list[tuple[str, str, dict[str, object], str, int]] = []
        order: list[tuple[str, str]] = []
        for obj in parsed:
            if isinstance(obj, JobSpec):
                jobs.append(
                    (obj.name, uuid.uuid4().hex, job_to_manifest(obj), obj.queue, obj.priority)
                )
                order.append(("Job", obj.name))
            else:
                kind = "Queue" if isinstance(obj, Queue) else "ResourceFlavor"
                configs.append((kind, obj.name, _manifest_of(obj)))
        config_order = [(k, n) for k, n, _ in configs]
        with self._lock:
            try:
                actions = self.store.apply(configs, jobs, self.clock())
            except ValueError as exc:
                raise ConflictError(str(exc)) from exc
        self.wake()
        results = dict(zip([*config_order, *order], actions, strict=True))
        warnings = self._warnings([obj for obj in parsed if isinstance(obj, JobSpec)])
        return [
            ApplyResult(kind, name, results[(kind, name)], warnings.get((kind, name), ()))
            for kind, name in [*config_order, *order]
        ]

    def _warnings(self, jobs: Sequence[JobSpec]) -> dict[tuple[str, str], tuple[Reason, ...]]:
        """Why each of ``jobs`` can never be admitted with the current nodes, flavors and
        queues (see scheduling.admission_warning), by (kind, name); jobs that can be, or
        whose queue does not exist yet, are left out."""
        if not jobs:
            return {}
        queues = self.specs.queues(self.store)
        flavors = self.specs.flavors(self.store)
        nodes = self.backend.nodes()
        out: dict[tuple[str, str], tuple[Reason, ...]] = {}
        for job in jobs:
            warning = admission_warning(job, queues, flavors, nodes)
            if warning is not None:
                out[("Job", job.name)] = (warning,)
        return out

    def _job(self, name: str) -> JobRecord:
        job = self.store.get_job(name)
        if job is None:
            raise NotFoundError("job", name)
        return job

    def cancel_job(self, name: str) -> JobView:
        """Cancel a job (no-op if it already finished). Raises NotFoundError."""
        with self._lock:
            self.lifecycle.cancel(self._job(name))
        self.wake()
        return self.get_job(name)

    def delete_job(self, name: str) -> None:
        """Cancel a job if needed and delete it once its pods have stopped. Raises NotFoundError."""
        with self._lock:
            job = self._job(name)
            self.lifecycle.cancel(job, is_delete=True)
            if self.store.pods([job.id], live_only=True):
                self.lifecycle.mark_deleting(job)
            else:
                self.store.delete_job(job.id)
        self.wake()

    def delete_queue(self, name: str) -> None:
        """Delete a queue. Raises NotFoundError, or ConflictError while unfinished jobs use it."""
        with self._lock:
            if not any(q.name == name for q in self.specs.queues(self.store)):
                raise NotFoundError("queue", name)
            users = [
                j.name
                for j in self.store.list_jobs()
                if j.queue == name and not JobPhase(j.phase).is_terminal
            ]
            if users:
                raise ConflictError(
                    f"queue {name} still has {len(users)} unfinished jobs ({', '.join(users[:5])}); cancel or delete them first"
                )
            self.store.delete_config("Queue", name)

    def delete_flavor(self, name: str) -> None:
        """Delete a resource flavor. Raises NotFoundError."""
        with self._lock:
            if not self.store.delete_config("ResourceFlavor", name):
                raise NotFoundError("resourceflavor", name)

    # ---- facade: reads ----

    def get_job(self, name: str) -> JobView:
        """Return a job with pods and events. Raises NotFoundError."""
        job = self._job(name)
        return self._view(job, self.store.pods([job.id]), with_events=True)

    def list_jobs(self, queue: str | None = None) -> list[JobView]:
        """Return all jobs (optionally of one queue), oldest first, with their latest pods."""
        jobs = [j for j in self.store.list_jobs() if queue is None or j.queue == queue]
        pods: dict[int, list[PodRecord]] = {}
        for pod in self.store.pods([j.id for j in jobs]):
            pods.setdefault(pod.job_id, []).append(pod)
        return [self._view(j, pods.get(j.id, []), with_events=False) for j in jobs]

    def _view(self, job: JobRecord, pods: list[PodRecord], *, with_events: bool) -> JobView:
        current = [p for p in pods if p.attempt == job.attempt] if job.attempt else []
        shown = pods if with_events else current
        return JobView(
            name=job.name,
            manifest=job.manifest,
            queue=job.queue,
            priority=job.priority,
            phase=JobPhase(job.phase),
            message=job.message,
            reason_code=job.reason_code,
            reason_facts=dict(job.reason_facts),
            created_at=job.created_at,
            admitted_at=job.admitted_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
            flavor=job.flavor,
            attempt=job.attempt,
            restarts=job.restarts,
            progress=_progress_view(read_progress(self.config.data_dir, job))
            if job.attempt
            else None,
            pods=tuple(
                PodView(
                    p.pod_id,
                    p.pod_set,
                    p.index,
                    p.attempt,
                    p.node,
                    devices_of(p),
                    PodPhase(p.phase),
                    p.exit_code,
                    p.reason,
                    p.started_at,
                    p.finished_at,
                )
                for p in shown
            ),
            events=tuple(
                EventView(e.at, e.type, e.reason, e.message, dict(e.facts))
                for e in self.store.events(job.id)
            )
            if with_events
            else (),
        )

    def _usage(
        self,
    ) -> tuple[
        dict[tuple[str, str], Resources],
        dict[str, Resources],
        dict[str, dict[int, int]],
        dict[str, list[str]],
    ]:
        """Live usage per (queue, flavor) and per node, with devices and pod names."""
        world = World.read(self.store, self.specs)
        per_queue: dict[tuple[str, str], Resources] = {}
        per_node: dict[str, Resources] = {}
        devices: dict[str, dict[int, int]] = {}
        names: dict[str, list[str]] = {}
        for job_id, pods in world.live_pods.items():
            job, spec = world.jobs[job_id], world.specs[job_id]
            for pod in pods:
                r = pod_resources(spec, pod.pod_set)
                if job.phase in HOLDING:
                    key = (job.queue, job.flavor)
                    per_queue[key] = per_queue.get(key, Resources()) + r
                per_node[pod.node] = per_node.get(pod.node, Resources()) + r
                for share in devices_of(pod):
                    node_devices = devices.setdefault(pod.node, {})
                    node_devices[share.index] = node_devices.get(share.index, 0) + share.milli
                names.setdefault(pod.node, []).append(f"{job.name}/{pod_name(pod)}")
        return per_queue, per_node, devices, names

    def list_queues(self) -> list[QueueView]:
        """Return queues with their quota use and job counts."""
        per_queue, _, _, _ = self._usage()
        manifests = {name: m for name, m, _ in self.store.list_config("Queue")}
        jobs = self.store.list_jobs([JobPhase.PENDING.value, *HOLDING])
        out = []
        for queue in self.specs.queues(self.store):
            usage = tuple(
                FlavorUsage(
                    fq.flavor,
                    per_queue.get((queue.name, fq.flavor), Resources()),
                    Resources(*(fq.quota(r).nominal for r in RESOURCE_NAMES)),
                )
                for fq in queue.flavors
            )
            pending = sum(
                1 for j in jobs if j.queue == queue.name and j.phase == JobPhase.PENDING.value
            )
            admitted = sum(1 for j in jobs if j.queue == queue.name and j.phase in HOLDING)
            out.append(
                QueueView(queue.name, manifests[queue.name], queue.cohort, usage, pending, admitted)
            )
        return out

    def get_queue(self, name: str) -> QueueView:
        """Return one queue. Raises NotFoundError."""
        for view in self.list_queues():
            if view.name == name:
                return view
        raise NotFoundError("queue", name)

    def list_flavors(self) -> list[Mapping[str, object]]:
        """Return the resource flavors' manifests."""
        return [m for _, m, _ in self.store.list_config("ResourceFlavor")]

    def list_nodes(self) -> list[NodeView]:
        """Return the backend's nodes with what is in use on each."""
        _, per_node, devices, names = self._usage()
        health = self.node_health.all()
        nodes: list[Node] = sorted(
            apply_quarantine(self.backend.nodes(), health), key=lambda n: n.name
        )
        out = []
        for n in nodes:
            h = health.get(n.name)
            out.append(
                NodeView(
                    n,
                    per_node.get(n.name, Resources()),
                    devices.get(n.name, {}),
                    tuple(names.get(n.name, ())),
                    quarantine=None
                    if h is None or not h.is_quarantined
                    else QuarantineView(
                        h.quarantined_at or 0.0,
                        h.quarantine_until,
                        h.quarantine_reason,
                        "" if h.quarantine is None else h.quarantine.code.value,
                        {} if h.quarantine is None else h.quarantine.plain_facts(),
                    ),
                    failures=()
                    if h is None
                    else tuple(
                        NodeFailureView(f.at, f.job, f.attempt, f.pod, f.reason) for f in h.failures
                    ),
                )
            )
        return out

    def get_node(self, name: str) -> NodeView:
        """Return one node. Raises NotFoundError."""
        for view in self.list_nodes():
            if view.node.name == name:
                return view
        raise NotFoundError("node", name)

    def read_logs(
        self, job: str, pod: str | None = None, attempt: int | None = None, offset: int = 0
    ) -> tuple[bytes, int, bool]:
        """Return (bytes from ``offset``, next offset, whether the pod has finished) of one pod's
        output: ``pod`` is ``<pod set>-<index>`` (default: the first), ``attempt`` the latest
        unless given. Raises NotFoundError for an unknown job, pod or attempt."""
        record = self._job(job)
        pods = self.store.pods([record.id])
        if not pods:
            raise NotFoundError(
                "pod",
                job,
                f'job "{job}" has no pods yet ({record.phase}); see `phalanx describe job {job}`',
            )
        wanted_attempt = attempt if attempt is not None else max(p.attempt for p in pods)
        matches = [
            p for p in pods if p.attempt == wanted_attempt and (pod is None or pod_name(p) == pod)
        ]
        if not matches:
            names = sorted({pod_name(p) for p in pods})
            raise NotFoundError(
                "pod",
                pod or "",
                f'job "{job}" has no pod {pod or "(any)"} in attempt {wanted_attempt}; its pods: {", ".join(names)}',
            )
        target = matches[0]
        data = self.backend.read_logs(target.pod_id, offset)
        finished = PodPhase(target.phase).is_finished
        return data, offset + len(data), finished and not data

    def health(self) -> Mapping[str, object]:
        """Liveness facts for /healthz and ``phalanx get``."""
        alive = self._thread is not None and self._thread.is_alive()
        return {
            "status": "ok" if alive else "stopped",
            "backend": self.backend.name,
            "store": self.store.redacted_url,
            "nodes": len(self.backend.nodes()),
            "cycles": self.cycles,
            "last_cycle_s": round(self.last_cycle_s, 6),
        }


def _progress_view(progress: JobProgress) -> ProgressView | None:
    if progress.checkpoint is None and progress.step is None:
        return None
    c = progress.checkpoint
    return ProgressView(
        step=progress.step,
        reported_at=progress.progress_at,
        checkpoint_step=None if c is None else c.step,
        checkpoint_at=None if c is None else c.at,
        checkpoint_path="" if c is None else c.path,
    )


def _manifest_of(obj: Queue | ResourceFlavor) -> dict[str, object]:
    from phalanx.model.specs import flavor_to_manifest, queue_to_manifest

    return queue_to_manifest(obj) if isinstance(obj, Queue) else flavor_to_manifest(obj)
