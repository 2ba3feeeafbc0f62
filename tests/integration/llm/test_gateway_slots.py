"""The gateway learns how many requests an engine runs at once (the prefix policy's free
slots) from what the engine says it is running: a simulator with ``--max-num-seqs 3`` sent
six requests at once is read running 3 (the other 3 waiting), never more."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

import httpx
from gateway_support import EditableRoutes, llm_route

from phalanx.serving.llm.gateway import GatewayThread
from phalanx.testing.llmsim import LLMSim

BODY = json.dumps(
    {"model": "m", "messages": [{"role": "user", "content": "hello there"}], "max_tokens": 8}
).encode()


async def _send(port: int, count: int) -> list[int]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30.0) as client:
        replies = await asyncio.gather(
            *(client.post("/v1/chat/completions", content=BODY) for _ in range(count))
        )
    return [r.status_code for r in replies]


def test_slots_are_the_most_requests_an_engine_was_read_running(
    llm_sims: Callable[..., list[LLMSim]],
) -> None:
    # Each request decodes 8 tokens 80 ms apart: six sent at once keep all 3 slots busy
    # for over a second, through many metrics reads.
    sims = llm_sims(
        2, model="m", max_num_seqs=3, latency={"inter-token-latency": "80ms"}, engine="phalanx"
    )
    routes = EditableRoutes((llm_route("chat", [s.url for s in sims], ["m"]),))
    thread = GatewayThread(
        routes, routes, "127.0.0.1", 0, metrics_interval_s=0.05, kv_events_interval_s=0
    )
    port = thread.start()
    try:
        assert asyncio.run(_send(port, 1)) == [200]
        time.sleep(0.2)
        svc = thread.gateway._llm["chat"]
        assert svc.slots <= 1.0  # one request at a time: at most 1 seen running
        # Six at once, over a fleet of two replicas: the policy puts them where the load
        # is lighter, but one replica gets at least three; one service's replicas share
        # what was learned.
        assert asyncio.run(_send(port, 6)) == [200] * 6
        time.sleep(0.2)
        assert svc.slots == 3.0
        loads = [thread.gateway.engine_load(s.url) for s in sims]
    finally:
        thread.stop()
    assert all(load is not None and (load.running or 0) <= 3 for load in loads)
