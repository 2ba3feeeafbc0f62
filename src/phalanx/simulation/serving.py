"""Serving in virtual time: a request stream, replicas that start, serve and stop, the router's
choice and the production autoscaler (``phalanx.serving.autoscaler``), so that autoscaling
policies can be compared on the same trace without running anything.

The model (``simulate_serving``), in seconds of virtual time:

1. Requests arrive at the trace's times, each needing ``service_s`` of one replica slot.
2. A replica serves ``replica_concurrency`` requests at once (a slot each), and is ready
   ``startup_s`` after it was asked for. The router sends each request to the ready replica
   with the fewest requests in flight that has a free slot; otherwise the request waits in one
   FIFO queue (no request is rejected: waiting shows as latency).
3. Every ``tick_s`` the router's sample (time-weighted mean in flight, waiting, requests so
   far) is folded into the autoscaler, which decides the replica count; a request that finds
   no replica at all asks at once (scale from zero). Scale-ups start replicas; scale-downs
   stop the newest idle replicas first and drain busy ones (they take no new requests).
4. A fixed policy keeps ``replicas`` replicas all the time.

Measured (``ServingResult``): each request's latency (wait + service), the share within the
SLO, and replica-seconds (every replica from the moment it is asked for until it stops, the
cost of a GPU held). ``bursty_trace`` makes a trace with quiet spells, a steady base and
bursts; ``compare_policies`` prints the autoscaler against fixed provisioning at the peak.

Deterministic for a given trace (the trace takes the only randomness, from its ``rng``).
"""

from __future__ import annotations

import heapq
import math
import random
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from phalanx.serving.autoscaler import AutoscalerSpec, AutoscalerState, decide, observe
from phalanx.serving.endpoints import LoadSample

__all__ = [
    "FixedPolicy",
    "KpaPolicy",
    "Request",
    "ServingResult",
    "bursty_trace",
    "compare_policies",
    "simulate_serving",
]


@dataclass(frozen=True, slots=True)
class Request:
    at: float
    service_s: float


@dataclass(frozen=True, slots=True)
class FixedPolicy:
    replicas: int
    name: str = "fixed"


@dataclass(frozen=True, slots=True)
class KpaPolicy:
    spec: AutoscalerSpec
    name: str = "autoscaler"


@dataclass(frozen=True, slots=True)
class ServingResult:
    policy: str
    latencies_s: tuple[float, ...]
    replica_seconds: float
    max_replicas: int
    duration_s: float

    def slo_share(self, slo_s: float) -> float:
        """The share of requests answered within ``slo_s``."""
        if not self.latencies_s:
            return 1.0
        return sum(1 for x in self.latencies_s if x <= slo_s) / len(self.latencies_s)

    def percentile_s(self, p: float) -> float:
        ordered = sorted(self.latencies_s)
        if not ordered:
            return 0.0
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


@dataclass(slots=True)
class _Replica:
    ident: int
    asked_at: float
    ready_at: float
    in_flight: int = 0
    draining: bool = False
    stopped_at: float | None = None

    def ready(self, now: float) -> bool:
        return self.ready_at <= now and not self.draining and self.stopped_at is None


_ARRIVE, _DONE, _READY, _TICK = 0, 1, 2, 3


@dataclass(slots=True)
class _World:
    startup_s: float
    concurrency: int
    replicas: list[_Replica] = field(default_factory=list)
    stopped: list[_Replica] = field(default_factory=list)
    queue: deque[tuple[float, float]] = field(default_factory=deque)
    events: list[tuple[float, int, int, float, float]] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    seq: int = 0
    next_id: int = 0
    in_flight: int = 0
    area: float = 0.0
    changed_at: float = 0.0
    requests_total: int = 0
    peak: int = 0

    def push(self, at: float, kind: int, a: float = 0.0, b: float = 0.0) -> None:
        self.seq += 1
        heapq.heappush(self.events, (at, kind, self.seq, a, b))

    def flight(self, now: float, delta: int) -> None:
        self.area += self.in_flight * (now - self.changed_at)
        self.changed_at = now
        self.in_flight += delta

    def live(self) -> list[_Replica]:
        return [r for r in self.replicas if r.stopped_at is None and not r.draining]

    def scale_to(self, now: float, n: int) -> None:
        live = self.live()
        for _ in range(n - len(live)):
            replica = _Replica(self.next_id, now, now + self.startup_s)
            self.next_id += 1
            self.replicas.append(replica)
            self.push(replica.ready_at, _READY, replica.ident)
        if len(live) > n:
            # Stop those not ready yet first, then idle ones, newest first; drain busy ones.
            victims = sorted(live, key=lambda r: (r.ready_at <= now, r.in_flight > 0, -r.ident))
            for replica in victims[: len(live) - n]:
                if replica.in_flight == 0:
                    self.stop(replica, now)
                else:
                    replica.draining = True
        self.peak = max(self.peak, len(self.live()))

    def stop(self, replica: _Replica, now: float) -> None:
        replica.stopped_at = now
        self.replicas.remove(replica)
        self.stopped.append(replica)

    def dispatch(self, now: float) -> None:
        while self.queue:
            best: _Replica | None = None
            for replica in self.replicas:
                if (
                    replica.ready(now)
                    and replica.in_flight < self.concurrency
                    and (best is None or replica.in_flight < best.in_flight)
                ):
                    best = replica
            if best is None:
                return
            arrived, service_s = self.queue.popleft()
            best.in_flight += 1
            self.flight(now, 1)
            self.push(now + service_s, _DONE, best.ident, arrived)


