"""Job and pod state transitions, each written as one store transaction, then the backend call.

Transitions (job phases):
  Pending   → Admitted   admission: pods created with placements, then launched
  Admitted  → Running    every pod of the attempt reported running
  Running   → Succeeded  every pod of the attempt succeeded
  Admitted/Running → Pending    a pod failed and the failure policy for its cause restarts the
                                whole gang (other pods are stopped): application errors, hangs
                                (and OOM with onOOM: Restart) count (restarts+1, not_before =
                                now + exponential backoff); node-side failures do not (the node
                                gets the evidence, see health.py; not_before = now + backoff)
  Admitted/Running → Failed     a pod failed and the policy says fail (OOM by default, or no
                                restart left), or maxRuntime passed
  Admitted/Running → Preempted  chosen as a victim; pods are stopped
  Preempted → Pending    the last pod stopped (requeued)
  any non-terminal → Cancelled  by the user; pods are stopped
The store transaction always comes first and the backend call second, so a crash in between
leaves a state that reconcile (plane.ControlPlane.start) repairs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from phalanx.backends.base import (
    NODE_FAULT,
    OOM_KILLED,
    Backend,
    PodEvent,
    PodEventKind,
    PodLaunch,
)
from phalanx.controllers.health import HealthTracker, NodeFailure
from phalanx.controllers.progress import checkpoint_dir
from phalanx.controllers.state import devices_of, pod_resources
from phalanx.controllers.wiring import pod_env, rank_order
from phalanx.model.objects import JobPhase, JobSpec, OnFailure, PodPhase, RestartPolicyKind
from phalanx.model.resources import format_gpu, format_memory
from phalanx.scheduling.snapshot import Admission
from phalanx.store import EventRecord, JobRecord, PodRecord, Store, Transition

log = logging.getLogger(__name__)

_EVENT_TO_POD_PHASE = {
    PodEventKind.RUNNING: PodPhase.RUNNING,
    PodEventKind.SUCCEEDED: PodPhase.SUCCEEDED,
    PodEventKind.FAILED: PodPhase.FAILED,
    PodEventKind.STOPPED: PodPhase.STOPPED,
    PodEventKind.LOST: PodPhase.LOST,
}
_LIVE = (PodPhase.PENDING.value, PodPhase.RUNNING.value)
#: Backend reasons that blame the node rather than the workload (LOST pods always do).
NODE_SIDE_REASONS = frozenset({NODE_FAULT, "NodeLost", "NodeNotReady"})


class Cause:
    """Why a pod failed, as far as the failure policy is concerned."""

    APPLICATION = "Application"
    OOM = "OOM"
    NODE = "Node"
    HANG = "Hang"


def pod_name(pod: PodRecord) -> str:
    """The pod's short name within its job: ``worker-1``."""
    return f"{pod.pod_set}-{pod.index}"


def _describe_failure(pod: PodRecord, kind: PodEventKind, event: PodEvent) -> str:
    if kind is PodEventKind.LOST:
        return (
            f"pod {pod_name(pod)} was lost on node {pod.node} ({event.reason or 'no exit status'})"
        )
    # A plain non-zero exit needs no more words; signals and launch errors do.
    detail = f" ({event.message})" if event.message and event.reason != "Error" else ""
    return f"pod {pod_name(pod)} on node {pod.node} exited with code {event.exit_code}{detail}"


