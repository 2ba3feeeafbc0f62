"""The LLM gateway: an OpenAI-compatible front for the Services that declare ``spec.llm``.

API (what ``phalanx gateway`` and ``phalanx up --gateway-port`` run)::

    gateway = Gateway(source, sink)               # the router's RouteSource and LoadSink
    await gateway.serve("127.0.0.1", 0)           # gateway.port
    thread = GatewayThread(source, sink, "127.0.0.1", 0); port = thread.start()

It is the serving router (``phalanx.serving.router.Router``) with three things changed:

1. Which service: by the request's ``model`` (``spec.llm.models``), not by path or host.
   ``POST /v1/chat/completions``, ``/v1/completions`` and ``/v1/embeddings`` are proxied
   (streamed or not: the response's bytes are relayed as they come); ``GET /v1/models``
   lists every model of every LLM service, whether or not a replica is up; anything else is
   404. Only the body's ``model`` and the position of its prompt (``messages``, ``prompt``
   or ``input``) are looked for; the body is never parsed whole unless ``"model":`` occurs
   more than once in it.
2. Which replica: the service's routing policy (``phalanx.serving.llm.policies``, pure) over
   the ready replicas with a free slot, each with its load: the requests in flight through
   this gateway plus what its engine reports beyond them (its ``/metrics``, read every
   ``metrics_interval_s`` for ``vllm`` and ``sglang`` engines), and its prefill work in
   flight (the uncached prompt blocks of its requests in flight, counted at dispatch and
   taken off when a request to that replica ends, first sent first off), and its slots:
   the most requests any engine of the service was read running at once (the replicas of
   a service run one template), below which a request starts at once. The prompt's
   leading blocks are recorded against the replica a request is sent to: the ``prefix``
   policy's estimate of what that replica holds in its cache, bounded per replica by the
   engine's own cache size (``vllm:cache_config_info``'s ``num_gpu_blocks``, in the
   gateway's blocks by the ratio of blocks recorded to prompt tokens processed), else by
   ``cacheBlocks``. Where the engine serves KV cache events (``GET /kv_events``, polled every
   ``kv_events_interval_s``; see ``phalanx.serving.llm.engine``), each block recorded is
   stamped with the engine's clock (the blocks it has stored; the first read only sets the
   clock, and what was recorded before it takes that stamp), and a block is dropped once
   the engine has stored as many blocks since as it holds (``PrefixIndex.expire``); an
   engine without events is asked again at each metrics read. An engine whose
   finished-request count drops, or that clears its cache, was restarted: its estimate is
   dropped too.
3. A model at zero replicas: as in the router, the request is held and the service asked for
   a replica (``sink.demand``); after ``coldStartTimeout`` the answer is ``429`` with
   ``Retry-After`` rather than 503, as OpenAI's API answers when a client should retry.

Everything else — queueing at ``maxConcurrency``, connection pooling, retries on connect
failure, back-pressure, load samples for the autoscaler (here with the engines' waiting
requests and KV-cache usage added) — is the router's. Imports no store, controller or web
framework.

Its own added time is measured in the process (``timings()``, ``GET /gateway/timings``):
from a request's last bytes received to its write to the replica, and from a response's
first bytes from the replica to their write to the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections import deque
from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from ssl import SSLContext
from typing import Any

from phalanx.serving.endpoints import Endpoint, LoadSample, LoadSink, Route, RouteSource
from phalanx.serving.http1 import _ClientConn, _Request, _Upstream
from phalanx.serving.llm.engine import (
    EngineLoad,
    blocks_per_engine_block,
    external_load,
    parse_engine_metrics,
    parse_kv_events,
)
from phalanx.serving.llm.policies import (
    Candidate,
    HashRing,
    PrefixIndex,
    RoutingParams,
    choose,
    prompt_blocks,
)
from phalanx.serving.router import Router, RouterThread, _ServiceState

__all__ = [
    "Gateway",
    "GatewayThread",
    "StaticRoutes",
    "prompt_region",
    "request_model",
]

log = logging.getLogger(__name__)

#: The OpenAI endpoints proxied to a replica (POST).
PROXIED = (b"/v1/chat/completions", b"/v1/completions", b"/v1/embeddings")
#: The most bytes of an engine's ``/metrics`` the gateway reads.
_MAX_METRICS_BYTES = 16 << 20
#: Engines whose ``/metrics`` the gateway reads.
METRICS_ENGINES = ("vllm", "sglang")
#: Where an engine serves its KV cache events (phalanx.testing.openai_sim does).
KV_EVENTS_PATH = "/kv_events"
#: How many timings ``timings()`` summarises (the latest).
_TIMINGS_KEPT = 20_000
_monotonic = time.monotonic

_WHITESPACE = b" \t\r\n"


def _after_key(body: bytes, key: bytes, start: int = 0) -> int:
    """The offset just after the colon of the first ``"key":`` in ``body`` from ``start``
    (-1: none). Outside a string, an unescaped quoted word followed by a colon is a key.
    By ``bytes.find``: a regular expression would try every offset of a long prompt."""
    quoted = b'"' + key + b'"'
    pos = start
    n = len(body)
    while True:
        i = body.find(quoted, pos)
        if i < 0:
            return -1
        pos = i + len(quoted)
        if i > 0 and _is_escaped(body, i):
            continue
        j = pos
        while j < n and body[j] in _WHITESPACE:
            j += 1
        if j < n and body[j] == 58:  # ":"
            return j + 1


def request_model(body: bytes) -> str | None:
    """The ``model`` of an OpenAI request body (None: none, or not JSON). Found by search:
    an unescaped ``"model":`` can only be a key; the body is parsed whole only when that
    key occurs more than once (a nested object with its own ``model``)."""
    after = _after_key(body, b"model")
    if after < 0:
        return None
    if _after_key(body, b"model", after) < 0:
        n = len(body)
        while after < n and body[after] in _WHITESPACE:
            after += 1
        if after >= n or body[after] != 34:  # not a string: let the replica say so
            return None
        end = after + 1  # just after the value's opening quote
        close = body.find(b'"', end)
        while close > 0 and _is_escaped(body, close):
            close = body.find(b'"', close + 1)
        if close < 0:
            return None
        try:
            value = json.loads(body[end - 1 : close + 1])
        except ValueError:
            return None
        return value if isinstance(value, str) else None
    try:
        data = json.loads(body)
    except ValueError:
        return None
    model = data.get("model") if isinstance(data, dict) else None
    return model if isinstance(model, str) else None


def _is_escaped(body: bytes, i: int) -> bool:
    """Whether the byte at ``i`` follows an odd number of backslashes."""
    n = 0
    while i - n - 1 >= 0 and body[i - n - 1] == 92:
        n += 1
    return n % 2 == 1


def prompt_region(body: bytes) -> bytes:
    """The bytes of the body from its prompt on (``messages``, ``prompt`` or ``input``):
    what the prefix is hashed over. A client serialises the same leading messages into the
    same bytes, and whatever fields precede the prompt do not shift it. No prompt key: the
    whole body."""
    for key in (b"messages", b"prompt", b"input"):
        after = _after_key(body, key)
        if after >= 0:
            return body[after:]
    return body


@dataclass(slots=True)
class _LLMService:
    """What the gateway keeps per LLM service between route refreshes."""

    state: _ServiceState
    engine: str
    models: tuple[str, ...]
    params: RoutingParams
    metrics_path: str
    index: PrefixIndex
    ring: HashRing | None = None
    ring_urls: frozenset[str] = frozenset()
    #: The most requests any of its replicas' engines was seen running at once (0: not
    #: seen): the requests one replica runs side by side (``Candidate.slots``).
    slots: float = 0.0


@dataclass(slots=True)
class _EngineInfo:
    """One replica's engine, as last read from its ``/metrics``."""

    load: EngineLoad = field(default_factory=EngineLoad)
    #: Requests its engine held beyond those in flight through this gateway (and the
    #: last reading alone: see ``external_load``).
    external: float = 0.0
    external_seen: float = 0.0
    #: The gateway's blocks per engine KV block of a prompt (None: not learned yet), and
    #: the blocks recorded against the replica since the last metrics read.
    ratio: float | None = None
    recorded: float = 0.0
    #: KV events: served or not (None: not asked yet), the cursor, the engine's clock (the
    #: blocks it stored since its cache was last cleared) and the blocks it holds.
    has_events: bool | None = None
    #: Whether the events have been read once: the first read is the engine's history
    #: before this gateway asked, which sets the clock but drops nothing recorded since.
    synced: bool = False
    cursor: int = 0
    clock: int = 0
    held: int = 0
    #: The most requests its engine said it was running at once (since it last restarted).
    max_running: float = 0.0


