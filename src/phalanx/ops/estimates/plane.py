"""Start-time estimates of a control plane's pending jobs: what ``sampled`` needs read from
the plane, corrections (``phalanx.ops.calibration``), expected submissions
(``phalanx.ops.arrivals``), and the answer kept per plane while nothing it read has changed
(``estimate_cache``)."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Mapping
from dataclasses import replace

from phalanx.controllers.plane import ControlPlane
from phalanx.model.objects import JobPhase, JobSpec
from phalanx.ops.answer_cache import AnswerCache
from phalanx.ops.arrivals import arrival_model_of, recent_arrivals, submissions_since
from phalanx.ops.calibration import EstimateLog, priority_load, stretch
from phalanx.ops.estimates.forward import (
    DEFAULT_HORIZON_S,
    DEFAULT_LOAD_WINDOW_S,
    Estimate,
    scaled,
)
from phalanx.ops.estimates.runtimes import DEFAULT_SIZE_MIN_GROUP, Finished, RuntimeModel
from phalanx.ops.estimates.sampling import (
    DEFAULT_RANK_Q,
    DEFAULT_SAMPLES,
    DEFAULT_WHOLE_GPU_RANK_Q,
    RunOptions,
    sampled,
)
from phalanx.ops.estimates.what_if import WhatIf
from phalanx.scheduling import Snapshot

#: How long (in the plane's clock) ``estimate_plane`` hands out an answer again while
#: nothing it reads has changed: running jobs' expected ends move on with the clock alone.
CACHE_MAX_AGE_S = 10.0
#: Later submissions are expected at the rate and mix of this many seconds past.
DEFAULT_ARRIVAL_WINDOW_S = 0.0
#: Waits are stretched by the work of higher priority submitted this many seconds past.
DEFAULT_PRIORITY_WINDOW_S = 0.0
#: Waits are scaled by the errors of this many latest first estimates (0: not at all).
DEFAULT_CALIBRATE = 0


def runtime_history(plane: ControlPlane, limit: int = 2000) -> list[Finished]:
    """(queue, GPUs in thousandths, seconds, CPU millicores, memory bytes) of the latest
    ``limit`` jobs that succeeded, each request of all the job's pods together."""
    out: list[Finished] = []
    for view in plane.queries.list_jobs()[::-1]:
        if view.phase is JobPhase.SUCCEEDED and view.started_at and view.finished_at:
            r = view.request
            seconds = view.finished_at - view.started_at
            out.append((view.queue, r.gpu_milli, seconds, r.cpu_milli, r.memory_bytes))
            if len(out) >= limit:
                break
    return out


