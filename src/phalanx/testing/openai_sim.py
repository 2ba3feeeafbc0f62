"""A vLLM-compatible OpenAI server that simulates prefix caching and latency, for tests and
benchmarks: ``python -m phalanx.testing.openai_sim --port N --model M [flags]``.

It stands in for ``llm-d-inference-sim`` where that cannot be built (scripts/llmsim/llmsim), and
takes the same flag names for what it models, so phalanx.testing.llmsim starts either one the
same way:

- ``--max-num-seqs`` requests run at once; the rest wait in arrival order (``vllm:num_requests_
  waiting``), and their wait is part of their time to first token.
- The prompt is split into tokens (words and punctuation marks, like the dummy tokenizer),
  grouped into blocks of ``--block-size`` tokens, each block's hash chained to the one before,
  so two prompts share a block only when they share the whole prefix up to its end.
- With ``--enable-kvcache`` a replica keeps ``--kv-cache-size`` blocks: blocks of running
  requests are pinned, the others are evicted least recently used first. A request's cached
  tokens are its leading blocks already held, times the block size; they are reported as
  ``usage.prompt_tokens_details.cached_tokens``. A request whose new blocks do not fit runs
  without storing them.
- Time to first token: ``--time-to-first-token`` when it is set, else ``--prefill-overhead``
  plus ``--prefill-time-per-token`` for each uncached prompt token; then one token every
  ``--inter-token-latency``. Both grow with the running count by ``--time-factor-under-load``
  (1 at one running request, the factor at ``--max-num-seqs``), as in llm-d-inference-sim.
- Completions have ``max_tokens`` (or ``max_completion_tokens``) tokens, 16 when unset; ``--mode
  echo`` answers with the last message instead.

Endpoints: ``GET /v1/models``, ``POST /v1/chat/completions``, ``POST /v1/completions`` (both
streaming, with ``stream_options.include_usage``), ``POST /v1/embeddings``, ``GET /health``,
``GET /metrics`` (vLLM's metric names, with ``vllm:cache_config_info{num_gpu_blocks,
block_size}`` and ``vllm:prompt_tokens_total``) and ``GET /kv_events?since=N`` (below).
Durations take Go's form (``250ms``, ``1.5s``) or plain milliseconds. The standard library
only; not part of the serving path.

KV cache events (with ``--enable-kvcache``): each block stored or evicted is an event with
the fields of vLLM's ``vllm.distributed.kv_events`` — ``BlockStored`` (``block_hashes``,
``parent_block_hash``, ``token_ids``, ``block_size``, ``lora_id``, ``medium``),
``BlockRemoved`` (``block_hashes``, ``medium``) — in batches with ``ts``, as vLLM's
``KVEventBatch``. The transport differs: vLLM publishes msgpack over ZeroMQ; this server
keeps the last ``--kv-events-buffer`` batches and answers ``GET /kv_events?since=N`` with
``{"next": M, "lost": bool, "batches": [{"seq", "ts", "events": [{"type": ..., ...}]}]}``
(``lost``: batches after N were already dropped). Block hashes are the blocks' chained
hashes as integers; token ids are CRC-32s of the tokens (the dummy tokenizer has no
vocabulary).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import re
import sys
import time
import uuid
import zlib
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import cast

_TOKEN = re.compile(r"\w+|[^\w\s]")
_WORDS = ("Today", "is", "a", "fine", "day", "to", "serve", "tokens", "from", "the", "cache", ".")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*(ns|us|µs|ms|s|m)?\s*$")
_UNIT_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, None: 1e-3}


def parse_duration_s(text: str) -> float:
    """Seconds in a Go-style duration (``250ms``, ``1.5s``) or plain milliseconds (``250``).

    Raises ValueError naming the value when it is neither.
    """
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"duration {text!r}: use a number of milliseconds or e.g. 250ms, 1.5s")
    return float(match.group(1)) * _UNIT_S[match.group(2)]


def tokenize(text: str) -> list[str]:
    """The prompt's tokens: its words and punctuation marks."""
    return _TOKEN.findall(text)


def block_hashes(tokens: Sequence[str], block_size: int) -> list[str]:
    """One hash per whole block of ``block_size`` tokens, each chained to the previous one."""
    hashes: list[str] = []
    parent = ""
    for start in range(0, len(tokens) - block_size + 1, block_size):
        digest = hashlib.blake2b(digest_size=12)
        digest.update(parent.encode())
        digest.update("\x1f".join(tokens[start : start + block_size]).encode())
        parent = digest.hexdigest()
        hashes.append(parent)
    return hashes


