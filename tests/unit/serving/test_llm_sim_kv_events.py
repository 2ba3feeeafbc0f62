"""The in-repo simulator's KV cache events and cache-size metric: every block it stores or
evicts is an event with vLLM's fields, polled by sequence number; its /metrics says its
cache size the way vLLM does, and the gateway's parsers read both."""

from __future__ import annotations

from phalanx.serving.llm.engine import parse_engine_metrics, parse_kv_events
from phalanx.testing.openai_sim import BlockCache, SimConfig, Simulator, block_hashes, tokenize


def _blocks(text: str) -> tuple[list[str], list[str]]:
    tokens = tokenize(text)
    return block_hashes(tokens, 4), tokens


def test_stores_and_evictions_are_events_with_vllms_fields() -> None:
    cache = BlockCache(4, events=[], block_size=4)
    first, tokens = _blocks("a b c d e f g h")  # 2 blocks
    _, pinned = cache.start(first, tokens)
    assert cache.events == [
        {
            "type": "BlockStored",
            "block_hashes": [int(h, 16) for h in first],
            "parent_block_hash": None,
            "token_ids": cache.events[0]["token_ids"],
            "block_size": 4,
            "lora_id": None,
            "medium": "GPU",
        }
    ]
    assert len(cache.events[0]["token_ids"]) == 8  # type: ignore[arg-type]
    cache.finish(pinned)
    cache.events.clear()
    # The same first block, then 3 new ones: only the new ones are stored, with the shared
    # block as their parent; one old block (the unshared second) is evicted to make room.
    longer, tokens = _blocks("a b c d x y z w 1 2 3 4 5 6 7 8")
    cached, _ = cache.start(longer, tokens)
    assert cached == 1
    removed, stored = cache.events
    assert removed == {"type": "BlockRemoved", "block_hashes": [int(first[1], 16)], "medium": "GPU"}
    assert stored["block_hashes"] == [int(h, 16) for h in longer[1:]]
    assert stored["parent_block_hash"] == int(longer[0], 16)
    assert len(stored["token_ids"]) == 12  # type: ignore[arg-type]


def test_no_events_when_not_asked() -> None:
    cache = BlockCache(4)
    hashes, tokens = _blocks("a b c d")
    cache.start(hashes, tokens)
    assert cache.events is None


def _sim(buffer: int = 4096) -> Simulator:
    return Simulator(
        SimConfig(
            "m",
            ("m",),
            enable_kvcache=True,
            kv_cache_size=2,
            block_size=4,
            kv_events_buffer=buffer,
        )
    )


def test_polling_by_sequence_number_and_lost_batches() -> None:
    sim = _sim(buffer=2)
    for text in ("a b c d", "e f g h", "i j k l"):
        hashes, tokens = _blocks(text)
        _, pinned = sim.cache.start(hashes, tokens)
        sim.cache.finish(pinned)
        sim.publish_kv_events()
    everything = sim.kv_events(0)
    # Three batches were published, the buffer keeps two: the first is lost.
    assert everything["next"] == 3 and everything["lost"] is True
    got = parse_kv_events(everything, 0)
    assert (got.stored, got.removed, got.next_cursor, got.lost) == (2, 1, 3, True)
    assert parse_kv_events(sim.kv_events(2), 2).stored == 1
    after = sim.kv_events(3)
    assert after == {"next": 3, "lost": False, "batches": []}


def test_metrics_say_the_cache_size_as_vllm_does() -> None:
    sim = _sim()
    hashes, tokens = _blocks("a b c d")
    sim.cache.start(hashes, tokens)
    sim.prompt_tokens_total += len(tokens)
    load = parse_engine_metrics(sim.metrics_text())
    assert (load.num_gpu_blocks, load.block_size) == (2, 4)
    assert load.prompt_tokens_total == 4
    assert load.kv_cache_usage == 0.5
