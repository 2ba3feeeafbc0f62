"""The reconcilers the control loop runs, each observe → decide → apply on its own kind:

  1. ``NodeHealthReconciler``: quarantine nodes the backend reports broken, release those whose
     cool-down is over;
  2. ``JobsReconciler``: pod events, stops for pods their job should not run (``stop_strays``),
     deadlines and hangs, then one scheduling cycle (snapshot → ``schedule`` → admit, preempt,
     pending reasons);
  3. ``GarbageCollector``: delete jobs whose pods have stopped after a delete, and objects
     whose owner (``metadata.ownerReferences``) is gone, in the background, with events.

A failure while reconciling one object is contained to that object: it gets a
``ReconcileError`` condition and event (jobs) or event (other kinds), the reconciler goes on
with the others, and the object is retried on the next pass. A reconciler that fails as a
whole is counted in its stats; the loop still runs the others.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from collections.abc import Set as AbstractSet
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Protocol

from phalanx import kinds
from phalanx.backends.base import Backend, PodEvent
from phalanx.controllers.errors import ConflictError, NotFoundError
from phalanx.controllers.health import HealthTracker, NodeHealth, apply_quarantine
from phalanx.controllers.lifecycle import Lifecycle, guarded, job_reason, reason_event
from phalanx.controllers.progress import JobProgress, ProgressCache, hung_jobs
from phalanx.controllers.state import (
    CycleInputs,
    SpecCache,
    World,
    WorldCache,
    next_backoff_end,
)
from phalanx.model.objects import JobPhase, Node
from phalanx.model.reasons import Reason, ReasonCode
from phalanx.scheduling import (
    AdmittedWorkload,
    Decisions,
    IncrementalScheduler,
    SchedulerConfig,
)
from phalanx.scheduling.incremental import is_time_independent
from phalanx.store import Change, EventRecord, JobRecord, PodRecord, Store

log = logging.getLogger(__name__)

#: The progress of a job whose pods reported none.
_NOTHING_REPORTED = JobProgress()


class Reconciler(Protocol):
    """One reconciler: ``reconcile(now)`` observes, decides and applies for its kind."""

    name: str

    def reconcile(self, now: float) -> None: ...


@dataclass(slots=True)
class ReconcilerStats:
    """How one reconciler has fared: passes, time spent, failures (whole and per object)."""

    runs: int = 0
    seconds_total: float = 0.0
    seconds_last: float = 0.0
    errors: int = 0
    object_errors: int = 0
    last_error: str = ""
    #: Passes in a row that failed as a whole (0 once one succeeds): /healthz says degraded.
    failing_runs: int = 0


class _Containment:
    """Runs per-object steps, turning a failure into a condition/event on that object."""

    def __init__(self, name: str, lifecycle: Lifecycle, stats: ReconcilerStats) -> None:
        self.name = name
        self.lifecycle = lifecycle
        self.stats = stats

    @contextmanager
    def on(self, job: JobRecord, step: str) -> Iterator[None]:
        try:
            yield
        except Exception as exc:  # contained to this job; the loop goes on
            self.failed(job, step, exc)

    def failed(self, job: JobRecord, step: str, exc: Exception) -> None:
        """Contain ``exc``, raised by ``step`` on ``job`` (what ``on`` does; for loops over
        many jobs, where a context manager per job costs more than the step)."""
        self.stats.object_errors += 1
        log.error("%s: %s of job %s failed", self.name, step, job.name, exc_info=exc)
        try:
            self.lifecycle.record_error(job, self.name, step, exc)
        except Exception:  # the store itself failing is logged, not raised
            log.exception("recording the error on job %s failed", job.name)


class NodeHealthReconciler:
    """Quarantine nodes the backend reports broken; release expired quarantines."""

    name = "node-health"

    def __init__(
        self,
        backend: Backend,
        health: HealthTracker,
        config_revision: Callable[[], int | None] = lambda: None,
    ) -> None:
        """``config_revision``: the revision of the newest configuration write the loop has
        seen (``WorldCache.config_revision``), so that node health is read again only when
        it may have changed; by default it is read every time."""
        self.backend = backend
        self.health = health
        self.config_revision = config_revision
        #: The last ``nodes()``: (what the backend reported, the health read, the answer),
        #: reused while both are unchanged (the loop asks twice per tick; nodes are the same
        #: objects from one call to the next, so the comparison is mostly by identity).
        self._last: tuple[list[Node], dict[str, NodeHealth], list[Node]] | None = None

    def reconcile(self, now: float) -> None:
        self.nodes()
        for node in self.health.release_expired(now, self.config_revision()):
            log.info("node %s released from quarantine after its cool-down", node)

    def nodes(self) -> list[Node]:
        """The backend's nodes with quarantine applied; a node the backend reports unhealthy
        (a critical GPU error) is quarantined at once."""
        observed = self.backend.nodes()
        health = self.health.all(self.config_revision())
        last = self._last
        if last is not None and last[0] == observed and last[1] == health:
            return list(last[2])
        read = dict(health)
        for n in observed:
            if n.unhealthy_reason and not (n.name in health and health[n.name].is_quarantined):
                log.warning("node %s quarantined: %s", n.name, n.unhealthy_reason)
                health[n.name] = self.health.quarantine_now(n.name, n.unhealthy_reason)
        out = apply_quarantine(observed, health)
        self._last = (observed, read, out)
        return list(out)


class JobsReconciler:
    """Jobs: observe pod events, enforce deadlines and hangs, schedule, apply decisions."""

    name = "jobs"

    def __init__(
        self,
        store: Store,
        backend: Backend,
        lifecycle: Lifecycle,
        specs: SpecCache,
        nodes: Callable[[], list[Node]],
        scheduler: SchedulerConfig,
        stats: ReconcilerStats,
        world: WorldCache | None = None,
        resync_s: float = 10.0,
    ) -> None:
        self.store = store
        self.backend = backend
        self.lifecycle = lifecycle
        self.specs = specs
        self.nodes = nodes
        self.scheduler = scheduler
        self.contain = _Containment(self.name, lifecycle, stats)
        self.world = world if world is not None else WorldCache(store, specs)
        #: Every ``resync_s`` (of the clock ``now`` comes from) a cycle runs although nothing
        #: changed (see _is_unchanged), unless its decisions cannot depend on the time
        #: either (see _may_skip_resync).
        self.resync_s = resync_s
        #: Every ``full_resync_s`` that cycle also tries the parked jobs again (see
        #: scheduling.IncrementalScheduler), refreshing the numbers in their reasons; with
        #: ten thousand jobs waiting it costs about a second of CPU.
        self.full_resync_s = max(resync_s, 60.0)
        self._fully_synced_at = -math.inf
        self.decisions = Decisions()
        #: The scheduler, its scratch state kept from one cycle to the next.
        self.incremental = IncrementalScheduler()
        self.last_cycle_s = 0.0
        self.cycles = 0
        #: Ticks that ran no scheduling cycle because nothing it depends on had changed.
        self.skipped_cycles = 0
        self._inputs: CycleInputs | None = None
        self._wake_at = math.inf
        self._synced_at = -math.inf
        self._reported: set[tuple[str, str, str]] = set()
        self._stops_sent: dict[str, float] = {}
        #: Passes so far; the last cycle: when it ran, whether it was a full one, and
        #: whether its decisions hold at any later time while nothing changes (see
        #: _may_skip_resync).
        self._passes = 0
        self._cycle_at = -math.inf
        self._is_last_full = False
        self._is_timeless = False
        #: Live pods their job should not run, by job id (see stop_strays), as of the World
        #: of epoch ``_strays_epoch``; None: not known, a full pass is due.
        self._strays: dict[int, list[tuple[JobRecord, PodRecord]]] | None = None
        self._strays_epoch = 0
        #: Status files of jobs holding capacity, read again only when they change.
        self._progress_files = ProgressCache(lifecycle.data_dir, time.time)
        #: What the jobs holding capacity reported, by job id, as of the last pass (read by
        #: the start estimates; replaced whole each pass, never changed in place).
        self.reported_progress: Mapping[int, JobProgress] = {}
        #: A backend that writes every status file itself (the simulator's, whose workloads
        #: are not processes) names the jobs that may have one (``status_writers()``): the
        #: others have reported nothing, and their folders are not looked at on every tick.
        self._status_writers: Callable[[], AbstractSet[str]] | None = getattr(
            backend, "status_writers", None
        )
        #: Admitted workloads of the last snapshot (see World.snapshot).
        self._admitted_memo: dict[tuple[int, int, float | None], AdmittedWorkload] = {}
        #: Pending reasons found stored, by job: (the job's resourceVersion then, the Reason).
        self._confirmed: dict[str, tuple[int, Reason]] = {}
        #: Stored jobs whose spec does not parse, by name: the error (see _report_broken).
        self.broken_jobs: dict[str, str] = {}

    def reconcile(self, now: float) -> None:
        # 1. observe: pod events, then deadlines and hangs of what runs
        events = self.backend.poll_events()
        if events:
            self.lifecycle.on_pod_events(events, self._pod_event_failed)
        is_resync = now - self._synced_at >= self.resync_s
        if is_resync:
            self._synced_at = now
        self._passes += 1
        if self._passes % self.STRAYS_FULL_PASSES == 0:
            self._strays = None  # the safety pass: look at every live pod again
        world = self.world.read()
        self._report_broken(world)
        self.stop_strays(world, now)
        progress = self.reported_progress = self._progress(world)
        self._enforce_deadlines(world, now)
        self._detect_hangs(world, progress, now)
        self._enforce_startup(world, now)
        # 2. snapshot (quarantined nodes marked; checkpoints bound each victim's lost work)
        world = self.world.read()
        checkpoints = {
            job_id: p.checkpoint.at for job_id, p in progress.items() if p.checkpoint is not None
        }
        inputs = CycleInputs(
            world.revision,
            tuple(self.nodes()),
            tuple(self.specs.queues(self.store, self.world.config_revision)),
            tuple(self.specs.flavors(self.store, self.world.config_revision)),
            tuple(self.backend.held_capacity()),
            tuple(sorted(checkpoints.items())),
        )
        self._report_invalid_objects(now)
        is_full = is_resync and now - self._fully_synced_at >= self.full_resync_s
        if self._is_unchanged(inputs, now) and (
            not is_resync or self._may_skip_resync(now, is_full)
        ):
            if is_full:
                self._fully_synced_at = now
            self.skipped_cycles += 1
            return
        snapshot, held_back = world.snapshot(
            now,
            inputs.nodes,  # tuples: the snapshot keeps them as they are, without a copy
            inputs.queues,
            inputs.flavors,
            self.scheduler,
            checkpoints,
            inputs.held,
            self._admitted_memo,
        )
        # 3. schedule (pure)
        started = time.perf_counter()
        if is_full:
            self._fully_synced_at = now
        self.decisions = self.incremental.schedule(snapshot, full=is_full)
        self.last_cycle_s = time.perf_counter() - started
        self.cycles += 1
        self._cycle_at = now
        self._is_last_full = is_full
        self._is_timeless = is_time_independent(snapshot, self.decisions)
        # 4. apply, 5. requeue with reasons
        written = self._apply(world, self.decisions, held_back)
        self._inputs = CycleInputs(
            self._settled_revision(world.revision, written),
            inputs.nodes,
            inputs.queues,
            inputs.flavors,
            inputs.held,
            inputs.checkpoints,
        )
        self._wake_at = next_backoff_end(snapshot)

    def _may_skip_resync(self, now: float, is_full: bool) -> bool:
        """Whether the resync due now may be skipped, its inputs being unchanged: the last
        cycle's decisions do not depend on the time (scheduling.is_time_independent), a full
        resync is due only if a cycle ran since the last full one (whose parked reasons may
        hold numbers from before later changes), and a cycle ran within ``SAFETY_S``."""
        if now - self._cycle_at >= self.SAFETY_S:
            return False
        return self._is_timeless and (self._is_last_full or not is_full)

    def _is_unchanged(self, inputs: CycleInputs, now: float) -> bool:
        """Whether a cycle now would decide what the last one did: nothing it reads has
        changed since (the store's revision, net of that cycle's own pending-reason writes;
        nodes; capacity held by others; queues; flavors; checkpoints) and no pending job's
        backoff has ended. Only the clock moved, and apart from backoffs it changes no
        decision but the order of preemption victims, which the resync covers."""
        return inputs == self._inputs and now < self._wake_at

    def _settled_revision(self, before: int, written: list[str] | None) -> int:
        """The store's revision after the last cycle's own writes when those (the pending
        reasons ``written``) are all the log holds after ``before``, the revision the cycle
        read: the next tick then has nothing new to schedule. Otherwise ``before``, so that
        the next tick sees a newer revision and runs a cycle."""
        if not written:
            return before
        changes, oldest = self.store.changes(before, limit=len(written))
        is_ours = (
            oldest <= before + 1
            and len(changes) == len(written)
            and all(c.kind == "Job" and c.type == "MODIFIED" for c in changes)
            and sorted(c.name for c in changes) == sorted(written)
        )
        return changes[-1].revision if is_ours else before

    #: A resync is skipped while nothing changed (see _may_skip_resync), but a cycle runs at
    #: least this often (of the loop's clock) all the same: the safety pass.
    SAFETY_S = 300.0
    #: Every this many passes, stop_strays looks at every live pod, not only at the jobs
    #: read since the last pass (a safety pass; the count, not the clock, so that the
    #: simulator, whose clock leaps between ticks, keeps the incremental pass too).
    STRAYS_FULL_PASSES = 50

    #: A stop the backend has not acted on (the pod still lives) is sent again after this long.
    RESEND_STOP_S = 30.0

    def stop_strays(self, world: World, now: float) -> None:
        """Ask the backend to stop every live pod its job should not run: the job left
        Admitted/Running, or the pod belongs to an earlier attempt. Such pods come from writes
        made without a backend call: a follower's cancel or delete (under leader election only
        the leader drives the backend), or a control plane that died between its write and its
        stop. A stop is sent once per pod, and again every ``RESEND_STOP_S`` while it lives."""
        by_job = self._strays_of(world, full=self._strays is None)
        strays: dict[str, tuple[JobRecord, PodRecord]] = {}
        if by_job:
            # In the order of a full pass over the live pods (the order of the stops).
            for job_id in world.live_pods:
                for job, pod in by_job.get(job_id, ()):
                    strays[pod.pod_id] = (job, pod)
        self._stops_sent = {p: t for p, t in self._stops_sent.items() if p in strays}
        for pod_id, (job, _) in strays.items():
            sent = self._stops_sent.get(pod_id)
            if sent is not None and now - sent < self.RESEND_STOP_S:
                continue
            with self.contain.on(job, "stop pods"):
                self.backend.stop(pod_id, self.lifecycle.grace_for(job))
                self._stops_sent[pod_id] = now

    def _strays_of(
        self, world: World, *, full: bool
    ) -> dict[int, list[tuple[JobRecord, PodRecord]]]:
        """The stray pods of ``world`` by job id: found afresh (``full``, or when the World
        cache cannot say what changed), else kept from the last pass and found again only
        for the jobs the World cache read since (a job's phase, attempt and live pods change
        only with a write of that job)."""
        changed = None if full else self.world.changed_since(self._strays_epoch)
        by_job = self._strays if self._strays is not None and changed is not None else {}
        ids: Iterable[int] = world.live_pods if changed is None else changed
        live_pods = world.live_pods
        jobs, broken = world.jobs, world.broken
        should_run = (JobPhase.ADMITTED.value, JobPhase.RUNNING.value)
        for job_id in ids:
            by_job.pop(job_id, None)
            pods = live_pods.get(job_id)
            if not pods:
                continue
            job = jobs.get(job_id)
            if job is None:
                found = broken.get(job_id)
                if found is None:
                    continue
                job = found[0]
            if job.phase in should_run:
                stray = [(job, p) for p in pods if p.attempt != job.attempt]
            else:
                stray = [(job, p) for p in pods]
            if stray:
                by_job[job_id] = stray
        self._strays, self._strays_epoch = by_job, world.epoch
        return by_job

    def _admit_failed(self, job: JobRecord, exc: Exception) -> None:
        """Contain a failure to admit or launch ``job`` to that job."""
        with self.contain.on(job, "admit"):
            raise exc

    def _pod_event_failed(self, event: PodEvent, exc: Exception) -> None:
        """Contain the failure to record ``event`` to the pod's job (a condition and an
        event on it); the other events and jobs go on."""
        pod = self.store.pod(event.pod_id)
        job = None if pod is None else self.store.get_job_by_id(pod.job_id)
        if job is None:
            log.error("pod event %s failed", event, exc_info=exc)
            return
        with self.contain.on(job, "record pod event"):
            raise exc

    def _apply(
        self, world: World, decisions: Decisions, held_back: Mapping[str, str]
    ) -> list[str] | None:
        """Admit, preempt and record pending reasons. Returns the jobs whose pending reason
        was written, or None when it wrote anything else or a write was refused or failed."""
        by_name = {j.name: j for j in world.jobs.values()}
        written: list[str] | None = (
            [] if not (decisions.admissions or decisions.preemptions) else None
        )
        if decisions.admissions:
            self.lifecycle.admit_all(
                [(by_name[a.job], a) for a in decisions.admissions], self._admit_failed
            )
        for preemption in decisions.preemptions:
            victim = by_name.get(preemption.victim)
            if victim is not None:
                with self.contain.on(victim, "preempt"):
                    self.lifecycle.preempt(victim, preemption.reason)
        reasons = [(r.job, r.reason) for r in decisions.pending]
        for name in held_back:  # the pods of its previous attempt are still stopping
            held = by_name[name]
            facts = {
                "pods_stopping": len(world.live_pods.get(held.id, ())),
                "attempt": held.attempt,
            }
            reasons.append((name, Reason(ReasonCode.WAITING_FOR_CAPACITY, facts)))
        changed: list[tuple[JobRecord, Reason]] = []
        confirmed, self._confirmed = self._confirmed, {}
        for name, reason in reasons:
            waiting = by_name.get(name)
            if waiting is None:
                continue
            known = confirmed.get(name)
            if known is not None and known[0] == waiting.resource_version and known[1] is reason:
                # The scheduler kept this very reason (a parked job) and the job has not
                # been written since it was found stored.
                self._confirmed[name] = known
                continue
            # The message is rendered from code and facts: comparing those is enough, and
            # rendering thousands of messages per cycle only to compare them is not free.
            stored = (waiting.reason_code, waiting.reason_facts)
            if stored != (reason.code.value, reason.plain_facts()):
                changed.append((waiting, reason))
            else:
                self._confirmed[name] = (waiting.resource_version, reason)
        for i in range(0, len(changed), self.REASONS_PER_TRANSACTION):
            results = self._set_pending_reasons(changed[i : i + self.REASONS_PER_TRANSACTION])
            if written is not None and all(results):
                written += [job.name for job, _ in changed[i : i + self.REASONS_PER_TRANSACTION]]
            else:
                written = None
        return written

    #: Pending reasons written per store transaction: thousands of new jobs get theirs in a
    #: few transactions, and the API's writes get the store between them.
    REASONS_PER_TRANSACTION = 500

    def _set_pending_reasons(self, batch: list[tuple[JobRecord, Reason]]) -> list[bool]:
        """Record why each job of ``batch`` still waits, as Lifecycle.set_pending_reason does
        (an event only when the kind of reason changes), in one transaction; if that fails,
        one at a time, each failure contained to its job. Returns whether each was written."""
        now = self.lifecycle.clock()
        try:
            versions = self.store.transitions(
                [
                    guarded(
                        job,
                        job_reason(reason),
                        (reason_event(now, reason),)
                        if reason.code.value != job.reason_code
                        else (),
                    )
                    for job, reason in batch
                ]
            )
            # The World takes these writes in as they are, rather than reading them back.
            # Its records are only read: jobs given one Reason (the scheduler gives jobs alike
            # the same one) share its message and one dict of its facts, not a copy each.
            facts_of: dict[int, dict[str, object]] = {}
            for _, reason in batch:
                if id(reason) not in facts_of:
                    facts_of[id(reason)] = reason.plain_facts()
            self.world.note(
                [
                    replace(
                        job,
                        reason_code=reason.code.value,
                        message=reason.message,
                        reason_facts=facts_of[id(reason)],
                        resource_version=version,
                    )
                    for (job, reason), version in zip(batch, versions, strict=True)
                    if version
                ]
            )
            return [version > 0 for version in versions]
        except Exception:  # the store failed the batch: try each job alone, contained
            log.exception("recording %d pending reasons failed; retrying one by one", len(batch))
        results = []
        for job, reason in batch:
            is_written = False
            with self.contain.on(job, "record pending reason"):
                is_written = self.lifecycle.set_pending_reason(job, reason)
            results.append(is_written)
        return results

    def _enforce_deadlines(self, world: World, now: float) -> None:
        running = JobPhase.RUNNING.value
        for job_id, job in world.holding.items():
            if job.phase != running or job.started_at is None:
                continue
            limit = world.specs[job_id].max_runtime_s
            if limit is not None and now - job.started_at > limit:
                with self.contain.on(job, "enforce maxRuntime"):
                    self.lifecycle.expire(job, limit)

    def _enforce_startup(self, world: World, now: float) -> None:
        """Restart or fail (by policy) admitted jobs whose pods are not all running within
        their startupTimeout of admission: pods that never start (an image that cannot be
        pulled, a container config that cannot be made) must not hold devices and quota."""
        admitted = JobPhase.ADMITTED.value
        for job_id, job in world.holding.items():
            if job.phase != admitted or job.admitted_at is None:
                continue
            timeout_s = world.specs[job_id].startup_timeout_s
            if now - job.admitted_at > timeout_s:
                with self.contain.on(job, "enforce startupTimeout"):
                    self.lifecycle.fail_startup(job, world.live_pods.get(job_id, []), timeout_s)

    def _progress(self, world: World) -> dict[int, JobProgress]:
        """What the workloads of jobs holding capacity reported (status files)."""
        out: dict[int, JobProgress] = {}
        get = self._progress_files.get
        writers = self._status_writers() if self._status_writers is not None else None
        if writers is not None and not writers:  # nobody writes one: nothing to look at
            out = dict.fromkeys(world.holding, _NOTHING_REPORTED)
            self._progress_files.keep_only(set(out))
            return out
        for job_id, job in world.holding.items():
            if writers is not None and job.name not in writers:
                out[job_id] = _NOTHING_REPORTED
                continue
            try:
                out[job_id] = get(job)
            except Exception as exc:  # contained to this job, as contain.on does
                self.contain.failed(job, "read progress", exc)
        self._progress_files.keep_only(set(out))
        return out

    def _detect_hangs(self, world: World, progress: Mapping[int, JobProgress], now: float) -> None:
        """Restart running jobs whose pods reported no progress within their hangTimeout.
        (A job expired above in the same pass has a stale record here: the store refuses
        its restart, and nothing is stopped twice.)"""
        for hang in hung_jobs(world.holding, world.specs, world.live_pods, progress, now):
            job = world.jobs[hang.job_id]
            with self.contain.on(job, "restart a hung job"):
                self.lifecycle.fail_hung(job, hang)

    def _report_broken(self, world: World) -> None:
        """A condition and an event (once per distinct error: Lifecycle.record_error) on each
        stored job whose spec no longer parses (it is left out of scheduling; it can still be
        cancelled and deleted); ``broken_jobs`` keeps them for /healthz."""
        self.broken_jobs = {
            record.name: f"{exc.__class__.__name__}: {exc}" for record, exc in world.broken.values()
        }
        for record, exc in world.broken.values():
            with self.contain.on(record, "read spec"):
                raise exc

    def _report_invalid_objects(self, now: float) -> None:
        """An event, once per distinct error, on each stored queue or flavor that no longer
        parses (it is left out of scheduling until fixed)."""
        for (kind, name), error in self.specs.invalid.items():
            key = (kind, name, error)
            if key in self._reported:
                continue
            self._reported.add(key)
            reason = Reason(
                ReasonCode.RECONCILE_ERROR,
                {"reconciler": self.name, "step": "read spec", "error": error},
            )
            log.error("%s %s left out of scheduling: %s", kind, name, error)
            self.store.record_event(EventRecord.of(now, reason, kind=kind, name=name))


class GarbageCollector:
    """Finishes deletes (a deleted job goes once its pods have stopped) and deletes objects
    whose owner is gone. Owners are checked in full at the first pass (deletes may have
    happened while the control plane was down), then whenever the revision log shows a
    deletion."""

    name = "garbage-collector"

    #: Revisions the log keeps: a watch may resume from any of them.
    KEEP_REVISIONS = 100_000

    def __init__(
        self, store: Store, delete: Callable[[str, str], None], clock: Callable[[], float]
    ) -> None:
        self.store = store
        self.delete = delete
        self.clock = clock
        self._revision: int | None = None
        self._compacted = 0

    def reconcile(self, now: float) -> None:
        # What was written since the last pass (everything, on the first).
        changes: list[Change] = []
        missed = self._revision is None
        if self._revision is not None:
            changes, oldest = self.store.changes(self._revision, limit=100_000)
            missed = oldest > self._revision + 1 and self._revision > 0
            if changes:
                self._revision = changes[-1].revision
        else:
            self._revision = self.store.revision()
        # 1. finish deletes: a job marked deleting, or the end of its last pod, is a write
        # of that job, so there is nothing to finish while no job was written
        if missed or any(c.kind == "Job" for c in changes):
            for job in self.store.list_jobs(deleting_only=True):
                if not self.store.pods([job.id], live_only=True):
                    self.store.delete_job(job.id)
        # 2. compact the revision log (a watch from before what is kept must list again)
        if self._revision - self._compacted >= 10_000:
            self.store.compact(self.KEEP_REVISIONS)
            self._compacted = self._revision
        # 3. cascade: only when something was deleted since the last pass
        if not missed and not any(c.type == "DELETED" for c in changes):
            return
        for kind, name, owner_kind, owner in self._orphans():
            try:
                self.delete(kind, name)
            except (ConflictError, NotFoundError) as exc:
                log.info("garbage collection of %s %s waits: %s", kind, name, exc)
                continue
            reason = Reason(
                ReasonCode.OWNER_DELETED,
                {"owner_kind": owner_kind, "owner": owner, "kind": kind, "name": name},
            )
            log.info("%s", reason.message)
            self.store.record_event(EventRecord.of(now, reason, kind=owner_kind, name=owner))

    def _orphans(self) -> list[tuple[str, str, str, str]]:
        """(kind, name, owner kind, owner name) of every object with a missing owner (or an
        owner of that name with another uid: the original was deleted and re-created)."""
        uids: dict[tuple[str, str], str] = {}
        owned: list[tuple[str, str, list[dict[str, object]]]] = []
        for job in self.store.list_jobs():
            uids[("Job", job.name)] = job.uid
            if job.owner_refs and not job.is_deleting:
                owned.append(("Job", job.name, job.owner_refs))
        for kind in (k.name for k in kinds.kinds() if k.is_applied and not k.is_job):
            for obj in self.store.list_objects(kind):
                uids[(kind, obj.name)] = obj.uid
                if obj.owner_refs:
                    owned.append((kind, obj.name, obj.owner_refs))
        out = []
        for kind, name, refs in owned:
            for ref in refs:
                key = (str(ref.get("kind", "")), str(ref.get("name", "")))
                uid = str(ref.get("uid", ""))
                if key not in uids or (uid and uids[key] != uid):
                    out.append((kind, name, *key))
                    break
        return out


def timed(reconciler: Reconciler, stats: ReconcilerStats, now: float) -> None:
    """Run one pass of ``reconciler``, timing it; a failure is logged and counted, not raised."""
    started = time.perf_counter()
    try:
        reconciler.reconcile(now)
    except Exception as exc:  # the loop must go on with the other reconcilers
        stats.errors += 1
        stats.failing_runs += 1
        stats.last_error = f"{exc.__class__.__name__}: {exc}"
        log.exception("reconciler %s failed", reconciler.name)
    else:
        stats.failing_runs = 0
    finally:
        stats.runs += 1
        stats.seconds_last = time.perf_counter() - started
        stats.seconds_total += stats.seconds_last
