"""Guarded transitions from the controllers' side (ARCHITECTURE.md §5), on a real store (SQLite
and PostgreSQL): a hypothesis state machine drives the Lifecycle through random admissions,
pod events (duplicated, reordered, for old attempts), cancels, preemptions, deadlines, hangs,
deletes, stale writes and writers that get in between, and checks after every step that no
illegal or stale transition landed; racing threads, each with its own Store (connection pool)
as two control planes have, check that exactly one of two writers wins and only the winner
calls the backend."""

from __future__ import annotations

import itertools
import threading
import uuid
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from lifecycle_fakes import RUNS, Calls, FakeBackend, RecordingStore, make_lifecycle

from phalanx.backends.base import OOM_KILLED, PodEvent, PodEventKind
from phalanx.controllers.errors import ConflictError
from phalanx.controllers.lifecycle import Lifecycle
from phalanx.controllers.progress import HungJob
from phalanx.model.objects import DeviceShare, JobPhase, PodPlacement
from phalanx.model.reasons import Reason, ReasonCode
from phalanx.model.specs import job_to_manifest
from phalanx.model.transitions import JOB_TRANSITIONS
from phalanx.scheduling.snapshot import Admission
from phalanx.store import JobRecord, Store, Transition
from phalanx.testing import make_job

T0 = 1000.0
LIVE = ("Pending", "Running")
PREEMPTED = Reason(
    ReasonCode.PREEMPTED,
    {"preemptor": "urgent", "preemptor_queue": "q", "victim_queue": "q", "flavor": "default"},
)
WAITING = Reason(ReasonCode.WAITING_FOR_CAPACITY, {"pods_stopping": 1, "attempt": 1})
#: The loop's writes, with the records the loop makes each of them on.
LOOP_WRITES: dict[str, Callable[[JobRecord], bool]] = {
    "admit": lambda j: j.phase == "Pending" and not j.is_deleting,
    "reason": lambda j: j.phase == "Pending",
    "preempt": lambda j: j.phase in RUNS,
    "expire": lambda j: j.phase == "Running",
    "hang": lambda j: j.phase == "Running",
}


def submit(store: Store, name: str, replicas: int = 1, max_restarts: int = 1) -> JobRecord:
    spec = make_job(name).queue("q").gpus(1).replicas(replicas).restarts(max_restarts, 1.0).obj()
    store.apply([], [(name, uuid.uuid4().hex, job_to_manifest(spec), "q", 0)], T0)
    job = store.get_job(name)
    assert job is not None
    return job


def admission(lifecycle: Lifecycle, job: JobRecord, node: str) -> Admission:
    """Every pod of ``job`` on ``node``, one whole device each."""
    spec = lifecycle.spec_of(job)
    slots = [(ps.name, i) for ps in spec.pod_sets for i in range(ps.replicas)]
    placements = tuple(
        PodPlacement(pod_set, i, node, (DeviceShare(k, 1000),))
        for k, (pod_set, i) in enumerate(slots)
    )
    return Admission(job.name, job.queue, "default", placements)


# ---- the state machine ----


