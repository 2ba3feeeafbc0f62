"""Future submissions for the start-time estimates (``phalanx.ops.estimates``), as a control
plane can expect them from its own recent past.

A job's wait depends on work submitted after it: a later job of higher priority goes first, a
smaller one takes capacity a wide one waits for. The store knows when each job was submitted
and what it asked for, nothing of what comes next, so both models extrapolate the past:

- ``recent_arrivals`` (``repeat_s``): the jobs submitted in the last ``repeat_s`` seconds are
  submitted again, each ``repeat_s`` after it was. Deterministic.
- ``ArrivalModel`` (``rate window``): submissions go on at the rate of the last ``window_s``
  seconds; each forward run draws a Poisson process at that rate, every arrival a copy of one
  of the recent submissions drawn at random. Drawing the copy uniformly from all of them is the
  same as one Poisson process per (queue, priority, shape) at its own recent rate, so the mix
  of priorities and shapes is the recent one.

Expected arrivals are named ``<name>~next…`` (no job name has a ``~``); the forward run queues
them after every job submitted so far, in the order they arrive. Models are pure; the
``*_of(plane, …)`` functions read the control plane for them.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

from phalanx.controllers.plane import ControlPlane
from phalanx.model.objects import JobSpec
from phalanx.model.specs import SpecError
from phalanx.scheduling import PendingWorkload
from phalanx.store.records import JobRecord

#: The suffix of an expected arrival's name.
NEXT = "~next"
#: Expected arrivals queue after every job submitted so far (FIFO sequences are job ids).
FUTURE_SEQ = 1 << 40
#: A rate needs at least this much history (seconds since the first submission seen).
MIN_SPAN_S = 60.0


@dataclass(frozen=True, slots=True)
class ArrivalModel:
    """Submissions to come: ``recent`` (oldest first) were submitted in the last ``span_s``
    seconds, and more come at that rate (see the module docstring)."""

    recent: Sequence[JobSpec]
    span_s: float

    @property
    def rate_per_s(self) -> float:
        """Expected submissions per second (0: none expected)."""
        return len(self.recent) / self.span_s if self.span_s > 0 else 0.0

    def draw(self, rng: random.Random, now: float) -> Iterator[PendingWorkload]:
        """Expected arrivals in the ``span_s`` seconds after ``now`` (the next span like the
        last: a bound on the forward run's work), in time order (``not_before``: when each
        arrives), drawn with ``rng``; none when no rate is known."""
        rate = self.rate_per_s
        if rate <= 0:
            return
        t, k = now, 0
        while True:
            t += rng.expovariate(rate)
            if t > now + self.span_s:
                return
            k += 1
            spec = self.recent[rng.randrange(len(self.recent))]
            yield PendingWorkload(replace(spec, name=f"{spec.name}{NEXT}{k}"), FUTURE_SEQ + k, t)


def can_overtake(spec: JobSpec, waiting: JobSpec) -> bool:
    """Whether a later submission of ``spec`` can start before ``waiting``: it has a higher
    priority (it goes first), or it asks fewer GPUs, whatever its priority (a fraction of a
    device, or fewer devices: it fits a gap that ``waiting`` does not fit). A later job of at
    most the same priority asking at least the same GPUs queues behind ``waiting``. Pure."""
    gpus = spec.total_request.gpu_milli
    return spec.priority > waiting.priority or 0 < gpus < waiting.total_request.gpu_milli


def overtaking(model: ArrivalModel, waiting: Sequence[JobSpec]) -> ArrivalModel:
    """``model`` with only the submissions that can overtake (``can_overtake``) one of the
    ``waiting`` jobs: the rest only queue behind them. The span is the same, so the rate is
    that of the submissions kept. Pure."""
    kept = tuple(s for s in model.recent if any(can_overtake(s, w) for w in waiting))
    return ArrivalModel(kept, model.span_s)


def _submitted_since(plane: ControlPlane, since: float) -> list[tuple[JobRecord, JobSpec]]:
    """(record, spec) of the jobs submitted at or after ``since``, in submission order; jobs whose
    manifest no longer parses are left out."""
    records = [j for j in plane.store.list_jobs(manifests=False) if j.created_at >= since]
    unparsed = [r.id for r in records if not plane.specs.has(r)]
    full = {r.id: r for r in plane.store.list_jobs(ids=unparsed)} if unparsed else {}
    out = []
    for record in records:
        try:
            out.append((record, plane.specs.job(full.get(record.id, record))))
        except SpecError:
            continue
    return sorted(out, key=lambda rs: (rs[0].created_at, rs[0].id))


def arrival_model_of(plane: ControlPlane, now: float, window_s: float) -> ArrivalModel | None:
    """The model of the submissions of the last ``window_s`` seconds (``recent_model``) read
    from ``plane``."""
    first = min((j.created_at for j in plane.store.list_jobs(manifests=False)), default=now)
    return recent_model(submissions_since(plane, now - window_s), now, window_s, first)


def recent_model(
    submitted: Sequence[tuple[float, JobSpec]], now: float, window_s: float, first_at: float
) -> ArrivalModel | None:
    """The model of the ``submitted`` (time, spec; oldest first) of the last ``window_s``
    seconds (fewer when the plane's first job, submitted at ``first_at``, is younger: the rate
    counts only time the plane has seen); None with under ``MIN_SPAN_S`` of history or no
    submission in the window. Pure."""
    span_s = min(window_s, now - first_at)
    if span_s < MIN_SPAN_S:
        return None
    recent = [spec for at, spec in submitted if now - span_s <= at <= now]
    return ArrivalModel(tuple(recent), span_s) if recent else None


def submissions_since(plane: ControlPlane, since: float) -> list[tuple[float, JobSpec]]:
    """(submitted at, spec) of the jobs submitted at or after ``since``, oldest first."""
    return [(record.created_at, spec) for record, spec in _submitted_since(plane, since)]


def recent_arrivals(plane: ControlPlane, now: float, repeat_s: float) -> list[PendingWorkload]:
    """The jobs submitted in the last ``repeat_s`` seconds as they would arrive again
    (``arrivals_again``)."""
    return arrivals_again(
        [(r.created_at, r.id, spec) for r, spec in _submitted_since(plane, now - repeat_s)],
        now,
        repeat_s,
    )


def arrivals_again(
    submitted: Sequence[tuple[float, int, JobSpec]], now: float, repeat_s: float
) -> list[PendingWorkload]:
    """The ``submitted`` (time, job id, spec; oldest first) of the last ``repeat_s`` seconds as
    they would arrive again: renamed ``<name>~next``, held back (``not_before``) until
    ``repeat_s`` after their own submission, in their submission order after every job now
    waiting. Pure."""
    return [
        PendingWorkload(replace(spec, name=spec.name + NEXT), FUTURE_SEQ + job_id, at + repeat_s)
        for at, job_id, spec in submitted
        if now - repeat_s <= at
    ]
