"""Job and pod state transitions: each one store transaction, guarded, then the backend call.

The job lifecycle is the table in ``phalanx.model.transitions.JOB_TRANSITIONS`` (from → to,
with what causes each edge); this module decides which edge to take and writes it:

  admit        Pending → Admitted (the attempt's pods with their placements), then launch
  on_pod_event Admitted → Running / Succeeded, or a failure (below); Preempted → Pending once
               the last pod stopped; otherwise only the pod's own row changes
  failures     Admitted/Running → Pending (restart the gang after a backoff: application errors
               and hangs count, node-side failures do not; the node gets the evidence, see
               health.py) or → Failed (by policy, or no restart left); the other pods stop
  expire       Running → Failed (maxRuntime passed); pods stop
  preempt      Admitted/Running → Preempted (→ Pending at once when no pod is live); pods stop
  cancel       any non-terminal phase → Cancelled (by the user, or first step of a delete)
  set_pending_reason, record_error, clear_error, mark_deleting: no phase change

**Guards.** Every write is a ``Transition`` with ``expect_phase``/``expect_version`` of the
JobRecord the decision was made on: the store applies it only if the job is still in that
phase at that resourceVersion (compare-and-set in the same transaction), and a phase change
only along an edge of the table; otherwise it writes nothing and logs why. Pod rows have no
version of their own: every pod write is part of a transition of its job, which bumps the
job's resourceVersion, so the job's version guards its pods too (pods are read after the job
they are decided with, so a pod written in between makes the guard fail).

**On refusal** nothing that was decided on the refused write happens: no launch of pods that
were not written, no stop for a cancel, preemption, failure or deadline that did not land, no
node evidence for a failure that was not recorded. Writes of the loop (admit, preempt,
expire, fail_hung, set_pending_reason, clear_error) are then left to the next tick, which
reads again and decides again. Writes that must not be lost are decided again at once on a
fresh read, up to ``MAX_WRITE_ATTEMPTS`` times, while the refusal came from another writer
moving the job first: a backend's pod event (the backend reports it once), a user's cancel
(which then reports that the job had already finished, if it had) and delete, and a
reconcile error. If the store refuses a write although nobody moved the job (this control
plane lost its lease: ``Store.fence``) or the job kept moving, ConflictError says so.

The store transaction always comes first and the backend call second, so a crash (or a
second writer) in between leaves a state that reconcile (plane.ControlPlane.start) repairs;
a pod that reports Running although its job no longer runs that attempt is asked to stop
again (a launch that reached the backend after the stop that should have ended it). Every
transition writes a Reason (phalanx.model.reasons): the job's ``reason_code``/``message``/
``reason_facts`` and its event carry the same code and facts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from phalanx.backends.base import (
    NODE_FAULT,
    OOM_KILLED,
    Backend,
    PodEvent,
    PodEventKind,
    PodLaunch,
)
from phalanx.controllers.errors import ConflictError
from phalanx.controllers.health import HealthTracker, NodeFailure
from phalanx.controllers.progress import CHECKPOINTS, HungJob, checkpoint_folder
from phalanx.controllers.secrets import KEY_FILE, SecretRefError, SecretVault
from phalanx.controllers.state import devices_of, pod_resources
from phalanx.controllers.wiring import pod_env, rank_order
from phalanx.model.objects import JobPhase, JobSpec, OnFailure, PodPhase, RestartPolicyKind
from phalanx.model.reasons import Fact, Reason, ReasonCode
from phalanx.model.specs import SpecError
from phalanx.model.transitions import is_allowed
from phalanx.scheduling.snapshot import Admission
from phalanx.store import EventRecord, JobRecord, PodRecord, Store, Transition

T = TypeVar("T")
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
#: How many times a write that must not be lost is decided again on a fresh read after
#: another writer moved the job first (see the module docstring).
MAX_WRITE_ATTEMPTS = 5


class Cause:
    """Why a pod failed, as far as the failure policy is concerned."""

    APPLICATION = "Application"
    OOM = "OOM"
    NODE = "Node"
    HANG = "Hang"
    #: The attempt's pods were not all running within startupTimeout (counted as the
    #: application's: an image that cannot be pulled, a bad container config).
    STARTUP = "Startup"


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
        **event.facts,
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
    return EventRecord.of(at, reason)


def guarded(
    job: JobRecord,
    change: Mapping[str, object],
    events: tuple[EventRecord, ...] = (),
    *,
    pods: Mapping[str, Mapping[str, object]] | None = None,
    new_pods: tuple[PodRecord, ...] = (),
) -> Transition:
    """A Transition of ``job`` that the store applies only while the job is still in the
    phase and at the resourceVersion of this record."""
    return Transition(
        job.id,
        job=change,
        pods=pods or {},
        new_pods=new_pods,
        events=events,
        expect_phase=job.phase,
        expect_version=job.resource_version,
    )


@dataclass(frozen=True, slots=True)
class _PodOutcome:
    """What one pod event does: the guarded write, then the effects that follow it."""

    job: JobRecord
    pod: PodRecord
    write: Transition
    #: The pod failed and the attempt ends: the gang's other pods are stopped.
    stops_others: bool = False
    #: The failure blames the pod's node: the node gets the evidence (health.py).
    blames_node: bool = False
    #: The pod runs although its job no longer runs its attempt: it is asked to stop.
    is_stray: bool = False


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
        has_spec: Callable[[JobRecord], bool] | None = None,
    ) -> None:
        """``has_spec``: whether ``spec_of`` knows a job's spec without its manifest (a
        SpecCache's ``has``); job records are then read without their manifests where they
        are not needed. Without it, they are read whole."""
        self.store = store
        self.backend = backend
        self.clock = clock
        self.spec_of = spec_of
        self.has_spec = has_spec
        self.data_dir = data_dir
        self.grace_period_s = grace_period_s
        self.health = health or HealthTracker(store, clock)
        #: Secrets: sealed before they are stored, resolved into pods' env at launch.
        self.secrets = SecretVault(store, data_dir / KEY_FILE)
        #: Whether this control plane may call the backend's stop. False on a follower under
        #: leader election: only the leader drives the backend; its jobs reconciler stops the
        #: pods of jobs a follower cancelled (JobsReconciler.stop_strays).
        self.drives_backend = True
        #: A backend whose pods are no processes names the jobs whose pods may write status
        #: files (``status_writers()``, as JobsReconciler reads it): only those get their
        #: checkpoint directory made at admission (``write_status`` makes it too). The others'
        #: pods never look at it, and the simulator admits thousands of jobs.
        self._status_writers: Callable[[], AbstractSet[str]] | None = getattr(
            backend, "status_writers", None
        )
        self._checkpoints: tuple[Path, str] | None = None

    def _checkpoints_root(self) -> str:
        """``data_dir / CHECKPOINTS`` as text (kept while ``data_dir`` stays the same)."""
        kept = self._checkpoints
        if kept is None or kept[0] is not self.data_dir:
            kept = self._checkpoints = (self.data_dir, str(self.data_dir / CHECKPOINTS))
        return kept[1]

    def grace_for(self, job: JobRecord) -> float:
        """SIGTERM → SIGKILL grace of ``job``: its spec's terminationGracePeriod, else the
        control plane's (also when the stored spec no longer parses: such a job must still
        stop when cancelled or deleted)."""
        try:
            grace = self.spec_of(job).failure_policy.termination_grace_s
        except SpecError:
            grace = None
        return self.grace_period_s if grace is None else grace

    # ---- guarded writes ----

    def _write(
        self,
        job: JobRecord,
        change: Mapping[str, object],
        events: tuple[EventRecord, ...] = (),
        *,
        pods: Mapping[str, Mapping[str, object]] | None = None,
        new_pods: tuple[PodRecord, ...] = (),
    ) -> bool:
        """Write ``change`` to ``job`` guarded by this record (see ``guarded``). Returns
        whether the store applied it. A phase change that is not an edge of the lifecycle's
        table from the record's phase is a caller's mistake: logged and not sent."""
        target = change.get("phase")
        if isinstance(target, str) and not is_allowed(job.phase, target):
            log.warning("job %s: %s → %s is not an allowed transition", job.name, job.phase, target)
            return False
        return self.store.transition(guarded(job, change, events, pods=pods, new_pods=new_pods))

    def _retrying(
        self, job: JobRecord, what: str, write: Callable[[JobRecord], bool | None]
    ) -> JobRecord | None:
        """Run ``write`` on ``job`` (it returns True when written, False when refused, None
        when there is nothing to write on that record); when the store refused because
        another writer moved the job first, read it again and decide again, up to
        ``MAX_WRITE_ATTEMPTS`` times. Returns the record the write was applied to, or None
        when there was nothing to write or the job is gone (a job with another uid under
        its id is another job: SQLite may reuse a deleted job's id).

        Raises ConflictError when the store refused although the job had not moved (this
        control plane no longer holds its lease, see Store.fence), or the job kept moving.
        """
        current = job
        for _ in range(MAX_WRITE_ATTEMPTS):
            written = write(current)
            if written:
                return current
            if written is None:
                return None
            fresh = self.store.get_job_by_id(current.id)
            if fresh is None or fresh.uid != job.uid:  # gone (its id may name a new job)
                return None
            if fresh.resource_version == current.resource_version:
                raise ConflictError(
                    f"the store refused to {what} job {job.name} although no other writer "
                    "changed it (its log says why; this control plane may have lost its "
                    "lease to another one); retry against the current leader"
                )
            current = fresh
        raise ConflictError(
            f"could not {what} job {job.name}: it changed {MAX_WRITE_ATTEMPTS} times while "
            "this was being written; retry"
        )

    # ---- admission ----

    def admit(self, job: JobRecord, admission: Admission) -> bool:
        """Pending → Admitted: create the attempt's pods with their placements, then launch
        them. Returns whether the admission was written; when the store refused it (the job
        moved since ``job`` was read) nothing is launched and the next cycle decides again."""
        staged = self._admission(job, admission)
        if staged is None:
            return False
        change, events, pods = staged
        if not self._write(job, change, events, new_pods=pods):
            return False
        for pod in pods:
            self.launch(job, pod)
        return True

    def admit_all(
        self,
        admissions: Sequence[tuple[JobRecord, Admission]],
        on_error: Callable[[JobRecord, Exception], None],
    ) -> None:
        """``admit`` every (job, admission), written in one transaction rather than one
        each; a job whose admission cannot be prepared or written that way is admitted
        alone, and what that raises goes to ``on_error``."""
        staged: list[tuple[JobRecord, tuple[PodRecord, ...], Transition]] = []
        alone: list[tuple[JobRecord, Admission]] = []
        for job, admission in admissions:
            try:
                prepared = self._admission(job, admission)
            except Exception:  # admitted alone, where the error is contained
                alone.append((job, admission))
                continue
            if prepared is not None:
                change, events, pods = prepared
                staged.append((job, pods, guarded(job, change, events, new_pods=pods)))
        try:
            versions = self.store.transitions([t for _, _, t in staged])
        except Exception:
            log.exception("writing %d admissions failed; one at a time", len(staged))
            versions = [0] * len(staged)
            alone += [(job, a) for job, a in admissions if any(job is j for j, _, _ in staged)]
        else:
            for (job, pods, _), version in zip(staged, versions, strict=True):
                if version:
                    for pod in pods:
                        try:
                            self.launch(job, pod)
                        except Exception as exc:
                            on_error(job, exc)
        for job, admission in alone:
            try:
                self.admit(job, admission)
            except Exception as exc:
                on_error(job, exc)

    def _admission(
        self, job: JobRecord, admission: Admission
    ) -> tuple[dict[str, object], tuple[EventRecord, ...], tuple[PodRecord, ...]] | None:
        """The write that admits ``job`` (its change, event and new pods), or None when the
        job is not pending."""
        if job.phase != JobPhase.PENDING.value or job.is_deleting:
            log.warning("job %s: not admitted from phase %s", job.name, job.phase)
            return None
        now = self.clock()
        spec = self.spec_of(job)
        attempt = job.attempt + 1
        ordered = rank_order(spec, admission.placements)
        rendezvous = self.backend.rendezvous(job.name, attempt, ordered[0].node)
        # checkpoint_dir's path as text, without building a Path per admission.
        ckpt_dir = f"{self._checkpoints_root()}/{checkpoint_folder(job)}"
        writers = self._status_writers
        if writers is None or job.name in writers():
            Path(ckpt_dir).mkdir(parents=True, exist_ok=True)
        envs = pod_env(spec, ordered, rendezvous, attempt, ckpt_dir)
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
        change: dict[str, object] = {
            "phase": JobPhase.ADMITTED.value,
            "flavor": admission.flavor,
            "attempt": attempt,
            "admitted_at": now,
            **job_reason(admitted),
        }
        return change, (reason_event(now, admitted),), pods

    def launch(self, job: JobRecord, pod: PodRecord) -> None:
        """Start one stored pod on the backend (idempotent); a launch error fails the pod."""
        spec = self.spec_of(job)
        pod_set = next(ps for ps in spec.pod_sets if ps.name == pod.pod_set)
        resources = pod_resources(spec, pod.pod_set)
        enforce = spec.failure_policy.enforce_memory and resources.memory_bytes > 0
        try:
            # Read now, not at admission: the values are never stored with the pod.
            secrets = self.secrets.resolve(pod_set)
        except SecretRefError as exc:  # the pod's fault, never its node's; its devices free
            log.warning("launching %s failed: %s", pod.pod_id, exc)
            self.on_pod_event(
                PodEvent(
                    pod.pod_id,
                    PodEventKind.FAILED,
                    self.clock(),
                    128,
                    exc.reason,
                    str(exc),
                    exc.facts(),
                )
            )
            return
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
                    secret_env=secrets.env,
                    secrets=secrets.data,
                )
            )
        except Exception as exc:  # any launch error is the pod's: it fails, its devices free
            log.warning("launching %s failed: %s", pod.pod_id, exc)
            self.on_pod_event(
                PodEvent(
                    pod.pod_id, PodEventKind.FAILED, self.clock(), 128, "LaunchError", str(exc)
                )
            )

    # ---- pod events ----

    def on_pod_event(self, event: PodEvent) -> bool:
        """Record what happened to a pod and move its job along. Returns whether anything was
        written: repeated and out-of-date events (a pod that already ended) are no-ops.

        The write is guarded by the job, which guards its pods too (module docstring). The
        backend reports an event once, so when another writer moved the job first the event
        is decided again on a fresh read: the pod's own change still lands when its job has
        moved on meanwhile (cancelled, say), and the job's change is decided from where the
        job is now. Raises ConflictError as ``_retrying`` does."""
        seen = self.store.pod(event.pod_id)
        if seen is None or seen.phase not in _LIVE:
            return False
        job = self.store.get_job_by_id(seen.job_id)
        if job is None:
            return False
        decided: list[_PodOutcome] = []

        def write(current: JobRecord) -> bool | None:
            # Pods are read after their job: one written since has moved the job's version.
            outcome = self._pod_outcome(current, self.store.pods([current.id]), event)
            if outcome is None:
                return None
            decided.append(outcome)
            return self.store.transition(outcome.write)

        what = f"record {event.kind.value} of pod {event.pod_id} of"
        if self._retrying(job, what, write) is None:
            return False
        self._after_pod_event(decided[-1], event)
        return True

    def on_pod_events(
        self, events: Sequence[PodEvent], on_error: Callable[[PodEvent, Exception], None]
    ) -> int:
        """Record many pod events as ``on_pod_event`` records each, with a few reads and one
        transaction per round rather than four queries and a transaction per event: round
        k takes the k-th event of every job (events of one job are applied in order, each on
        the state the one before left). An event whose write is refused (another writer
        moved its job) or that raises goes through ``on_pod_event`` alone, where it is
        decided again on a fresh read; what that raises goes to ``on_error``. Returns how
        many events wrote something."""
        seen = {
            p.pod_id: p
            for chunk in _chunks(list(dict.fromkeys(e.pod_id for e in events)))
            for p in self.store.pods(pod_ids=chunk)
        }
        per_job: dict[int, list[PodEvent]] = {}
        for event in events:
            pod = seen.get(event.pod_id)
            if pod is not None and pod.phase in _LIVE:
                per_job.setdefault(pod.job_id, []).append(event)
        written = 0
        alone: list[PodEvent] = []
        derailed: set[int] = set()  # jobs with an event gone alone: so go their later ones
        for k in range(max((len(v) for v in per_job.values()), default=0)):
            round_: dict[int, PodEvent] = {}
            for job_id, evs in per_job.items():
                if len(evs) > k:
                    if job_id in derailed:
                        alone.append(evs[k])
                    else:
                        round_[job_id] = evs[k]
            outcomes: list[tuple[PodEvent, _PodOutcome]] = []
            for chunk in _chunks(list(round_)):
                jobs = self._jobs_for_specs(chunk)
                pods: dict[int, list[PodRecord]] = {}
                for pod in self.store.pods(chunk):
                    pods.setdefault(pod.job_id, []).append(pod)
                for job_id in chunk:
                    job, event = jobs.get(job_id), round_[job_id]
                    if job is None:
                        continue
                    try:
                        outcome = self._pod_outcome(job, pods.get(job_id, []), event)
                    except Exception:  # decided again alone, where the error is contained
                        alone.append(event)
                        derailed.add(job_id)
                        continue
                    if outcome is not None:
                        outcomes.append((event, outcome))
            try:
                versions = self.store.transitions([o.write for _, o in outcomes])
            except Exception:
                log.exception("recording %d pod events failed; one at a time", len(outcomes))
                versions = [0] * len(outcomes)
            for (event, outcome), version in zip(outcomes, versions, strict=True):
                if not version:
                    alone.append(event)
                    derailed.add(outcome.job.id)
                    continue
                written += 1
                try:
                    self._after_pod_event(outcome, event)
                except Exception as exc:
                    on_error(event, exc)
        for event in alone:
            try:
                written += self.on_pod_event(event)
            except Exception as exc:
                on_error(event, exc)
        return written

    def _jobs_for_specs(self, ids: list[int]) -> dict[int, JobRecord]:
        """The jobs of ``ids`` by id, as ``spec_of`` needs them: without the manifests of
        those whose spec it knows already (``has_spec``; decoding manifests is most of the
        cost of reading jobs), whole otherwise."""
        has_spec = self.has_spec
        if has_spec is None:
            return {j.id: j for j in self.store.list_jobs(ids=ids)}
        jobs = {j.id: j for j in self.store.list_jobs(ids=ids, manifests=False)}
        unknown = [job_id for job_id, job in jobs.items() if not has_spec(job)]
        if unknown:
            jobs.update((j.id, j) for j in self.store.list_jobs(ids=unknown))
        return jobs

    def _after_pod_event(self, outcome: _PodOutcome, event: PodEvent) -> None:
        """What follows a pod event once its write landed: evidence against the node,
        stopping the gang's other pods, stopping a stray."""
        job = outcome.job
        if outcome.blames_node:
            self.record_node_failure(outcome.job, outcome.pod, event)
        if outcome.stops_others:
            self.stop_pods(job.id, exclude=event.pod_id)
        if outcome.is_stray and self.drives_backend:
            self.backend.stop(event.pod_id, self.grace_for(outcome.job))

    def _pod_outcome(
        self, job: JobRecord, pods: list[PodRecord], event: PodEvent
    ) -> _PodOutcome | None:
        """What ``event`` does to ``job`` and its ``pods`` (None: nothing, it is out of date)."""
        pod = next((p for p in pods if p.pod_id == event.pod_id), None)
        if pod is None or pod.phase not in _LIVE:
            return None
        if event.kind is PodEventKind.WAITING:
            return self._waiting_outcome(job, pod, event)
        phase = _EVENT_TO_POD_PHASE[event.kind]
        if phase is PodPhase.RUNNING and pod.phase == PodPhase.RUNNING.value:
            return None
        pod_change: dict[str, object] = {"phase": phase.value}
        if phase is PodPhase.RUNNING:
            pod_change["started_at"] = event.at
            if pod.reason:  # why it waited (PodWaiting) is over
                pod_change.update(reason="", message="")
        else:
            pod_change.update(
                finished_at=event.at,
                exit_code=event.exit_code,
                reason=event.reason,
                message=event.message,
            )
        current = [p for p in pods if p.attempt == job.attempt]
        after = {p.pod_id: (phase.value if p.pod_id == pod.pod_id else p.phase) for p in current}
        job_change: dict[str, object] = {}
        events: list[EventRecord] = []
        stops_others = blames_node = False
        runs_it = pod.attempt == job.attempt and job.phase in (
            JobPhase.ADMITTED.value,
            JobPhase.RUNNING.value,
        )
        if runs_it:
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
                stops_others = True
                cause = self._cause(pod, event)
                blames_node = cause == Cause.NODE
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
        write = guarded(job, job_change, tuple(events), pods={pod.pod_id: pod_change})
        is_stray = phase is PodPhase.RUNNING and not runs_it
        return _PodOutcome(job, pod, write, stops_others, blames_node, is_stray)

    @staticmethod
    def _waiting_outcome(job: JobRecord, pod: PodRecord, event: PodEvent) -> _PodOutcome | None:
        """A pod of the running attempt that has not started says why: an event on its job
        (PodWaiting) and the reason kept on the pod, which stays Pending; the startup
        timeout (JobsReconciler) decides when waiting is over."""
        if pod.phase != PodPhase.PENDING.value or pod.reason == event.reason:
            return None
        waiting = Reason(
            ReasonCode.POD_WAITING,
            {
                "pod": pod_name(pod),
                "node": pod.node,
                "waiting_reason": event.reason,
                "waiting_message": event.message,
            },
        )
        change = {"reason": event.reason, "message": event.message}
        write = guarded(job, {}, (reason_event(event.at, waiting),), pods={pod.pod_id: change})
        return _PodOutcome(job, pod, write)

    def fail_startup(self, job: JobRecord, pods: Sequence[PodRecord], timeout_s: float) -> bool:
        """Admitted → Pending (restart by policy) or Failed (StartupTimeout): the attempt's
        pods were not all running within ``timeout_s`` of admission; its pods are stopped,
        which frees their devices and the queue's quota. Returns whether it was written."""
        now = self.clock()
        facts: dict[str, Fact] = {
            "waited_s": round(now - (job.admitted_at or now), 3),
            "startup_timeout_s": timeout_s,
            "not_running": tuple(
                {"pod": pod_name(p), "node": p.node, "waiting_reason": p.reason}
                for p in pods
                if p.attempt == job.attempt and p.phase == PodPhase.PENDING.value
            ),
        }
        change, record = self._failure(job, facts, now, Cause.STARTUP)
        if not self._write(job, change, (record,)):
            return False
        self.stop_pods(job.id)
        return True

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

    def fail_hung(self, job: JobRecord, hang: HungJob) -> bool:
        """Admitted/Running → Pending or Failed: no progress within hangTimeout; pods stop.
        Returns whether it was written (nothing is stopped when the store refused)."""
        now = self.clock()
        facts: dict[str, Fact] = {
            "silent_s": round(hang.silent_s, 3),
            "hang_timeout_s": hang.timeout_s,
            "has_reported": hang.has_reported,
        }
        change, record = self._failure(job, facts, now, Cause.HANG)
        if not self._write(job, change, (record,)):
            return False
        self.stop_pods(job.id)
        return True

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
        code = {Cause.HANG: ReasonCode.HANG, Cause.STARTUP: ReasonCode.STARTUP_TIMEOUT}.get(
            cause, ReasonCode.FAILED
        )
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

    def set_pending_reason(self, job: JobRecord, reason: Reason) -> bool:
        """Record why a job still waits; an event only when the kind of reason changes.
        Returns whether it was written (when refused, the next cycle says it again)."""
        events: tuple[EventRecord, ...] = ()
        if reason.code.value != job.reason_code:
            events = (reason_event(self.clock(), reason),)
        return self._write(job, job_reason(reason), events)

    def record_error(
        self, job: JobRecord, reconciler: str, step: str, error: BaseException
    ) -> None:
        """Contain a failure to reconcile ``job``: set its ``ReconcileError`` condition and add
        an event (once per distinct error), leaving its phase as it is. The job is read again
        first (the failed step may have written it before failing) and the write is retried
        while other writers move it. Raises ConflictError as ``_retrying`` does."""
        fresh = self.store.get_job_by_id(job.id)
        if fresh is None or fresh.uid != job.uid:
            return
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

        def write(current: JobRecord) -> bool | None:
            others = [c for c in current.conditions if c.get("type") != "ReconcileError"]
            found = next((c for c in current.conditions if c.get("type") == "ReconcileError"), None)
            if found is not None and found.get("message") == condition["message"]:
                return None
            change = {"conditions": [*others, condition]}
            return self._write(current, change, (reason_event(now, reason),))

        self._retrying(fresh, "record an error on", write)

    def clear_error(self, job: JobRecord) -> bool:
        """Drop the ``ReconcileError`` condition once ``job`` reconciles again. Returns
        whether it was written (when refused, the next pass clears it)."""
        if not any(c.get("type") == "ReconcileError" for c in job.conditions):
            return False
        kept = [c for c in job.conditions if c.get("type") != "ReconcileError"]
        return self._write(job, {"conditions": kept})

    def mark_deleting(self, job: JobRecord) -> None:
        """Flag a job for deletion once its pods have stopped (retried while other writers
        move the job: a user's delete must not be lost). Raises ConflictError as
        ``_retrying`` does."""

        def write(current: JobRecord) -> bool | None:
            return None if current.is_deleting else self._write(current, {"is_deleting": True})

        self._retrying(job, "mark for deletion", write)

    # ---- stopping ----

    def stop_pods(self, job_id: int, exclude: str = "") -> None:
        """Ask the backend to stop every live pod of a job (idempotent), with the job's grace
        period (SIGTERM, then SIGKILL once it is over). A no-op unless ``drives_backend``."""
        if not self.drives_backend:
            return
        job = self.store.get_job_by_id(job_id)
        grace = self.grace_period_s if job is None else self.grace_for(job)
        for pod in self.store.pods([job_id], live_only=True):
            if pod.pod_id != exclude:
                self.backend.stop(pod.pod_id, grace)

    def preempt(self, job: JobRecord, reason: Reason) -> bool:
        """Admitted/Running → Preempted (→ Pending once the pods are gone); ``reason`` is the
        scheduler's ``Preempted`` reason. Returns whether it was written; when the store
        refused it nothing is stopped and the next cycle decides again."""
        now = self.clock()
        # Read after ``job``: a pod written since has moved the job's version (refused).
        live = self.store.pods([job.id], live_only=True)
        change: dict[str, object] = {"phase": JobPhase.PREEMPTED.value, **job_reason(reason)}
        events = [reason_event(now, reason)]
        if not live:
            change.update(phase=JobPhase.PENDING.value, flavor="")
            events.append(reason_event(now, Reason(ReasonCode.REQUEUED, {"had_pods": False})))
        if not self._write(job, change, tuple(events)):
            return False
        self.stop_pods(job.id)
        return True

    def cancel(self, job: JobRecord, *, is_delete: bool = False) -> bool:
        """Any non-terminal phase → Cancelled (by the user, or as the first step of deleting
        the job); live pods are stopped. ``job`` may be stale (the loop may write it
        meanwhile, or another control plane): a cancel refused because the job moved is
        decided again on a fresh read, so a user's cancel is not lost. Returns True when
        cancelled, False when the job had already finished (or is gone). Raises
        ConflictError as ``_retrying`` does."""

        def write(current: JobRecord) -> bool | None:
            if JobPhase(current.phase).is_terminal:
                return None
            now = self.clock()
            cancelled = Reason(ReasonCode.CANCELLED, {"by": "user", "is_delete": is_delete})
            change = {
                "phase": JobPhase.CANCELLED.value,
                "finished_at": now,
                **job_reason(cancelled),
            }
            return self._write(current, change, (reason_event(now, cancelled),))

        if self._retrying(job, "cancel", write) is None:
            log.info("job %s was not cancelled: it had already finished", job.name)
            return False
        self.stop_pods(job.id)
        return True

    def expire(self, job: JobRecord, max_runtime_s: float) -> bool:
        """Running past maxRuntime → Failed (DeadlineExceeded); pods are stopped. Returns
        whether it was written (nothing is stopped when the store refused)."""
        now = self.clock()
        facts: dict[str, Fact] = {"max_runtime_s": max_runtime_s}
        if job.started_at is not None:
            facts["ran_s"] = round(now - job.started_at, 3)
        expired = Reason(ReasonCode.DEADLINE_EXCEEDED, facts)
        change = {"phase": JobPhase.FAILED.value, "finished_at": now, **job_reason(expired)}
        if not self._write(job, change, (reason_event(now, expired),)):
            return False
        self.stop_pods(job.id)
        return True


def _chunks(items: list[T]) -> list[list[T]]:
    """``items`` in lists of at most 500 (one SQL ``IN`` each)."""
    return [items[i : i + 500] for i in range(0, len(items), 500)]
