"""Prefix stickiness, as the replicas themselves report it: through the gateway's ``prefix``
policy, requests of a shared-prefix group find their prefix in the replica's KV cache
(``usage.prompt_tokens_details.cached_tokens``); round-robin over the same fleet, with the
same cache sizes, finds far less."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from gateway_support import EditableRoutes, llm_route

from phalanx.serving.llm.gateway import GatewayThread
from phalanx.testing.llmsim import LLMSim

openai = pytest.importorskip("openai", reason="pip install -e '.[serve-test]'")

GROUPS = 6
ROUNDS = 5


def system_prompt(tag: str, group: int) -> str:
    # About 240 tokens: 15 blocks of 16 tokens.
    return " ".join(f"{tag} group {group} rule {i} is kind ." for i in range(40))


def run(urls: list[str], policy: str, tag: str) -> tuple[int, int, dict[int, set[str]]]:
    """Send GROUPS × ROUNDS requests one at a time through a gateway with ``policy``:
    (cached prompt tokens after each group's first request, prompt tokens of those, and the
    replicas each group's requests were answered by)."""
    routes = EditableRoutes((llm_route("chat", urls, ["m"], policy=policy),))
    thread = GatewayThread(routes, routes, "127.0.0.1", 0, metrics_interval_s=0)
    port = thread.start()
    cached = prompt = 0
    served: dict[int, set[str]] = {g: set() for g in range(GROUPS)}
    try:
        with openai.OpenAI(
            base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0
        ) as client:
            for r in range(ROUNDS):
                for g in range(GROUPS):
                    reply = client.chat.completions.with_raw_response.create(
                        model="m",
                        messages=[
                            {"role": "system", "content": system_prompt(tag, g)},
                            {"role": "user", "content": f"question {r} of group {g}"},
                        ],
                        max_tokens=2,
                    )
                    parsed = reply.parse()
                    assert parsed.usage is not None
                    details = parsed.usage.prompt_tokens_details
                    if r > 0:
                        cached += (details.cached_tokens or 0) if details else 0
                        prompt += parsed.usage.prompt_tokens
                    served[g].add(str(parsed.id))
    finally:
        thread.stop()
    return cached, prompt, served


def test_prefix_policy_keeps_groups_on_their_cache(
    llm_sims: Callable[..., list[LLMSim]],
) -> None:
    # 4 replicas with 48 blocks of KV cache each: room for about 3 groups' prefixes, not 6.
    sims = llm_sims(4, model="m", kv_blocks=48, block_size=16)
    urls = [s.url for s in sims]
    rr_cached, rr_prompt, _ = run(urls, "round-robin", "rr")
    px_cached, px_prompt, _ = run(urls, "prefix", "px")
    rr_rate, px_rate = rr_cached / rr_prompt, px_cached / px_prompt
    # The system prompt is nearly all of each prompt: the prefix policy finds it every time.
    print(f"cache-hit rate: prefix {px_rate:.2f}, round-robin {rr_rate:.2f}")
    assert px_rate >= 0.8, (px_rate, rr_rate)
    assert px_rate >= rr_rate + 0.3, (px_rate, rr_rate)