@dataclass(slots=True)
class BlockCache:
    """A replica's KV blocks: pinned while a request uses them, evicted LRU otherwise.
    Every store and eviction is appended to ``events`` (vLLM's event fields) when it is
    not None."""

    capacity_blocks: int
    used: dict[str, int] = field(default_factory=dict)
    unused: OrderedDict[str, None] = field(default_factory=OrderedDict)
    events: list[dict[str, object]] | None = None
    block_size: int = 16

    def start(self, hashes: Sequence[str], tokens: Sequence[str] = ()) -> tuple[int, list[str]]:
        """Pin ``hashes`` (of the blocks of ``tokens``); returns (leading blocks already
        held, the blocks now pinned)."""
        cached = 0
        for h in hashes:
            if h not in self.used and h not in self.unused:
                break
            cached += 1
        held = [h for h in hashes if h in self.used or h in self.unused]
        new = [h for h in hashes if h not in self.used and h not in self.unused]
        for h in held:
            self.unused.pop(h, None)
            self.used[h] = self.used.get(h, 0) + 1
        fits = len(self.used) + len(new) <= self.capacity_blocks
        if fits:
            removed: list[int] = []
            for h in new:
                if len(self.used) + len(self.unused) >= self.capacity_blocks:
                    removed.append(int(self.unused.popitem(last=False)[0], 16))
                self.used[h] = 1
            if self.events is not None:
                if removed:
                    self.events.append(
                        {"type": "BlockRemoved", "block_hashes": removed, "medium": "GPU"}
                    )
                if new:
                    self.events.append(self._stored(hashes, new, tokens))
        return cached, held + (new if fits else [])

    def _stored(
        self, hashes: Sequence[str], new: Sequence[str], tokens: Sequence[str]
    ) -> dict[str, object]:
        first = len(hashes) - len(new)  # new blocks are a suffix: the hashes are chained
        size = self.block_size
        return {
            "type": "BlockStored",
            "block_hashes": [int(h, 16) for h in new],
            "parent_block_hash": int(hashes[first - 1], 16) if first > 0 else None,
            "token_ids": [
                zlib.crc32(t.encode()) for t in tokens[first * size : len(hashes) * size]
            ],
            "block_size": size,
            "lora_id": None,
            "medium": "GPU",
        }

    def finish(self, pinned: Sequence[str]) -> None:
        """Unpin a finished request's blocks; unused ones become the most recently used."""
        for h in pinned:
            count = self.used.get(h, 0) - 1
            if count > 0:
                self.used[h] = count
            elif h in self.used:
                del self.used[h]
                self.unused[h] = None

    @property
    def usage(self) -> float:
        return len(self.used) / self.capacity_blocks if self.capacity_blocks else 0.0


@dataclass(slots=True)
class SimConfig:
    model: str
    served_names: tuple[str, ...]
    max_num_seqs: int = 5
    enable_kvcache: bool = False
    kv_cache_size: int = 1024
    block_size: int = 16
    time_to_first_token_s: float = 0.0
    prefill_overhead_s: float = 0.0
    prefill_time_per_token_s: float = 0.0
    inter_token_latency_s: float = 0.0
    time_factor_under_load: float = 1.0
    mode: str = "random"
    kv_events_buffer: int = 4096