class LifecycleMachine(RuleBasedStateMachine):
    """One example: up to four jobs of its own in the shared store, one Lifecycle over a
    fake backend. Rules call the Lifecycle as the reconcilers and the API do (fresh records,
    their preconditions), and also as they must survive: stale records, events of any pod in
    any order and any number of times, and a second writer between a read and its write."""

    def __init__(self, store: RecordingStore, data_dir: Path, example: int) -> None:
        super().__init__()
        self.store = store
        self.prefix = f"e{example}"
        self.now = T0
        self.backend = FakeBackend(store, f"{self.prefix}-n0", Calls())
        self.lifecycle = make_lifecycle(store, self.backend, data_dir, lambda: self.now)
        self.job_ids: list[int] = []
        self.saved: list[JobRecord] = []
        self.delivered: list[PodEvent] = []
        self.checked = len(store.applied)
        self.versions: dict[int, int] = {}
        store.before_next = None

    # -- helpers --

    def _job(
        self, data: st.DataObject, where: Callable[[JobRecord], bool] = lambda _: True
    ) -> JobRecord | None:
        """One of this example's jobs (read now) for which ``where`` holds; None if none."""
        self.now += 1.0
        first = self.job_ids[0] - 1 if self.job_ids else 0
        jobs = [j for j in self.store.list_jobs(after_id=first) if where(j)]
        return data.draw(st.sampled_from(jobs), label="job") if jobs else None

    def _live_pod_ids(self, job_id: int | None = None) -> list[str]:
        ids = self.job_ids if job_id is None else [job_id]
        return [p.pod_id for p in self.store.pods(ids, live_only=True)]

    def _deliver(self, event: PodEvent) -> None:
        """Deliver ``event``; a live pod takes its phase, an ended (or deleted) one never
        changes again."""
        if event.kind not in (PodEventKind.RUNNING, PodEventKind.WAITING):
            self.backend.ended(event.pod_id)
        before = self.store.pod(event.pod_id)
        self.lifecycle.on_pod_event(event)
        after = self.store.pod(event.pod_id)
        if before is not None and before.phase in LIVE:
            # WAITING says why a pod is not starting: its phase stays.
            expected = before.phase if event.kind is PodEventKind.WAITING else event.kind.value
            assert after is not None and after.phase == expected
        else:
            assert after == before
        self.delivered.append(event)

    def _event(self, data: st.DataObject, pod_ids: list[str]) -> PodEvent:
        pod_id = data.draw(st.sampled_from(pod_ids), label="pod")
        kind = data.draw(st.sampled_from(PodEventKind), label="kind")
        reason = data.draw(st.sampled_from(["", "Error", OOM_KILLED, "NodeLost"]), label="reason")
        exit_code = None if kind in (PodEventKind.RUNNING, PodEventKind.LOST) else 1
        return PodEvent(pod_id, kind, self.now, exit_code, reason)

    def _changes_nothing(self, write: Callable[[], bool]) -> None:
        calls, applied = len(self.backend.calls.log), len(self.store.applied)
        assert write() is False
        assert len(self.backend.calls.log) == calls, "a refused write called the backend"
        assert len(self.store.applied) == applied, "a stale write landed"

    # -- rules: what the reconcilers and the API do --

    @initialize(
        replicas=st.integers(1, 3),
        max_restarts=st.integers(0, 2),
        phase=st.sampled_from(["Pending", "Admitted", "Running"]),
    )
    def first_job(self, replicas: int, max_restarts: int, phase: str) -> None:
        """Start with a job that is pending, admitted, or running (whole runs are rarely long
        enough to get there by chance)."""
        self.submit(replicas, max_restarts)
        job = self.store.get_job_by_id(self.job_ids[0])
        assert job is not None
        if phase != "Pending":
            assert self.lifecycle.admit(job, admission(self.lifecycle, job, self.backend.node))
        if phase == "Running":
            for pod in self.store.pods([job.id]):
                self._deliver(PodEvent(pod.pod_id, PodEventKind.RUNNING, self.now))
            running = self.store.get_job_by_id(job.id)
            assert running is not None and running.phase == "Running"

    @precondition(lambda self: len(self.job_ids) < 4)
    @rule(replicas=st.integers(1, 3), max_restarts=st.integers(0, 2))
    def submit(self, replicas: int, max_restarts: int) -> None:
        job = submit(self.store, f"{self.prefix}-j{len(self.job_ids)}", replicas, max_restarts)
        self.job_ids.append(job.id)
        self.versions[job.id] = job.resource_version

    @precondition(lambda self: self.job_ids)
    @rule(data=st.data())
    def admit(self, data: st.DataObject) -> None:
        job = self._job(data, lambda j: j.phase == "Pending" and not j.is_deleting)
        if job is None or self._live_pod_ids(job.id):  # the previous attempt still stops
            return
        assert self.lifecycle.admit(job, admission(self.lifecycle, job, self.backend.node))

    @precondition(lambda self: self.job_ids)
    @rule(data=st.data(), is_whole_gang=st.booleans())
    def start_pods(self, data: st.DataObject, is_whole_gang: bool) -> None:
        """A pod that has not started yet reports Running, or every such pod of one job."""
        self.now += 1.0
        waiting = [p for p in self.store.pods(self.job_ids, live_only=True) if p.phase == "Pending"]
        if waiting:
            pick = data.draw(st.sampled_from(waiting), label="pod")
            for pod in waiting if is_whole_gang else [pick]:
                if pod.job_id == pick.job_id:
                    self._deliver(PodEvent(pod.pod_id, PodEventKind.RUNNING, self.now))

    @precondition(lambda self: self.job_ids)
    @rule(data=st.data(), kind=st.sampled_from(["AllSucceeded", "Succeeded", "Failed", "Lost"]))
    def end_pods(self, data: st.DataObject, kind: str) -> None:
        """A live pod ends on its own: it succeeds (or every live pod of its job does), fails
        (application error, OOM, node fault) or vanishes."""
        self.now += 1.0
        live = self.store.pods(self.job_ids, live_only=True)
        if not live:
            return
        pick = data.draw(st.sampled_from(live), label="pod")
        if kind == "AllSucceeded":
            for pod in live:
                if pod.job_id == pick.job_id:
                    self._deliver(PodEvent(pod.pod_id, PodEventKind.SUCCEEDED, self.now, 0))
            return
        reason = data.draw(st.sampled_from(["Error", OOM_KILLED, "NodeLost"]), label="reason")
        self._deliver(PodEvent(pick.pod_id, PodEventKind(kind), self.now, 1, reason))

    @precondition(lambda self: self.job_ids)
    @rule(data=st.data())
    def pod_event(self, data: st.DataObject) -> None:
        """Any event for any pod of any attempt, live or ended (late, duplicated, reordered)."""
        self.now += 1.0
        pods = [p.pod_id for p in self.store.pods(self.job_ids)]
        if pods:
            self._deliver(self._event(data, pods))

    @precondition(lambda self: self.delivered)
    @rule(data=st.data())
    def replay_event(self, data: st.DataObject) -> None:
        """An event delivered before, again (with its old timestamp)."""
        self._deliver(data.draw(st.sampled_from(self.delivered), label="replayed"))

    @precondition(lambda self: self.job_ids)
    @rule(data=st.data(), is_delete=st.booleans(), is_done=st.sampled_from([False, False, True]))
    def cancel(self, data: st.DataObject, is_delete: bool, is_done: bool) -> None:
        """A user's cancel or delete (as ControlPlane.delete_job) of an unfinished job, or
        of a finished one: it lands unless the job had finished, which it reports."""
        job = self._job(data, lambda j: JobPhase(j.phase).is_terminal is is_done)
        if job is None:
            return
        is_done = JobPhase(job.phase).is_terminal
        assert self.lifecycle.cancel(job, is_delete=is_delete) is not is_done
        after = self.store.get_job_by_id(job.id)
        assert after is not None and after.phase == (job.phase if is_done else "Cancelled")
        if not is_delete:
            return
        if self._live_pod_ids(job.id):
            self.lifecycle.mark_deleting(after)
            marked = self.store.get_job_by_id(job.id)
            assert marked is not None and marked.is_deleting
        else:
            self.store.delete_job(job.id)

    @precondition(lambda self: self.job_ids)
    @rule(data=st.data(), is_stale=st.booleans())
    def cancel_behind_another_writer(self, data: st.DataObject, is_stale: bool) -> None:
        """A user's cancel decided on a record that another writer has moved on: an old
        record, or a pod event that lands between the cancel's read and its write. It is
        decided again, and lands unless the job finished meanwhile."""
        self.now += 1.0
        if is_stale:
            fresh = {j.id: j for j in self.store.list_jobs(after_id=self.job_ids[0] - 1)}
            behind = [
                r
                for r in self.saved
                if r.id in fresh
                and fresh[r.id].uid == r.uid  # SQLite may give a deleted job's id to a new one
                and fresh[r.id].resource_version != r.resource_version
                and not JobPhase(fresh[r.id].phase).is_terminal
            ]
            if not behind:
                return
            job = data.draw(st.sampled_from(behind), label="old record")
        else:
            with_pods = {p.job_id for p in self.store.pods(self.job_ids, live_only=True)}
            found = self._job(
                data, lambda j: j.id in with_pods and not JobPhase(j.phase).is_terminal
            )
            if found is None:
                return
            job = found
            event = self._event(data, self._live_pod_ids(job.id))
            self.store.before_next = lambda: self._deliver(event)
        is_cancelled = self.lifecycle.cancel(job)
        self.store.before_next = None  # unused when the event wrote nothing
        after = self.store.get_job_by_id(job.id)
        assert after is not None and JobPhase(after.phase).is_terminal
        assert is_cancelled is (after.phase == "Cancelled")
        if is_stale:
            assert is_cancelled

    @precondition(lambda self: self.job_ids)
    @rule()
    def collect_garbage(self) -> None:
        """As GarbageCollector: a deleted job goes once its pods have stopped."""
        for job_id in self.job_ids:
            job = self.store.get_job_by_id(job_id)
            if job is not None and job.is_deleting and not self._live_pod_ids(job_id):
                self.store.delete_job(job_id)

    @precondition(lambda self: self.job_ids)
    @rule(data=st.data())
    def preempt(self, data: st.DataObject) -> None:
        job = self._job(data, lambda j: j.phase in RUNS)
        if job is not None:
            assert self.lifecycle.preempt(job, PREEMPTED)

    @precondition(lambda self: self.job_ids)
    @rule(data=st.data(), is_hung=st.booleans())
    def overrun(self, data: st.DataObject, is_hung: bool) -> None:
        """Past maxRuntime, or no progress within hangTimeout (running jobs only)."""
        job = self._job(data, lambda j: j.phase == "Running")
        if job is None:
            return
        if is_hung:
            assert self.lifecycle.fail_hung(job, HungJob(job.id, 120.0, 60.0, False))
        else:
            assert self.lifecycle.expire(job, 10.0)

    @precondition(lambda self: self.job_ids)
    @rule(data=st.data(), n=st.integers(0, 2))
    def reasons_and_errors(self, data: st.DataObject, n: int) -> None:
        """A pending reason (pending jobs), or a contained error recorded, then cleared."""
        job = self._job(data)
        if job is None:
            return
        if job.phase == "Pending" and n == 2:
            assert self.lifecycle.set_pending_reason(job, WAITING)
            return
        self.lifecycle.record_error(job, "jobs", "admit", RuntimeError(f"boom {n}"))
        fresh = self.store.get_job_by_id(job.id)
        assert fresh is not None
        facts = {"reconciler": "jobs", "step": "admit", "error": f"RuntimeError: boom {n}"}
        expected = Reason(ReasonCode.RECONCILE_ERROR, facts).message
        errors = [c["message"] for c in fresh.conditions if c["type"] == "ReconcileError"]
        assert errors == [expected]
        if n == 0:
            assert self.lifecycle.clear_error(fresh)

    # -- rules: stale records and writers in between --

    @precondition(lambda self: self.job_ids)
    @rule(data=st.data())
    def keep_a_record(self, data: st.DataObject) -> None:
        job = self._job(data)
        if job is not None:
            self.saved.append(job)

    @precondition(lambda self: self.saved)
    @rule(data=st.data(), op=st.sampled_from(sorted(LOOP_WRITES)))
    def stale_write(self, data: st.DataObject, op: str) -> None:
        """A loop write decided on a record kept from earlier, which the job has moved past."""
        fresh = {j.id: j for j in self.store.list_jobs(after_id=self.job_ids[0] - 1)}
        behind = [
            r
            for r in self.saved
            if r.id in fresh
            and fresh[r.id].resource_version != r.resource_version
            and LOOP_WRITES[op](r)
        ]
        if behind:
            self._write_stale(op, data.draw(st.sampled_from(behind), label="old record"))

    @precondition(lambda self: self.job_ids)
    @rule(data=st.data(), op=st.sampled_from(sorted(LOOP_WRITES)))
    def loop_write_after_another_writer(self, data: st.DataObject, op: str) -> None:
        """The loop decided on a record, then another writer (the API, another control
        plane) wrote the job before the loop's write."""
        job = self._job(data, LOOP_WRITES[op])
        if job is not None:
            self.store.transition(Transition(job.id, {"message": "another writer"}))
            self._write_stale(op, job)

    def _write_stale(self, op: str, old: JobRecord) -> None:
        """The loop write ``op``, decided on ``old``, which the job has moved past: the store
        refuses it, and nothing reaches the backend."""
        lc = self.lifecycle
        writes: dict[str, Callable[[], bool]] = {
            "admit": lambda: lc.admit(old, admission(lc, old, self.backend.node)),
            "reason": lambda: lc.set_pending_reason(old, WAITING),
            "preempt": lambda: lc.preempt(old, PREEMPTED),
            "expire": lambda: lc.expire(old, 10.0),
            "hang": lambda: lc.fail_hung(old, HungJob(old.id, 120.0, 60.0, True)),
        }
        refused = self.store.refused
        self._changes_nothing(writes[op])
        assert self.store.refused == refused + 1, "not refused by the store's guard"

    @precondition(lambda self: self.job_ids)
    @rule(data=st.data(), writer=st.sampled_from(["cancel", "error", "message"]))
    def event_while_another_writes(self, data: st.DataObject, writer: str) -> None:
        """Another writer moves the job between the event's read and its write: the event is
        decided again and the pod's own change still lands (``_deliver`` checks it)."""
        self.now += 1.0
        live = self._live_pod_ids()
        if not live:
            return
        event = self._event(data, live)
        pod = self.store.pod(event.pod_id)
        assert pod is not None

        def other_writer() -> None:
            job = self.store.get_job_by_id(pod.job_id)
            assert job is not None
            if writer == "cancel":
                self.lifecycle.cancel(job)
            elif writer == "error":
                self.lifecycle.record_error(job, "jobs", "between", RuntimeError("x"))
            else:
                self.store.transition(Transition(job.id, {"message": "another writer"}))

        self.store.before_next = other_writer
        self._deliver(event)
        self.store.before_next = None  # unused when the event wrote nothing

    # -- invariants --

    @invariant()
    def every_write_is_an_allowed_transition_at_a_newer_version(self) -> None:
        for before, after in self.store.applied[self.checked :]:
            assert after.resource_version > max(before.resource_version, self.versions[after.id])
            self.versions[after.id] = after.resource_version
            if before.phase != after.phase:
                edge = (JobPhase(before.phase), JobPhase(after.phase))
                assert edge in JOB_TRANSITIONS, f"{edge} landed"
            if JobPhase(before.phase).is_terminal:
                assert after.phase == before.phase, "a terminal job left its phase"
        self.checked = len(self.store.applied)

    @invariant()
    def pods_run_only_for_the_current_attempt_of_a_running_job(self) -> None:
        """No launch for another attempt; no attempt beyond the job's; every pod still on
        the backend that its job does not run (any more) was asked to stop."""
        assert self.backend.bad_launches == []
        if not self.job_ids:
            return
        jobs = {j.name: j for j in self.store.list_jobs(after_id=self.job_ids[0] - 1)}
        by_id = {j.id: j for j in jobs.values()}
        for pod in self.store.pods(self.job_ids):
            assert pod.attempt <= by_id[pod.job_id].attempt
        for pod_id in self.backend.running:
            launch = self.backend.launched[pod_id]
            job = jobs.get(launch.job)
            runs = job is not None and job.phase in RUNS and job.attempt == launch.attempt
            assert runs or pod_id in self.backend.stop_sent, (
                f"{pod_id} still runs for {job and (job.phase, job.attempt)}, never stopped"
            )


