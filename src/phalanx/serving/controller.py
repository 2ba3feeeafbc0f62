"""The Service controller: a reconciler of the control loop, the router's ``RouteSource`` and
its ``LoadSink``.

Each replica of a Service is a Job it owns (``metadata.ownerReferences``, labels
``phalanx.dev/service`` and ``phalanx.dev/revision``), so the scheduler, quotas, placement,
pending reasons and the garbage collector apply to replicas unchanged. The replica Jobs are
the truth: everything else here is rebuilt from them after a restart. One pass
(``reconcile``):

  1. read what changed since the last pass from the revision log (nothing: only the clock
     and the load can move anything, and they are looked at in step 3);
  2. per Service (a failure is contained to it: an event, and the others go on):
     a. remember its revision (a hash of the template) as a ``ServiceRevision`` object, so
        that a canary or a rollback can still create replicas of an older template;
     b. classify its replicas: Pending (with the scheduler's reason), Starting, Ready (the
        readiness probe answers), Failed, Terminating;
     c. decide how many replicas it needs (the autoscaler, over the router's load samples,
        bounded by ``minReplicas``/``maxReplicas``; a waiting request wakes it from zero);
     d. split them over revisions (``spec.traffic``) and plan the step
        (``serving.rollout.plan_rollout``): create replicas, remove others (first taken out
        of the routes and drained for ``drain_s``, then deleted: their pods get the usual
        graceful stop);
  3. publish routes for the router (ready, non-draining replicas) and probe targets.

Local replicas listen on a free port the controller picks (env ``PORT`` and
``PHALANX_PORT``) on 127.0.0.1; on Kubernetes on ``spec.port`` at the pod's IP.

Several servers on one store (leader election): only the leader reconciles, but every
server's router routes. The leader writes each Service's route as a ``ServiceEndpoints``
object whenever it changes (step 3); a follower's controller runs a small thread
(``_follow``) that reads them when the store's revision moves and serves them as its routes,
and writes what its router reports (load samples, and demand at zero) as its own
``ServiceLoad`` object, which the leader folds into its autoscaler at its next pass (step 1).
The samples of several routers are summed, not interleaved (``serving.load.LoadMerger``).
"""

from __future__ import annotations

import logging
import re
import secrets
import socket
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from phalanx.controllers.errors import ConflictError, NotFoundError
from phalanx.controllers.leader import Role
from phalanx.controllers.plane import ControlPlane
from phalanx.model.llm import llm_to_manifest
from phalanx.model.objects import JobPhase
from phalanx.model.reasons import Reason, ReasonCode
from phalanx.model.service import (
    LATEST,
    PORT_ANNOTATION,
    REVISION_LABEL,
    SERVICE_LABEL,
    ReplicaTemplate,
    ScaleMetric,
    ServiceSpec,
    parse_service,
    service_to_manifest,
)
from phalanx.model.specs import SpecError
from phalanx.serving.autoscaler import (
    AutoscalerSpec,
    AutoscalerState,
    ScaleCode,
    decide,
    observe,
)
from phalanx.serving.endpoints import (
    Endpoint,
    LoadSample,
    Route,
    load_from_json,
    load_to_json,
    route_from_json,
    route_to_json,
)
from phalanx.serving.load import LoadMerger
from phalanx.serving.prober import ProbeTarget, ReadinessProber
from phalanx.serving.replicas import (
    ENDPOINTS_KIND,
    LOAD_KIND,
    REVISION_KIND,
    SERVICE_KIND,
    endpoints_manifest,
    load_manifest,
    replica_manifest,
    revision_manifest,
    revision_template,
)
from phalanx.serving.rollout import (
    ReplicaPhase,
    ReplicaState,
    RolloutPlan,
    plan_rollout,
    split_replicas,
)
from phalanx.serving.scale_events import ScaleEventState, scale_event
from phalanx.serving.views import ReplicaView, RevisionView, ScaleRecord, ServiceView
from phalanx.store import EventRecord, JobRecord

log = logging.getLogger(__name__)

#: Pending reasons that mean "the scheduler cannot admit it now" (not merely "just queued").
_BLOCKED = frozenset(
    {
        ReasonCode.QUOTA_EXCEEDED.value,
        ReasonCode.EXCEEDS_QUEUE_LIMIT.value,
        ReasonCode.UNSCHEDULABLE.value,
        ReasonCode.NEVER_FITS.value,
        ReasonCode.WAITING_FOR_CAPACITY.value,
        ReasonCode.QUEUE_NOT_FOUND.value,
        ReasonCode.FLAVOR_NOT_FOUND.value,
    }
)


#: The newest events of a Service that its view carries.
EVENTS_SHOWN = 20