def simulate_serving(
    trace: Sequence[Request],
    policy: FixedPolicy | KpaPolicy,
    *,
    startup_s: float = 5.0,
    replica_concurrency: int = 8,
    tick_s: float = 1.0,
) -> ServingResult:
    """Run ``trace`` under ``policy``; see the module docstring."""
    world = _World(startup_s, replica_concurrency)
    end = max((r.at for r in trace), default=0.0)
    for request in trace:
        world.push(request.at, _ARRIVE, request.service_s)
    state = AutoscalerState()
    if isinstance(policy, FixedPolicy):
        world.scale_to(0.0, policy.replicas)
        for replica in world.replicas:  # provisioned ahead: ready from the start
            replica.ready_at = 0.0
    else:
        world.scale_to(0.0, policy.spec.min_replicas)
        world.push(tick_s, _TICK)
    by_id: dict[int, _Replica] = {r.ident: r for r in world.replicas}
    last_tick = 0.0

    def autoscale(now: float) -> None:
        nonlocal state, last_tick
        assert isinstance(policy, KpaPolicy)
        world.flight(now, 0)
        span = now - last_tick
        sample = LoadSample(
            "sim",
            now,
            world.in_flight,
            len(world.queue),
            world.requests_total,
            in_flight_avg=world.area / span if span > 0 else float(world.in_flight),
        )
        world.area, last_tick = 0.0, now
        state = observe(policy.spec, state, sample)
        ready = sum(1 for r in world.replicas if r.ready(now))
        decision = decide(policy.spec, state, now, ready)
        state = decision.state
        world.scale_to(now, decision.desired)
        for replica in world.replicas:
            by_id.setdefault(replica.ident, replica)

    while world.events:
        now, kind, _, a, b = heapq.heappop(world.events)
        if kind == _ARRIVE:
            world.requests_total += 1
            world.queue.append((now, a))
            if isinstance(policy, KpaPolicy) and not world.live():
                autoscale(now)  # the router's demand: scale from zero at once
            world.dispatch(now)
        elif kind == _DONE:
            replica = by_id[int(a)]
            replica.in_flight -= 1
            world.flight(now, -1)
            world.latencies.append(now - b)
            if replica.draining and replica.in_flight == 0:
                world.stop(replica, now)
            world.dispatch(now)
        elif kind == _READY:
            world.dispatch(now)
        elif kind == _TICK:
            autoscale(now)
            world.dispatch(now)
            if now < end or world.queue or world.in_flight:
                world.push(now + tick_s, _TICK)
    everyone = world.replicas + world.stopped
    finish = max(end, max((r.stopped_at or 0.0 for r in everyone), default=0.0))
    replica_seconds = sum(
        (r.stopped_at if r.stopped_at is not None else finish) - r.asked_at for r in everyone
    )
    return ServingResult(policy.name, tuple(world.latencies), replica_seconds, world.peak, finish)


