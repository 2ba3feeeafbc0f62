"""Start-time estimates: when each pending job will probably start, and on what it waits.

Like Slurm's ``squeue --start``, but gang-, quota- and preemption-aware: the pure scheduler
(``phalanx.scheduling.schedule``) is run forward in virtual time on a snapshot of now. Running
jobs end at their expected times; at each moment something ends, the scheduler runs again on
what is left; an admitted job starts holding its placement until its own expected end; a
preempted one goes back to the queue. A job not started within ``horizon_s`` (or that waits
for something only a change can fix: a missing queue, a gang that never fits) has no estimate.

Runtimes (``RuntimeModel``): the job's ``maxRuntime`` when it sets one (an upper bound, as
Slurm's time limit); else a quantile of the runtimes of finished jobs of the same queue with
the same GPU count, else of the same queue, else of all, else ``default_runtime_s``; for a
running job, of those longer than it has run so far (one that outlived them all runs as long
again). ``sampled`` makes several forward runs (``forward_runs``) with quantiles drawn at
random (seeded, each run from a generator of its own) and gives each job the start at rank
``rank_q`` of the runs' (``ranked``; the median by default); with one run, every quantile is
the median.

Corrections (``phalanx.ops.calibration``, opt-in): waits stretched by the work of higher
priority submitted lately (``priority_window_s``), and scaled by how the first estimates of
the jobs that started lately turned out (``calibrate``).

Later submissions (``phalanx.ops.arrivals``): jobs expected to be submitted join the forward
run's queue when they arrive, drawn in each run at the rate and mix of the recent past, or the
last ``repeat_s`` seconds' submissions again; they take their turn and get no estimate.

``forward`` and ``sampled`` are pure (a Snapshot and numbers in, estimates out; the draws come
from a seeded generator); ``estimate_plane`` reads the control plane for them and keeps its
answer per plane while nothing it read has changed (``estimate_cache``).
"""

from __future__ import annotations

import bisect
import heapq
import math
import random
import threading
import weakref
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from phalanx.controllers.plane import ControlPlane
from phalanx.model.objects import JobPhase, JobSpec
from phalanx.model.reasons import ReasonCode
from phalanx.model.resources import GPU, GPU_MILLI_PER_DEVICE
from phalanx.ops.answer_cache import AnswerCache
from phalanx.ops.arrivals import (
    FUTURE_SEQ,
    ArrivalModel,
    arrival_model_of,
    recent_arrivals,
    submissions_since,
)
from phalanx.ops.calibration import EstimateLog, priority_load, stretch
from phalanx.scheduling import (
    AdmittedWorkload,
    PendingWorkload,
    Snapshot,
    schedule,
)
from phalanx.scheduling.snapshot import PlacedPod

#: Pending reasons only a change to the cluster, a queue or the job can cure.
_NEVER = frozenset(
    {ReasonCode.QUEUE_NOT_FOUND.value} | {c.value for c in ReasonCode if c.needs_change}
)

#: Forward runs per estimate (``sampled``): odd, so that the median is one run's.
DEFAULT_SAMPLES = 7
#: How long (in the plane's clock) ``estimate_plane`` hands out an answer again while
#: nothing it reads has changed: running jobs' expected ends move on with the clock alone.
CACHE_MAX_AGE_S = 10.0
#: Later submissions are expected at the rate and mix of this many seconds past.
DEFAULT_ARRIVAL_WINDOW_S = 0.0
#: Which of the forward runs' starts a job is told (``ranked``: 0.5, the median).
DEFAULT_RANK_Q = 0.5
#: Which of them a job asking whole GPUs is told (None: ``DEFAULT_RANK_Q``).
DEFAULT_WHOLE_GPU_RANK_Q: float | None = 0.84
#: Waits are stretched by the work of higher priority submitted this many seconds past.
DEFAULT_PRIORITY_WINDOW_S = 0.0
#: Waits are scaled by the errors of this many latest first estimates (0: not at all).
DEFAULT_CALIBRATE = 0


