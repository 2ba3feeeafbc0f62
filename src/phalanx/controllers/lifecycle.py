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
leaves a state that reconcile (plane.ControlPlane.start) repairs. Every transition writes a
Reason (phalanx.model.reasons): the job's ``reason_code``/``message``/``reason_facts`` and
its event carry the same code and facts.
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
from phalanx.controllers.progress import HungJob, checkpoint_dir
from phalanx.controllers.state import devices_of, pod_resources
from phalanx.controllers.wiring import pod_env, rank_order
from phalanx.model.objects import JobPhase, JobSpec, OnFailure, PodPhase, RestartPolicyKind
from phalanx.model.reasons import Fact, Reason, ReasonCode
from phalanx.model.specs import SpecError
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


def _failure_facts(pod: PodRecord, event: PodEvent) -> dict[str, Fact]:
    """What happened to the pod, as the facts of a failure reason."""
    return {
        "pod": pod_name(pod),
        "node": pod.node,
        "attempt": pod.attempt,
        "is_lost": event.kind is PodEventKind.LOST,
        "exit_code": event.exit_code,
        "pod_reason": event.reason,
        "pod_message": event.message,
    }


def job_reason(reason: Reason) -> dict[str, object]:
    """The job columns that hold ``reason``, for a Transition's ``job`` mapping."""
    return {
        "reason_code": reason.code.value,
        "message": reason.message,
        "reason_facts": reason.plain_facts(),
    }