class Simulator:
    """The engine: admission by ``max_num_seqs``, the block cache and the latency model."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.cache = BlockCache(
            config.kv_cache_size,
            events=[] if config.enable_kvcache else None,
            block_size=config.block_size,
        )
        #: (sequence number, batch) of the latest KV event batches; see kv_events.
        self.kv_batches: deque[tuple[int, dict[str, object]]] = deque(
            maxlen=max(1, config.kv_events_buffer)
        )
        self.kv_seq = 0
        self.running = 0
        self.waiting = 0
        self._slots = asyncio.Semaphore(config.max_num_seqs)
        self.prompt_tokens_total = 0
        self.cached_tokens_total = 0
        self.requests_total = 0

    def load_factor(self) -> float:
        n = self.config.max_num_seqs
        if n <= 1:
            return 1.0
        return 1 + (self.config.time_factor_under_load - 1) * (self.running - 1) / (n - 1)

    def ttft_s(self, prompt_tokens: int, cached_tokens: int) -> float:
        c = self.config
        if c.time_to_first_token_s > 0:
            return c.time_to_first_token_s
        per_token = c.prefill_time_per_token_s * (prompt_tokens - cached_tokens)
        return (c.prefill_overhead_s + per_token) * self.load_factor()

    def publish_kv_events(self) -> None:
        """Move the cache's pending events into one batch (as vLLM's engine does per step)."""
        events = self.cache.events
        if not events:
            return
        self.kv_seq += 1
        self.kv_batches.append(
            (
                self.kv_seq,
                {
                    "seq": self.kv_seq,
                    "ts": time.time(),
                    "events": list(events),
                    "data_parallel_rank": None,
                },
            )
        )
        events.clear()

    def kv_events(self, since: int) -> dict[str, object]:
        """The batches after sequence number ``since``; ``lost`` when some were dropped."""
        self.publish_kv_events()
        batches = [batch for seq, batch in self.kv_batches if seq > since]
        oldest = self.kv_batches[0][0] if self.kv_batches else self.kv_seq + 1
        return {
            "next": self.kv_seq,
            "lost": since + 1 < oldest and since < self.kv_seq,
            "batches": batches,
        }

    def metrics_text(self) -> str:
        labels = f'{{model_name="{self.config.model}"}}'
        c = self.config
        info = (
            f'{{block_size="{c.block_size}",num_gpu_blocks="{c.kv_cache_size}",'
            f'enable_prefix_caching="{c.enable_kvcache}"}}'
        )
        lines = [
            f"vllm:cache_config_info{info} 1.0",
            f"vllm:prompt_tokens_total{labels} {self.prompt_tokens_total}",
            f"vllm:num_requests_running{labels} {self.running}",
            f"vllm:num_requests_waiting{labels} {self.waiting}",
            f"vllm:kv_cache_usage_perc{labels} {self.cache.usage}",
            f"vllm:gpu_cache_usage_perc{labels} {self.cache.usage}",
            f"vllm:prefix_cache_queries_total{labels} {self.prompt_tokens_total}",
            f"vllm:prefix_cache_hits_total{labels} {self.cached_tokens_total}",
            f"vllm:request_success_total{labels} {self.requests_total}",
        ]
        return "\n".join(lines) + "\n"


class BadRequestError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _prompt_text(path: str, body: dict[str, object]) -> str:
    if path == "/v1/chat/completions":
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise BadRequestError(400, "messages: a non-empty list of {role, content} is required")
        parts = []
        for message in messages:
            if not isinstance(message, dict):
                raise BadRequestError(400, "messages[]: each message must be an object")
            content = message.get("content", "")
            if isinstance(content, list):
                content = " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
            parts.append(f"<|{message.get('role', 'user')}|> {content} <|end|>")
        return " ".join(parts)
    prompt = body.get("prompt")
    if isinstance(prompt, list):
        prompt = " ".join(str(p) for p in prompt)
    if not isinstance(prompt, str):
        raise BadRequestError(400, "prompt: a string is required")
    return prompt


def _output_tokens(sim: Simulator, body: dict[str, object], prompt: str) -> list[str]:
    limit = body.get("max_completion_tokens") or body.get("max_tokens") or 16
    if not isinstance(limit, int) or limit < 1:
        raise BadRequestError(400, f"max_tokens: {limit!r} is not a positive integer")
    if sim.config.mode == "echo":
        words = tokenize(prompt.rsplit("<|user|>", 1)[-1].replace("<|end|>", ""))
        return [w + " " for w in words[:limit]]
    return [_WORDS[i % len(_WORDS)] + " " for i in range(limit)]


class _Exchange:
    """One request on a connection: writes a JSON answer or a server-sent event stream."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer

    async def json(self, status: int, payload: object) -> None:
        data = json.dumps(payload).encode()
        head = (
            f"HTTP/1.1 {status} {'OK' if status == 200 else 'Error'}\r\n"
            f"content-type: application/json\r\ncontent-length: {len(data)}\r\n\r\n"
        )
        self.writer.write(head.encode() + data)
        await self.writer.drain()

    async def text(self, body: str) -> None:
        data = body.encode()
        head = f"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {len(data)}\r\n\r\n"
        self.writer.write(head.encode() + data)
        await self.writer.drain()

    async def start_stream(self) -> None:
        self.writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n"
        )

    async def event(self, payload: object | str) -> None:
        text = payload if isinstance(payload, str) else json.dumps(payload)
        data = f"data: {text}\n\n".encode()
        self.writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        await self.writer.drain()

    async def end_stream(self) -> None:
        self.writer.write(b"0\r\n\r\n")
        await self.writer.drain()


