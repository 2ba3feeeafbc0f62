"""Benchmark: LLM routing policies side by side on one simulated fleet (issue 11; ARCHITECTURE
§12: mean TTFT ≥ 70 % below round-robin, better than the best open router, gateway p99 < 2 ms).

Every target sees the same requests, at the same times, against a fleet started fresh for each
run (so no run inherits another's KV cache):

- ``direct-rr``: the client itself sends to the replicas in turn (round-robin with no proxy);
- ``sglang-router`` (``--policy cache_aware``) and ``vllm-router`` (``--policy cache_aware``),
  unchanged, from their wheels (scripts/bench-routers installs them; ``--skip-peers`` not to);
- ``phalanx:<policy>``: ``phalanx gateway --upstream … --policy <policy>`` for each policy.

The fleet: ``--replicas`` simulators (phalanx.testing.llmsim: llm-d-inference-sim when
scripts/llmsim/llmsim has built it, else phalanx.testing.openai_sim), each with a small KV
cache and a latency model in which uncached prompt tokens cost prefill time (the settings are
printed). Workloads:

- ``prefix-moderate`` / ``prefix-overload``: ``--groups`` groups, each a long system prompt
  shared by its requests, short user turns, Poisson arrivals at ``--moderate-rps`` and
  ``--overload-rps`` for ``--seconds``;
- ``mooncake``: ``../shared/data/mooncake/conversation_trace.jsonl`` replayed. The first
  300 requests of the trace (the previous choice) reuse almost nothing: 8 % of their blocks
  even with an endless cache, because a conversation's next turn comes a minute or more
  later. So the replay keeps whole conversations instead: the whole hour, 1 conversation in
  ``--trace-sample`` (by its second block id, so every turn of a kept conversation is kept),
  at the real arrival times divided by ``--trace-speedup``; each 512-token block id becomes
  ``--trace-block-tokens`` tokens of text unique to that id (so equal ids give equal token
  prefixes), outputs are divided by 32 (at least 1, at most 16). The KV cache per replica
  (``--trace-kv-blocks``) is chosen so that reuse matters: the script prints, from the
  trace's block ids alone, the hit rate with an endless cache and, at that cache size, with
  the replay's requests sent round-robin or each conversation to one replica. The same
  requests, times and cache size go to every router.

The client (httpx, asyncio) streams every request (``stream_options.include_usage``): TTFT is
from the request's scheduled time to its first SSE chunk with content (no coordinated
omission), the cache-hit rate is Σ ``cached_tokens`` / Σ ``prompt_tokens`` from the servers'
usage, and output tokens/s is Σ ``completion_tokens`` over the time from the first arrival to
the last answer. Then gateway overhead: one replica with no simulated latency, requests at a
low rate alternating straight to it and through each router, each timed from its actual
send to its whole (non-streamed) answer; overhead = the difference of the percentiles. For
phalanx's gateway its own time is also read from the process itself (``GET
/gateway/timings``: request received → written to the replica, response bytes from the
replica → written to the client), which the machine's scheduling noise does not blur.

``--routing '{"missCost": 8}'`` runs phalanx's policies with other routing parameters
(``spec.llm.routing``'s keys); a policy may carry its own, ``--policies
prefix,prefix/missCost=8``, and ``prefix/slots=0`` runs the prefix policy without the
engines' slots (as it was before it used them), for a comparison in the same run;
``--repeat N`` runs every comparison N times, interleaved.

    python bench/llm_routing.py [--seconds 24] [--replicas 4] [--skip-peers]
                                [--policies round-robin,least-outstanding,chwbl,prefix]

Figures depend on the machine's load: the script prints ``uptime`` before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from dataclasses import dataclass
from pathlib import Path

import httpx

from phalanx.testing.llmsim import start_llm_sims

REPO = Path(__file__).resolve().parents[1]
TRACE = REPO.parent / "shared" / "data" / "mooncake" / "conversation_trace.jsonl"
MODEL = "sim-llm"
BLOCK_TOKENS = 16

# The simulators' latency model: prefill of uncached prompt tokens costs time, so a cache hit
# matters; decoding is the same everywhere. Passed as llm-d-inference-sim flags.
LATENCY = {
    "prefill-overhead": "10ms",
    "prefill-time-per-token": "1ms",
    "inter-token-latency": "20ms",
}
MAX_NUM_SEQS = 4


# -- workloads ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Request:
    at_s: float
    messages: tuple[tuple[str, str], ...]
    max_tokens: int


def _words(tag: str, n: int) -> str:
    return " ".join(f"{tag}w{i}" for i in range(n))


def shared_prefix(
    *,
    groups: int,
    system_tokens: int,
    user_tokens: int,
    output_tokens: int,
    rps: float,
    seconds: float,
    seed: int,
) -> list[Request]:
    """Poisson arrivals; each request a random group's system prompt and a fresh user turn."""
    rng = random.Random(seed)
    systems = [_words(f"g{seed}s{g}", system_tokens) for g in range(groups)]
    out: list[Request] = []
    t = rng.expovariate(rps)
    n = 0
    while t < seconds:
        g = rng.randrange(groups)
        user = _words(f"u{seed}n{n}", user_tokens)
        out.append(Request(t, (("system", systems[g]), ("user", user)), output_tokens))
        t += rng.expovariate(rps)
        n += 1
    return out