@dataclass(frozen=True, slots=True)
class _Ask:
    """The routing facts of the request being dispatched (``_ask``)."""

    service: str
    blocks: tuple[int, ...]
    #: Whether ``blocks`` go into the prefix index (the ``prefix`` policy).
    records: bool = False


#: The request being routed: set in ``_dispatch``; the router's slow path runs in a task
#: that copied it when it was created, so ``_pick`` and ``_acquire`` see their own request.
_ask: ContextVar[_Ask | None] = ContextVar("phalanx_gateway_ask", default=None)


class _LLMRoutes:
    """The routes of ``source`` that are LLM services (``extra["llm"]``); the same tuple
    while ``source`` returns the same object, so the router's cheap check keeps working."""

    def __init__(self, source: RouteSource) -> None:
        self.source = source
        self._seen: object = None
        self._routes: tuple[Route, ...] = ()

    def routes(self) -> Sequence[Route]:
        routes = self.source.routes()
        if routes is not self._seen:
            self._seen = routes
            self._routes = tuple(r for r in routes if isinstance(r.extra.get("llm"), dict))
        return self._routes


def _json_response(status: int, reason: str, payload: object) -> bytes:
    body = json.dumps(payload, separators=(",", ":")).encode() + b"\n"
    return (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nX-Phalanx-Gateway: 1\r\n\r\n"
    ).encode() + body


