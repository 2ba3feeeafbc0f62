"""What an LLM engine says about its own load, read from its Prometheus text at
``/metrics``. Pure: the gateway fetches the text; this module only reads it.

Names read (the first found of each; vLLM's and SGLang's, which llm-d-inference-sim
mirrors for vLLM):

- waiting requests: ``vllm:num_requests_waiting``, ``sglang:num_queue_reqs``;
- running requests: ``vllm:num_requests_running``, ``sglang:num_running_reqs``;
- KV-cache usage (a fraction): ``vllm:kv_cache_usage_perc`` (vLLM V1),
  ``vllm:gpu_cache_usage_perc`` (older vLLM), ``sglang:token_usage``;
- requests finished (a counter; a drop means the engine restarted and lost its cache):
  ``vllm:request_success_total``.

A metric with several series (one per model or engine) is summed; usage is averaged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["EngineLoad", "parse_engine_metrics"]

_WAITING = ("vllm:num_requests_waiting", "sglang:num_queue_reqs")
_RUNNING = ("vllm:num_requests_running", "sglang:num_running_reqs")
_KV = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc", "sglang:token_usage")
_FINISHED = ("vllm:request_success_total",)


@dataclass(frozen=True, slots=True)
class EngineLoad:
    """One engine's own view of its load; None where it does not say."""

    waiting: float | None = None
    running: float | None = None
    kv_cache_usage: float | None = None
    finished_total: float | None = None

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
    return EngineLoad(first(_WAITING), first(_RUNNING), kv, first(_FINISHED))