def mooncake_rows(path: Path, *, sample: int, requests: int) -> list[dict[str, object]]:
    """The trace's rows of 1 conversation in ``sample`` (second block id mod ``sample``
    is 0; a one-block request has no conversation and is left out), at most ``requests``
    of them (0: all)."""
    out: list[dict[str, object]] = []
    with path.open() as f:
        for line in f:
            row = json.loads(line)
            ids = row["hash_ids"]
            if len(ids) < 2 or ids[1] % sample:
                continue
            out.append(row)
            if len(out) == requests:
                break
    return out


def mooncake(
    rows: Sequence[dict[str, object]], *, speedup: float, block_tokens: int
) -> list[Request]:
    """The rows as requests, each hash id a block of text unique to it."""
    out: list[Request] = []
    for row in rows:
        ids = row["hash_ids"]
        assert isinstance(ids, list)
        text = " ".join(_words(f"h{h}", block_tokens) for h in ids)
        output = min(16, max(1, int(row["output_length"]) // 32))  # type: ignore[call-overload]
        at_s = float(row["timestamp"]) / 1000 / speedup  # type: ignore[arg-type]
        out.append(Request(at_s, (("user", text),), output))
    return out


def trace_hit_bounds(rows: Sequence[dict[str, object]], replicas: int, cache_blocks: int) -> str:
    """From block ids alone: the prefix hit rate with an endless cache, and with an LRU
    cache of ``cache_blocks`` per replica when requests go round-robin or each
    conversation to one replica (blocks of the trace, not tokens)."""

    def replay(route: Callable[[int, list[int]], int] | None) -> float:
        caches: list[OrderedDict[int, None]] = [OrderedDict() for _ in range(replicas)]
        seen: set[int] = set()
        hit = total = 0
        for i, row in enumerate(rows):
            ids = list(row["hash_ids"])  # type: ignore[call-overload]
            if route is None:
                n = 0
                while n < len(ids) and ids[n] in seen:
                    n += 1
                seen.update(ids)
            else:
                cache = caches[route(i, ids)]
                n = 0
                while n < len(ids) and ids[n] in cache:
                    n += 1
                for h in ids:
                    cache[h] = None
                    cache.move_to_end(h)
                while len(cache) > cache_blocks:
                    cache.popitem(last=False)
            hit += n
            total += len(ids)
        return hit / total if total else 0.0

    endless = replay(None)
    rr = replay(lambda i, ids: i % replicas)
    sticky = replay(lambda i, ids: (ids[1] * 2654435761 >> 7) % replicas)
    return (
        f"trace-block prefix hit rate: endless cache {endless:.1%}; {cache_blocks}-block "
        f"cache per replica: round-robin {rr:.1%}, "
        f"each conversation on one replica {sticky:.1%}"
    )


# -- targets --------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_http(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: the router exited with {proc.returncode}")
        with suppress(httpx.HTTPError):
            if httpx.get(f"{url}/v1/models", timeout=1.0).status_code == 200:
                return
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer /v1/models in {timeout_s} s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def peer_router(binary: Path, policy: str, urls: Sequence[str], log: Path) -> Iterator[str]:
    port = _free_port()
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [
                str(binary),
                *(["launch"] if binary.name == "sglang-router" else []),
                "--worker-urls",
                *urls,
                "--policy",
                policy,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "error",
                # Both export Prometheus metrics on a fixed port by default: a free one instead.
                "--prometheus-host",
                "127.0.0.1",
                "--prometheus-port",
                str(_free_port()),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_http(url, proc)
        yield url
    finally:
        _stop(proc)


def _serve_gateway(spec: str) -> None:
    """``--serve-gateway JSON``: what ``phalanx gateway --upstream …`` runs, with routing
    parameters the command has no flags for (``--routing``)."""
    from phalanx.serving.llm.gateway import Gateway, StaticRoutes
    from phalanx.serving.router import new_event_loop, serve_forever

    a = json.loads(spec)
    routes = StaticRoutes(a["upstreams"], [MODEL], policy=a["policy"], routing=a["routing"])
    serve_forever(
        Gateway(routes, routes, **a.get("gateway", {})),
        "127.0.0.1",
        0,
        lambda port: print(f"gateway listening on http://127.0.0.1:{port}", flush=True),
        loop_factory=new_event_loop,
    )


@contextmanager
def phalanx_gateway(
    policy: str,
    urls: Sequence[str],
    log: Path,
    routing: dict[str, object] | None = None,
    options: dict[str, object] | None = None,
) -> Iterator[str]:
    """``options``: the Gateway's own keyword arguments (e.g. ``learn_slots``), which the
    command has no flags for: then, as with ``routing``, the gateway runs from this
    script."""
    phalanx = Path(sys.executable).with_name("phalanx")
    upstreams = [arg for url in urls for arg in ("--upstream", url)]
    command = [
        str(phalanx),
        "gateway",
        *upstreams,
        "--model",
        MODEL,
        "--policy",
        policy,
        "--host",
        "127.0.0.1",
        "--port",
        "0",
    ]
    if routing or options:
        spec = {
            "upstreams": list(urls),
            "policy": policy,
            "routing": routing or {},
            "gateway": options or {},
        }
        command = [sys.executable, __file__, "--serve-gateway", json.dumps(spec)]
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=log.open("ab"),
        stdin=subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        url = ""
        deadline = time.monotonic() + 30
        while not url and time.monotonic() < deadline:
            line = proc.stdout.readline().decode()
            if not line:
                raise RuntimeError(f"phalanx gateway exited ({proc.wait()}); see {log}")
            found = re.search(r"gateway listening on (http://\S+)", line)
            url = found.group(1).rstrip("/") if found else ""
        _wait_http(url, proc)
        yield url
    finally:
        _stop(proc)


# -- the client -----------------------------------------------------------------------------


@dataclass(slots=True)
class Result:
    ttft_s: float | None = None
    done_s: float = 0.0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0
    error: str = ""


async def _one(
    client: httpx.AsyncClient,
    url: str,
    req: Request,
    start: float,
    stream: bool = True,
    from_send: bool = False,
) -> Result:
    """Sends ``req`` at ``start + req.at_s``; TTFT counts from then, or from the actual send
    when ``from_send`` (the overhead test, where a late client must not count)."""
    await asyncio.sleep(max(0.0, start + req.at_s - time.monotonic()))
    body = {
        "model": MODEL,
        "messages": [{"role": r, "content": c} for r, c in req.messages],
        "max_tokens": req.max_tokens,
        "stream": stream,
    }
    if stream:
        body["stream_options"] = {"include_usage": True}
    res = Result()
    scheduled = time.monotonic() if from_send else start + req.at_s
    try:
        async with client.stream("POST", f"{url}/v1/chat/completions", json=body) as reply:
            if reply.status_code != 200:
                res.error = f"{reply.status_code}: {(await reply.aread())[:200]!r}"
                return res
            if not stream:
                usage = json.loads(await reply.aread())["usage"]
                res.ttft_s = time.monotonic() - scheduled
                res.prompt_tokens = usage["prompt_tokens"]
                res.output_tokens = usage["completion_tokens"]
                return res
            async for line in reply.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                choices = chunk.get("choices") or []
                if (
                    res.ttft_s is None
                    and choices
                    and (choices[0].get("delta") or {}).get("content")
                ):
                    res.ttft_s = time.monotonic() - scheduled
                usage = chunk.get("usage")
                if usage:
                    res.prompt_tokens = usage["prompt_tokens"]
                    res.output_tokens = usage["completion_tokens"]
                    details = usage.get("prompt_tokens_details") or {}
                    res.cached_tokens = details.get("cached_tokens") or 0
    except httpx.HTTPError as exc:
        res.error = f"{type(exc).__name__}: {exc}"
    res.done_s = time.monotonic() - start
    return res


async def drive(pick_url: Callable[[int], str], requests: Sequence[Request]) -> list[Result]:
    limits = httpx.Limits(max_connections=2000, max_keepalive_connections=2000)
    timeout = httpx.Timeout(120.0)
    async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
        start = time.monotonic() + 0.2
        tasks = [_one(client, pick_url(i), r, start) for i, r in enumerate(requests)]
        return list(await asyncio.gather(*tasks))


def _pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


@dataclass(frozen=True, slots=True)
class Row:
    workload: str
    target: str
    n: int
    errors: int
    mean_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    out_tps: float
    hit_rate: float


def summarize(workload: str, target: str, results: Sequence[Result]) -> Row:
    ok = [r for r in results if not r.error and r.ttft_s is not None]
    ttft = [r.ttft_s * 1000 for r in ok if r.ttft_s is not None]
    span = max((r.done_s for r in ok), default=1.0)
    prompt = sum(r.prompt_tokens for r in ok)
    return Row(
        workload,
        target,
        len(results),
        len(results) - len(ok),
        statistics.fmean(ttft) if ttft else float("nan"),
        _pct(ttft, 0.5),
        _pct(ttft, 0.9),
        _pct(ttft, 0.99),
        sum(r.output_tokens for r in ok) / span,
        sum(r.cached_tokens for r in ok) / prompt if prompt else 0.0,
    )


# -- the runs -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    """A router under test: ``start(replica_urls, log)`` yields the URL to send requests to
    (empty for ``direct-rr``, whose client picks the replica itself)."""

    name: str
    start: Callable[[Sequence[str], Path], AbstractContextManager[str]]


def _targets(
    policies: Sequence[str],
    routers_bin: Path | None,
    routing: dict[str, object] | None = None,
    skip: Sequence[str] = (),
) -> list[Target]:
    def peer(
        binary: Path, policy: str
    ) -> Callable[[Sequence[str], Path], AbstractContextManager[str]]:
        return lambda urls, log: peer_router(binary, policy, urls, log)

    def gateway(spec: str) -> Callable[[Sequence[str], Path], AbstractContextManager[str]]:
        # "prefix/missCost=16": a policy with its own routing parameters; "prefix/slots=0":
        # the prefix policy not told the engines' slots (the cost before they were used).
        policy, *pairs = spec.split("/")
        own = dict(routing or {})
        options: dict[str, object] = {}
        for pair in pairs:
            key, _, value = pair.partition("=")
            if key == "slots":
                options["learn_slots"] = float(value) != 0
            else:
                own[key] = float(value)
        return lambda urls, log: phalanx_gateway(policy, urls, log, own or None, options)

    out = [Target("direct-rr", lambda urls, log: nullcontext(""))]
    if routers_bin is not None:
        for name in ("sglang-router", "vllm-router"):
            if name not in skip:
                out.append(Target(f"{name}:cache_aware", peer(routers_bin / name, "cache_aware")))
    out += [Target(f"phalanx:{p}", gateway(p)) for p in policies]
    return out


def _file_name(target: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]", "_", target)


def run_one(
    target: Target,
    workload: str,
    requests: Sequence[Request],
    *,
    replicas: int,
    kv_blocks: int,
    logs: Path,
) -> Row:
    with start_llm_sims(
        replicas,
        model=MODEL,
        kv_blocks=kv_blocks,
        block_size=BLOCK_TOKENS,
        max_num_seqs=MAX_NUM_SEQS,
        latency=LATENCY,
        log_dir=logs,
    ) as sims:
        urls = [s.url for s in sims]
        log = logs / f"{_file_name(target.name)}.log"
        notes: list[str] = []
        try:
            with target.start(urls, log) as url:
                pick = (lambda i: urls[i % len(urls)]) if not url else (lambda i: url)
                results = asyncio.run(drive(pick, requests))
                if target.name.startswith("phalanx:"):
                    with suppress(httpx.HTTPError, ValueError, KeyError):
                        own = httpx.get(f"{url}/gateway/timings", timeout=5.0).json()["request"]
                        notes.append(
                            f"gateway's own request time p50 {own['p50']:.2f} p99 "
                            f"{own['p99']:.2f} max {own['max']:.2f} ms"
                        )
            notes.append("requests per replica " + "/".join(_served(u) for u in urls))
        except (RuntimeError, TimeoutError, OSError) as exc:
            print(f"  {target.name}: could not start: {exc}", flush=True)
            nan = float("nan")
            return Row(
                workload, target.name, len(requests), len(requests), nan, nan, nan, nan, 0, 0
            )
    row = summarize(workload, target.name, results)
    errors = [r.error for r in results if r.error][:2]
    print(f"  {_fmt(row)}" + (f"   errors e.g. {errors}" if errors else ""), flush=True)
    print(f"  {'':16} {'; '.join(notes)}", flush=True)
    return row


def _served(url: str) -> str:
    """How many requests the replica at ``url`` finished (its vLLM counter)."""
    try:
        text = httpx.get(f"{url}/metrics", timeout=5.0).text
    except httpx.HTTPError:
        return "?"
    found = re.search(r"^vllm:request_success_total\S* (\S+)$", text, re.M)
    return str(int(float(found.group(1)))) if found else "?"


def _fmt(row: Row) -> str:
    return (
        f"{row.workload:16} {row.target:30} {row.n:5} {row.errors:4} {row.mean_ms:8.0f} "
        f"{row.p50_ms:8.0f} {row.p90_ms:8.0f} {row.p99_ms:8.0f} {row.out_tps:8.0f} "
        f"{row.hit_rate:6.1%}"
    )


HEADER = (
    f"{'workload':16} {'target':30} {'n':>5} {'err':>4} {'mean':>8} {'p50':>8} {'p90':>8} "
    f"{'p99':>8} {'out t/s':>8} {'hit':>6}   (TTFT in ms)"
)


def _alternate(
    target: Target, direct: str, logs: Path, count: int, rps: float
) -> tuple[list[Result], dict[str, dict[str, float]] | None]:
    """``2 × count`` one-token requests at ``rps``: even ones straight to ``direct``, odd ones
    through the target; with the target's own timings when it serves them (phalanx)."""
    ping = Request(0.0, (("user", "ping"),), 1)
    plan = [Request(i / rps, ping.messages, 1) for i in range(2 * count)]

    async def go(url: str) -> list[Result]:
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        async with httpx.AsyncClient(limits=limits, timeout=30.0) as client:
            for u in (direct, url, direct, url):  # open both paths' connections first
                await _one(client, u, ping, time.monotonic(), stream=False)
            start = time.monotonic() + 0.1
            return list(
                await asyncio.gather(
                    *(
                        _one(
                            client, url if i % 2 else direct, r, start, stream=False, from_send=True
                        )
                        for i, r in enumerate(plan)
                    )
                )
            )

    with target.start([direct], logs / f"overhead-{_file_name(target.name)}.log") as url:
        results = asyncio.run(go(url))
        own = None
        if target.name.startswith("phalanx:"):
            with suppress(httpx.HTTPError, ValueError):
                own = httpx.get(f"{url}/gateway/timings", timeout=5.0).json()
        return results, own


def overhead(targets: Sequence[Target], logs: Path, count: int, rps: float) -> list[str]:
    """Per router: p50/p99 latency through it minus straight to one zero-latency replica."""
    lines = []
    with start_llm_sims(1, model=MODEL, kv_blocks=1024, log_dir=logs) as sims:
        direct = sims[0].url
        for target in targets:
            if target.name == "direct-rr":
                continue
            try:
                results, own = _alternate(target, direct, logs, count, rps)
            except (RuntimeError, TimeoutError, OSError) as exc:
                lines.append(f"{target.name:30} could not start: {exc}")
                continue
            ok = [r for r in results if r.ttft_s is not None and not r.error]
            via = [r.ttft_s * 1000 for r in results[1::2] if r in ok and r.ttft_s is not None]
            straight = [r.ttft_s * 1000 for r in results[0::2] if r in ok and r.ttft_s is not None]
            lines.append(
                f"{target.name:30} direct p50 {_pct(straight, 0.5):6.2f} p99 {_pct(straight, 0.99):6.2f}"
                f" | via p50 {_pct(via, 0.5):6.2f} p99 {_pct(via, 0.99):6.2f}"
                f" | overhead p50 {_pct(via, 0.5) - _pct(straight, 0.5):+6.2f}"
                f" p99 {_pct(via, 0.99) - _pct(straight, 0.99):+6.2f} ms (n={len(via)})"
            )
            print("  " + lines[-1], flush=True)
            if own:
                req, resp = own["request"], own["response"]
                lines.append(
                    f"{'':30} its own time (in process, ms): request received → sent upstream "
                    f"p50 {req.get('p50', 0):.3f} p99 {req.get('p99', 0):.3f} max "
                    f"{req.get('max', 0):.3f}; response bytes → client p50 {resp.get('p50', 0):.3f} "
                    f"p99 {resp.get('p99', 0):.3f} max {resp.get('max', 0):.3f}; sum of p99s "
                    f"{req.get('p99', 0) + resp.get('p99', 0):.3f} (n={req.get('n', 0)})"
                )
                print("  " + lines[-1], flush=True)
    return lines


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--replicas", type=int, default=4)
    # 24 s (about 145 requests at 6/s): with 12 s (72) the 8 groups' unavoidable first misses
    # are over 10 % of the requests, so every cache-aware router's p90 is a cold miss.
    p.add_argument("--seconds", type=float, default=24.0)
    p.add_argument("--groups", type=int, default=8)
    p.add_argument("--system-tokens", type=int, default=1024)
    p.add_argument("--user-tokens", type=int, default=24)
    p.add_argument("--output-tokens", type=int, default=8)
    p.add_argument("--moderate-rps", type=float, default=6.0)
    p.add_argument("--overload-rps", type=float, default=20.0)
    p.add_argument("--prefix-kv-blocks", type=int, default=256)
    p.add_argument("--trace-requests", type=int, default=0, help="at most this many (0: all)")
    p.add_argument("--trace-sample", type=int, default=24, help="1 conversation in N")
    p.add_argument("--trace-speedup", type=float, default=100.0)
    p.add_argument("--trace-block-tokens", type=int, default=16)
    p.add_argument("--trace-kv-blocks", type=int, default=1024)
    p.add_argument("--routing", default="", help="phalanx routing parameters (JSON)")
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--skip-router", default="", help="e.g. vllm-router: leave that peer out")
    p.add_argument("--serve-gateway", default="", help=argparse.SUPPRESS)
    p.add_argument("--policies", default="round-robin,least-outstanding,chwbl,prefix")
    p.add_argument("--skip-peers", action="store_true")
    p.add_argument("--workloads", default="prefix-moderate,prefix-overload,mooncake")
    p.add_argument("--overhead-requests", type=int, default=150)
    p.add_argument("--overhead-rps", type=float, default=20.0)
    p.add_argument("--logs", type=Path, default=Path("/tmp/phalanx-llm-bench"))
    a = p.parse_args()
    if a.serve_gateway:
        _serve_gateway(a.serve_gateway)
        return
    # SIGTERM unwinds like Ctrl-C, so the simulators and routers started here are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    a.logs.mkdir(parents=True, exist_ok=True)

    routers_bin = None
    if not a.skip_peers:
        got = subprocess.run(
            [str(REPO / "scripts" / "bench-routers"), "install"],
            capture_output=True,
            text=True,
            check=False,
        )
        if got.returncode == 0:
            routers_bin = Path(got.stdout.strip())
        else:
            print(f"peers not installed: {got.stderr.strip()}")
    policies = [x for x in a.policies.split(",") if x]
    routing = json.loads(a.routing) if a.routing else None
    targets = _targets(policies, routers_bin, routing, a.skip_router.split(","))

    print(
        "load before:",
        subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip(),
    )
    engine = (
        "llm-d-inference-sim"
        if os.environ.get("PHALANX_LLMSIM_BIN")
        or subprocess.run(
            [str(REPO / "scripts" / "llmsim" / "llmsim"), "path"], capture_output=True, check=False
        ).returncode
        == 0
        else "phalanx.testing.openai_sim"
    )
    print(
        f"fleet: {a.replicas} × {engine}, max-num-seqs {MAX_NUM_SEQS}, block {BLOCK_TOKENS} tokens, "
        f"latency {LATENCY}"
    )
    workloads: dict[str, tuple[list[Request], int]] = {}
    wanted = a.workloads.split(",")
    for name, rps, seed in (
        ("prefix-moderate", a.moderate_rps, 1),
        ("prefix-overload", a.overload_rps, 2),
    ):
        if name in wanted:
            reqs = shared_prefix(
                groups=a.groups,
                system_tokens=a.system_tokens,
                user_tokens=a.user_tokens,
                output_tokens=a.output_tokens,
                rps=rps,
                seconds=a.seconds,
                seed=seed,
            )
            workloads[name] = (reqs, a.prefix_kv_blocks)
            print(
                f"{name}: {len(reqs)} requests, {a.groups} groups × {a.system_tokens}-token system "
                f"prompt + {a.user_tokens}-token turn, {a.output_tokens} output tokens, Poisson "
                f"{rps}/s for {a.seconds} s; KV cache {a.prefix_kv_blocks} blocks/replica"
            )
    if "mooncake" in wanted:
        rows_ = mooncake_rows(TRACE, sample=a.trace_sample, requests=a.trace_requests)
        reqs = mooncake(rows_, speedup=a.trace_speedup, block_tokens=a.trace_block_tokens)
        workloads["mooncake"] = (reqs, a.trace_kv_blocks)
        tokens = statistics.fmean(len(r.messages[0][1].split()) for r in reqs)
        # One trace block is trace_block_tokens tokens = trace_block_tokens / BLOCK_TOKENS
        # simulator blocks.
        per_trace_block = max(1, a.trace_block_tokens // BLOCK_TOKENS)
        print(
            f"mooncake: {len(reqs)} requests, 1 conversation in {a.trace_sample} of "
            f"{reqs[-1].at_s * a.trace_speedup:.0f} s of trace, at {a.trace_speedup:g}× speed "
            f"({len(reqs) / max(reqs[-1].at_s, 1e-9):.1f}/s over {reqs[-1].at_s:.0f} s); each "
            f"512-token block → {a.trace_block_tokens} tokens (÷{512 // a.trace_block_tokens}), "
            f"mean prompt {tokens:.0f} tokens; outputs ÷32 in [1, 16]; KV cache "
            f"{a.trace_kv_blocks} blocks of {BLOCK_TOKENS} tokens per replica (≈ "
            f"{a.trace_kv_blocks // per_trace_block} trace blocks)\n  "
            + trace_hit_bounds(rows_, a.replicas, a.trace_kv_blocks // per_trace_block)
        )

    rows: list[Row] = []
    print(HEADER, flush=True)
    for _ in range(a.repeat):
        for name, (reqs, kv) in workloads.items():
            for target in targets:
                rows.append(
                    run_one(target, name, reqs, replicas=a.replicas, kv_blocks=kv, logs=a.logs)
                )
    over: list[str] = []
    if a.overhead_requests > 0:
        print(
            "\ngateway overhead (one replica, no simulated latency, non-streaming, "
            f"{a.overhead_rps}/s alternating direct/via):",
            flush=True,
        )
        over = overhead(targets, a.logs, a.overhead_requests, a.overhead_rps)

    print("\n" + HEADER)
    for row in rows:
        print(_fmt(row))
    for line in over:
        print(line)
    print(
        "load after:",
        subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip(),
    )


if __name__ == "__main__":
    main()
