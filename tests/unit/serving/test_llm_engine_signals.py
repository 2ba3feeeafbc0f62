"""What the gateway learns from an engine beyond its queue: the KV cache's size
(``vllm:cache_config_info``), prompt tokens processed, KV cache events (counts, in vLLM's
event shape), and the arithmetic that turns them into the prefix estimate's
bound; the external-load reading that does not mistake a race for a second client."""

from __future__ import annotations

import pytest

from phalanx.serving.llm.engine import (
    KVEvents,
    blocks_per_engine_block,
    external_load,
    parse_engine_metrics,
    parse_kv_events,
)

VLLM_TEXT = """\
# HELP vllm:cache_config_info Information of the LLMEngine CacheConfig
# TYPE vllm:cache_config_info gauge
vllm:cache_config_info{block_size="16",cache_dtype="auto",enable_prefix_caching="True",num_gpu_blocks="7431",num_cpu_blocks="0"} 1.0
vllm:prompt_tokens_total{engine="0",model_name="m"} 123456.0
vllm:num_requests_running{engine="0",model_name="m"} 3.0
vllm:num_requests_waiting{engine="0",model_name="m"} 1.0
"""


def test_cache_size_and_prompt_tokens_from_vllm_metrics() -> None:
    load = parse_engine_metrics(VLLM_TEXT)
    assert (load.num_gpu_blocks, load.block_size) == (7431, 16)
    assert load.prompt_tokens_total == 123456.0
    assert load.in_flight == 4.0


def test_no_cache_info_leaves_the_size_unknown() -> None:
    load = parse_engine_metrics('vllm:num_requests_running{model_name="m"} 1\n')
    assert load.num_gpu_blocks is None and load.block_size is None
    bad = parse_engine_metrics('vllm:cache_config_info{num_gpu_blocks="many"} 1\n')
    assert bad.num_gpu_blocks is None


def _batch(*events: dict[str, object]) -> dict[str, object]:
    return {"seq": 1, "ts": 0.0, "events": list(events)}


STORED = {
    "type": "BlockStored",
    "block_hashes": [11, 12, 13],
    "parent_block_hash": None,
    "token_ids": list(range(48)),
    "block_size": 16,
    "lora_id": None,
    "medium": "GPU",
}
REMOVED = {"type": "BlockRemoved", "block_hashes": [11, 12], "medium": "GPU"}


def test_kv_events_are_counted_in_order() -> None:
    got = parse_kv_events({"next": 7, "batches": [_batch(STORED, REMOVED), _batch(STORED)]}, 2)
    assert got == KVEvents(stored=6, removed=2, cleared=False, next_cursor=7, lost=False)


def test_a_clear_forgets_what_came_before_it() -> None:
    cleared = {"type": "AllBlocksCleared"}
    got = parse_kv_events({"next": 3, "batches": [_batch(STORED, REMOVED, cleared, STORED)]}, 0)
    assert (got.stored, got.removed, got.cleared) == (3, 0, True)


def test_lost_events_are_reported() -> None:
    assert parse_kv_events({"next": 9, "lost": True, "batches": []}, 1).lost


@pytest.mark.parametrize(
    "payload",
    [[], {"batches": "no"}, {"batches": [{"events": "no"}]}, {"batches": [], "next": "x"}],
    ids=["not-an-object", "batches-not-a-list", "events-not-a-list", "next-not-an-int"],
)
def test_kv_events_of_another_shape_are_refused(payload: object) -> None:
    with pytest.raises(ValueError):
        parse_kv_events(payload, 0)


def test_gateway_blocks_per_engine_block() -> None:
    # 640 gateway blocks recorded while the engine processed 10,240 prompt tokens (640
    # engine blocks of 16): one for one; then half as many: the blend moves half way.
    assert blocks_per_engine_block(640, 10_240, 16, None) == pytest.approx(1.0)
    assert blocks_per_engine_block(320, 10_240, 16, 1.0) == pytest.approx(0.75)
    # Too little seen: what was known stays.
    assert blocks_per_engine_block(0, 10_240, 16, 0.5) == 0.5
    assert blocks_per_engine_block(10, 8, 16, None) is None


@pytest.mark.parametrize(
    ("held", "before", "after", "previous", "expected"),
    [
        (None, 3, 3, 5.0, (0.0, 0.0)),  # the engine says nothing
        (4.0, 2, 4, 0.0, (0.0, 0.0)),  # two of ours were sent while it answered
        (4.0, 4, 2, 3.0, (0.0, 0.0)),  # two of ours ended while it answered: not theirs
        (6.0, 2, 2, 0.0, (0.0, 4.0)),  # four someone else's, seen once: not yet
        (6.0, 2, 2, 4.0, (4.0, 4.0)),  # seen twice: routed by
        (6.0, 2, 2, 1.0, (1.0, 4.0)),  # the smaller of the two readings
    ],
    ids=["silent", "sent-meanwhile", "ended-meanwhile", "once", "twice", "smaller"],
)
def test_external_load_needs_two_readings(
    held: float | None,
    before: int,
    after: int,
    previous: float,
    expected: tuple[float, float],
) -> None:
    assert external_load(held, before, after, previous) == expected
