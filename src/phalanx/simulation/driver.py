"""The full-mode engine: the production control plane, run in virtual time over the sim backend.

A ``Driver`` owns a real ``ControlPlane`` — a store (in memory by default; see MEMORY_STORE_URL),
the registered reconcilers, the lifecycle with its failure policies and backoff, node health
and quarantine, checkpoint-aware preemption, the scheduler — whose backend is a ``SimBackend``
and whose clock is a ``VirtualClock``. The driver decides nothing about jobs: it submits them
when they arrive, fails nodes when the fault schedule says so, and runs the control loop's
``tick()``. Everything that happens to a job is what the controllers did and recorded.

The loop:
  1. Find the next moment something can happen: a job arriving, a node failing (while work
     is left), a restart backoff ending (the scheduler's ``Backoff`` reasons say when), a
     quarantine cool-down ending, events waiting in the backend (stops and losses take no
     virtual time), a pod failing, and — while some job waits for capacity — a pod succeeding
     or a node being repaired. When no job waits, a pod succeeding cannot change any
     decision: the backend keeps its events, stamped with their own times, and the next tick
     records them with those times (``defer_completions=False`` ticks at every pod end
     instead; a test checks both record the same history).
  2. Move the clock there; fail the nodes that fail then; submit every job arriving then in
     one ``apply``.
  3. Run one tick of the control plane.
"""

from __future__ import annotations

import bisect
import gc
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from phalanx import kinds
from phalanx.backends.sim import SimBackend, SimWorkload, VirtualClock
from phalanx.controllers.health import QuarantinePolicy
from phalanx.controllers.plane import ControlPlane, ControlPlaneConfig
from phalanx.model.objects import Node, Queue, ResourceFlavor
from phalanx.model.reasons import ReasonCode
from phalanx.model.specs import SpecError, flavor_to_manifest, queue_to_manifest
from phalanx.scheduling import Decisions, SchedulerConfig
from phalanx.store import MEMORY_URL, MemoryStore, Store

__all__ = ["Arrival", "Driver", "config_manifests"]

#: The default store: a MemoryStore, the SQL store's contract kept in this process's memory
#: (the same contract tests run on both). ``"sqlite://"`` (an in-memory SQLite database) or
#: any other store URL runs the SQL store instead, about 25 times slower on the openb trace.
MEMORY_STORE_URL = MEMORY_URL


@dataclass(frozen=True, slots=True)
class Arrival:
    """A job submitted at virtual time ``at``: its manifest, and what its pods do."""

    at: float
    manifest: Mapping[str, object]
    workload: SimWorkload

    @property
    def name(self) -> str:
        metadata = self.manifest.get("metadata")
        return str(metadata.get("name", "")) if isinstance(metadata, Mapping) else ""


#: A memory-backed folder for the data directory where the system has one: the control plane
#: makes a checkpoint directory per admitted job, thousands on a trace, and a disk-backed
#: filesystem spends seconds of system CPU making and removing them.
_MEMORY_FS = Path("/dev/shm")


def _scratch_root() -> str | None:
    """The folder for the data directory: ``_MEMORY_FS`` if usable, else the default."""
    if _MEMORY_FS.is_dir() and os.access(_MEMORY_FS, os.W_OK | os.X_OK):
        return str(_MEMORY_FS)
    return None


#: The collector's oldest-generation threshold while a run lasts: high enough that no full
#: collection starts (see ``no_full_collections``).
_NO_FULL_COLLECTIONS = 1 << 30


@contextmanager
def no_full_collections() -> Iterator[None]:
    """Hold off the cyclic collector's full collections while the block runs, and restore its
    thresholds after. A run's heap only grows (the store keeps every job, pod and event), so a
    full collection scans all of it and frees nothing: on the openb trace they were about a
    tenth of the run's CPU and found no garbage. Young collections go on as before, so cycles
    that die young are still freed; anything older waits for the first full collection after
    the run. Process-wide while it lasts, as any threshold is; nested runs keep the outer
    run's setting."""
    young, middle, old = gc.get_threshold()
    gc.set_threshold(young, middle, max(old, _NO_FULL_COLLECTIONS))
    try:
        yield
    finally:
        gc.set_threshold(young, middle, old)


def config_manifests(
    queues: Sequence[Queue], flavors: Sequence[ResourceFlavor]
) -> list[dict[str, object]]:
    """Manifests of ``flavors`` and ``queues``, for ``ControlPlane.apply``."""
    return [
        *(flavor_to_manifest(f) for f in flavors),
        *(queue_to_manifest(q) for q in queues),
    ]