async def _generate(sim: Simulator, path: str, body: dict[str, object], out: _Exchange) -> None:
    c = sim.config
    model = body.get("model")
    if model not in c.served_names:
        raise BadRequestError(404, f"The model `{model}` does not exist.")
    prompt = _prompt_text(path, body)
    tokens = tokenize(prompt)
    output = _output_tokens(sim, body, prompt)
    stream = body.get("stream") is True
    options = body.get("stream_options")
    include_usage = isinstance(options, dict) and options.get("include_usage") is True
    is_chat = path == "/v1/chat/completions"
    rid = ("chatcmpl-" if is_chat else "cmpl-") + uuid.uuid4().hex
    created = int(time.time())

    sim.waiting += 1
    await sim._slots.acquire()
    sim.waiting -= 1
    sim.running += 1
    pinned: list[str] = []
    try:
        cached_tokens = 0
        if c.enable_kvcache:
            cached_blocks, pinned = sim.cache.start(block_hashes(tokens, c.block_size), tokens)
            sim.publish_kv_events()
            cached_tokens = cached_blocks * c.block_size
        sim.prompt_tokens_total += len(tokens)
        sim.cached_tokens_total += cached_tokens
        usage = {
            "prompt_tokens": len(tokens),
            "completion_tokens": len(output),
            "total_tokens": len(tokens) + len(output),
            "prompt_tokens_details": {"cached_tokens": cached_tokens},
        }
        await asyncio.sleep(sim.ttft_s(len(tokens), cached_tokens))
        kind = "chat.completion" if is_chat else "text_completion"
        base = {"id": rid, "created": created, "model": model}
        if not stream:
            for _ in output[1:]:
                await asyncio.sleep(c.inter_token_latency_s * sim.load_factor())
            text = "".join(output)
            choice: dict[str, object] = {"index": 0, "finish_reason": "length", "logprobs": None}
            if is_chat:
                choice["message"] = {"role": "assistant", "content": text}
            else:
                choice["text"] = text
            await out.json(200, {**base, "object": kind, "choices": [choice], "usage": usage})
            return
        await out.start_stream()
        chunk_kind = "chat.completion.chunk" if is_chat else "text_completion"
        for i, token in enumerate(output):
            if i:
                await asyncio.sleep(c.inter_token_latency_s * sim.load_factor())
            last = i == len(output) - 1
            part: dict[str, object] = {"index": 0, "finish_reason": "length" if last else None}
            if is_chat:
                part["delta"] = (
                    {"role": "assistant", "content": token} if i == 0 else {"content": token}
                )
            else:
                part["text"] = token
            await out.event({**base, "object": chunk_kind, "choices": [part]})
        if include_usage:
            await out.event({**base, "object": chunk_kind, "choices": [], "usage": usage})
        await out.event("[DONE]")
        await out.end_stream()
    finally:
        sim.cache.finish(pinned)
        sim.running -= 1
        sim.requests_total += 1
        sim._slots.release()


def _embedding(sim: Simulator, body: dict[str, object]) -> dict[str, object]:
    if body.get("model") not in sim.config.served_names:
        raise BadRequestError(404, f"The model `{body.get('model')}` does not exist.")
    inputs = body.get("input")
    items = inputs if isinstance(inputs, list) else [inputs]
    data = []
    total = 0
    for i, item in enumerate(items):
        digest = hashlib.sha256(str(item).encode()).digest()
        data.append({"object": "embedding", "index": i, "embedding": [b / 255 for b in digest[:8]]})
        total += len(tokenize(str(item)))
    usage = {"prompt_tokens": total, "total_tokens": total}
    return {"object": "list", "model": body["model"], "data": data, "usage": usage}


def _since(query: str) -> int:
    for part in query.split("&"):
        key, _, value = part.partition("=")
        if key == "since":
            try:
                return int(value)
            except ValueError as exc:
                raise BadRequestError(400, f"since: {value!r} is not an integer") from exc
    return 0