def test_no_illegal_or_stale_transition_lands(store_url: str, tmp_path: Path) -> None:
    store = RecordingStore(store_url)
    examples = itertools.count()
    # The profile's examples on SQLite; a quarter on PostgreSQL (the same decisions, where
    # only the guard's SQL differs, and every step is several round trips).
    max_examples = settings().max_examples // (1 if store_url.startswith("sqlite") else 4)
    try:
        run_state_machine_as_test(
            lambda: LifecycleMachine(store, tmp_path, next(examples)),
            settings=settings(max_examples=max_examples, stateful_step_count=30),
        )
    finally:
        store.close()
    assert store.applied, "the machine never wrote anything"
    assert store.refused, "no stale write was ever tried"


# ---- races: two writers, one job ----

ROUNDS = 50


def race(*writes: Callable[[], bool]) -> list[bool | BaseException]:
    """Run ``writes`` at once in threads (released together); their results in order."""
    barrier = threading.Barrier(len(writes))
    results: list[bool | BaseException] = [False] * len(writes)

    def run(i: int, write: Callable[[], bool]) -> None:
        barrier.wait()
        try:
            results[i] = write()
        except BaseException as exc:  # reported by the test, not lost in the thread
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i, w)) for i, w in enumerate(writes)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
        assert not t.is_alive(), "a writer is stuck"
    return results


