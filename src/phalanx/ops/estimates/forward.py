"""One forward run: the pure scheduler run on in virtual time from a snapshot of now.

Running jobs end at their expected times; at each moment something ends (or a backoff runs
out, or an expected submission arrives), the scheduler (``phalanx.scheduling.schedule``) runs
again on what is left; an admitted job holds its placement until its own expected end; a
preempted one goes back to the queue. A job not started within ``horizon_s``, or waiting for
something only a change can cure (a missing queue, a gang that never fits), has no estimate.
Pure: a Snapshot and numbers in, estimates out.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace

from phalanx.model.objects import JobSpec
from phalanx.model.reasons import ReasonCode
from phalanx.ops.arrivals import FUTURE_SEQ
from phalanx.ops.estimates.runtimes import RuntimeModel
from phalanx.scheduling import AdmittedWorkload, PendingWorkload, Snapshot, schedule
from phalanx.scheduling.snapshot import PlacedPod

#: Pending reasons only a change to the cluster, a queue or the job can cure.
_NEVER = frozenset(
    {ReasonCode.QUEUE_NOT_FOUND.value} | {c.value for c in ReasonCode if c.needs_change}
)
#: How far ahead a forward run looks by default: a week.
DEFAULT_HORIZON_S = 7 * 86_400.0
#: At this ``higher_priority_load`` (or more) an estimate holds only if that work stops coming.
OVERLOADED = 1.0
#: ``estimate_plane`` measures ``higher_priority_load`` over the submissions of this many
#: seconds past by default (0: not measured).
DEFAULT_LOAD_WINDOW_S = 1800.0


@dataclass(frozen=True, slots=True)
class Estimate:
    """When ``job`` should start (``start_at``, None: not within the horizon, or never as
    things stand) and what it waits on now (``waits_on``: a reason code; ``after``: the jobs
    whose end lets it start). ``higher_priority_load``: the share of the cluster that work
    of higher priority than the job's, submitted lately, asks for (``rho`` of
    ``phalanx.ops.calibration.priority_load``; 0: none, or not measured). At 1 or more that
    work arrives faster than the cluster serves it: the forward run, which knows only the
    jobs submitted so far, tells a start that holds only if it stops coming, and the job may
    start much later (``OVERLOADED``)."""

    job: str
    start_at: float | None
    waits_on: str
    after: tuple[str, ...] = ()
    higher_priority_load: float = 0.0

    @property
    def is_overloaded(self) -> bool:
        """Whether work of higher priority arrives faster than the cluster serves it."""
        return self.higher_priority_load >= OVERLOADED

    def wait_s(self, now: float) -> float | None:
        """Seconds from ``now`` to the estimated start (None: unknown)."""
        return None if self.start_at is None else max(0.0, self.start_at - now)


def forward(
    snapshot: Snapshot,
    ends_at: Mapping[str, float],
    specs: Mapping[str, tuple[JobSpec, int]],
    runtimes: RuntimeModel,
    *,
    horizon_s: float = DEFAULT_HORIZON_S,
    max_cycles: int = 2_000,
    max_work: int = 200_000,
    runtime_of: Callable[[JobSpec], float] | None = None,
    arrivals: Iterable[PendingWorkload] = (),
    only: Iterable[str] | None = None,
) -> dict[str, Estimate]:
    """Estimates for every pending job of ``snapshot`` (of ``only`` when given: only those
    get estimates, and the run ends once they have all started). ``ends_at``: when each
    admitted workload is expected to end; ``specs``: spec and FIFO sequence of each admitted
    workload (a preempted one goes back to the queue with them). The run stops after
    ``max_cycles`` scheduler cycles (the first included) or once the cycles have considered
    ``max_work`` pending workloads in all (10,000 waiting jobs: 20 cycles), whichever comes
    first; jobs not started by then have no estimate. ``runtime_of``: how long a job started
    in the run runs (default: ``runtimes.runtime_s``). ``arrivals``: jobs expected to be
    submitted later, in time order (``not_before``: when each arrives;
    ``phalanx.ops.arrivals``), each joining the queue when its time comes (a moment of its
    own) after every job before it; they get no estimate. Pure."""
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