def reason_event(at: float, reason: Reason) -> EventRecord:
    """An event that says ``reason`` (its type follows from the code)."""
    return EventRecord(
        at, reason.code.event_type, reason.code.value, reason.message, facts=reason.plain_facts()
    )


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
        control plane's (also when the stored spec no longer parses: such a job must still
        stop when cancelled or deleted)."""
        try:
            grace = self.spec_of(job).failure_policy.termination_grace_s
        except SpecError:
            grace = None
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
        admitted = Reason(
            ReasonCode.ADMITTED,
            {
                "attempt": attempt,
                "flavor": admission.flavor,
                "pods": tuple(
                    {
                        "pod": pod_name(p),
                        "node": p.node,
                        "devices": tuple((int(i), int(m)) for i, m in p.devices),
                    }
                    for p in pods
                ),
            },
        )
        self.store.transition(
            Transition(
                job.id,
                job={
                    "phase": JobPhase.ADMITTED.value,
                    "flavor": admission.flavor,
                    "attempt": attempt,
                    "admitted_at": now,
                    **job_reason(admitted),
                },
                new_pods=pods,
                events=(reason_event(now, admitted),),
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
                    started = Reason(
                        ReasonCode.STARTED, {"attempt": job.attempt, "pods": len(after)}
                    )
                    job_change.update(phase=JobPhase.RUNNING.value, **job_reason(started))
                    if job.started_at is None:
                        job_change["started_at"] = event.at
                    events.append(reason_event(event.at, started))
            elif phase is PodPhase.SUCCEEDED and all(
                v == PodPhase.SUCCEEDED.value for v in after.values()
            ):
                took = event.at - (job.started_at or job.admitted_at or event.at)
                succeeded = Reason(
                    ReasonCode.SUCCEEDED, {"pods": len(after), "duration_s": round(took, 3)}
                )
                job_change.update(
                    phase=JobPhase.SUCCEEDED.value,
                    finished_at=event.at,
                    **job_reason(succeeded),
                )
                events.append(reason_event(event.at, succeeded))
            elif phase in (PodPhase.FAILED, PodPhase.LOST):
                stop_others = True
                cause = self._cause(pod, event)
                if cause == Cause.NODE:
                    self.record_node_failure(job, pod, event)
                job_change, event_record = self._failure(
                    job, _failure_facts(pod, event), event.at, cause
                )
                events.append(event_record)
        elif (
            job.phase == JobPhase.PREEMPTED.value
            and phase is not PodPhase.RUNNING
            and not any(p.phase in _LIVE for p in pods if p.pod_id != pod.pod_id)
        ):
            requeued = Reason(ReasonCode.REQUEUED, {"had_pods": True})
            job_change.update(phase=JobPhase.PENDING.value, flavor="", **job_reason(requeued))
            events.append(reason_event(event.at, requeued))
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

    def fail_hung(self, job: JobRecord, hang: HungJob) -> None:
        """Admitted/Running → Pending or Failed: no progress within hangTimeout."""
        now = self.clock()
        facts: dict[str, Fact] = {
            "silent_s": round(hang.silent_s, 3),
            "hang_timeout_s": hang.timeout_s,
            "has_reported": hang.has_reported,
        }
        change, record = self._failure(job, facts, now, Cause.HANG)
        self.store.transition(Transition(job.id, job=change, events=(record,)))
        self.stop_pods(job.id)

    def _failure(
        self, job: JobRecord, what: dict[str, Fact], now: float, cause: str = Cause.APPLICATION
    ) -> tuple[dict[str, object], EventRecord]:
        """The job change and event for a failure (``what``: its facts), by the failure
        policy for ``cause``: restart (counted or not) after a backoff, or fail."""
        spec = self.spec_of(job)
        policy = spec.restart_policy
        fp = spec.failure_policy
        facts: dict[str, Fact] = {
            **what,
            "cause": cause,
            "restarts": job.restarts,
            "max_restarts": policy.max_restarts,
            "restart_policy": policy.kind.value,
        }
        action = OnFailure.RESTART_COUNTED
        if cause == Cause.OOM:
            action = fp.on_oom
            facts["memory_limit_bytes"] = max(
                (ps.resources.memory_bytes for ps in spec.pod_sets), default=0
            )
        elif cause == Cause.NODE:
            action = fp.on_node_failure
        if action is OnFailure.FAIL:
            facts["outcome"] = "FailByPolicy"
            code = ReasonCode.OOM_KILLED if cause == Cause.OOM else ReasonCode.FAILED
            return self._failed(now, Reason(code, facts))
        if action is OnFailure.RESTART_FREE or (
            policy.kind is RestartPolicyKind.ON_FAILURE and job.restarts < policy.max_restarts
        ):
            change: dict[str, object] = {"phase": JobPhase.PENDING.value, "flavor": ""}
            if action is OnFailure.RESTART_FREE:
                backoff = policy.backoff_s
                facts["outcome"] = "RestartFree"
            else:
                change["restarts"] = facts["restarts"] = job.restarts + 1
                backoff = policy.backoff_for(job.restarts + 1)
                facts["outcome"] = "Restart"
            facts.update(backoff_s=backoff, not_before=now + backoff)
            change["not_before"] = now + backoff
            # The job waits in Backoff; the event says what happened and what comes next.
            change.update(job_reason(Reason(ReasonCode.BACKOFF, facts)))
            return change, reason_event(now, Reason(ReasonCode.RESTARTING, facts))
        facts["outcome"] = "NoRestartsLeft"
        code = ReasonCode.HANG if cause == Cause.HANG else ReasonCode.FAILED
        return self._failed(now, Reason(code, facts))

    @staticmethod
    def _failed(now: float, reason: Reason) -> tuple[dict[str, object], EventRecord]:
        change: dict[str, object] = {
            "phase": JobPhase.FAILED.value,
            "finished_at": now,
            **job_reason(reason),
        }
        # The event is always ``Failed``; the job's code may say more (OOMKilled, Hang).
        return change, reason_event(now, Reason(ReasonCode.FAILED, reason.facts))

    def set_pending_reason(self, job: JobRecord, reason: Reason) -> None:
        """Record why a job still waits; an event only when the kind of reason changes."""
        events: tuple[EventRecord, ...] = ()
        if reason.code.value != job.reason_code:
            events = (reason_event(self.clock(), reason),)
        self.store.transition(Transition(job.id, job=job_reason(reason), events=events))

    def record_error(
        self, job: JobRecord, reconciler: str, step: str, error: BaseException
    ) -> None:
        """Contain a failure to reconcile ``job``: set its ``ReconcileError`` condition and add
        an event (once per distinct error), leaving its phase as it is."""
        now = self.clock()
        text = f"{error.__class__.__name__}: {error}"[:2000]
        reason = Reason(
            ReasonCode.RECONCILE_ERROR, {"reconciler": reconciler, "step": step, "error": text}
        )
        condition = {
            "type": "ReconcileError",
            "status": "True",
            "reason": step,
            "message": reason.message,
            "lastTransitionTime": now,
        }
        others = [c for c in job.conditions if c.get("type") != "ReconcileError"]
        current = next((c for c in job.conditions if c.get("type") == "ReconcileError"), None)
        if current is not None and current.get("message") == condition["message"]:
            return
        self.store.transition(
            Transition(
                job.id,
                job={"conditions": [*others, condition]},
                events=(reason_event(now, reason),),
            )
        )

    def clear_error(self, job: JobRecord) -> None:
        """Drop the ``ReconcileError`` condition once ``job`` reconciles again."""
        if any(c.get("type") == "ReconcileError" for c in job.conditions):
            kept = [c for c in job.conditions if c.get("type") != "ReconcileError"]
            self.store.transition(Transition(job.id, job={"conditions": kept}))

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

    def preempt(self, job: JobRecord, reason: Reason) -> None:
        """Admitted/Running → Preempted (→ Pending once the pods are gone); ``reason`` is the
        scheduler's ``Preempted`` reason."""
        now = self.clock()
        live = self.store.pods([job.id], live_only=True)
        change: dict[str, object] = {"phase": JobPhase.PREEMPTED.value, **job_reason(reason)}
        events = [reason_event(now, reason)]
        if not live:
            change.update(phase=JobPhase.PENDING.value, flavor="")
            events.append(reason_event(now, Reason(ReasonCode.REQUEUED, {"had_pods": False})))
        self.store.transition(Transition(job.id, job=change, events=tuple(events)))
        self.stop_pods(job.id)

    def cancel(self, job: JobRecord, *, is_delete: bool = False) -> None:
        """Any non-terminal phase → Cancelled (by the user, or as the first step of deleting
        the job); live pods are stopped."""
        if JobPhase(job.phase).is_terminal:
            return
        now = self.clock()
        cancelled = Reason(ReasonCode.CANCELLED, {"by": "user", "is_delete": is_delete})
        self.store.transition(
            Transition(
                job.id,
                job={
                    "phase": JobPhase.CANCELLED.value,
                    "finished_at": now,
                    **job_reason(cancelled),
                },
                events=(reason_event(now, cancelled),),
            )
        )
        self.stop_pods(job.id)

    def expire(self, job: JobRecord, max_runtime_s: float) -> None:
        """Running past maxRuntime → Failed (DeadlineExceeded); pods are stopped."""
        now = self.clock()
        facts: dict[str, Fact] = {"max_runtime_s": max_runtime_s}
        if job.started_at is not None:
            facts["ran_s"] = round(now - job.started_at, 3)
        expired = Reason(ReasonCode.DEADLINE_EXCEEDED, facts)
        self.store.transition(
            Transition(
                job.id,
                job={"phase": JobPhase.FAILED.value, "finished_at": now, **job_reason(expired)},
                events=(reason_event(now, expired),),
            )
        )
        self.stop_pods(job.id)
