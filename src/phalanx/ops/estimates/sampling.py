"""Several forward runs with runtimes drawn from history, and which run's start a job is told.

Runtimes are heavy-tailed, and a job's wait is a sum (the jobs ahead of it, one after
another) and a minimum (the first of several to free enough) of them: the median of a sum of
skewed runtimes is well above the sum of their medians, the minimum of several well below the
minimum of their medians, so one run with median runtimes misjudges both. ``forward_runs``
makes ``RunOptions.samples`` runs, each drawing every job's runtime from its history (a
quantile drawn at random from a generator of the run's own, seeded: the same state gives the
same runs); ``ranked`` gives each job its start in the run at a rank of the runs' (the median
by default; ``whole_gpu_ranks``: another rank for jobs asking whole GPUs). ``sampled`` does
both. Pure: the draws come from seeded generators.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from phalanx.model.objects import JobSpec
from phalanx.model.resources import GPU_MILLI_PER_DEVICE
from phalanx.ops.arrivals import ArrivalModel
from phalanx.ops.estimates.forward import DEFAULT_HORIZON_S, Estimate, forward
from phalanx.ops.estimates.runtimes import RuntimeModel
from phalanx.scheduling import PendingWorkload, Snapshot

#: Forward runs per estimate (``sampled``): odd, so that the median is one run's.
DEFAULT_SAMPLES = 7
#: Which of the forward runs' starts a job is told (``ranked``: 0.5, the median).
DEFAULT_RANK_Q = 0.5
#: Which of them a job asking whole GPUs is told (None: ``DEFAULT_RANK_Q``, the same as
#: every job: a later rank for them, 0.84, was measured worse with later submissions going
#: on and at a lighter load; see docs/operations.md).
DEFAULT_WHOLE_GPU_RANK_Q: float | None = None


@dataclass(frozen=True, slots=True)
class RunOptions:
    """How ``forward_runs`` runs: ``samples`` runs (1, or no history and no
    ``arrival_model``: one run with median runtimes), their generators seeded from ``seed``;
    each run looks ``horizon_s`` ahead, and ``max_work`` (``forward``) is shared by the runs.
    ``arrivals``: jobs expected to be submitted later (``not_before``: when), and
    ``arrival_model``: more drawn at random in each run (``phalanx.ops.arrivals``); they take
    their turn but get no estimate. ``only``: estimate only these jobs (the same answers for
    them: each run draws from a generator of its own)."""

    samples: int = DEFAULT_SAMPLES
    seed: int = 0
    horizon_s: float = DEFAULT_HORIZON_S
    max_work: int = 200_000
    arrivals: Sequence[PendingWorkload] = ()
    arrival_model: ArrivalModel | None = None
    only: Iterable[str] | None = None


def sampled(
    snapshot: Snapshot,
    running: Mapping[str, tuple[JobSpec, float]],
    specs: Mapping[str, tuple[JobSpec, int]],
    runtimes: RuntimeModel,
    options: RunOptions = RunOptions(),
    *,
    rank_q: float = 0.5,
    whole_gpu_rank_q: float | None = None,
) -> dict[str, Estimate]:
    """Estimates of ``snapshot``'s pending jobs (of ``options.only`` when given): the
    ``forward_runs`` ranked (``ranked``), each job told its start in the run at rank
    ``rank_q`` of the runs' (the median by default), or at rank ``whole_gpu_rank_q`` for a
    job asking whole GPUs (None: ``rank_q``): a whole device waits for every sharer to leave
    it, and later fractional jobs keep slipping in, which no run of the jobs submitted so far
    shows (measured in docs/operations.md). ``running``: each admitted job's spec and
    seconds run so far; ``specs``: every known job's spec and FIFO sequence. Pure."""
    runs = forward_runs(snapshot, running, specs, runtimes, options)
    whole = None if whole_gpu_rank_q is None else whole_gpu_ranks(snapshot, whole_gpu_rank_q)
    return ranked(runs, rank_q, whole)


def forward_runs(
    snapshot: Snapshot,
    running: Mapping[str, tuple[JobSpec, float]],
    specs: Mapping[str, tuple[JobSpec, int]],
    runtimes: RuntimeModel,
    options: RunOptions = RunOptions(),
) -> list[dict[str, Estimate]]:
    """The forward runs ``sampled`` ranks (one when there is nothing to draw), each with the
    estimates of the jobs asked about (see ``RunOptions``). Pure."""
    asked = {w.spec.name for w in snapshot.pending}
    if options.only is not None:
        asked &= set(options.only)
    expected = sorted(options.arrivals, key=lambda w: w.not_before)
    draws_runtimes = options.samples > 1 and runtimes.has_history
    if not draws_runtimes and options.arrival_model is None:
        ends = {n: snapshot.now + runtimes.remaining_s(s, e) for n, (s, e) in running.items()}
        return [
            forward(
                snapshot,
                ends,
                specs,
                runtimes,
                horizon_s=options.horizon_s,
                max_work=options.max_work,
                arrivals=expected,
                only=asked,
            )
        ]
    runs_n = max(1, options.samples)
    seeds = random.Random(options.seed)
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
        if options.arrival_model is not None:
            upcoming = heapq.merge(
                expected,
                options.arrival_model.draw(random.Random(rng.random()), snapshot.now),
                key=lambda w: w.not_before,
            )
        runs.append(
            forward(
                snapshot,
                ends,
                specs,
                runtimes,
                horizon_s=options.horizon_s,
                max_work=max(1, options.max_work // runs_n),
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
