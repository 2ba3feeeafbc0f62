"""The autoscaler over scripted load curves, in injected time (one sample a second)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from hypothesis import given
from hypothesis import strategies as st

from phalanx.serving.autoscaler import (
    AutoscalerSpec,
    AutoscalerState,
    ScaleCode,
    ScaleDecision,
    decide,
    observe,
)
from phalanx.serving.endpoints import LoadSample

# A load curve: seconds -> (mean requests in flight, requests waiting, requests arrived).
Curve = Callable[[float], tuple[float, int, int]]


@dataclass
class Run:
    decisions: list[tuple[float, ScaleDecision]] = field(default_factory=list)

    def at(self, t: float) -> ScaleDecision:
        return next(d for at, d in self.decisions if at == t)

    def replicas(self, start: float, end: float) -> list[int]:
        return [d.desired for at, d in self.decisions if start <= at < end]


def drive(spec: AutoscalerSpec, curve: Curve, seconds: int, *, ready: int = 1) -> Run:
    """Sample ``curve`` each second, decide, and let replicas be ready at once."""
    state = AutoscalerState()
    total = 0
    run = Run()
    for t in range(seconds):
        in_flight, waiting, arrived = curve(t)
        total += arrived
        sample = LoadSample(
            "svc", float(t), round(in_flight), waiting, total, in_flight_avg=in_flight
        )
        state = observe(spec, state, sample)
        decision = decide(spec, state, float(t), ready)
        state = decision.state
        ready = decision.desired
        run.decisions.append((float(t), decision))
    return run


def busy(level: float) -> tuple[float, int, int]:
    return (level, 0, max(1, round(level)))


def test_steady_load_gets_ceil_of_load_over_target() -> None:
    run = drive(AutoscalerSpec(target=10, max_replicas=20), lambda t: busy(35), 120)
    assert run.replicas(60, 120) == [4] * 60
    last = run.at(119)
    assert last.code is ScaleCode.STABLE
    assert last.facts["stable_value"] == pytest.approx(35)
    assert "35.00 concurrent requests at a target of 10 per replica" in last.message


def test_a_burst_panics_fast_and_does_not_scale_down_for_a_stable_window() -> None:
    def curve(t: float) -> tuple[float, int, int]:
        return busy(100 if 120 <= t < 130 else 10)

    run = drive(AutoscalerSpec(target=10, max_replicas=50), curve, 260)
    assert run.replicas(100, 120) == [1] * 20
    # The panic window (6 s) sees the burst in its first sample, and is full of it (mean
    # 100: 10 replicas) after 6; the stable window (60 s) alone would want far fewer.
    assert run.at(120).code is ScaleCode.PANIC
    assert run.at(121).desired == 4  # mean of 10,10,10,10,100,100 = 40
    assert run.at(125).desired == 10
    stable_only = run.at(121).facts["stable_wanted"]
    assert isinstance(stable_only, int) and stable_only < 5
    # Panic holds the peak for a stable window after the last over-threshold sample.
    last_over = max(t for t, d in run.decisions if d.state.panic_since == t)
    assert 120 <= last_over < 130
    assert min(run.replicas(125, last_over + 60)) == 10
    # Then back to the stable window, scaling down at most by half per decision.
    after = [d for t, d in run.decisions if t >= last_over + 60]
    assert after[0].code is ScaleCode.STABLE
    downs = run.replicas(last_over + 59, 260)
    assert all(b >= a // 2 for a, b in itertools.pairwise(downs))
    assert downs[-1] == 1


def test_idle_keeps_one_replica_until_scale_to_zero_after_then_zero() -> None:
    spec = AutoscalerSpec(target=10, scale_to_zero_after_s=30)

    def curve(t: float) -> tuple[float, int, int]:
        return busy(5) if t < 10 else (0.0, 0, 0)

    run = drive(spec, curve, 140)
    # Activity last seen at t=9; the stable window wants 0 only from t=69 on (60 s of
    # samples, the busy ones included), and by then the grace of 30 s is long over.
    assert run.replicas(0, 69) == [1] * 69
    zero = run.at(69)
    assert zero.desired == 0 and zero.code is ScaleCode.SCALE_TO_ZERO
    assert zero.facts["idle_s"] == 60
    assert "idle for 60 s (scaleToZeroAfter 30 s)" in zero.message
    assert run.replicas(69, 140) == [0] * 71


def test_a_short_grace_is_held_when_the_window_already_wants_zero() -> None:
    spec = AutoscalerSpec(target=10, scale_to_zero_after_s=90)
    run = drive(spec, lambda t: busy(5) if t < 10 else (0.0, 0, 0), 140)
    held = run.at(80)
    assert held.code is ScaleCode.IDLE_GRACE and held.desired == 1
    assert run.at(99).desired == 0 and run.at(98).desired == 1


def test_min_replicas_keeps_the_floor_and_says_so() -> None:
    spec = AutoscalerSpec(target=10, min_replicas=2, scale_to_zero_after_s=5)
    run = drive(spec, lambda t: (0.0, 0, 0), 30, ready=2)
    last = run.at(29)
    assert last.desired == 2 and last.facts["clamped"] is True
    assert "minReplicas 2" in last.message


def test_a_waiting_request_scales_from_zero_at_once() -> None:
    spec = AutoscalerSpec(target=10)
    state = AutoscalerState()
    state = observe(spec, state, LoadSample("svc", 0.0, 0, 0, 0))
    assert decide(spec, state, 0.0, 0).desired == 0
    state = observe(spec, state, LoadSample("svc", 1.0, 0, 3, 3))
    decision = decide(spec, state, 1.0, 0)
    assert (decision.desired, decision.code) == (1, ScaleCode.SCALE_FROM_ZERO)
    assert decision.facts["waiting"] == 3
    assert "3 request(s) waiting at zero replicas" in decision.message


def test_requests_per_second_metric() -> None:
    spec = AutoscalerSpec(target=20, metric="rps", max_replicas=10)
    run = drive(spec, lambda t: (0.5, 0, 50), 90)
    assert run.at(89).desired == 3
    assert run.at(89).facts["stable_value"] == pytest.approx(50)
    assert "requests/s" in run.at(89).message


def test_max_replicas_bounds_a_panic() -> None:
    spec = AutoscalerSpec(target=1, max_replicas=4)
    run = drive(spec, lambda t: busy(1 if t < 30 else 40), 40)
    assert run.at(39).desired == 4 and run.at(39).facts["clamped"] is True


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"target": 0}, "target must be > 0"),
        ({"min_replicas": 3, "max_replicas": 2}, "minReplicas (3) <= maxReplicas (2)"),
        ({"panic_window_s": 90}, "panic window (90 s) <= stable window (60.0 s)"),
    ],
)
def test_bad_settings_name_the_field(kwargs: dict[str, float], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        AutoscalerSpec(**kwargs)  # type: ignore[arg-type]


@given(
    loads=st.lists(
        st.tuples(st.floats(0, 500), st.integers(0, 20), st.integers(0, 1000)),
        min_size=1,
        max_size=150,
    ),
    lo=st.integers(0, 3),
    span=st.integers(0, 20),
)
def test_decisions_stay_in_bounds_and_are_repeatable(
    loads: list[tuple[float, int, int]], lo: int, span: int
) -> None:
    spec = AutoscalerSpec(target=7, min_replicas=lo, max_replicas=lo + span)
    first = drive(spec, lambda t: loads[int(t)], len(loads))
    again = drive(spec, lambda t: loads[int(t)], len(loads))
    assert first.decisions == again.decisions
    for _, decision in first.decisions:
        assert lo <= decision.desired <= lo + span
