"""Corrections to the forward run's waits (``phalanx.ops.estimates``) from what the control
plane has seen: work of higher priority submitted lately, and how past estimates turned out.

- ``priority_load``: later submissions of higher priority go before a waiting job. Instead of
  drawing them into the forward run, each job's wait is stretched by ``1 / (1 - rho)``, where
  ``rho`` is the share of the cluster that submissions of higher priority than the job's took
  in the last ``window_s`` seconds (their GPUs, or CPUs for a job without GPUs, times their
  expected runtimes, per second, over the cluster's). Under preemptive priority a wait ``w``
  for the cluster becomes ``w / (1 - rho)``: work of higher priority arriving at rate ``rho``
  takes that share of every second of it.
- ``Calibration``: the ratios actual / estimated wait of the latest jobs that started, whose
  estimates were taken while they waited; their median scales the next waits. Runtimes and
  later arrivals err the same way for a while (a run of long jobs, a busy hour), so the
  recent errors say which way the next ones go.

``priority_load``, ``stretch`` and ``Calibration`` are pure; ``EstimateLog`` keeps a plane's
first estimates and the ratios once those jobs start (thread-safe). Imports nothing of the
control plane.
"""

from __future__ import annotations

import bisect
import statistics
import threading
from collections import deque
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from phalanx.model.objects import JobSpec
from phalanx.model.resources import GPU_MILLI_PER_DEVICE
from phalanx.scheduling import Snapshot

#: ``rho`` is capped so that a busy past stretches a wait at most this many times.
MAX_STRETCH = 5.0
#: Waits (estimated and actual) shorter than this count as this long in a ratio: a job told
#: "now" that started 5 s later says little about the next estimate's scale.
MIN_RATIO_WAIT_S = 60.0
#: A calibration speaks once it holds this many ratios.
MIN_RATIOS = 5
#: The ratios' median is kept within [1 / MAX_FACTOR, MAX_FACTOR].
MAX_FACTOR = 4.0


class _Runtimes(Protocol):
    def runtime_s(self, spec: JobSpec, q: float = 0.5) -> float: ...


class _Estimate(Protocol):
    @property
    def start_at(self) -> float | None: ...


def priority_load(
    submitted: Sequence[tuple[float, JobSpec]],
    snapshot: Snapshot,
    runtimes: _Runtimes,
    window_s: float,
) -> dict[str, float]:
    """For each pending job of ``snapshot``: ``rho``, the share of the cluster that the
    ``submitted`` jobs (time, spec) of the last ``window_s`` seconds (before
    ``snapshot.now``) of higher priority than the job's take per second, each for its
    expected (median) runtime; 0 when none. Pure."""
    now = snapshot.now
    gpu_total = sum(n.allocatable.gpu_milli for n in snapshot.nodes if not n.is_quarantined)
    cpu_total = sum(n.allocatable.cpu_milli for n in snapshot.nodes if not n.is_quarantined)
    if window_s <= 0 or cpu_total <= 0:
        return {w.spec.name: 0.0 for w in snapshot.pending}
    # GPU share·s and CPU share·s of the recent submissions, by priority
    by_priority: dict[int, list[float]] = {}
    for at, spec in submitted:
        if now - window_s <= at <= now:
            request, run_s = spec.total_request, runtimes.runtime_s(spec)
            gpu = request.gpu_milli / gpu_total if gpu_total else 0.0
            sums = by_priority.setdefault(spec.priority, [0.0, 0.0])
            sums[0] += gpu * run_s
            sums[1] += request.cpu_milli / cpu_total * run_s
    # work of priority above each priority seen (highest first: sums of all above it)
    above: dict[int, tuple[float, float]] = {}
    gpu_above = cpu_above = 0.0
    for priority in sorted(by_priority, reverse=True):
        above[priority] = (gpu_above, cpu_above)
        gpu_above += by_priority[priority][0]
        cpu_above += by_priority[priority][1]
    levels = sorted(above)  # ascending
    out = {}
    for w in snapshot.pending:
        uses_gpus = w.spec.total_request.gpu_milli > 0 and gpu_total > 0
        # the lowest priority seen above the job's: its "above" plus its own work
        i = bisect.bisect_right(levels, w.spec.priority)
        if i == len(levels):
            out[w.spec.name] = 0.0
            continue
        p = levels[i]
        g, c = above[p]
        g, c = g + by_priority[p][0], c + by_priority[p][1]
        out[w.spec.name] = (g if uses_gpus else c) / window_s
    return out