@pytest.fixture
def planes(store_url: str, tmp_path: Path) -> Iterator[tuple[Lifecycle, Lifecycle, Calls]]:
    """Two control planes' Lifecycles on one database, each with its own store (its own
    connection pool) and backend; their backend calls go to one log."""
    calls = Calls()
    stores = [Store(store_url), Store(store_url)]
    a, b = (
        make_lifecycle(s, FakeBackend(s, "n0", calls, tag), tmp_path, lambda: T0)
        for s, tag in zip(stores, "ab", strict=True)
    )
    yield a, b, calls
    for s in stores:
        s.close()


def test_two_planes_admitting_one_job_exactly_one_wins(
    planes: tuple[Lifecycle, Lifecycle, Calls],
) -> None:
    a, b, calls = planes
    winners = []
    for r in range(ROUNDS):
        job = submit(a.store, f"admit-{r}", replicas=2)
        seen_a, seen_b = a.store.get_job(job.name), b.store.get_job(job.name)
        assert seen_a is not None and seen_b is not None
        assert seen_a.resource_version == seen_b.resource_version
        results = race(
            partial(a.admit, seen_a, admission(a, seen_a, "n0")),
            partial(b.admit, seen_b, admission(b, seen_b, "n0")),
        )
        assert results.count(True) == 1 and results.count(False) == 1, results
        winner, loser = ("a", "b") if results[0] is True else ("b", "a")
        winners.append(winner)
        pods = [p.pod_id for p in a.store.pods([job.id])]
        after = a.store.get_job(job.name)
        assert after is not None and (after.phase, after.attempt) == ("Admitted", 1)
        assert len(pods) == 2
        launched = [p for p in calls.of(winner, "launch") if p in pods]
        assert sorted(launched) == sorted(pods)
        assert not [p for p in calls.of(loser, "launch") if p.startswith(f"admit-{r}-")]
    assert len(calls.of("a", "launch")) + len(calls.of("b", "launch")) == 2 * ROUNDS


