"""What the gateway learns from a running engine (phalanx's simulator, which serves vLLM's
KV cache events over HTTP and vLLM's cache-size metric): the prefix estimate drops a
prefix when the engine's events say it was evicted, and not otherwise; the estimate's bound
follows the engine's own cache size; the gateway times its own work in the process; and
``RouterThread`` runs the gateway it is given."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import httpx
import pytest
from gateway_support import EditableRoutes, llm_route

from phalanx.serving.llm.gateway import Gateway, GatewayThread, prompt_region
from phalanx.serving.llm.policies import prompt_blocks
from phalanx.serving.router import RouterThread
from phalanx.testing.llmsim import LLMSim

# Far more than the engine holds: only the engine's events (or its size) can bound it.
HUGE = 100_000


def body(group: int) -> bytes:
    # About 240 tokens: 15 of the engine's 16-token blocks; its cache holds 32.
    system = " ".join(f"group {group} rule {i} is kind ." for i in range(40))
    return json.dumps(
        {
            "model": "m",
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": "hi"}],
            "max_tokens": 1,
        }
    ).encode()


def held_blocks(gateway: Gateway, url: str, group: int) -> int:
    index = gateway._llm["chat"].index
    return index.matched(url, prompt_blocks(prompt_region(body(group)), 128, 64))


def gateway_on(url: str, *, metrics_s: float, events_s: float) -> GatewayThread:
    """A gateway with one service on the engine at ``url``, its estimate bounded only by
    what the engine says."""
    routes = EditableRoutes((llm_route("chat", [url], ["m"], cacheBlocks=HUGE),))
    return GatewayThread(
        routes, routes, "127.0.0.1", 0, metrics_interval_s=metrics_s, kv_events_interval_s=events_s
    )


def run_groups(
    sims: list[LLMSim], *, metrics_s: float, events_s: float
) -> tuple[int, int, GatewayThread]:
    """Group 0, then groups 1–4 (which evict group 0 from the engine's 32 blocks): how
    many of group 0's blocks the estimate holds before and after."""
    url = sims[0].url
    thread = gateway_on(url, metrics_s=metrics_s, events_s=events_s)
    port = thread.start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10.0) as client:

            def send(group: int) -> None:
                reply = client.post("/v1/chat/completions", content=body(group))
                assert reply.status_code == 200, reply.text

            send(0)
            time.sleep(0.3)
            before = held_blocks(thread.gateway, url, 0)
            for group in range(1, 5):
                send(group)
            time.sleep(0.5)  # several polls
            after = held_blocks(thread.gateway, url, 0)
    finally:
        thread.stop()
    return before, after, thread


def test_the_engines_evictions_drop_the_prefix_from_the_estimate(
    llm_sims: Callable[..., list[LLMSim]],
) -> None:
    sims = llm_sims(1, model="m", kv_blocks=32, block_size=16, engine="phalanx")
    # Events only (no metrics: no cache size learned): the engine's removals are followed.
    before, after, _ = run_groups(sims, metrics_s=0, events_s=0.05)
    assert before > 0
    assert after == 0, "the engine evicted group 0; the estimate still holds it"


def test_a_gateway_started_beside_a_busy_engine_keeps_what_it_sent(
    llm_sims: Callable[..., list[LLMSim]],
) -> None:
    sims = llm_sims(1, model="m", kv_blocks=32, block_size=16, engine="phalanx")
    url = sims[0].url
    # History the new gateway never saw: groups 1-4 straight to the engine, which evicts.
    with httpx.Client(base_url=url, timeout=10.0) as engine:
        for group in range(1, 5):
            reply = engine.post("/v1/chat/completions", content=body(group))
            assert reply.status_code == 200, reply.text
    # The first poll comes after group 0 is sent; group 0 is not evicted after it.
    thread = gateway_on(url, metrics_s=0, events_s=0.3)
    port = thread.start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10.0) as client:
            assert client.post("/v1/chat/completions", content=body(0)).status_code == 200
            sent = held_blocks(thread.gateway, url, 0)
            time.sleep(0.8)  # two polls: the history, then nothing new
            info = thread.gateway._engines[url]
            assert info.has_events and info.synced
            kept = held_blocks(thread.gateway, url, 0)
    finally:
        thread.stop()
    assert sent > 0
    assert kept == sent, "the engine's evictions before this gateway started dropped group 0"


def test_without_events_or_metrics_the_estimate_keeps_what_was_sent(
    llm_sims: Callable[..., list[LLMSim]],
) -> None:
    sims = llm_sims(1, model="m", kv_blocks=32, block_size=16, engine="phalanx")
    before, after, _ = run_groups(sims, metrics_s=0, events_s=0)
    assert before > 0 and after == before


def test_the_estimates_bound_is_learned_from_the_engines_cache_size(
    llm_sims: Callable[..., list[LLMSim]],
) -> None:
    sims = llm_sims(1, model="m", kv_blocks=32, block_size=16, engine="phalanx")
    url = sims[0].url
    routes = EditableRoutes((llm_route("chat", [url], ["m"], cacheBlocks=HUGE),))
    thread = GatewayThread(
        routes, routes, "127.0.0.1", 0, metrics_interval_s=0.1, kv_events_interval_s=0
    )
    port = thread.start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10.0) as client:
            deadline = time.monotonic() + 10
            capacity = HUGE
            group = 0
            while capacity == HUGE and time.monotonic() < deadline:
                assert client.post("/v1/chat/completions", content=body(group)).status_code == 200
                group += 1
                time.sleep(0.15)
                capacity = thread.gateway._llm["chat"].index.capacity_of(url)
            load = thread.gateway.engine_load(url)
            timings = client.get("/gateway/timings").json()
    finally:
        thread.stop()
    assert load is not None and (load.num_gpu_blocks, load.block_size) == (32, 16)
    # 32 engine blocks of 16 tokens; each gateway block is 128 bytes of the JSON prompt,
    # about 25 tokens here: the bound is about 32 × 16 / 25 ≈ 20 gateway blocks.
    per_prompt = len(prompt_blocks(prompt_region(body(0)), 128, 64))
    assert per_prompt <= capacity <= 3 * per_prompt, (capacity, per_prompt)
    # The gateway timed its own work on every request it sent upstream.
    assert timings["request"]["n"] >= group and timings["response"]["n"] >= group
    assert 0 < timings["request"]["p50"] < 1000


def test_router_thread_runs_the_router_it_is_given() -> None:
    routes = EditableRoutes(())
    thread = GatewayThread(routes, routes, "127.0.0.1", 0, metrics_interval_s=0)
    assert thread.router is thread.gateway
    assert isinstance(thread.router, Gateway)
    with pytest.raises(TypeError, match="router options"):
        RouterThread(routes, routes, router=thread.gateway, refresh_interval_s=1.0)
    port = thread.start()
    try:
        assert httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=5).json()["data"] == []
    finally:
        thread.stop()
