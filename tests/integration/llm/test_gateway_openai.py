"""The LLM gateway in front of real simulator replicas, driven by the official ``openai``
client: routing by model, streaming and not, /v1/models, embeddings proxied, an unknown model,
and a model at zero replicas (held, started on demand, else 429 with Retry-After)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
from gateway_support import EditableRoutes, llm_route

from phalanx.serving.llm.gateway import GatewayThread
from phalanx.testing.llmsim import LLMSim

openai = pytest.importorskip("openai", reason="pip install -e '.[serve-test]'")


@pytest.fixture
def routes() -> EditableRoutes:
    return EditableRoutes()


@pytest.fixture
def gateway(routes: EditableRoutes) -> Iterator[str]:
    thread = GatewayThread(
        routes, routes, "127.0.0.1", 0, metrics_interval_s=0.2, report_interval_s=0.2
    )
    port = thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        thread.stop()


@pytest.fixture
def client() -> Iterator[Callable[[str], openai.OpenAI]]:
    """``client(url)``: an OpenAI client (no retries) closed after the test."""
    made: list[openai.OpenAI] = []

    def make(url: str) -> openai.OpenAI:
        made.append(openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0))
        return made[-1]

    yield make
    for c in made:
        c.close()


def test_routes_by_model_streams_and_lists_models(
    llm_sims: Callable[..., list[LLMSim]],
    routes: EditableRoutes,
    gateway: str,
    client: Callable[[str], openai.OpenAI],
) -> None:
    a_sims = llm_sims(2, model="model-a")
    (b_sim,) = llm_sims(1, model="model-b")
    routes.value = (
        llm_route("svc-a", [s.url for s in a_sims], ["model-a"]),
        llm_route("svc-b", [b_sim.url], ["model-b"], policy="round-robin"),
    )
    c = client(gateway)
    listed = {m.id: m.owned_by for m in c.models.list()}
    assert listed == {"model-a": "svc-a", "model-b": "svc-b"}

    for model in ("model-a", "model-b"):
        reply = c.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "hello there"}], max_tokens=5
        )
        # The simulator answers with the model it serves: the request reached the right one.
        assert reply.model == model
        assert reply.usage is not None and reply.usage.completion_tokens == 5

    chunks = list(
        c.chat.completions.create(
            model="model-b",
            messages=[{"role": "user", "content": "stream to me"}],
            max_tokens=6,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert len(chunks) >= 6 and text
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 6

    completion = c.completions.create(model="model-a", prompt="once upon a time", max_tokens=3)
    assert completion.model == "model-a" and completion.choices[0].text

    # Embeddings are proxied as they are: the gateway answers what the replica answers.
    direct = httpx.post(
        f"{b_sim.url}/v1/embeddings", json={"model": "model-b", "input": "hi"}, timeout=10
    )
    through = httpx.post(
        f"{gateway}/v1/embeddings", json={"model": "model-b", "input": "hi"}, timeout=10
    )
    assert through.status_code == direct.status_code
    if direct.status_code == 200:
        assert len(through.json()["data"][0]["embedding"]) == len(
            direct.json()["data"][0]["embedding"]
        )


def test_an_unknown_model_is_404_naming_the_models(
    llm_sims: Callable[..., list[LLMSim]],
    routes: EditableRoutes,
    gateway: str,
    client: Callable[[str], openai.OpenAI],
) -> None:
    (sim,) = llm_sims(1, model="model-a")
    routes.value = (llm_route("svc-a", [sim.url], ["model-a"]),)
    with pytest.raises(openai.NotFoundError) as err:
        client(gateway).chat.completions.create(
            model="gpt-9", messages=[{"role": "user", "content": "hi"}]
        )
    assert "gpt-9" in str(err.value) and "model-a" in str(err.value)
    missing = httpx.post(f"{gateway}/v1/chat/completions", json={"messages": []}, timeout=10)
    assert missing.status_code == 400 and "set model to one of model-a" in missing.text
    assert httpx.get(f"{gateway}/v2/models", timeout=10).status_code == 404


def test_a_model_at_zero_is_started_on_demand_then_429_with_retry_after(
    llm_sims: Callable[..., list[LLMSim]],
    routes: EditableRoutes,
    gateway: str,
    client: Callable[[str], openai.OpenAI],
) -> None:
    (sim,) = llm_sims(1, model="cold")
    routes.value = (llm_route("cold-svc", [], ["cold"], cold_start_timeout_s=10.0),)

    # 1. A replica comes up while the request is held: the request is answered.
    def bring_up() -> None:
        deadline = time.monotonic() + 10
        while not routes.demands and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.5)  # the replica "starts"
        routes.value = (llm_route("cold-svc", [sim.url], ["cold"], cold_start_timeout_s=10.0),)

    starter = threading.Thread(target=bring_up)
    starter.start()
    started = time.monotonic()
    reply = client(gateway).chat.completions.create(
        model="cold", messages=[{"role": "user", "content": "wake up"}], max_tokens=2
    )
    starter.join()
    assert reply.model == "cold" and routes.demands[0] == "cold-svc"
    assert time.monotonic() - started >= 0.5  # it was held until the replica was there
    assert [m.id for m in client(gateway).models.list()] == ["cold"]

    # 2. No replica within coldStartTimeout: 429 with Retry-After, and demand was asked.
    routes.demands.clear()
    routes.value = (llm_route("cold-svc", [], ["cold"], cold_start_timeout_s=1.0),)
    time.sleep(0.3)
    started = time.monotonic()
    with pytest.raises(openai.RateLimitError) as err:
        client(gateway).chat.completions.create(
            model="cold", messages=[{"role": "user", "content": "anyone?"}], max_tokens=2
        )
    waited = time.monotonic() - started
    assert 0.9 <= waited < 5
    assert err.value.response.headers["retry-after"] == "1"
    assert "no ready replica after waiting 1 s" in err.value.response.text
    assert routes.demands and set(routes.demands) == {"cold-svc"}


def test_engine_metrics_reach_the_load_samples(
    llm_sims: Callable[..., list[LLMSim]],
    routes: EditableRoutes,
    gateway: str,
    client: Callable[[str], openai.OpenAI],
) -> None:
    sims = llm_sims(2, model="m")
    routes.value = (llm_route("svc", [s.url for s in sims], ["m"]),)
    c = client(gateway)
    c.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}], max_tokens=2)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if any(s.engine_waiting is not None for s in routes.samples if s.service == "svc"):
            break
        time.sleep(0.1)
    sample = [s for s in routes.samples if s.service == "svc"][-1]
    assert sample.engine_waiting == 0.0
    assert sample.kv_cache_usage is not None and 0.0 <= sample.kv_cache_usage <= 1.0