def autoscaler_spec(spec: ServiceSpec) -> AutoscalerSpec:
    """The autoscaler's settings of Service ``spec``."""
    a = spec.autoscaling
    return AutoscalerSpec(
        target=a.target,
        metric="rps" if a.metric is ScaleMetric.RPS else "concurrency",
        min_replicas=spec.min_replicas,
        max_replicas=spec.max_replicas,
        scale_to_zero_after_s=spec.scale_to_zero_after_s,
        stable_window_s=a.stable_window_s,
        panic_window_s=a.panic_window_s,
        panic_threshold=a.panic_threshold,
        waiting_target=spec.llm.autoscaling.waiting_target if spec.llm else None,
        kv_cache_target=spec.llm.autoscaling.kv_cache_target if spec.llm else None,
    )


@dataclass(slots=True)
class _Runtime:
    """What the controller keeps in memory per Service (lost on restart; rebuilt)."""

    autoscaler: AutoscalerState = field(default_factory=AutoscalerState)
    #: The settings ``autoscaler`` was folded with (a changed spec starts it again).
    autoscaler_spec: AutoscalerSpec | None = None
    pending: list[LoadSample] = field(default_factory=list)
    #: The routers' samples, summed into one stream for the autoscaler.
    merger: LoadMerger = field(default_factory=LoadMerger)
    demand_at: float | None = None
    decisions: deque[ScaleRecord] = field(default_factory=lambda: deque(maxlen=20))
    #: What was last recorded as a scaling event (phalanx.serving.scale_events).
    events: ScaleEventState = field(default_factory=ScaleEventState)
    desired: int = 0
    waiting: str = ""
    error: str = ""