def test_a_cancel_racing_an_admission_is_never_lost(
    planes: tuple[Lifecycle, Lifecycle, Calls],
) -> None:
    """One plane admits while the other cancels, both from the same read: the cancel always
    lands (decided again after a lost race); the pods of an admission that won are stopped,
    and an admission that lost launches nothing."""
    a, b, calls = planes
    for r in range(ROUNDS):
        job = submit(a.store, f"cancel-{r}", replicas=2)
        seen_a, seen_b = a.store.get_job(job.name), b.store.get_job(job.name)
        assert seen_a is not None and seen_b is not None
        is_admitted, is_cancelled = race(
            partial(a.admit, seen_a, admission(a, seen_a, "n0")),
            partial(b.cancel, seen_b),
        )
        assert is_cancelled is True
        after = b.store.get_job(job.name)
        assert after is not None and after.phase == "Cancelled"
        pods = [p.pod_id for p in a.store.pods([job.id])]
        launched = [p for p in calls.of("a", "launch") if p.startswith(f"cancel-{r}-")]
        if is_admitted is True:
            assert sorted(launched) == sorted(pods) and len(pods) == 2
            assert set(pods) <= set(calls.of("b", "stop"))
        else:
            assert is_admitted is False
            assert launched == [] and pods == []


def test_a_stray_pod_that_starts_after_its_cancel_is_stopped_again(
    planes: tuple[Lifecycle, Lifecycle, Calls],
) -> None:
    """The admitting plane's launch reaches the backend after the cancel's stop: when that
    pod reports Running, it is asked to stop again."""
    a, b, calls = planes
    job = submit(a.store, "stray", replicas=1)
    assert a.admit(job, admission(a, job, "n0"))
    admitted = b.store.get_job("stray")
    assert admitted is not None and b.cancel(admitted)
    (pod,) = a.store.pods([job.id])
    stops = len(calls.of("a", "stop"))
    assert a.on_pod_event(PodEvent(pod.pod_id, PodEventKind.RUNNING, T0 + 1))
    assert calls.of("a", "stop")[stops:] == [pod.pod_id]
    after = a.store.pod(pod.pod_id)
    assert after is not None and after.phase == "Running"


