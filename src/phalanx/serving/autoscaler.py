"""How many replicas a service wants: a pure decision, like Knative's KPA.

Pure: no clock, I/O, threads or randomness (an import-linter contract checks it). The caller
(the Service controller, or the serving simulator) keeps an ``AutoscalerState`` per service,
folds the router's load samples into it with ``observe`` and asks ``decide`` with its own
``now``; both return new values and change nothing.

The rules (``decide``), with Knative's defaults:

1. The metric per sample: ``concurrency`` is the mean number of requests in flight over the
   sample's interval (``LoadSample.in_flight_avg``, else the instant count) plus the requests
   waiting; ``rps`` is the requests received per second since the previous sample.
2. ``stable`` is the metric's mean over the last ``stable_window_s`` (60 s), ``panic`` its
   mean over the last ``panic_window_s`` (6 s). Wanted replicas: ``ceil(value / target)``.
3. Panic: when the panic window wants at least ``panic_threshold`` (2×) the ready replicas,
   the autoscaler panics: it follows the panic window and never scales down, until a whole
   stable window has passed without that condition.
4. Rates: at most ``max_scale_up_rate`` × ready replicas up, at most ÷ ``max_scale_down_rate``
   down, per decision.
5. Zero: a request waiting at zero replicas scales to one at once (scale from zero). A service
   goes to zero only when the stable window wants zero and no request has arrived, run or
   waited for ``scale_to_zero_after_s``; until then it keeps one replica.
6. Bounds: the result is clamped to ``[min_replicas, max_replicas]``.

7. LLM signals (an LLM service's ``spec.llm.autoscaling``; the gateway reports them): with
   ``waiting_target``, the requests waiting in the replicas' engines, summed, want
   ``ceil(waiting / waiting_target)`` replicas; with ``kv_cache_target``, the mean KV-cache
   usage wants ``ceil(ready × usage / kv_cache_target)``. Each is averaged over both windows
   like the metric, and each window wants the most of the metric and these signals.

Each ``ScaleDecision`` says ``desired``, a ``code`` (``ScaleCode``) and ``facts`` (the numbers
behind it) for ``describe service``, and a readable ``message``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Literal

from phalanx.serving.endpoints import LoadSample

__all__ = [
    "AutoscalerSpec",
    "AutoscalerState",
    "Observation",
    "ScaleCode",
    "ScaleDecision",
    "decide",
    "observe",
]

Metric = Literal["concurrency", "rps"]


@dataclass(frozen=True, slots=True)
class AutoscalerSpec:
    """A service's autoscaling settings (``target`` is per replica, in ``metric``'s unit)."""

    target: float = 10.0
    metric: Metric = "concurrency"
    min_replicas: int = 0
    max_replicas: int = 10
    scale_to_zero_after_s: float = 60.0
    stable_window_s: float = 60.0
    panic_window_s: float = 6.0
    panic_threshold: float = 2.0
    max_scale_up_rate: float = 1000.0
    max_scale_down_rate: float = 2.0
    #: LLM signals (rule 7): engine-waiting requests per replica, KV-cache usage (0-1].
    waiting_target: float | None = None
    kv_cache_target: float | None = None

    def __post_init__(self) -> None:
        if not self.target > 0:
            raise ValueError(f"autoscaling target must be > 0, got {self.target}")
        if self.metric not in ("concurrency", "rps"):
            raise ValueError(f"autoscaling metric must be concurrency or rps, not {self.metric!r}")
        if not 0 <= self.min_replicas <= self.max_replicas:
            raise ValueError(
                f"need 0 <= minReplicas ({self.min_replicas}) <= maxReplicas ({self.max_replicas})"
            )
        if self.waiting_target is not None and not self.waiting_target > 0:
            raise ValueError(f"waiting target must be > 0, got {self.waiting_target}")
        if self.kv_cache_target is not None and not 0 < self.kv_cache_target <= 1:
            raise ValueError(f"KV-cache target must be in (0, 1], got {self.kv_cache_target}")
        if not 0 < self.panic_window_s <= self.stable_window_s:
            raise ValueError(
                f"need 0 < panic window ({self.panic_window_s} s) <= stable window "
                f"({self.stable_window_s} s)"
            )


@dataclass(frozen=True, slots=True)
class Observation:
    """One point of the metric: ``value`` at ``at`` (seconds, the caller's clock)."""

    at: float
    value: float


@dataclass(frozen=True, slots=True)
class AutoscalerState:
    """What the autoscaler remembers between decisions (immutable; each step returns anew)."""

    observations: tuple[Observation, ...] = ()
    #: Last sample, for request rates.
    last_requests_total: int | None = None
    last_at: float | None = None
    #: Last time a request arrived, was in flight or waited.
    last_active_at: float | None = None
    waiting: int = 0
    panic_since: float | None = None
    panic_desired: int = 0
    #: LLM signals (rule 7): engine-waiting requests and KV-cache usage, per sample.
    waiting_observations: tuple[Observation, ...] = ()
    kv_observations: tuple[Observation, ...] = ()


class ScaleCode(StrEnum):
    """Why a decision is what it is."""

    SCALE_FROM_ZERO = "ScaleFromZero"
    PANIC = "Panic"
    STABLE = "Stable"
    IDLE_GRACE = "IdleGrace"
    SCALE_TO_ZERO = "ScaleToZero"
    NO_DATA = "NoData"


@dataclass(frozen=True, slots=True)
class ScaleDecision:
    desired: int
    code: ScaleCode
    facts: Mapping[str, float | int | str | bool | None] = field(default_factory=dict)
    state: AutoscalerState = field(default_factory=AutoscalerState)

    @property
    def message(self) -> str:
        f = self.facts
        unit = "concurrent requests" if f.get("metric") == "concurrency" else "requests/s"
        bounds = ""
        if f.get("clamped"):
            bounds = f" (bounded by minReplicas {f['min']} / maxReplicas {f['max']})"
        if self.code is ScaleCode.SCALE_FROM_ZERO:
            return f"{f['waiting']} request(s) waiting at zero replicas: scale to {self.desired}"
        if self.code is ScaleCode.NO_DATA:
            return f"no load reported yet: keep {self.desired} replica(s){bounds}"
        if self.code in (ScaleCode.SCALE_TO_ZERO, ScaleCode.IDLE_GRACE):
            idle = f["idle_s"]
            idle_text = "no request seen" if idle is None else f"idle for {float(idle):.0f} s"
            grace = f"scaleToZeroAfter {f['scale_to_zero_after_s']:g} s"
            if self.code is ScaleCode.SCALE_TO_ZERO:
                return f"{idle_text} ({grace}): scale to {self.desired}{bounds}"
            return f"no load, {idle_text} ({grace}): keep {self.desired}{bounds}"
        window = "panic" if self.code is ScaleCode.PANIC else "stable"
        value = f["panic_value"] if self.code is ScaleCode.PANIC else f["stable_value"]
        llm = f.get(f"llm_{window}_wanted")
        engines = f" (the engines' waiting requests and KV cache want {llm})" if llm else ""
        return (
            f"{window} window: {value:.2f} {unit} at a target of {f['target']:g} per replica"
            f"{engines} wants {f['wanted']} replica(s) (ready {f['ready']}): "
            f"{self.desired}{bounds}"
        )


def observe(spec: AutoscalerSpec, state: AutoscalerState, sample: LoadSample) -> AutoscalerState:
    """``state`` with ``sample`` folded in (samples older than the stable window dropped)."""
    at = sample.at
    if spec.metric == "concurrency":
        mean = sample.in_flight_avg if sample.in_flight_avg is not None else sample.in_flight
        value = mean + sample.waiting
        added = (*state.observations, Observation(at, value))
    else:
        added = state.observations
        if state.last_requests_total is not None and state.last_at is not None:
            span = at - state.last_at
            if span > 0:
                rate = max(0, sample.requests_total - state.last_requests_total) / span
                added = (*added, Observation(at, rate))
    new_requests = (
        state.last_requests_total is not None and sample.requests_total > state.last_requests_total
    )
    active = new_requests or sample.in_flight > 0 or sample.waiting > 0
    horizon = at - spec.stable_window_s
    kept = tuple(o for o in added if o.at > horizon)
    waiting_obs = state.waiting_observations
    if spec.waiting_target is not None and sample.engine_waiting is not None:
        waiting_obs = (*waiting_obs, Observation(at, sample.engine_waiting))
    kv_obs = state.kv_observations
    if spec.kv_cache_target is not None and sample.kv_cache_usage is not None:
        kv_obs = (*kv_obs, Observation(at, sample.kv_cache_usage))
    return replace(
        state,
        observations=kept,
        waiting_observations=tuple(o for o in waiting_obs if o.at > horizon),
        kv_observations=tuple(o for o in kv_obs if o.at > horizon),
        last_requests_total=sample.requests_total,
        last_at=at,
        last_active_at=at if active else state.last_active_at,
        waiting=sample.waiting,
    )


def _mean(observations: tuple[Observation, ...], since: float) -> float | None:
    values = [o.value for o in observations if o.at > since]
    return sum(values) / len(values) if values else None


def _llm_wanted(spec: AutoscalerSpec, state: AutoscalerState, since: float, ready: int) -> int:
    """Replicas the LLM signals (rule 7) want over the window after ``since`` (0: none)."""
    wanted = 0
    if spec.waiting_target is not None:
        waiting = _mean(state.waiting_observations, since)
        if waiting is not None:
            wanted = max(wanted, math.ceil(waiting / spec.waiting_target - 1e-9))
    if spec.kv_cache_target is not None and ready > 0:
        usage = _mean(state.kv_observations, since)
        if usage is not None:
            wanted = max(wanted, math.ceil(ready * usage / spec.kv_cache_target - 1e-9))
    return wanted


def decide(spec: AutoscalerSpec, state: AutoscalerState, now: float, ready: int) -> ScaleDecision:
    """The replicas ``spec`` wants at ``now`` with ``ready`` replicas ready (see the module
    docstring for the rules); the decision carries the state to keep."""
    lo, hi = spec.min_replicas, spec.max_replicas

    def clamp(n: int) -> tuple[int, bool]:
        bounded = min(hi, max(lo, n))
        return bounded, bounded != n

    base: dict[str, float | int | str | bool | None] = {
        "metric": spec.metric,
        "target": spec.target,
        "ready": ready,
        "min": lo,
        "max": hi,
    }
    # 5a. Scale from zero: a request waits and nothing is ready.
    if ready == 0 and state.waiting > 0:
        desired, clamped = clamp(max(1, math.ceil(state.waiting / spec.target)))
        desired = max(desired, min(1, hi))
        return ScaleDecision(
            desired,
            ScaleCode.SCALE_FROM_ZERO,
            {**base, "waiting": state.waiting, "clamped": clamped},
            replace(state, panic_since=None, panic_desired=0),
        )
    stable = _mean(state.observations, now - spec.stable_window_s)
    panic = _mean(state.observations, now - spec.panic_window_s)
    if stable is None:
        desired, clamped = clamp(ready)
        return ScaleDecision(desired, ScaleCode.NO_DATA, {**base, "clamped": clamped}, state)
    panic_value = panic if panic is not None else 0.0
    # 2. Wanted replicas per window.
    want_stable = math.ceil(stable / spec.target - 1e-9)
    want_panic = math.ceil(panic_value / spec.target - 1e-9)
    # 7. LLM signals: each window wants the most of the metric and the engines' signals.
    llm_stable = _llm_wanted(spec, state, now - spec.stable_window_s, ready)
    llm_panic = _llm_wanted(spec, state, now - spec.panic_window_s, ready)
    want_stable = max(want_stable, llm_stable)
    want_panic = max(want_panic, llm_panic)
    # 4. Rate limits around the ready count (at least one, as from zero).
    basis = max(1, ready)
    up_limit = math.ceil(spec.max_scale_up_rate * basis)
    down_limit = math.floor(basis / spec.max_scale_down_rate) if ready else 0
    # 3. Panic mode.
    panic_since = state.panic_since
    if ready > 0 and want_panic / ready >= spec.panic_threshold:
        panic_since = now  # (re)starts: the panic lasts a stable window from the last time
    elif panic_since is not None and now - panic_since >= spec.stable_window_s:
        panic_since = None
    facts = {
        **base,
        "stable_value": stable,
        "panic_value": panic_value,
        "stable_wanted": want_stable,
        "panic_wanted": want_panic,
    }
    if spec.waiting_target is not None or spec.kv_cache_target is not None:
        facts["llm_stable_wanted"] = llm_stable
        facts["llm_panic_wanted"] = llm_panic
    if panic_since is not None:
        wanted = max(want_panic, state.panic_desired, ready)
        wanted = min(wanted, up_limit)
        desired, clamped = clamp(wanted)
        return ScaleDecision(
            desired,
            ScaleCode.PANIC,
            {**facts, "wanted": wanted, "clamped": clamped},
            replace(state, panic_since=panic_since, panic_desired=wanted),
        )
    wanted = max(down_limit, min(up_limit, want_stable))
    after = replace(state, panic_since=None, panic_desired=0)
    # 5b. Zero only after the idle grace.
    if wanted == 0:
        # Never active: idle for as long as anyone knows.
        idle_s = now - state.last_active_at if state.last_active_at is not None else None
        if idle_s is None or idle_s >= spec.scale_to_zero_after_s:
            desired, clamped = clamp(0)
            code = ScaleCode.SCALE_TO_ZERO
        else:
            desired, clamped = clamp(1 if ready > 0 else 0)
            code = ScaleCode.IDLE_GRACE
        zero_facts = {
            **facts,
            "wanted": 0,
            "idle_s": idle_s,
            "scale_to_zero_after_s": spec.scale_to_zero_after_s,
            "clamped": clamped,
        }
        return ScaleDecision(desired, code, zero_facts, after)
    desired, clamped = clamp(wanted)
    return ScaleDecision(
        desired, ScaleCode.STABLE, {**facts, "wanted": wanted, "clamped": clamped}, after
    )
