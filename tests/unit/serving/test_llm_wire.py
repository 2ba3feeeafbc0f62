"""What the gateway reads from the wire: the request's model and prompt (without parsing the
body whole), and an engine's own load from its Prometheus text."""

from __future__ import annotations

import json

import pytest

from phalanx.serving.llm.engine import parse_engine_metrics
from phalanx.serving.llm.gateway import prompt_region, request_model


@pytest.mark.parametrize(
    ("body", "model"),
    [
        ({"model": "m", "messages": []}, "m"),
        ({"messages": [{"role": "user", "content": 'say "model": "x"'}], "model": "real"}, "real"),
        ({"model": "Qwen/Qwen2.5-0.5B", "prompt": "hi"}, "Qwen/Qwen2.5-0.5B"),
        ({"model": 'we"ird\\', "prompt": "hi"}, 'we"ird\\'),
        # A nested "model" key too: the body is parsed whole and the top-level one wins.
        ({"tools": [{"model": "nested"}], "model": "top", "messages": []}, "top"),
        ({"messages": []}, None),
        ({"model": 7, "messages": []}, None),
    ],
)
def test_request_model(body: dict[str, object], model: str | None) -> None:
    assert request_model(json.dumps(body).encode()) == model
    assert request_model(json.dumps(body, separators=(",", ":")).encode()) == model


def test_request_model_of_garbage_is_none() -> None:
    assert request_model(b"not json") is None
    assert request_model(b'{"model": "unterminated') is None


def test_prompt_region_starts_at_the_prompt_whatever_precedes_it() -> None:
    a = json.dumps(
        {"model": "m", "max_tokens": 5, "messages": [{"role": "system", "content": "S"}]}
    )
    b = json.dumps(
        {"model": "m", "temperature": 0.1, "messages": [{"role": "system", "content": "S"}]}
    )
    assert prompt_region(a.encode()) == prompt_region(b.encode())
    assert prompt_region(b'{"prompt": "abc"}') == b' "abc"}'
    assert prompt_region(b'{"x": 1}') == b'{"x": 1}'


VLLM_TEXT = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="m"} 4.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{model_name="m"} 3.0
vllm:num_requests_waiting{model_name="lora-a"} 2.0
vllm:num_requests_waiting_created 1.7e9
vllm:gpu_cache_usage_perc{model_name="m"} 0.5
vllm:kv_cache_usage_perc{model_name="m",engine="0"} 0.25
vllm:kv_cache_usage_perc{model_name="m",engine="1"} 0.75
vllm:request_success_total{finished_reason="stop",model_name="m"} 10
vllm:request_success_total{finished_reason="length",model_name="m"} 5
"""


def test_vllm_metrics_are_summed_and_usage_averaged() -> None:
    load = parse_engine_metrics(VLLM_TEXT)
    assert load.waiting == 5.0 and load.running == 4.0 and load.in_flight == 9.0
    # kv_cache_usage_perc (vLLM V1) is read before the older gpu_cache_usage_perc.
    assert load.kv_cache_usage == 0.5
    assert load.finished_total == 15.0


def test_sglang_names_and_percentages() -> None:
    load = parse_engine_metrics("sglang:num_queue_reqs 2\nsglang:num_running_reqs 1\n")
    assert (load.waiting, load.running) == (2.0, 1.0)
    assert parse_engine_metrics("vllm:gpu_cache_usage_perc 40\n").kv_cache_usage == 0.4


def test_an_engine_that_says_nothing() -> None:
    load = parse_engine_metrics("# nothing\nother_metric 1\n")
    assert load.in_flight is None and load.kv_cache_usage is None
