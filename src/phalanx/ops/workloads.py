"""Services and pipeline runs as the doctor sees them, and their analyzers.

``read_services(plane)`` and ``read_runs(plane)`` read the stored Services (with their replica
Jobs, and the Service controller's view of readiness and cold starts when the controller runs
in this plane) and PipelineRuns into plain records; ``analyze_services`` and
``analyze_pipeline_runs`` are pure functions of an ``Observation`` (observation.py).

The Service controller lives in ``phalanx.serving``, which this package must not import (the
two are independent layers): it is reached through ``ServiceReadSide``, a protocol its
``views()`` satisfies structurally.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, cast

from phalanx.model.objects import JobPhase
from phalanx.model.service import REVISION_LABEL, SERVICE_LABEL, ServiceSpec, parse_service
from phalanx.model.specs import SpecError
from phalanx.ops.findings import Finding, FindingCode, Severity

if TYPE_CHECKING:
    from phalanx.controllers.plane import ControlPlane
    from phalanx.ops.doctor import DoctorSettings
    from phalanx.ops.observation import Observation

SERVICE_KIND = "Service"
RUN_KIND = "PipelineRun"
#: The autoscaler's code for a decision that wakes a Service from zero replicas.
SCALE_FROM_ZERO = "ScaleFromZero"
#: Replica phases as the Service controller names them; ``Running``: readiness unknown (no
#: controller in this plane).
READY, STARTING, PENDING, FAILED, RUNNING = "Ready", "Starting", "Pending", "Failed", "Running"


# ---- what is read -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReplicaFacts:
    """One replica Job of a Service: its replica phase, its job's phase and reason, and since
    when it is in its current state (started, else created)."""

    name: str
    phase: str
    job_phase: str
    reason_code: str
    since: float


@dataclass(frozen=True, slots=True)
class ServiceFacts:
    """A Service: what it wants, its replicas, and its cold starts (times the autoscaler
    woke it from zero, newest last; empty without a controller in this plane)."""

    name: str
    queue: str
    min_replicas: int
    desired: int
    replicas: tuple[ReplicaFacts, ...]
    cold_starts: tuple[float, ...] = ()
    waiting: str = ""
    error: str = ""
    is_readiness_known: bool = False
    #: When replica Jobs of this Service were deleted (failed and replaced, or drained),
    #: from the store's revision log, oldest first.
    replaced: tuple[float, ...] = ()
    #: What its replicas answered through the routers: (replica, status class ``2xx`` …
    #: ``5xx``, count) since the controller began, and within the last ``responses_window_s``.
    responses: tuple[tuple[str, str, int], ...] = ()
    recent_responses: tuple[tuple[str, str, int], ...] = ()
    responses_window_s: float = 0.0

    @property
    def ready(self) -> int:
        return sum(1 for r in self.replicas if r.phase == READY)


@dataclass(frozen=True, slots=True)
class StepFacts:
    """One step of a PipelineRun as its status records it."""

    name: str
    state: str
    job: str
    message: str
    finished_at: float | None


@dataclass(frozen=True, slots=True)
class RunFacts:
    """A PipelineRun: its phase and steps, in the order of its status."""

    name: str
    phase: str
    message: str
    steps: tuple[StepFacts, ...]


class _ReplicaLike(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def phase(self) -> str: ...


class _DecisionLike(Protocol):
    @property
    def at(self) -> float: ...
    @property
    def code(self) -> str: ...


class _ServiceViewLike(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def desired(self) -> int: ...
    @property
    def replicas(self) -> Sequence[_ReplicaLike]: ...
    @property
    def decisions(self) -> Sequence[_DecisionLike]: ...
    @property
    def waiting(self) -> str: ...
    @property
    def error(self) -> str: ...
    @property
    def responses(self) -> Sequence[tuple[str, str, int]]: ...
    @property
    def recent_responses(self) -> Sequence[tuple[str, str, int]]: ...
    @property
    def responses_window_s(self) -> float: ...


class ServiceReadSide(Protocol):
    """What the doctor reads of the Service controller (phalanx.serving.controller)."""

    def views(self) -> Sequence[_ServiceViewLike]: ...


def service_read_side(plane: ControlPlane) -> ServiceReadSide | None:
    """The Service controller among the plane's reconcilers, if it runs there."""
    for reconciler in plane.reconcilers:
        if getattr(reconciler, "name", "") == "services" and callable(
            getattr(reconciler, "views", None)
        ):
            return cast("ServiceReadSide", reconciler)
    return None


