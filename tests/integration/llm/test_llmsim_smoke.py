"""The official ``openai`` client against a real simulator process, with no gateway between:
the models list, chat and text completions streaming and not, usage in streams, prefix-cache
hits reported as ``cached_tokens``, their eviction, and the latency they save."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from phalanx.testing.llmsim import LLMSim

openai = pytest.importorskip("openai", reason="pip install -e '.[serve-test]'")

MODEL = "sim-model"
BLOCK = 16
SYSTEM = " ".join(f"rule{i} says be kind ." for i in range(60))  # 240 tokens: 15 blocks


def _client(sim: LLMSim) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{sim.url}/v1", api_key="unused", max_retries=0)


def _chat(client: openai.OpenAI, system: str, user: str) -> openai.types.chat.ChatCompletion:
    return client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "system", "content": system}, {"role": "user", "content": user}],
        max_tokens=4,
    )


def _cached(reply: openai.types.chat.ChatCompletion) -> int:
    assert reply.usage is not None and reply.usage.prompt_tokens_details is not None
    return reply.usage.prompt_tokens_details.cached_tokens or 0


def test_models_and_completions(llm_sims: Callable[..., list[LLMSim]]) -> None:
    (sim,) = llm_sims(1, model=MODEL)
    client = _client(sim)

    assert [m.id for m in client.models.list()] == [MODEL]

    chat = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Hello there"}], max_tokens=7
    )
    assert chat.choices[0].message.role == "assistant"
    assert chat.choices[0].message.content
    assert chat.usage is not None and chat.usage.completion_tokens == 7
    assert chat.usage.prompt_tokens > 0

    text = client.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=5)
    assert text.choices[0].text
    assert text.usage is not None and text.usage.completion_tokens == 5

    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(
            model="no-such-model", messages=[{"role": "user", "content": "x"}], max_tokens=1
        )


def test_streaming_with_usage(llm_sims: Callable[..., list[LLMSim]]) -> None:
    (sim,) = llm_sims(1, model=MODEL)
    client = _client(sim)

    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Tell me a story"}],
        max_tokens=6,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    content = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    assert len(content) == 6
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 6

    texts = client.completions.create(model=MODEL, prompt="Count:", max_tokens=3, stream=True)
    assert len([c for c in texts if c.choices and c.choices[0].text]) == 3


def test_repeated_prefix_is_cached_and_faster(llm_sims: Callable[..., list[LLMSim]]) -> None:
    # 2 ms per uncached prompt token: a 250-token prompt costs ~0.5 s cold, ~0.02 s warm.
    (sim,) = llm_sims(
        1, model=MODEL, kv_blocks=64, block_size=BLOCK, latency={"prefill-time-per-token": "2ms"}
    )
    client = _client(sim)
    _chat(client, "warm up the client and the connection", "hello")  # costs ~30 ms

    started = time.monotonic()
    first = _chat(client, SYSTEM, "first question")
    cold_s = time.monotonic() - started
    started = time.monotonic()
    second = _chat(client, SYSTEM, "second question")
    warm_s = time.monotonic() - started

    assert _cached(first) == 0
    # Every whole block of the shared system prompt is a hit; the differing user turn is not.
    assert _cached(second) >= 15 * BLOCK
    assert second.usage is not None and _cached(second) < second.usage.prompt_tokens
    assert warm_s < cold_s / 3

    other = _chat(client, "An entirely different system prompt. " * 30, "first question")
    assert _cached(other) == 0


def test_small_cache_evicts_least_recently_used(llm_sims: Callable[..., list[LLMSim]]) -> None:
    # 20 blocks hold one system prompt (15 blocks + the turn) but not two.
    (sim,) = llm_sims(1, model=MODEL, kv_blocks=20, block_size=BLOCK)
    client = _client(sim)
    other = SYSTEM.replace("kind", "brief")

    _chat(client, SYSTEM, "a")
    _chat(client, other, "b")  # evicts SYSTEM's blocks
    assert _cached(_chat(client, SYSTEM, "c")) == 0