def stretch(rho: float) -> float:
    """How many times longer a wait gets when work of higher priority takes ``rho`` of the
    cluster: ``1 / (1 - rho)``, at most ``MAX_STRETCH``."""
    if rho <= 0:
        return 1.0
    return min(MAX_STRETCH, 1.0 / max(1e-9, 1.0 - rho))


@dataclass(frozen=True, slots=True)
class Calibration:
    """The latest ratios actual / estimated wait (each wait at least ``MIN_RATIO_WAIT_S``)."""

    ratios: Sequence[float] = ()

    @property
    def factor(self) -> float:
        """What to multiply the next estimated waits by: the ratios' median (within
        [1 / ``MAX_FACTOR``, ``MAX_FACTOR``]); 1 with under ``MIN_RATIOS`` of them."""
        if len(self.ratios) < MIN_RATIOS:
            return 1.0
        return min(MAX_FACTOR, max(1.0 / MAX_FACTOR, statistics.median(self.ratios)))


def ratio(estimated_wait_s: float, actual_wait_s: float) -> float:
    """Actual over estimated wait, each counted as at least ``MIN_RATIO_WAIT_S``."""
    return max(MIN_RATIO_WAIT_S, actual_wait_s) / max(MIN_RATIO_WAIT_S, estimated_wait_s)


def job_class(spec: JobSpec) -> Hashable:
    """The class whose past errors speak for ``spec``'s estimate: its queue and GPU request
    (none, a fraction of one device, or a whole count). Waits of one class err alike (a
    whole-GPU job waits for a device to empty, which later fractional jobs keep from
    happening; a fractional job slips into what is left)."""
    gpu = spec.total_request.gpu_milli
    return (spec.queue, 0 if gpu == 0 else "<1" if gpu < GPU_MILLI_PER_DEVICE else gpu // 1000)


class EstimateLog:
    """A plane's first estimate of each waiting job (asked at, estimated wait, its class),
    and the ``ratio`` of each once it started (if it waited at least ``min_wait_s``): the
    latest ``keep`` of all, and of each class. Thread-safe."""

    def __init__(self, keep: int = 50, min_wait_s: float = 0.0) -> None:
        self.keep = keep
        self.min_wait_s = min_wait_s
        self._lock = threading.Lock()
        self._first: dict[str, tuple[float, float, Hashable]] = {}
        self._ratios: deque[float] = deque(maxlen=keep)
        self._by_class: dict[Hashable, deque[float]] = {}

    def note(
        self,
        estimates: Mapping[str, _Estimate],
        now: float,
        classes: Mapping[str, Hashable] | None = None,
    ) -> None:
        """Keep the estimate of each job not seen before, with its class (``classes``;
        missing: None); one with no start is not kept."""
        with self._lock:
            for name, e in estimates.items():
                if name not in self._first and e.start_at is not None:
                    cls = None if classes is None else classes.get(name)
                    self._first[name] = (now, max(0.0, e.start_at - now), cls)

    def started(self, started_at: Mapping[str, float | None]) -> None:
        """Turn the kept estimates of jobs that have started (``started_at``: when, per job;
        None or missing: not yet) into ratios, oldest start first."""
        with self._lock:
            done = sorted(
                (at, name)
                for name in self._first
                if (at := started_at.get(name)) is not None and at >= self._first[name][0]
            )
            for at, name in done:
                asked, estimated, cls = self._first.pop(name)
                if at - asked < self.min_wait_s:
                    continue
                r = ratio(estimated, at - asked)
                self._ratios.append(r)
                self._by_class.setdefault(cls, deque(maxlen=self.keep)).append(r)

    def forget_all_but(self, present: set[str]) -> None:
        """Drop the kept estimates of jobs not in ``present`` (deleted, or gone unstarted)."""
        with self._lock:
            for name in self._first.keys() - present:
                del self._first[name]

    def calibration(self, cls: Hashable = None) -> Calibration:
        """The ratios of class ``cls`` when it holds ``MIN_RATIOS``, else of all (None:
        of all)."""
        with self._lock:
            own = self._by_class.get(cls, ()) if cls is not None else ()
            return Calibration(tuple(own if len(own) >= MIN_RATIOS else self._ratios))