def read_services(plane: ControlPlane, *, with_history: bool = True) -> tuple[ServiceFacts, ...]:
    """Every stored Service with its replicas; see ServiceFacts. ``with_history``: also the
    replicas deleted lately (a read of the revision log's last entries; the metrics skip it)."""
    objects = plane.store.list_objects(SERVICE_KIND)
    if not objects:
        return ()
    views: dict[str, _ServiceViewLike] = {}
    side = service_read_side(plane)
    if side is not None:
        views = {v.name: v for v in side.views()}
    jobs: dict[str, list[ReplicaFacts]] = {}
    for j in plane.store.list_jobs(manifests=False):
        service = j.labels.get(SERVICE_LABEL)
        if service:
            phase = JobPhase(j.phase)
            jobs.setdefault(service, []).append(
                ReplicaFacts(
                    j.name,
                    _replica_phase(phase),
                    j.phase,
                    j.reason_code,
                    j.started_at or j.created_at,
                )
            )
    deleted = _deleted_replicas(plane, {o.name for o in objects}) if with_history else {}
    out = []
    for obj in objects:
        try:
            spec: ServiceSpec | None = parse_service(obj.manifest, f"Service {obj.name}")
        except SpecError:
            spec = None
        view = views.get(obj.name)
        replicas = tuple(jobs.get(obj.name, ()))
        if view is not None:  # the controller knows readiness and draining
            phases = {r.name: r.phase for r in view.replicas}
            replicas = tuple(
                ReplicaFacts(
                    r.name, phases.get(r.name, r.phase), r.job_phase, r.reason_code, r.since
                )
                for r in replicas
            )
        min_replicas = spec.min_replicas if spec else 0
        out.append(
            ServiceFacts(
                obj.name,
                spec.queue if spec else "",
                min_replicas,
                view.desired if view is not None else min_replicas,
                replicas,
                tuple(d.at for d in view.decisions if d.code == SCALE_FROM_ZERO) if view else (),
                view.waiting if view else "",
                view.error if view else "",
                view is not None,
                tuple(deleted.get(obj.name, ())),
                tuple(view.responses) if view else (),
                tuple(view.recent_responses) if view else (),
                view.responses_window_s if view else 0.0,
            )
        )
    return tuple(out)


#: How far back in the revision log replica deletions are looked for.
_LOG_WINDOW = 20_000


def _deleted_replicas(plane: ControlPlane, services: set[str]) -> dict[str, list[float]]:
    """Times replica Jobs of each Service were deleted, from the revision log: replicas are
    named ``<service[:40]>-<revision[:5]>-<6 hex digits>`` (serving.controller), and the
    Service's revisions are stored as ServiceRevision objects."""
    prefixes: dict[str, str] = {}
    for rev in plane.store.list_objects("ServiceRevision"):
        service, revision = rev.labels.get(SERVICE_LABEL, ""), rev.labels.get(REVISION_LABEL, "")
        if service in services and revision:
            prefixes[f"{service[:40]}-{revision[:5]}-"] = service
    if not prefixes:
        return {}
    newest = plane.store.revision()
    changes, _ = plane.store.changes(max(0, newest - _LOG_WINDOW), limit=_LOG_WINDOW)
    out: dict[str, list[float]] = {}
    for c in changes:
        if c.kind != "Job" or c.type != "DELETED":
            continue
        head, suffix = c.name[:-6], c.name[-6:]
        owner = prefixes.get(head)
        if owner is not None and all(ch in "0123456789abcdef" for ch in suffix):
            out.setdefault(owner, []).append(c.at)
    return out


def _replica_phase(phase: JobPhase) -> str:
    if phase in (JobPhase.PENDING, JobPhase.PREEMPTED):
        return PENDING
    if phase.is_terminal:
        return FAILED if phase is JobPhase.FAILED else phase.value
    return RUNNING if phase is JobPhase.RUNNING else STARTING


def read_runs(plane: ControlPlane) -> tuple[RunFacts, ...]:
    """Every stored PipelineRun with its steps' states."""
    out = []
    for obj in plane.store.list_objects(RUN_KIND):
        status = obj.manifest.get("status") or {}
        steps = status.get("steps") if isinstance(status, Mapping) else None
        facts = []
        for name, s in (steps or {}).items() if isinstance(steps, Mapping) else ():
            if isinstance(s, Mapping):
                finished = s.get("finishedAt")
                facts.append(
                    StepFacts(
                        str(name),
                        str(s.get("state", "")),
                        str(s.get("job", "")),
                        str(s.get("message", "")),
                        float(finished) if isinstance(finished, int | float) else None,
                    )
                )
        out.append(
            RunFacts(
                obj.name,
                str(status.get("phase", "")) if isinstance(status, Mapping) else "",
                str(status.get("message", "")) if isinstance(status, Mapping) else "",
                tuple(facts),
            )
        )
    return tuple(out)