@dataclass(slots=True)
class ServingConfig:
    """Settings of the Service controller."""

    #: Where local replicas listen (their URL's host).
    host: str = "127.0.0.1"
    #: A removed replica leaves the routes this long before its pods are stopped.
    drain_s: float = 2.0
    #: The router's address, to show in describe ("" until it listens).
    router_url: str = ""
    #: With leader election: how often a follower reads the leader's routes and writes its
    #: router's load (demand is written at once).
    follow_interval_s: float = 0.1
    #: A follower's ServiceLoad older than this is deleted by the leader (its server is gone).
    load_expiry_s: float = 600.0
    #: At most one scaling event per Service this often (phalanx.serving.scale_events).
    scale_event_interval_s: float = 10.0


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class ServiceController:
    """Reconciles Services into replica Jobs; serves routes to the router and takes its load.
    Thread-safe: ``reconcile`` runs on the loop, ``routes``/``report``/``demand`` on the
    router's event loop (cheap, never blocking on the store), reads on API threads."""

    name = "services"

    def __init__(
        self,
        plane: ControlPlane,
        config: ServingConfig | None = None,
        *,
        prober: ReadinessProber | None = None,
    ) -> None:
        self.plane = plane
        self.store = plane.store
        self.config = config or ServingConfig()
        self.clock = plane.clock
        self.prober = prober or ReadinessProber(on_change=self._readiness_changed)
        self._lock = threading.RLock()
        self._publish_lock = threading.Lock()
        self._runtime: dict[str, _Runtime] = {}
        self._revision_seen: int | None = None
        self._services: dict[str, tuple[int, ServiceSpec | None, str, Any]] = {}
        self._replicas: dict[str, JobRecord] = {}
        self._revisions: dict[str, dict[str, Any]] = {}
        self._draining: dict[str, float] = {}
        self._routes: tuple[Route, ...] = ()
        self._routes_dirty = True
        self._reported_errors: set[tuple[str, str]] = set()
        self._started = False
        #: Kubernetes: each replica's pod Ready condition, as last seen.
        self._pod_ready: dict[str, bool] = {}
        # With leader election (see the module docstring).
        #: Leader: the routes as last written to the store (None: not read yet).
        self._stored_routes: dict[str, Route] | None = None
        #: Leader: the newest ``seq`` folded in, per follower's ServiceLoad.
        self._load_seq: dict[str, int] = {}
        #: Follower: what its router reported since the last write, and when it waited.
        self._outbox: list[LoadSample] = []
        self._outbox_demand: dict[str, float] = {}
        self._outbox_seq = 0
        self._outbox_totals: dict[tuple[str, str], int] = {}
        #: Follower: the store revision its routes were read at; the replicas they say are
        #: ready.
        self._follow_seen: int | None = None
        self._follower_ready: frozenset[str] = frozenset()
        self._follow_wake = threading.Event()
        self._follow_stop = threading.Event()
        self._follower: threading.Thread | None = None
        elector = plane.elector
        self._server_name = (
            re.sub(r"[^A-Za-z0-9.-]", "-", elector.holder)[:200] if elector is not None else ""
        )
        if elector is not None:
            self._follower = threading.Thread(
                target=self._follow, name="phalanx-serving-follow", daemon=True
            )
            self._follower.start()

    @classmethod
    def attach(cls, plane: ControlPlane, config: ServingConfig | None = None) -> ServiceController:
        """The controller in ``plane.reconcilers``, added (with ``config``) if none is."""
        for reconciler in plane.reconcilers:
            if isinstance(reconciler, ServiceController):
                return reconciler
        controller = cls(plane, config)
        plane.reconcilers.append(controller)
        return controller

    def close(self) -> None:
        self._follow_stop.set()
        self._follow_wake.set()
        if self._follower is not None:
            self._follower.join(10)
        self.prober.stop()

    # ---- the loop ----

    def reconcile(self, now: float) -> None:
        if not self._started:
            self.prober.start()
            self._started = True
        self._observe()
        with self._lock:
            names = sorted(self._services)
        for name in names:
            try:
                self._reconcile_service(name, now)
            except Exception as exc:  # contained to this Service
                self._contain(name, now, exc)
        self._finish_drains(now)
        self._forget_revisions_of_deleted()
        if not self._is_local():
            self._routes_dirty = True  # pod IPs and Ready conditions change without a write
        self._publish()
        if self.plane.elector is not None:
            try:
                self._store_routes(now)
            except Exception:  # the store failing: written again at the next pass
                log.exception("writing the routes for the other servers failed")

    def _observe(self) -> None:
        """1. Read Services and replica Jobs again where the revision log shows writes."""
        revision = self.store.revision()
        if revision == self._revision_seen:
            return
        changed_jobs: set[str] | None = None
        services_changed = True
        loads_changed = self.plane.elector is not None
        if self._revision_seen is not None:
            changes, oldest = self.store.changes(self._revision_seen, limit=50_000)
            if (
                not (oldest > self._revision_seen + 1 and self._revision_seen > 0)
                and len(changes) < 50_000
            ):
                # A job's labels are fixed when it is submitted (jobs cannot be changed
                # once submitted), so only a job added since, or one already known as a
                # replica, can be a replica now: other jobs' writes (reasons, phases) are
                # not read again.
                changed_jobs = {
                    c.name
                    for c in changes
                    if c.kind == "Job" and (c.type == "ADDED" or c.name in self._replicas)
                }
                services_changed = any(c.kind in (SERVICE_KIND, REVISION_KIND) for c in changes)
                loads_changed = loads_changed and any(c.kind == LOAD_KIND for c in changes)
        self._revision_seen = revision
        if services_changed:
            self._load_services()
        if loads_changed:
            self._read_loads()
        if changed_jobs is None:
            jobs = [j for j in self.store.list_jobs(manifests=False) if SERVICE_LABEL in j.labels]
            with self._lock:
                self._replicas = {j.name: j for j in jobs}
        elif changed_jobs:
            found = {}
            names = sorted(changed_jobs)
            for i in range(0, len(names), 500):
                for j in self.store.list_jobs(names=names[i : i + 500], manifests=False):
                    found[j.name] = j
            with self._lock:
                for job_name in changed_jobs:
                    job = found.get(job_name)
                    if job is not None and SERVICE_LABEL in job.labels:
                        self._replicas[job_name] = job
                    else:
                        self._replicas.pop(job_name, None)
                        self._draining.pop(job_name, None)
        self._routes_dirty = True

    def _load_services(self) -> None:
        stored = {o.name: o for o in self.store.list_objects(SERVICE_KIND)}
        revisions = {o.name: o.manifest for o in self.store.list_objects(REVISION_KIND)}
        with self._lock:
            loaded: dict[str, tuple[int, ServiceSpec | None, str, Any]] = {}
            for name, obj in stored.items():
                cached = self._services.get(name)
                if cached is not None and cached[0] == obj.resource_version:
                    loaded[name] = cached
                    continue
                try:
                    spec: ServiceSpec | None = parse_service(obj.manifest, f"Service {name}")
                    error = ""
                except SpecError as exc:
                    spec, error = None, str(exc)
                loaded[name] = (obj.resource_version, spec, error, obj)
            self._services = loaded
            self._revisions = revisions
            for gone in set(self._runtime) - set(loaded):
                del self._runtime[gone]

    def _contain(self, name: str, now: float, exc: BaseException) -> None:
        text = f"{exc.__class__.__name__}: {exc}"[:2000]
        stats = self.plane.stats.get(self.name)
        if stats is not None:
            stats.object_errors += 1
        with self._lock:
            self._runtime.setdefault(name, _Runtime()).error = text
        if (name, text) in self._reported_errors:
            return
        self._reported_errors.add((name, text))
        log.error("services: Service %s: %s", name, text, exc_info=exc)
        reason = Reason(
            ReasonCode.RECONCILE_ERROR,
            {"reconciler": self.name, "step": "reconcile service", "error": text},
        )
        try:
            self.store.record_event(EventRecord.of(now, reason, kind=SERVICE_KIND, name=name))
        except Exception:  # the store itself failing is logged, not raised
            log.exception("recording the error on Service %s failed", name)

    def _reconcile_service(self, name: str, now: float) -> None:
        with self._lock:
            _, spec, error, obj = self._services[name]
            runtime = self._runtime.setdefault(name, _Runtime())
        if spec is None:
            raise ValueError(error or f"Service {name} does not parse")
        runtime.error = ""
        # a. the current revision is remembered
        current = spec.revision
        revision_name = f"{name}-{current}"
        if revision_name not in self._revisions:
            self._remember_revision(name, obj.uid, spec, now)
        # b. classify replicas
        replicas = self._replicas_of(name)
        states = [self._state(job) for job in replicas]
        # c. how many
        desired_total = self._decide(spec, runtime, states, now)
        # d. split and plan
        desired = split_replicas(desired_total, spec.traffic, current)
        for revision in desired:
            if revision != current and f"{name}-{revision}" not in self._revisions:
                raise ValueError(
                    f"spec.traffic names revision {revision}, which this Service never had; "
                    f"known: {', '.join(self.revision_names(name)) or 'none'}"
                )
        plan = plan_rollout(
            states,
            desired,
            max_surge=spec.rollout.max_surge,
            max_unavailable=spec.rollout.max_unavailable,
            min_available=spec.min_available,
        )
        runtime.waiting = plan.waiting
        owner = obj.manifest.get("metadata", {}).get("owner")
        self._apply_plan(name, obj.uid, spec, plan, now, owner if isinstance(owner, str) else "")

    def _replicas_of(self, name: str) -> list[JobRecord]:
        with self._lock:
            return [j for j in self._replicas.values() if j.labels.get(SERVICE_LABEL) == name]

    def _state(self, job: JobRecord) -> ReplicaState:
        revision = job.labels.get(REVISION_LABEL, "")
        phase = JobPhase(job.phase)
        if job.is_deleting or job.name in self._draining:
            state = ReplicaPhase.TERMINATING
        elif phase.is_terminal:
            state = ReplicaPhase.FAILED
        elif phase in (JobPhase.PENDING, JobPhase.PREEMPTED):
            state = ReplicaPhase.PENDING
        elif phase is JobPhase.RUNNING and self._is_ready(job.name):
            state = ReplicaPhase.READY
        else:
            state = ReplicaPhase.STARTING
        is_blocked = state is ReplicaPhase.PENDING and job.reason_code in _BLOCKED
        return ReplicaState(job.name, revision, state, is_blocked, job.created_at)

    def _decide(
        self, spec: ServiceSpec, runtime: _Runtime, states: Sequence[ReplicaState], now: float
    ) -> int:
        """c. Replicas wanted (phalanx.serving.autoscaler over the router's samples), and a
        replica at once when a request waits at zero; a decision is kept when it changes."""
        settings = autoscaler_spec(spec)
        with self._lock:
            samples, runtime.pending = runtime.pending, []
            demand_at = runtime.demand_at
        if runtime.autoscaler_spec != settings:
            runtime.autoscaler, runtime.autoscaler_spec = AutoscalerState(), settings
        state = runtime.autoscaler
        merged = runtime.merger.merge(samples, now)
        if merged is not None:
            state = observe(settings, state, merged)
        ready = sum(1 for s in states if s.phase is ReplicaPhase.READY)
        decision = decide(settings, state, now, ready)
        runtime.autoscaler = decision.state
        desired, code, why = decision.desired, decision.code.value, decision.message
        facts = dict(decision.facts)
        is_waiting = demand_at is not None and now - demand_at < spec.scale_to_zero_after_s
        if desired == 0 and is_waiting:
            desired, code = 1, ScaleCode.SCALE_FROM_ZERO.value
            why = "a request waits and no replica is ready: scale to 1"
            facts["waiting"] = max(1, state.waiting)
        if desired != runtime.desired or not runtime.decisions:
            runtime.decisions.append(ScaleRecord(now, desired, code, why))
        runtime.desired = desired
        live = sum(
            1 for s in states if s.phase not in (ReplicaPhase.TERMINATING, ReplicaPhase.FAILED)
        )
        event, runtime.events = scale_event(
            runtime.events,
            service=spec.name,
            desired=desired,
            live=live,
            decision=code,
            facts=facts,
            now=now,
            interval_s=self.config.scale_event_interval_s,
        )
        if event is not None:
            self.store.record_event(EventRecord.of(now, event, kind=SERVICE_KIND, name=spec.name))
        return desired

    def _apply_plan(
        self,
        name: str,
        uid: str,
        spec: ServiceSpec,
        plan: RolloutPlan,
        now: float,
        owner: str = "",
    ) -> None:
        # replicas leaving: out of the routes first, deleted once drained
        for replica, why in plan.remove:
            job = self._replicas.get(replica)
            if job is None:
                continue
            if not self._is_ready(replica) or job.phase != JobPhase.RUNNING.value:
                self._delete_replica(replica, why)  # never routed to: no need to drain
            elif replica not in self._draining:
                log.info("Service %s: draining replica %s: %s", name, replica, why)
                with self._lock:
                    self._draining[replica] = now
                    self._routes_dirty = True
        if plan.create:
            manifests = [self._replica_manifest(name, uid, spec, rev, owner) for rev in plan.create]
            self.plane.apply(manifests, f"Service {name}")
            log.info("Service %s: created %d replica(s)", name, len(manifests))

    def _finish_drains(self, now: float) -> None:
        """Delete the replicas drained for ``drain_s`` (whatever their Service's state)."""
        for replica, since in list(self._draining.items()):
            job = self._replicas.get(replica)
            if job is None:
                with self._lock:
                    self._draining.pop(replica, None)
            elif now - since >= self.config.drain_s and not job.is_deleting:
                try:
                    self._delete_replica(replica, "drained")
                except Exception:  # the store failing: retried at the next pass
                    log.exception("deleting drained replica %s failed", replica)

    def _delete_replica(self, replica: str, why: str) -> None:
        log.info("removing replica %s: %s", replica, why)
        try:
            self.plane.delete_job(replica)
        except NotFoundError:
            pass
        except ConflictError as exc:
            log.info("removing replica %s waits: %s", replica, exc)

    def _replica_manifest(
        self, name: str, uid: str, spec: ServiceSpec, revision: str, owner: str = ""
    ) -> dict[str, object]:
        template, port = spec.template, spec.port
        if revision != spec.revision:
            template, port = self._template_of(name, revision)
        if self._is_local():
            port = self._pick_port()
        replica = f"{name[:40]}-{revision[:5]}-{secrets.token_hex(3)}"
        manifest = replica_manifest(name, uid, spec, revision, template, port, replica)
        if owner:  # the Service's owner owns its replicas (their logs, their env)
            manifest["metadata"]["owner"] = owner  # type: ignore[index]
        return manifest

    def _is_local(self) -> bool:
        return self.plane.backend.name != "kubernetes"

    def _pick_port(self) -> int:
        used = {j.annotations.get(PORT_ANNOTATION) for j in self._replicas.values()}
        while True:
            port = _free_port(self.config.host)
            if str(port) not in used:
                return port

    # ---- revisions ----

    def _remember_revision(self, name: str, uid: str, spec: ServiceSpec, now: float) -> None:
        revision_name = f"{name}-{spec.revision}"
        manifest = revision_manifest(name, uid, spec, now)
        self.store.apply([(REVISION_KIND, revision_name, manifest)], [], now)
        with self._lock:
            self._revisions[revision_name] = manifest

    def _template_of(self, name: str, revision: str) -> tuple[ReplicaTemplate, int]:
        return revision_template(self._revisions[f"{name}-{revision}"])

    def revision_names(self, name: str) -> list[str]:
        """The revisions Service ``name`` has had, oldest first."""
        with self._lock:
            found = [
                m["spec"] for m in self._revisions.values() if m["spec"].get("service") == name
            ]
        return [str(s["revision"]) for s in sorted(found, key=lambda s: s.get("createdAt", 0))]

    def _forget_revisions_of_deleted(self) -> None:
        with self._lock:
            orphans = [
                key
                for key, m in self._revisions.items()
                if m["spec"].get("service") not in self._services
            ]
        for key in orphans:
            self.store.delete_config(REVISION_KIND, key)
            with self._lock:
                self._revisions.pop(key, None)

    # ---- routes, probes ----

    def _endpoint_url(self, job: JobRecord) -> str:
        """Where replica ``job`` listens: 127.0.0.1 and its port locally; on Kubernetes its
        first pod's IP (whose Ready condition is remembered for ``_is_ready``)."""
        port = job.annotations.get(PORT_ANNOTATION, "")
        if not port:
            return ""
        if self._is_local():
            return f"http://{self.config.host}:{port}"
        address = getattr(self.plane.backend, "pod_address", None)
        if address is None:
            return ""
        pods = [
            p
            for p in self.store.pods([job.id], live_only=True)
            if p.attempt == job.attempt and p.index == 0
        ]
        found = address(pods[0].pod_id) if pods else None
        if found is None:
            self._pod_ready.pop(job.name, None)
            return ""
        host, is_ready = found
        self._pod_ready[job.name] = is_ready
        return f"http://{host}:{port}"

    def _is_ready(self, replica: str) -> bool:
        """Locally: the readiness probe answers; on Kubernetes: the pod's Ready condition; on
        a follower: the leader's routes say so."""
        if self._is_following():
            return replica in self._follower_ready
        if self._is_local():
            return self.prober.is_ready(replica)
        return self._pod_ready.get(replica, False)

    def _readiness_changed(self) -> None:
        with self._lock:
            self._routes_dirty = True
        self.plane.wake()
        self._publish()

    def _publish(self) -> None:
        """3. Rebuild the routes and the probe targets (one thread at a time: the loop and
        the prober both publish, and an older snapshot must not be written last)."""
        with self._publish_lock:
            self._publish_now()

    def _publish_now(self) -> None:
        targets: dict[str, ProbeTarget] = {}
        with self._lock:
            if not self._routes_dirty:
                return
            self._routes_dirty = False
            services = dict(self._services)
            replicas = list(self._replicas.values())
            draining = set(self._draining)
        by_service: dict[str, list[JobRecord]] = {}
        for job in replicas:
            by_service.setdefault(job.labels.get(SERVICE_LABEL, ""), []).append(job)
        routes: list[Route] = []
        for name, (_, spec, _, _) in sorted(services.items()):
            if spec is None:
                continue
            endpoints: list[Endpoint] = []
            for job in sorted(by_service.get(name, []), key=lambda j: j.id):
                url = self._endpoint_url(job)
                if not url or job.phase != JobPhase.RUNNING.value or job.is_deleting:
                    continue
                if self._is_local():
                    targets[job.name] = ProbeTarget(
                        url, spec.readiness.path, spec.readiness.period_s, spec.readiness.timeout_s
                    )
                if job.name in draining:
                    continue
                endpoints.append(
                    Endpoint(
                        url,
                        job.labels.get(REVISION_LABEL, ""),
                        job.name,
                        self._is_ready(job.name),
                    )
                )
            traffic = tuple(
                (spec.revision if t.revision == LATEST else t.revision, float(t.percent))
                for t in spec.traffic
            )
            routes.append(
                Route(
                    service=name,
                    path_prefix=spec.route_prefix,
                    hosts=spec.hosts,
                    endpoints=tuple(endpoints),
                    traffic=traffic,
                    max_concurrency=spec.max_concurrency,
                    queue_limit=spec.queue_limit,
                    cold_start_timeout_s=spec.cold_start_timeout_s,
                    # The LLM gateway routes by these (phalanx.serving.llm.gateway).
                    extra={"llm": llm_to_manifest(spec.llm)} if spec.llm else {},
                )
            )
        self.prober.set_targets(targets)
        with self._lock:
            self._routes = tuple(routes)

    # ---- RouteSource, LoadSink ----

    def routes(self) -> Sequence[Route]:
        """The routes now (a cached tuple: cheap, never blocks on the store)."""
        return self._routes

    def report(self, samples: Sequence[LoadSample]) -> None:
        if self._is_following():  # for the leader, through the store
            with self._lock:
                self._outbox.extend(samples)
                del self._outbox[:-10_000]
            return
        with self._lock:
            for sample in samples:
                if sample.service in self._services:
                    runtime = self._runtime.setdefault(sample.service, _Runtime())
                    if len(runtime.pending) < 10_000:
                        runtime.pending.append(sample)

    def demand(self, service: str) -> None:
        now = self.clock()
        if self._is_following():  # for the leader, through the store, at once
            with self._lock:
                self._outbox_demand[service] = now
            self._follow_wake.set()
            return
        with self._lock:
            if service not in self._services:
                return
            self._runtime.setdefault(service, _Runtime()).demand_at = now
        self.plane.wake()

    # ---- several servers on one store ----

    def _is_following(self) -> bool:
        return self.plane.elector is not None and self.plane.role is Role.FOLLOWER

    def _store_routes(self, now: float) -> None:
        """Leader, 3 (continued): write the routes that changed as ServiceEndpoints objects,
        delete those of Services gone."""
        if self._stored_routes is None:
            stored: dict[str, Route] = {}
            for obj in self.store.list_objects(ENDPOINTS_KIND):
                try:
                    stored[obj.name] = route_from_json(obj.manifest["spec"])
                except (KeyError, TypeError, ValueError):
                    stored[obj.name] = Route(service=obj.name, path_prefix="")  # rewritten
            self._stored_routes = stored
        routes = {r.service: r for r in self._routes}
        changed = [r for name, r in routes.items() if self._stored_routes.get(name) != r]
        if changed:
            configs = [
                (ENDPOINTS_KIND, r.service, endpoints_manifest(route_to_json(r))) for r in changed
            ]
            self.store.apply(configs, [], now)
            for route in changed:
                self._stored_routes[route.service] = route
        for name in set(self._stored_routes) - set(routes):
            self.store.delete_config(ENDPOINTS_KIND, name)
            del self._stored_routes[name]

    def _read_loads(self) -> None:
        """Leader, 1 (continued): fold the followers' new ServiceLoad writes in (their
        samples as if their routers had reported here; their demand as demand); delete
        those of servers gone for ``load_expiry_s``."""
        now = self.clock()
        fresh_s = 5.0
        for obj in self.store.list_objects(LOAD_KIND):
            spec = obj.manifest.get("spec", {})
            try:
                seq, at = int(spec["seq"]), float(spec["at"])
                if now - at > self.config.load_expiry_s:
                    self.store.delete_config(LOAD_KIND, obj.name)
                    continue
                if obj.name == self._server_name or seq <= self._load_seq.get(obj.name, -1):
                    continue
                self._load_seq[obj.name] = seq
                samples = [load_from_json(item) for item in spec.get("samples", ())]
                demand = {str(k): float(v) for k, v in dict(spec.get("demand", {})).items()}
            except (KeyError, TypeError, ValueError) as exc:
                log.warning("ignoring ServiceLoad %s: %s", obj.name, exc)
                continue
            self.report([s for s in samples if now - s.at <= fresh_s])
            for service, waited_at in sorted(demand.items()):
                if now - waited_at <= fresh_s:
                    self.demand(service)

    def _follow(self) -> None:
        """A follower's thread: read the leader's routes when the store moves, and write the
        router's load (see the module docstring). Does nothing while this server leads."""
        was_following = False
        while not self._follow_stop.is_set():
            self._follow_wake.wait(self.config.follow_interval_s)
            self._follow_wake.clear()
            is_following = self._is_following()
            if is_following != was_following:
                # Changes of role start each side afresh.
                self._follow_seen, self._stored_routes = None, None
                with self._lock:
                    self._outbox.clear()
                    self._outbox_demand.clear()
                    self._routes_dirty = True
                was_following = is_following
            if not is_following:
                continue
            try:
                self._send_load()
                self._read_routes()
            except Exception:  # the store failing: tried again at the next turn
                log.exception("following the leader's routes failed")

    def _send_load(self) -> None:
        """Write what the router reported since the previous write, unless it is all idle
        (nothing in flight or waiting, no new request): an idle router counts as absent."""
        with self._lock:
            samples, self._outbox = self._outbox, []
            demand, self._outbox_demand = self._outbox_demand, {}
        source = f"server:{self._server_name}"
        busy = []
        for sample in samples:
            key = (sample.service, sample.source)
            is_new = self._outbox_totals.get(key) != sample.requests_total
            self._outbox_totals[key] = sample.requests_total
            if is_new or sample.in_flight or sample.waiting or (sample.in_flight_avg or 0) > 0:
                busy.append(replace(sample, source=sample.source or source))
        if not busy and not demand:
            return
        self._outbox_seq += 1
        now = self.clock()
        manifest = load_manifest(
            self._server_name, self._outbox_seq, now, [load_to_json(s) for s in busy], demand
        )
        self.store.apply([(LOAD_KIND, self._server_name, manifest)], [], now)

    def _read_routes(self) -> None:
        """A follower's routes: the leader's ServiceEndpoints, read again when the store's
        revision moved."""
        revision = self.store.revision()
        if revision == self._follow_seen:
            return
        routes: list[Route] = []
        for obj in self.store.list_objects(ENDPOINTS_KIND):
            try:
                routes.append(route_from_json(obj.manifest["spec"]))
            except (KeyError, TypeError, ValueError) as exc:
                log.warning("ignoring ServiceEndpoints %s: %s", obj.name, exc)
        ready = frozenset(e.replica for r in routes for e in r.endpoints if e.ready)
        with self._lock:
            if self._is_following():  # not if this server began to lead meanwhile
                self._routes = tuple(routes)
                self._follower_ready = ready
        self._follow_seen = revision

    # ---- reads (describe, get) ----

    def views(self) -> list[ServiceView]:
        """Every Service, by name, read fresh from the store."""
        return [self._view(o.name, o) for o in self.store.list_objects(SERVICE_KIND)]

    def view(self, name: str) -> ServiceView:
        """One Service. Raises NotFoundError."""
        obj = self.store.get_object(SERVICE_KIND, name)
        if obj is None:
            raise NotFoundError("service", name)
        return self._view(name, obj)

    def _view(self, name: str, obj: Any) -> ServiceView:
        try:
            spec: ServiceSpec | None = parse_service(obj.manifest, f"Service {name}")
            error = ""
        except SpecError as exc:
            spec, error = None, str(exc)
        jobs = [
            j for j in self.store.list_jobs(manifests=False) if j.labels.get(SERVICE_LABEL) == name
        ]
        with self._lock:
            runtime = self._runtime.get(name) or _Runtime()
            draining = set(self._draining)
            revisions = {
                str(m["spec"]["revision"]): m["spec"]
                for m in self._revisions.values()
                if m["spec"].get("service") == name
            }
            decisions = tuple(runtime.decisions)
            desired_total, waiting = runtime.desired, runtime.waiting
            error = error or runtime.error
            responses = dict(runtime.merger.responses)  # a copy: the loop adds to it
            recent = runtime.merger.recent_responses()
            window_s = runtime.merger.window_s
        replicas: list[ReplicaView] = []
        for job in sorted(jobs, key=lambda j: j.id):
            url = self._endpoint_url(job)  # first: on Kubernetes it reads the Ready condition
            state = self._state(job)
            reason = None
            if state.phase is ReplicaPhase.PENDING and job.reason_code:
                reason = {
                    "code": job.reason_code,
                    "message": job.message,
                    "facts": dict(job.reason_facts),
                }
            replicas.append(
                ReplicaView(
                    job.name,
                    state.revision,
                    state.phase.value,
                    url if state.phase in (ReplicaPhase.READY, ReplicaPhase.STARTING) else "",
                    job.created_at,
                    reason,
                    job.name in draining,
                )
            )
        current = spec.revision if spec is not None else ""
        desired = split_replicas(desired_total, spec.traffic if spec else (), current)
        percents: dict[str, float] = {}
        if spec is not None:
            for t in spec.traffic or ():
                percents[current if t.revision == LATEST else t.revision] = float(t.percent)
            if not spec.traffic:
                percents[current] = 100.0
        names = sorted(
            set(revisions) | {r.revision for r in replicas} | ({current} if current else set()),
            key=lambda r: (revisions.get(r, {}).get("createdAt", float("inf")), r),
        )
        revision_views = tuple(
            RevisionView(
                rev,
                float(revisions.get(rev, {}).get("createdAt", 0.0)),
                dict(revisions.get(rev, {}).get("template", {})),
                desired.get(rev, 0),
                sum(1 for r in replicas if r.revision == rev and r.phase != "Terminating"),
                sum(1 for r in replicas if r.revision == rev and r.phase == "Ready"),
                percents.get(rev, 0.0),
                rev == current,
            )
            for rev in names
        )
        url = ""
        if self.config.router_url and spec is not None:
            url = self.config.router_url.rstrip("/") + spec.route_prefix
        return ServiceView(
            name=name,
            uid=obj.uid,
            manifest=obj.manifest,
            spec=spec,
            created_at=obj.created_at,
            revision=current,
            desired=desired_total,
            replicas=tuple(replicas),
            revisions=revision_views,
            decisions=decisions,
            waiting=waiting,
            error=error,
            responses=tuple(sorted((r, c, n) for (r, c), n in responses.items())),
            recent_responses=recent,
            responses_window_s=window_s,
            url=url,
            events=tuple(
                e for e in self.store.object_events(SERVICE_KIND, name) if e.at >= obj.created_at
            )[-EVENTS_SHOWN:],
        )

    # ---- writes: promote, rollback ----

    def promote(self, name: str, revision: str | None = None) -> ServiceView:
        """Send every request to ``revision`` (default: the template's, ending a canary):
        the template becomes that revision's and ``spec.traffic`` is removed. Raises
        NotFoundError, or ConflictError for a revision the Service never had."""
        obj = self.store.get_object(SERVICE_KIND, name)
        if obj is None:
            raise NotFoundError("service", name)
        spec = parse_service(obj.manifest, f"Service {name}")
        if revision is not None and revision not in (LATEST, spec.revision):
            self._load_services()
            if revision not in self.revision_names(name):
                raise ConflictError(
                    f"Service {name} has no revision {revision}; its revisions: "
                    f"{', '.join(self.revision_names(name))}"
                )
            template, port = self._template_of(name, revision)
            spec = replace(spec, template=template, port=port)
        spec = replace(spec, traffic=())
        self._write_spec(obj.manifest, spec)
        return self.view(name)

    def rollback(self, name: str, revision: str | None = None) -> ServiceView:
        """Go back to ``revision`` (default: the newest revision before the template's
        one): its template, all the traffic. Raises NotFoundError, or ConflictError when
        there is nothing to go back to."""
        obj = self.store.get_object(SERVICE_KIND, name)
        if obj is None:
            raise NotFoundError("service", name)
        spec = parse_service(obj.manifest, f"Service {name}")
        self._load_services()
        if revision is None:
            older = [r for r in self.revision_names(name) if r != spec.revision]
            if not older:
                raise ConflictError(
                    f"Service {name} has only one revision ({spec.revision}); nothing to roll "
                    "back to"
                )
            revision = older[-1]
        return self.promote(name, revision)

    def _write_spec(self, manifest: Mapping[str, Any], spec: ServiceSpec) -> None:
        written = service_to_manifest(spec)
        written["metadata"] = dict(manifest.get("metadata", {}))
        self.plane.apply([written], f"Service {spec.name}")