def estimate_plane(
    plane: ControlPlane,
    runtimes: RuntimeModel | None = None,
    horizon_s: float = DEFAULT_HORIZON_S,
    what_if: WhatIf | None = None,
    samples: int = DEFAULT_SAMPLES,
    repeat_s: float = 0.0,
    arrival_window_s: float = DEFAULT_ARRIVAL_WINDOW_S,
    rank_q: float = DEFAULT_RANK_Q,
    whole_gpu_rank_q: float | None = DEFAULT_WHOLE_GPU_RANK_Q,
    priority_window_s: float = DEFAULT_PRIORITY_WINDOW_S,
    calibrate: int = DEFAULT_CALIBRATE,
    load_window_s: float = DEFAULT_LOAD_WINDOW_S,
) -> dict[str, Estimate]:
    """Estimates for every pending job of ``plane``, from a snapshot of now (see
    ``phalanx.ops.estimates``), with ``what_if``'s change made first if given; ``samples``
    forward runs with runtimes drawn from history (``sampled``; 1: one run with median
    runtimes). Jobs still waiting for the pods of their previous attempt to stop are left out
    (they are about to be considered again). Later submissions (``phalanx.ops.arrivals``):
    ``arrival_window_s`` > 0 expects them at the rate and mix of that many seconds past (0:
    none); ``repeat_s`` > 0 expects the jobs submitted in the last ``repeat_s`` seconds again.
    ``rank_q``: which of the runs' starts a job gets (``ranked``); ``whole_gpu_rank_q``: which
    one a job asking whole GPUs gets (None: ``rank_q``). Corrections
    (``phalanx.ops.calibration``): ``priority_window_s`` > 0 stretches each wait by the work
    of higher priority submitted in that many seconds past; ``calibrate`` > 0 scales waits by
    the median error of the first estimates of the latest ``calibrate`` jobs that started
    (kept per plane, ``estimate_log``). ``load_window_s`` > 0: each estimate tells the load
    of the higher-priority work submitted in that many seconds past
    (``Estimate.higher_priority_load``; its start is not changed).

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
        load_window_s,
    )
    revision = plane.store.revision()
    world = plane.world.read()
    nodes, held = plane.nodes(), plane.backend.held_capacity()
    inputs = (revision, world.epoch, world.revision, nodes, held)
    if cache is not None:
        kept = cache.get(params, inputs, now)
        if kept is not None:
            return dict(kept)
    runtimes = runtimes or RuntimeModel.from_history(
        runtime_history(plane), size_min_group=DEFAULT_SIZE_MIN_GROUP
    )
    snapshot, running, specs = plane_inputs(plane, now, what_if)
    options = RunOptions(
        samples=samples,
        horizon_s=horizon_s,
        arrivals=recent_arrivals(plane, now, repeat_s) if repeat_s > 0 else (),
        arrival_model=(
            arrival_model_of(plane, now, arrival_window_s) if arrival_window_s > 0 else None
        ),
    )
    estimates = sampled(
        snapshot,
        running,
        specs,
        runtimes,
        options,
        rank_q=rank_q,
        whole_gpu_rank_q=whole_gpu_rank_q,
    )
    if priority_window_s > 0:
        submitted = submissions_since(plane, now - priority_window_s)
        rho = priority_load(submitted, snapshot, runtimes, priority_window_s)
        estimates = scaled(estimates, now, {name: stretch(r) for name, r in rho.items()})
    if load_window_s > 0:
        submitted = submissions_since(plane, now - load_window_s)
        loads = priority_load(submitted, snapshot, runtimes, load_window_s)
        estimates = with_loads(estimates, loads)
    if calibrate > 0 and what_if is None:
        estimates = calibrated(plane, estimates, now, calibrate)
    if cache is not None:
        cache.put(params, inputs, now, dict(estimates))
    return estimates


def with_loads(
    estimates: Mapping[str, Estimate], loads: Mapping[str, float]
) -> dict[str, Estimate]:
    """``estimates`` each telling its job's higher-priority load (``priority_load``), to two
    decimals. Pure."""
    return {
        name: replace(e, higher_priority_load=round(loads.get(name, 0.0), 2))
        for name, e in estimates.items()
    }


def plane_inputs(
    plane: ControlPlane, now: float, what_if: WhatIf | None = None
) -> tuple[Snapshot, dict[str, tuple[JobSpec, float]], dict[str, tuple[JobSpec, int]]]:
    """What ``sampled`` estimates from, read from ``plane`` at ``now``: the snapshot (with
    ``what_if``'s change made), each admitted job's spec and seconds run so far (a preempted
    one stopping now; a running one whose workload reports its total steps and pace ending
    when that pace reaches them, or at its maxRuntime if sooner: ``JobProgress.
    expected_end_at``), and every known job's spec and FIFO sequence. Raises ValueError for
    a what-if naming an unknown queue or node."""
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
    progress = plane.jobs_reconciler.reported_progress
    for job_id, record in world.jobs.items():
        spec = world.specs[job_id]
        specs[record.name] = (spec, job_id)
        if record.phase == JobPhase.PREEMPTED.value:
            running[record.name] = (replace(spec, max_runtime_s=0.0), 0.0)  # stopping now
        elif record.phase in (JobPhase.ADMITTED.value, JobPhase.RUNNING.value):
            started = record.started_at or record.admitted_at or now
            elapsed = now - started
            reported = progress.get(job_id)
            end_at = reported.expected_end_at() if reported is not None else None
            if end_at is not None and record.phase == JobPhase.RUNNING.value:
                # the runtime model takes maxRuntime as the runtime: this run's is now
                runtime = elapsed + max(0.0, end_at - now)
                if spec.max_runtime_s is not None:
                    runtime = min(runtime, spec.max_runtime_s)
                spec = replace(spec, max_runtime_s=runtime)
            running[record.name] = (spec, elapsed)
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


_LOCK = threading.Lock()
_LOGS: weakref.WeakKeyDictionary[ControlPlane, EstimateLog] = weakref.WeakKeyDictionary()
_CACHES: weakref.WeakKeyDictionary[ControlPlane, AnswerCache[dict[str, Estimate]]] = (
    weakref.WeakKeyDictionary()
)


def estimate_log(plane: ControlPlane, keep: int) -> EstimateLog:
    """The first estimates and their errors kept for ``plane`` (made on first use, gone with
    the plane), keeping the latest ``keep`` ratios."""
    with _LOCK:
        log = _LOGS.get(plane)
        if log is None or log.keep != keep:
            log = _LOGS[plane] = EstimateLog(keep)
        return log


def estimate_cache(plane: ControlPlane) -> AnswerCache[dict[str, Estimate]]:
    """The cache of ``plane``'s estimates (made on first use, gone with the plane)."""
    with _LOCK:
        cache = _CACHES.get(plane)
        if cache is None:
            cache = _CACHES[plane] = AnswerCache(max_age_s=CACHE_MAX_AGE_S)
        return cache