class Lifecycle:
    """Applies transitions for one control plane."""

    def __init__(
        self,
        store: Store,
        backend: Backend,
        clock: Callable[[], float],
        spec_of: Callable[[JobRecord], JobSpec],
        data_dir: Path,
        grace_period_s: float,
        health: HealthTracker | None = None,
    ) -> None:
        self.store = store
        self.backend = backend
        self.clock = clock
        self.spec_of = spec_of
        self.data_dir = data_dir
        self.grace_period_s = grace_period_s
        self.health = health or HealthTracker(store, clock)

    def grace_for(self, job: JobRecord) -> float:
        """SIGTERM → SIGKILL grace of ``job``: its spec's terminationGracePeriod, else the
        control plane's."""
        grace = self.spec_of(job).failure_policy.termination_grace_s
        return self.grace_period_s if grace is None else grace

    # ---- admission ----

    def admit(self, job: JobRecord, admission: Admission) -> None:
        """Pending → Admitted: create the attempt's pods with their placements, then launch."""
        now = self.clock()
        spec = self.spec_of(job)
        attempt = job.attempt + 1
        ordered = rank_order(spec, admission.placements)
        rendezvous = self.backend.rendezvous(job.name, attempt, ordered[0].node)
        ckpt_dir = checkpoint_dir(self.data_dir, job)
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        envs = pod_env(spec, ordered, rendezvous, attempt, str(ckpt_dir))
        pods = tuple(
            PodRecord(
                pod_id=f"{job.name}-{p.pod_set}-{p.index}-a{attempt}-{job.uid[:6]}",
                job_id=job.id,
                pod_set=p.pod_set,
                index=p.index,
                attempt=attempt,
                node=p.node,
                devices=[[d.index, d.milli] for d in p.devices],
                env=envs[(p.pod_set, p.index)],
                phase=PodPhase.PENDING.value,
                created_at=now,
            )
            for p in ordered
        )
        where = "; ".join(
            f"{pod_name(p)} → {p.node}"
            + (f" [gpu {','.join(_share(d) for d in p.devices)}]" if p.devices else "")
            for p in pods
        )
        self.store.transition(
            Transition(
                job.id,
                job={
                    "phase": JobPhase.ADMITTED.value,
                    "flavor": admission.flavor,
                    "attempt": attempt,
                    "admitted_at": now,
                    "reason_code": "",
                    "message": f"admitted on flavor {admission.flavor}",
                },
                new_pods=pods,
                events=(
                    EventRecord(
                        now,
                        "Normal",
                        "Admitted",
                        f"attempt {attempt} on flavor {admission.flavor}: {where}",
                    ),
                ),
            )
        )
        for pod in pods:
            self.launch(job, pod)

    def launch(self, job: JobRecord, pod: PodRecord) -> None:
        """Start one stored pod on the backend (idempotent); a launch error fails the pod."""
        spec = self.spec_of(job)
        pod_set = next(ps for ps in spec.pod_sets if ps.name == pod.pod_set)
        resources = pod_resources(spec, pod.pod_set)
        enforce = spec.failure_policy.enforce_memory and resources.memory_bytes > 0
        try:
            self.backend.launch(
                PodLaunch(
                    pod_id=pod.pod_id,
                    job=job.name,
                    namespace=spec.namespace,
                    pod_set=pod.pod_set,
                    index=pod.index,
                    attempt=pod.attempt,
                    node=pod.node,
                    devices=devices_of(pod),
                    resources=resources,
                    command=pod_set.command,
                    args=pod_set.args,
                    env={k: str(v) for k, v in pod.env.items()},
                    annotations=spec.annotations,
                    checkpoint_claim=spec.checkpoint_claim,
                    working_dir=pod_set.working_dir,
                    image=pod_set.image,
                    grace_period_s=self.grace_for(job),
                    memory_limit_bytes=resources.memory_bytes if enforce else None,
                )
            )
        except OSError as exc:
            log.warning("launching %s failed: %s", pod.pod_id, exc)
            self.on_pod_event(
                PodEvent(
                    pod.pod_id, PodEventKind.FAILED, self.clock(), 128, "LaunchError", str(exc)
                )
            )

    # ---- pod events ----

    def on_pod_event(self, event: PodEvent) -> None:
        """Record what happened to a pod and move its job along. Repeated events are no-ops."""
        pod = self.store.pod(event.pod_id)
        if pod is None or pod.phase not in _LIVE:
            return
        job = self.store.get_job_by_id(pod.job_id)
        if job is None:
            return
        phase = _EVENT_TO_POD_PHASE[event.kind]
        if phase is PodPhase.RUNNING and pod.phase == PodPhase.RUNNING.value:
            return
        pod_change: dict[str, object] = {"phase": phase.value}
        if phase is PodPhase.RUNNING:
            pod_change["started_at"] = event.at
        else:
            pod_change.update(
                finished_at=event.at,
                exit_code=event.exit_code,
                reason=event.reason,
                message=event.message,
            )
        pods = self.store.pods([job.id])
        current = [p for p in pods if p.attempt == job.attempt]
        after = {p.pod_id: (phase.value if p.pod_id == pod.pod_id else p.phase) for p in current}
        job_change: dict[str, object] = {}
        events: list[EventRecord] = []
        stop_others = False
        is_current = pod.attempt == job.attempt
        if is_current and job.phase in (JobPhase.ADMITTED.value, JobPhase.RUNNING.value):
            if phase is PodPhase.RUNNING and all(
                v == PodPhase.RUNNING.value for v in after.values()
            ):
                if job.phase == JobPhase.ADMITTED.value:
                    job_change.update(
                        phase=JobPhase.RUNNING.value, message=f"{_pods(len(after))} running"
                    )
                    if job.started_at is None:
                        job_change["started_at"] = event.at
                    events.append(
                        EventRecord(
                            event.at,
                            "Normal",
                            "Started",
                            f"{_pods(len(after), every=True)} of attempt {job.attempt} running",
                        )
                    )
            elif phase is PodPhase.SUCCEEDED and all(
                v == PodPhase.SUCCEEDED.value for v in after.values()
            ):
                took = event.at - (job.started_at or job.admitted_at or event.at)
                job_change.update(
                    phase=JobPhase.SUCCEEDED.value,
                    finished_at=event.at,
                    message=f"{_pods(len(after), every=True)} succeeded",
                )
                events.append(
                    EventRecord(
                        event.at,
                        "Normal",
                        "Succeeded",
                        f"{_pods(len(after), every=True)} succeeded after {took:.1f}s",
                    )
                )
            elif phase in (PodPhase.FAILED, PodPhase.LOST):
                stop_others = True
                cause = self._cause(pod, event)
                what = _describe_failure(pod, event.kind, event)
                if cause == Cause.NODE:
                    self.record_node_failure(job, pod, event)
                job_change, event_record = self._failure(job, what, event.at, cause, pod.node)
                events.append(event_record)
        elif (
            job.phase == JobPhase.PREEMPTED.value
            and phase is not PodPhase.RUNNING
            and not any(p.phase in _LIVE for p in pods if p.pod_id != pod.pod_id)
        ):
            job_change.update(
                phase=JobPhase.PENDING.value, flavor="", message="requeued after preemption"
            )
            events.append(
                EventRecord(event.at, "Normal", "Requeued", "all pods stopped; back in the queue")
            )
        self.store.transition(
            Transition(job.id, job=job_change, pods={pod.pod_id: pod_change}, events=tuple(events))
        )
        if stop_others:
            self.stop_pods(job.id, exclude=pod.pod_id)

    def _cause(self, pod: PodRecord, event: PodEvent) -> str:
        if event.reason == OOM_KILLED:
            return Cause.OOM
        if event.kind is PodEventKind.LOST or event.reason in NODE_SIDE_REASONS:
            return Cause.NODE
        if self.health.get(pod.node).is_quarantined:
            return Cause.NODE
        node = next((n for n in self.backend.nodes() if n.name == pod.node), None)
        if node is not None and (not node.is_ready or node.is_quarantined):
            return Cause.NODE
        return Cause.APPLICATION

    def record_node_failure(self, job: JobRecord, pod: PodRecord, event: PodEvent) -> None:
        """Add the failure as evidence against the pod's node; log a quarantine it tips."""
        failure = NodeFailure(event.at, job.name, pod.attempt, pod_name(pod), event.reason)
        health = self.health.record_failure(pod.node, failure)
        if health.quarantined_at == event.at:
            log.warning("node %s quarantined: %s", pod.node, health.quarantine_reason)

    def fail_hung(self, job: JobRecord, what: str) -> None:
        """Admitted/Running → Pending or Failed: no progress within hangTimeout."""
        now = self.clock()
        change, event = self._failure(job, what, now, Cause.HANG)
        self.store.transition(Transition(job.id, job=change, events=(event,)))
        self.stop_pods(job.id)

    def _failure(
        self,
        job: JobRecord,
        what: str,
        now: float,
        cause: str = Cause.APPLICATION,
        node: str = "",
    ) -> tuple[dict[str, object], EventRecord]:
        spec = self.spec_of(job)
        policy = spec.restart_policy
        fp = spec.failure_policy
        action = OnFailure.RESTART_COUNTED
        if cause == Cause.OOM:
            action = fp.on_oom
            limit = max((ps.resources.memory_bytes for ps in spec.pod_sets), default=0)
            what = f"{what}: killed for exceeding its memory limit {format_memory(limit)}"
            if action is OnFailure.FAIL:
                what += " (failurePolicy.onOOM: Fail; raise the pod's memory or set onOOM: Restart)"
        elif cause == Cause.NODE:
            action = fp.on_node_failure
            what = f"{what} (node-side failure on node {node})"
        elif cause == Cause.HANG:
            what = f"hang: {what}"
        if action is OnFailure.RESTART_FREE:
            backoff = policy.backoff_s
            message = f"{what}; restarting the whole gang from its last checkpoint, not counted against maxRestarts ({job.restarts}/{policy.max_restarts} used), after {backoff:g}s backoff"
            change: dict[str, object] = {
                "phase": JobPhase.PENDING.value,
                "not_before": now + backoff,
                "flavor": "",
                "reason_code": "Backoff",
                "message": message,
            }
            return change, EventRecord(now, "Warning", "Restarting", message)
        if action is OnFailure.FAIL:
            change = {
                "phase": JobPhase.FAILED.value,
                "finished_at": now,
                "reason_code": "OOMKilled" if cause == Cause.OOM else "Failed",
                "message": what,
            }
            return change, EventRecord(now, "Warning", "Failed", what)
        if policy.kind is RestartPolicyKind.ON_FAILURE and job.restarts < policy.max_restarts:
            restarts = job.restarts + 1
            backoff = policy.backoff_for(restarts)
            message = f"{what}; restarting the whole gang (restart {restarts}/{policy.max_restarts}) after {backoff:g}s backoff"
            change = {
                "phase": JobPhase.PENDING.value,
                "restarts": restarts,
                "not_before": now + backoff,
                "flavor": "",
                "reason_code": "Backoff",
                "message": message,
            }
            return change, EventRecord(now, "Warning", "Restarting", message)
        suffix = f" after {job.restarts} restarts" if job.restarts else ""
        if policy.kind is RestartPolicyKind.NEVER:
            suffix = " (restartPolicy Never)"
        message = f"{what}{suffix}"
        change = {
            "phase": JobPhase.FAILED.value,
            "finished_at": now,
            "reason_code": "Hang" if cause == Cause.HANG else "Failed",
            "message": message,
        }
        return change, EventRecord(now, "Warning", "Failed", message)

    def set_pending_reason(self, job: JobRecord, code: str, message: str) -> None:
        """Record why a job still waits; an event only when the kind of reason changes."""
        events: tuple[EventRecord, ...] = ()
        if code != job.reason_code:
            events = (EventRecord(self.clock(), _pending_event_type(code), code, message),)
        self.store.transition(
            Transition(job.id, job={"reason_code": code, "message": message}, events=events)
        )

    def mark_deleting(self, job: JobRecord) -> None:
        """Flag a job for deletion once its pods have stopped."""
        self.store.transition(Transition(job.id, job={"is_deleting": True}))

    # ---- stopping ----

    def stop_pods(self, job_id: int, exclude: str = "") -> None:
        """Ask the backend to stop every live pod of a job (idempotent), with the job's grace
        period (SIGTERM, then SIGKILL once it is over)."""
        job = self.store.get_job_by_id(job_id)
        grace = self.grace_period_s if job is None else self.grace_for(job)
        for pod in self.store.pods([job_id], live_only=True):
            if pod.pod_id != exclude:
                self.backend.stop(pod.pod_id, grace)

    def preempt(self, job: JobRecord, message: str) -> None:
        """Admitted/Running → Preempted (→ Pending once the pods are gone)."""
        now = self.clock()
        live = self.store.pods([job.id], live_only=True)
        change: dict[str, object] = {
            "phase": JobPhase.PREEMPTED.value,
            "message": message,
            "reason_code": "Preempted",
        }
        events = [EventRecord(now, "Warning", "Preempted", message)]
        if not live:
            change.update(phase=JobPhase.PENDING.value, flavor="")
            events.append(
                EventRecord(now, "Normal", "Requeued", "no pods to stop; back in the queue")
            )
        self.store.transition(Transition(job.id, job=change, events=tuple(events)))
        self.stop_pods(job.id)

    def cancel(self, job: JobRecord, message: str = "cancelled by user") -> None:
        """Any non-terminal phase → Cancelled; live pods are stopped."""
        if JobPhase(job.phase).is_terminal:
            return
        now = self.clock()
        self.store.transition(
            Transition(
                job.id,
                job={
                    "phase": JobPhase.CANCELLED.value,
                    "finished_at": now,
                    "reason_code": "Cancelled",
                    "message": message,
                },
                events=(EventRecord(now, "Normal", "Cancelled", message),),
            )
        )
        self.stop_pods(job.id)

    def expire(self, job: JobRecord, max_runtime_s: float) -> None:
        """Running past maxRuntime → Failed (DeadlineExceeded); pods are stopped."""
        now = self.clock()
        message = f"ran longer than maxRuntime {max_runtime_s:g}s; stopped"
        self.store.transition(
            Transition(
                job.id,
                job={
                    "phase": JobPhase.FAILED.value,
                    "finished_at": now,
                    "reason_code": "DeadlineExceeded",
                    "message": message,
                },
                events=(EventRecord(now, "Warning", "DeadlineExceeded", message),),
            )
        )
        self.stop_pods(job.id)


def _share(device: list[object]) -> str:
    index, milli = int(str(device[0])), int(str(device[1]))
    return str(index) if milli >= 1000 else f"{index}:{format_gpu(milli)}"


def _pending_event_type(code: str) -> str:
    return "Warning" if code in ("Unschedulable", "QueueNotFound") else "Normal"


def _pods(count: int, *, every: bool = False) -> str:
    """``1 pod``, ``3 pods``; with ``every``: ``the pod``, ``all 3 pods``."""
    if count == 1:
        return "the pod" if every else "1 pod"
    return f"all {count} pods" if every else f"{count} pods"
