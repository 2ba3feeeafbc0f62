"""The ControlPlane: the control loop (observe → snapshot → schedule → apply → requeue) and the
facade the API calls (apply, get, cancel, delete, logs).

The loop runs in one thread; API calls that move jobs (cancel, delete) take the same lock, so
every transition is serialised; ``apply`` only adds jobs and writes queues and flavors, in one
store transaction, and does not wait for the loop. On start, ``reconcile`` repairs whatever a
crash left between a store transaction and the backend call that should have followed it.

With leader election (``ControlPlaneConfig.lease``, several control planes on one PostgreSQL
store), ``start`` hands the loop to a ``LeaderElector`` (controllers/leader.py): the leader
reconciles and runs the loop; a follower runs no loop and never calls the backend's launch or
stop. It serves reads and writes through the store: ``apply`` stores, ``cancel_job`` and
``delete`` write their transition, and the leader's jobs reconciler stops the pods of jobs that
should not run at its next tick (``JobsReconciler.stop_strays``).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from phalanx import kinds
from phalanx.backends.base import Backend, PodEvent, PodEventKind
from phalanx.controllers.errors import ConflictError, NotFoundError
from phalanx.controllers.health import HealthTracker, QuarantinePolicy
from phalanx.controllers.heap import HeapFreezer
from phalanx.controllers.leader import LeaderElector, LeaseConfig, Role
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
from phalanx.controllers.state import SpecCache, WorldCache
from phalanx.controllers.views import ApplyResult, JobView, NodeView, QueueView
from phalanx.model.objects import JobPhase, JobSpec, Node, PodPhase, Queue
from phalanx.model.specs import FieldError, SpecError
from phalanx.scheduling import (
    Decisions,
    Feasibility,
    Reason,
    SchedulerConfig,
    admission_warning,
)
from phalanx.scheduling.cluster import Journal
from phalanx.scheduling.quota import QuotaState
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
    #: Leader election among control planes sharing the store; None: this one always leads.
    lease: LeaseConfig | None = None
    #: The most of the process's time the loop takes when ticks are long and submissions keep
    #: coming (the rest is the API's): after such a tick of t seconds the next starts no
    #: sooner than t × (1 − share) / share later, wake() or not.
    loop_share: float = 0.25
    #: Freeze what survives the garbage collector's full collections while started
    #: (controllers/heap.py): process-wide, so only the server turns it on.
    freeze_heap: bool = False


#: Warnings apply keeps by what jobs ask for (cleared when full, or when nodes, flavors or
#: queues change).
_WARNINGS_KEPT = 1024


@dataclass(slots=True)
class _Prepared:
    """One apply request, validated: what the store writes, in the order of its results."""

    configs: list[tuple[str, str, dict[str, object]]] = field(default_factory=list)
    jobs: list[tuple[str, str, dict[str, object], str, int]] = field(default_factory=list)
    job_specs: list[JobSpec] = field(default_factory=list)
    order: list[tuple[str, str]] = field(default_factory=list)
    #: The store's action for each (kind, name), once written.
    actions: dict[tuple[str, str], str] = field(default_factory=dict)


def new_uids(count: int) -> list[str]:
    """``count`` new uids, each as ``uuid.uuid4().hex`` writes one (32 hex digits of a
    random version-4 UUID), from one read of the system's random source rather than one
    each: a batch of submitted jobs needs as many."""
    raw = bytearray(os.urandom(16 * count))
    out = []
    for at in range(0, 16 * count, 16):
        raw[at + 6] = (raw[at + 6] & 0x0F) | 0x40  # version 4
        raw[at + 8] = (raw[at + 8] & 0x3F) | 0x80  # the RFC 4122 variant
        out.append(raw[at : at + 16].hex())
    return out


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
            has_spec=self.specs.has,
        )
        #: Active jobs and live pods, kept current from the revision log; the loop and the
        #: read side share it.
        self.world = WorldCache(store, self.specs)
        self.queries = Queries(
            store, backend, self.specs, self.node_health, config.data_dir, world=self.world
        )
        self.stats: dict[str, ReconcilerStats] = {}
        self.node_reconciler = NodeHealthReconciler(
            backend, self.node_health, lambda: self.world.config_revision
        )
        self.jobs_reconciler = JobsReconciler(
            store,
            backend,
            self.lifecycle,
            self.specs,
            self.node_reconciler.nodes,
            config.scheduler,
            self._stats_of("jobs"),
            world=self.world,
        )
        #: Run in this order on every tick; later layers (services, pipeline runs) add theirs.
        self.reconcilers: list[Reconciler] = [
            self.node_reconciler,
            self.jobs_reconciler,
            GarbageCollector(store, self.delete, clock),
        ]
        self._lock = threading.RLock()
        self._wake = threading.Event()
        #: The thread running a tick (None: none), and whether a reconciler of that tick
        #: added jobs (jobs_added): the jobs reconciler then runs again before it ends.
        self._ticking_thread: int | None = None
        self._has_new_jobs = False
        # A backend that can tell at once when a pod ends (the local one) wakes the loop: the
        # end is recorded, and a pipeline's next step started, without waiting for a tick.
        notify_on_exit = getattr(backend, "notify_on_exit", None)
        if notify_on_exit is not None:
            notify_on_exit(self.wake)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        #: Keeps full garbage collections short (see ControlPlaneConfig.freeze_heap).
        self.heap = HeapFreezer() if config.freeze_heap else None
        self._applies = 0
        #: (nodes, flavors, queues), the never-fits checks built from them and the warnings
        #: found with them by what a job asks for, for apply.
        self._warning_checks: (
            tuple[
                tuple[tuple[Node, ...], tuple[object, ...], tuple[Queue, ...]],
                Feasibility,
                QuotaState,
                dict[object, Reason | None],
            ]
            | None
        ) = None
        #: When (clock) the loop started, and when its first tick after that ended.
        self.loop_started_at: float | None = None
        self.first_tick_at: float | None = None
        #: Called with the new role whenever leader election changes it (in its thread).
        self.role_listeners: list[Callable[[Role], None]] = []
        self.elector: LeaderElector | None = None
        if config.lease is not None:
            self.elector = LeaderElector(store, config.lease, self._lead, self._follow, clock)
            self.lifecycle.drives_backend = False  # until it leads

    # ---- loop ----

    def start(self) -> None:
        """Reconcile with the backend, then run the loop in a background thread; with leader
        election, start the elector instead, which does both once this plane leads."""
        if self.heap is not None:
            self.heap.start()
        if self.elector is not None:
            self.elector.start()
            return
        self.reconcile()
        self._start_loop()

    def stop(self) -> None:
        """Stop the loop (and leader election, giving the lease up); pods keep running and
        are adopted by the next start or the next leader."""
        if self.elector is not None:
            self.elector.stop()
        self._stop_loop()
        if self.heap is not None:
            self.heap.stop()

    def _start_loop(self) -> None:
        self._stopping.clear()
        self._wake.clear()
        self.loop_started_at, self.first_tick_at = self.clock(), None
        self._thread = threading.Thread(target=self._run, name="phalanx-loop", daemon=True)
        self._thread.start()

    def _stop_loop(self) -> bool:
        """Stop the loop thread; return False if a tick was still running after 10 s."""
        self._stopping.set()
        self._wake.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=10)
            return not thread.is_alive()
        return True

    def _lead(self, term: int) -> None:
        """Leader election made this plane the leader at ``term``: repair, run the loop."""
        self.lifecycle.drives_backend = True
        self.reconcile()
        self._start_loop()
        self._tell(Role.LEADER)

    def _follow(self) -> None:
        """This plane no longer leads: stop the loop at once; the backend is the leader's.
        Raises RuntimeError if a tick is still running (the elector then keeps the store
        fenced, so that tick cannot write over the new leader)."""
        is_stopped = self._stop_loop()
        self.lifecycle.drives_backend = False
        self._tell(Role.FOLLOWER)
        if not is_stopped:
            raise RuntimeError("a tick of the control loop was still running 10 s after stop")

    def _tell(self, role: Role) -> None:
        for listener in self.role_listeners:
            try:
                listener(role)
            except Exception:  # a listener (server.json) must not change the role
                log.exception("role listener failed")

    @property
    def role(self) -> Role:
        """Leader, or follower under leader election."""
        return Role.LEADER if self.elector is None else self.elector.role

    def wake(self) -> None:
        """Run the next tick now rather than at the next interval (on a follower there is no
        loop: the leader sees the write at its next tick, within ``tick_s``)."""
        self._wake.set()

    def jobs_added(self) -> None:
        """A reconciler has just stored new jobs: the jobs reconciler runs once more at the
        end of this tick, so that they are admitted and launched in the same pass (outside
        a tick, or in another thread: the next tick runs now)."""
        if self._ticking_thread == threading.get_ident():
            self._has_new_jobs = True
        else:
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
            started, applies = time.perf_counter(), self._applies
            try:
                self.tick()
            except Exception:  # the loop must survive any one bad tick; the error is logged
                log.exception("control loop tick failed")
            if self.first_tick_at is None:
                self.first_tick_at = self.clock()
            # The loop and the API share one interpreter (one core's worth of Python): after a
            # long tick during which submissions kept coming, rest in proportion, even when
            # woken, so that the loop takes at most ``loop_share`` of the time and the API the
            # rest. With no submissions meanwhile there is no one to give way to.
            share = self.config.loop_share
            rest_s = (time.perf_counter() - started) * (1 - share) / share
            if rest_s > 0.001 and self._applies != applies:
                self._stopping.wait(rest_s)
            else:
                rest_s = 0.0
            self._wake.wait(max(0.0, self.config.tick_s - rest_s))
            self._wake.clear()

    def tick(self) -> Decisions:
        """One pass of the loop: every reconciler in turn. Returns the scheduler's decisions
        (for tests and metrics)."""
        with self._lock:
            now = self.clock()
            self._ticking_thread, self._has_new_jobs = threading.get_ident(), False
            try:
                for reconciler in self.reconcilers:
                    timed(reconciler, self._stats_of(reconciler.name), now)
                if self._has_new_jobs:
                    # A later reconciler (pipeline runs) added jobs: admit and launch them
                    # in this pass rather than the next. The same guarded pass as any; a
                    # crash before it leaves them Pending, admitted after the restart.
                    timed(self.jobs_reconciler, self._stats_of(self.jobs_reconciler.name), now)
            finally:
                self._ticking_thread = None
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
        (outcome,) = self.apply_many([(manifests, source)])
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def apply_many(
        self, requests: Sequence[tuple[Sequence[Mapping[str, object]], str]]
    ) -> list[list[ApplyResult] | Exception]:
        """``apply`` for several requests (manifests, source) at once: each is validated on
        its own and all valid ones are written in one store transaction (group commit),
        each still all or nothing. Returns, for each request, its results or the error
        ``apply`` would raise for it; returns once every written request is committed."""
        prepared: list[_Prepared | Exception] = []
        for manifests, source in requests:
            try:
                prepared.append(self._prepare(manifests, source))
            except Exception as exc:  # this request's error; the others go on
                prepared.append(exc)
        valid = [p for p in prepared if isinstance(p, _Prepared)]
        # Not under the loop's lock: this only adds jobs and writes queues and flavors, in one
        # store transaction (the store serialises writers), and the loop sees them through
        # the revision log at its next tick; waiting for a tick here would cap submissions at
        # one per tick.
        self._applies += 1  # the loop gives way while submissions come (see _run)
        stored = self.store.apply_many([(p.configs, p.jobs, self.clock()) for p in valid])
        if any(p.configs for p in valid):
            self.specs.forget_recent()
        if valid:
            self.wake()
        created: list[JobSpec] = []
        for item, actions in zip(valid, stored, strict=True):
            if isinstance(actions, Exception):
                continue
            item.actions = dict(zip(item.order, actions, strict=True))
            for (name, uid, *_), spec in zip(item.jobs, item.job_specs, strict=True):
                if item.actions[("Job", name)] == "created":
                    self.specs.submitted(uid, spec)
            created += item.job_specs
        warnings = self._warnings(created)
        out: list[list[ApplyResult] | Exception] = []
        written = iter(stored)
        for one in prepared:
            if not isinstance(one, _Prepared):
                out.append(one)
                continue
            item, actions = one, next(written)
            if isinstance(actions, ValueError):
                conflict = ConflictError(str(actions))
                conflict.__cause__ = actions
                out.append(conflict)
            elif isinstance(actions, Exception):
                out.append(actions)
            else:
                out.append(
                    [
                        ApplyResult(
                            kind, name, item.actions[kind, name], warnings.get((kind, name), ())
                        )
                        for kind, name in item.order
                    ]
                )
        return out

    def _prepare(self, manifests: Sequence[Mapping[str, object]], source: str) -> _Prepared:
        """Parse and validate one request's manifests into what the store writes. Raises
        SpecError listing every problem (``documents[i]`` paths when there are several)."""
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
        item = _Prepared()
        uids = iter(new_uids(sum(1 for one in parsed if one.kind.is_job)))
        for one in parsed:
            if one.kind.is_job:
                spec: JobSpec = one.obj
                item.jobs.append((one.name, next(uids), one.manifest, spec.queue, spec.priority))
                item.job_specs.append(spec)
            elif one.kind is kinds.SECRET:  # encrypted: no value is ever stored
                sealed = self.lifecycle.secrets.seal(one.manifest)
                item.configs.append((one.kind.name, one.name, sealed))
            else:
                item.configs.append((one.kind.name, one.name, one.manifest))
        item.order = [(k, n) for k, n, _ in item.configs] + [("Job", j[0]) for j in item.jobs]
        return item

    def _warnings(self, jobs: Sequence[JobSpec]) -> dict[tuple[str, str], tuple[Reason, ...]]:
        """Why each of ``jobs`` can never be admitted with the current nodes, flavors and
        queues (see scheduling.admission_warning), by (kind, name); jobs that can be, or
        whose queue does not exist yet, are left out."""
        if not jobs:
            return {}
        queues, flavors = self.specs.recent(self.store)
        nodes = self.backend.nodes()
        basis = (tuple(nodes), tuple(flavors), tuple(queues))
        checks = self._warning_checks
        if checks is None or checks[0] != basis:
            # Built once per set of nodes, flavors and queues, not per submission.
            checks = self._warning_checks = (
                basis,
                Feasibility(nodes, flavors),
                QuotaState(basis[2], Journal()),
                {},
            )
        _, feasibility, quota, known = checks
        out: dict[tuple[str, str], tuple[Reason, ...]] = {}
        for job in jobs:
            # What admission_warning reads of a job; jobs alike in it (a batch of one
            # template) share one Reason, whose message is then rendered once.
            shape = (
                job.queue,
                tuple((ps.resources, ps.replicas) for ps in job.pod_sets),
                job.gang_minimum,
                job.topology,
            )
            if shape in known:
                warning = known[shape]
            else:
                warning = admission_warning(job, queues, flavors, nodes, feasibility, quota)
                if len(known) >= _WARNINGS_KEPT:
                    known.clear()
                known[shape] = warning
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
                # Read again: the cancel moved the job past ``job``'s resourceVersion.
                self.lifecycle.mark_deleting(self.store.get_job_by_id(job.id) or job)
            else:
                self.store.delete_job(job.id)
        self.wake()

    def delete_queue(self, name: str) -> None:
        """Delete a queue. Raises NotFoundError, or ConflictError while unfinished jobs use it."""
        with self._lock:
            if self.store.get_object("Queue", name) is None:  # stored, even if unloadable
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
            self.specs.forget_recent()

    def delete_flavor(self, name: str) -> None:
        """Delete a resource flavor. Raises NotFoundError."""
        with self._lock:
            if not self.store.delete_config("ResourceFlavor", name):
                raise NotFoundError("resourceflavor", name)
            self.specs.forget_recent()

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
                self.specs.forget_recent()
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
        """Liveness facts for /healthz and ``phalanx get``: ``status`` is ok while the loop
        (or, under leader election, the elector: followers serve too) runs, ``degraded`` while
        it runs with stored objects it cannot load (``failing``: kind, name and error of each;
        left out of scheduling, and deletable) or a reconciler whose last pass failed
        (``failed_ticks``: passes that failed as a whole, in all); ``role``, and with leader
        election ``lease`` (our holder id, the lease's holder and term, when we began leading
        and our first tick since)."""
        if self.elector is None:
            alive = self._thread is not None and self._thread.is_alive()
        else:
            alive = self.elector.is_alive
        failing = [
            {"kind": kind, "name": name, "error": error[:500]}
            for (kind, name), error in sorted(dict(self.specs.invalid).items())
        ] + [
            {"kind": "Job", "name": name, "error": error[:500]}
            for name, error in sorted(dict(self.jobs_reconciler.broken_jobs).items())
        ]
        is_degraded = bool(failing) or any(st.failing_runs for st in self.stats.values())
        status = "stopped" if not alive else "degraded" if is_degraded else "ok"
        return {
            "status": status,
            "failing": failing[:100],
            "failed_ticks": sum(st.errors for st in self.stats.values()),
            "role": self.role.value,
            **({} if self.elector is None else {"lease": self._lease_health(self.elector)}),
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

    def _lease_health(self, elector: LeaderElector) -> dict[str, object]:
        try:
            lease = self.store.get_lease(elector.config.name)
        except Exception as exc:  # /healthz must answer while the store is away
            log.warning("reading lease %s failed: %s", elector.config.name, exc)
            lease = None
        is_leader = elector.term is not None
        is_held = lease is not None and lease.expires_at > self.clock()
        return {
            "name": elector.config.name,
            "holder": elector.holder,
            "leader": lease.holder if lease is not None and is_held else None,
            "term": elector.term if is_leader else (lease.term if lease is not None else None),
            "ttl_s": elector.config.ttl_s,
            "leading_since": elector.leading_since,
            "first_tick_at": self.first_tick_at if is_leader else None,
        }
