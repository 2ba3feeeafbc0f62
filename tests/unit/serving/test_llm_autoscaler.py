"""The autoscaler's LLM signals (rule 7): requests waiting in the engines and KV-cache usage,
alongside the concurrency metric, in injected time."""

from __future__ import annotations

import pytest

from phalanx.serving.autoscaler import AutoscalerSpec, AutoscalerState, ScaleCode, decide, observe
from phalanx.serving.endpoints import LoadSample, load_from_json, load_to_json


def run(
    spec: AutoscalerSpec, seconds: int, *, waiting: float | None, kv: float | None, ready: int = 2
) -> list[int]:
    """Light concurrency (1 in flight) with the given engine signals; replicas ready at once."""
    state = AutoscalerState()
    out = []
    for t in range(seconds):
        sample = LoadSample(
            "llm", float(t), 1, 0, t, in_flight_avg=1.0, engine_waiting=waiting, kv_cache_usage=kv
        )
        state = observe(spec, state, sample)
        decision = decide(spec, state, float(t), ready)
        state = decision.state
        ready = decision.desired
        out.append(ready)
    return out


def test_engine_waiting_requests_scale_up_to_hold_the_target() -> None:
    spec = AutoscalerSpec(target=10, max_replicas=10, waiting_target=2.0)
    # 12 requests waiting in the engines at a target of 2 per replica: 6 replicas.
    assert run(spec, 30, waiting=12, kv=None)[-1] == 6
    # Without the LLM target the same samples keep the concurrency answer (1 replica).
    plain = AutoscalerSpec(target=10, max_replicas=10)
    assert run(plain, 30, waiting=12, kv=None)[-1] == 1


def test_kv_cache_usage_scales_with_the_ready_replicas() -> None:
    spec = AutoscalerSpec(target=10, max_replicas=10, kv_cache_target=0.5)
    # 2 replicas at 90 % of their KV cache, target 50 %: ceil(2 × 0.9 / 0.5) = 4.
    replicas = run(spec, 3, waiting=None, kv=0.9, ready=2)
    assert replicas[0] == 4
    # Usage below the target asks for nothing more than the metric does.
    assert run(spec, 30, waiting=None, kv=0.1)[-1] == 1


def test_the_decision_names_the_engines_and_is_within_bounds() -> None:
    spec = AutoscalerSpec(target=10, max_replicas=3, waiting_target=1.0)
    state = AutoscalerState()
    for t in range(5):
        state = observe(
            spec, state, LoadSample("llm", float(t), 1, 0, t, in_flight_avg=1.0, engine_waiting=9)
        )
    decision = decide(spec, state, 4.0, 1)
    assert decision.desired == 3 and decision.facts["clamped"] is True
    assert decision.code in (ScaleCode.PANIC, ScaleCode.STABLE)
    assert "the engines' waiting requests and KV cache want 9" in decision.message


def test_signals_older_than_the_stable_window_are_dropped() -> None:
    spec = AutoscalerSpec(target=10, stable_window_s=10, panic_window_s=5, waiting_target=1.0)
    state = AutoscalerState()
    for t in range(30):
        waiting = 50.0 if t < 5 else 0.0
        state = observe(
            spec,
            state,
            LoadSample("llm", float(t), 1, 0, t, in_flight_avg=1.0, engine_waiting=waiting),
        )
    assert all(o.at > 19 for o in state.waiting_observations)
    assert decide(spec, state, 29.0, 1).facts["llm_stable_wanted"] == 0


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [({"waiting_target": 0.0}, "waiting target"), ({"kv_cache_target": 1.5}, "KV-cache target")],
)
def test_bad_llm_targets_are_refused(kwargs: dict[str, float], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        AutoscalerSpec(**kwargs)  # type: ignore[arg-type]


def test_load_samples_carry_the_signals_through_json() -> None:
    sample = LoadSample("llm", 1.0, 2, 0, 9, engine_waiting=3.0, kv_cache_usage=0.25)
    assert load_from_json(load_to_json(sample)) == sample
    bare = LoadSample("llm", 1.0, 2, 0, 9)
    assert load_from_json(load_to_json(bare)) == bare