class Driver:
    """A control plane in virtual time; see the module docstring. Use as a context manager
    (or call ``close``): it owns a temporary data directory and the store."""

    def __init__(
        self,
        nodes: Sequence[Node],
        configs: Sequence[Mapping[str, object]],
        arrivals: Sequence[Arrival],
        *,
        scheduler: SchedulerConfig | None = None,
        quarantine: QuarantinePolicy | None = None,
        failures: Sequence[tuple[float, str]] = (),
        repair_s: float = 3600.0,
        start_s: float | None = None,
        defer_completions: bool = True,
        store_url: str = MEMORY_STORE_URL,
    ) -> None:
        """``configs``: queue and flavor manifests applied before anything arrives;
        ``failures``: (virtual time, node) of node failures, each repaired ``repair_s`` later;
        ``start_s``: the clock's start (default: the first arrival).

        Raises SpecError (naming the job) if a manifest is invalid.
        """
        self.arrivals = sorted(arrivals, key=lambda a: a.at)
        self.failures = sorted(failures)
        self.repair_s = repair_s
        self.defer_completions = defer_completions
        first = self.arrivals[0].at if self.arrivals else 0.0
        self.start_s = first if start_s is None else min(start_s, first)
        self.clock = VirtualClock(self.start_s)
        self.backend = SimBackend(nodes, self.clock)
        self._data_dir = Path(tempfile.mkdtemp(prefix="phalanx-sim-", dir=_scratch_root()))
        self.store = MemoryStore() if store_url == MEMORY_URL else Store(store_url)
        config = ControlPlaneConfig(
            self._data_dir,
            grace_period_s=0.0,
            scheduler=scheduler or SchedulerConfig(),
            quarantine=quarantine or QuarantinePolicy(),
        )
        self.plane = ControlPlane(self.store, self.backend, config, clock=self._now)
        if configs:
            self.plane.apply(configs, source="simulated cluster")
        #: (workloads the cycle considered, seconds ``schedule()`` took) per tick.
        self.cycles: list[tuple[int, float]] = []
        #: Node failures that happened while work was left, and the nodes that failed.
        self.node_failures = 0
        self.failed_nodes: list[str] = []
        self.decisions = Decisions()
        self._next_arrival = 0
        self._next_failure = 0

    def _now(self) -> float:
        return self.clock.now

    def __enter__(self) -> Driver:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the store and remove the data directory."""
        self.store.close()
        shutil.rmtree(self._data_dir, ignore_errors=True)

    # ---- the loop ----

    def run(
        self,
        progress: Callable[[int, int], None] | None = None,
        *,
        until: float | None = None,
    ) -> None:
        """Run until nothing more can happen (every job finished, or waits for something
        that will not come), or until the next moment is after ``until``.
        ``progress(arrived, total)`` is called after each tick.

        Raises SpecError naming the job whose manifest is invalid."""
        with no_full_collections():
            self._run(progress, until)

    def _run(self, progress: Callable[[int, int], None] | None, until: float | None) -> None:
        total = len(self.arrivals)
        while True:
            # 1. the next moment something can happen
            t = self._next_moment()
            if t is None or (until is not None and t > until):
                return
            # 2. move there: node failures, then arrivals
            self.clock.advance_to(t)
            self._fail_nodes(t)
            self._submit(t)
            # 3. one tick of the control plane
            self.decisions = self.plane.tick()
            considered = len(self.decisions.admissions) + len(self.decisions.pending)
            self.cycles.append((considered, self.plane.last_cycle_s))
            if progress is not None:
                progress(self._next_arrival, total)

    def add_failure(self, at: float, node: str) -> None:
        """Fail ``node`` at virtual time ``at`` (not before now), repaired ``repair_s`` later."""
        bisect.insort(self.failures, (max(at, self.clock.now), node), lo=self._next_failure)

    def _next_moment(self) -> float | None:
        now = self.clock.now
        # Work: jobs to arrive, jobs waiting (for capacity, or in backoff), pods running.
        times: list[float] = []
        if self._next_arrival < len(self.arrivals):
            times.append(self.arrivals[self._next_arrival].at)
        waiting = False
        for pending in self.decisions.pending:
            code = pending.reason.code
            if code is ReasonCode.BACKOFF:
                not_before = pending.reason.facts.get("not_before")
                if isinstance(not_before, int | float) and not_before > now:
                    times.append(float(not_before))
            elif not code.needs_change:
                waiting = True
        is_busy = bool(times) or waiting
        idle_at = self.backend.idle_at()
        if not is_busy and idle_at is None:
            return None  # no work is left: later failures and cool-downs change nothing
        # Pods succeeding and nodes coming back change nothing while no job waits.
        backend = self.backend.next_event_at(
            include_successes=waiting or not self.defer_completions
        )
        if backend is not None:
            times.append(backend)
        # Node failures and quarantine cool-downs ending matter while work is left.
        later: list[float] = []
        if self._next_failure < len(self.failures):
            later.append(self.failures[self._next_failure][0])
        if self.failed_nodes:
            later.extend(
                h.quarantine_until
                for h in self.plane.node_health.all().values()
                if h.quarantine_until is not None and h.quarantine_until > now
            )
        times.extend(at for at in later if is_busy or (idle_at is not None and at <= idle_at))
        # Nothing waits and nothing else happens before the last pod ends: record the
        # endings at once, when the last one comes.
        return min(times) if times else idle_at

    def _fail_nodes(self, t: float) -> None:
        while self._next_failure < len(self.failures) and self.failures[self._next_failure][0] <= t:
            _, node = self.failures[self._next_failure]
            self._next_failure += 1
            if self.backend.is_down(node):
                continue
            self.backend.fail_node(node, self.repair_s)
            self.node_failures += 1
            if node not in self.failed_nodes:
                self.failed_nodes.append(node)

    def _submit(self, t: float) -> None:
        batch: list[Arrival] = []
        while self._next_arrival < len(self.arrivals) and self.arrivals[self._next_arrival].at <= t:
            batch.append(self.arrivals[self._next_arrival])
            self._next_arrival += 1
        if not batch:
            return
        for arrival in batch:
            self.backend.set_workload(arrival.name, arrival.workload)
        try:
            self.plane.apply([a.manifest for a in batch], source="trace")
        except SpecError:
            for arrival in batch:  # name the job
                try:
                    kinds.parse(arrival.manifest)
                except SpecError as exc:
                    raise SpecError(exc.errors, f"job {arrival.name}") from None
            raise

    # ---- what happened ----

    @property
    def data_dir(self) -> Path:
        """The control plane's data directory (checkpoint directories live there)."""
        return self._data_dir