# ---- services -----------------------------------------------------------------------------


def analyze_services(obs: Observation, settings: DoctorSettings) -> list[Finding]:
    """Services that want replicas and have none ready (why: pending replicas, whose own
    causes the pending analyzer names; failing replicas; replicas that run but never pass
    their readiness probe), and Services that keep waking from zero."""
    out: list[Finding] = []
    for s in obs.services:
        ref = f"service/{s.name}"
        wanted = max(s.desired, s.min_replicas)
        if wanted > 0 and s.ready == 0:
            out.append(_unavailable(obs, s, ref, settings))
        errors = _errors(s, ref, settings)
        if errors is not None:
            out.append(errors)
        recent = [t for t in s.cold_starts if obs.now - t <= settings.cold_start_window_s]
        if len(recent) >= settings.cold_starts and s.min_replicas == 0:
            out.append(
                Finding(
                    FindingCode.SERVICE_COLD_STARTS,
                    Severity.WARNING,
                    ref,
                    f"service {s.name} woke from zero replicas {len(recent)} times in the last "
                    f"{settings.cold_start_window_s:.0f}s: each first request waits for a replica "
                    "to start",
                    f"set spec.minReplicas: 1 on service {s.name}, or a longer "
                    "spec.scaleToZeroAfter",
                    0.8,
                    ref,
                    {"cold_starts": len(recent), "window_s": settings.cold_start_window_s},
                )
            )
    return out


def _errors(s: ServiceFacts, ref: str, settings: DoctorSettings) -> Finding | None:
    """ServiceErrors: the replicas answered 5xx to at least ``service_error_share`` of at
    least ``service_error_min_answers`` requests in the routers' window."""
    total = sum(n for _, _, n in s.recent_responses)
    by_replica: dict[str, int] = {}
    for replica, code_class, n in s.recent_responses:
        if code_class == "5xx":
            by_replica[replica] = by_replica.get(replica, 0) + n
    errors = sum(by_replica.values())
    if total < settings.service_error_min_answers or errors < settings.service_error_share * total:
        return None
    share = errors / total
    worst = max(sorted(by_replica), key=lambda r: by_replica[r])
    answered = {r: 0 for r in by_replica}
    for replica, _, n in s.recent_responses:
        if replica in answered:
            answered[replica] += n
    # Errors from one replica of several: that replica is the cause, not the program.
    is_one_replica = len(by_replica) == 1 and len({r for r, _, _ in s.recent_responses}) > 1
    facts: dict[str, object] = {
        "answers": total,
        "errors_5xx": errors,
        "share": round(share, 4),
        "threshold": settings.service_error_share,
        "window_s": s.responses_window_s,
        "by_replica": {r: f"{by_replica[r]}/{answered[r]}" for r in sorted(by_replica)},
    }
    where = (
        f"all from replica {worst}"
        if is_one_replica
        else f"from {len(by_replica)} replica(s), most from {worst}"
    )
    fix = (
        f"read replica {worst}'s log (phalanx logs {worst}); if only it fails, delete it "
        f"(phalanx delete job {worst}) and the Service starts a fresh one"
        if is_one_replica
        else f"read the replicas' logs (phalanx logs {worst}), fix the server program or "
        f"service {s.name}'s spec.template and phalanx apply -f it again (a canary through "
        "spec.traffic limits the damage)"
    )
    return Finding(
        FindingCode.SERVICE_ERRORS,
        Severity.CRITICAL if share >= 0.5 else Severity.WARNING,
        ref,
        f"service {s.name} answered {errors} of {total} requests with 5xx "
        f"({share:.0%}, threshold {settings.service_error_share:.0%}) in the last "
        f"{s.responses_window_s:.0f}s, {where}",
        fix,
        0.85 if is_one_replica else 0.8,
        ref,
        facts,
    )


