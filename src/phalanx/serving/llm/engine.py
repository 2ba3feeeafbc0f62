"""What an LLM engine says about its own load, read from its Prometheus text at
``/metrics``. Pure: the gateway fetches the text; this module only reads it.

Names read (the first found of each; vLLM's and SGLang's, which llm-d-inference-sim
mirrors for vLLM):

- waiting requests: ``vllm:num_requests_waiting``, ``sglang:num_queue_reqs``;
- running requests: ``vllm:num_requests_running``, ``sglang:num_running_reqs``;
- KV-cache usage (a fraction): ``vllm:kv_cache_usage_perc`` (vLLM V1),
  ``vllm:gpu_cache_usage_perc`` (older vLLM), ``sglang:token_usage``;
- requests finished (a counter; a drop means the engine restarted and lost its cache):
  ``vllm:request_success_total``;
- prompt tokens processed (a counter): ``vllm:prompt_tokens_total``, ``sglang:prompt_tokens_total``;
- the KV cache's size: the ``num_gpu_blocks`` and ``block_size`` labels of
  ``vllm:cache_config_info`` (an info metric whose value is 1).

A metric with several series (one per model or engine) is summed; usage is averaged.

KV cache events (``parse_kv_events``): vLLM publishes ``KVEventBatch``es of ``BlockStored``,
``BlockRemoved`` and ``AllBlocksCleared`` over ZeroMQ; phalanx.testing.openai_sim serves the
same events, with vLLM's field names, as JSON from ``GET /kv_events?since=N``. Only counts
are read here (blocks stored, blocks removed, cleared or not): the gateway hashes prompt
bytes, not token ids, so it cannot name the engine's blocks; it takes the count of blocks
stored as the engine's LRU clock and the count held (stored - removed) as its horizon
(``phalanx.serving.llm.policies.PrefixIndex.expire``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = [
    "EngineLoad",
    "KVEvents",
    "blocks_per_engine_block",
    "external_load",
    "parse_engine_metrics",
    "parse_kv_events",
]

_WAITING = ("vllm:num_requests_waiting", "sglang:num_queue_reqs")
_RUNNING = ("vllm:num_requests_running", "sglang:num_running_reqs")
_KV = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc", "sglang:token_usage")
_FINISHED = ("vllm:request_success_total",)
_PROMPT_TOKENS = ("vllm:prompt_tokens_total", "sglang:prompt_tokens_total")
_CACHE_INFO = "vllm:cache_config_info"


@dataclass(frozen=True, slots=True)
class EngineLoad:
    """One engine's own view of its load; None where it does not say."""

    waiting: float | None = None
    running: float | None = None
    kv_cache_usage: float | None = None
    finished_total: float | None = None
    prompt_tokens_total: float | None = None
    #: The engine's KV cache: how many blocks, of how many tokens each.
    num_gpu_blocks: int | None = None
    block_size: int | None = None

    @property
    def in_flight(self) -> float | None:
        """Requests the engine holds: running plus waiting (None: it says neither)."""
        if self.waiting is None and self.running is None:
            return None
        return (self.waiting or 0.0) + (self.running or 0.0)


def _values(text: str, name: str) -> list[float]:
    """The values of every series of ``name`` in ``text`` (found by search, not by reading
    every line: an engine's exposition runs to thousands of lines of histograms)."""
    out: list[float] = []
    pos = 0
    n = len(name)
    while True:
        i = text.find(name, pos)
        if i < 0:
            return out
        pos = i + n
        if i > 0 and text[i - 1] != "\n":
            continue  # inside another name, or in a comment
        after = text[pos : pos + 1]
        if after not in ("{", " "):
            continue  # a longer name (e.g. ..._created)
        eol = text.find("\n", pos)
        line = text[pos:] if eol < 0 else text[pos:eol]
        if after == "{":
            line = line[line.rfind("}") + 1 :]
        parts = line.split()
        if not parts:
            continue
        try:
            value = float(parts[0])
        except ValueError:
            continue
        if not math.isnan(value):
            out.append(value)


