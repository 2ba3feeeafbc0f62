"""The router over real sockets: echo replicas on an event loop thread, the router in a
``RouterThread``, plain ``http.client`` connections as clients."""

from __future__ import annotations

import asyncio
import concurrent.futures
import http.client
import json
import random
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import pytest

from phalanx.serving import echo
from phalanx.serving.endpoints import Endpoint, LoadSample, Route
from phalanx.serving.router import RouterThread

pytestmark = pytest.mark.integration


class Replicas:
    """Echo replicas served from one background event loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.servers: dict[str, echo.EchoServer] = {}

    def start(self, name: str, event_gap_s: float = 0.05) -> str:
        server = asyncio.run_coroutine_threadsafe(
            echo.serve("127.0.0.1", 0, name, event_gap_s), self.loop
        ).result(5)
        self.servers[name] = server
        return f"http://127.0.0.1:{server.port}"

    def close(self) -> None:
        async def shut() -> None:
            for server in self.servers.values():
                await server.close()

        asyncio.run_coroutine_threadsafe(shut(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@dataclass
class Source:
    current: tuple[Route, ...] = ()

    def routes(self) -> Sequence[Route]:
        return self.current


@dataclass
class Sink:
    samples: list[LoadSample] = field(default_factory=list)
    demands: list[str] = field(default_factory=list)

    def report(self, samples: Sequence[LoadSample]) -> None:
        self.samples.extend(samples)

    def demand(self, service: str) -> None:
        self.demands.append(service)


@pytest.fixture
def replicas() -> Iterator[Replicas]:
    r = Replicas()
    yield r
    r.close()


@dataclass
class Harness:
    source: Source
    sink: Sink
    port: int

    def request(
        self,
        path: str,
        *,
        method: str = "GET",
        host: str | None = None,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            h = dict(headers or {})
            if host:
                h["Host"] = host
            conn.request(method, path, body=body, headers=h)
            resp = conn.getresponse()
            return resp.status, dict(resp.getheaders()), resp.read()
        finally:
            conn.close()


@pytest.fixture
def harness() -> Iterator[Harness]:
    source, sink = Source(), Sink()
    thread = RouterThread(
        source,
        sink,
        rng=random.Random(7),
        refresh_interval_s=0.01,
        report_interval_s=0.1,
        down_for_s=5.0,
    )
    port = thread.start()
    yield Harness(source, sink, port)
    thread.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_routes_by_prefix_and_host_and_names_a_missing_route(
    harness: Harness, replicas: Replicas
) -> None:
    a = replicas.start("a")
    b = replicas.start("b")
    harness.source.current = (
        Route("alpha", "/alpha", endpoints=(Endpoint(a, "r1", "a-0"),)),
        Route("beta", "/beta", hosts=("beta.example",), endpoints=(Endpoint(b, "r1", "b-0"),)),
        Route("keep", "/keep", strip_prefix=False, endpoints=(Endpoint(b, "r1", "b-0"),)),
    )
    status, _, body = harness.request("/alpha/v2/models?x=1")
    assert status == 200
    assert json.loads(body) == {
        "replica": "a",
        "method": "GET",
        "path": "/v2/models?x=1",
        "body_bytes": 0,
        "host": f"127.0.0.1:{harness.port}",
    }
    assert json.loads(harness.request("/alpha")[2])["path"] == "/"
    assert json.loads(harness.request("/alpha?q")[2])["path"] == "/?q"
    assert json.loads(harness.request("/keep/x")[2])["path"] == "/keep/x"
    by_host = json.loads(harness.request("/anything", host="beta.example:80")[2])
    assert (by_host["replica"], by_host["path"]) == ("b", "/anything")
    status, _, body = harness.request("/alphabet")
    assert status == 404
    assert "no route" in json.loads(body)["error"] and "/alphabet" in json.loads(body)["error"]


def test_post_bodies_chunked_or_not_reach_the_replica_whole(
    harness: Harness, replicas: Replicas
) -> None:
    a = replicas.start("a")
    harness.source.current = (Route("s", "/s", endpoints=(Endpoint(a, "r1", "a-0"),)),)
    status, _, body = harness.request("/s/infer", method="POST", body=b"x" * 100_000)
    assert status == 200 and json.loads(body)["body_bytes"] == 100_000

    def chunks() -> Iterator[bytes]:
        yield b"abc"
        yield b"defgh"

    conn = http.client.HTTPConnection("127.0.0.1", harness.port, timeout=10)
    conn.request("POST", "/s/infer", body=chunks(), encode_chunked=True)
    resp = conn.getresponse()
    assert json.loads(resp.read())["body_bytes"] == 8
    # The same keep-alive connection carries the next request.
    conn.request("GET", "/s/again")
    assert json.loads(conn.getresponse().read())["path"] == "/again"
    conn.close()


def test_least_outstanding_requests_avoids_the_busy_replica(
    harness: Harness, replicas: Replicas
) -> None:
    a, b = replicas.start("a"), replicas.start("b")
    harness.source.current = (
        Route("s", "/s", endpoints=(Endpoint(a, "r1", "a-0"), Endpoint(b, "r1", "b-0"))),
    )
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        slow = pool.submit(harness.request, "/s/sleep/800")
        time.sleep(0.2)
        fast = [json.loads(harness.request("/s/x")[2])["replica"] for _ in range(6)]
        slow_replica = json.loads(slow.result()[2])["replica"]
    # While one replica holds the slow request, every other request goes to the idle one.
    assert set(fast) == {"b" if slow_replica == "a" else "a"}
    # Idle again: ties are shared between replicas.
    assert {json.loads(harness.request("/s/x")[2])["replica"] for _ in range(6)} == {"a", "b"}


def test_canary_split_follows_the_percentages(harness: Harness, replicas: Replicas) -> None:
    stable, canary = replicas.start("stable"), replicas.start("canary")
    harness.source.current = (
        Route(
            "s",
            "/s",
            endpoints=(Endpoint(stable, "r1", "s-0"), Endpoint(canary, "r2", "c-0")),
            traffic=(("r1", 90.0), ("r2", 10.0)),
        ),
    )
    conn = http.client.HTTPConnection("127.0.0.1", harness.port, timeout=10)
    hits = 0
    n = 1000
    for _ in range(n):
        conn.request("GET", "/s/x")
        hits += json.loads(conn.getresponse().read())["replica"] == "canary"
    conn.close()
    assert 0.07 <= hits / n <= 0.13


def test_server_sent_events_stream_through_as_they_arrive(
    harness: Harness, replicas: Replicas
) -> None:
    a = replicas.start("a", event_gap_s=0.3)
    harness.source.current = (Route("s", "/s", endpoints=(Endpoint(a, "r1", "a-0"),)),)
    conn = http.client.HTTPConnection("127.0.0.1", harness.port, timeout=10)
    started = time.monotonic()
    conn.request("GET", "/s/stream/4")
    resp = conn.getresponse()
    assert resp.getheader("Content-Type") == "text/event-stream"
    first = resp.readline()
    first_at = time.monotonic() - started
    rest = resp.read()
    total = time.monotonic() - started
    conn.close()
    assert first == b"data: a 0\n"
    assert first_at < 0.25 < 0.9 < total  # the first event did not wait for the last
    assert rest.count(b"data: a") == 3


def test_connect_failures_go_to_another_replica(harness: Harness, replicas: Replicas) -> None:
    live = replicas.start("live")
    dead = f"http://127.0.0.1:{free_port()}"
    harness.source.current = (
        Route("s", "/s", endpoints=(Endpoint(dead, "r1", "dead-0"), Endpoint(live, "r1", "l-0"))),
    )
    results = [harness.request("/s/x") for _ in range(10)]
    assert [s for s, _, _ in results] == [200] * 10
    assert {json.loads(b)["replica"] for _, _, b in results} == {"live"}

    harness.source.current = (Route("s", "/s", endpoints=(Endpoint(dead, "r1", "dead-0"),)),)
    time.sleep(0.05)
    status, _, body = harness.request("/s/x")
    assert status == 502
    assert "dead-0" in json.loads(body)["error"] and dead in json.loads(body)["error"]


def test_a_request_once_sent_is_not_retried(harness: Harness, replicas: Replicas) -> None:
    a, b = replicas.start("a"), replicas.start("b")
    harness.source.current = (
        Route("s", "/s", endpoints=(Endpoint(a, "r1", "a-0"), Endpoint(b, "r1", "b-0"))),
    )
    status, _, body = harness.request("/s/drop", method="POST", body=b"{}")
    assert status == 502
    message = json.loads(body)["error"]
    assert "closed the connection before answering" in message
    assert a in message or b in message


def test_concurrency_limit_queues_then_answers_429(harness: Harness, replicas: Replicas) -> None:
    a = replicas.start("a")
    harness.source.current = (
        Route(
            "s",
            "/s",
            endpoints=(Endpoint(a, "r1", "a-0"),),
            max_concurrency=1,
            queue_limit=1,
        ),
    )
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        first = pool.submit(harness.request, "/s/sleep/400")
        time.sleep(0.1)
        queued = pool.submit(harness.request, "/s/sleep/10")
        time.sleep(0.1)
        started = time.monotonic()
        status, headers, body = harness.request("/s/x")
        rejected_in = time.monotonic() - started
        assert status == 429 and headers["Retry-After"] == "1"
        assert "maxConcurrency" in json.loads(body)["error"]
        assert rejected_in < 0.2  # rejected at once, not after waiting
        assert first.result()[0] == 200
        assert queued.result()[0] == 200
    assert any(s.rejected_total == 1 for s in harness.sink.samples)


def test_a_request_at_zero_replicas_waits_and_asks_for_one(
    harness: Harness, replicas: Replicas
) -> None:
    harness.source.current = (Route("s", "/s", cold_start_timeout_s=5.0),)
    time.sleep(0.05)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(harness.request, "/s/x")
        deadline = time.monotonic() + 2
        while "s" not in harness.sink.demands and time.monotonic() < deadline:
            time.sleep(0.01)
        assert harness.sink.demands[0] == "s"
        time.sleep(0.3)
        assert not waiting.done()
        assert any(x.waiting == 1 for x in harness.sink.samples)
        a = replicas.start("a")
        harness.source.current = (
            Route("s", "/s", cold_start_timeout_s=5.0, endpoints=(Endpoint(a, "r1", "a-0"),)),
        )
        status, _, body = waiting.result(timeout=5)
        assert status == 200 and json.loads(body)["replica"] == "a"
        # At zero again: the next waiting request asks at once, whenever the last ask was.
        harness.source.current = (Route("s", "/s", cold_start_timeout_s=0.5),)
        time.sleep(0.05)
        asked = len(harness.sink.demands)
        again = pool.submit(harness.request, "/s/x")
        time.sleep(0.2)
        assert len(harness.sink.demands) == asked + 1
        assert again.result(timeout=5)[0] == 503


def test_no_replica_within_the_cold_start_timeout_answers_503(harness: Harness) -> None:
    harness.source.current = (
        Route(
            "s",
            "/s",
            cold_start_timeout_s=0.3,
            endpoints=(Endpoint("http://x:1", "r", "x", ready=False),),
        ),
    )
    time.sleep(0.05)
    started = time.monotonic()
    status, headers, body = harness.request("/s/x")
    assert 0.25 < time.monotonic() - started < 2
    assert status == 503 and int(headers["Retry-After"]) >= 1
    assert "no ready replica" in json.loads(body)["error"]


def test_load_samples_count_requests_and_mean_concurrency(
    harness: Harness, replicas: Replicas
) -> None:
    a = replicas.start("a")
    harness.source.current = (Route("s", "/s", endpoints=(Endpoint(a, "r1", "a-0"),)),)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda _: harness.request("/s/sleep/300"), range(2)))
    time.sleep(0.25)
    mine = [s for s in harness.sink.samples if s.service == "s"]
    assert mine[-1].requests_total == 2 and mine[-1].in_flight == 0
    # Two requests of 0.3 s in parallel: the mean concurrency of some 0.1 s window near 2.
    assert max(s.in_flight_avg or 0 for s in mine) > 1.5


def test_pooled_connections_are_reused_but_not_when_idle_too_long(replicas: Replicas) -> None:
    a = replicas.start("a")
    source, sink = Source(), Sink()
    source.current = (Route("s", "/s", endpoints=(Endpoint(a, "r1", "a-0"),)),)
    thread = RouterThread(source, sink, refresh_interval_s=0.01, upstream_idle_s=0.3)
    port = thread.start()
    harness = Harness(source, sink, port)
    try:
        echo_conns = replicas.servers["a"].conns
        for _ in range(5):
            assert harness.request("/s/x")[0] == 200
        assert len(echo_conns) == 1  # one pooled connection carried all five
        first = next(iter(echo_conns))
        time.sleep(0.5)
        assert harness.request("/s/x")[0] == 200
        time.sleep(0.05)
        assert first not in echo_conns and len(echo_conns) == 1  # the stale one was closed
    finally:
        thread.stop()


def test_a_slow_reader_gets_a_large_answer_whole_and_the_connection_serves_on(
    harness: Harness, replicas: Replicas
) -> None:
    a = replicas.start("a")
    harness.source.current = (Route("s", "/s", endpoints=(Endpoint(a, "r1", "a-0"),)),)
    size = 16_000_000  # more than the socket buffers hold
    with socket.create_connection(("127.0.0.1", harness.port), timeout=20) as sock:
        sock.sendall(f"GET /s/bytes/{size} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        time.sleep(0.5)  # not reading: the router pauses the replica
        data = bytearray()
        while b"\r\n\r\n" not in data or len(data) < data.find(b"\r\n\r\n") + 4 + size:
            chunk = sock.recv(1 << 20)
            assert chunk
            data += chunk
    assert data.startswith(b"HTTP/1.1 200 OK") and data.endswith(b"x" * 1000)
    # The replica's connection was parked reading again: the next requests are answered.
    for _ in range(3):
        assert harness.request("/s/x")[0] == 200