def _unavailable(obs: Observation, s: ServiceFacts, ref: str, settings: DoctorSettings) -> Finding:
    by_phase: dict[str, list[str]] = {}
    for r in s.replicas:
        by_phase.setdefault(r.phase, []).append(r.name)
    facts: dict[str, object] = {
        "wanted": max(s.desired, s.min_replicas),
        "ready": 0,
        "replicas": {phase: sorted(names) for phase, names in sorted(by_phase.items())},
    }
    failed = [r for r in s.replicas if r.phase == FAILED]
    replaced = [t for t in s.replaced if obs.now - t <= settings.replaced_window_s]
    if not failed and len(replaced) >= settings.loop_failures:
        # Failed replicas are deleted and replaced at once: the revision log remembers them.
        facts["replaced"] = len(replaced)
        facts["window_s"] = settings.replaced_window_s
        return Finding(
            FindingCode.SERVICE_CRASH_LOOP,
            Severity.CRITICAL,
            ref,
            f"service {s.name} has no ready replica: {len(replaced)} replicas were removed "
            f"and replaced in the last {settings.replaced_window_s:.0f}s without one becoming "
            "ready",
            f"read the newest replica's log (phalanx logs REPLICA; phalanx describe service "
            f"{s.name} lists them), fix the server program or spec.template, then phalanx "
            "apply the Service again",
            0.75,
            ref,
            facts,
        )
    if failed:
        codes = sorted({_exit_code(obs, r.name) for r in failed} - {""})
        facts["exit_codes"] = codes
        return Finding(
            FindingCode.SERVICE_CRASH_LOOP,
            Severity.CRITICAL,
            ref,
            f"service {s.name} has no ready replica: {len(failed)} replica(s) failed"
            + (f" (exit codes {', '.join(codes)})" if codes else ""),
            f"read a failed replica's log (phalanx logs {failed[-1].name}), fix the server "
            "program or spec.template, then phalanx apply the Service again",
            0.9,
            ref,
            facts,
        )
    pending = [r for r in s.replicas if r.phase == PENDING]
    slow = [
        r
        for r in s.replicas
        if r.phase == STARTING
        and s.is_readiness_known
        and r.job_phase == JobPhase.RUNNING.value
        and obs.now - r.since >= settings.readiness_grace_s
    ]
    if slow and not pending:
        facts["not_ready_s"] = round(max(obs.now - r.since for r in slow), 1)
        return Finding(
            FindingCode.SERVICE_NOT_READY,
            Severity.CRITICAL,
            ref,
            f"service {s.name}: {len(slow)} replica(s) run but have not passed the readiness "
            f"probe for {facts['not_ready_s']}s",
            "check that the server listens on $PORT and answers the readiness probe "
            f"(spec.readinessProbe.path); phalanx logs {slow[0].name}",
            0.85,
            ref,
            facts,
        )
    if pending:
        facts["pending_reasons"] = {r.name: r.reason_code for r in pending}
    return Finding(
        FindingCode.SERVICE_UNAVAILABLE,
        Severity.CRITICAL,
        ref,
        f"service {s.name} wants {facts['wanted']} replica(s) and has none ready"
        + (
            f": {len(pending)} pending ({', '.join(sorted({r.reason_code for r in pending}))})"
            if pending
            else (f": {s.waiting}" if s.waiting else "")
        ),
        "see the pending replicas' causes (phalanx doctor job REPLICA), or phalanx describe "
        f"service {s.name}",
        0.9,
        ref,
        facts,
    )


def _exit_code(obs: Observation, job: str) -> str:
    view = obs.job(job)
    if view is None:
        return ""
    for e in reversed(view.events):
        code = e.facts.get("exit_code")
        if code is not None:
            return str(code)
    return ""


# ---- pipeline runs ------------------------------------------------------------------------


def analyze_pipeline_runs(obs: Observation, causes: Sequence[Finding]) -> list[Finding]:
    """Runs with a failed step: the step, the steps it held back, and the step job's own
    root cause (``causes``: the other analyzers' findings) as evidence. A step that failed
    without a job (no queue, an unreadable result) is the root cause itself."""
    out: list[Finding] = []
    for run in obs.runs:
        failed = [s for s in run.steps if s.state == "Failed"]
        if not failed:
            continue
        held = sorted(s.name for s in run.steps if s.state == "UpstreamFailed")
        for step in failed:
            ref = f"pipelinerun/{run.name}"
            job_causes = [f for f in causes if step.job and f.subject == f"job/{step.job}"]
            facts: dict[str, object] = {
                "step": step.name,
                "job": step.job,
                "message": step.message,
                "upstream_failed": held,
                "causes": [f"{f.code.value} {f.object}" for f in job_causes],
            }
            cause = f"; cause: {job_causes[0].summary}" if job_causes else ""
            fix = (
                f"fix the cause ({job_causes[0].fix}), then rerun from the failed step "
                f"(phalanx pipeline resume {run.name})"
                if job_causes
                else f"{step.message or 'see phalanx describe pipelinerun ' + run.name}; then "
                f"rerun (phalanx pipeline resume {run.name})"
            )
            out.append(
                Finding(
                    FindingCode.PIPELINE_STEP_FAILED,
                    Severity.CRITICAL,
                    ref,
                    f"pipeline run {run.name}: step {step.name} failed"
                    + (f" (job {step.job})" if step.job else "")
                    + (f", holding back {', '.join(held)}" if held else "")
                    + cause,
                    fix,
                    0.95,
                    ref,
                    facts,
                )
            )
    return out