def test_a_cancel_of_a_job_that_finished_meanwhile_reports_it(
    store_url: str, tmp_path: Path
) -> None:
    """The user read the job Running; it succeeded before the cancel's write: the cancel is
    decided again, finds it finished, says so and stops nothing."""
    store = RecordingStore(store_url)
    calls = Calls()
    backend = FakeBackend(store, "n0", calls)
    lc = make_lifecycle(store, backend, tmp_path, lambda: T0)
    try:
        job = submit(store, "done", replicas=1)
        assert lc.admit(job, admission(lc, job, "n0"))
        (pod,) = store.pods([job.id])
        assert lc.on_pod_event(PodEvent(pod.pod_id, PodEventKind.RUNNING, T0))
        running = store.get_job("done")
        assert running is not None and running.phase == "Running"

        def pod_succeeds() -> None:
            backend.ended(pod.pod_id)
            assert lc.on_pod_event(PodEvent(pod.pod_id, PodEventKind.SUCCEEDED, T0 + 1, 0))

        store.before_next = pod_succeeds
        assert lc.cancel(running) is False
        after = store.get_job("done")
        assert after is not None and after.phase == "Succeeded"
        assert calls.of("a", "stop") == []
    finally:
        store.close()


def test_a_write_the_store_keeps_refusing_is_reported_not_lost(
    store_url: str, tmp_path: Path
) -> None:
    """A control plane that lost its lease (Store.fence): a user's cancel is refused although
    nobody moved the job, and says so rather than reporting success or retrying forever."""
    store = Store(store_url)
    lc = make_lifecycle(store, FakeBackend(store, "n0", Calls()), tmp_path, lambda: T0)
    try:
        job = submit(store, "fenced")
        store.acquire_lease("leader", "a", ttl_s=10, now=100.0)
        store.fence = ("leader", "a", 1)
        store.acquire_lease("leader", "b", ttl_s=10, now=200.0)
        with pytest.raises(ConflictError, match="refused to cancel job fenced"):
            lc.cancel(job)
        after = store.get_job("fenced")
        assert after is not None and after.phase == "Pending"
    finally:
        store.close()