def parse_engine_metrics(text: str) -> EngineLoad:
    """The load in Prometheus exposition ``text`` (names above; the rest ignored)."""

    def first(names: tuple[str, ...], mean: bool = False) -> float | None:
        for name in names:
            values = _values(text, name)
            if values:
                return sum(values) / len(values) if mean else sum(values)
        return None

    kv = first(_KV, mean=True)
    if kv is not None and kv > 1.0:  # a percentage after all
        kv = kv / 100.0
    blocks = _label_int(text, _CACHE_INFO, "num_gpu_blocks")
    size = _label_int(text, _CACHE_INFO, "block_size")
    return EngineLoad(
        first(_WAITING),
        first(_RUNNING),
        kv,
        first(_FINISHED),
        first(_PROMPT_TOKENS),
        blocks if blocks and blocks > 0 else None,
        size if size and size > 0 else None,
    )


def _label_int(text: str, name: str, label: str) -> int | None:
    """The integer value of ``label`` on the first series of ``name`` (None: absent, or
    not an integer)."""
    pos = 0
    while True:
        i = text.find(name + "{", pos)
        if i < 0:
            return None
        pos = i + len(name)
        if i > 0 and text[i - 1] != "\n":
            continue
        end = text.find("}", pos)
        if end < 0:
            return None
        for part in text[pos + 1 : end].split(","):
            key, _, value = part.partition("=")
            if key.strip() == label:
                try:
                    return int(float(value.strip().strip('"')))
                except ValueError:
                    return None
        return None


@dataclass(frozen=True, slots=True)
class KVEvents:
    """What a poll of an engine's KV events said: blocks stored and removed (counts),
    whether it cleared its whole cache, the cursor for the next poll, and whether events
    were lost before this poll (the engine's buffer overflowed)."""

    stored: int = 0
    removed: int = 0
    cleared: bool = False
    next_cursor: int = 0
    lost: bool = False


def parse_kv_events(payload: object, cursor: int) -> KVEvents:
    """Read ``{"next": N, "lost": bool, "batches": [{"ts", "events": [...]}, ...]}`` (each
    event a mapping with ``type`` and vLLM's fields). A ``AllBlocksCleared`` resets the
    counts before it: only what was stored after it is held. Raises ValueError on a payload
    of another shape."""
    if not isinstance(payload, dict) or not isinstance(payload.get("batches"), list):
        raise ValueError("a KV events reply must be an object with a batches list")
    stored = removed = 0
    cleared = False
    for batch in payload["batches"]:
        events = batch.get("events") if isinstance(batch, dict) else None
        if not isinstance(events, list):
            raise ValueError("each KV event batch needs an events list")
        for event in events:
            kind = event.get("type") if isinstance(event, dict) else None
            if kind == "BlockStored":
                stored += len(event.get("block_hashes") or ())
            elif kind == "BlockRemoved":
                removed += len(event.get("block_hashes") or ())
            elif kind == "AllBlocksCleared":
                cleared = True
                stored = removed = 0
    nxt = payload.get("next", cursor)
    if isinstance(nxt, bool) or not isinstance(nxt, int):
        raise ValueError(f"KV events: next must be an integer, not {nxt!r}")
    return KVEvents(stored, removed, cleared, nxt, payload.get("lost") is True)


def blocks_per_engine_block(
    recorded_blocks: float, prompt_tokens: float, block_size: int, before: float | None
) -> float | None:
    """How many of the gateway's prompt blocks one engine KV block of a prompt stands for:
    the gateway blocks recorded against a replica over the engine blocks of the prompt
    tokens it processed in the same time (``prompt_tokens`` / ``block_size``), blended
    half and half with ``before`` (None: too little seen to say)."""
    engine_blocks = prompt_tokens / block_size if block_size > 0 else 0.0
    if recorded_blocks <= 0 or engine_blocks < 1.0:
        return before
    ratio = recorded_blocks / engine_blocks
    return ratio if before is None else (before + ratio) / 2.0


def external_load(
    held: float | None, ours_before: int, ours_after: int, previous: float
) -> tuple[float, float]:
    """The requests an engine holds that did not come through this gateway: (the value to
    route by, this reading alone). ``held`` is what the engine said (running + waiting),
    at some instant between the gateway's counts ``ours_before`` (when it asked) and
    ``ours_after`` (when it read the answer); the larger of the two is taken, so that
    requests that ended in between are not read as someone else's. What is routed by is
    the smaller of this reading and the previous one: a single reading of a few requests
    is more often a race than a second client, and it would be held for a whole metrics
    interval (a phantom load of 2 on one replica moved prefix groups off it)."""
    if held is None:
        return 0.0, 0.0
    now = max(0.0, held - max(ours_before, ours_after))
    return min(now, previous), now
