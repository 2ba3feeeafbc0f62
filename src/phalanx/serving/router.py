"""The serving router: an asyncio HTTP/1.1 reverse proxy in front of a service's replicas.

API (what ``phalanx up`` and ``phalanx router`` embed)::

    router = Router(source, sink, rng=random.Random(7))   # source: RouteSource, sink: LoadSink
    server = await router.serve("127.0.0.1", 0)            # an asyncio.Server; router.port
    ...
    await router.close()

    thread = RouterThread(source, sink, "127.0.0.1", 0)    # its own event loop in a thread
    port = thread.start()                                  # the bound port
    thread.stop()

What one request goes through (``Router._dispatch``):

1. Match a route: the request's Host header (port removed) against ``Route.hosts`` first,
   then the longest ``Route.path_prefix`` that the path starts with, on a segment boundary
   (``/a`` matches ``/a``, ``/a/b`` and ``/a?x``, not ``/ab``). No match: 404 that names the
   host and path. The prefix is removed before forwarding when ``strip_prefix`` and the
   route matched by path.
2. Pick a revision: by ``Route.traffic`` percentages (weighted random with the router's
   ``rng``) among the revisions that have a ready endpoint; an empty ``traffic`` means any.
3. Pick a replica: the ready endpoint of that revision with the fewest outstanding requests
   through this router (least outstanding requests; ties to the first listed), skipping
   replicas that refused a connection in the last ``down_for_s`` seconds.
4. No ready endpoint at all: ``sink.demand(service)`` (at most every ``demand_interval_s``
   per service) and the request waits up to ``Route.cold_start_timeout_s`` for one to
   appear, then 503 with Retry-After. Every ready replica at ``Route.max_concurrency``: the
   request waits in the service's queue (FIFO) for a free slot, at most
   ``Route.queue_limit`` waiting and at most ``queue_timeout_s`` each, else 429 with
   Retry-After.
5. Send it on a pooled keep-alive connection to the replica (one idle for longer than
   ``upstream_idle_s`` is closed rather than reused: the replica may be closing it), or a
   new one. A connect
   failure marks the replica down for ``down_for_s`` and the request goes to another replica
   (at most ``connect_attempts`` tries); once the request has been written it is never
   retried: a replica that fails before answering gives 502 naming the replica.
6. The response is passed through as its bytes arrive (fixed length, chunked, server-sent
   events, or until close), with back-pressure from the client to the replica. Its final
   status is counted per replica and class (``2xx`` … ``5xx``; ``LoadSample.responses``).

Client connections idle for ``client_idle_s`` are closed. Requests are read whole before
they are forwarded (bodies are de-chunked and sent with a Content-Length, at most
``max_body_bytes``); responses are never buffered. About once a
second (``report_interval_s``) the router hands ``sink.report`` one ``LoadSample`` per
service it has seen, with ``at`` from ``time.time()`` and ``in_flight_avg`` the
time-weighted mean of ``in_flight`` since the previous sample. Routes are read from
``source.routes()`` every ``refresh_interval_s`` and whenever a request finds no route;
``source`` and ``sink`` are called on the router's event loop and must not block.

The bytes on the wire (parsing requests, relaying answers) are ``phalanx.serving.http1``'s.
Imports no store, controller or web framework: only the standard library, the contract in
``phalanx.serving.endpoints`` and, when installed, uvloop (``new_event_loop``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from ssl import SSLContext

from phalanx.serving.endpoints import Endpoint, LoadSample, LoadSink, Route, RouteSource
from phalanx.serving.http1 import _ClientConn, _Request, _Upstream

__all__ = ["Router", "RouterThread", "new_event_loop", "serve_forever"]

log = logging.getLogger(__name__)
_monotonic = time.monotonic


@dataclass(slots=True)
class _ServiceState:
    """What the router knows about one service between route refreshes."""

    route: Route
    revisions: dict[str, list[Endpoint]] = field(default_factory=dict)
    waiters: deque[asyncio.Future[None]] = field(default_factory=deque)
    cold_waiters: int = 0
    requests_total: int = 0
    rejected_total: int = 0
    in_flight: int = 0
    area: float = 0.0  # in_flight integrated over time since the last sample
    area_since: float = 0.0
    changed_at: float = 0.0
    last_demand: float = float("-inf")
    #: (replica, status class) -> answers the replicas gave, counted as their heads arrive.
    responses: dict[tuple[str, str], int] = field(default_factory=dict)

    def touch(self, now: float, delta: int) -> None:
        self.area += self.in_flight * (now - self.changed_at)
        self.changed_at = now
        self.in_flight += delta


class Router:
    """The reverse proxy; see the module docstring. Not thread-safe: use it on one loop."""

    #: The status of a request that waited ``cold_start_timeout_s`` in vain (the LLM gateway,
    #: like OpenAI's API, answers 429 so that clients retry after Retry-After).
    cold_start_status = 503

    def __init__(
        self,
        source: RouteSource,
        sink: LoadSink,
        *,
        rng: random.Random | None = None,
        refresh_interval_s: float = 0.05,
        report_interval_s: float = 1.0,
        demand_interval_s: float = 0.5,
        queue_timeout_s: float = 30.0,
        connect_timeout_s: float = 2.0,
        connect_attempts: int = 3,
        down_for_s: float = 1.0,
        max_idle_per_replica: int = 128,
        upstream_idle_s: float = 2.0,
        client_idle_s: float = 120.0,
        max_body_bytes: int = 64 * 1024 * 1024,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.source = source
        self.sink = sink
        self.rng = rng if rng is not None else random.Random()
        self.refresh_interval_s = refresh_interval_s
        self.report_interval_s = report_interval_s
        self.demand_interval_s = demand_interval_s
        self.queue_timeout_s = queue_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.connect_attempts = connect_attempts
        self.down_for_s = down_for_s
        self.max_idle_per_replica = max_idle_per_replica
        self.upstream_idle_s = upstream_idle_s
        self.client_idle_s = client_idle_s
        self.max_body_bytes = max_body_bytes
        self.clock = clock
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._clients: set[_ClientConn] = set()
        self._routes_seen: object = None
        self._by_host: dict[str, _ServiceState] = {}
        self._by_prefix: list[tuple[str, _ServiceState]] = []
        self._services: dict[str, _ServiceState] = {}
        self._outstanding: dict[str, int] = {}
        self._down_until: dict[str, float] = {}
        self._idle: dict[str, list[_Upstream]] = {}
        self._replica_of: dict[str, str] = {}  # url -> replica name, as the routes say
        self._route_changed: asyncio.Event | None = None
        self._last_refresh = float("-inf")
        self._turn = 0

    # -- life cycle ------------------------------------------------------------------------

    async def serve(
        self, host: str = "127.0.0.1", port: int = 0, ssl: SSLContext | None = None
    ) -> asyncio.Server:
        """Start listening (HTTPS with ``ssl``); returns the server (``self.port`` is the
        bound port)."""
        self._loop = asyncio.get_running_loop()
        self._route_changed = asyncio.Event()
        self.refresh()
        self._server = await self._loop.create_server(
            lambda: _ClientConn(self), host, port, reuse_address=True, backlog=1024, ssl=ssl
        )
        self.port = int(self._server.sockets[0].getsockname()[1])
        self._ticker = asyncio.create_task(self._tick())
        return self._server

    async def close(self) -> None:
        """Stop listening, close every connection and report a last sample."""
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        if self._server is not None:
            self._server.close()
        for client in list(self._clients):
            if client.transport is not None:
                client.transport.close()
        for task in list(self._tasks):
            task.cancel()
        for conns in self._idle.values():
            for up in conns:
                if up.transport is not None:
                    up.transport.close()
        self._idle.clear()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
        # Let the transports closed above finish closing on this loop.
        for _ in range(3):
            await asyncio.sleep(0)
        self._report()

    async def _tick(self) -> None:
        next_report = self._now() + self.report_interval_s
        while True:
            await asyncio.sleep(self.refresh_interval_s)
            try:
                self.refresh()
            except Exception:  # the source is someone else's code: keep routing on old routes
                log.exception("reading routes failed; keeping the previous routes")
            if self._now() >= next_report:
                next_report += self.report_interval_s
                self._report()
                self._close_idle_clients()

    @staticmethod
    def _now() -> float:
        return _monotonic()

    def _close_idle_clients(self) -> None:
        """Close keep-alive client connections idle (no request in progress) for longer than
        ``client_idle_s``."""
        oldest_ok = _monotonic() - self.client_idle_s
        for client in [c for c in self._clients if not c.busy and c.last_active < oldest_ok]:
            if client.transport is not None:
                client.transport.close()

    # -- routes ----------------------------------------------------------------------------

    def refresh(self) -> None:
        """Read routes from the source and rebuild the index when they changed."""
        routes = self.source.routes()
        if self._loop is not None:
            self._last_refresh = self._loop.time()
        if routes is self._routes_seen:
            return
        if isinstance(self._routes_seen, tuple | list) and list(routes) == list(self._routes_seen):
            self._routes_seen = routes
            return
        self._routes_seen = routes
        now = _monotonic()
        by_host: dict[str, _ServiceState] = {}
        by_prefix: list[tuple[str, _ServiceState]] = []
        live_urls: set[str] = set()
        seen: set[str] = set()
        for route in routes:
            state = self._services.get(route.service)
            if state is None:
                state = _ServiceState(route=route, area_since=now, changed_at=now)
                self._services[route.service] = state
            state.route = route
            seen.add(route.service)
            revisions: dict[str, list[Endpoint]] = {}
            for endpoint in route.endpoints:
                live_urls.add(endpoint.url)
                self._replica_of[endpoint.url] = endpoint.replica
                if endpoint.ready:
                    revisions.setdefault(endpoint.revision, []).append(endpoint)
            state.revisions = revisions
            if revisions:
                # The next time it is at zero, the first waiting request asks at once.
                state.last_demand = float("-inf")
            for h in route.hosts:
                by_host[h.lower()] = state
            by_prefix.append((route.path_prefix.rstrip("/"), state))
        for name, state in self._services.items():
            if name not in seen:
                state.revisions = {}  # the service is gone: nothing to send to
        by_prefix.sort(key=lambda p: -len(p[0]))
        self._replica_of = {u: r for u, r in self._replica_of.items() if u in live_urls}
        self._by_host = by_host
        self._by_prefix = by_prefix
        # Idle connections to replicas that left every route are closed.
        for url in [u for u in self._idle if u not in live_urls]:
            for up in self._idle.pop(url):
                if up.transport is not None:
                    up.transport.close()
        # A change may have brought a replica (cold waiters) or room (queued waiters).
        for state in self._services.values():
            self._wake(state)
        if self._route_changed is not None:
            self._route_changed.set()
            self._route_changed = asyncio.Event()

    def _match(self, request: _Request) -> tuple[_ServiceState, bytes] | None:
        if self._by_host and request.host:
            state = self._by_host.get(request.host.rsplit(":", 1)[0].lower())
            if state is not None:
                return state, request.target
        target = request.target
        path = target.decode("latin-1")
        for prefix, state in self._by_prefix:
            if not prefix:
                return state, target
            if path.startswith(prefix):
                rest = path[len(prefix) :]
                if rest and rest[0] not in "/?":
                    continue
                if state.route.strip_prefix:
                    if not rest or rest[0] == "?":
                        rest = "/" + rest
                    return state, rest.encode("latin-1")
                return state, target
        return None

    # -- picking ---------------------------------------------------------------------------

    def _pick(self, state: _ServiceState, revision: str | None) -> Endpoint | None:
        """The least loaded ready endpoint of ``revision`` with a free slot (None: none free).
        ``revision`` None: any revision."""
        limit = state.route.max_concurrency
        down_until = self._down_until
        now = _monotonic() if down_until else 0.0
        best: Endpoint | None = None
        best_load = 1 << 60
        down_best: Endpoint | None = None
        down_load = 1 << 60
        pools = (
            state.revisions.values() if revision is None else (state.revisions.get(revision, ()),)
        )
        outstanding = self._outstanding
        self._turn += 1
        for pool in pools:
            n = len(pool)
            if not n:
                continue
            # Ties go round the replicas rather than always to the first one.
            start = self._turn % n
            for i in range(n):
                endpoint = pool[(start + i) % n]
                load = outstanding.get(endpoint.url, 0)
                if limit and load >= limit:
                    continue
                if down_until and down_until.get(endpoint.url, 0.0) > now:
                    if load < down_load:
                        down_best, down_load = endpoint, load
                    continue
                if load < best_load:
                    best, best_load = endpoint, load
        return best if best is not None else down_best

    def _revision(self, state: _ServiceState) -> str | None:
        traffic = state.route.traffic
        if not traffic:
            return None
        revisions = state.revisions
        choices = [(rev, pct) for rev, pct in traffic if pct > 0 and rev in revisions]
        if not choices:
            return None
        if len(choices) == 1:
            return choices[0][0]
        total = sum(p for _, p in choices)
        x = self.rng.random() * total
        for rev, pct in choices:
            x -= pct
            if x < 0:
                return rev
        return choices[-1][0]

    # -- the request path ------------------------------------------------------------------

    def _dispatch(self, client: _ClientConn, request: _Request) -> None:
        if self._loop is not None and not self._by_prefix and not self._by_host:
            self._maybe_refresh()
        matched = self._match(request)
        if matched is None:
            self._maybe_refresh()
            matched = self._match(request)
        if matched is None:
            client.respond_error(
                404,
                f"no route for host {request.host!r} and path "
                f"{request.target.decode('latin-1')!r}: no service has that path prefix or "
                "host (phalanx get services lists them)",
            )
            return
        state, target = matched
        state.requests_total += 1
        payload = self._encode(request, target, client)
        revision = self._revision(state)
        endpoint = self._pick(state, revision) if state.revisions else None
        if endpoint is not None and not state.waiters:
            up = self._take_idle(endpoint.url)
            if up is not None:
                self._acquire(state, endpoint)
                up.send(client, state, payload, request.method == b"HEAD")
                return
            # The slow path picks again: give it the same turn, or a replica with no pooled
            # connection yet would lose every tie to one that has one, for ever.
            self._turn -= 1
        task = asyncio.ensure_future(self._slow_path(client, request, state, payload, revision))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _maybe_refresh(self) -> None:
        try:
            self.refresh()
        except Exception:
            log.exception("reading routes failed")

    @staticmethod
    def _encode(request: _Request, target: bytes, client: _ClientConn) -> bytes:
        body = request.body
        framing = (
            b"content-length: " + str(len(body)).encode() + b"\r\n\r\n"
            if body or request.method in (b"POST", b"PUT", b"PATCH")
            else b"\r\n"
        )
        return b"".join(
            (
                request.method,
                b" ",
                target,
                b" ",
                request.version,
                b"\r\n",
                request.header_block,
                client.forwarded_for,
                framing,
                body,
            )
        )

    async def _slow_path(
        self,
        client: _ClientConn,
        request: _Request,
        state: _ServiceState,
        payload: bytes,
        revision: str | None,
    ) -> None:
        try:
            await self._forward(client, request, state, payload, revision)
        except Exception as exc:
            log.exception("routing a request to %s failed", state.route.service)
            if client.busy and client.upstream is None:
                client.respond_error(502, f"the router failed: {exc}")

    async def _forward(
        self,
        client: _ClientConn,
        request: _Request,
        state: _ServiceState,
        payload: bytes,
        revision: str | None,
    ) -> None:
        service = state.route.service
        tried: set[str] = set()
        attempts = 0
        while True:
            # 1. A ready endpoint with a free slot, waiting for one if need be.
            endpoint = await self._await_endpoint(client, state, revision, tried)
            if endpoint is None:
                return  # answered (429/503) already
            # 2. A connection: an idle pooled one, else a new one.
            self._acquire(state, endpoint)
            up = self._take_idle(endpoint.url)
            if up is None:
                attempts += 1
                try:
                    up = await self._connect(endpoint.url)
                except (OSError, TimeoutError) as exc:
                    self._release_slot(state, endpoint.url)
                    self._down_until[endpoint.url] = self._now() + self.down_for_s
                    tried.add(endpoint.url)
                    if attempts >= self.connect_attempts or client.closed:
                        client.respond_error(
                            502,
                            f"could not connect to replica {endpoint.replica} of {service} "
                            f"at {endpoint.url}: {exc or type(exc).__name__}",
                        )
                        return
                    continue
                self._down_until.pop(endpoint.url, None)
            if client.closed:
                self._release_slot(state, endpoint.url)
                self._park(up)
                return
            up.send(client, state, payload, request.method == b"HEAD")
            return

    async def _await_endpoint(
        self,
        client: _ClientConn,
        state: _ServiceState,
        revision: str | None,
        tried: set[str],
    ) -> Endpoint | None:
        route = state.route
        loop = asyncio.get_running_loop()
        # Cold: no ready endpoint; ask for one and wait for the routes to bring it.
        if not state.revisions:
            state.cold_waiters += 1
            deadline = loop.time() + route.cold_start_timeout_s
            try:
                while not state.revisions:
                    now = loop.time()
                    if now - state.last_demand >= self.demand_interval_s:
                        state.last_demand = now
                        try:
                            self.sink.demand(route.service)
                        except Exception:
                            log.exception("reporting demand for %s failed", route.service)
                    remaining = deadline - now
                    if remaining <= 0 or client.closed:
                        break
                    changed = self._route_changed
                    assert changed is not None
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(
                            changed.wait(), min(remaining, self.demand_interval_s)
                        )
            finally:
                state.cold_waiters -= 1
            if not state.revisions:
                state.rejected_total += 1
                client.respond_error(
                    self.cold_start_status,
                    f"service {route.service} has no ready replica after waiting "
                    f"{route.cold_start_timeout_s:g} s (coldStartTimeoutSeconds); it may be "
                    "starting or blocked by quota: phalanx describe service "
                    f"{route.service}",
                    retry_after_s=max(1, int(route.cold_start_timeout_s // 4) or 1),
                )
                return None
            revision = self._revision(state)
        endpoint = self._pick_untried(state, revision, tried)
        if endpoint is not None and not state.waiters:
            return endpoint
        # Full: queue for a slot.
        if len(state.waiters) >= route.queue_limit:
            state.rejected_total += 1
            client.respond_error(
                429,
                f"service {route.service} is at its limit: every replica serves "
                f"{route.max_concurrency} requests (maxConcurrency) and {route.queue_limit} "
                "wait (queueLimit)",
                retry_after_s=1,
            )
            return None
        deadline = loop.time() + self.queue_timeout_s
        first = True
        while True:
            fut: asyncio.Future[None] = loop.create_future()
            # Woken without a slot after all: back to the head of the queue, not its tail.
            if first:
                state.waiters.append(fut)
            else:
                state.waiters.appendleft(fut)
            first = False
            try:
                await asyncio.wait_for(fut, max(0.0, deadline - loop.time()))
            except TimeoutError:
                with contextlib.suppress(ValueError):
                    state.waiters.remove(fut)
                self._wake(state)
                state.rejected_total += 1
                client.respond_error(
                    429,
                    f"service {route.service} had no free replica slot within "
                    f"{self.queue_timeout_s:g} s",
                    retry_after_s=1,
                )
                return None
            if client.closed:
                self._wake(state)
                return None
            if not state.revisions:
                return await self._await_endpoint(client, state, None, tried)
            if revision is not None and revision not in state.revisions:
                revision = self._revision(state)
            endpoint = self._pick_untried(state, revision, tried)
            if endpoint is not None:
                if state.waiters:
                    self._wake(state)
                return endpoint

    def _pick_untried(
        self, state: _ServiceState, revision: str | None, tried: set[str]
    ) -> Endpoint | None:
        if not tried:
            return self._pick(state, revision)
        saved = {url: self._outstanding.get(url, 0) for url in tried}
        # Tried replicas are taken out of the choice while others remain.
        for url in tried:
            self._outstanding[url] = 1 << 50
        try:
            endpoint = self._pick(state, revision)
            if endpoint is None and revision is not None:
                endpoint = self._pick(state, None)
        finally:
            for url, n in saved.items():
                self._outstanding[url] = n
        if endpoint is not None and endpoint.url in tried:
            # Every replica was tried: give the least recently failed another go.
            return endpoint
        return endpoint

    def _wake(self, state: _ServiceState) -> None:
        """Wake the first waiter of ``state`` whose turn it is (it re-checks for a slot)."""
        waiters = state.waiters
        while waiters:
            fut = waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return

    # -- connections and counters -----------------------------------------------------------

    async def _connect(self, url: str) -> _Upstream:
        assert self._loop is not None
        host, _, port = url.removeprefix("http://").rstrip("/").rpartition(":")
        _, protocol = await asyncio.wait_for(
            self._loop.create_connection(lambda: _Upstream(self, url), host, int(port)),
            self.connect_timeout_s,
        )
        return protocol

    def _take_idle(self, url: str) -> _Upstream | None:
        """The most recently parked live connection to ``url``. One idle for longer than
        ``upstream_idle_s`` is closed instead: the replica may be closing it at this very
        moment (uvicorn does after 5 s), and a request sent on it would be lost."""
        idle = self._idle.get(url)
        if not idle:
            return None
        oldest_ok = _monotonic() - self.upstream_idle_s
        while idle:
            up = idle.pop()
            if up.alive and up.transport is not None and not up.transport.is_closing():
                if up.parked_at >= oldest_ok:
                    return up
                up.transport.close()
        return None

    def _park(self, up: _Upstream) -> None:
        idle = self._idle.setdefault(up.url, [])
        if len(idle) < self.max_idle_per_replica and up.alive:
            up.parked_at = _monotonic()
            idle.append(up)
        elif up.transport is not None:
            up.transport.close()

    def _forget_idle(self, up: _Upstream) -> None:
        idle = self._idle.get(up.url)
        if idle and up in idle:
            idle.remove(up)

    def _acquire(self, state: _ServiceState, endpoint: Endpoint) -> None:
        self._outstanding[endpoint.url] = self._outstanding.get(endpoint.url, 0) + 1
        state.touch(_monotonic(), 1)

    def _release_slot(self, state: _ServiceState, url: str) -> None:
        n = self._outstanding.get(url, 0) - 1
        if n > 0:
            self._outstanding[url] = n
        else:
            self._outstanding.pop(url, None)
        state.touch(_monotonic(), -1)
        if state.waiters:
            self._wake(state)

    def _release(self, up: _Upstream) -> None:
        state = up.service
        if state is not None:
            up.service = None
            self._release_slot(state, up.url)

    def count_response(self, state: _ServiceState, url: str, status: int) -> None:
        """Count a replica's answer (its final status) for ``state``'s service."""
        key = (self._replica_of.get(url, url), f"{status // 100}xx")
        state.responses[key] = state.responses.get(key, 0) + 1

    # -- load --------------------------------------------------------------------------------

    def samples(self) -> list[LoadSample]:
        """One sample per service seen, and restart the in-flight averaging window."""
        now = _monotonic()
        at = self.clock()
        out: list[LoadSample] = []
        for state in self._services.values():
            state.touch(now, 0)
            span = now - state.area_since
            avg = state.area / span if span > 0 else float(state.in_flight)
            state.area = 0.0
            state.area_since = now
            out.append(
                LoadSample(
                    service=state.route.service,
                    at=at,
                    in_flight=state.in_flight,
                    waiting=state.cold_waiters + len(state.waiters),
                    requests_total=state.requests_total,
                    rejected_total=state.rejected_total,
                    in_flight_avg=avg,
                    responses=tuple(sorted((r, c, n) for (r, c), n in state.responses.items())),
                )
            )
        return out

    def _report(self) -> None:
        samples = self.samples()
        if not samples:
            return
        try:
            self.sink.report(samples)
        except Exception:
            log.exception("reporting load failed")


def new_event_loop(*, prefer_uvloop: bool = True) -> asyncio.AbstractEventLoop:
    """An event loop for the router: uvloop's when it is installed (the ``serve`` extra; it
    halves the router's CPU per request) and ``prefer_uvloop``, else asyncio's."""
    if prefer_uvloop:
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


class RouterThread:
    """A ``Router`` on its own event loop in a daemon thread (``phalanx up`` embeds it so that
    uvicorn keeps the main thread)."""

    def __init__(
        self,
        source: RouteSource,
        sink: LoadSink,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        prefer_uvloop: bool = True,
        ssl: SSLContext | None = None,
        router: Router | None = None,
        **router_options: object,
    ) -> None:
        """Runs ``router`` when given (a subclass such as the LLM gateway, built by the
        caller; ``router_options`` must then be empty), else a ``Router`` of ``source``,
        ``sink`` and ``router_options``."""
        if router is not None and router_options:
            raise TypeError("RouterThread: pass router options to the router given, not here")
        self.router = (
            router if router is not None else Router(source, sink, **router_options)  # type: ignore[arg-type]
        )
        self.ssl = ssl
        self.prefer_uvloop = prefer_uvloop
        self.host = host
        self.port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None

    def start(self, timeout_s: float = 10.0) -> int:
        """Start the thread; returns the bound port. Raises OSError when it cannot bind."""
        self._thread = threading.Thread(target=self._run, name="phalanx-router", daemon=True)
        self._thread.start()
        if not self._started.wait(timeout_s):
            raise TimeoutError(f"the router did not start within {timeout_s:g} s")
        if self._error is not None:
            raise self._error
        return self.router.port

    def _run(self) -> None:
        loop = new_event_loop(prefer_uvloop=self.prefer_uvloop)
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self.router.serve(self.host, self.port, self.ssl))
        except BaseException as exc:  # handed to start()
            self._error = exc
            self._started.set()
            loop.close()
            return
        self._started.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(self.router.close())
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the router and join its thread (idempotent)."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout_s)
        self._thread = None


def serve_forever(
    router: Router,
    host: str,
    port: int,
    ready: Callable[[int], None],
    *,
    loop_factory: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop,
) -> None:
    """Run ``router`` on this thread until SIGINT or SIGTERM (the ``phalanx router``
    command); ``ready(port)`` is called once it listens. Raises OSError when it cannot bind."""
    loop = loop_factory()

    async def main() -> None:
        await router.serve(host, port)
        stopped = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stopped.set)
        ready(router.port)
        try:
            await stopped.wait()
        finally:
            await router.close()

    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
