"""A fake backend that records what the Lifecycle asks of it, and a store that remembers every
transition it applied, for the guarded-transition tests (a real Store underneath)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from phalanx.backends.base import HeldCapacity, PodEvent, PodLaunch, RendezvousInfo
from phalanx.controllers.health import HealthTracker
from phalanx.controllers.lifecycle import Lifecycle
from phalanx.controllers.state import SpecCache
from phalanx.model.objects import JobPhase, Node
from phalanx.store import JobRecord, Store, Transition
from phalanx.testing import make_node

RUNS = (JobPhase.ADMITTED.value, JobPhase.RUNNING.value)


@dataclass
class Calls:
    """Backend calls of every fake sharing it, in order: (backend tag, "launch"/"stop", pod)."""

    log: list[tuple[str, str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def of(self, tag: str, call: str) -> list[str]:
        return [pod for t, c, pod in self.log if t == tag and c == call]


class FakeBackend:
    """Pods are names in a set: ``launch`` adds one, a delivered end event (see
    ``ended``) removes it; ``stop`` is only recorded, the pod runs until its STOPPED event.
    Each launch is checked against the store: a pod must belong to its job's current
    attempt while the job is Admitted or Running."""

    name = "fake"

    def __init__(self, store: Store, node: str, calls: Calls, tag: str = "a") -> None:
        self.store = store
        self.node = node
        self.calls = calls
        self.tag = tag
        self.launched: dict[str, PodLaunch] = {}
        self.running: set[str] = set()
        self.stop_sent: set[str] = set()
        self.bad_launches: list[str] = []

    def nodes(self) -> list[Node]:
        return [make_node(self.node).gpus(8).obj()]

    def held_capacity(self) -> list[HeldCapacity]:
        return []

    def rendezvous(self, job: str, attempt: int, first_node: str) -> RendezvousInfo:
        return RendezvousInfo(first_node, 29500)

    def launch(self, pod: PodLaunch) -> None:
        job = self.store.get_job(pod.job)
        if job is None or job.phase not in RUNS or job.attempt != pod.attempt:
            where = "gone" if job is None else f"{job.phase} at attempt {job.attempt}"
            self.bad_launches.append(f"{pod.pod_id} (attempt {pod.attempt}; job {where})")
        with self.calls.lock:
            self.calls.log.append((self.tag, "launch", pod.pod_id))
        if pod.pod_id not in self.launched:
            self.launched[pod.pod_id] = pod
            self.running.add(pod.pod_id)

    def stop(self, pod_id: str, grace_period_s: float) -> None:
        with self.calls.lock:
            self.calls.log.append((self.tag, "stop", pod_id))
        self.stop_sent.add(pod_id)

    def ended(self, pod_id: str) -> None:
        """The pod is gone from the backend (its end event is being delivered)."""
        self.running.discard(pod_id)

    def poll_events(self) -> list[PodEvent]:
        return []

    def adopt(self, pod_ids: Iterable[str]) -> list[PodEvent]:
        return []

    def read_logs(self, pod_id: str, offset: int = 0, limit: int = 1 << 20) -> bytes:
        return b""

    def close(self) -> None:
        pass


class RecordingStore(Store):
    """The real store; remembers each applied transition as (job before, job after), and
    runs ``before_next`` (once) at the start of the next transition, as a second writer that
    gets in between a reader and its write."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.applied: list[tuple[JobRecord, JobRecord]] = []
        self.refused = 0
        self.before_next: Callable[[], None] | None = None

    def transition(self, change: Transition) -> bool:
        hook, self.before_next = self.before_next, None
        if hook is not None:
            hook()
        before = self.get_job_by_id(change.job_id)
        applied = super().transition(change)
        after = self.get_job_by_id(change.job_id)
        if applied and before is not None and after is not None:
            self.applied.append((before, after))
        elif not applied:
            self.refused += 1
        return applied


def make_lifecycle(
    store: Store, backend: FakeBackend, data_dir: Path, clock: Callable[[], float]
) -> Lifecycle:
    return Lifecycle(
        store,
        backend,
        clock,
        SpecCache().job,
        data_dir,
        grace_period_s=1.0,
        health=HealthTracker(store, clock),
    )