def bursty_trace(
    rng: random.Random,
    *,
    duration_s: float = 1800.0,
    base_rps: float = 4.0,
    burst_rps: float = 80.0,
    burst_every_s: float = 300.0,
    burst_s: float = 45.0,
    quiet_from_s: float = 1200.0,
    quiet_s: float = 300.0,
    service_s: float = 0.25,
) -> list[Request]:
    """A Poisson stream at ``base_rps`` with bursts of ``burst_rps`` for ``burst_s`` every
    about ``burst_every_s``, and a quiet spell (no request) of ``quiet_s`` from
    ``quiet_from_s``; service times uniform within ±50 % of ``service_s``."""
    bursts = []
    t = rng.uniform(0.3, 0.7) * burst_every_s
    while t < duration_s:
        bursts.append((t, t + burst_s))
        t += burst_every_s * rng.uniform(0.7, 1.3)

    def rate(at: float) -> float:
        if quiet_from_s <= at < quiet_from_s + quiet_s:
            return 0.0
        return burst_rps if any(a <= at < b for a, b in bursts) else base_rps

    out: list[Request] = []
    at = 0.0
    peak = max(base_rps, burst_rps)
    while True:  # thinning: candidates at the peak rate, kept with rate(at)/peak
        at += rng.expovariate(peak)
        if at >= duration_s:
            return out
        if rng.random() < rate(at) / peak:
            out.append(Request(at, service_s * rng.uniform(0.5, 1.5)))


def peak_concurrency(trace: Sequence[Request], window_s: float = 6.0) -> float:
    """The highest mean concurrency (Little's law: arrivals × mean service time) over any
    ``window_s`` of the trace."""
    if not trace:
        return 0.0
    mean_service = sum(r.service_s for r in trace) / len(trace)
    best = 0
    lo = 0
    for hi, request in enumerate(trace):
        while trace[lo].at <= request.at - window_s:
            lo += 1
        best = max(best, hi - lo + 1)
    return best / window_s * mean_service


def compare_policies(
    trace: Sequence[Request],
    *,
    slo_s: float = 0.5,
    target: float = 6.0,
    replica_concurrency: int = 8,
    startup_s: float = 5.0,
    scale_to_zero_after_s: float = 60.0,
) -> list[str]:
    """Lines of a table: the autoscaler (with and without its panic mode, with and without
    scale to zero) against fixed provisioning at the peak, on ``trace``."""
    peak = peak_concurrency(trace)
    mean_service_s = sum(r.service_s for r in trace) / max(1, len(trace))
    fixed_n = max(1, math.ceil(peak / target))
    cap = 2 * fixed_n  # maxReplicas: twice the peak's need
    policies: list[FixedPolicy | KpaPolicy] = [
        FixedPolicy(fixed_n, f"fixed at the peak ({fixed_n})"),
        KpaPolicy(
            AutoscalerSpec(
                target=target, max_replicas=cap, scale_to_zero_after_s=scale_to_zero_after_s
            ),
            f"autoscaler, to zero, max {cap}",
        ),
        KpaPolicy(
            AutoscalerSpec(target=target, min_replicas=1, max_replicas=cap),
            f"autoscaler, min 1, max {cap}",
        ),
        KpaPolicy(
            AutoscalerSpec(target=target, min_replicas=1, max_replicas=cap, panic_threshold=1e9),
            "  same, no panic mode",
        ),
        KpaPolicy(
            AutoscalerSpec(
                target=target / mean_service_s,
                metric="rps",
                max_replicas=cap,
                scale_to_zero_after_s=scale_to_zero_after_s,
            ),
            f"autoscaler rps {target / mean_service_s:.0f}, to zero",
        ),
        KpaPolicy(
            AutoscalerSpec(
                target=target, max_replicas=50, scale_to_zero_after_s=scale_to_zero_after_s
            ),
            "autoscaler, to zero, max 50",
        ),
    ]
    lines = [
        f"{len(trace)} requests over {trace[-1].at if trace else 0:.0f} s; peak concurrency "
        f"{peak:.1f}; target {target:g}/replica, {replica_concurrency} slots/replica, "
        f"start-up {startup_s:g} s, SLO {slo_s * 1000:.0f} ms",
        f"{'policy':<30} {'in SLO':>8} {'p50 ms':>8} {'p99 ms':>9} {'replica-s':>10}"
        f" {'vs fixed':>9} {'max':>4}",
    ]
    base: float | None = None
    for policy in policies:
        result = simulate_serving(
            trace, policy, startup_s=startup_s, replica_concurrency=replica_concurrency
        )
        base = result.replica_seconds if base is None else base
        lines.append(
            f"{policy.name:<30} {result.slo_share(slo_s) * 100:>7.2f}%"
            f" {result.percentile_s(50) * 1000:>8.0f} {result.percentile_s(99) * 1000:>9.0f}"
            f" {result.replica_seconds:>10.0f} {result.replica_seconds / base:>8.2f}x"
            f" {result.max_replicas:>4}"
        )
    return lines
