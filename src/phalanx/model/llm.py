"""A Service's ``spec.llm``, as data: the OpenAI-compatible engine its replicas run, the model
names it serves, how the LLM gateway picks a replica for a request, and the LLM signals its
autoscaler follows. Parse (every problem with its field path and a fix) and write back.

Pure: no I/O. ``phalanx.serving.llm`` reads the ``Route.extra["llm"]`` form that
``llm_to_manifest`` writes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from phalanx.model.specs import _Collector

__all__ = [
    "ENGINES",
    "POLICIES",
    "LLMAutoscaling",
    "LLMRouting",
    "LLMSpec",
    "llm_to_manifest",
    "parse_llm",
]

#: Engines whose replicas speak the OpenAI API; the first two expose vLLM-style or SGLang
#: Prometheus metrics at ``/metrics`` that the gateway reads for queue depth and KV-cache use.
ENGINES = ("vllm", "sglang", "llamacpp", "ollama", "openai")
#: Routing policies (``spec.llm.routing.policy``); ``prefix`` is the default.
POLICIES = ("prefix", "chwbl", "least-outstanding", "round-robin")

#: Model names one Service may list (``spec.llm.models``).
MAX_MODELS = 256

# An OpenAI model id: what clients send as "model" (e.g. "Qwen/Qwen2.5-0.5B-Instruct").
_MODEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,199}$")


@dataclass(frozen=True, slots=True)
class LLMRouting:
    """How the gateway picks a replica (see ``phalanx.serving.llm.policies``).

    The prompt is cut into blocks of ``block_chars`` characters (at most ``max_blocks`` of
    them count); ``cache_blocks`` bounds the blocks remembered per replica, like its KV
    cache; ``load_factor`` is CHWBL's 1 + ε: a replica whose load would exceed
    ``max(ceil(load_factor × mean), ceil(mean + miss_cost))`` is passed over; ``miss_cost``
    is what a miss of ``max_blocks`` blocks weighs in queued requests under ``prefix`` (a
    shorter miss weighs in proportion), and also the CHWBL bound's floor above the mean.
    """

    policy: str = "prefix"
    block_chars: int = 128
    max_blocks: int = 64
    cache_blocks: int = 4096
    load_factor: float = 1.25
    miss_cost: float = 4.0
    prefill_weight: float = 0.25


@dataclass(frozen=True, slots=True)
class LLMAutoscaling:
    """LLM signals the autoscaler holds per replica, besides ``spec.autoscaling``: requests
    waiting in the engines (``waiting_target`` per replica) and KV-cache usage (a fraction,
    ``kv_cache_target``). None: not followed."""

    waiting_target: float | None = None
    kv_cache_target: float | None = None


@dataclass(frozen=True, slots=True)
class LLMSpec:
    """``spec.llm``: the replicas are ``engine`` servers of ``models``."""

    engine: str
    models: tuple[str, ...]
    routing: LLMRouting = field(default_factory=LLMRouting)
    autoscaling: LLMAutoscaling = field(default_factory=LLMAutoscaling)
    metrics_path: str = "/metrics"


_LLM_FIELDS = ("engine", "models", "routing", "autoscaling", "metricsPath")
_ROUTING_FIELDS = (
    "policy",
    "blockChars",
    "maxBlocks",
    "cacheBlocks",
    "loadFactor",
    "missCost",
    "prefillWeight",
)


def _number(
    c: _Collector, path: str, value: object, default: float, low: float, high: float, hint: str
) -> float:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        c.add(path, value, f"must be a number between {low:g} and {high:g} ({hint})")
        return default
    return float(value)


def parse_llm(c: _Collector, value: object) -> LLMSpec | None:
    """``spec.llm`` (None when absent); problems are added to ``c``."""
    if value is None:
        return None
    data = c.mapping("spec.llm", value)
    if not data:
        if isinstance(value, Mapping):
            c.add(
                "spec.llm", value, "must give engine and models, e.g. {engine: vllm, models: [m]}"
            )
        return None
    c.unknown("spec.llm", data, _LLM_FIELDS)
    engine = data.get("engine", "openai")
    if engine not in ENGINES:
        c.add(
            "spec.llm.engine",
            engine,
            f"must be one of {', '.join(ENGINES)} (openai: any OpenAI-compatible server)",
        )
        engine = "openai"
    models: list[str] = []
    raw_models = data.get("models")
    if isinstance(raw_models, list) and len(raw_models) > MAX_MODELS:
        c.add(
            "spec.llm.models",
            f"{len(raw_models)} names",
            f"lists at most {MAX_MODELS} models; serve more through separate Services",
        )
        raw_models = raw_models[:MAX_MODELS]
    for i, model in enumerate(c.strings("spec.llm.models", raw_models)):
        if not _MODEL.match(model):
            c.add(
                f"spec.llm.models[{i}]",
                model,
                "must be a model name as clients send it: letters, digits and ._:/@+- "
                "(at most 200 characters)",
            )
        elif model in models:
            c.add(f"spec.llm.models[{i}]", model, "is listed twice; list each model once")
        else:
            models.append(model)
    if not models and not any(e.path.startswith("spec.llm.models") for e in c.errors):
        c.add(
            "spec.llm.models",
            raw_models,
            "is required: the model names clients send in the request's model field",
        )
    routing = _routing(c, data.get("routing"))
    autoscaling = _llm_autoscaling(c, data.get("autoscaling"))
    metrics_path = data.get("metricsPath", "/metrics")
    if (
        not isinstance(metrics_path, str)
        or not metrics_path.startswith("/")
        or len(metrics_path) > 256
    ):
        c.add(
            "spec.llm.metricsPath",
            metrics_path if not isinstance(metrics_path, str) else metrics_path[:64],
            "must be an HTTP path such as /metrics (at most 256 characters)",
        )
        metrics_path = "/metrics"
    return LLMSpec(str(engine), tuple(models), routing, autoscaling, metrics_path)


def _routing(c: _Collector, value: object) -> LLMRouting:
    path = "spec.llm.routing"
    data = c.mapping(path, value)
    c.unknown(path, data, _ROUTING_FIELDS)
    policy = data.get("policy", "prefix")
    if policy not in POLICIES:
        c.add(f"{path}.policy", policy, f"must be one of {', '.join(POLICIES)}")
        policy = "prefix"
    ints: dict[str, int] = {}
    for key, default, low, high in (
        ("blockChars", 128, 8, 65536),
        ("maxBlocks", 64, 1, 4096),
        ("cacheBlocks", 4096, 1, 10_000_000),
    ):
        n = c.integer(f"{path}.{key}", data.get(key, default), minimum=low, maximum=high)
        ints[key] = default if n is None else n
    load_factor = _number(
        c,
        f"{path}.loadFactor",
        data.get("loadFactor"),
        1.25,
        1.0,
        100.0,
        "1 + epsilon: a replica above that many times the mean load is passed over",
    )
    miss_cost = _number(
        c,
        f"{path}.missCost",
        data.get("missCost"),
        4.0,
        0.0,
        1e6,
        "what a prefix-cache miss weighs, in queued requests",
    )
    prefill_weight = _number(
        c,
        f"{path}.prefillWeight",
        data.get("prefillWeight"),
        0.25,
        0.0,
        100.0,
        "prefix: what an uncached block already in flight to a replica weighs against a miss",
    )
    return LLMRouting(
        str(policy),
        ints["blockChars"],
        ints["maxBlocks"],
        ints["cacheBlocks"],
        load_factor,
        miss_cost,
        prefill_weight,
    )


def _llm_autoscaling(c: _Collector, value: object) -> LLMAutoscaling:
    path = "spec.llm.autoscaling"
    data = c.mapping(path, value)
    c.unknown(path, data, ("waitingTarget", "kvCacheTarget"))
    waiting = data.get("waitingTarget")
    kv = data.get("kvCacheTarget")
    waiting_target = (
        None
        if waiting is None
        else _number(c, f"{path}.waitingTarget", waiting, 1.0, 0.01, 1e6, "requests per replica")
    )
    kv_target = (
        None
        if kv is None
        else _number(
            c, f"{path}.kvCacheTarget", kv, 0.8, 0.01, 1.0, "a fraction of the KV cache, e.g. 0.8"
        )
    )
    return LLMAutoscaling(waiting_target, kv_target)


def llm_to_manifest(llm: LLMSpec) -> dict[str, object]:
    """The manifest form of ``llm`` (defaults written out); also ``Route.extra["llm"]``."""
    r = llm.routing
    out: dict[str, object] = {
        "engine": llm.engine,
        "models": list(llm.models),
        "routing": {
            "policy": r.policy,
            "blockChars": r.block_chars,
            "maxBlocks": r.max_blocks,
            "cacheBlocks": r.cache_blocks,
            "loadFactor": r.load_factor,
            "missCost": r.miss_cost,
            "prefillWeight": r.prefill_weight,
        },
        "metricsPath": llm.metrics_path,
    }
    a = llm.autoscaling
    scaling: dict[str, object] = {}
    if a.waiting_target is not None:
        scaling["waitingTarget"] = a.waiting_target
    if a.kv_cache_target is not None:
        scaling["kvCacheTarget"] = a.kv_cache_target
    if scaling:
        out["autoscaling"] = scaling
    return out
