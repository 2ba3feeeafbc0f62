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

from phalanx import kinds
from phalanx.backends.base import Backend, PodEvent, PodEventKind
from phalanx.controllers.errors import ConflictError, NotFoundError
from phalanx.controllers.health import HealthTracker, QuarantinePolicy
from phalanx.controllers.lifecycle import Lifecycle
from phalanx.controllers.queries import Queries
from phalanx.controllers.reconcilers import (
    GarbageCollector,
    JobsReconciler,
    NodeHealthReconciler,
    Reconciler,
    ReconcilerStats,
    timed,
)
from phalanx.controllers.state import SpecCache
from phalanx.controllers.views import ApplyResult, JobView, NodeView, QueueView
from phalanx.model.objects import JobPhase, JobSpec, Node, PodPhase
from phalanx.model.specs import FieldError, SpecError
from phalanx.scheduling import Decisions, Reason, SchedulerConfig, admission_warning
from phalanx.store import JobRecord, Store

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
        self.queries = Queries(store, backend, self.specs, self.node_health, config.data_dir)
        self.stats: dict[str, ReconcilerStats] = {}
        self.node_reconciler = NodeHealthReconciler(backend, self.node_health)
        self.jobs_reconciler = JobsReconciler(
            store,
            backend,
            self.lifecycle,
            self.specs,
            self.node_reconciler.nodes,
            config.scheduler,
            self._stats_of("jobs"),
        )
        #: Run in this order on every tick; later layers (services, pipeline runs) add theirs.
        self.reconcilers: list[Reconciler] = [
            self.node_reconciler,
            self.jobs_reconciler,
            GarbageCollector(store, self.delete, clock),
        ]
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

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

    def _stats_of(self, name: str) -> ReconcilerStats:
        return self.stats.setdefault(name, ReconcilerStats())

    @property
    def cycles(self) -> int:
        """Scheduling cycles run so far."""
        return self.jobs_reconciler.cycles

    @property
    def last_cycle_s(self) -> float:
        """Seconds the last ``schedule()`` call took."""
        return self.jobs_reconciler.last_cycle_s

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self.tick()
            except Exception:  # the loop must survive any one bad tick; the error is logged
                log.exception("control loop tick failed")
            self._wake.wait(self.config.tick_s)
            self._wake.clear()

    def tick(self) -> Decisions:
        """One pass of the loop: every reconciler in turn. Returns the scheduler's decisions
        (for tests and metrics)."""
        with self._lock:
            now = self.clock()
            for reconciler in self.reconcilers:
                timed(reconciler, self._stats_of(reconciler.name), now)
            return self.jobs_reconciler.decisions

    def nodes(self) -> list[Node]:
        """The backend's nodes, with the quarantine the controllers keep applied."""
        return self.node_reconciler.nodes()

    def release_node(self, name: str) -> NodeView:
        """Release a node from quarantine and forget the evidence against it. Raises
        NotFoundError for an unknown node."""
        with self._lock:
            view = self.get_node(name)
            self.node_health.release(name)
        self.wake()
        return self.get_node(view.node.name)

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
        parsed: list[kinds.Parsed] = []
        errors: list[FieldError] = []
        for i, manifest in enumerate(manifests):
            try:
                parsed.append(kinds.parse(manifest))
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
        job_specs: list[JobSpec] = []
        for item in parsed:
            if item.kind.is_job:
                spec: JobSpec = item.obj
                jobs.append((item.name, uuid.uuid4().hex, item.manifest, spec.queue, spec.priority))
                job_specs.append(spec)
            else:
                configs.append((item.kind.name, item.name, item.manifest))
        order = [(k, n) for k, n, _ in configs] + [("Job", j[0]) for j in jobs]
        with self._lock:
            try:
                actions = self.store.apply(configs, jobs, self.clock())
            except ValueError as exc:
                raise ConflictError(str(exc)) from exc
        self.wake()
        results = dict(zip(order, actions, strict=True))
        warnings = self._warnings(job_specs)
        return [
            ApplyResult(kind, name, results[(kind, name)], warnings.get((kind, name), ()))
            for kind, name in order
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

    def delete(self, kind: str, name: str) -> None:
        """Delete an object of any applied kind (a kind name, plural or short name); what it
        owns is deleted after it, in the background. Raises NotFoundError, ConflictError, or
        UnknownKindError (naming the known kinds)."""
        resolved = kinds.lookup(kind)
        if resolved.is_job:
            self.delete_job(name)
        elif resolved is kinds.QUEUE:
            self.delete_queue(name)
        elif resolved.is_applied:
            with self._lock:
                if not self.store.delete_config(resolved.name, name):
                    raise NotFoundError(resolved.name.lower(), name)
        else:
            raise ConflictError(
                f"{resolved.plural} are observed from the backend and cannot be deleted here"
            )
        self.wake()

    # ---- facade: reads (the read side, controllers/queries.py) ----

    def get_job(self, name: str) -> JobView:
        """Return a job with pods and events. Raises NotFoundError."""
        return self.queries.get_job(name)

    def list_jobs(self, queue: str | None = None) -> list[JobView]:
        """Return all jobs (optionally of one queue), oldest first, with their latest pods."""
        return self.queries.list_jobs(queue)

    def list_queues(self) -> list[QueueView]:
        """Return queues with their quota use and job counts."""
        return self.queries.list_queues()

    def get_queue(self, name: str) -> QueueView:
        """Return one queue. Raises NotFoundError."""
        return self.queries.get_queue(name)

    def list_flavors(self) -> list[Mapping[str, object]]:
        """Return the resource flavors' manifests."""
        return self.queries.list_flavors()

    def list_nodes(self) -> list[NodeView]:
        """Return the backend's nodes with what is in use on each."""
        return self.queries.list_nodes()

    def get_node(self, name: str) -> NodeView:
        """Return one node. Raises NotFoundError."""
        return self.queries.get_node(name)

    def read_logs(
        self, job: str, pod: str | None = None, attempt: int | None = None, offset: int = 0
    ) -> tuple[bytes, int, bool]:
        """See Queries.read_logs."""
        return self.queries.read_logs(job, pod, attempt, offset)

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
            "reconcilers": {
                name: {
                    "runs": st.runs,
                    "seconds_last": round(st.seconds_last, 6),
                    "seconds_total": round(st.seconds_total, 3),
                    "errors": st.errors,
                    "object_errors": st.object_errors,
                    "last_error": st.last_error,
                }
                for name, st in self.stats.items()
            },
        }
