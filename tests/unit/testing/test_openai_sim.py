"""The simulator's model, without a server: block hashes, the KV block cache, the latency model
and its flags."""

from __future__ import annotations

import pytest

from phalanx.testing.openai_sim import (
    BlockCache,
    Simulator,
    block_hashes,
    parse_args,
    parse_duration_s,
    tokenize,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("250ms", 0.25), ("1.5s", 1.5), ("40", 0.04), ("0.5ms", 0.0005), ("2m", 120.0)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration_s(text) == pytest.approx(seconds)


def test_a_bad_duration_names_the_value() -> None:
    with pytest.raises(ValueError, match="'fast'"):
        parse_duration_s("fast")


def test_tokens_are_words_and_marks() -> None:
    assert tokenize("Hello, world!  a1 b_2") == ["Hello", ",", "world", "!", "a1", "b_2"]


def test_block_hashes_chain_so_only_whole_prefixes_match() -> None:
    a = [f"t{i}" for i in range(40)]
    b = [*a[:20], "x", *a[21:]]  # differs in the third block
    c = ["y", *a[1:]]  # differs in the first block only

    ha, hb, hc = (block_hashes(t, 8) for t in (a, b, c))
    assert len(ha) == 5  # whole blocks only
    assert ha[:2] == hb[:2] and ha[2:] != hb[2:]
    assert not set(ha) & set(hc)  # the same later tokens, after a different first block
    assert block_hashes(a[:7], 8) == []


def test_cache_counts_leading_held_blocks() -> None:
    cache = BlockCache(capacity_blocks=10)
    cached, pinned = cache.start(["a", "b", "c"])
    assert cached == 0
    cache.finish(pinned)

    cached, pinned = cache.start(["a", "b", "x", "c"])
    assert cached == 2  # "c" is held but follows a miss: not a prefix hit
    cache.finish(pinned)


def test_cache_evicts_least_recently_used_unpinned_blocks() -> None:
    cache = BlockCache(capacity_blocks=4)
    cache.finish(cache.start(["a", "b"])[1])
    cache.finish(cache.start(["c", "d"])[1])
    cache.finish(cache.start(["a", "b"])[1])  # a, b now the most recently used
    cache.finish(cache.start(["e", "f"])[1])  # evicts c, d

    assert cache.start(["a", "b"])[0] == 2
    assert cache.start(["c"])[0] == 0


def test_pinned_blocks_are_never_evicted() -> None:
    cache = BlockCache(capacity_blocks=4)
    _, running = cache.start(["a", "b", "c"])
    _, other = cache.start(["x", "y"])  # does not fit beside the pinned three: not stored
    cache.finish(other)

    assert cache.usage == pytest.approx(3 / 4)
    assert cache.start(["x"])[0] == 0
    cache.finish(running)
    assert cache.start(["a", "b", "c"])[0] == 3


def test_shared_blocks_stay_pinned_until_their_last_user_finishes() -> None:
    cache = BlockCache(capacity_blocks=3)
    _, first = cache.start(["a", "b"])
    _, second = cache.start(["a", "c"])
    cache.finish(first)
    # "a" is still used by the second request: a new block evicts "b", never "a".
    _, third = cache.start(["d"])
    cache.finish(third)
    cache.finish(second)
    assert cache.start(["a"])[0] == 1
    assert cache.start(["b"])[0] == 0


def test_ttft_charges_only_uncached_tokens_and_grows_with_load() -> None:
    _, _, config = parse_args(
        [
            "--model=m",
            "--max-num-seqs=5",
            "--prefill-overhead=10ms",
            "--prefill-time-per-token=1ms",
            "--time-factor-under-load=3",
        ]
    )
    sim = Simulator(config)
    sim.running = 1
    assert sim.ttft_s(1000, 0) == pytest.approx(1.010)
    assert sim.ttft_s(1000, 960) == pytest.approx(0.050)
    sim.running = 5  # all seats taken: the full factor
    assert sim.ttft_s(1000, 960) == pytest.approx(0.150)


def test_a_fixed_ttft_ignores_the_prompt() -> None:
    _, _, config = parse_args(["--model=m", "--time-to-first-token=200ms"])
    sim = Simulator(config)
    assert sim.ttft_s(5000, 0) == sim.ttft_s(10, 0) == pytest.approx(0.2)


def test_flags_as_llm_d_names_them() -> None:
    host, port, config = parse_args(
        [
            "--port=8123",
            "--model=m",
            "--served-model-name=a",
            "--served-model-name=b",
            "--enable-kvcache",
            "--kv-cache-size=64",
            "--block-size=32",
            "--force-dummy-tokenizer",
        ]
    )
    assert (host, port) == ("127.0.0.1", 8123)
    assert config.served_names == ("a", "b")
    assert (config.enable_kvcache, config.kv_cache_size, config.block_size) == (True, 64, 32)
