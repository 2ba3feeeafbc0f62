"""The ``sim`` backend: nodes are declared, pods are virtual and end when their work is done.

It implements the Backend protocol against a ``VirtualClock`` that the simulation driver moves
forward. What a job's pods do is a ``SimWorkload`` (``set_workload``; ``set_runtime`` for the
plain case): every pod of an attempt starts at launch and, unless stopped or lost first, ends
together with the others once the attempt has done the job's remaining work — SUCCEEDED, or
FAILED with exit code 1 for the attempts the workload is told to fail. Like a real training
job, a workload may checkpoint its progress every ``checkpoint_s`` seconds of work and resume
from its last checkpoint in the next attempt; one that reports checkpoints writes them, as
rank 0 of a ``phalanx.train`` workload does, to the status file in ``PHALANX_CHECKPOINT_DIR``
(phalanx.train.status), where the controllers read them.

Nodes fail on request (``fail_node``): every pod on the node is reported LOST with the
node-side reason ``NodeFault``, and the node is reported not ready until it is repaired.
A stopped pod reports STOPPED at once (virtual pods need no grace period). Nothing reads the
wall clock, so a run is deterministic. Must not import controllers, store or other backends.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field, replace

from phalanx.backends.base import (
    NODE_FAULT,
    HeldCapacity,
    PodEvent,
    PodEventKind,
    PodLaunch,
    RendezvousInfo,
)
from phalanx.model.objects import Node
from phalanx.train.status import VERSION, status_path, write_status

__all__ = ["SimBackend", "SimWorkload", "VirtualClock"]


class VirtualClock:
    """Simulated time in seconds; only the driver moves it, and only forward."""

    __slots__ = ("now",)

    def __init__(self, start_s: float = 0.0) -> None:
        self.now = start_s

    def advance_to(self, t: float) -> None:
        """Move to ``t`` (a no-op if ``t`` is in the past)."""
        self.now = max(self.now, t)


@dataclass(frozen=True, slots=True)
class SimWorkload:
    """What the pods of one job do. ``runtime_s``: seconds of work the job needs in all;
    ``checkpoint_s``: the work is checkpointed every this many seconds of progress (None: never)
    and a new attempt resumes from the last checkpoint; ``reports_checkpoints``: checkpoints
    are reported to the control plane (status files), so preemption can take them into
    account; ``failing_attempts``: attempts (1-based) that exit with code 1 once their work
    time is up, instead of succeeding."""

    runtime_s: float
    checkpoint_s: float | None = None
    reports_checkpoints: bool = False
    failing_attempts: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.runtime_s < 0 or (self.checkpoint_s is not None and self.checkpoint_s < 0):
            raise ValueError("runtime_s and checkpoint_s must not be negative")

    def saved(self, progress_s: float) -> float:
        """The progress the last checkpoint holds after ``progress_s`` seconds of work."""
        if not self.checkpoint_s:
            return 0.0
        return math.floor(progress_s / self.checkpoint_s + 1e-9) * self.checkpoint_s


#: What the pods of a job without a workload do: end at once.
_NO_WORK = SimWorkload(0.0)


@dataclass(slots=True)
class _Attempt:
    """One attempt of a job on the backend: when it started, the progress it resumed from."""

    workload: SimWorkload
    started_at: float
    resumed_s: float
    pods: set[str] = field(default_factory=set)
    #: The rank-0 pod, which reports checkpoints ("" until launched).
    reporter: PodLaunch | None = None
    reported_at: float | None = None
    is_interrupted: bool = False

    def progress_at(self, now: float) -> float:
        return self.resumed_s + (now - self.started_at)

    def last_checkpoint(self, now: float) -> tuple[float, float] | None:
        """(progress saved, when) of the attempt's latest checkpoint as of ``now``; None if it
        has written none yet."""
        saved = self.workload.saved(self.progress_at(now))
        if saved <= self.resumed_s:
            return None
        return saved, self.started_at + (saved - self.resumed_s)


class SimBackend:
    """Virtual pods on declared nodes, in virtual time."""

    name = "sim"

    def __init__(self, nodes: Sequence[Node], clock: VirtualClock) -> None:
        self._nodes = list(nodes)
        self._node_names = {n.name for n in self._nodes}
        self.clock = clock
        self._workloads: dict[str, SimWorkload] = {}
        #: Progress each job's checkpoints hold (what its next attempt resumes from).
        self._saved: dict[str, float] = {}
        self._attempts: dict[tuple[str, int], _Attempt] = {}
        self._running: dict[str, PodLaunch] = {}
        self._launched: set[str] = set()
        # (end time, sequence, pod id): pods finishing on their own.
        self._ends: list[tuple[float, int, str]] = []
        #: The same for the pods that will fail at their end, and (minus end time, pod id)
        #: of every launched pod: what ``next_event_at`` and ``idle_at`` ask, without a pass
        #: over every running pod (entries of pods no longer running are dropped lazily).
        self._fail_ends: list[tuple[float, int, str]] = []
        self._last_ends: list[tuple[float, str]] = []
        self._events: list[PodEvent] = []
        self._seq = 0
        #: Jobs whose workloads report checkpoints (write status files).
        self._reporters: set[str] = set()
        #: Failed nodes: when each is repaired.
        self._down_until: dict[str, float] = {}

    # ---- what the driver tells it ----

    def set_runtime(self, job: str, runtime_s: float) -> None:
        """Pods of ``job`` run ``runtime_s`` seconds once launched, from zero each attempt."""
        self.set_workload(job, SimWorkload(runtime_s))

    def set_workload(self, job: str, workload: SimWorkload) -> None:
        """What the pods of ``job`` do (see SimWorkload); applies to attempts launched later."""
        self._workloads[job] = workload
        if workload.reports_checkpoints:
            self._reporters.add(job)
        else:
            self._reporters.discard(job)

    def fail_node(self, node: str, repair_s: float, message: str = "") -> list[str]:
        """Fail ``node`` now: every pod on it is LOST (reason ``NodeFault``) and the node is
        not ready for ``repair_s`` seconds. Returns the pods lost. Raises KeyError for an
        unknown node."""
        if node not in self._node_names:
            raise KeyError(f"no node {node!r} in the simulated cluster")
        self._settle()
        now = self.clock.now
        self._down_until[node] = max(self._down_until.get(node, now), now + repair_s)
        text = message or f"node {node} failed (simulated)"
        lost = sorted(p for p, launch in self._running.items() if launch.node == node)
        for pod_id in lost:
            self._end(pod_id, PodEvent(pod_id, PodEventKind.LOST, now, None, NODE_FAULT, text))
        return lost

    def is_down(self, node: str) -> bool:
        """Whether ``node`` failed and is not repaired yet."""
        until = self._down_until.get(node)
        return until is not None and until > self.clock.now

    # ---- the Backend protocol ----

    def nodes(self) -> list[Node]:
        now = self.clock.now
        for node, until in list(self._down_until.items()):
            if until <= now:
                del self._down_until[node]
        if not self._down_until:
            return list(self._nodes)
        return [
            replace(n, is_ready=False) if n.name in self._down_until else n for n in self._nodes
        ]

    def held_capacity(self) -> list[HeldCapacity]:
        """Only phalanx places pods on simulated nodes."""
        return []

    def rendezvous(self, job: str, attempt: int, first_node: str) -> RendezvousInfo:
        return RendezvousInfo(first_node, 29500)

    def launch(self, pod: PodLaunch) -> None:
        if pod.pod_id in self._launched:
            return
        self._settle()
        now = self.clock.now
        self._launched.add(pod.pod_id)
        self._running[pod.pod_id] = pod
        key = (pod.job, pod.attempt)
        attempt = self._attempts.get(key)
        if attempt is None:
            workload = self._workloads.get(pod.job, _NO_WORK)
            resumed = self._saved.get(pod.job, 0.0)
            attempt = self._attempts[key] = _Attempt(workload, now, resumed)
        attempt.pods.add(pod.pod_id)
        if pod.env.get("RANK", "0") == "0" and attempt.workload.reports_checkpoints:
            attempt.reporter = pod
        end = attempt.started_at + max(0.0, attempt.workload.runtime_s - attempt.resumed_s)
        self._seq += 1
        entry = (max(end, now), self._seq, pod.pod_id)
        heapq.heappush(self._ends, entry)
        heapq.heappush(self._last_ends, (-entry[0], pod.pod_id))
        if self._will_fail(pod.pod_id):
            heapq.heappush(self._fail_ends, entry)
        self._events.append(PodEvent(pod.pod_id, PodEventKind.RUNNING, now))

    def stop(self, pod_id: str, grace_period_s: float) -> None:
        self._settle()
        if pod_id in self._running:
            self._end(pod_id, PodEvent(pod_id, PodEventKind.STOPPED, self.clock.now))

    def poll_events(self) -> list[PodEvent]:
        self._settle()
        self._report_checkpoints()
        events, self._events = self._events, []
        return events

    def adopt(self, pod_ids: Iterable[str]) -> list[PodEvent]:
        self._settle()
        return [
            PodEvent(p, PodEventKind.LOST, self.clock.now, reason="NotAdopted")
            for p in pod_ids
            if p not in self._running
        ]

    def read_logs(self, pod_id: str, offset: int = 0, limit: int = 1 << 20) -> bytes:
        return b""

    def close(self) -> None:
        self._running.clear()

    def status_writers(self) -> AbstractSet[str]:
        """The jobs whose pods may write status files (``phalanx.train.status``): those
        whose workload reports checkpoints. Simulated pods are no processes: nothing else
        writes one, so the control plane need not look for the others' (an optional
        capability of a backend, as ``notify_on_exit`` is of the local one)."""
        return self._reporters

    # ---- what the driver asks ----

    def next_event_at(self, *, include_successes: bool = True) -> float | None:
        """When the next event happens: now if events wait to be polled, else when the next
        running pod ends on its own or the next failed node is repaired; None if nothing
        will happen. ``include_successes=False`` leaves out pods that will succeed and
        repairs: only what makes work for the controllers (a pod failing) counts."""
        if any(e.kind is not PodEventKind.RUNNING for e in self._events):
            return self.clock.now
        self._drop_stale_ends()
        if include_successes:
            times = [t for t in self._down_until.values() if t > self.clock.now]
            if self._ends:
                times.append(self._ends[0][0])
        else:
            fail_ends = self._fail_ends
            while fail_ends and fail_ends[0][2] not in self._running:
                heapq.heappop(fail_ends)
            times = [fail_ends[0][0]] if fail_ends else []
        return min(times) if times else None

    def idle_at(self) -> float | None:
        """When every running pod will have ended on its own (now if events wait to be
        polled), if nothing else happens; None if nothing runs and no event waits."""
        self._drop_stale_ends()
        last_ends = self._last_ends
        while last_ends and last_ends[0][1] not in self._running:
            heapq.heappop(last_ends)
        times = [-last_ends[0][0]] if last_ends else []
        if self._events:
            times.append(self.clock.now)
        return max(times) if times else None

    @property
    def running_pods(self) -> int:
        """Pods running now."""
        self._settle()
        return len(self._running)

    # ---- internals ----

    def _drop_stale_ends(self) -> None:
        while self._ends and self._ends[0][2] not in self._running:
            heapq.heappop(self._ends)

    def _will_fail(self, pod_id: str) -> bool:
        """Whether running pod ``pod_id`` will fail when its work time is up."""
        pod = self._running.get(pod_id)
        if pod is None:
            return False
        attempt = self._attempts.get((pod.job, pod.attempt))
        return attempt is not None and pod.attempt in attempt.workload.failing_attempts

    def _settle(self) -> None:
        """End every pod whose work is done by now (at its own end time)."""
        now = self.clock.now
        while self._ends and self._ends[0][0] <= now:
            end, _, pod_id = heapq.heappop(self._ends)
            pod = self._running.get(pod_id)
            if pod is None:
                continue
            if self._will_fail(pod_id):
                event = PodEvent(pod_id, PodEventKind.FAILED, end, 1, "Error", "exit code 1")
            else:
                event = PodEvent(pod_id, PodEventKind.SUCCEEDED, end, exit_code=0)
            self._end(pod_id, event, is_done=event.kind is PodEventKind.SUCCEEDED)

    def _end(self, pod_id: str, event: PodEvent, *, is_done: bool = False) -> None:
        """Record that ``pod_id`` ended with ``event``; an attempt interrupted before its work
        was done keeps the progress of its last checkpoint for the next attempt."""
        pod = self._running.pop(pod_id)
        self._events.append(event)
        key = (pod.job, pod.attempt)
        attempt = self._attempts.get(key)
        if attempt is None:
            return
        if is_done:
            self._saved.pop(pod.job, None)
        elif not attempt.is_interrupted:
            attempt.is_interrupted = True
            checkpoint = attempt.last_checkpoint(event.at)
            if checkpoint is not None:
                self._saved[pod.job] = checkpoint[0]
                self._write_status(attempt, *checkpoint)
        attempt.pods.discard(pod_id)
        if not attempt.pods:
            del self._attempts[key]

    def _report_checkpoints(self) -> None:
        """Write the latest checkpoint of every running attempt that reports them (as the
        workload would have when it took the checkpoint)."""
        now = self.clock.now
        for attempt in self._attempts.values():
            if attempt.reporter is None or attempt.is_interrupted:
                continue
            checkpoint = attempt.last_checkpoint(now)
            if checkpoint is not None and checkpoint[1] != attempt.reported_at:
                self._write_status(attempt, *checkpoint)

    @staticmethod
    def _write_status(attempt: _Attempt, saved_s: float, at: float) -> None:
        pod = attempt.reporter
        folder = None if pod is None else pod.env.get("PHALANX_CHECKPOINT_DIR")
        if pod is None or not folder:
            return
        attempt.reported_at = at
        name = f"{pod.pod_set}-{pod.index}"
        write_status(
            status_path(folder, name),
            {
                "version": VERSION,
                "job": pod.job,
                "pod": name,
                "rank": 0,
                "attempt": pod.attempt,
                "checkpoint": {"step": int(saved_s), "at": at, "path": f"sim-{int(saved_s)}"},
            },
        )