async def _serve_one(sim: Simulator, method: str, path: str, raw: bytes, out: _Exchange) -> None:
    path, _, query = path.partition("?")
    if method == "GET" and path == "/v1/models":
        models = [
            {
                "id": name,
                "object": "model",
                "created": 0,
                "owned_by": "vllm",
                "root": sim.config.model,
            }
            for name in sim.config.served_names
        ]
        await out.json(200, {"object": "list", "data": models})
        return
    if method == "GET" and path == "/health":
        await out.text("")
        return
    if method == "GET" and path == "/metrics":
        await out.text(sim.metrics_text())
        return
    if method == "GET" and path == "/kv_events":
        if not sim.config.enable_kvcache:
            raise BadRequestError(404, "KV events need --enable-kvcache")
        await out.json(200, sim.kv_events(_since(query)))
        return
    routes = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings")
    if method != "POST" or path not in routes:
        raise BadRequestError(404, f"no route {method} {path}")
    try:
        body = json.loads(raw or b"{}")
    except ValueError as exc:
        raise BadRequestError(400, f"the body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise BadRequestError(400, "the body must be a JSON object")
    if path == "/v1/embeddings":
        await out.json(200, _embedding(sim, cast(dict[str, object], body)))
        return
    await _generate(sim, path, cast(dict[str, object], body), out)


async def _connection(
    sim: Simulator, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    out = _Exchange(writer)
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                return
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = [*lines[0].split(" ", 2), "", ""][:3]
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0") or 0)
            raw = await reader.readexactly(length) if length else b""
            try:
                await _serve_one(sim, method, path, raw, out)
            except BadRequestError as exc:
                kind = "NotFoundError" if exc.status == 404 else "BadRequestErrorError"
                error = {"message": str(exc), "type": kind, "code": exc.status}
                await out.json(exc.status, {"error": error, "object": "error"})
            if headers.get("connection", "").lower() == "close":
                return
    except (ConnectionError, asyncio.IncompleteReadError):
        return
    finally:
        writer.close()


def parse_args(argv: Sequence[str]) -> tuple[str, int, SimConfig]:
    """(host, port, config) from llm-d-inference-sim's flag names; unknown flags are refused."""
    p = argparse.ArgumentParser(prog="python -m phalanx.testing.openai_sim")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--model", required=True)
    p.add_argument("--served-model-name", action="append", default=[])
    p.add_argument("--max-num-seqs", type=int, default=5)
    p.add_argument("--enable-kvcache", action="store_true")
    p.add_argument("--kv-cache-size", type=int, default=1024)
    p.add_argument("--block-size", type=int, default=16)
    for name in ("time-to-first-token", "prefill-overhead", "prefill-time-per-token"):
        p.add_argument(f"--{name}", type=parse_duration_s, default=0.0)
    p.add_argument("--inter-token-latency", type=parse_duration_s, default=0.0)
    p.add_argument("--time-factor-under-load", type=float, default=1.0)
    p.add_argument("--mode", choices=("random", "echo"), default="random")
    p.add_argument("--kv-events-buffer", type=int, default=4096, help="KV event batches kept")
    p.add_argument("--force-dummy-tokenizer", action="store_true", help="accepted; always so")
    a = p.parse_args(list(argv))
    config = SimConfig(
        model=a.model,
        served_names=tuple(a.served_model_name) or (a.model,),
        max_num_seqs=a.max_num_seqs,
        enable_kvcache=a.enable_kvcache,
        kv_cache_size=a.kv_cache_size,
        block_size=a.block_size,
        time_to_first_token_s=a.time_to_first_token,
        prefill_overhead_s=a.prefill_overhead,
        prefill_time_per_token_s=a.prefill_time_per_token,
        inter_token_latency_s=a.inter_token_latency,
        time_factor_under_load=a.time_factor_under_load,
        mode=a.mode,
        kv_events_buffer=a.kv_events_buffer,
    )
    return str(a.host), int(a.port), config


async def serve(host: str, port: int, config: SimConfig) -> None:
    """Serve until cancelled; prints ``PORT <n>`` once listening."""
    sim = Simulator(config)
    # A large backlog: a load generator may open hundreds of connections at once.
    server = await asyncio.start_server(
        lambda r, w: _connection(sim, r, w), host, port, limit=1 << 24, backlog=4096
    )
    bound = server.sockets[0].getsockname()[1]
    print(f"PORT {bound}", flush=True)
    async with server:
        await server.serve_forever()


def main(argv: Sequence[str] | None = None) -> None:
    host, port, config = parse_args(sys.argv[1:] if argv is None else argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(host, port, config))


if __name__ == "__main__":
    main()