@dataclass(frozen=True, slots=True)
class Estimate:
    """When ``job`` should start (``start_at``, None: not within the horizon, or never as
    things stand) and what it waits on now (``waits_on``: a reason code; ``after``: the jobs
    whose end lets it start)."""

    job: str
    start_at: float | None
    waits_on: str
    after: tuple[str, ...] = ()

    def wait_s(self, now: float) -> float | None:
        """Seconds from ``now`` to the estimated start (None: unknown)."""
        return None if self.start_at is None else max(0.0, self.start_at - now)


@dataclass(frozen=True, slots=True)
class RuntimeModel:
    """Expected runtimes from finished jobs: ``history`` holds (queue, GPUs in thousandths,
    seconds run) of each; a group (same queue and GPUs, same queue) speaks for a job once it
    holds ``min_group`` runtimes. See the module docstring."""

    history: Sequence[tuple[str, int, float]] = ()
    default_runtime_s: float = 3600.0
    _by_shape: Mapping[tuple[str, int], Sequence[float]] = field(default_factory=dict, repr=False)
    _by_queue: Mapping[str, Sequence[float]] = field(default_factory=dict, repr=False)
    _overall: Sequence[float] = ()
    min_group: int = 1

    @classmethod
    def from_history(
        cls,
        history: Sequence[tuple[str, int, float]],
        default_runtime_s: float = 3600.0,
        min_group: int = 1,
    ) -> RuntimeModel:
        """The model of ``history``, its runtimes grouped and sorted once."""
        shapes: dict[tuple[str, int], list[float]] = {}
        queues: dict[str, list[float]] = {}
        for queue, gpu_milli, seconds in history:
            shapes.setdefault((queue, gpu_milli), []).append(seconds)
            queues.setdefault(queue, []).append(seconds)
        return cls(
            tuple(history),
            default_runtime_s,
            {k: sorted(v) for k, v in shapes.items()},
            {k: sorted(v) for k, v in queues.items()},
            sorted(s for _, _, s in history),
            max(1, min_group),
        )

    def _samples(self, spec: JobSpec) -> Sequence[float]:
        shape = self._by_shape.get((spec.queue, spec.total_request.gpu_milli), ())
        if len(shape) >= self.min_group:
            return shape
        queue = self._by_queue.get(spec.queue, ())
        return queue if len(queue) >= self.min_group else self._overall

    @property
    def has_history(self) -> bool:
        """Whether any finished job is known (else every runtime is a default)."""
        return bool(self._overall)

    def runtime_s(self, spec: JobSpec, q: float = 0.5) -> float:
        """The runtime of ``spec`` in seconds: its maxRuntime, else the ``q`` quantile of its
        history (the median by default), else ``default_runtime_s``."""
        if spec.max_runtime_s is not None:
            return spec.max_runtime_s
        samples = self._samples(spec)
        return _quantile(samples, q) if samples else self.default_runtime_s

    def remaining_s(self, spec: JobSpec, elapsed_s: float, q: float = 0.5) -> float:
        """How much longer a job of ``spec`` that has run ``elapsed_s`` should run: up to its
        maxRuntime; else the ``q`` quantile (the median by default) of the runtimes in its
        history longer than ``elapsed_s``, less ``elapsed_s``; a job that has outlived them
        all (or has no history past the default) runs as long again as it has (runtimes are
        heavy-tailed)."""
        if spec.max_runtime_s is not None:
            return max(0.0, spec.max_runtime_s - elapsed_s)
        samples = self._samples(spec) or (self.default_runtime_s,)
        longer = samples[bisect.bisect_right(samples, elapsed_s) :]
        if longer:
            return _quantile(longer, q) - elapsed_s
        return max(elapsed_s, 1.0)