def _openai_error(status: int, reason: str, message: str, kind: str, code: str) -> bytes:
    return _json_response(
        status, reason, {"error": {"message": message, "type": kind, "param": None, "code": code}}
    )


class Gateway(Router):
    """The LLM gateway; see the module docstring. Not thread-safe: use it on one loop."""

    cold_start_status = 429

    def __init__(
        self,
        source: RouteSource,
        sink: LoadSink,
        *,
        metrics_interval_s: float = 1.0,
        metrics_timeout_s: float = 0.5,
        kv_events_interval_s: float = 0.25,
        learn_slots: bool = True,
        **router_options: Any,
    ) -> None:
        super().__init__(_LLMRoutes(source), sink, **router_options)
        self.metrics_interval_s = metrics_interval_s
        #: Whether the prefix policy is told the engines' slots (False: for comparisons).
        self.learn_slots = learn_slots
        self.metrics_timeout_s = metrics_timeout_s
        self.kv_events_interval_s = kv_events_interval_s
        self._events_poller: asyncio.Task[None] | None = None
        #: Per replica: the uncached blocks of each request in flight (first sent first)
        #: and their sum.
        self._pending: dict[str, deque[int]] = {}
        self._pending_sum: dict[str, int] = {}
        #: The gateway's own time (s): request received → written upstream, and response
        #: bytes from upstream → written to the client (the first bytes of each response).
        self.request_times_s: deque[float] = deque(maxlen=_TIMINGS_KEPT)
        self.response_times_s: deque[float] = deque(maxlen=_TIMINGS_KEPT)
        self._llm: dict[str, _LLMService] = {}
        self._by_model: dict[str, _LLMService] = {}
        self._models_response = _json_response(200, "OK", {"object": "list", "data": []})
        self._llm_seen: object = None
        self._engines: dict[str, _EngineInfo] = {}
        self._scraper: asyncio.Task[None] | None = None

    # -- life cycle ------------------------------------------------------------------------

    async def serve(
        self, host: str = "127.0.0.1", port: int = 0, ssl: SSLContext | None = None
    ) -> asyncio.Server:
        server = await super().serve(host, port, ssl)
        if self.metrics_interval_s > 0:
            self._scraper = asyncio.create_task(self._scrape_forever())
        if self.kv_events_interval_s > 0:
            self._events_poller = asyncio.create_task(self._poll_events_forever())
        return server

    async def close(self) -> None:
        for task in (self._scraper, self._events_poller):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await super().close()

    # -- routes ----------------------------------------------------------------------------

    def refresh(self) -> None:
        super().refresh()
        if self._routes_seen is not self._llm_seen:
            self._llm_seen = self._routes_seen
            self._rebuild()

    def _rebuild(self) -> None:
        """Index the LLM services by model; keep each one's prefix estimate, less the
        replicas that left it."""
        by_model: dict[str, _LLMService] = {}
        services: dict[str, _LLMService] = {}
        listed: list[dict[str, object]] = []
        current = {r.service for r in self._route_list()}
        for name, state in self._services.items():
            llm = state.route.extra.get("llm")
            if not isinstance(llm, dict) or name not in current:
                continue
            try:
                params = RoutingParams.from_manifest(llm.get("routing") or {})
            except (TypeError, ValueError) as exc:
                log.warning("service %s: bad llm.routing (%s); using the defaults", name, exc)
                params = RoutingParams()
            svc = self._llm.get(name)
            if svc is None:
                svc = _LLMService(
                    state, "", (), params, "/metrics", PrefixIndex(params.cache_blocks)
                )
            svc.state = state
            svc.engine = str(llm.get("engine", "openai"))
            svc.models = tuple(str(m) for m in llm.get("models") or ())
            svc.params = params
            svc.metrics_path = str(llm.get("metricsPath", "/metrics"))
            svc.index.capacity = params.cache_blocks
            urls = frozenset(e.url for eps in state.revisions.values() for e in eps)
            for url in svc.index.replicas():
                if url not in urls:
                    svc.index.forget(url)
            if params.policy == "chwbl" and urls != svc.ring_urls:
                svc.ring = HashRing.build(sorted(urls), params.ring_points)
                svc.ring_urls = urls
            services[name] = svc
            for model in svc.models:
                if model in by_model:
                    log.warning(
                        "model %s is served by services %s and %s; requests go to %s",
                        model,
                        by_model[model].state.route.service,
                        name,
                        by_model[model].state.route.service,
                    )
                    continue
                by_model[model] = svc
                listed.append({"id": model, "object": "model", "created": 0, "owned_by": name})
        self._llm = services
        self._by_model = by_model
        self._models_response = _json_response(200, "OK", {"object": "list", "data": listed})

    def _route_list(self) -> Sequence[Route]:
        seen = self._routes_seen
        return seen if isinstance(seen, tuple | list) else ()

    def models(self) -> list[str]:
        """The model names the gateway routes now."""
        return list(self._by_model)

    # -- the request path ------------------------------------------------------------------

    def _dispatch(self, client: _ClientConn, request: _Request) -> None:
        if self._loop is not None and not self._by_model:
            self._maybe_refresh()
        path = request.target.split(b"?", 1)[0]
        if path not in PROXIED or request.method != b"POST":
            self._answer_locally(client, request, path)
            return
        model = request_model(request.body)
        if model is None:
            self._respond(
                client,
                _openai_error(
                    400,
                    "Bad Request",
                    "the request body has no model: set model to one of "
                    f"{', '.join(sorted(self._by_model)) or '(none yet)'}",
                    "invalid_request_error",
                    "model_missing",
                ),
            )
            return
        svc = self._by_model.get(model)
        if svc is None:
            self._maybe_refresh()
            svc = self._by_model.get(model)
        if svc is None:
            self._respond(
                client,
                _openai_error(
                    404,
                    "Not Found",
                    f"the model {model!r} is not served here; models: "
                    f"{', '.join(sorted(self._by_model)) or '(none)'} (a Service's "
                    "spec.llm.models lists them; phalanx get services)",
                    "invalid_request_error",
                    "model_not_found",
                ),
            )
            return
        params = svc.params
        blocks: tuple[int, ...] = ()
        if params.policy in ("prefix", "chwbl"):
            blocks = prompt_blocks(
                prompt_region(request.body), params.block_chars, params.max_blocks
            )
        state = svc.state
        token = _ask.set(_Ask(state.route.service, blocks, params.policy == "prefix"))
        try:
            self._send(client, request, state)
        finally:
            _ask.reset(token)

    def _send(self, client: _ClientConn, request: _Request, state: _ServiceState) -> None:
        """The router's dispatch once the service is known (fast path on a pooled
        connection, else the slow path's task)."""
        state.requests_total += 1
        payload = self._encode(request, request.target, client)
        revision = self._revision(state)
        endpoint = self._pick(state, revision) if state.revisions else None
        if endpoint is not None and not state.waiters:
            up = self._take_idle(endpoint.url)
            if up is not None:
                self._acquire(state, endpoint)
                up.send(client, state, payload, request.method == b"HEAD")
                return
            self._turn -= 1  # the slow path picks again, with the same turn
        task = asyncio.ensure_future(self._slow_path(client, request, state, payload, revision))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _answer_locally(self, client: _ClientConn, request: _Request, path: bytes) -> None:
        if request.method == b"GET" and path == b"/v1/models":
            self._respond(client, self._models_response)
            return
        if request.method == b"GET" and path.startswith(b"/v1/models/"):
            name = path[len(b"/v1/models/") :].decode("latin-1")
            svc = self._by_model.get(name)
            if svc is not None:
                self._respond(
                    client,
                    _json_response(
                        200,
                        "OK",
                        {
                            "id": name,
                            "object": "model",
                            "created": 0,
                            "owned_by": svc.state.route.service,
                        },
                    ),
                )
                return
            self._respond(
                client,
                _openai_error(
                    404,
                    "Not Found",
                    f"the model {name!r} is not served here",
                    "invalid_request_error",
                    "model_not_found",
                ),
            )
            return
        if request.method == b"GET" and path in (b"/health", b"/healthz"):
            self._respond(client, _json_response(200, "OK", {"status": "ok"}))
            return
        if request.method == b"GET" and path == b"/gateway/timings":
            self._respond(client, _json_response(200, "OK", self.timings()))
            return
        self._respond(
            client,
            _openai_error(
                404,
                "Not Found",
                f"{request.method.decode('latin-1')} {path.decode('latin-1')} is not an "
                "endpoint of the LLM gateway: POST /v1/chat/completions, /v1/completions, "
                "/v1/embeddings; GET /v1/models",
                "invalid_request_error",
                "unknown_url",
            ),
        )

    @staticmethod
    def _respond(client: _ClientConn, response: bytes) -> None:
        if not client.closed and client.transport is not None:
            client.transport.write(response)
        client.finish(keep_alive=True)

    # -- picking ---------------------------------------------------------------------------

    def _pick(self, state: _ServiceState, revision: str | None) -> Endpoint | None:
        ask = _ask.get()
        svc = self._llm.get(state.route.service) if ask is not None else None
        if svc is None or ask is None:
            return super()._pick(state, revision)
        limit = state.route.max_concurrency
        down_until = self._down_until
        now = self._now() if down_until else 0.0
        outstanding = self._outstanding
        engines = self._engines
        slots = svc.slots
        candidates: list[Candidate] = []
        by_url: dict[str, Endpoint] = {}
        down_best: Endpoint | None = None
        down_load = 1 << 60
        pools = (
            state.revisions.values() if revision is None else (state.revisions.get(revision, ()),)
        )
        for pool in pools:
            for endpoint in pool:
                url = endpoint.url
                load = outstanding.get(url, 0)
                if limit and load >= limit:
                    continue
                if down_until and down_until.get(url, 0.0) > now:
                    if load < down_load:
                        down_best, down_load = endpoint, load
                    continue
                info = engines.get(url)
                pending = float(self._pending_sum.get(url, 0))
                if info is None:
                    candidates.append(Candidate(url, float(load), 0.0, pending, slots))
                else:
                    candidates.append(
                        Candidate(
                            url, load + info.external, info.load.waiting or 0.0, pending, slots
                        )
                    )
                by_url[url] = endpoint
        if not candidates:
            return down_best
        self._turn += 1
        chosen = choose(
            svc.params, candidates, ask.blocks, turn=self._turn, index=svc.index, ring=svc.ring
        )
        return by_url[chosen.key]

    def _acquire(self, state: _ServiceState, endpoint: Endpoint) -> None:
        super()._acquire(state, endpoint)
        url = endpoint.url
        missed = 0
        ask = _ask.get()
        if ask is not None and ask.records and ask.blocks:
            svc = self._llm.get(ask.service)
            if svc is not None:
                index = svc.index
                missed = len(ask.blocks) - index.matched(url, ask.blocks)
                info = self._engines.get(url)
                index.record(url, ask.blocks, info.clock if info is not None else 0)
                if info is not None:
                    info.recorded += len(ask.blocks)
        queue = self._pending.get(url)
        if queue is None:
            queue = self._pending[url] = deque()
        queue.append(missed)
        if missed:
            self._pending_sum[url] = self._pending_sum.get(url, 0) + missed

    def _release_slot(self, state: _ServiceState, url: str) -> None:
        queue = self._pending.get(url)
        if queue:
            missed = queue.popleft()
            if missed:
                left = self._pending_sum.get(url, 0) - missed
                if left > 0:
                    self._pending_sum[url] = left
                else:
                    self._pending_sum.pop(url, None)
        super()._release_slot(state, url)

    def pending_blocks(self, url: str) -> int:
        """The uncached prompt blocks of the requests in flight to ``url``."""
        return self._pending_sum.get(url, 0)

    # -- the gateway's own time ------------------------------------------------------------

    async def _connect(self, url: str) -> _Upstream:
        assert self._loop is not None
        host, _, port = url.removeprefix("http://").rstrip("/").rpartition(":")
        _, protocol = await asyncio.wait_for(
            self._loop.create_connection(lambda: _TimedUpstream(self, url), host, int(port)),
            self.connect_timeout_s,
        )
        return protocol

    def timings(self) -> dict[str, object]:
        """The gateway's own added time, in ms, over the latest requests: ``request``
        (received → written to the replica) and ``response`` (first bytes from the
        replica → written to the client), each with n, p50, p90, p99 and max."""
        return {
            "request": _summary_ms(self.request_times_s),
            "response": _summary_ms(self.response_times_s),
        }

    # -- engines' own metrics --------------------------------------------------------------

    async def _scrape_forever(self) -> None:
        while True:
            await asyncio.sleep(self.metrics_interval_s)
            try:
                await self.scrape()
            except Exception:
                log.exception("reading the engines' metrics failed")

    async def scrape(self) -> None:
        """Read every ready replica's engine metrics once (vLLM and SGLang engines)."""
        targets: dict[str, tuple[_LLMService, str]] = {}
        for svc in self._llm.values():
            if svc.engine not in METRICS_ENGINES:
                continue
            for pool in svc.state.revisions.values():
                for endpoint in pool:
                    targets[endpoint.url] = (svc, svc.metrics_path)
        for url in [u for u in self._engines if u not in targets]:
            del self._engines[url]
        if not targets:
            return
        ours_before = {url: self._outstanding.get(url, 0) for url in targets}
        texts = await asyncio.gather(
            *(self._fetch_metrics(url, path) for url, (_, path) in targets.items()),
            return_exceptions=True,
        )
        for (url, (svc, _)), text in zip(targets.items(), texts, strict=True):
            if not isinstance(text, str):
                continue
            load = parse_engine_metrics(text)
            info = self._engines.setdefault(url, _EngineInfo())
            before = info.load.finished_total
            if (
                before is not None
                and load.finished_total is not None
                and load.finished_total < before
            ):
                svc.index.forget(url)  # the engine restarted: its cache is empty
                info.max_running = 0.0  # and perhaps with other settings
            if load.running is not None and load.running > info.max_running:
                info.max_running = load.running
            info.external, info.external_seen = external_load(
                load.in_flight,
                ours_before[url],
                self._outstanding.get(url, 0),
                info.external_seen,
            )
            self._learn_capacity(svc, url, info, load)
            info.load = load
            if info.has_events is False:
                info.has_events = None  # ask again at the next poll
        for svc in self._llm.values() if self.learn_slots else ():
            seen = [
                self._engines[e.url].max_running
                for pool in svc.state.revisions.values()
                for e in pool
                if e.url in self._engines
            ]
            svc.slots = max(seen, default=0.0)

    def _learn_capacity(
        self, svc: _LLMService, url: str, info: _EngineInfo, load: EngineLoad
    ) -> None:
        """Bound ``url``'s prefix estimate by its engine's cache size, in the gateway's
        blocks (see the module docstring)."""
        before = info.load.prompt_tokens_total
        if (
            load.block_size is not None
            and load.prompt_tokens_total is not None
            and before is not None
            and load.prompt_tokens_total >= before
        ):
            info.ratio = blocks_per_engine_block(
                info.recorded, load.prompt_tokens_total - before, load.block_size, info.ratio
            )
        info.recorded = 0.0
        if load.num_gpu_blocks is not None and info.ratio is not None:
            svc.index.set_capacity(url, math.ceil(load.num_gpu_blocks * info.ratio))

    # -- engines' KV events ----------------------------------------------------------------

    async def _poll_events_forever(self) -> None:
        while True:
            await asyncio.sleep(self.kv_events_interval_s)
            try:
                await self.poll_kv_events()
            except Exception:
                log.exception("reading the engines' KV events failed")

    async def poll_kv_events(self) -> None:
        """Read the KV events of every replica whose engine serves them (or has not been
        asked yet), and drop from each prefix estimate what its engine evicted."""
        targets: dict[str, _LLMService] = {}
        for svc in self._llm.values():
            if svc.engine not in METRICS_ENGINES or svc.params.policy != "prefix":
                continue
            for pool in svc.state.revisions.values():
                for endpoint in pool:
                    info = self._engines.setdefault(endpoint.url, _EngineInfo())
                    if info.has_events is not False:
                        targets[endpoint.url] = svc
        if not targets:
            return
        texts = await asyncio.gather(
            *(
                self._fetch_metrics(url, f"{KV_EVENTS_PATH}?since={self._engines[url].cursor}")
                for url in targets
            ),
            return_exceptions=True,
        )
        for (url, svc), text in zip(targets.items(), texts, strict=True):
            known = self._engines.get(url)
            if known is None:
                continue  # left the service while its events were read
            try:
                if not isinstance(text, str):
                    raise ValueError(str(text))
                events = parse_kv_events(json.loads(text), known.cursor)
            except ValueError:
                known.has_events = False  # not served (or not understood): the estimate alone
                continue
            info = known
            info.has_events = True
            self._apply_kv_events(
                svc,
                url,
                info,
                events.stored,
                events.removed,
                events.cleared or events.next_cursor < info.cursor,
                events.next_cursor,
            )
            if events.lost and info.load.num_gpu_blocks is not None:
                # Some stores and removals were missed: the count held is not known; a
                # cache that evicts is about full.
                info.held = max(info.held, info.load.num_gpu_blocks)

    def _apply_kv_events(
        self,
        svc: _LLMService,
        url: str,
        info: _EngineInfo,
        stored: int,
        removed: int,
        restarted: bool,
        cursor: int,
    ) -> None:
        """Advance ``url``'s engine clock by what it stored and drop from the estimate what
        its engine must have evicted since (``PrefixIndex.expire``)."""
        info.cursor = cursor
        if not info.synced:
            # What the engine stored and evicted before this first read is history (another
            # gateway's traffic, or this one's before a restart): the blocks recorded since
            # this gateway started were stored at the latest now, so they are stamped with
            # the clock as it reads now. Expiring them by the history's evictions instead
            # dropped the whole estimate of a gateway started beside busy engines.
            info.synced = True
            info.clock = stored
            info.held = max(0, stored - removed)
            svc.index.restamp(url, info.clock)
            return
        if restarted:
            svc.index.forget(url)
            info.clock = info.held = 0
        info.clock += stored
        info.held = max(0, info.held + stored - removed)
        if removed:
            svc.index.expire(url, info.clock, info.held)

    async def _fetch_metrics(self, url: str, path: str) -> str:
        """GET ``url + path``: the body as text. Raises OSError, TimeoutError or ValueError."""
        return await asyncio.wait_for(self._get(url, path), self.metrics_timeout_s)

    @staticmethod
    async def _get(url: str, path: str) -> str:
        host, _, port = url.removeprefix("http://").rstrip("/").rpartition(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            writer.write(
                f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n"
                "Accept: text/plain\r\n\r\n".encode()
            )
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").lower()
            status_line, _, headers = head.partition("\r\n")
            if status_line.split(" ")[1:2] != ["200"]:
                raise ValueError(f"{url}{path} answered {status_line.strip()!r}")
            if "transfer-encoding: chunked" in headers:
                parts: list[bytes] = []
                while True:
                    size = int((await reader.readline()).split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        break
                    if size > _MAX_METRICS_BYTES:
                        raise ValueError(f"{url}{path}: a chunk of {size} bytes")
                    parts.append(await reader.readexactly(size))
                    await reader.readexactly(2)
                body = b"".join(parts)
            elif "content-length:" in headers:
                length = int(headers.split("content-length:", 1)[1].split("\r\n", 1)[0])
                if length > _MAX_METRICS_BYTES:
                    raise ValueError(f"{url}{path} is {length} bytes, over {_MAX_METRICS_BYTES}")
                body = await reader.readexactly(length)
            else:
                body = await reader.read(_MAX_METRICS_BYTES)
        finally:
            writer.close()
        return body.decode("utf-8", "replace")

    def engine_load(self, url: str) -> EngineLoad | None:
        """What replica ``url``'s engine said last (None: nothing read yet)."""
        info = self._engines.get(url)
        return info.load if info is not None else None

    # -- load --------------------------------------------------------------------------------

    def samples(self) -> list[LoadSample]:
        """The router's samples, with the engines' waiting requests and KV-cache usage."""
        out: list[LoadSample] = []
        for sample in super().samples():
            svc = self._llm.get(sample.service)
            if svc is None:
                out.append(sample)
                continue
            waiting: list[float] = []
            usage: list[float] = []
            for pool in svc.state.revisions.values():
                for endpoint in pool:
                    info = self._engines.get(endpoint.url)
                    if info is None:
                        continue
                    if info.load.waiting is not None:
                        waiting.append(info.load.waiting)
                    if info.load.kv_cache_usage is not None:
                        usage.append(info.load.kv_cache_usage)
            out.append(
                replace(
                    sample,
                    # Told apart from a router's samples of the same service (they are summed).
                    source=sample.source or "gateway",
                    engine_waiting=sum(waiting) if waiting else None,
                    kv_cache_usage=sum(usage) / len(usage) if usage else None,
                )
            )
        return out


class StaticRoutes:
    """A fixed set of upstream servers of one model, as one LLM service named ``service``
    (``phalanx gateway --upstream``): a ``RouteSource`` and a ``LoadSink`` that drops what
    it is told."""

    def __init__(
        self,
        upstreams: Sequence[str],
        models: Sequence[str],
        *,
        policy: str = "prefix",
        engine: str = "vllm",
        service: str = "static",
        routing: dict[str, object] | None = None,
    ) -> None:
        endpoints = tuple(
            Endpoint(url.rstrip("/"), "static", f"{service}-{i}") for i, url in enumerate(upstreams)
        )
        llm = {
            "engine": engine,
            "models": list(models),
            "routing": {"policy": policy, **(routing or {})},
        }
        RoutingParams.from_manifest(llm["routing"])  # type: ignore[arg-type]  # fail early
        self._routes = (
            Route(
                service,
                f"/{service}",
                endpoints=endpoints,
                cold_start_timeout_s=0.0,
                extra={"llm": llm},
            ),
        )

    def routes(self) -> Sequence[Route]:
        return self._routes

    def report(self, samples: Sequence[LoadSample]) -> None:
        return None

    def demand(self, service: str) -> None:
        return None


def _summary_ms(values: deque[float]) -> dict[str, float | int]:
    ordered = sorted(values)
    n = len(ordered)
    if not n:
        return {"n": 0}

    def pct(q: float) -> float:
        return round(ordered[min(n - 1, int(q * n))] * 1000.0, 4)

    return {"n": n, "p50": pct(0.5), "p90": pct(0.9), "p99": pct(0.99), "max": pct(1.0)}


class _TimedUpstream(_Upstream):
    """A connection to a replica that times the gateway's own work on it: from the
    request's last bytes received (``client.last_active``) to its write upstream, and from
    a response's first bytes to their relay to the client."""

    __slots__ = ("gateway",)

    def __init__(self, gateway: Gateway, url: str) -> None:
        super().__init__(gateway, url)
        self.gateway = gateway

    def send(self, client: _ClientConn, service: _ServiceState, data: bytes, head: bool) -> None:
        super().send(client, service, data, head)
        self.gateway.request_times_s.append(_monotonic() - client.last_active)

    def data_received(self, data: bytes) -> None:
        if self.got_bytes or self.client is None:
            super().data_received(data)
            return
        start = _monotonic()
        super().data_received(data)
        self.gateway.response_times_s.append(_monotonic() - start)


class GatewayThread(RouterThread):
    """A ``Gateway`` on its own event loop in a daemon thread (beside the API)."""

    def __init__(
        self,
        source: RouteSource,
        sink: LoadSink,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        prefer_uvloop: bool = True,
        ssl: SSLContext | None = None,
        **gateway_options: Any,
    ) -> None:
        self.gateway = Gateway(source, sink, **gateway_options)
        super().__init__(
            source, sink, host, port, prefer_uvloop=prefer_uvloop, ssl=ssl, router=self.gateway
        )