def _quantile(ordered: Sequence[float], q: float) -> float:
    """The ``q`` quantile of the sorted ``ordered``, interpolated (q=0.5: the median)."""
    pos = q * (len(ordered) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def forward(
    snapshot: Snapshot,
    ends_at: Mapping[str, float],
    specs: Mapping[str, tuple[JobSpec, int]],
    runtimes: RuntimeModel,
    *,
    horizon_s: float = 7 * 86_400.0,
    max_cycles: int = 2_000,
    max_work: int = 200_000,
    runtime_of: Callable[[JobSpec], float] | None = None,
    arrivals: Iterable[PendingWorkload] = (),
    only: Iterable[str] | None = None,
) -> dict[str, Estimate]:
    """Estimates for every pending job of ``snapshot``. ``ends_at``: when each admitted
        workload is expected to end; ``specs``: spec and FIFO sequence of each admitted workload
        (a preempted one goes back to the queue with them). The forward run stops after
        ``max_cycles`` scheduler cycles (the first included) or once the cycles have considered ``max_work`` pending
        workloads in all (10,000 waiting jobs: 20 cycles), whichever comes first; jobs not
        started by then have no estimate. ``runtime_of``: how long a job started in the forward
        run runs (default: ``runtimes.runtime_s``). ``arrivals``: jobs expected to be submitted
    later, in time order (``not_before``: when each arrives; ``phalanx.ops.arrivals``), each
    joining the queue when its time comes (a moment of its own) after every job before it; they
    get no estimate, and the run ends once every pending job of ``snapshot`` has started (of
    ``only`` when given: only those get estimates). Pure."""
    runtime_of = runtime_of or runtimes.runtime_s
    now = snapshot.now
    first = schedule(snapshot)
    waits = {p.job: p.reason.code.value for p in first.pending}
    for a in first.admissions:
        waits[a.job] = ReasonCode.ADMITTED.value
    out: dict[str, Estimate] = {}
    ends = dict(ends_at)
    pending = {w.spec.name: w for w in snapshot.pending}
    # Expected later arrivals take their turn but get no estimate: once every job asked
    # about has started, the run is over.
    asked = set(pending) if only is None else set(only) & pending.keys()
    upcoming = iter(arrivals)
    arrival = next(upcoming, None)
    arrived = 0
    admitted = {w.name: w for w in snapshot.admitted}
    ended_last: tuple[str, ...] = ()
    t, decisions, cycles, work = now, first, 1, len(pending)
    while pending:
        # 1. admit what the scheduler admits now: it holds its placement until its end
        for a in decisions.admissions:
            w = pending.pop(a.job)
            out[a.job] = Estimate(a.job, t, waits.get(a.job, ""), ended_last if t > now else ())
            resources = {ps.name: ps.resources for ps in w.spec.pod_sets}
            pods = tuple(PlacedPod(p, resources[p.pod_set]) for p in a.placements)
            admitted[a.job] = AdmittedWorkload(a.job, a.queue, a.flavor, w.spec.priority, pods, t)
            ends[a.job] = t + runtime_of(w.spec)
        # 2. preempted victims stop at once and queue again
        for p in decisions.preemptions:
            victim = admitted.pop(p.victim, None)
            ends.pop(p.victim, None)
            if victim is not None and p.victim in specs:
                spec, seq = specs[p.victim]
                pending[p.victim] = PendingWorkload(spec, seq)
        if asked.isdisjoint(pending) or cycles >= max_cycles or work >= max_work:
            break
        is_stuck = all(
            (r := decisions.reason_for(name)) is not None and r.code.value in _NEVER
            for name in pending
        )
        # 3. the next moment: a preemption frees capacity now, else the next end, backoff or
        # expected arrival
        if decisions.preemptions:
            next_t = t
        else:
            backoffs = [w.not_before for w in pending.values() if w.not_before > t]
            if arrival is not None:
                backoffs.append(arrival.not_before)
            next_t = min([*(ends[n] for n in admitted if n in ends), *backoffs], default=math.inf)
            if is_stuck or next_t == math.inf or next_t - now > horizon_s:
                break
        # 4. expected arrivals due by then join the queue, after everyone before them
        while arrival is not None and arrival.not_before <= next_t:
            arrived += 1
            pending[arrival.spec.name] = replace(arrival, seq=FUTURE_SEQ + arrived)
            arrival = next(upcoming, None)
        ended = sorted(n for n in admitted if ends.get(n, math.inf) <= next_t)
        for name in ended:
            del admitted[name]
        ended_last = tuple(ended)
        t = max(t, next_t)
        snapshot = replace(
            snapshot,
            now=t,
            pending=tuple(sorted(pending.values(), key=lambda w: w.seq)),
            admitted=tuple(admitted.values()),
        )
        decisions = schedule(snapshot)
        cycles += 1
        work += len(pending)
    for name in asked & pending.keys():
        out[name] = Estimate(name, None, waits.get(name, ""))
    return {name: e for name, e in out.items() if name in asked}


def scaled(
    estimates: Mapping[str, Estimate], now: float, factor: Mapping[str, float]
) -> dict[str, Estimate]:
    """``estimates`` with each job's wait (from ``now``) times its ``factor`` (missing: 1); a
    job estimated to start now, or with no estimate, is left as it is. Pure."""
    return {
        name: e
        if e.start_at is None or e.start_at <= now or factor.get(name, 1.0) == 1.0
        else replace(e, start_at=now + (e.start_at - now) * factor[name])
        for name, e in estimates.items()
    }


@dataclass(frozen=True, slots=True)
class WhatIf:
    """A change to try on the snapshot before estimating: ``queue_gpus`` sets queues' nominal
    GPU quota (whole GPUs, on every flavor they list); ``drained`` nodes take no new pods
    (what runs on them runs on to its end)."""

    queue_gpus: Mapping[str, float] = field(default_factory=dict)
    drained: frozenset[str] = frozenset()

    def key(self) -> Hashable:
        """What the change is, as a value that can key a cache."""
        return (tuple(sorted(self.queue_gpus.items())), self.drained)

    def apply(self, snapshot: Snapshot) -> Snapshot:
        """``snapshot`` with the change made. Raises ValueError naming an unknown queue or
        node."""
        known_queues = {q.name for q in snapshot.queues}
        known_nodes = {n.name for n in snapshot.nodes}
        for name in self.queue_gpus:
            if name not in known_queues:
                raise ValueError(
                    f"what-if: no queue {name!r}; queues: {', '.join(sorted(known_queues))}"
                )
        for name in self.drained:
            if name not in known_nodes:
                raise ValueError(
                    f"what-if: no node {name!r}; nodes: {', '.join(sorted(known_nodes))}"
                )
        queues = tuple(
            q
            if q.name not in self.queue_gpus
            else replace(
                q,
                flavors=tuple(
                    replace(
                        fq,
                        resources={
                            **fq.resources,
                            GPU: replace(
                                fq.quota(GPU),
                                nominal=round(self.queue_gpus[q.name] * GPU_MILLI_PER_DEVICE),
                            ),
                        },
                    )
                    for fq in q.flavors
                ),
            )
            for q in snapshot.queues
        )
        nodes = tuple(
            replace(n, is_quarantined=True) if n.name in self.drained else n for n in snapshot.nodes
        )
        return replace(snapshot, queues=queues, nodes=nodes)


def runtime_history(plane: ControlPlane, limit: int = 2000) -> list[tuple[str, int, float]]:
    """(queue, GPUs in thousandths, seconds) of the latest ``limit`` jobs that succeeded."""
    out = []
    for view in plane.queries.list_jobs()[::-1]:
        if view.phase is JobPhase.SUCCEEDED and view.started_at and view.finished_at:
            out.append((view.queue, view.request.gpu_milli, view.finished_at - view.started_at))
            if len(out) >= limit:
                break
    return out


def estimate_plane(
    plane: ControlPlane,
    runtimes: RuntimeModel | None = None,
    horizon_s: float = 7 * 86_400.0,
    what_if: WhatIf | None = None,
    samples: int = DEFAULT_SAMPLES,
    repeat_s: float = 0.0,
    arrival_window_s: float = DEFAULT_ARRIVAL_WINDOW_S,
    rank_q: float = DEFAULT_RANK_Q,
    whole_gpu_rank_q: float | None = DEFAULT_WHOLE_GPU_RANK_Q,
    priority_window_s: float = DEFAULT_PRIORITY_WINDOW_S,
    calibrate: int = DEFAULT_CALIBRATE,
) -> dict[str, Estimate]:
    """Estimates for every pending job of ``plane``, from a snapshot of now (see the module
    docstring), with ``what_if``'s change made first if given; ``samples`` forward runs with
    runtimes drawn from history (``sampled``; 1: one run with median runtimes). Jobs still
    waiting for the pods of their previous attempt to stop are left out (they are about to be
    considered again). Later submissions (``phalanx.ops.arrivals``): ``arrival_window_s`` > 0
    expects them at the rate and mix of that many seconds past (0: none); ``repeat_s`` > 0
    expects the jobs submitted in the last ``repeat_s`` seconds again. ``rank_q``: which of
    the runs' starts a job gets (``ranked``); ``whole_gpu_rank_q``: which one a job asking
    whole GPUs gets (None: ``rank_q``). Corrections (``phalanx.ops.calibration``):
    ``priority_window_s`` > 0 stretches each wait by the work of higher priority submitted in
    that many seconds past; ``calibrate`` > 0 scales waits by the median error of the first
    estimates of the latest ``calibrate`` jobs that started (kept per plane, ``estimate_log``).

    With ``runtimes`` None (the model is read from the plane's history), the answer is kept
    per plane and handed out again (a copy) while the store's revision, the cached world,
    the nodes and the capacity held by others are as they were, for up to
    ``CACHE_MAX_AGE_S`` of the plane's clock. Raises ValueError for a what-if naming an
    unknown queue or node."""
    now = plane.clock()
    cache = estimate_cache(plane) if runtimes is None else None
    params = (
        horizon_s,
        what_if.key() if what_if else None,
        samples,
        repeat_s,
        arrival_window_s,
        rank_q,
        whole_gpu_rank_q,
        priority_window_s,
        calibrate,
    )
    revision = plane.store.revision()
    world = plane.world.read()
    nodes, held = plane.nodes(), plane.backend.held_capacity()
    inputs = (revision, world.epoch, world.revision, nodes, held)
    if cache is not None:
        kept = cache.get(params, inputs, now)
        if kept is not None:
            return dict(kept)
    runtimes = runtimes or RuntimeModel.from_history(runtime_history(plane))
    snapshot, running, specs = plane_inputs(plane, now, what_if)
    estimates = sampled(
        snapshot,
        running,
        specs,
        runtimes,
        samples=samples,
        horizon_s=horizon_s,
        arrivals=recent_arrivals(plane, now, repeat_s) if repeat_s > 0 else (),
        arrival_model=(
            arrival_model_of(plane, now, arrival_window_s) if arrival_window_s > 0 else None
        ),
        rank_q=rank_q,
        whole_gpu_rank_q=whole_gpu_rank_q,
    )
    if priority_window_s > 0:
        submitted = submissions_since(plane, now - priority_window_s)
        rho = priority_load(submitted, snapshot, runtimes, priority_window_s)
        estimates = scaled(estimates, now, {name: stretch(r) for name, r in rho.items()})
    if calibrate > 0 and what_if is None:
        estimates = calibrated(plane, estimates, now, calibrate)
    if cache is not None:
        cache.put(params, inputs, now, dict(estimates))
    return estimates


def plane_inputs(
    plane: ControlPlane, now: float, what_if: WhatIf | None = None
) -> tuple[Snapshot, dict[str, tuple[JobSpec, float]], dict[str, tuple[JobSpec, int]]]:
    """What ``sampled`` estimates from, read from ``plane`` at ``now``: the snapshot (with
    ``what_if``'s change made), each admitted job's spec and seconds run so far (a preempted
    one stopping now), and every known job's spec and FIFO sequence. Raises ValueError for a
    what-if naming an unknown queue or node."""
    world = plane.world.read()
    snapshot, _ = world.snapshot(
        now,
        plane.nodes(),
        plane.specs.queues(plane.store),
        plane.specs.flavors(plane.store),
        plane.config.scheduler,
        None,
        plane.backend.held_capacity(),
    )
    if what_if is not None:
        snapshot = what_if.apply(snapshot)
    specs: dict[str, tuple[JobSpec, int]] = {}
    running: dict[str, tuple[JobSpec, float]] = {}  # name -> (spec, seconds run)
    for job_id, record in world.jobs.items():
        spec = world.specs[job_id]
        specs[record.name] = (spec, job_id)
        if record.phase == JobPhase.PREEMPTED.value:
            running[record.name] = (replace(spec, max_runtime_s=0.0), 0.0)  # stopping now
        elif record.phase in (JobPhase.ADMITTED.value, JobPhase.RUNNING.value):
            started = record.started_at or record.admitted_at or now
            running[record.name] = (spec, now - started)
    return snapshot, running, specs


def calibrated(
    plane: ControlPlane, estimates: Mapping[str, Estimate], now: float, keep: int
) -> dict[str, Estimate]:
    """``estimates`` scaled by the median ratio actual / estimated wait of the latest ``keep``
    jobs of ``plane`` that started after a first estimate (``phalanx.ops.calibration``); the
    estimates of jobs not seen before are kept as their first."""
    log = estimate_log(plane, keep)
    records = plane.store.list_jobs(manifests=False)
    log.forget_all_but({r.name for r in records})
    log.started({r.name: r.started_at for r in records})
    log.note(estimates, now)
    factor = log.calibration().factor
    return scaled(estimates, now, dict.fromkeys(estimates, factor))


_LOGS: weakref.WeakKeyDictionary[ControlPlane, EstimateLog] = weakref.WeakKeyDictionary()


def estimate_log(plane: ControlPlane, keep: int) -> EstimateLog:
    """The first estimates and their errors kept for ``plane`` (made on first use, gone with
    the plane), keeping the latest ``keep`` ratios."""
    with _CACHES_LOCK:
        log = _LOGS.get(plane)
        if log is None or log.keep != keep:
            log = _LOGS[plane] = EstimateLog(keep)
        return log


_CACHES: weakref.WeakKeyDictionary[ControlPlane, AnswerCache[dict[str, Estimate]]] = (
    weakref.WeakKeyDictionary()
)
_CACHES_LOCK = threading.Lock()


def estimate_cache(plane: ControlPlane) -> AnswerCache[dict[str, Estimate]]:
    """The cache of ``plane``'s estimates (made on first use, gone with the plane)."""
    with _CACHES_LOCK:
        cache = _CACHES.get(plane)
        if cache is None:
            cache = _CACHES[plane] = AnswerCache(max_age_s=CACHE_MAX_AGE_S)
        return cache


def sampled(
    snapshot: Snapshot,
    running: Mapping[str, tuple[JobSpec, float]],
    specs: Mapping[str, tuple[JobSpec, int]],
    runtimes: RuntimeModel,
    *,
    samples: int = DEFAULT_SAMPLES,
    seed: int = 0,
    horizon_s: float = 7 * 86_400.0,
    max_work: int = 200_000,
    arrivals: Sequence[PendingWorkload] = (),
    arrival_model: ArrivalModel | None = None,
    only: Iterable[str] | None = None,
    rank_q: float = 0.5,
    whole_gpu_rank_q: float | None = None,
) -> dict[str, Estimate]:
    """Estimates of ``snapshot``'s pending jobs (of ``only`` when given) as the median of
    ``samples`` forward runs.
    ``running``: each admitted job's spec and seconds run so far; ``arrivals``: jobs expected
    to be submitted later (``not_before``: when), and ``arrival_model``: more drawn at random
    in each run (``phalanx.ops.arrivals``); they take their turn in the forward runs but get
    no estimate.

    Runtimes are heavy-tailed, and a job's wait is a sum (the jobs ahead of it, one after
    another) and a minimum (the first of several to free enough) of them: the median of a sum
    of skewed runtimes is well above the sum of their medians, the minimum of several well
    below the minimum of their medians, so one run with median runtimes misjudges both. Each
    run draws every job's runtime from its history instead (a quantile drawn at random:
    for a running job, of the runtimes longer than it has run so far); a job's estimate is
    its start in the run whose start is at rank ``rank_q`` of the runs' (the median by
    default, the lower one for an even ``samples``; no start counts as latest), or at rank
    ``whole_gpu_rank_q`` for a job asking whole GPUs (None: ``rank_q``): a whole device
    waits for every sharer to leave it, and later fractional jobs keep slipping in, which no
    run of the jobs submitted so far shows (measured in docs/operations.md). Deterministic
    for a ``seed``; with nothing to draw (no history or ``samples`` <= 1, and no
    ``arrival_model``), one run with median runtimes. ``max_work`` is shared by the runs.
    ``only``: estimate only these jobs (the same answers for them: each run draws from a
    generator of its own)."""
    runs = forward_runs(
        snapshot,
        running,
        specs,
        runtimes,
        samples=samples,
        seed=seed,
        horizon_s=horizon_s,
        max_work=max_work,
        arrivals=arrivals,
        arrival_model=arrival_model,
        only=only,
    )
    whole = None if whole_gpu_rank_q is None else whole_gpu_ranks(snapshot, whole_gpu_rank_q)
    return ranked(runs, rank_q, whole)


def forward_runs(
    snapshot: Snapshot,
    running: Mapping[str, tuple[JobSpec, float]],
    specs: Mapping[str, tuple[JobSpec, int]],
    runtimes: RuntimeModel,
    *,
    samples: int = DEFAULT_SAMPLES,
    seed: int = 0,
    horizon_s: float = 7 * 86_400.0,
    max_work: int = 200_000,
    arrivals: Sequence[PendingWorkload] = (),
    arrival_model: ArrivalModel | None = None,
    only: Iterable[str] | None = None,
) -> list[dict[str, Estimate]]:
    """The forward runs ``sampled`` ranks (one when there is nothing to draw), each with the
    estimates of the jobs asked about. Pure."""
    asked = {w.spec.name for w in snapshot.pending}
    if only is not None:
        asked &= set(only)
    expected = sorted(arrivals, key=lambda w: w.not_before)
    draws_runtimes = samples > 1 and runtimes.has_history
    if not draws_runtimes and arrival_model is None:
        ends = {n: snapshot.now + runtimes.remaining_s(s, e) for n, (s, e) in running.items()}
        return [
            forward(
                snapshot,
                ends,
                specs,
                runtimes,
                horizon_s=horizon_s,
                max_work=max_work,
                arrivals=expected,
                only=asked,
            )
        ]
    runs_n = max(1, samples)
    seeds = random.Random(seed)
    runs: list[dict[str, Estimate]] = []
    for _ in range(runs_n):
        # each run draws from a generator of its own: a run that stops earlier (fewer jobs
        # asked about) leaves the others' draws as they were
        rng = random.Random(seeds.random())

        def quantile(rng: random.Random = rng) -> float:
            return rng.random() if draws_runtimes else 0.5

        ends = {
            n: snapshot.now + runtimes.remaining_s(s, e, quantile())
            for n, (s, e) in sorted(running.items())
        }
        drawn: dict[str, float] = {}

        def runtime_of(
            spec: JobSpec,
            drawn: dict[str, float] = drawn,
            quantile: Callable[[], float] = quantile,
        ) -> float:
            if spec.name not in drawn:
                drawn[spec.name] = runtimes.runtime_s(spec, quantile())
            return drawn[spec.name]

        upcoming: Iterable[PendingWorkload] = expected
        if arrival_model is not None:
            upcoming = heapq.merge(
                expected,
                arrival_model.draw(random.Random(rng.random()), snapshot.now),
                key=lambda w: w.not_before,
            )
        runs.append(
            forward(
                snapshot,
                ends,
                specs,
                runtimes,
                horizon_s=horizon_s,
                max_work=max(1, max_work // runs_n),
                runtime_of=runtime_of,
                arrivals=upcoming,
                only=asked,
            )
        )
    return runs


def ranked(
    runs: Sequence[Mapping[str, Estimate]],
    rank_q: float = 0.5,
    rank_of: Mapping[str, float] | None = None,
) -> dict[str, Estimate]:
    """Each job's estimate in the run whose start for it is at rank ``rank_q`` of the runs'
    (0.5: the median, the lower one of an even count; no start counts as latest), or at the
    job's own rank in ``rank_of``. Pure."""
    out: dict[str, Estimate] = {}
    ranks = rank_of or {}
    for name in sorted(runs[0]) if runs else ():
        starts = sorted(
            (r[name] for r in runs if name in r),
            key=lambda e: math.inf if e.start_at is None else e.start_at,
        )
        q = ranks.get(name, rank_q)
        out[name] = starts[min(len(starts) - 1, math.floor(q * (len(starts) - 1)))]
    return out


def whole_gpu_ranks(snapshot: Snapshot, rank_q: float) -> dict[str, float]:
    """``rank_q`` for each pending job of ``snapshot`` that asks for whole GPUs (a pod with
    one or more devices): for ``ranked``'s ``rank_of``."""
    return {
        w.spec.name: rank_q
        for w in snapshot.pending
        if any(ps.resources.gpu_milli >= GPU_MILLI_PER_DEVICE for ps in w.spec.pod_sets)
    }
